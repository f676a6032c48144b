// How one attempt of a job runs. The engine owns the job's lifecycle (lease, deadline,
// outcome); an Executor only runs the plugin's handler, in-process (InProcessExecutor, for
// trusted plugins) or in a sandboxed worker process (sandbox/, the default).
//
// Contract: run() behaves as a call to the plugin's `handle`: whatever the plugin reports
// (result, error text, snooze) lands in `ctx` exactly as the in-process path leaves it, and host
// calls the plugin makes (log, progress, enqueue) go to ctx.services. The engine may set
// ctx.cancel at any time (cancel, timeout, shutdown); an executor that can, enforces it
// (a sandbox kills the worker once the deadline has passed). When the plugin could not
// report an outcome (crash, seccomp kill, out of memory, protocol error), run() says so in
// host_error_kind.
//
// Threading: run() is called concurrently from the engine's slot threads.
#pragma once

#include <jobrunner/abi.h>

#include <cstdint>
#include <string>

#include "host_api.hpp"
#include "plugin_loader.hpp"

namespace jr {

struct ExecOutcome {
  int32_t status = JR_ERR_RETRYABLE;  // the plugin's jr_status, when host_error_kind is empty
  // Set when the host, not the plugin, decided the outcome: "crash", "seccomp", "oom",
  // "timeout", "protocol", "unavailable". The attempt fails retryably with this kind.
  std::string host_error_kind;
  std::string host_error;
  // Put the job back without using an attempt (the plugin is quarantined, or shutting down).
  bool release = false;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // `deadline_steady_ms`: steady-clock ms after which the attempt may be killed; 0 = none.
  virtual ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline_steady_ms) = 0;
  // Calls the plugin's idle hook (see abi.h); returns its result, or -1 without a hook.
  virtual int32_t idle(jr_job_ctx& /*ctx*/) { return -1; }
};

// Calls the plugin's handle in this process. Cannot stop a handler that ignores cancellation.
class InProcessExecutor final : public Executor {
 public:
  explicit InProcessExecutor(LoadedPlugin* plugin) : plugin_(plugin) {}
  ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t) override {
    ExecOutcome out;
    out.status = plugin_->desc->handle(plugin_->state, host_api(), &ctx, &job);
    return out;
  }
  int32_t idle(jr_job_ctx& ctx) override {
    if (!plugin_->has_idle) return -1;
    return plugin_->desc->idle(plugin_->state, host_api(), &ctx);
  }

 private:
  LoadedPlugin* plugin_;
};

}  // namespace jr
