// The engine's decision for one finished attempt (host/engine/outcome.hpp), rule by rule, with
// no database and no plugin: decide_outcome() is a pure function of the job, its kind's limits,
// what the executor reported, what the plugin wrote into its context and the cancel reason.
// The same rules run end to end in test_lifecycle, test_sandbox and test_robust; here each one
// is pinned down alone, in milliseconds (`ctest -L unit`).
#include "outcome.hpp"

#include <gtest/gtest.h>

#include <string>

namespace jr {
namespace {

struct Attempt {
  ClaimedJob job;
  KindInfo kind;
  ExecOutcome exec;
  jr_job_ctx ctx;
  int cancel = kNoCancel;
  int default_max_attempts = 25;
  double jitter = 0.5;

  Attempt() {
    job.id = 42;
    job.kind = "k";
    job.attempt = 1;
    kind.kind = "k";
    exec.status = JR_OK;
  }
  JobFinish decide() {
    return decide_outcome(job, kind, default_max_attempts, exec, ctx, cancel, jitter);
  }
};

TEST(Outcome, OkCompletesWithThePluginsResultAndNoErrorFields) {
  Attempt a;
  a.ctx.has_result = true;
  a.ctx.result = R"({"n":1})";
  a.job.attempt = 3;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::completed);
  EXPECT_EQ(f.id, 42);
  EXPECT_EQ(f.attempt, 3) << "the attempt fences the write";
  EXPECT_EQ(f.result, R"({"n":1})");
  EXPECT_TRUE(f.error_kind.empty());
  EXPECT_TRUE(f.error.empty());
  EXPECT_TRUE(f.kind.empty()) << "a completion carries no kind (kept cheap)";

  Attempt b;  // no result reported
  EXPECT_EQ(b.decide().result, "");
}

TEST(Outcome, RetryableFailureFollowsTheJobsScheduleThenTheKindsThenBackoff) {
  Attempt a;
  a.exec.status = JR_ERR_RETRYABLE;
  a.ctx.error = "connection refused";
  a.job.retry_schedule = {10, 20};
  a.kind.retry_schedule = {7};
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::retry);
  EXPECT_EQ(f.error_kind, "error");
  EXPECT_EQ(f.error, "connection refused");
  EXPECT_EQ(f.kind, "k") << "a failure names its kind for the logs";
  EXPECT_DOUBLE_EQ(f.delay_seconds, 10);
  a.job.attempt = 5;  // past the schedule: its last entry
  EXPECT_DOUBLE_EQ(a.decide().delay_seconds, 20);

  a.job.retry_schedule.clear();  // the kind's schedule
  EXPECT_DOUBLE_EQ(a.decide().delay_seconds, 7);

  a.kind.retry_schedule.clear();  // exponential, 2^(attempt-1) s, with jitter in [0.5, 1)
  a.job.attempt = 4;
  a.jitter = 0;
  EXPECT_DOUBLE_EQ(a.decide().delay_seconds, 4);
  a.jitter = 0.5;
  EXPECT_DOUBLE_EQ(a.decide().delay_seconds, 6);
}

TEST(Outcome, TheLastAttemptGoesToTheDeadLetterQueueSayingSo) {
  Attempt a;
  a.exec.status = JR_ERR_RETRYABLE;
  a.ctx.error = "boom";
  a.ctx.error_kind = "rate_limited";  // the plugin's own name for its failure is kept
  a.job.max_attempts = 3;
  a.job.attempt = 3;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::discard);
  EXPECT_EQ(f.error_kind, "rate_limited");
  EXPECT_EQ(f.error, "boom (attempt 3 of 3: no attempts left)");
  a.job.attempt = 2;
  EXPECT_EQ(a.decide().outcome, Outcome::retry);
}

TEST(Outcome, MaxAttemptsComeFromTheJobElseTheKindElseTheRunnersDefault) {
  Attempt a;
  a.exec.status = JR_ERR_RETRYABLE;
  a.job.attempt = 4;
  a.default_max_attempts = 4;
  EXPECT_EQ(a.decide().outcome, Outcome::discard) << "default 4";
  a.kind.max_attempts = 5;
  EXPECT_EQ(a.decide().outcome, Outcome::retry) << "the kind's 5 over the default";
  a.job.max_attempts = 4;
  EXPECT_EQ(a.decide().outcome, Outcome::discard) << "the job's 4 over the kind's";
}

TEST(Outcome, PermanentFailureIsDeadLetteredAtOnce) {
  Attempt a;
  a.exec.status = JR_ERR_PERMANENT;
  a.job.max_attempts = 10;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::discard);
  EXPECT_EQ(f.error_kind, "permanent");
  EXPECT_EQ(f.error, "handler failed permanently");
  a.ctx.error_kind = "bad_input";
  a.ctx.error = "no such field";
  f = a.decide();
  EXPECT_EQ(f.error_kind, "bad_input");
  EXPECT_EQ(f.error, "no such field");
}

TEST(Outcome, SnoozeComesBackAfterItsDelay) {
  Attempt a;
  a.exec.status = JR_SNOOZE;
  a.ctx.snooze_seconds = 12.5;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::snooze);
  EXPECT_DOUBLE_EQ(f.delay_seconds, 12.5);
  EXPECT_TRUE(f.error_kind.empty());
}

TEST(Outcome, CancelledOnlyWhenSomebodyAskedForIt) {
  Attempt a;
  a.exec.status = JR_CANCELLED;
  a.cancel = kCancelUser;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::cancelled);
  EXPECT_EQ(f.error_kind, "cancelled");
  a.cancel = kNoCancel;
  f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::retry);
  EXPECT_EQ(f.error_kind, "error");
  EXPECT_EQ(f.error, "handler reported cancellation that nobody requested");
}

TEST(Outcome, AnUnknownStatusIsAProtocolError) {
  Attempt a;
  a.exec.status = 99;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::retry);
  EXPECT_EQ(f.error_kind, "protocol");
  EXPECT_EQ(f.error, "plugin returned unknown status 99");
}

TEST(Outcome, HostDecidedErrorsKeepTheirKindAndIgnoreWhatThePluginWrote) {
  for (const char* kind : {"crash", "seccomp", "oom", "protocol", "unavailable"}) {
    Attempt a;
    a.exec.status = JR_OK;  // a stale status from before the crash does not complete the job
    a.exec.host_error_kind = error_kind_from(kind);
    a.exec.host_error = std::string("worker ") + kind;
    a.ctx.has_result = true;
    a.ctx.result = "{}";
    JobFinish f = a.decide();
    EXPECT_EQ(f.outcome, Outcome::retry) << kind;
    EXPECT_EQ(f.error_kind, kind);
    EXPECT_EQ(f.error, std::string("worker ") + kind);
    EXPECT_TRUE(f.result.empty()) << kind;
  }
}

TEST(Outcome, TimeoutsAreNamedWithTheLimitThatApplied) {
  Attempt a;
  a.exec.status = JR_ERR_RETRYABLE;
  a.exec.host_error_kind = jr::ErrorKind::timeout;
  a.kind.timeout_ms = 1500;
  JobFinish f = a.decide();
  EXPECT_EQ(f.error_kind, "timeout");
  EXPECT_EQ(f.error, "attempt exceeded its timeout of 1500 ms");
  a.job.timeout_ms = 250;  // the job's own limit over the kind's
  EXPECT_EQ(a.decide().error, "attempt exceeded its timeout of 250 ms");
  a.exec.host_error = "killed at the deadline";
  EXPECT_EQ(a.decide().error, "killed at the deadline");

  // A crash past the deadline (the worker was killed for it) is a timeout, not a crash.
  Attempt b;
  b.exec.host_error_kind = jr::ErrorKind::crash;
  b.cancel = kCancelTimeout;
  EXPECT_EQ(b.decide().error_kind, "timeout");

  // A plugin that noticed the deadline and returned a failure: a timeout too.
  Attempt c;
  c.exec.status = JR_ERR_RETRYABLE;
  c.cancel = kCancelTimeout;
  c.kind.timeout_ms = 100;
  EXPECT_EQ(c.decide().error_kind, "timeout");
  // One that completed just in time: completed.
  c.exec.status = JR_OK;
  EXPECT_EQ(c.decide().outcome, Outcome::completed);
}

TEST(Outcome, AHostErrorAfterACancelRequestIsACancel) {
  Attempt a;
  a.exec.host_error_kind = jr::ErrorKind::crash;
  a.exec.host_error = "killed on cancel";
  a.cancel = kCancelUser;
  JobFinish f = a.decide();
  EXPECT_EQ(f.outcome, Outcome::cancelled);
  EXPECT_EQ(f.error, "cancelled on request (killed on cancel)");
}

TEST(Outcome, ShutdownGivesUnfinishedJobsBackWithoutUsingAnAttempt) {
  Attempt a;
  a.cancel = kCancelShutdown;
  a.exec.status = JR_CANCELLED;
  a.job.max_attempts = 1;  // even on its last attempt: nothing is used up
  EXPECT_EQ(a.decide().outcome, Outcome::release);
  a.exec.status = JR_OK;
  a.exec.host_error_kind = jr::ErrorKind::crash;  // killed at the end of the grace period
  EXPECT_EQ(a.decide().outcome, Outcome::release);
  a.exec.host_error_kind.reset();  // finished during the grace period: completed
  EXPECT_EQ(a.decide().outcome, Outcome::completed);

  Attempt b;  // the executor gave the job back (its plugin is quarantined)
  b.exec.release = true;
  b.exec.status = JR_OK;
  EXPECT_EQ(b.decide().outcome, Outcome::release);
}

}  // namespace
}  // namespace jr
