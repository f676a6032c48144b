// The engine's decision for one finished attempt: from what the executor reported (the plugin's
// status, or an error the host decided: crash, seccomp, oom, timeout, protocol, unavailable),
// what the plugin wrote into its context (result, error, error kind, snooze), the cancel
// reason in force, and the limits of the job and its kind, which outcome the completer writes.
// A pure function of its arguments (the retry jitter is one of them), so every rule is tested
// without a database or a plugin (tests/host/outcome_test.cpp, `ctest -L unit`).
//
// The rules, in order:
//   1. released: the executor gave the job back (quarantine, shutdown), or the job was stopped
//      for shutdown and did not complete: back to available, no attempt used;
//   2. a host-decided error: "timeout" (or any stop past the deadline) fails as a timeout; a
//      stop on request is cancelled; any other kind fails with that kind;
//   3. a stop past the deadline that did not complete is a timeout;
//   4. the plugin's status: OK completes (with its result); RETRYABLE fails with its error
//      kind ("error" if none); PERMANENT goes to the dead letter queue ("permanent"); SNOOZE
//      comes back after its delay without using an attempt; CANCELLED is cancelled when a
//      cancel was requested, else a retryable error; any other status is a protocol error.
// A failure that may be retried is retried after the job's retry schedule (else the kind's,
// else exponential backoff with jitter) while attempts are left, and dead-lettered with
// "(attempt N of M: no attempts left)" once they are not.
#pragma once

#include "executor.hpp"
#include "host_api.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

namespace jr {

// `ctx` must be locked by the caller (ctx.mu); its result is moved into the outcome. `cancel` is
// the CancelReason in force; `jitter01` in [0, 1) draws the backoff when no schedule applies.
[[nodiscard]] JobFinish decide_outcome(const ClaimedJob& job, const KindInfo& kind,
                                       int default_max_attempts, const ExecOutcome& exec,
                                       jr_job_ctx& ctx, int cancel, double jitter01);

}  // namespace jr
