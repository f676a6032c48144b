#include "maintenance.hpp"

#include <algorithm>
#include <chrono>

#include "clock.hpp"
#include "log.hpp"

namespace jr {
namespace {

int64_t ms(double seconds) { return static_cast<int64_t>(seconds * 1000); }

}  // namespace

std::vector<std::unique_ptr<MaintenanceService>> maintenance_services(const MaintenanceOptions& o,
                                                                      MaintenanceCounts& counts) {
  std::vector<std::unique_ptr<MaintenanceService>> v;
  // Every poll interval: what makes waiting jobs runnable.
  v.push_back(make_scheduler({o.poll_interval_seconds}, counts));
  v.push_back(make_dependencies({o.poll_interval_seconds}, counts));
  v.push_back(make_cron({o.poll_interval_seconds}, counts));
  // Every rescue interval. Aging looks at the top waiting priority, a scan of the available
  // jobs: often enough for seconds-per-point aging.
  if (o.priority_aging_seconds > 0) {
    AgingOptions a;
    a.interval_seconds = o.rescue_interval_seconds;
    a.seconds_per_point = o.priority_aging_seconds;
    v.push_back(make_aging(a, counts));
  }
  RescuerOptions r;
  r.interval_seconds = o.rescue_interval_seconds;
  r.default_max_attempts = o.default_max_attempts;
  v.push_back(make_rescuer(r, counts));
  v.push_back(make_expirer({o.rescue_interval_seconds}, counts));
  v.push_back(make_registry({o.rescue_interval_seconds, o.dead_worker_seconds}, counts));
  v.push_back(make_pruner({o.prune_interval_seconds, o.prune}, counts));
  // Every poll interval (one statistics read): drains are seconds long, autovacuum's look at
  // the table a minute apart.
  if (o.vacuum_dead_rows > 0) {
    v.push_back(make_vacuum({o.poll_interval_seconds, o.vacuum_dead_rows}, counts));
  }
  return v;
}

Maintenance::Maintenance(MaintenanceOptions opts)
    : opts_(std::move(opts)), services_(maintenance_services(opts_, counts_)) {}

Maintenance::~Maintenance() { stop(); }

void Maintenance::start() {
  thread_ = std::thread([this] { loop(); });
}

void Maintenance::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Maintenance::loop() {
  std::unique_ptr<Store> own;
  // One statement (one batch of a service) at a time on the shared connection.
  auto db = [&](auto&& fn) -> decltype(auto) {
    if (opts_.shared) return opts_.shared->with(fn);
    if (own && own->LostWhileIdle()) own.reset();
    if (!own) own = Store::open(opts_.database_url);
    return fn(*own);
  };
  std::vector<int64_t> due(services_.size(), 0);
  int64_t next_election = 0;
  int delay = 250;
  while (!stop_) {
    int64_t now = steady_ms();
    try {
      if (now >= next_election) {
        bool leader = db([&](Store& s) {
          return s.LeaderTryAcquire("maintenance", opts_.worker_id,
                                    opts_.election_interval_seconds * 3);
        });
        if (leader != counts_.leader.load()) {
          log::info(leader ? "elected maintenance leader" : "lost maintenance leadership",
                    {{"worker_id", opts_.worker_id}});
          counts_.leader = leader;
          std::fill(due.begin(), due.end(), now);  // a new leader starts at once
        }
        next_election = now + ms(opts_.election_interval_seconds);
      }
      for (size_t i = 0; counts_.leader && i < services_.size(); ++i) {
        if (now < due[i]) continue;
        MaintenanceService& svc = *services_[i];
        // A full batch: the next one at once, each its own statement on the shared connection.
        for (Pass p{0, true}; p.more && !stop_;) p = db([&](Store& s) { return svc.run_once(s); });
        due[i] = now + ms(svc.interval_seconds());
      }
      delay = 250;
    } catch (const StoreError& e) {
      log::error("maintenance failed; retrying", {{"error", e.what()}, {"retry_in_ms", delay}});
      if (e.transient()) own.reset();
      if (counts_.leader) log::warn("stepping down as maintenance leader after an error");
      counts_.leader = false;
      next_election = now + delay;
      delay = std::min(delay * 2, 10000);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (counts_.leader) {
    try {
      db([&](Store& s) {
        s.LeaderResign("maintenance", opts_.worker_id);
      });  // no wait for a successor
    } catch (const StoreError&) {
    }
  }
}

}  // namespace jr
