// PgStore: what operators do to jobs and queues (cancel, retry, dead letters, pauses, rate
// limits) and what every runner publishes about itself (jr_workers, jr_kinds).
// SQL: host/store/sql/admin.sql.
#include <unistd.h>

#include "pg_store.hpp"
#include "util.hpp"

namespace jr {

namespace {

using pg::opt;

// $6 of the dead-letter statements: the selected ids, or NULL for every job the other filters
// match.
const char* dlq_ids(const DeadLetterFilter& f, std::string& holder) {
  if (f.ids.empty()) return nullptr;
  holder = pg_int_array(f.ids);
  return holder.c_str();
}

}  // namespace

CancelResult PgStore::JobCancel(int64_t id) {
  return in_tx([&](pqxx::work& tx) {
    if (!pg::exec(tx, sql::job_cancel_waiting, id).empty()) return CancelResult::cancelled;
    if (!pg::exec(tx, sql::job_cancel_request, id).empty()) {
      pg::exec(tx, sql::job_cancel_notify, id);
      return CancelResult::requested;
    }
    return pg::exec(tx, sql::job_finished_exists, id).empty() ? CancelResult::not_found
                                                              : CancelResult::already_finished;
  });
}

int64_t PgStore::JobCancelMany(const JobCancelFilter& f, bool dry_run) {
  return in_tx([&](pqxx::work& tx) {
    const Statement& s = dry_run ? sql::job_cancel_many_count : sql::job_cancel_many;
    return pg::exec(tx, s, f.queue, opt(f.kind), opt(f.state))[0][0].as<int64_t>();
  });
}

bool PgStore::JobRetry(int64_t id) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::job_revive, id);
    if (r.empty()) r = pg::exec(tx, sql::job_retry_now, id);
    if (!r.empty()) pg::exec(tx, sql::wake_claimers);
    return !r.empty();
  });
}

std::vector<int64_t> PgStore::DeadLetterReplay(const DeadLetterFilter& f) {
  return in_tx([&](pqxx::work& tx) {
    std::string ids_text;
    auto ids = pg::ids_of(pg::exec(tx, sql::dead_letter_replay, f.limit, opt(f.kind), opt(f.queue),
                                   opt(f.since), opt(f.before), dlq_ids(f, ids_text)));
    if (!ids.empty()) pg::exec(tx, sql::wake_claimers);
    return ids;
  });
}

std::vector<JobView> PgStore::DeadLetterList(const DeadLetterFilter& f) {
  return guard([&] {
    std::string ids_text;
    pqxx::nontransaction tx(*conn_);
    auto r = pg::exec(tx, sql::dead_letter_list, f.limit, opt(f.kind), opt(f.queue), opt(f.since),
                      opt(f.before), dlq_ids(f, ids_text));
    std::vector<JobView> out;
    for (const auto& row : r) out.push_back(JobView{row[0].c_str()});
    return out;
  });
}

int PgStore::DeadLetterPurge(const DeadLetterFilter& f) {
  return in_tx([&](pqxx::work& tx) {
    std::string ids_text;
    return static_cast<int>(pg::exec(tx, sql::dead_letter_purge, f.limit, opt(f.kind), opt(f.queue),
                                     opt(f.since), opt(f.before), dlq_ids(f, ids_text))
                                .affected_rows());
  });
}

void PgStore::QueuePause(const std::string& queue) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::queue_pause, queue);
    return 0;
  });
}

bool PgStore::QueueResume(const std::string& queue) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::queue_resume, queue);
    pg::exec(tx, sql::wake_claimers);
    return r.affected_rows() > 0;
  });
}

std::vector<std::string> PgStore::QueuePaused() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    std::vector<std::string> out;
    for (const auto& row : pg::exec(tx, sql::queue_paused)) out.emplace_back(row[0].c_str());
    return out;
  });
}

void PgStore::RateLimitSet(const std::string& key, double rate, double burst) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::rate_limit_set, key, rate, burst);
    pg::exec(tx, sql::rate_limit_set_from_pattern, key, rate, burst);
    return 0;
  });
}

bool PgStore::RateLimitRemove(const std::string& key) {
  return in_tx([&](pqxx::work& tx) {
    auto r = pg::exec(tx, sql::rate_limit_remove, key);
    pg::exec(tx, sql::rate_limit_remove_from_pattern, key);
    return r.affected_rows() > 0;
  });
}

std::string PgStore::RateLimitList() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::rate_limit_list)[0][0].c_str());
  });
}

void PgStore::RateKeyFieldSet(const std::string& kind, const std::string& field,
                              const std::string& prefix) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::rate_key_field_set, kind, field, prefix.empty() ? nullptr : prefix.c_str());
    return 0;
  });
}

bool PgStore::RateKeyFieldRemove(const std::string& kind) {
  return in_tx([&](pqxx::work& tx) {
    return pg::exec(tx, sql::rate_key_field_remove, kind)[0][0].as<bool>();
  });
}

std::string PgStore::RateKeyFieldList() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::rate_key_field_list)[0][0].c_str());
  });
}

bool PgStore::KindsIdle(const std::vector<std::string>& kinds) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return pg::exec(tx, sql::kinds_idle, pg_text_array(kinds))[0][0].as<bool>();
  });
}

void PgStore::WorkerRegister(const WorkerRegisterParams& p) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::worker_register, p.worker_id, std::string(host), static_cast<int>(getpid()),
             pg_text_array(p.kinds), pg_text_array(p.queues));
    return 0;
  });
}

void PgStore::WorkerHeartbeat(const std::string& worker_id, int64_t jobs_done) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::worker_heartbeat, worker_id, jobs_done);
    return 0;
  });
}

void PgStore::WorkerUnregister(const std::string& worker_id) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::worker_unregister, worker_id);
    return 0;
  });
}

bool PgStore::WorkerServesKind(const std::string& kind, double live_seconds) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return pg::exec(tx, sql::worker_serves_kind, kind, live_seconds)[0][0].as<bool>();
  });
}

void PgStore::KindDefaultsUpsert(const std::vector<KindDefaults>& kinds) {
  in_tx([&](pqxx::work& tx) {
    for (const auto& k : kinds) {
      std::string sched = k.retry_schedule
                              ? pg_int_array(pg::to_i64(parse_retry_schedule(*k.retry_schedule)))
                              : std::string();
      pg::exec(tx, sql::kind_defaults_upsert, k.kind, k.plugin, opt(k.default_queue),
               k.timeout_ms ? std::to_string(*k.timeout_ms).c_str() : nullptr,
               k.max_attempts ? std::to_string(*k.max_attempts).c_str() : nullptr,
               k.retry_schedule ? sched.c_str() : nullptr, opt(k.finalizer));
    }
    return 0;
  });
}

}  // namespace jr
