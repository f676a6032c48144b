// dependencies: a waiting job whose parents have all completed becomes available; one whose
// parent failed for good follows it (cancelled, the dependency named in its errors).
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Dependencies final : public ServiceBase {
 public:
  Dependencies(const DependenciesOptions& o, MaintenanceCounts& c)
      : ServiceBase("dependencies", o.interval_seconds, c), batch_(o.batch) {
    service_check::positive(name_, "batch", batch_);
  }
  Pass run_once(Store& s) override {
    auto [available, cancelled] = s.JobResolveDependencies(batch_);
    counts_.deps_promoted += available;
    counts_.deps_cancelled += cancelled;
    if (available + cancelled > 0) {
      log::info("dependencies: waiting jobs resolved",
                {{"available", available}, {"cancelled", cancelled}});
    }
    return {available + cancelled, available + cancelled >= batch_};
  }

 private:
  int batch_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_dependencies(const DependenciesOptions& o,
                                                      MaintenanceCounts& counts) {
  return std::make_unique<Dependencies>(o, counts);
}

}  // namespace jr
