// W3C Trace Context (https://www.w3.org/TR/trace-context/) for jobs: the `traceparent` a producer
// stores with a job (job option "traceparent", checked here for the CLI, the HTTP API, plugins
// and, restated in SQL, jr_enqueue(): migration 19), fresh trace and span ids, and the trace of
// one attempt (AttemptTrace): which trace it belongs to, its own span id, its parent, and the
// traceparent handed to the plugin (extension jr.trace.v1, the exec protocol's job message).
//
// Pure functions but for the random ids (a per-thread generator); thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace jr::trace {

constexpr size_t kTraceparentLen = 55;  // "00-" 32 hex "-" 16 hex "-" 2 hex

struct TraceParent {
  std::string trace_id;  // 32 lowercase hex digits, not all zero
  std::string span_id;   // 16 lowercase hex digits, not all zero (the parent's span)
  uint8_t flags = 0;     // bit 0: sampled
  bool sampled() const { return (flags & 1) != 0; }
};

// "" when `text` is a traceparent this runner accepts: version 00 exactly, lowercase hex, the
// ids not all zero; otherwise why not (for "'traceparent' <why>, got <text>"). The SQL function
// jr_traceparent_check() (migration 19) gives the same reasons in the same order.
std::string traceparent_refusal(std::string_view text);

// The parsed form, or nullopt when traceparent_refusal() is not "".
std::optional<TraceParent> parse_traceparent(std::string_view text);

// "00-<trace_id>-<span_id>-<flags>".
std::string format_traceparent(const std::string& trace_id, const std::string& span_id,
                               uint8_t flags);

// Random ids (never all zero).
std::string random_trace_id();
std::string random_span_id();

// The trace id of a job enqueued without a traceparent: derived from its id and creation time,
// so every attempt of the job lands in the same trace without storing anything.
std::string job_trace_id(int64_t job_id, double created_at_unix);

// The trace of one attempt of a job.
struct AttemptTrace {
  std::string trace_id;
  std::string span_id;         // the attempt's span ("" when no span is made)
  std::string parent_span_id;  // the producer's span ("" for a root)
  uint8_t flags = 0;
  bool record = false;  // a span is to be exported (an exporter is on, and it is sampled)
  std::string handed;   // the traceparent handed to the plugin ("" = none)
};

// `stored`: the job's traceparent ("" = none). With `tracing` (an exporter is configured) the
// attempt gets a span of its own: a child of the stored parent (its flags kept: an unsampled
// parent means no span is exported, though the handler still gets the attempt's ids), or the
// root of the job's own trace (sampled). Without, the plugin gets the stored traceparent as it
// is (the runner passes the context through) and nothing is recorded.
AttemptTrace attempt_trace(std::string_view stored, int64_t job_id, double created_at_unix,
                           bool tracing);

}  // namespace jr::trace
