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
// Readiness: a plugin is brought up by start_plugin() (its init), which the engine calls from a
// background thread and retries with backoff while it fails; the engine claims a plugin's kinds
// only while ready() says so.
//
// Threading: run() is called concurrently from the engine's slot threads, idle() from the
// plugin's idle thread, start_plugin() from its start-up thread; ready() from any thread.
#pragma once

#include <jobrunner/abi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bounds.hpp"
#include "error_kind.hpp"
#include "host_api.hpp"
#include "plugin_loader.hpp"

namespace jr {

struct ExecOutcome {
  int32_t status = JR_ERR_RETRYABLE;  // the plugin's jr_status, when host_error_kind is empty
  // Set when the host, not the plugin, decided the outcome: crash, seccomp, oom, timeout,
  // protocol, unavailable, ... The attempt fails retryably with this kind.
  std::optional<ErrorKind> host_error_kind;
  std::string host_error;
  // Put the job back without using an attempt (the plugin is quarantined, or shutting down).
  bool release = false;
  // How long the job waited for the executor before it ran (a free sandbox worker), in us: not
  // the job's own time (the engine's average job time, which sizes groups and the prefetch,
  // leaves it out; counted in, waits shrank groups to single jobs, whose round trips made the
  // waits longer still).
  int64_t waited_us = 0;
};

// One job of a batch (Executor::run_batch).
struct BatchJob {
  const jr_job* job = nullptr;
  jr_job_ctx* ctx = nullptr;
  int64_t timeout_ms = 0;  // counted from the job's own start; 0 = none
};

// What the engine hears of a batch, in job order, on the thread that called run_batch.
class BatchSink {
 public:
  virtual ~BatchSink() = default;
  // Asked before job i (i > 0) is handed to the plugin's side; false: it is not, and finished()
  // reports it released (shutdown: a job not yet handed over goes back unstarted).
  virtual bool may_send(size_t i) = 0;
  // Job i started (its timeout counts from `steady_ms`).
  virtual void started(size_t i, int64_t steady_ms) = 0;
  // Job i's outcome, exactly once per job; started() came first unless it was released unstarted.
  virtual void finished(size_t i, ExecOutcome out) = 0;
};

class Executor {
 public:
  virtual ~Executor() = default;
  // `deadline_steady_ms`: steady-clock ms after which the attempt may be killed; 0 = none.
  virtual ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline_steady_ms) = 0;

  // Several short jobs of this executor's plugin, one after another, each a separate attempt
  // with its own outcome, timeout and cancellation. An executor whose per-job cost is a round
  // trip (the sandbox) hands them over together; the default runs them one by one through run().
  // The engine batches only while its local queue is deep and jobs are short (engine.cpp,
  // slot_loop), so a batch never holds more than a few milliseconds of work.
  virtual size_t batch_limit() const { return 1; }
  // How many of its jobs (or groups) can run at once now: a sandbox pool's workers. The engine
  // divides what waits by it to size a group, so slots beyond it, which would only wait for a
  // worker, do not make every group smaller. Unbounded by default (the slots are the limit).
  virtual size_t parallelism() const { return SIZE_MAX; }
  virtual void run_batch(const std::vector<BatchJob>& jobs, BatchSink& sink);
  // Calls the plugin's idle hook (see abi.h); returns its result, or -1 without a hook or when
  // the call failed. An executor that can (the sandbox) kills the call at the deadline (0 =
  // none) or once ctx.cancel is set.
  virtual int32_t idle(jr_job_ctx& /*ctx*/, int64_t /*deadline_steady_ms*/) { return -1; }

  // Brings the plugin up (its init). True when it is ready; false with `why` when it could not
  // be (the engine retries with backoff and claims none of its kinds meanwhile). Called from one
  // thread at a time; may take as long as the plugin's init.
  virtual bool start_plugin(std::string* /*why*/) { return true; }
  // Whether the plugin can take jobs now; `why` says why not. Thread-safe, cheap.
  virtual bool ready(std::string* /*why*/) const { return true; }
  // Shutdown: a start_plugin() in progress returns soon (false), and no new one starts.
  // Thread-safe, does not block. An executor that cannot stop a start (in-process) ignores it.
  virtual void cancel_starts() {}
  // Whether a call that ignores cancellation can be stopped (a sandboxed worker is killed; an
  // in-process call cannot be).
  virtual bool can_stop_calls() const { return false; }
};

// Calls the plugin's handle in this process. Cannot stop a handler that ignores cancellation.
class InProcessExecutor final : public Executor {
 public:
  // `config`: the plugin's config section, handed to its init by start_plugin().
  explicit InProcessExecutor(LoadedPlugin* plugin, nlohmann::json config = nlohmann::json::object())
      : plugin_(plugin), config_(std::move(config)), initialised_(plugin->initialised) {}
  ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t) override {
    ExecOutcome out;
    out.status = plugin_->desc->handle(plugin_->state, host_api(), &ctx, &job);
    std::lock_guard<std::mutex> lock(ctx.mu);
    if (ctx.result_refused_size > 0 && out.status == JR_OK) {
      out.host_error_kind = ErrorKind::protocol;
      out.host_error = "result of " + std::to_string(ctx.result_refused_size) +
                       " bytes exceeds the limit of " + std::to_string(bounds::kResultMax) +
                       " bytes";
    }
    return out;
  }
  int32_t idle(jr_job_ctx& ctx, int64_t) override {
    if (!plugin_->has_idle) return -1;
    return plugin_->desc->idle(plugin_->state, host_api(), &ctx);
  }
  bool start_plugin(std::string* why) override {
    if (plugin_->initialised) return true;
    try {
      init_plugin(*plugin_, config_);
    } catch (const std::exception& e) {
      *why = e.what();
      return false;
    }
    initialised_ = true;
    return true;
  }
  bool ready(std::string* why) const override {
    if (initialised_.load()) return true;
    *why = "not initialised";
    return false;
  }

 private:
  LoadedPlugin* plugin_;
  nlohmann::json config_;
  std::atomic<bool> initialised_;  // plugin_->initialised, readable from any thread
};

}  // namespace jr
