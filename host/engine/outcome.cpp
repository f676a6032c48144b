#include "outcome.hpp"

#include <string>

#include "util.hpp"

namespace jr {

JobFinish decide_outcome(const ClaimedJob& job, const KindInfo& kind, int default_max_attempts,
                         const ExecOutcome& exec, jr_job_ctx& ctx, int cancel, double jitter01) {
  const int32_t status = exec.status;
  JobFinish f;
  f.id = job.id;
  f.attempt = job.attempt;
  if (exec.status != JR_OK || exec.host_error_kind.has_value()) f.kind = job.kind;
  int max_attempts =
      job.max_attempts.value_or(kind.max_attempts > 0 ? kind.max_attempts : default_max_attempts);
  const std::vector<int>& schedule =
      job.retry_schedule.empty() ? kind.retry_schedule : job.retry_schedule;
  auto name = [](ErrorKind k) { return std::string(to_string(k)); };
  auto fail_retryable = [&](const std::string& error_kind, const std::string& msg) {
    f.error_kind = error_kind;
    f.error = msg;
    if (job.attempt >= max_attempts) {
      f.outcome = Outcome::discard;
      f.error += " (attempt " + std::to_string(job.attempt) + " of " +
                 std::to_string(max_attempts) + ": no attempts left)";
    } else {
      f.outcome = Outcome::retry;
      f.delay_seconds = retry_delay_seconds(schedule, job.attempt, jitter01);
    }
  };
  auto timeout_text = [&] {
    return "attempt exceeded its timeout of " +
           std::to_string(job.timeout_ms.value_or(kind.timeout_ms)) + " ms";
  };
  // A job stopped for shutdown goes back untouched, whatever the handler returned on the way.
  if ((cancel == kCancelShutdown && (status != JR_OK || exec.host_error_kind.has_value())) ||
      exec.release) {
    f.outcome = Outcome::release;
    return f;
  }
  if (exec.host_error_kind.has_value()) {
    if (exec.host_error_kind == ErrorKind::timeout || cancel == kCancelTimeout) {
      fail_retryable(name(ErrorKind::timeout),
                     exec.host_error.empty() ? timeout_text() : exec.host_error);
    } else if (cancel == kCancelUser) {
      f.outcome = Outcome::cancelled;
      f.error_kind = name(ErrorKind::cancelled);
      f.error = "cancelled on request (" + exec.host_error + ")";
    } else {
      fail_retryable(name(*exec.host_error_kind), exec.host_error);
    }
    return f;
  }
  if (cancel == kCancelTimeout && status != JR_OK) {
    fail_retryable(name(ErrorKind::timeout), timeout_text());
    return f;
  }
  switch (status) {
    case JR_OK:
      f.outcome = Outcome::completed;
      if (ctx.has_result) f.result = std::move(ctx.result);
      break;
    case JR_ERR_RETRYABLE:
      fail_retryable(ctx.error_kind.empty() ? name(ErrorKind::error) : ctx.error_kind,
                     ctx.error.empty() ? "handler failed" : ctx.error);
      break;
    case JR_ERR_PERMANENT:
      f.outcome = Outcome::discard;
      f.error_kind = ctx.error_kind.empty() ? name(ErrorKind::permanent) : ctx.error_kind;
      f.error = ctx.error.empty() ? "handler failed permanently" : ctx.error;
      break;
    case JR_SNOOZE:
      f.outcome = Outcome::snooze;
      f.delay_seconds = ctx.snooze_seconds;
      break;
    case JR_CANCELLED:
      if (cancel == kCancelUser) {
        f.outcome = Outcome::cancelled;
        f.error_kind = name(ErrorKind::cancelled);
        f.error = "cancelled on request";
      } else {
        fail_retryable(name(ErrorKind::error),
                       "handler reported cancellation that nobody requested");
      }
      break;
    default:
      fail_retryable(name(ErrorKind::protocol),
                     "plugin returned unknown status " + std::to_string(status));
  }
  return f;
}

}  // namespace jr
