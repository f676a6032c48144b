#include "attempt_span.hpp"

#include <algorithm>
#include <chrono>

#include "bounds.hpp"

namespace jr {

const char* span_outcome_name(Outcome o) {
  switch (o) {
    case Outcome::completed:
      return "completed";
    case Outcome::retry:
      return "retried";
    case Outcome::discard:
      return "discarded";
    case Outcome::snooze:
      return "snoozed";
    case Outcome::cancelled:
      return "cancelled";
    case Outcome::release:
      return "released";
  }
  return "unknown";
}

int64_t unix_ns_now() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
}

AttemptSpan make_attempt_span(const trace::AttemptTrace& t, const ClaimedJob& job,
                              const JobFinish& finish, int64_t start_unix_ns) {
  AttemptSpan s;
  s.trace_id = t.trace_id;
  s.span_id = t.span_id;
  s.parent_span_id = t.parent_span_id;
  s.start_unix_ns = start_unix_ns;
  s.end_unix_ns = std::max(start_unix_ns, unix_ns_now());
  s.job_id = job.id;
  s.kind = job.kind;
  s.queue = job.queue;
  s.attempt = job.attempt;
  s.outcome = span_outcome_name(finish.outcome);
  if (finish.outcome == Outcome::retry || finish.outcome == Outcome::discard ||
      finish.outcome == Outcome::cancelled) {
    s.error_kind = finish.error_kind;
    s.error.assign(finish.error, 0, bounds::utf8_prefix(finish.error, kSpanErrorMax));
  }
  if (job.run_at > 0 && job.started_at > 0) {
    s.wait_seconds = std::max(0.0, job.started_at - job.run_at);
  }
  return s;
}

}  // namespace jr
