// Bounds on what a plugin hands the host. Every string a plugin passes to a host service goes
// through these once, at the edge where it enters the host: sandbox/exchange.cpp for the frames
// of sandboxed workers, host_api.cpp for in-process (trusted) plugins. Code behind the edge (the
// engine, the log, the database) can then rely on the sizes below.
//
// Pure functions of their arguments; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jr::bounds {

constexpr size_t kLogMessageMax = 8 * 1024;     // one log line's message
constexpr size_t kProgressStepMax = 256;        // the step text of a progress update
constexpr size_t kErrorTextMax = 64 * 1024;     // a job's error text (set_error)
constexpr size_t kEnqueueKindMax = 128;         // a kind name (the loader allows 1-128 bytes)
constexpr size_t kEnqueuePayloadMax = 1 << 20;  // an enqueued job's payload (as the HTTP API)
constexpr size_t kEnqueueOptionsMax = 64 * 1024;
constexpr size_t kResultMax = 16u << 20;  // an in-process job's result (the sandbox frame limit)
constexpr size_t kErrorKindMax = 32;      // a plugin's error kind (extension jr.error_kind.v1)

// The length of the longest prefix of `s` of at most `max` bytes that does not end inside a
// UTF-8 sequence (text that is not UTF-8 is cut at `max`).
size_t utf8_prefix(std::string_view s, size_t max);

// `s` itself when it fits in `max` bytes; otherwise its head, cut on a character boundary and
// followed by a marker saying how long the original was, the whole at most `max` bytes (built in
// `storage`, which the result then points into).
std::string_view cut(std::string_view s, size_t max, std::string& storage);

// "" when a plugin may name its failure `kind` (jr.error_kind.v1): 1-32 bytes of [a-z0-9_]
// starting with a letter, and none of the kinds the host reports itself (timeout, oom, crash,
// cancelled, protocol, ...), so a plugin cannot make its failure look like the host's verdict.
// Otherwise why not.
std::string error_kind_refusal(std::string_view kind);

// "" when an enqueue request is within the bounds above; otherwise why it is refused.
std::string enqueue_refusal(std::string_view kind, std::string_view payload,
                            std::string_view options);

}  // namespace jr::bounds
