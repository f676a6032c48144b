// What a runner publishes for the web dashboard, so that `runner ui` in another process (or on
// another host) can show it: every few seconds (at most every heartbeat) the runner writes its
// plugins' state (isolation, sandbox workers, restarts by reason, quarantine, the layers applied),
// refused plugins with their reasons and its running jobs as JSON into its jr_workers row
// (`details`), and adds the attempts that ended since the last write to jr_stats_minute (the
// Overview's throughput). It also names its database sessions "jobrunner PID@HOST"
// (application_name), so the dashboard counts each runner's connections in pg_stat_activity.
//
// Threading: count() is called from slot threads and is thread-safe; start()/stop() from one
// thread. The writer runs on its own thread, on the runner's shared services connection (or a
// connection of its own without one); a database error is logged (once per outage) and retried
// at the next interval, never fatal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <utility>

#include "db_budget.hpp"
#include "plugin_loader.hpp"

namespace jr::sandbox {
class SandboxExecutor;
}

namespace jr::ops {

// "jobrunner PID@HOST", at most 63 bytes (PostgreSQL's limit): set as PGAPPNAME (unless the
// environment already has one) before any connection is made. Not thread-safe: call at start.
std::string database_session_name();
void name_database_sessions();

// The dashboard's view of one plugin: name, version, sha256, kinds, isolation and, when
// sandboxed, workers (pool size), workers started, jobs, restarts by reason, quarantined,
// quarantines, the layers the last worker applied and the effective policy.
nlohmann::json plugin_state_json(const LoadedPlugin& p, const sandbox::SandboxExecutor* ex);
// Refused plugins (refused_plugins()) as JSON: [{"name", "file", "kind", "reason"}].
nlohmann::json refused_plugins_json();

// The runner registers what its plugins look like now (cli_worker.cpp); {} clears it.
void set_plugin_state_provider(std::function<nlohmann::json()> provider);
nlohmann::json plugin_state();  // [] without a provider

struct PublisherOptions {
  std::string database_url;
  std::string worker_id;
  double interval_seconds = 5;    // details and counts are written this often
  SharedStore* shared = nullptr;  // the runner's services connection; null: one of its own
};

class RunnerPublisher {
 public:
  // `details` is asked at every write for the JSON to publish; `collect` (may be empty) may add
  // counts (e.g. rescues) just before each write.
  RunnerPublisher(PublisherOptions opts, std::function<nlohmann::json()> details,
                  std::function<void(RunnerPublisher&)> collect = {});
  ~RunnerPublisher();
  void start();
  void stop();  // writes once more, then returns
  // An attempt ended with `outcome` (completed, retried, discarded, cancelled, snoozed,
  // released) now. Thread-safe.
  void count(const std::string& outcome, int64_t n = 1);
  // Writes now (also used by tests); returns false when the database refused.
  bool publish_once();

 private:
  void loop();
  PublisherOptions opts_;
  std::function<nlohmann::json()> details_;
  std::function<void(RunnerPublisher&)> collect_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::pair<int64_t, std::string>, int64_t> pending_;  // (unix minute, outcome) -> n
  std::thread thread_;
  std::unique_ptr<Store> own_;  // without opts_.shared; writer thread only
  bool failing_ = false;
  int64_t last_prune_ = 0;
};

}  // namespace jr::ops
