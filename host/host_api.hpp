// The host side of the plugin ABI: the jr_host_api function table handed to plugins, and the
// per-call context (jr_job_ctx) behind it. HostServices is what a context forwards to: the
// engine in-process, or the IPC channel inside a sandbox worker.
//
// Threading: one jr_job_ctx per running call; its fields are written by the plugin's threads
// during that call and read by the engine after the call returns. `cancel` may be set from any
// thread at any time.
#pragma once

#include <jobrunner/abi.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

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
};

// The jr_host_api table every plugin receives (static storage).
const jr_host_api* host_api();

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
  double snooze_seconds = 0;
};
