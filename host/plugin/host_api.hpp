// The host side of the plugin ABI: the jr_host_api function table handed to plugins, and the
// per-call context (jr_job_ctx) behind it. HostServices is what a context forwards to: the
// engine in-process, or the IPC channel inside a sandbox worker.
//
// Threading: one jr_job_ctx per running call; its fields are written by the plugin's threads
// during that call and read by the engine after the call returns. `cancel` may be set from any
// thread at any time; `usage` is updated by whichever thread makes a host call.
//
// Strings reaching HostServices have been bounded at the edge (bounds.hpp): host_api.cpp for
// in-process plugins, sandbox/exchange.cpp for workers.
#pragma once

#include <jobrunner/abi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace jr {

// Why the host asked a job to stop (0 = it did not).
enum CancelReason : int { kNoCancel = 0, kCancelUser = 1, kCancelTimeout = 2, kCancelShutdown = 3 };

class HostServices {
 public:
  virtual ~HostServices() = default;
  virtual void job_log(jr_job_ctx* ctx, int level, std::string_view msg) = 0;
  virtual void job_progress(jr_job_ctx* ctx, double percent, std::string_view step) = 0;
  // Returns the new job id, or -1 with the reason logged.
  virtual int64_t job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                              std::string_view options_json) = 0;
  // A page of the results of the job's parents (jr.parent_results.v1: JSON text in *page) of
  // at most `max_bytes` (the host's page cap when larger); 0, or -1 with the reason logged.
  virtual int job_parent_results(jr_job_ctx* /*ctx*/, uint32_t /*offset*/, uint32_t /*max_bytes*/,
                                 std::string* /*page*/) {
    return -1;
  }
};

// The jr_host_api table every plugin receives (static storage).
const jr_host_api* host_api();

// The extensions host_api()->get_extension offers ("jr.error_kind.v1", "jr.trace.v1",
// "jr.parent_results.v1"); NULL for other ids.
// The sandbox worker's own get_extension falls back to this.
const void* host_extension(const char* id);

// What one call (a job attempt or an idle call) has used of the host's services, for the
// per-call budgets the engine enforces (EngineOptions). Plugin threads may call concurrently.
struct CallUsage {
  std::atomic<int64_t> log_lines{0};
  std::atomic<int64_t> log_bytes{0};
  std::atomic<int64_t> log_suppressed{0};  // lines dropped once the budget was used up
  std::atomic<int64_t> log_suppressed_bytes{0};
  std::atomic<int64_t> enqueues{0};        // requests, refused ones included
  std::atomic<int64_t> parent_results{0};  // jr.parent_results.v1 calls, refused ones included
  // Progress: the latest value, written to the database at most every progress interval and
  // once more before the outcome (Engine). Guarded by progress_mu.
  std::mutex progress_mu;
  bool progress_seen = false;   // the call reported progress at least once
  bool progress_dirty = false;  // the latest value is not written yet
  double progress_percent = 0;
  std::string progress_step;
  int64_t progress_written_ms = 0;  // steady clock
};

}  // namespace jr

struct jr_job_ctx {
  int64_t job_id = 0;
  int attempt = 0;
  std::string kind;
  jr::HostServices* services = nullptr;
  std::atomic<int> cancel{jr::kNoCancel};

  // Written by the plugin during the call (under `mu`, since plugin threads may race).
  std::mutex mu;
  bool has_result = false;
  std::string result;
  std::string error;
  std::string error_kind;  // the plugin's name for its failure (jr.error_kind.v1), validated
  // The attempt's W3C traceparent (jr.trace.v1), "" = none: set before the call, read-only during
  // it (trace_context.hpp, attempt_trace()).
  std::string traceparent;
  double snooze_seconds = 0;
  // In-process: the size of a result refused for exceeding bounds::kResultMax (0 = none).
  size_t result_refused_size = 0;

  // Set by the engine: the plugin making this call (for the enqueue rules) and its usage.
  std::string plugin;
  jr::CallUsage usage;
};
