// The failure kinds the host itself records (an attempt's error_kind, the sandbox's restart and
// failure counters, the rescuer's and expirer's entries): one enum instead of strings compared
// by hand, so a misspelt kind is a compile error. A plugin names its own failures with any other
// kind (bounds::error_kind_refusal refuses these names to plugins: they are the host's); the
// stored error_kind stays text because a plugin's kinds are open-ended.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace jr {

enum class ErrorKind : uint8_t {
  error,          // a plugin's retryable failure without a kind of its own
  permanent,      // a plugin's permanent failure without a kind of its own
  cancelled,      // cancelled on request
  timeout,        // the attempt's deadline passed (or the worker's CPU limit)
  oom,            // the worker was killed for memory
  crash,          // the handler's process died (signal or exit)
  seccomp,        // the worker made a forbidden system call
  protocol,       // the worker broke the IPC protocol
  recycle,        // the worker was replaced after its job quota
  start_failure,  // the worker could not be started
  lease_lost,     // the runner stopped renewing the lease (rescuer)
  expired,        // the job's ttl passed before it started (expirer)
  unavailable,    // the plugin is not ready (init failed, quarantined)
  killed,         // the worker was killed by the host
  shutdown,       // the runner stopped
  rlimit,         // the worker hit a resource limit
  host,           // a host-side failure
  dependency,     // a parent job was dead-lettered or cancelled
};
inline constexpr int kErrorKindCount = static_cast<int>(ErrorKind::dependency) + 1;

// The kind's name as stored and logged ("start_failure").
std::string_view to_string(ErrorKind k);
// The host kind of that name, or nothing for any other text (a plugin's own kind).
std::optional<ErrorKind> error_kind_from(std::string_view name);

// "" for none: for messages that name the kind when there is one.
inline std::string name_of(const std::optional<ErrorKind>& k) {
  return k ? std::string(to_string(*k)) : std::string();
}

inline std::ostream& operator<<(std::ostream& os, ErrorKind k) { return os << to_string(k); }
inline std::ostream& operator<<(std::ostream& os, const std::optional<ErrorKind>& k) {
  return os << name_of(k);
}

}  // namespace jr
