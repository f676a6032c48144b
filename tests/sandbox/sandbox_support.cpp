#include "sandbox_support.hpp"

#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

namespace sbtest {

JobRun run_job(jr::Executor& ex, const std::string& kind, const std::string& payload,
               FakeServices* services, int64_t timeout_ms, int64_t cancel_after_ms,
               int cancel_reason) {
  static std::atomic<int64_t> next_id{1};
  JobRun r;
  jr_job_ctx ctx;
  ctx.job_id = next_id++;
  ctx.attempt = 1;
  ctx.kind = kind;
  ctx.services = services;
  jr_job j{};
  j.struct_size = sizeof(jr_job);
  j.id = ctx.job_id;
  j.kind = kind.c_str();
  j.queue = "default";
  j.payload = payload.c_str();
  j.payload_len = payload.size();
  j.attempt = 1;
  j.max_attempts = 3;
  auto t0 = std::chrono::steady_clock::now();
  int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t0.time_since_epoch()).count();
  std::thread canceller;
  if (cancel_after_ms >= 0) {
    canceller = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(cancel_after_ms));
      ctx.cancel.store(cancel_reason);
    });
  }
  r.out = ex.run(j, ctx, timeout_ms > 0 ? now_ms + timeout_ms : 0);
  r.elapsed_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  if (canceller.joinable()) canceller.join();
  std::lock_guard<std::mutex> l(ctx.mu);
  r.has_result = ctx.has_result;
  r.result = ctx.result;
  r.error = ctx.error;
  r.snooze = ctx.snooze_seconds;
  return r;
}

std::string hostile(const std::string& c) {
  std::string name = c == "oom" ? "jr_h_oom" : "jr_h_" + c;
  return jrtest::test_plugin_dir() + "/hostile_" + c + "/lib" + name + ".so";
}

std::string echo_path() { return jrtest::plugin_dir() + "/libjr_echo.so"; }

jr::LoadedPlugin describe(const std::string& path) {
  return jr::sandbox::describe_in_sandbox(path);
}

std::unique_ptr<jr::sandbox::SandboxExecutor> make(const std::string& path,
                                                   const nlohmann::json& config,
                                                   jr::sandbox::SandboxOptions opts) {
  return jr::sandbox::make_executor(describe(path), config, opts);
}

HealthyLoad::HealthyLoad() {
  jr::sandbox::SandboxOptions o;
  o.pool_size = 2;
  ex_ = make(echo_path(), nlohmann::json::object(), o);
  ex_->start();
  thread_ = std::thread([this] {
    int i = 0;
    while (!stop_) {
      std::string payload = (i++ % 2) ? "{}" : R"({"n":)" + std::to_string(i) + "}";
      JobRun r = run_job(*ex_, "echo", payload, &services_, 10000);
      bool good = !r.out.host_error_kind && !r.out.release && r.out.status == JR_OK &&
                  (payload == "{}" || r.result == payload);
      if (good) {
        ++ok_;
      } else {
        ++bad_;
        std::lock_guard<std::mutex> l(mu_);
        last_error_ =
            jr::name_of(r.out.host_error_kind) + ": " + r.out.host_error + " / " + r.error;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
}

void HealthyLoad::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

HealthyLoad::~HealthyLoad() { stop(); }

int kernel_landlock_abi() {
  long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return v < 0 ? 0 : static_cast<int>(v);
}

}  // namespace sbtest
