// PgStore: the leader's maintenance passes (host/engine/maintenance/) and the leader lease.
// Each pass is one bounded statement in its own transaction. SQL: host/store/sql/maintenance.sql.
#include "log.hpp"
#include "pg_store.hpp"

namespace jr {

namespace {

// Enqueues the due ticks of every due cron entry; `next` computes an entry's next tick.
int cron_run(pqxx::work& tx, const Store::CronNext& next) {
  auto due = pg::exec(tx, sql::cron_due);
  int enqueued = 0;
  for (const auto& row : due) {
    std::string name = row[0].c_str(), schedule = row[1].c_str(), tz = row[2].c_str();
    bool backfill = row[6].as<bool>();
    bool fresh = row[7].as<bool>();
    std::string now_local = row[9].c_str();
    std::vector<std::string> ticks;
    std::string after = now_local;
    if (!fresh) {
      std::string tick = row[8].c_str();
      bool stale = row[10].as<bool>();
      if (backfill) {
        // Every missed tick up to now, at most 1,000.
        while (!tick.empty() && tick <= now_local && ticks.size() < 1000) {
          ticks.push_back(tick);
          auto n = next(schedule, tick);
          tick = n ? *n : "";
        }
        after = ticks.empty() ? now_local : ticks.back();
      } else if (!stale) {
        ticks.push_back(tick);
      }
    }
    for (const auto& tick : ticks) {
      // Each tick in a savepoint: a job the schema refuses (a rate key field set for the kind
      // whose value in the entry's payload cannot make a key) is logged and skipped, and the
      // other entries, and the maintenance after cron, still run.
      pqxx::result r;
      pg::exec(tx, sql::cron_tick_savepoint);
      try {
        r = pg::exec(tx, sql::cron_insert, row[3].c_str(),
                     row[4].is_null() ? nullptr : row[4].c_str(), row[5].c_str(),
                     "cron:" + name + ":" + tick + " " + tz);
        pg::exec(tx, sql::cron_tick_release);
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "22023") throw;
        pg::exec(tx, sql::cron_tick_rollback);
        std::string what = e.what();
        log::error("cron: the job of this tick was refused; the tick is skipped",
                   {{"cron", name}, {"tick", tick}, {"error", what.substr(0, what.find('\n'))}});
        continue;
      }
      enqueued += static_cast<int>(r.affected_rows());
      // The dashboard shows the job each tick made (migration 11; the last 20 per entry).
      if (!r.empty()) pg::exec(tx, sql::cron_run_record, name, tick, r[0][0].as<int64_t>());
    }
    if (!ticks.empty()) pg::exec(tx, sql::cron_runs_trim, name);
    auto n = next(schedule, after);
    pg::exec(tx, sql::cron_advance, name, n ? n->c_str() : nullptr, !ticks.empty());
  }
  return enqueued;
}

}  // namespace

int PgStore::JobPromoteDue(int limit) {
  return guard([&] {
    ensure_prepared();
    pqxx::work tx(*conn_);
    int n = static_cast<int>(pg::exec(tx, sql::job_promote_due, limit).affected_rows());
    if (n > 0) pg::exec(tx, sql::wake_claimers);
    tx.commit();
    return n;
  });
}

RescueResult PgStore::JobRescueExpired(int limit, int default_max_attempts) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::job_rescue_expired, limit, default_max_attempts);
    RescueResult res;
    res.retried = r[0][0].as<int>();
    res.discarded = r[0][1].as<int>();
    return res;
  });
}

int PgStore::JobExpireTtl(int limit) {
  return in_tx([&](pqxx::work& tx) {
    return static_cast<int>(pg::exec(tx, sql::job_expire_ttl, limit).affected_rows());
  });
}

int PgStore::JobPrune(const PruneParams& p) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::job_prune, p.result_ttl_seconds, p.failure_ttl_seconds,
                      p.cancelled_ttl_seconds, p.limit);
    pg::exec(tx, sql::unique_locks_prune, p.limit);
    pg::exec(tx, sql::batches_prune, p.result_ttl_seconds, p.failure_ttl_seconds,
             p.cancelled_ttl_seconds, p.limit);
    return static_cast<int>(r.affected_rows());
  });
}

int64_t PgStore::JobsDeadRows() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return pg::exec(tx, sql::jobs_dead_rows)[0][0].as<int64_t>();
  });
}

void PgStore::JobsVacuum() {
  guard([&] {
    // Outside a transaction block, as VACUUM must be.
    pqxx::nontransaction tx(*conn_);
    pg::exec(tx, sql::jobs_vacuum);
  });
}

std::pair<int, int> PgStore::JobResolveDependencies(int limit) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::job_resolve_dependencies, limit);
    std::pair<int, int> res{r[0][0].as<int>(), r[0][1].as<int>()};
    if (res.first > 0) pg::exec(tx, sql::wake_claimers);
    return res;
  });
}

int PgStore::JobAgePriorities(double seconds_per_point, int limit) {
  if (seconds_per_point <= 0) return 0;
  return in_tx([&](pqxx::work& tx) {
    return static_cast<int>(
        pg::exec(tx, sql::job_age_priorities, seconds_per_point, limit).affected_rows());
  });
}

bool PgStore::LeaderTryAcquire(const std::string& name, const std::string& owner,
                               double ttl_seconds) {
  return in_tx([&](pqxx::work& tx) {
    return !pg::exec(tx, sql::leader_acquire, name, owner, ttl_seconds).empty();
  });
}

void PgStore::LeaderResign(const std::string& name, const std::string& owner) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::leader_resign, name, owner);
    return 0;
  });
}

void PgStore::CronUpsert(const std::vector<CronEntry>& entries) {
  in_tx([&](pqxx::work& tx) {
    for (const auto& e : entries) {
      pg::exec(tx, sql::cron_upsert, e.name, e.schedule, e.timezone, e.kind, pg::opt(e.queue),
               e.payload.dump(), e.backfill, e.source);
    }
    return 0;
  });
}

std::string PgStore::CronList() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::cron_list)[0][0].c_str());
  });
}

int PgStore::CronRun(const CronNext& next) {
  return in_tx([&](pqxx::work& tx) {
    int n = cron_run(tx, next);
    if (n > 0) pg::exec(tx, sql::wake_claimers);
    return n;
  });
}

}  // namespace jr
