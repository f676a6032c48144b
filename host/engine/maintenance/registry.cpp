// registry: a runner that stopped heartbeating (killed, or its machine gone) is removed from
// jr_workers, so `runner workers` and the dashboard show the runners that are there.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Registry final : public ServiceBase {
 public:
  Registry(const RegistryOptions& o, MaintenanceCounts& c)
      : ServiceBase("registry", o.interval_seconds, c), dead_after_(o.dead_after_seconds) {
    service_check::positive(name_, "dead_after_seconds", dead_after_);
  }
  Pass run_once(Store& s) override {
    int n = s.WorkerPruneDead(dead_after_);
    counts_.workers_pruned += n;
    if (n > 0) log::info("registry: runners without a heartbeat removed", {{"count", n}});
    return {n, false};
  }

 private:
  double dead_after_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_registry(const RegistryOptions& o,
                                                  MaintenanceCounts& counts) {
  return std::make_unique<Registry>(o, counts);
}

}  // namespace jr
