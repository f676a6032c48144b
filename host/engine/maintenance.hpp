// Leader-elected maintenance: one runner at a time runs the services of maintenance/ (one file
// each; the list and their shared shape are in maintenance/service.hpp). Leadership is a lease
// in jr_leaders renewed every election interval and valid for three; a leader that dies, hangs
// or loses the database is replaced once its lease runs out. (A session advisory lock would
// survive a frozen-but-connected leader and stop rescues for as long as it hangs.)
//
// Threading: owns one thread; its statements run on the runner's shared services connection
// (MaintenanceOptions::shared, one batch at a time, so a long prune delays the other services
// on it but never lease renewal, which has its own) or on a connection of its own;
// start()/stop() from one thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "db_budget.hpp"
#include "maintenance/service.hpp"
#include "store.hpp"

namespace jr {

struct MaintenanceOptions {
  std::string database_url;
  std::string worker_id;
  double poll_interval_seconds = 1.0;    // scheduler, dependencies, cron
  double rescue_interval_seconds = 5.0;  // rescuer, expirer, aging, registry
  double prune_interval_seconds = 60.0;  // pruner
  double election_interval_seconds = 2.0;
  int default_max_attempts = 25;
  PruneParams prune;
  double priority_aging_seconds = 60;  // seconds of waiting per priority point; 0 = off
  double dead_worker_seconds = 60;     // registry rows without a heartbeat this long are deleted
  int64_t vacuum_dead_rows = 50000;    // vacuum jr_jobs after this many more dead rows; 0 = off
  SharedStore* shared = nullptr;       // the runner's services connection; null: one of its own
};

// The services a leader with these options runs, in the order it runs them when several are
// due together. Throws std::invalid_argument naming a bad setting.
std::vector<std::unique_ptr<MaintenanceService>> maintenance_services(const MaintenanceOptions& o,
                                                                      MaintenanceCounts& counts);

class Maintenance {
 public:
  explicit Maintenance(MaintenanceOptions opts);  // validates: std::invalid_argument
  ~Maintenance();
  void start();
  void stop();
  const MaintenanceCounts& counts() const { return counts_; }

 private:
  void loop();

  MaintenanceOptions opts_;
  MaintenanceCounts counts_;
  std::vector<std::unique_ptr<MaintenanceService>> services_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace jr
