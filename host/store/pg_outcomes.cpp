// PgStore: outcomes and leases of the jobs a runner holds. SQL: host/store/sql/outcomes.sql.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "pg_store.hpp"
#include "util.hpp"

namespace jr {

namespace {

// Rows of (id, cancel_requested): the ids whose cancellation was asked for.
std::vector<int64_t> cancel_requested(const pqxx::result& r) {
  std::vector<int64_t> cancel;
  for (const auto& row : r) {
    if (row[1].as<bool>()) cancel.push_back(row[0].as<int64_t>());
  }
  return cancel;
}
}  // namespace

JobFinishResult PgStore::JobFinishMany(const std::string& worker_id,
                                       const std::vector<JobFinish>& jobs) {
  return guard([&] {
    ensure_prepared();
    JobFinishResult res;
    // Completions: the ids as an array, attempts and results as JSON objects keyed by id;
    // no JSON document is built (a result that is not valid JSON is dropped, as before).
    std::vector<int64_t> completed_ids;
    std::string ids = "{", attempts = "{", results;
    for (const auto& j : jobs) {
      if (j.outcome != Outcome::completed) continue;
      std::string id = std::to_string(j.id);
      const char* sep = completed_ids.empty() ? "" : ",";
      ids += sep;
      ids += id;
      attempts += sep;
      attempts += '"' + id + "\":" + std::to_string(j.attempt);
      std::string_view result = j.result;
      if (result.substr(0, 3) == "\xEF\xBB\xBF") result.remove_prefix(3);  // jsonb refuses a BOM
      if (!result.empty() && nlohmann::json::accept(result)) {
        results += results.empty() ? "{" : ",";
        results += '"' + id + "\":";
        results += result;
      }
      completed_ids.push_back(j.id);
    }
    ids += '}';
    attempts += '}';
    if (!results.empty()) results += '}';
    // Waiting claimers are woken (NOTIFY, as an insert does) when an outcome frees a lock
    // key's slot, makes a child available or puts a job back: the next job starts within
    // milliseconds, not at the next poll.
    bool wake = false;
    auto complete = [&](pqxx::transaction_base& tx) {
      if (completed_ids.empty()) return;
      auto r = pg::exec(tx, sql::job_complete_many, worker_id, ids, attempts,
                        results.empty() ? nullptr : results.c_str());
      // One row per completed job, and a row without an id when someone must be woken.
      size_t done = r.size();
      for (const auto& row : r) {
        if (row[0].is_null()) {
          wake = true;
          --done;
        }
      }
      if (done != completed_ids.size()) {
        std::vector<int64_t> ok;
        ok.reserve(done);
        for (const auto& row : r) {
          if (!row[0].is_null()) ok.push_back(row[0].as<int64_t>());
        }
        std::sort(ok.begin(), ok.end());
        for (int64_t id : completed_ids) {
          if (!std::binary_search(ok.begin(), ok.end(), id)) res.rejected.push_back(id);
        }
      }
    };
    if (completed_ids.size() == jobs.size()) {
      // Only completions (the common batch): one statement, atomic on its own, autocommit
      // (the wake-up follows the commit, when it is needed at all).
      pqxx::nontransaction tx(*conn_);
      complete(tx);
      if (wake) pg::exec(tx, sql::wake_claimers);
      return res;
    }
    pqxx::work tx(*conn_);
    for (const auto& j : jobs) {
      pqxx::result r;
      switch (j.outcome) {
        case Outcome::retry:
          r = pg::exec(tx, sql::job_retry, j.id, j.attempt, worker_id, j.delay_seconds,
                       valid_utf8(j.error_kind), valid_utf8(j.error));
          break;
        case Outcome::snooze:
          r = pg::exec(tx, sql::job_snooze, j.id, j.attempt, worker_id, j.delay_seconds);
          break;
        case Outcome::release:
          r = pg::exec(tx, sql::job_release, j.id, j.attempt, worker_id);
          break;
        case Outcome::discard:
          r = pg::exec(tx, sql::job_finish_done, j.id, j.attempt, worker_id, "discarded",
                       valid_utf8(j.error_kind), valid_utf8(j.error));
          break;
        case Outcome::cancelled:
          r = pg::exec(tx, sql::job_finish_done, j.id, j.attempt, worker_id, "cancelled",
                       valid_utf8(j.error_kind), valid_utf8(j.error));
          break;
        case Outcome::completed:
          continue;
      }
      if (r.empty()) {
        res.rejected.push_back(j.id);
      } else if (j.outcome == Outcome::release || r[0][1].as<bool>()) {
        wake = true;  // available again, or a lock key's slot freed
      }
    }
    complete(tx);
    if (wake) pg::exec(tx, sql::wake_claimers);
    tx.commit();
    return res;
  });
}

std::vector<int64_t> PgStore::JobHeartbeat(const std::string& worker_id, double lease_seconds) {
  return guard([&] {
    ensure_prepared();
    pqxx::work tx(*conn_);
    auto r = pg::exec(tx, sql::job_heartbeat, worker_id, lease_seconds);
    tx.commit();
    return cancel_requested(r);
  });
}

std::vector<int64_t> PgStore::JobHeartbeatHeld(const std::string& worker_id, double lease_seconds,
                                               const std::vector<int64_t>& ids, size_t* renewed) {
  if (renewed) *renewed = 0;
  return guard([&] {
    if (ids.empty()) return std::vector<int64_t>{};
    ensure_prepared();
    pqxx::result r;
    if (async_commit_ && pg::pgbouncer()) {
      // No session settings through PgBouncer: the asynchronous commit is this
      // transaction's own.
      pqxx::work tx(*conn_);
      pg::exec(tx, sql::tx_async_commit);
      r = pg::exec(tx, sql::job_heartbeat_held, worker_id, lease_seconds, pg_int_array(ids));
      tx.commit();
    } else {
      pqxx::nontransaction tx(*conn_);
      r = pg::exec(tx, sql::job_heartbeat_held, worker_id, lease_seconds, pg_int_array(ids));
    }
    if (renewed) *renewed = r.size();
    return cancel_requested(r);
  });
}

std::vector<int64_t> PgStore::JobReleaseOrphanedClaims(const std::string& worker_id,
                                                       const std::vector<int64_t>& held) {
  return in_tx([&](pqxx::work& tx) {
    auto ids = pg::ids_of(pg::exec(tx, sql::job_release_orphaned, worker_id, pg_int_array(held)));
    if (!ids.empty()) pg::exec(tx, sql::wake_claimers);
    return ids;
  });
}

std::vector<int64_t> PgStore::JobCancelRequested(const std::string& worker_id) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return pg::ids_of(pg::exec(tx, sql::job_cancel_requested, worker_id));
  });
}

}  // namespace jr
