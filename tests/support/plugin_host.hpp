// Runs a real plugin .so for tests, without a database or engine, and records what the plugin
// told the host (result, error, snooze, progress, logs, enqueued jobs).
//
// Two modes, chosen by the environment (the same test binary runs in both, see jr_add_test's
// SANDBOXED option in tests/CMakeLists.txt):
//   in-process (default): loads the plugin with the host's loader and calls its handle directly;
//   JR_TEST_ISOLATION=sandbox: runs it exactly as `runner` does by default, in confined jr-worker
//     processes (SandboxExecutor) with the policy its manifest declares plus the config's
//     [sandbox] section, so the plugin's tests prove it works inside its own policy.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "executor.hpp"
#include "host_api.hpp"
#include "plugin_loader.hpp"

namespace jrtest {

struct Enqueued {
  std::string kind;
  nlohmann::json payload;
  nlohmann::json options;
};

struct JobOutcome {
  int32_t status = -1;  // jr_status
  std::string result;   // JSON text ("" when none)
  std::string error;
  double snooze_seconds = 0;
  std::vector<std::pair<double, std::string>> progress;  // percent, step
  std::vector<std::string> logs;
};

// Why a PluginHost for this plugin and config does not start (the init's refusal, in-process
// or sandboxed), "" when it starts: for tests that assert the plugin names the bad setting.
std::string start_error(const std::string& so_path, const nlohmann::json& config);

class PluginHost : public jr::HostServices {
 public:
  PluginHost(const std::string& so_path, const nlohmann::json& config);
  ~PluginHost() override;

  JobOutcome run(const std::string& kind, const std::string& payload, int attempt = 1,
                 int64_t job_id = 1);
  // Calls the idle hook; returns its return value. Throws if the plugin has none.
  int idle();

  // The plugin's descriptor data. Sandboxed: read inside a worker (desc/state stay null).
  jr::LoadedPlugin& plugin() { return plugin_; }
  bool sandboxed() const { return executor_ != nullptr; }
  static bool sandbox_requested();
  std::vector<Enqueued> enqueued();

  void job_log(jr_job_ctx* ctx, int level, std::string_view msg) override;
  void job_progress(jr_job_ctx* ctx, double percent, std::string_view step) override;
  int64_t job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                      std::string_view options_json) override;

 private:
  jr::LoadedPlugin plugin_;
  std::unique_ptr<jr::Executor> executor_;  // sandboxed mode only
  std::mutex mu_;
  std::vector<Enqueued> enqueued_;
  JobOutcome* current_ = nullptr;
  int64_t next_id_ = 1000000;
};

}  // namespace jrtest
