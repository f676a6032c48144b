// Leader-elected maintenance: one runner at a time runs the services below. Leadership is a
// lease in jr_leaders renewed every election interval and valid for three; a leader that dies,
// hangs or loses the database is replaced once its lease runs out. (A session advisory lock
// would survive a frozen-but-connected leader and stop rescues for as long as it hangs.)
//
//   scheduler  due scheduled/retryable jobs -> available           every poll_interval
//   rescuer    expired leases -> retryable, or dead letter           every rescue_interval
//   expirer    jobs whose ttl passed before starting -> cancelled   every rescue_interval
//   pruner     finished jobs past result_ttl / failure_ttl -> gone  every prune_interval
//   deps       waiting jobs whose parents completed -> available     every poll_interval
//   aging      long-waiting low-priority jobs gain priority          every poll_interval
//   cron       due periodic entries -> one job per tick              every poll_interval
//
// Each service's run_once() returns what it did and logs only when it did something.
// Threading: owns one thread; its statements run on the runner's shared services connection
// (MaintenanceOptions::shared, one statement at a time, so a long prune delays the other
// services on it but never lease renewal, which has its own) or on a connection of its own;
// start()/stop() from one thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "db_budget.hpp"
#include "store.hpp"

namespace jr {

struct MaintenanceOptions {
  std::string database_url;
  std::string worker_id;
  double poll_interval_seconds = 1.0;    // scheduler
  double rescue_interval_seconds = 5.0;  // rescuer and expirer
  double prune_interval_seconds = 60.0;  // pruner
  double election_interval_seconds = 2.0;
  int default_max_attempts = 25;
  PruneParams prune;
  double priority_aging_seconds = 60;  // seconds of waiting per priority point; 0 = off
  double dead_worker_seconds = 60;     // registry rows without a heartbeat this long are deleted
  SharedStore* shared = nullptr;       // the runner's services connection; null: one of its own
};

struct MaintenanceCounts {
  std::atomic<int64_t> promoted{0};
  std::atomic<int64_t> rescued{0};
  std::atomic<int64_t> rescued_to_dlq{0};
  std::atomic<int64_t> expired{0};
  std::atomic<int64_t> pruned{0};
  std::atomic<int64_t> deps_promoted{0};
  std::atomic<int64_t> deps_cancelled{0};
  std::atomic<int64_t> aged{0};
  std::atomic<int64_t> cron_enqueued{0};
  std::atomic<int64_t> workers_pruned{0};  // registry rows of dead runners deleted
  std::atomic<bool> leader{false};
};

class Maintenance {
 public:
  explicit Maintenance(MaintenanceOptions opts);
  ~Maintenance();
  void start();
  void stop();
  const MaintenanceCounts& counts() const { return counts_; }

  // One pass of each service, for tests and `runner` subcommands. Throws StoreError.
  int run_scheduler_once(Store& s);
  RescueResult run_rescuer_once(Store& s);
  int run_expirer_once(Store& s);
  int run_pruner_once(Store& s);
  std::pair<int, int> run_dependencies_once(Store& s);
  int run_aging_once(Store& s);
  int run_cron_once(Store& s);

 private:
  void loop();
  void note_pruned(int total);  // counts and logs a pruner pass

  MaintenanceOptions opts_;
  MaintenanceCounts counts_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace jr
