// pruner: finished jobs past their retention (result_ttl for completed ones, failure_ttl for
// dead letters, the cancelled retention for cancelled ones; a job's own ttl wins) are deleted.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Pruner final : public ServiceBase {
 public:
  Pruner(const PrunerOptions& o, MaintenanceCounts& c)
      : ServiceBase("pruner", o.interval_seconds, c), prune_(o.prune) {
    service_check::positive(name_, "batch", prune_.limit);
    service_check::non_negative(name_, "result_ttl_seconds", prune_.result_ttl_seconds);
    service_check::non_negative(name_, "failure_ttl_seconds", prune_.failure_ttl_seconds);
    service_check::non_negative(name_, "cancelled_ttl_seconds", prune_.cancelled_ttl_seconds);
  }
  Pass run_once(Store& s) override {
    int n = s.JobPrune(prune_);
    counts_.pruned += n;
    if (n > 0) log::info("pruner: finished jobs past their retention deleted", {{"count", n}});
    return {n, n >= prune_.limit};
  }

 private:
  PruneParams prune_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_pruner(const PrunerOptions& o, MaintenanceCounts& counts) {
  return std::make_unique<Pruner>(o, counts);
}

}  // namespace jr
