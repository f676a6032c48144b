// PostgreSQL implementation of Store (libpqxx 6.4). All of jobrunner's job SQL lives here.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <stdexcept>

#include "log.hpp"
#include "mem_store.hpp"
#include "migrations.hpp"
#include "pg_internal.hpp"
#include "pg_ops.hpp"
#include "store.hpp"
#include "util.hpp"

namespace jr {

namespace pg {
namespace {
std::atomic<bool> g_pgbouncer{false};
std::mutex g_statements_mu;
std::map<std::string, std::string> g_statements;  // name -> text; entries never change
}  // namespace

bool pgbouncer() { return g_pgbouncer.load(std::memory_order_relaxed); }

void define(pqxx::connection_base& c, const std::string& name, const std::string& sql) {
  {
    std::lock_guard<std::mutex> lock(g_statements_mu);
    g_statements.emplace(name, sql);
  }
  if (!pgbouncer()) c.prepare(name, sql);
}

const std::string& statement_text(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_statements_mu);
  auto it = g_statements.find(name);
  if (it == g_statements.end()) throw std::logic_error("statement not defined: " + name);
  return it->second;
}
}  // namespace pg

void Store::set_pgbouncer(bool on) { pg::g_pgbouncer = on; }
bool Store::pgbouncer() { return pg::pgbouncer(); }

namespace {

constexpr int64_t kMigrateLockKey = 0x6a6f6272756e0001;  // "jobrun" + 1

bool transient_sqlstate(const std::string& s) {
  // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now;
  // 40001/40P01: serialization failure / deadlock; 53: insufficient resources; 55P03: lock n/a.
  return s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s == "40001" || s == "40P01" ||
         s.rfind("53", 0) == 0 || s == "55P03";
}

std::string epoch_to_timestamptz(double epoch) {
  std::time_t secs = static_cast<std::time_t>(std::floor(epoch));
  int micros = static_cast<int>((epoch - std::floor(epoch)) * 1e6);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06d+00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

using pg::opt;

// Columns copied when a job moves to jr_jobs_done, and back when a dead letter is retried.
#define JR_DONE_COLS                                                                     \
  "id, queue, kind, payload, state, priority, attempt, max_attempts, result, progress, " \
  "errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit"

// Appended to a statement whose CTE `d` holds jobs that just completed (and $2 the ids asked
// for): their waiting children whose every parent has now completed become available in the
// same statement, so a child starts within milliseconds of its last parent (the leader's
// dependency pass, every poll interval, remains for the rest: a dead parent, or two parents
// completed at the same moment in two transactions, neither seeing the other's).
#define JR_PROMOTE_CHILDREN_SQL                                                          \
  ", kids AS (SELECT c.id FROM jr_jobs c "                                               \
  "            WHERE c.state = 'waiting' AND c.depends_on && $2::bigint[] "              \
  "              AND NOT EXISTS (SELECT 1 FROM unnest(c.depends_on) p(id) "              \
  "                               WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.id = p.id) " \
  "                                 AND NOT EXISTS (SELECT 1 FROM jr_jobs_done x "       \
  "                                                  WHERE x.id = p.id AND x.state = "   \
  "'completed')) "                                                                       \
  "              FOR UPDATE OF c SKIP LOCKED), "                                         \
  "promote AS (UPDATE jr_jobs c SET state = 'available', run_at = now() FROM kids "      \
  "             WHERE c.id = kids.id RETURNING c.id) "

// The options document of an insert: retention settings the pruner reads.
std::string insert_options(const JobInsertParams& p) {
  nlohmann::json o = nlohmann::json::object();
  if (p.result_ttl_seconds) o["result_ttl"] = *p.result_ttl_seconds;
  if (p.failure_ttl_seconds) o["failure_ttl"] = *p.failure_ttl_seconds;
  if (p.webhook) o["webhook"] = *p.webhook;
  if (p.rate_key) o["rate_key"] = *p.rate_key;
  if (p.traceparent) o["traceparent"] = *p.traceparent;
  return o.dump();
}

// The options object of jr_enqueue_ex() for a job whose uniqueness has a period, states,
// replace or debounce (migration 14): the one implementation of those lives in SQL, and these
// are the keys of host/store/job_options.cpp, already validated.
std::string enqueue_options(const JobInsertParams& p) {
  nlohmann::json o = nlohmann::json::object();
  if (p.queue) o["queue"] = *p.queue;
  if (p.priority != 0) o["priority"] = p.priority;
  if (p.delay_seconds > 0) o["delay_seconds"] = p.delay_seconds;
  if (p.run_at) o["run_at"] = *p.run_at;
  if (p.max_attempts) o["max_attempts"] = *p.max_attempts;
  if (p.timeout_ms) o["timeout_seconds"] = static_cast<double>(*p.timeout_ms) / 1000.0;
  if (p.retry_schedule) o["retry_schedule"] = *p.retry_schedule;
  if (p.ttl_seconds) o["ttl_seconds"] = *p.ttl_seconds;
  if (p.result_ttl_seconds) o["result_ttl_seconds"] = *p.result_ttl_seconds;
  if (p.failure_ttl_seconds) o["failure_ttl_seconds"] = *p.failure_ttl_seconds;
  if (p.unique) o["unique"] = true;
  if (p.unique_key) o["unique_key"] = *p.unique_key;
  if (p.lock_key) o["lock_key"] = *p.lock_key;
  if (p.lock_limit) o["lock_limit"] = *p.lock_limit;
  if (!p.depends_on.empty()) o["depends_on"] = p.depends_on;
  if (p.webhook) o["webhook"] = *p.webhook;
  if (p.unique_for_seconds) o["unique_for_seconds"] = *p.unique_for_seconds;
  if (!p.unique_states.empty()) o["unique_states"] = p.unique_states;
  if (p.replace) o["replace"] = true;
  if (p.debounce_seconds) o["debounce_seconds"] = *p.debounce_seconds;
  if (p.debounce_max_seconds) o["debounce_max_seconds"] = *p.debounce_max_seconds;
  if (p.rate_key) o["rate_key"] = *p.rate_key;
  if (p.traceparent) o["traceparent"] = *p.traceparent;
  return o.dump();
}

class NotifyReceiver : public pqxx::notification_receiver {
 public:
  NotifyReceiver(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string&, int) override { ++count; }
  int count = 0;
};

class PgStore final : public Store {
 public:
  explicit PgStore(std::string url) : url_(std::move(url)) { connect(); }
  ~PgStore() override {
    receiver_.reset();
    conn_.reset();
  }

  int SchemaMigrate() override {
    return guard([&] {
      // Up to date (the common case: every CLI command and runner start): no lock. The lock is
      // on the whole database and any role may take an advisory lock, so not waiting for it
      // when there is nothing to do also means a plugin's role holding it blocks nobody then.
      {
        pqxx::nontransaction probe(*conn_);
        std::vector<int64_t> known;
        for (const auto& m : migrations()) known.push_back(m.version);
        if (!probe.exec("SELECT to_regclass('jr_migrations')")[0][0].is_null() &&
            probe.exec_params("SELECT count(*) FROM jr_migrations WHERE version = ANY($1::int[])",
                              pg_int_array(known))[0][0]
                    .as<size_t>() == known.size()) {
          return 0;
        }
      }
      pqxx::work tx(*conn_);
      tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrateLockKey) + ")");
      tx.exec(
          "CREATE TABLE IF NOT EXISTS jr_migrations (version integer PRIMARY KEY, name text NOT "
          "NULL, applied_at timestamptz NOT NULL DEFAULT now())");
      // Every migration not applied yet, in version order: a set, not "above the maximum", so a
      // migration that lands after a higher-numbered one (parallel branches) is still applied.
      std::set<int> done;
      for (const auto& row : tx.exec("SELECT version FROM jr_migrations")) {
        done.insert(row[0].as<int>());
      }
      int applied = 0;
      for (const auto& m : migrations()) {
        if (done.count(m.version)) continue;
        tx.exec(m.sql);
        tx.exec_params("INSERT INTO jr_migrations (version, name) VALUES ($1, $2)", m.version,
                       m.name);
        ++applied;
      }
      if (applied > 0) tx.exec(privileges_sql());
      tx.commit();
      if (applied > 0) prepare_all();
      return applied;
    });
  }

  int SchemaVersion() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec(
          "SELECT CASE WHEN to_regclass('jr_migrations') IS NULL THEN 0 ELSE "
          "(SELECT coalesce(max(version), 0) FROM jr_migrations) END");
      return r[0][0].as<int>();
    });
  }

  JobInsertResult JobInsertEx(const JobInsertParams& p) override {
    if (p.unique_period()) {
      return guard([&] {
        pqxx::work tx(*conn_);
        auto r =
            tx.exec_params("SELECT job_id, outcome FROM jr_enqueue_ex($1, $2::jsonb, $3::jsonb)",
                           p.kind, p.payload, enqueue_options(p));
        tx.commit();
        std::string outcome = r[0][1].c_str();
        JobInsertResult res{r[0][0].as<int64_t>(), outcome == "inserted"};
        res.replaced = outcome == "replaced" || outcome == "debounced";
        return res;
      });
    }
    return guard([&] {
      ensure_prepared();
      std::string sched = p.retry_schedule
                              ? pg_int_array(to_i64(parse_retry_schedule(*p.retry_schedule)))
                              : std::string();
      std::string deps = pg_int_array(p.depends_on);
      for (int tries = 0;; ++tries) {
        pqxx::work tx(*conn_);
        if (!p.depends_on.empty()) {
          auto found = tx.exec_params(
              "SELECT array_agg(x) FROM unnest($1::bigint[]) x WHERE NOT EXISTS (SELECT 1 FROM "
              "jr_jobs_all a WHERE a.id = x)",
              deps);
          if (!found[0][0].is_null()) {
            throw StoreError(
                "--depends-on names jobs that do not exist: " + std::string(found[0][0].c_str()),
                false);
          }
        }
        auto r = pg::exec_stmt(tx, "job_insert", p.kind, opt(p.queue), p.payload, p.priority,
                               p.delay_seconds, opt(p.run_at),
                               p.max_attempts ? std::to_string(*p.max_attempts).c_str() : nullptr,
                               p.timeout_ms ? std::to_string(*p.timeout_ms).c_str() : nullptr,
                               p.retry_schedule ? sched.c_str() : nullptr,
                               p.ttl_seconds ? std::to_string(*p.ttl_seconds).c_str() : nullptr,
                               insert_options(p), opt(p.unique_key), p.unique, opt(p.lock_key),
                               p.lock_limit ? std::to_string(*p.lock_limit).c_str() : nullptr,
                               p.depends_on.empty() ? nullptr : deps.c_str());
        if (!r.empty()) {
          tx.commit();
          return JobInsertResult{r[0][0].as<int64_t>(), true};
        }
        // A live job holds the unique key: return it. It may finish between the two
        // statements, in which case the insert is simply tried again.
        auto existing = tx.exec_params(
            "SELECT id FROM jr_jobs WHERE unique_key = CASE WHEN $3 THEN md5($1 || ':' || "
            "$2::jsonb::text) ELSE $4 END",
            p.kind, p.payload, p.unique, opt(p.unique_key));
        tx.commit();
        if (!existing.empty()) return JobInsertResult{existing[0][0].as<int64_t>(), false};
        if (tries > 10) throw StoreError("unique insert kept racing; giving up", true);
      }
    });
  }

  std::vector<int64_t> JobInsertMany(const std::vector<JobInsertParams>& jobs) override {
    // COPY cannot resolve unique keys or check parents: such jobs go one by one.
    bool special = std::any_of(jobs.begin(), jobs.end(), [](const JobInsertParams& j) {
      return j.unique || j.unique_key || !j.depends_on.empty() || j.unique_period();
    });
    if (special) {
      std::vector<int64_t> ids;
      for (const auto& j : jobs) ids.push_back(JobInsertEx(j).id);
      return ids;
    }
    return copy_jobs(
        jobs.size(), [&](size_t i) -> const JobInsertParams& { return jobs[i]; },
        [&](size_t i) -> const std::string& { return jobs[i].payload; });
  }

  std::vector<int64_t> JobInsertBulk(const JobInsertParams& base,
                                     const std::vector<std::string>& payloads) override {
    if (base.unique || base.unique_key || !base.depends_on.empty() || base.unique_period()) {
      std::vector<int64_t> ids;
      JobInsertParams p = base;
      for (const auto& payload : payloads) {
        p.payload = payload;
        ids.push_back(JobInsertEx(p).id);
      }
      return ids;
    }
    return copy_jobs(
        payloads.size(), [&](size_t) -> const JobInsertParams& { return base; },
        [&](size_t i) -> const std::string& { return payloads[i]; });
  }

  std::vector<ClaimedJob> JobClaim(const JobClaimParams& p) override {
    return guard([&] {
      ensure_prepared();
      // Fast path: one autocommit statement (no BEGIN, no rate-limit lock, one round trip).
      // When it reports rate limits or lock keys in play, the transaction path claims the rest
      // and stays in use for a few seconds, so a limited queue does not pay for both.
      auto now = std::chrono::steady_clock::now();
      std::vector<ClaimedJob> out;
      JobClaimParams rest = p;
      if (now >= slow_claims_until_) {
        bool need_slow = false;
        {
          pqxx::nontransaction tx(*conn_);
          out = pg::claim_fast(tx, p, need_slow);
        }
        if (!need_slow) {
          sort_claimed(out);
          return out;
        }
        slow_claims_until_ = now + std::chrono::seconds(2);
        rest.limit -= static_cast<int>(out.size());
        if (rest.limit <= 0) {
          sort_claimed(out);
          return out;
        }
      }
      std::vector<ClaimedJob> more;
      try {
        pqxx::work tx(*conn_);
        // Asynchronous like the fast claim (pg_claim.cpp): its lease starts at the statement,
        // so its visibility must not wait for the WAL flush.
        tx.exec("SET LOCAL synchronous_commit TO off");
        more = pg::claim(tx, rest);
        tx.commit();
      } catch (const std::exception& e) {
        // The fast half already committed its claims: hand those out (the engine runs them)
        // rather than drop them to expire and be rescued with an attempt used.
        if (out.empty()) throw;
        log::warn("claiming the rate-limited or lock-keyed part failed; running the rest",
                  {{"error", e.what()}, {"claimed", out.size()}});
        sort_claimed(out);
        return out;
      }
      if (out.empty()) return more;
      for (auto& j : more) out.push_back(std::move(j));
      sort_claimed(out);
      return out;
    });
  }

  JobFinishResult JobFinishMany(const std::string& worker_id,
                                const std::vector<JobFinish>& jobs) override {
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
        auto r = pg::exec_stmt(tx, "job_complete_many", worker_id, ids, attempts,
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
        if (wake) tx.exec("SELECT pg_notify('jr_jobs', '')");
        return res;
      }
      pqxx::work tx(*conn_);
      for (const auto& j : jobs) {
        pqxx::result r;
        switch (j.outcome) {
          case Outcome::retry:
            r = pg::exec_stmt(tx, "job_retry", j.id, j.attempt, worker_id, j.delay_seconds,
                              valid_utf8(j.error_kind), valid_utf8(j.error));
            break;
          case Outcome::snooze:
            r = pg::exec_stmt(tx, "job_snooze", j.id, j.attempt, worker_id, j.delay_seconds);
            break;
          case Outcome::release:
            r = pg::exec_stmt(tx, "job_release", j.id, j.attempt, worker_id);
            break;
          case Outcome::discard:
            r = pg::exec_stmt(tx, "job_finish_done", j.id, j.attempt, worker_id, "discarded",
                              valid_utf8(j.error_kind), valid_utf8(j.error));
            break;
          case Outcome::cancelled:
            r = pg::exec_stmt(tx, "job_finish_done", j.id, j.attempt, worker_id, "cancelled",
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
      if (wake) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return res;
    });
  }

  std::vector<int64_t> JobHeartbeat(const std::string& worker_id, double lease_seconds) override {
    return guard([&] {
      ensure_prepared();
      pqxx::work tx(*conn_);
      auto r = pg::exec_stmt(tx, "job_heartbeat", worker_id, lease_seconds);
      tx.commit();
      std::vector<int64_t> cancel;
      for (const auto& row : r) {
        if (row[1].as<bool>()) cancel.push_back(row[0].as<int64_t>());
      }
      return cancel;
    });
  }

  std::vector<int64_t> JobHeartbeatHeld(const std::string& worker_id, double lease_seconds,
                                        const std::vector<int64_t>& ids, size_t* renewed) override {
    if (renewed) *renewed = 0;
    return guard([&] {
      std::vector<int64_t> cancel;
      if (ids.empty()) return cancel;
      ensure_prepared();
      pqxx::result r;
      if (async_commit_ && pg::pgbouncer()) {
        // No session settings through PgBouncer: the asynchronous commit is this
        // transaction's own.
        pqxx::work tx(*conn_);
        tx.exec("SET LOCAL synchronous_commit TO off");
        r = pg::exec_stmt(tx, "job_heartbeat_held", worker_id, lease_seconds, pg_int_array(ids));
        tx.commit();
      } else {
        pqxx::nontransaction tx(*conn_);
        r = pg::exec_stmt(tx, "job_heartbeat_held", worker_id, lease_seconds, pg_int_array(ids));
      }
      for (const auto& row : r) {
        if (row[1].as<bool>()) cancel.push_back(row[0].as<int64_t>());
      }
      if (renewed) *renewed = r.size();
      return cancel;
    });
  }

  std::vector<int64_t> JobReleaseOrphanedClaims(const std::string& worker_id,
                                                const std::vector<int64_t>& held) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(
          "UPDATE jr_jobs SET state = 'available', attempt = attempt - 1, lease_owner = NULL, "
          "lease_expires_at = NULL WHERE lease_owner = $1 AND state = 'running' "
          "AND NOT (id = ANY($2::bigint[])) "
          "AND started_at >= (SELECT w.started_at FROM jr_workers w WHERE w.id = $1) RETURNING id",
          worker_id, pg_int_array(held));
      std::vector<int64_t> ids;
      for (const auto& row : r) ids.push_back(row[0].as<int64_t>());
      if (!ids.empty()) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return ids;
    });
  }

  void SessionAsyncCommit() override {
    async_commit_ = true;
    if (pg::pgbouncer()) return;  // per transaction instead (JobHeartbeatHeld)
    guard([&] {
      pqxx::nontransaction tx(*conn_);
      tx.exec("SET synchronous_commit TO off");
      return 0;
    });
  }

  int JobPromoteDue(int limit) override {
    return guard([&] {
      ensure_prepared();
      pqxx::work tx(*conn_);
      auto r = pg::exec_stmt(tx, "job_promote_due", limit);
      int n = static_cast<int>(r.affected_rows());
      if (n > 0) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return n;
    });
  }

  std::optional<int64_t> JobReplay(int64_t id) override {
    auto src = guard([&]() -> std::optional<JobInsertParams> {
      pqxx::nontransaction tx(*conn_);
      // Finished jobs keep no base_priority: their priority column is the one they ran with.
      auto r = tx.exec_params(
          R"SQL(SELECT kind, queue, payload::text, prio, max_attempts, timeout_ms,
                 array_to_string(retry_schedule, ','), lock_key, lock_limit,
                 options->>'rate_key', options->>'webhook',
                 (options->>'result_ttl')::float8, (options->>'failure_ttl')::float8
            FROM (SELECT kind, queue, payload, coalesce(base_priority, priority) AS prio,
                         max_attempts, timeout_ms, retry_schedule, lock_key, lock_limit, options
                    FROM jr_jobs WHERE id = $1
                  UNION ALL
                  SELECT kind, queue, payload, priority, max_attempts, timeout_ms,
                         retry_schedule, lock_key, lock_limit, options
                    FROM jr_jobs_done WHERE id = $1) j)SQL",
          id);
      if (r.empty()) return std::nullopt;
      const auto& row = r[0];
      JobInsertParams p;
      p.kind = row[0].c_str();
      p.queue = row[1].c_str();
      p.payload = row[2].c_str();
      p.priority = row[3].as<int>();
      if (!row[4].is_null()) p.max_attempts = row[4].as<int>();
      if (!row[5].is_null()) p.timeout_ms = row[5].as<int64_t>();
      if (!row[6].is_null() && row[6].size() > 0) p.retry_schedule = row[6].c_str();
      if (!row[7].is_null()) p.lock_key = row[7].c_str();
      if (!row[8].is_null()) p.lock_limit = row[8].as<int>();
      if (!row[9].is_null()) p.rate_key = row[9].c_str();
      if (!row[10].is_null()) p.webhook = row[10].c_str();
      if (!row[11].is_null()) p.result_ttl_seconds = row[11].as<double>();
      if (!row[12].is_null()) p.failure_ttl_seconds = row[12].as<double>();
      return p;
    });
    if (!src) return std::nullopt;
    return JobInsertEx(*src).id;
  }

  std::optional<JobView> JobGet(int64_t id) override {
    return guard([&]() -> std::optional<JobView> {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params("SELECT row_to_json(a)::text FROM jr_jobs_all a WHERE id = $1", id);
      if (r.empty()) return std::nullopt;
      return JobView{r[0][0].c_str()};
    });
  }

  std::vector<JobView> JobList(const JobListParams& p) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params(
          "SELECT row_to_json(a)::text FROM jr_jobs_all a WHERE ($1::text IS NULL OR state = $1) "
          "AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR queue = $3) "
          "ORDER BY id LIMIT $4",
          opt(p.state), opt(p.kind), opt(p.queue), p.limit);
      std::vector<JobView> out;
      for (const auto& row : r) out.push_back(JobView{row[0].c_str()});
      return out;
    });
  }

  void JobProgress(int64_t id, int attempt, double percent, const std::string& step) override {
    guard([&] {
      // Committed asynchronously (the CTE, volatile, is evaluated whenever a row is updated):
      // progress is advisory, and a synchronous commit would hold the job's row through the
      // WAL flush, during which lease renewals skip it (job_heartbeat_held): a job reporting
      // progress every 250 ms on a stalled disk would lose its lease.
      pqxx::work tx(*conn_);
      tx.exec_params(
          "WITH async AS (SELECT set_config('synchronous_commit', 'off', true)) "
          "UPDATE jr_jobs SET progress = jsonb_build_object('percent', $3::float8, 'step', "
          "$4::text, 'at', now()) FROM async WHERE id = $1 AND attempt = $2 AND state = "
          "'running'",
          id, attempt, percent, step.empty() ? nullptr : valid_utf8(step).c_str());
      tx.commit();
      return 0;
    });
  }

  RescueResult JobRescueExpired(int limit, int default_max_attempts) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(R"SQL(
        WITH exp AS (
          SELECT j.id, j.attempt, j.lease_owner,
                 coalesce(j.max_attempts, k.max_attempts, $2) AS max_att,
                 coalesce(j.retry_schedule, k.retry_schedule) AS sched
            FROM jr_jobs j LEFT JOIN jr_kinds k ON k.kind = j.kind
           WHERE j.state = 'running' AND j.lease_expires_at < now()
           ORDER BY j.lease_expires_at LIMIT $1
             FOR UPDATE OF j SKIP LOCKED),
        entry AS (
          SELECT id, attempt, sched, attempt >= max_att AS dead,
                 jsonb_build_array(jsonb_build_object(
                   'attempt', attempt, 'at', now(), 'kind', 'lease_lost',
                   'message', 'lease expired: the runner stopped heartbeating (crashed, killed '
                              'or cut off from the database)',
                   'worker_id', lease_owner,
                   'host', (SELECT w.host FROM jr_workers w WHERE w.id = exp.lease_owner))) AS e
            FROM exp),
        dead AS (DELETE FROM jr_jobs j USING entry WHERE j.id = entry.id AND entry.dead
                 RETURNING j.*, entry.e),
        ins AS (INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL()
                SELECT id, queue, kind, payload, 'discarded', priority, attempt, max_attempts,
                       NULL, progress, errors || e, options, created_at, started_at, timeout_ms,
                       retry_schedule, lock_key, lock_limit FROM dead
                RETURNING id),
        upd AS (UPDATE jr_jobs j
                   SET state = 'retryable', lease_owner = NULL, lease_expires_at = NULL,
                       errors = j.errors || entry.e,
                       run_at = now() + make_interval(secs =>
                         CASE WHEN coalesce(array_length(entry.sched, 1), 0) > 0
                              THEN entry.sched[least(entry.attempt, array_length(entry.sched, 1))]
                              ELSE least(power(2, entry.attempt - 1), 3600)
                                   * (0.5 + random() * 0.5) END)
                  FROM entry WHERE j.id = entry.id AND NOT entry.dead
                RETURNING j.id)
        SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins))SQL",
                              limit, default_max_attempts);
      tx.commit();
      RescueResult res;
      res.retried = r[0][0].as<int>();
      res.discarded = r[0][1].as<int>();
      return res;
    });
  }

  int JobExpireTtl(int limit) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(R"SQL(
        WITH x AS (DELETE FROM jr_jobs WHERE id IN (
                     SELECT id FROM jr_jobs WHERE expires_at < now() AND state <> 'running'
                      LIMIT $1 FOR UPDATE SKIP LOCKED)
                   RETURNING *)
        INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL()
        SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL,
               progress, errors || jsonb_build_array(jsonb_build_object('attempt', attempt,
               'at', now(), 'kind', 'expired', 'message', 'ttl passed before the job started')),
               options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM x)SQL",
                              limit);
      tx.commit();
      return static_cast<int>(r.affected_rows());
    });
  }

  int JobPrune(const PruneParams& p) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(R"SQL(
        DELETE FROM jr_jobs_done WHERE id IN (
          SELECT id FROM jr_jobs_done
           WHERE (state = 'completed' AND finished_at < now() - make_interval(secs =>
                    coalesce((options->>'result_ttl')::float8, $1)))
              OR (state = 'discarded' AND finished_at < now() - make_interval(secs =>
                    coalesce((options->>'failure_ttl')::float8, $2)))
              OR (state = 'cancelled' AND finished_at < now() - make_interval(secs => $3))
           LIMIT $4)
          AND NOT EXISTS (SELECT 1 FROM jr_jobs w
                           WHERE w.state = 'waiting' AND w.depends_on @> ARRAY[jr_jobs_done.id]))SQL",
                              p.result_ttl_seconds, p.failure_ttl_seconds, p.cancelled_ttl_seconds,
                              p.limit);
      // The lock rows of period-unique keys (migration 14) only queue up enqueues of one key:
      // one not used for an hour and not held now can go (a later enqueue inserts it again).
      tx.exec_params(R"SQL(
        DELETE FROM jr_unique_locks WHERE key IN (
          SELECT key FROM jr_unique_locks WHERE locked_at < now() - interval '1 hour'
           LIMIT $1 FOR UPDATE SKIP LOCKED))SQL",
                     p.limit);
      // Batches (migration 17) whose callback ran longer ago than any finished member is kept
      // by default: their members are gone or going. A member retried after that finds no
      // batch row and is counted nowhere (its trigger does nothing).
      tx.exec_params(R"SQL(
        DELETE FROM jr_batches WHERE id IN (
          SELECT id FROM jr_batches
           WHERE finished_at < now() - make_interval(secs => greatest($1::float8, $2::float8,
                                                                        $3::float8))
           LIMIT $4 FOR UPDATE SKIP LOCKED))SQL",
                     p.result_ttl_seconds, p.failure_ttl_seconds, p.cancelled_ttl_seconds, p.limit);
      tx.commit();
      return static_cast<int>(r.affected_rows());
    });
  }

  std::string BatchEnqueue(const std::string& kind, const std::string& payloads,
                           const std::string& options, const std::string& on_complete,
                           const std::string& on_failure) override {
    std::string refused;  // the SQL function's message for input it refuses
    std::string doc = guard([&] {
      pqxx::work tx(*conn_);
      try {
        auto r = tx.exec_params(
            "SELECT jr_batch_enqueue($1, $2::jsonb, $3::jsonb, $4::jsonb, $5::jsonb)::text", kind,
            payloads, options, on_complete, on_failure);
        tx.commit();
        return std::string(r[0][0].c_str());
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "22023" && e.sqlstate() != "22P02") throw;
        refused = trim(e.what());
        if (refused.rfind("ERROR:  ", 0) == 0) refused = refused.substr(8);
        return std::string();
      }
    });
    if (!refused.empty()) throw std::invalid_argument(refused);
    return doc;
  }

  std::optional<std::string> BatchStatus(int64_t id) override {
    return guard([&]() -> std::optional<std::string> {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params("SELECT jr_batch_status($1)::text", id);
      if (r.empty() || r[0][0].is_null()) return std::nullopt;
      return std::string(r[0][0].c_str());
    });
  }

  CancelResult JobCancel(int64_t id) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(R"SQL(
        WITH x AS (DELETE FROM jr_jobs WHERE id = $1 AND state <> 'running' RETURNING *)
        INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL()
        SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL,
               progress, errors || jsonb_build_array(jsonb_build_object('attempt', attempt,
               'at', now(), 'kind', 'cancelled', 'message', 'cancelled on request before it ran')),
               options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit FROM x
        RETURNING id)SQL",
                              id);
      if (!r.empty()) {
        tx.commit();
        return CancelResult::cancelled;
      }
      r = tx.exec_params(
          "UPDATE jr_jobs SET cancel_requested = true WHERE id = $1 AND state = 'running' "
          "RETURNING id",
          id);
      if (!r.empty()) {
        tx.exec_params("SELECT pg_notify('jr_cancel', $1::text)", id);
        tx.commit();
        return CancelResult::requested;
      }
      r = tx.exec_params("SELECT 1 FROM jr_jobs_done WHERE id = $1", id);
      tx.commit();
      return r.empty() ? CancelResult::not_found : CancelResult::already_finished;
    });
  }

  int64_t JobCancelMany(const JobCancelFilter& f, bool dry_run) override {
    return guard([&] {
      const char* where =
          "queue = $1 AND ($2::text IS NULL OR kind = $2) AND state <> 'running' AND "
          "($3::text IS NULL OR state = $3)";
      pqxx::work tx(*conn_);
      pqxx::result r;
      if (dry_run) {
        r = tx.exec_params(std::string("SELECT count(*) FROM jr_jobs WHERE ") + where, f.queue,
                           opt(f.kind), opt(f.state));
      } else {
        r = tx.exec_params(std::string(R"SQL(
          WITH x AS (DELETE FROM jr_jobs WHERE )SQL") +
                               where + R"SQL( RETURNING *),
          ins AS (
            INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL()
            SELECT id, queue, kind, payload, 'cancelled', priority, attempt, max_attempts, NULL,
                   progress, errors || jsonb_build_array(jsonb_build_object('attempt', attempt,
                   'at', now(), 'kind', 'cancelled', 'message',
                   'cancelled on request before it ran (runner jobs cancel)')),
                   options, created_at, started_at, timeout_ms, retry_schedule, lock_key,
                   lock_limit FROM x
            RETURNING id)
          SELECT count(*) FROM ins)SQL",
                           f.queue, opt(f.kind), opt(f.state));
      }
      tx.commit();
      return r[0][0].as<int64_t>();
    });
  }

  std::vector<int64_t> JobCancelRequested(const std::string& worker_id) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params(
          "SELECT id FROM jr_jobs WHERE lease_owner = $1 AND state = 'running' AND "
          "cancel_requested",
          worker_id);
      std::vector<int64_t> ids;
      for (const auto& row : r) ids.push_back(row[0].as<int64_t>());
      return ids;
    });
  }

  // Moves dead letters / cancelled jobs selected by `where` (over jr_jobs_done, params from $2)
  // back to jr_jobs, available now, with at least one attempt left.
  static std::string revive_sql(const std::string& where) {
    return R"SQL(
      WITH x AS (DELETE FROM jr_jobs_done WHERE id IN (SELECT id FROM jr_jobs_done WHERE )SQL" +
           where + R"SQL( ORDER BY id LIMIT $1) RETURNING *)
      INSERT INTO jr_jobs (id, queue, kind, payload, state, priority, run_at, attempt,
                           max_attempts, timeout_ms, retry_schedule, errors, options, created_at,
                           lock_key, lock_limit)
      SELECT id, queue, kind, payload, 'available', priority, now(), attempt,
             greatest(coalesce(max_attempts, (SELECT k.max_attempts FROM jr_kinds k
                                               WHERE k.kind = x.kind), 25), attempt + 1),
             timeout_ms, retry_schedule, errors, options, created_at, lock_key, lock_limit FROM x
      RETURNING id)SQL";
  }

  bool JobRetry(int64_t id) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(revive_sql("id = $2 AND state IN ('discarded', 'cancelled')"), 1, id);
      if (r.empty()) {
        r = tx.exec_params(
            "UPDATE jr_jobs SET state = 'available', run_at = now() WHERE id = $1 AND state IN "
            "('scheduled', 'retryable') RETURNING id",
            id);
      }
      if (!r.empty()) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return !r.empty();
    });
  }

  // $6 of dlq_where(): the selected ids, or NULL for every job the other filters match.
  static const char* dlq_ids(const DeadLetterFilter& f, std::string& holder) {
    if (f.ids.empty()) return nullptr;
    holder = pg_int_array(f.ids);
    return holder.c_str();
  }

  static std::string dlq_where() {
    return "state = 'discarded' AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR "
           "queue = $3) AND ($4::timestamptz IS NULL OR finished_at >= $4) AND "
           "($5::timestamptz IS NULL OR finished_at < $5) AND ($6::bigint[] IS NULL OR id = "
           "ANY($6::bigint[]))";
  }

  std::vector<int64_t> DeadLetterReplay(const DeadLetterFilter& f) override {
    return guard([&] {
      std::string ids_text;
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(revive_sql(dlq_where()), f.limit, opt(f.kind), opt(f.queue),
                              opt(f.since), opt(f.before), dlq_ids(f, ids_text));
      std::vector<int64_t> ids;
      for (const auto& row : r) ids.push_back(row[0].as<int64_t>());
      if (!ids.empty()) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return ids;
    });
  }

  std::string WorkflowEnqueue(const std::string& doc_json) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params("SELECT jr_workflow_enqueue($1::jsonb)::text", doc_json);
      tx.commit();
      return std::string(r[0][0].c_str());
    });
  }

  std::optional<std::string> WorkflowStatus(int64_t id) override {
    return guard([&]() -> std::optional<std::string> {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params("SELECT jr_workflow_status($1)::text", id);
      if (r.empty() || r[0][0].is_null()) return std::nullopt;
      return std::string(r[0][0].c_str());
    });
  }

  std::optional<std::string> JobParentResults(int64_t job_id, int64_t offset, int64_t max_bytes,
                                              int64_t max_count) override {
    return guard([&]() -> std::optional<std::string> {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params(
          "SELECT jr_parent_results($1, $2::integer, $3::integer, $4::integer)::text", job_id,
          offset, max_bytes, max_count);
      if (r.empty() || r[0][0].is_null()) return std::nullopt;
      return std::string(r[0][0].c_str());
    });
  }

  std::vector<JobView> DeadLetterList(const DeadLetterFilter& f) override {
    return guard([&] {
      std::string ids_text;
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params("SELECT row_to_json(d)::text FROM jr_jobs_done d WHERE " +
                                  dlq_where() + " ORDER BY id LIMIT $1",
                              f.limit, opt(f.kind), opt(f.queue), opt(f.since), opt(f.before),
                              dlq_ids(f, ids_text));
      std::vector<JobView> out;
      for (const auto& row : r) out.push_back(JobView{row[0].c_str()});
      return out;
    });
  }

  int DeadLetterPurge(const DeadLetterFilter& f) override {
    return guard([&] {
      std::string ids_text;
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(
          "DELETE FROM jr_jobs_done WHERE id IN (SELECT id FROM jr_jobs_done "
          "WHERE " +
              dlq_where() + " LIMIT $1)",
          f.limit, opt(f.kind), opt(f.queue), opt(f.since), opt(f.before), dlq_ids(f, ids_text));
      tx.commit();
      return static_cast<int>(r.affected_rows());
    });
  }

  bool LeaderTryAcquire(const std::string& name, const std::string& owner,
                        double ttl_seconds) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params(R"SQL(
        INSERT INTO jr_leaders (name, owner, expires_at)
        VALUES ($1, $2, now() + make_interval(secs => $3::float8))
        ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
         WHERE jr_leaders.owner = EXCLUDED.owner OR jr_leaders.expires_at < now()
        RETURNING owner)SQL",
                              name, owner, ttl_seconds);
      tx.commit();
      return !r.empty();
    });
  }

  void LeaderResign(const std::string& name, const std::string& owner) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params("DELETE FROM jr_leaders WHERE name = $1 AND owner = $2", name, owner);
      tx.commit();
      return 0;
    });
  }

  std::pair<int, int> JobResolveDependencies(int limit) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = pg::resolve_dependencies(tx, limit);
      if (r.first > 0) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return r;
    });
  }

  int JobAgePriorities(double seconds_per_point, int limit) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      int n = pg::age_priorities(tx, seconds_per_point, limit);
      tx.commit();
      return n;
    });
  }

  void QueuePause(const std::string& queue) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params("INSERT INTO jr_queue_pauses (queue) VALUES ($1) ON CONFLICT DO NOTHING",
                     queue);
      tx.commit();
      return 0;
    });
  }

  bool QueueResume(const std::string& queue) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params("DELETE FROM jr_queue_pauses WHERE queue = $1", queue);
      tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return r.affected_rows() > 0;
    });
  }

  std::vector<std::string> QueuePaused() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      std::vector<std::string> out;
      for (const auto& row : tx.exec("SELECT queue FROM jr_queue_pauses ORDER BY queue")) {
        out.emplace_back(row[0].c_str());
      }
      return out;
    });
  }

  void RateLimitSet(const std::string& key, double rate, double burst) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params(
          "INSERT INTO jr_rate_limits (key, rate, burst, tokens) VALUES ($1, $2, $3, $3) "
          "ON CONFLICT (key) DO UPDATE SET rate = EXCLUDED.rate, burst = EXCLUDED.burst, "
          "tokens = least(jr_rate_limits.tokens, EXCLUDED.burst), updated_at = now(), "
          "pattern = NULL",
          key, rate, burst);
      // A pattern ("tenant:*"): the buckets made from it follow (migration 15).
      tx.exec_params(
          "UPDATE jr_rate_limits SET rate = $2, burst = $3, tokens = least(tokens, $3) "
          "WHERE pattern = $1",
          key, rate, burst);
      tx.commit();
      return 0;
    });
  }

  bool RateLimitRemove(const std::string& key) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params("DELETE FROM jr_rate_limits WHERE key = $1", key);
      tx.exec_params("DELETE FROM jr_rate_limits WHERE pattern = $1", key);
      tx.commit();
      return r.affected_rows() > 0;
    });
  }

  std::string RateLimitList() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec(
          "SELECT coalesce(json_agg(json_build_object('key', key, 'rate', rate, 'burst', burst, "
          "'tokens', least(burst, tokens + rate * extract(epoch from now() - updated_at)), "
          "'pattern', pattern) ORDER BY key), '[]')::text FROM jr_rate_limits");
      return std::string(r[0][0].c_str());
    });
  }

  void RateKeyFieldSet(const std::string& kind, const std::string& field,
                       const std::string& prefix) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params("SELECT jr_rate_key_field_set($1, $2, $3)", kind, field,
                     prefix.empty() ? nullptr : prefix.c_str());
      tx.commit();
      return 0;
    });
  }

  bool RateKeyFieldRemove(const std::string& kind) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = tx.exec_params("SELECT jr_rate_key_field_rm($1)", kind);
      tx.commit();
      return r[0][0].as<bool>();
    });
  }

  std::string RateKeyFieldList() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec(
          "SELECT coalesce(json_agg(json_build_object('kind', kind, 'field', field, 'prefix', "
          "prefix) ORDER BY kind), '[]')::text FROM jr_rate_key_fields");
      return std::string(r[0][0].c_str());
    });
  }

  bool KindsIdle(const std::vector<std::string>& kinds) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params(
          "SELECT NOT EXISTS (SELECT 1 FROM jr_jobs WHERE kind = ANY($1::text[]) AND state IN "
          "('available', 'running'))",
          pg_text_array(kinds));
      return r[0][0].as<bool>();
    });
  }

  void CronUpsert(const std::vector<CronEntry>& entries) override {
    guard([&] {
      pqxx::work tx(*conn_);
      pg::cron_upsert(tx, entries);
      tx.commit();
      return 0;
    });
  }

  std::string CronList() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec(
          "SELECT coalesce(json_agg(json_build_object('name', name, 'schedule', schedule, "
          "'timezone', timezone, 'kind', kind, 'queue', queue, 'payload', payload, 'backfill', "
          "backfill, 'source', source, 'next_run_at', next_run_at, 'last_run_at', last_run_at) "
          "ORDER BY name), '[]')::text FROM jr_cron");
      return std::string(r[0][0].c_str());
    });
  }

  int CronRun(const CronNext& next) override {
    return guard([&] {
      pqxx::work tx(*conn_);
      int n = pg::cron_run(tx, next);
      if (n > 0) tx.exec("SELECT pg_notify('jr_jobs', '')");
      tx.commit();
      return n;
    });
  }

  void WorkerRegister(const WorkerRegisterParams& p) override {
    guard([&] {
      char host[256] = {0};
      gethostname(host, sizeof host - 1);
      pqxx::work tx(*conn_);
      tx.exec_params(
          "INSERT INTO jr_workers (id, host, pid, kinds, queues) VALUES ($1, $2, $3, $4, $5) "
          "ON CONFLICT (id) DO UPDATE SET kinds = EXCLUDED.kinds, queues = EXCLUDED.queues, "
          "heartbeat_at = now(), host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = now()",
          p.worker_id, std::string(host), static_cast<int>(getpid()), pg_text_array(p.kinds),
          pg_text_array(p.queues));
      tx.commit();
      return 0;
    });
  }

  void WorkerHeartbeat(const std::string& worker_id, int64_t jobs_done) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params("UPDATE jr_workers SET heartbeat_at = now(), jobs_done = $2 WHERE id = $1",
                     worker_id, jobs_done);
      tx.commit();
      return 0;
    });
  }

  void WorkerUnregister(const std::string& worker_id) override {
    guard([&] {
      pqxx::work tx(*conn_);
      tx.exec_params("DELETE FROM jr_workers WHERE id = $1", worker_id);
      tx.commit();
      return 0;
    });
  }

  bool WorkerServesKind(const std::string& kind, double live_seconds) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      auto r = tx.exec_params(
          "SELECT EXISTS (SELECT 1 FROM jr_workers WHERE $1 = ANY(kinds) AND heartbeat_at > "
          "now() - make_interval(secs => $2))",
          kind, live_seconds);
      return r[0][0].as<bool>();
    });
  }

  void KindDefaultsUpsert(const std::vector<KindDefaults>& kinds) override {
    guard([&] {
      pqxx::work tx(*conn_);
      for (const auto& k : kinds) {
        std::string sched = k.retry_schedule
                                ? pg_int_array(to_i64(parse_retry_schedule(*k.retry_schedule)))
                                : std::string();
        tx.exec_params(
            "INSERT INTO jr_kinds (kind, plugin, default_queue, timeout_ms, max_attempts, "
            "retry_schedule, finalizer) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind) "
            "DO UPDATE SET plugin = EXCLUDED.plugin, default_queue = EXCLUDED.default_queue, "
            "timeout_ms = EXCLUDED.timeout_ms, max_attempts = EXCLUDED.max_attempts, "
            "retry_schedule = EXCLUDED.retry_schedule, finalizer = EXCLUDED.finalizer, "
            "updated_at = now()",
            k.kind, k.plugin, opt(k.default_queue),
            k.timeout_ms ? std::to_string(*k.timeout_ms).c_str() : nullptr,
            k.max_attempts ? std::to_string(*k.max_attempts).c_str() : nullptr,
            k.retry_schedule ? sched.c_str() : nullptr, opt(k.finalizer));
      }
      tx.commit();
      return 0;
    });
  }

  void Listen() override {
    guard([&] {
      if (!receiver_) receiver_ = std::make_unique<NotifyReceiver>(*conn_, "jr_jobs");
      return 0;
    });
  }

  bool WaitForJobs(int timeout_ms) override {
    return guard([&] {
      if (!receiver_) receiver_ = std::make_unique<NotifyReceiver>(*conn_, "jr_jobs");
      int before = receiver_->count;
      conn_->get_notifs();
      if (receiver_->count != before) return true;
      conn_->await_notification(timeout_ms / 1000, (timeout_ms % 1000) * 1000L);
      return receiver_->count != before;
    });
  }

  bool LostWhileIdle() override {
    if (!conn_ || !conn_->is_open()) return true;
    if (receiver_) return false;  // LISTENing: a notification makes it readable too
    pollfd p{};
    p.fd = conn_->sock();
    p.events = POLLIN;
    if (p.fd < 0) return true;
    // Readable or hung up with nothing asked: the backend went away (or sent a notice, which
    // costs one needless reconnect, no error).
    return ::poll(&p, 1, 0) > 0;
  }

  void* NativeHandle() override {
    return guard([&] { return static_cast<void*>(conn_.get()); });
  }

  bool Ping() override {
    try {
      return guard([&] {
        pqxx::nontransaction tx(*conn_);
        tx.exec("SELECT 1");
        return true;
      });
    } catch (const StoreError&) {
      return false;
    }
  }

  // ---- Operations (host/ops); the SQL is in host/store/pg_ops.cpp ----
  std::string QueueDepths() override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      return pg_ops::queue_depths(tx);
    });
  }

  std::string QueueThroughput(double seconds) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      return pg_ops::queue_throughput(tx, seconds);
    });
  }

  std::string WorkerList(double live_seconds) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      return pg_ops::worker_list(tx, live_seconds);
    });
  }

  int WorkerPruneDead(double older_than_seconds) override {
    return in_tx([&](pqxx::work& tx) { return pg_ops::worker_prune_dead(tx, older_than_seconds); });
  }

  void WorkerPublish(const std::string& worker_id, const std::string& details_json,
                     const std::vector<int64_t>& minute_starts,
                     const std::vector<std::string>& outcomes, const std::vector<int64_t>& counts,
                     bool prune_stats) override {
    in_tx([&](pqxx::work& tx) {
      pg_ops::worker_publish(tx, worker_id, details_json, minute_starts, outcomes, counts,
                             prune_stats);
      return 0;
    });
  }

  void WebhookUrlsSet(const std::vector<std::string>& served,
                      const std::vector<std::pair<std::string, std::string>>& urls) override {
    in_tx([&](pqxx::work& tx) {
      pg_ops::webhook_urls_set(tx, served, urls);
      return 0;
    });
  }

  std::vector<WebhookDelivery> WebhookClaim(const std::string& owner, int limit,
                                            double lease_seconds) override {
    return in_tx(
        [&](pqxx::work& tx) { return pg_ops::webhook_claim(tx, owner, limit, lease_seconds); });
  }

  void WebhookDelivered(int64_t id, int http_status) override {
    in_tx([&](pqxx::work& tx) {
      pg_ops::webhook_delivered(tx, id, http_status);
      return 0;
    });
  }

  void WebhookFailed(int64_t id, int http_status, const std::string& error, double retry_in_seconds,
                     int max_attempts) override {
    in_tx([&](pqxx::work& tx) {
      pg_ops::webhook_failed(tx, id, http_status, error, retry_in_seconds, max_attempts);
      return 0;
    });
  }

  std::string WebhookForJob(int64_t job_id) override {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      return pg_ops::webhook_for_job(tx, job_id);
    });
  }

 private:
  template <class F>
  auto in_tx(F&& fn) -> decltype(fn(std::declval<pqxx::work&>())) {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = fn(tx);
      tx.commit();
      return r;
    });
  }

  // Inserts n jobs with one COPY: job(i) gives the options of row i, payload(i) its JSON.
  // Ids are reserved up front (COPY returns nothing) with one nextval per row, sent back as
  // ranges of consecutive ids (usually one). The fields other than id and payload are
  // formatted again only when a row's options differ from the previous row's.
  template <class JobAt, class PayloadAt>
  std::vector<int64_t> copy_jobs(size_t n, JobAt job, PayloadAt payload) {
    return guard([&] {
      ensure_prepared();
      std::vector<int64_t> ids;
      if (n == 0) return ids;
      pqxx::work tx(*conn_);
      // The sequence is looked up once (InitPlan), not per row.
      auto r = tx.exec_params(R"SQL(
        SELECT min(v), count(*), (SELECT extract(epoch from now()))
          FROM (SELECT nextval((SELECT pg_get_serial_sequence('jr_jobs', 'id'))::regclass) AS v, g
                  FROM generate_series(1, $1::bigint) g) s
         GROUP BY v - g ORDER BY 1)SQL",
                              static_cast<int64_t>(n));
      ids.reserve(n);
      for (const auto& row : r) {
        int64_t first = row[0].as<int64_t>(), count = row[1].as<int64_t>();
        for (int64_t k = 0; k < count; ++k) ids.push_back(first + k);
      }
      if (ids.size() != n) throw StoreError("id reservation returned the wrong count", false);
      double now = r[0][2].as<double>();
      // Default queue per kind, from the kinds the runners published.
      std::map<std::string, std::string> default_queue;
      for (const auto& row : tx.exec("SELECT kind, default_queue FROM jr_kinds WHERE "
                                     "default_queue IS NOT NULL")) {
        default_queue[row[0].c_str()] = row[1].c_str();
      }
      pqxx::stream_to copy(
          tx, "jr_jobs",
          std::vector<std::string>{"id", "queue", "kind", "payload", "state", "priority", "run_at",
                                   "max_attempts", "timeout_ms", "retry_schedule", "expires_at",
                                   "options", "base_priority", "lock_key", "lock_limit"});
      std::vector<std::string> f(15);
      std::vector<const char*> row(15);
      const JobInsertParams* prev = nullptr;
      for (size_t i = 0; i < n; ++i) {
        const JobInsertParams& j = job(i);
        f[0] = std::to_string(ids[i]);
        if (prev != &j && (prev == nullptr || !same_options(*prev, j))) {
          if (j.queue) {
            f[1] = *j.queue;
          } else {
            auto it = default_queue.find(j.kind);
            f[1] = it == default_queue.end() ? "default" : it->second;
          }
          f[2] = j.kind;
          bool later = j.run_at.has_value() || j.delay_seconds > 0;
          f[4] = later ? "scheduled" : "available";
          f[5] = std::to_string(j.priority);
          f[6] = j.run_at ? *j.run_at : epoch_to_timestamptz(now + j.delay_seconds);
          f[7] = j.max_attempts ? std::to_string(*j.max_attempts) : std::string();
          f[8] = j.timeout_ms ? std::to_string(*j.timeout_ms) : std::string();
          f[9] = j.retry_schedule ? pg_int_array(to_i64(parse_retry_schedule(*j.retry_schedule)))
                                  : std::string();
          f[10] = j.ttl_seconds ? epoch_to_timestamptz(now + *j.ttl_seconds) : std::string();
          f[11] = insert_options(j);
          f[12] = f[5];
          f[13] = j.lock_key ? *j.lock_key : std::string();
          f[14] = j.lock_limit ? std::to_string(*j.lock_limit) : std::string();
          for (int k = 1; k < 15; ++k) row[k] = f[k].c_str();
          if (!j.max_attempts) row[7] = nullptr;
          if (!j.timeout_ms) row[8] = nullptr;
          if (!j.retry_schedule) row[9] = nullptr;
          if (!j.ttl_seconds) row[10] = nullptr;
          if (!j.lock_key) row[13] = nullptr;
          if (!j.lock_limit) row[14] = nullptr;
        }
        prev = &j;
        row[0] = f[0].c_str();
        row[3] = payload(i).c_str();
        copy << std::make_tuple(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                                row[8], row[9], row[10], row[11], row[12], row[13], row[14]);
      }
      copy.complete();
      tx.commit();
      return ids;
    });
  }

  // Two inserts whose rows differ at most in the payload.
  static bool same_options(const JobInsertParams& a, const JobInsertParams& b) {
    return a.kind == b.kind && a.queue == b.queue && a.priority == b.priority &&
           a.delay_seconds == b.delay_seconds && a.run_at == b.run_at &&
           a.max_attempts == b.max_attempts && a.timeout_ms == b.timeout_ms &&
           a.retry_schedule == b.retry_schedule && a.ttl_seconds == b.ttl_seconds &&
           a.result_ttl_seconds == b.result_ttl_seconds &&
           a.failure_ttl_seconds == b.failure_ttl_seconds && a.webhook == b.webhook &&
           a.lock_key == b.lock_key && a.lock_limit == b.lock_limit && a.rate_key == b.rate_key &&
           a.traceparent == b.traceparent;
  }

  static void sort_claimed(std::vector<ClaimedJob>& v) {
    std::sort(v.begin(), v.end(), [](const ClaimedJob& a, const ClaimedJob& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
    });
  }

  static std::vector<int64_t> to_i64(const std::vector<int>& v) {
    return std::vector<int64_t>(v.begin(), v.end());
  }

  void connect() {
    try {
      conn_ = std::make_unique<pqxx::connection>(url_);
      prepared_ = false;
      if (async_commit_ && !pg::pgbouncer()) {
        pqxx::nontransaction tx(*conn_);
        tx.exec("SET synchronous_commit TO off");
      }
    } catch (const std::exception& e) {
      conn_.reset();
      throw StoreError(std::string("cannot connect to PostgreSQL at ") + log::redact(url_) + ": " +
                           trim(e.what()),
                       true);
    }
  }

  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  // Runs `fn`, reconnecting first if the previous call lost the connection, and turns libpqxx
  // errors into StoreError with the transient flag set for connection-level failures.
  template <class F>
  auto guard(F&& fn) -> decltype(fn()) {
    if (!conn_ || !conn_->is_open()) {
      drop();
      connect();
    }
    try {
      return fn();
    } catch (const pqxx::broken_connection& e) {
      drop();
      throw StoreError(std::string("database connection lost: ") + trim(e.what()), true);
    } catch (const pqxx::in_doubt_error& e) {
      drop();
      throw StoreError(std::string("database connection lost during commit: ") + trim(e.what()),
                       true);
    } catch (const pqxx::sql_error& e) {
      std::string_view what = e.what();
      if (e.sqlstate() == "22023" && what.find("PL/pgSQL function jr_") != what.npos) {
        // A value refused by the schema's own checks (a jr_ function raised it): bad input.
        // The message without its CONTEXT lines, but with the row of a bulk insert.
        std::string m = trim(std::string(what.substr(0, what.find('\n'))));
        if (m.rfind("ERROR:  ", 0) == 0) m.erase(0, 8);
        size_t at = what.find("COPY jr_jobs, line ");
        if (at != what.npos) {
          std::string_view rest = what.substr(at + 19);
          std::string row(rest.substr(0, rest.find_first_not_of("0123456789")));
          if (!row.empty()) m += " (payload " + row + " of the bulk enqueue)";
        }
        throw StoreError(m, false, true);
      }
      bool transient = transient_sqlstate(e.sqlstate());
      if (transient) drop();
      throw StoreError(std::string("database error: ") + trim(e.what()), transient);
    } catch (const StoreError&) {
      throw;
    } catch (const std::exception& e) {
      throw StoreError(std::string("database error: ") + trim(e.what()), false);
    }
  }

  void drop() {
    receiver_.reset();
    conn_.reset();
  }

  void ensure_prepared() {
    if (!prepared_) prepare_all();
  }

  void prepare_all() {
    auto& c = *conn_;
    // A job whose parents all completed already is not made to wait for the leader's
    // dependency pass: it is available (or scheduled) at once.
    pg::define(c, "job_insert", R"SQL(
      INSERT INTO jr_jobs (queue, kind, payload, state, priority, base_priority, run_at,
                           max_attempts, timeout_ms, retry_schedule, expires_at, options,
                           unique_key, lock_key, lock_limit, depends_on)
      VALUES (coalesce($2, (SELECT default_queue FROM jr_kinds WHERE kind = $1), 'default'),
              $1, $3::jsonb,
              CASE WHEN $16::bigint[] IS NOT NULL AND EXISTS (
                          SELECT 1 FROM unnest($16::bigint[]) p(id) WHERE NOT EXISTS (
                            SELECT 1 FROM jr_jobs_done d
                             WHERE d.id = p.id AND d.state = 'completed')) THEN 'waiting'
                   WHEN $6::timestamptz IS NOT NULL OR $5::float8 > 0 THEN 'scheduled'
                   ELSE 'available' END,
              $4, $4, coalesce($6::timestamptz, now() + make_interval(secs => $5::float8)),
              $7::integer, $8::bigint, $9::integer[],
              now() + make_interval(secs => $10::float8), $11::jsonb,
              CASE WHEN $13::boolean THEN md5($1 || ':' || $3::jsonb::text) ELSE $12::text END,
              $14::text, $15::integer, $16::bigint[])
      ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
      RETURNING id)SQL");
    pg::prepare_claim(c);
    // Completion of a batch, one pkey lookup per job and no join: $2 holds the ids; owner and
    // state are written so that no index can serve them (`|| ''`) and stay filters after the
    // lookup, because the planner, estimating one running row for a fresh worker id, would
    // otherwise read every running row of the owner through jr_jobs_owner_idx (the cost grew
    // with the backlog, docs/performance.md). Per-job values come from JSON objects keyed by
    // id (binary search): $3 the attempt (fencing), $4 the result (NULL: no job returned one).
    pg::define(c, "job_complete_many", R"SQL(
      WITH d AS (
        DELETE FROM jr_jobs j
         WHERE j.id = ANY($2::bigint[]) AND j.state || '' = 'running'
           AND j.lease_owner || '' = $1 AND j.attempt = ($3::jsonb ->> j.id::text)::int
        RETURNING j.id, j.queue, j.kind, j.payload, j.priority, j.attempt, j.max_attempts,
                  nullif($4::jsonb -> j.id::text, 'null'::jsonb) AS result, j.progress,
                  j.errors, j.options, j.created_at, j.started_at, j.timeout_ms,
                  j.retry_schedule, j.lock_key, j.lock_limit)
      , ins AS (
      INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL(, worker_id, worker_host)
      SELECT id, queue, kind, payload, 'completed', priority, attempt, max_attempts, result,
             progress, errors, options, created_at, started_at, timeout_ms, retry_schedule, lock_key, lock_limit,
             $1, (SELECT w.host FROM jr_workers w WHERE w.id = $1) FROM d
      RETURNING id, lock_key)
      )SQL" JR_PROMOTE_CHILDREN_SQL R"SQL(
      SELECT id, false FROM ins
      UNION ALL
      SELECT NULL, true
       WHERE EXISTS (SELECT 1 FROM promote) OR EXISTS (SELECT 1 FROM ins WHERE lock_key IS NOT NULL)
      )SQL");
    // The entry of a failed attempt names its runner ($3, the lease owner) and that runner's
    // host (migration 9: `runner status` lists who ran each attempt).
    const char* error_entry =
        "jsonb_build_array(jsonb_build_object('attempt', attempt, 'at', now(), 'kind', "
        "$5::text, 'message', $6::text, 'worker_id', $3::text, 'host', "
        "(SELECT w.host FROM jr_workers w WHERE w.id = $3::text)))";
    pg::define(c, "job_retry",
               std::string(R"SQL(
      UPDATE jr_jobs SET state = 'retryable', run_at = now() + make_interval(secs => $4::float8),
             lease_owner = NULL, lease_expires_at = NULL, errors = errors || )SQL") +
                   error_entry + R"SQL(
       WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
      RETURNING id, lock_key IS NOT NULL)SQL");
    pg::define(c, "job_snooze", R"SQL(
      UPDATE jr_jobs SET state = 'scheduled', run_at = now() + make_interval(secs => $4::float8),
             attempt = attempt - 1, lease_owner = NULL, lease_expires_at = NULL
       WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
      RETURNING id, lock_key IS NOT NULL)SQL");
    pg::define(c, "job_release", R"SQL(
      UPDATE jr_jobs SET state = 'available', attempt = attempt - 1, lease_owner = NULL,
             lease_expires_at = NULL
       WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
      RETURNING id, lock_key IS NOT NULL)SQL");
    pg::define(c, "job_finish_done",
               std::string(R"SQL(
      WITH d AS (DELETE FROM jr_jobs
                  WHERE id = $1 AND attempt = $2 AND state = 'running' AND lease_owner = $3
              RETURNING *)
      INSERT INTO jr_jobs_done ()SQL" JR_DONE_COLS R"SQL()
      SELECT id, queue, kind, payload, $4, priority, attempt, max_attempts, NULL, progress,
             errors || )SQL") +
                   error_entry +
                   R"SQL(, options, created_at, started_at,
             timeout_ms, retry_schedule, lock_key, lock_limit FROM d
      RETURNING id, lock_key IS NOT NULL)SQL");
    // By primary key; owner and state are filters (see job_complete_many).
    // Rows another transaction has locked are skipped, not waited for: a completion of some
    // held jobs waiting for its WAL flush (or a cancel request) must not hold up the renewal
    // of all the others; a skipped row is renewed on the next round.
    pg::define(c, "job_heartbeat_held", R"SQL(
      WITH h AS (
        SELECT id FROM jr_jobs
         WHERE id = ANY($3::bigint[]) AND lease_owner || '' = $1 AND state || '' = 'running'
           FOR NO KEY UPDATE SKIP LOCKED)
      UPDATE jr_jobs j SET lease_expires_at = now() + make_interval(secs => $2::float8)
        FROM h WHERE j.id = h.id
      RETURNING j.id, j.cancel_requested)SQL");
    pg::define(c, "job_heartbeat", R"SQL(
      UPDATE jr_jobs SET lease_expires_at = now() + make_interval(secs => $2::float8)
       WHERE lease_owner = $1 AND state = 'running'
      RETURNING id, cancel_requested)SQL");
    pg::define(c, "job_promote_due", R"SQL(
      WITH due AS (SELECT id FROM jr_jobs
                    WHERE state IN ('scheduled', 'retryable') AND run_at <= now()
                    ORDER BY run_at LIMIT $1 FOR UPDATE SKIP LOCKED)
      UPDATE jr_jobs j SET state = 'available' FROM due WHERE j.id = due.id)SQL");
    prepared_ = true;
  }

  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<NotifyReceiver> receiver_;
  bool prepared_ = false;
  bool async_commit_ = false;  // SessionAsyncCommit(): re-applied on every reconnect
  // JobClaim: until then, claims go straight to the transaction path (see JobClaim).
  std::chrono::steady_clock::time_point slow_claims_until_{};
};

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& url) {
  if (is_memory_url(url)) return open_memory_store(url);  // tests: mem_store.hpp
  return std::make_unique<PgStore>(url);
}

}  // namespace jr
