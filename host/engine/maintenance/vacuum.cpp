// vacuum: the hot table (jr_jobs) is vacuumed once `dead_rows` more dead row versions than its
// last vacuum left have piled up. Every claim and completion leaves one, and autovacuum looks
// at a table once a minute at most: in between, a long drain's claims walk past the dead entries
// their own earlier claims left at the head of the available-jobs index, and slow down as the
// queue drains (bench/scale/vacuum_ab.sh: a 300,000-job drain 1.24x as fast with a vacuum every
// 2 s). What a vacuum could not remove (an open snapshot still sees it, or the runner's role
// does not own the table and PostgreSQL skipped it) becomes the new baseline, so a vacuum that
// cannot help is not repeated until as many more dead rows have come.
#include <chrono>

#include "log.hpp"
#include "service.hpp"

namespace jr {
namespace {

class Vacuum final : public ServiceBase {
 public:
  Vacuum(const VacuumOptions& o, MaintenanceCounts& c)
      : ServiceBase("vacuum", o.interval_seconds, c), dead_rows_(o.dead_rows) {
    service_check::positive(name_, "dead_rows", static_cast<double>(dead_rows_));
  }
  Pass run_once(Store& s) override {
    int64_t dead = s.JobsDeadRows();
    if (dead < baseline_) baseline_ = dead;  // vacuumed meanwhile (autovacuum, another leader)
    if (dead - baseline_ < dead_rows_) return {};
    auto start = std::chrono::steady_clock::now();
    s.JobsVacuum();
    baseline_ = s.JobsDeadRows();
    counts_.vacuums++;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - start)
                  .count();
    log::info("vacuum: jr_jobs vacuumed",
              {{"dead_rows_before", dead}, {"dead_rows_after", baseline_}, {"ms", ms}});
    return {1, false};
  }

 private:
  int64_t dead_rows_;
  int64_t baseline_ = 0;  // dead rows the last vacuum left
};

}  // namespace

std::unique_ptr<MaintenanceService> make_vacuum(const VacuumOptions& o, MaintenanceCounts& counts) {
  return std::make_unique<Vacuum>(o, counts);
}

}  // namespace jr
