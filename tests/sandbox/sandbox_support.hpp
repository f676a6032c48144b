// Helpers for the sandbox tests: a HostServices that records what a sandboxed plugin asked the
// host for, a log observer, a one-call job runner, and a healthy background load (echo jobs
// through their own SandboxExecutor) that must keep completing while hostile plugins misbehave.
//
// The executor is tested directly with this fake HostServices (there is no database behind
// enqueue/progress here); the engine integration is tested by the lead through the runner.
#pragma once

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "host_api.hpp"
#include "sandbox.hpp"

namespace sbtest {

struct LogLine {
  jr::log::Level level;
  std::string msg;
  nlohmann::json fields;
};

class FakeServices : public jr::HostServices {
 public:
  void job_log(jr_job_ctx* ctx, int level, std::string_view msg) override {
    std::lock_guard<std::mutex> l(mu);
    logs.push_back({ctx ? ctx->job_id : 0, level, std::string(msg)});
  }
  void job_progress(jr_job_ctx*, double percent, std::string_view step) override {
    std::lock_guard<std::mutex> l(mu);
    progress.emplace_back(percent, std::string(step));
  }
  int64_t job_enqueue(jr_job_ctx*, std::string_view kind, std::string_view payload,
                      std::string_view options) override {
    std::lock_guard<std::mutex> l(mu);
    enqueued.push_back({std::string(kind), std::string(payload), std::string(options)});
    return 4242 + static_cast<int64_t>(enqueued.size());
  }
  bool logged(const std::string& needle) {
    std::lock_guard<std::mutex> l(mu);
    for (const auto& x : logs) {
      if (x.msg.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  struct Log {
    int64_t job_id;
    int level;
    std::string msg;
  };
  struct Enq {
    std::string kind, payload, options;
  };
  std::mutex mu;
  std::vector<Log> logs;
  std::vector<std::pair<double, std::string>> progress;
  std::vector<Enq> enqueued;
};

// Collects the sandbox's own log lines (SandboxOptions::log_observer).
class LogCapture {
 public:
  void attach(jr::sandbox::SandboxOptions& o) {
    o.log_observer = [this](jr::log::Level l, const std::string& m, const nlohmann::json& f) {
      std::lock_guard<std::mutex> lock(mu_);
      lines_.push_back({l, m, f});
    };
  }
  // A line whose message contains `msg` and, when given, whose error_kind field equals `kind`.
  bool has(const std::string& msg, const std::string& kind = "") {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& l : lines_) {
      if (l.msg.find(msg) == std::string::npos) continue;
      if (kind.empty() || l.fields.value("error_kind", "") == kind) return true;
    }
    return false;
  }
  int count(const std::string& msg) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& l : lines_) n += l.msg.find(msg) != std::string::npos;
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<LogLine> lines_;
};

struct JobRun {
  jr::ExecOutcome out;
  bool has_result = false;
  std::string result;
  std::string error;
  double snooze = 0;
  int64_t elapsed_ms = 0;
};

// Runs one job. `timeout_ms` > 0 sets the deadline; `cancel_after_ms` >= 0 sets ctx.cancel to
// `cancel_reason` from another thread after that long.
JobRun run_job(jr::Executor& ex, const std::string& kind, const std::string& payload,
               FakeServices* services, int64_t timeout_ms = 0, int64_t cancel_after_ms = -1,
               int cancel_reason = jr::kCancelUser);

std::string hostile(const std::string& c);  // path of the hostile_<c> plugin
std::string echo_path();

// A plugin as the host knows it after describe_in_sandbox().
jr::LoadedPlugin describe(const std::string& path);

std::unique_ptr<jr::sandbox::SandboxExecutor> make(const std::string& path,
                                                   const nlohmann::json& config,
                                                   jr::sandbox::SandboxOptions opts);

// Echo jobs in a loop on a background thread through their own sandboxed executor.
class HealthyLoad {
 public:
  HealthyLoad();
  ~HealthyLoad();
  void stop();
  int64_t ok() const { return ok_; }
  int64_t bad() const { return bad_; }
  std::string last_error() {
    std::lock_guard<std::mutex> l(mu_);
    return last_error_;
  }

 private:
  std::unique_ptr<jr::sandbox::SandboxExecutor> ex_;
  FakeServices services_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0}, bad_{0};
  std::mutex mu_;
  std::string last_error_;
  std::thread thread_;
};

// Landlock ABI of this kernel (0 = unsupported), probed here with the raw syscall.
int kernel_landlock_abi();

}  // namespace sbtest
