// scheduler: scheduled jobs whose time has come, and retryable jobs whose backoff has passed,
// become available.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Scheduler final : public ServiceBase {
 public:
  Scheduler(const SchedulerOptions& o, MaintenanceCounts& c)
      : ServiceBase("scheduler", o.interval_seconds, c), batch_(o.batch) {
    service_check::positive(name_, "batch", batch_);
  }
  Pass run_once(Store& s) override {
    int n = s.JobPromoteDue(batch_);
    counts_.promoted += n;
    if (n > 0) log::debug("scheduler: jobs made available", {{"count", n}});
    return {n, n >= batch_};
  }

 private:
  int batch_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_scheduler(const SchedulerOptions& o,
                                                   MaintenanceCounts& counts) {
  return std::make_unique<Scheduler>(o, counts);
}

}  // namespace jr
