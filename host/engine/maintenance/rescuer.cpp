// rescuer: a running job whose lease expired (its runner died, froze or lost the database) is
// given back: retryable with a `lease_lost` error, or dead-lettered when it has no attempts left.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Rescuer final : public ServiceBase {
 public:
  Rescuer(const RescuerOptions& o, MaintenanceCounts& c)
      : ServiceBase("rescuer", o.interval_seconds, c),
        batch_(o.batch),
        default_max_attempts_(o.default_max_attempts) {
    service_check::positive(name_, "batch", batch_);
    service_check::positive(name_, "default_max_attempts", default_max_attempts_);
  }
  Pass run_once(Store& s) override {
    RescueResult r = s.JobRescueExpired(batch_, default_max_attempts_);
    counts_.rescued += r.retried;
    counts_.rescued_to_dlq += r.discarded;
    int n = r.retried + r.discarded;
    if (n > 0) {
      log::warn("rescuer: jobs with expired leases recovered",
                {{"retried", r.retried}, {"dead_lettered", r.discarded}});
    }
    return {n, n >= batch_};
  }

 private:
  int batch_;
  int default_max_attempts_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_rescuer(const RescuerOptions& o,
                                                 MaintenanceCounts& counts) {
  return std::make_unique<Rescuer>(o, counts);
}

}  // namespace jr
