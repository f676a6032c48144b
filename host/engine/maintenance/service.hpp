// The maintenance services: what the elected leader (maintenance.cpp) runs on its timers. Each
// is one file of the same shape:
//
//   Options         its settings; make_<service>() validates them and throws
//                   std::invalid_argument naming the bad one
//   run_once(store) one batch of work: counted in MaintenanceCounts, logged when it did
//                   something, returned as a Pass; throws StoreError. Tests call it directly on
//                   any Store (tests/host/maintenance_test.cpp runs each on the in-memory store)
//
// A pass that did a full batch says `more`: the leader calls it again at once, one batch per
// statement on the shared services connection, so a large backlog (a million finished jobs to
// prune) never holds that connection for the whole of it. Otherwise it runs again after its
// interval.
//
//   service       what it does                                              interval
//   scheduler     due scheduled and retryable jobs -> available             poll
//   dependencies  waiting jobs whose parents finished -> available/cancelled  poll
//   cron          due periodic entries -> one job per tick                  poll
//   aging         long-waiting jobs gain priority (off at 0 s per point)    rescue
//   rescuer       expired leases -> retryable, or dead letter               rescue
//   expirer       jobs whose ttl passed before they started -> cancelled    rescue
//   registry      runners without a heartbeat -> removed from the registry  rescue
//   pruner        finished jobs past their retention -> deleted              prune
//   vacuum        the hot table, once its dead rows piled up -> VACUUM       poll
//
// Idle hooks and webhook delivery are background work too but not services of the leader: an
// idle hook is plugin code that may run for minutes (each plugin's hook has a thread of its own,
// and a lock instead of the election), and webhook delivery waits on remote HTTP servers and
// runs on every runner (ops/webhooks.hpp). Neither may hold up the rescuer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "store.hpp"

namespace jr {

// What the services did, for metrics and `runner info` (read from other threads).
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
  std::atomic<int64_t> vacuums{0};         // VACUUMs of the hot table
  std::atomic<bool> leader{false};
};

// One batch's work: rows changed, and whether the batch was full (more may be waiting).
struct Pass {
  int64_t done = 0;
  bool more = false;
};

class MaintenanceService {
 public:
  virtual ~MaintenanceService() = default;
  virtual std::string_view name() const = 0;
  virtual double interval_seconds() const = 0;
  virtual Pass run_once(Store& s) = 0;
};

struct SchedulerOptions {
  double interval_seconds = 1.0;
  int batch = 1000;
};
std::unique_ptr<MaintenanceService> make_scheduler(const SchedulerOptions& o,
                                                   MaintenanceCounts& counts);

struct DependenciesOptions {
  double interval_seconds = 1.0;
  int batch = 1000;
};
std::unique_ptr<MaintenanceService> make_dependencies(const DependenciesOptions& o,
                                                      MaintenanceCounts& counts);

struct CronOptions {
  double interval_seconds = 1.0;
};
std::unique_ptr<MaintenanceService> make_cron(const CronOptions& o, MaintenanceCounts& counts);

struct AgingOptions {
  double interval_seconds = 5.0;
  double seconds_per_point = 60;  // > 0; a runner with aging off has no aging service
  int batch = 5000;
};
std::unique_ptr<MaintenanceService> make_aging(const AgingOptions& o, MaintenanceCounts& counts);

struct RescuerOptions {
  double interval_seconds = 5.0;
  int batch = 500;
  int default_max_attempts = 25;  // for jobs without their own max_attempts
};
std::unique_ptr<MaintenanceService> make_rescuer(const RescuerOptions& o,
                                                 MaintenanceCounts& counts);

struct ExpirerOptions {
  double interval_seconds = 5.0;
  int batch = 1000;
};
std::unique_ptr<MaintenanceService> make_expirer(const ExpirerOptions& o,
                                                 MaintenanceCounts& counts);

struct RegistryOptions {
  double interval_seconds = 5.0;
  double dead_after_seconds = 60;  // a runner silent this long is gone
};
std::unique_ptr<MaintenanceService> make_registry(const RegistryOptions& o,
                                                  MaintenanceCounts& counts);

struct PrunerOptions {
  double interval_seconds = 60.0;
  PruneParams prune;  // retention per final state; prune.limit is the batch
};
std::unique_ptr<MaintenanceService> make_pruner(const PrunerOptions& o, MaintenanceCounts& counts);

struct VacuumOptions {
  double interval_seconds = 1.0;
  int64_t dead_rows = 50000;  // > 0; a runner with it off (0) has no vacuum service
};
std::unique_ptr<MaintenanceService> make_vacuum(const VacuumOptions& o, MaintenanceCounts& counts);

namespace service_check {
// std::invalid_argument "maintenance service <service>: <setting> must be > 0 (got v)" unless
// v > 0.
void positive(std::string_view service, std::string_view setting, double v);
// The same unless v >= 0.
void non_negative(std::string_view service, std::string_view setting, double v);
}  // namespace service_check

// What every service shares: its name and its interval, checked.
class ServiceBase : public MaintenanceService {
 public:
  ServiceBase(std::string_view name, double interval_seconds, MaintenanceCounts& counts)
      : name_(name), interval_(interval_seconds), counts_(counts) {
    service_check::positive(name, "interval_seconds", interval_seconds);
  }
  std::string_view name() const override { return name_; }
  double interval_seconds() const override { return interval_; }

 protected:
  std::string_view name_;  // a literal
  double interval_;
  MaintenanceCounts& counts_;
};

}  // namespace jr
