// expirer: a job with a ttl that did not start within it is cancelled (error kind `expired`)
// rather than run late.
#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Expirer final : public ServiceBase {
 public:
  Expirer(const ExpirerOptions& o, MaintenanceCounts& c)
      : ServiceBase("expirer", o.interval_seconds, c), batch_(o.batch) {
    service_check::positive(name_, "batch", batch_);
  }
  Pass run_once(Store& s) override {
    int n = s.JobExpireTtl(batch_);
    counts_.expired += n;
    if (n > 0) log::info("expirer: jobs cancelled because their ttl passed", {{"count", n}});
    return {n, n >= batch_};
  }

 private:
  int batch_;
};

}  // namespace

std::unique_ptr<MaintenanceService> make_expirer(const ExpirerOptions& o,
                                                 MaintenanceCounts& counts) {
  return std::make_unique<Expirer>(o, counts);
}

}  // namespace jr
