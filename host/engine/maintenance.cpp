#include "maintenance.hpp"

#include <chrono>

#include "clock.hpp"
#include "cron.hpp"
#include "log.hpp"

namespace jr {
namespace {

int64_t now_ms() { return steady_ms(); }

int64_t ms(double seconds) { return static_cast<int64_t>(seconds * 1000); }

}  // namespace

Maintenance::Maintenance(MaintenanceOptions opts) : opts_(std::move(opts)) {}

Maintenance::~Maintenance() { stop(); }

void Maintenance::start() {
  thread_ = std::thread([this] { loop(); });
}

void Maintenance::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

int Maintenance::run_scheduler_once(Store& s) {
  int total = 0;
  for (;;) {
    int n = s.JobPromoteDue(1000);
    total += n;
    if (n < 1000) break;
  }
  counts_.promoted += total;
  if (total > 0) log::debug("scheduler: jobs made available", {{"count", total}});
  return total;
}

RescueResult Maintenance::run_rescuer_once(Store& s) {
  RescueResult total;
  for (;;) {
    RescueResult r = s.JobRescueExpired(500, opts_.default_max_attempts);
    total.retried += r.retried;
    total.discarded += r.discarded;
    if (r.retried + r.discarded < 500) break;
  }
  counts_.rescued += total.retried;
  counts_.rescued_to_dlq += total.discarded;
  if (total.retried + total.discarded > 0) {
    log::warn("rescuer: jobs with expired leases recovered",
              {{"retried", total.retried}, {"dead_lettered", total.discarded}});
  }
  return total;
}

int Maintenance::run_expirer_once(Store& s) {
  int n = s.JobExpireTtl(1000);
  counts_.expired += n;
  if (n > 0) log::info("expirer: jobs cancelled because their ttl passed", {{"count", n}});
  return n;
}

int Maintenance::run_pruner_once(Store& s) {
  int total = 0;
  for (;;) {
    int n = s.JobPrune(opts_.prune);
    total += n;
    if (n < opts_.prune.limit) break;
  }
  note_pruned(total);
  return total;
}

void Maintenance::note_pruned(int total) {
  counts_.pruned += total;
  if (total > 0)
    log::info("pruner: finished jobs past their retention deleted", {{"count", total}});
}

std::pair<int, int> Maintenance::run_dependencies_once(Store& s) {
  auto r = s.JobResolveDependencies(1000);
  counts_.deps_promoted += r.first;
  counts_.deps_cancelled += r.second;
  if (r.first + r.second > 0) {
    log::info("dependencies: waiting jobs resolved",
              {{"available", r.first}, {"cancelled", r.second}});
  }
  return r;
}

int Maintenance::run_aging_once(Store& s) {
  int n = s.JobAgePriorities(opts_.priority_aging_seconds, 5000);
  counts_.aged += n;
  if (n > 0) log::debug("aging: priorities raised", {{"count", n}});
  return n;
}

int Maintenance::run_cron_once(Store& s) {
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
  return n;
}

void Maintenance::loop() {
  std::unique_ptr<Store> own;
  // One statement (or service pass) at a time on the shared connection.
  auto db = [&](auto&& fn) -> decltype(auto) {
    if (opts_.shared) return opts_.shared->with(fn);
    if (own && own->LostWhileIdle()) own.reset();
    if (!own) own = Store::open(opts_.database_url);
    return fn(*own);
  };
  int64_t next_election = 0, next_schedule = 0, next_rescue = 0, next_prune = 0;
  int delay = 250;
  while (!stop_) {
    int64_t now = now_ms();
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
          next_schedule = next_rescue = next_prune = now;  // a new leader starts at once
        }
        next_election = now + ms(opts_.election_interval_seconds);
      }
      if (counts_.leader) {
        if (now >= next_schedule) {
          db([&](Store& s) { return run_scheduler_once(s); });
          db([&](Store& s) { return run_dependencies_once(s); });
          db([&](Store& s) { return run_cron_once(s); });
          next_schedule = now + ms(opts_.poll_interval_seconds);
        }
        if (now >= next_rescue) {
          // Aging looks at the top waiting priority, which costs a scan of the available jobs:
          // every rescue interval (5 s) is often enough for seconds-per-point aging.
          db([&](Store& s) { return run_aging_once(s); });
          db([&](Store& s) { return run_rescuer_once(s); });
          db([&](Store& s) { return run_expirer_once(s); });
          if (int n = db([&](Store& s) { return s.WorkerPruneDead(opts_.dead_worker_seconds); });
              n > 0) {
            counts_.workers_pruned += n;
            log::info("registry: runners without a heartbeat removed", {{"count", n}});
          }
          next_rescue = now + ms(opts_.rescue_interval_seconds);
        }
        if (now >= next_prune) {
          // One batch per turn on the shared connection: a large backlog of finished jobs
          // is deleted in steps the other services can come between.
          int total = 0;
          for (int n = opts_.prune.limit; n >= opts_.prune.limit && !stop_;) {
            n = db([&](Store& s) { return s.JobPrune(opts_.prune); });
            total += n;
          }
          note_pruned(total);
          next_prune = now + ms(opts_.prune_interval_seconds);
        }
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
