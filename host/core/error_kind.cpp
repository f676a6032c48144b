#include "error_kind.hpp"

namespace jr {
namespace {

constexpr std::string_view kNames[kErrorKindCount] = {
    "error",       "permanent", "cancelled", "timeout",       "oom",        "crash",
    "seccomp",     "protocol",  "recycle",   "start_failure", "lease_lost", "expired",
    "unavailable", "killed",    "shutdown",  "rlimit",        "host",       "dependency"};

}  // namespace

std::string_view to_string(ErrorKind k) {
  auto i = static_cast<size_t>(k);
  return i < static_cast<size_t>(kErrorKindCount) ? kNames[i] : std::string_view("host");
}

std::optional<ErrorKind> error_kind_from(std::string_view name) {
  for (int i = 0; i < kErrorKindCount; ++i) {
    if (kNames[i] == name) return static_cast<ErrorKind>(i);
  }
  return std::nullopt;
}

}  // namespace jr
