// aging: a job that has waited gains one priority point per seconds_per_point, up to the top
// priority waiting, so a stream of high-priority work cannot starve the rest forever.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Aging final : public ServiceBase {
 public:
  Aging(const AgingOptions& o, MaintenanceCounts& c)
      : ServiceBase("aging", o.interval_seconds, c),
        seconds_per_point_(o.seconds_per_point),
        batch_(o.batch) {
    service_check::positive(name_, "seconds_per_point", seconds_per_point_);
    service_check::positive(name_, "batch", batch_);
  }
  Pass run_once(Store& s) override {
    int n = s.JobAgePriorities(seconds_per_point_, batch_);
    counts_.aged += n;
    if (n > 0) log::debug("aging: priorities raised", {{"count", n}});
    // One batch per interval: aging is a nudge, not a backlog (the next pass takes the rest).
    return {n, false};
  }

 private:
  double seconds_per_point_;
  int batch_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_aging(const AgingOptions& o, MaintenanceCounts& counts) {
  return std::make_unique<Aging>(o, counts);
}

}  // namespace jr
