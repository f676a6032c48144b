// The span of one job attempt (docs/job-model.md, "OpenTelemetry traces"): what the engine hands
// a SpanSink when an attempt ends, and the sink interface the OTLP exporter (ops/otel_exporter)
// implements. The engine makes a span only when EngineOptions::spans is set (an exporter is
// configured) and the attempt's trace is sampled (trace_context.hpp, attempt_trace()).
//
// Threading: SpanSink::submit is called from the engine's slot threads, concurrently; it must
// be thread-safe, must not throw and must never wait on I/O (it runs on a job's path).
#pragma once

#include <cstdint>
#include <string>

#include "store.hpp"
#include "trace_context.hpp"

namespace jr {

struct AttemptSpan {
  std::string trace_id;        // 32 hex
  std::string span_id;         // 16 hex: the attempt's own span, the one handed to the plugin
  std::string parent_span_id;  // 16 hex: the producer's span; "" for the root of a job's trace
  int64_t start_unix_ns = 0;   // the attempt starts running here (after the claim)
  int64_t end_unix_ns = 0;     // its outcome is decided
  int64_t job_id = 0;
  std::string kind;
  std::string queue;
  int attempt = 0;
  std::string outcome;      // completed, retried, discarded, snoozed, cancelled, released
  std::string error_kind;   // failed attempts: "error", "timeout", the plugin's kind, ...
  std::string error;        // failed attempts: the error text, at most kSpanErrorMax bytes
  double wait_seconds = 0;  // from when the attempt was due (run_at) to its claim
};

constexpr size_t kSpanErrorMax = 1024;

class SpanSink {
 public:
  virtual ~SpanSink() = default;
  virtual void submit(AttemptSpan span) noexcept = 0;
};

// The outcome's name, as in the metrics (jobrunner_jobs_finished_total).
const char* span_outcome_name(Outcome o);

// The span of an attempt that ran from `start_unix_ns` to now and ended with `finish`.
AttemptSpan make_attempt_span(const trace::AttemptTrace& t, const ClaimedJob& job,
                              const JobFinish& finish, int64_t start_unix_ns);

// Now, in ns since the Unix epoch.
int64_t unix_ns_now();

}  // namespace jr
