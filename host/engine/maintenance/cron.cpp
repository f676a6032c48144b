// cron: each periodic entry whose next tick has come enqueues one job for that tick (the tick
// is the job's unique key, so two leaders in a handover cannot enqueue it twice).
#include "cron.hpp"

#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Cron final : public ServiceBase {
 public:
  Cron(const CronOptions& o, MaintenanceCounts& c) : ServiceBase("cron", o.interval_seconds, c) {}
  Pass run_once(Store& s) override {
    int n = s.CronRun(
        [](const std::string& schedule, const std::string& after) -> std::optional<std::string> {
          try {
            auto next = CronSchedule::parse(schedule).next_after(LocalTime::parse(after));
            if (next) return next->str();
          } catch (const std::invalid_argument& e) {
            log::error("cron: bad schedule", {{"schedule", schedule}, {"error", e.what()}});
          }
          return std::nullopt;
        });
    counts_.cron_enqueued += n;
    if (n > 0) log::info("cron: periodic jobs enqueued", {{"count", n}});
    return {n, false};  // every due entry in one pass
  }
};

}  // namespace

std::unique_ptr<MaintenanceService> make_cron(const CronOptions& o, MaintenanceCounts& counts) {
  return std::make_unique<Cron>(o, counts);
}

}  // namespace jr
