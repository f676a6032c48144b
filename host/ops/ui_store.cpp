#include "ui_store.hpp"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <pqxx/pqxx>
#include <stdexcept>

#include "job_options.hpp"
#include "log.hpp"
#include "pg_statement.hpp"
#include "server.hpp"
#include "store.hpp"

namespace jr::ops::ui {
namespace {

const std::vector<std::string> kPending = {"waiting", "scheduled", "retryable"};

bool transient_sqlstate(const std::string& s) {
  return s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s == "40001" || s == "40P01" ||
         s.rfind("53", 0) == 0 || s == "55P03";
}

// Positional parameters of a statement built at run time: add() returns "$n".
class Params {
 public:
  std::string add(std::string v) {
    values_.push_back(std::move(v));
    nulls_.push_back(false);
    return "$" + std::to_string(values_.size());
  }
  std::string add(int64_t v) { return add(std::to_string(v)); }
  std::vector<const char*> pointers() const {
    std::vector<const char*> p;
    for (size_t i = 0; i < values_.size(); ++i)
      p.push_back(nulls_[i] ? nullptr : values_[i].c_str());
    return p;
  }

 private:
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
};

// A timestamptz from microseconds since the epoch (cursor keys), exactly.
std::string ts_from_us(const std::string& param) {
  return "('1970-01-01 00:00:00+00'::timestamptz + " + param +
         "::bigint * interval '1 microsecond')";
}
std::string us_of(const std::string& column) {
  return "(extract(epoch from " + column + ") * 1000000)::bigint";
}

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

}  // namespace

const std::vector<std::string>& job_states() {
  static const std::vector<std::string> all = {"waiting",   "scheduled", "available", "running",
                                               "retryable", "completed", "discarded", "cancelled"};
  return all;
}

bool finished_state(const std::string& s) {
  return s == "completed" || s == "discarded" || s == "cancelled";
}

std::string encode_cursor(const nlohmann::json& key) {
  std::string in = key.dump(), out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kB64[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kB64[(acc << (6 - bits)) & 63];
  return out;
}

nlohmann::json decode_cursor(const std::string& text) {
  if (text.size() > 4096) throw std::invalid_argument("cursor is too long");
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const char* p = c ? std::strchr(kB64, c) : nullptr;
    if (!p) throw std::invalid_argument("invalid cursor (use next_cursor of the previous page)");
    acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.is_array()) {
    throw std::invalid_argument("invalid cursor (use next_cursor of the previous page)");
  }
  return j;
}

// One pooled connection and the statement runner (EXPLAIN first when asked).
class DashboardDb::Conn {
 public:
  explicit Conn(const std::string& url)
      : owned(std::make_unique<pqxx::connection>(url)), c(*owned) {
    jit_off();
  }
  // A connection of a pooled Store, for the time of one request.
  explicit Conn(pqxx::connection& borrowed) : c(borrowed) { jit_off(); }
  // Short index probes only: JIT compilation (triggered by the subplans' cost estimates) cost
  // more than the whole overview took without it (55 ms of 130 in bench/ui).
  // Through PgBouncer (transaction pooling) a session setting would stay with a server
  // connection other clients then use: there it is set per statement instead (exec).
  void jit_off() {
    if (Store::pgbouncer()) return;
    pqxx::nontransaction tx(c);
    tx.exec("SET jit = off");
  }
  pqxx::result exec(const std::string& sql, const Params& p,
                    const std::function<void(const std::string&, const std::string&)>& explain,
                    bool analyze) {
    auto ptrs = p.pointers();
    if (Store::pgbouncer()) {
      pqxx::work tx(c);
      tx.exec("SET LOCAL jit = off");
      if (explain) {
        const char* how =
            analyze ? "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " : "EXPLAIN (FORMAT JSON) ";
        auto plan = tx.exec_params(how + sql, pqxx::prepare::make_dynamic_params(ptrs));
        explain(sql, plan[0][0].c_str());
      }
      auto r = tx.exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs));
      tx.commit();
      return r;
    }
    pqxx::nontransaction tx(c);
    if (explain) {
      const char* how =
          analyze ? "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " : "EXPLAIN (FORMAT JSON) ";
      auto plan = tx.exec_params(how + sql, pqxx::prepare::make_dynamic_params(ptrs));
      explain(sql, plan[0][0].c_str());
    }
    return tx.exec_params(sql, pqxx::prepare::make_dynamic_params(ptrs));
  }
  // A statement of fixed text, prepared once per connection under `name` (a hash of the text, so
  // two definitions never share one); EXPLAIN shows the plan its executions use. Through
  // PgBouncer (transaction pooling: a server connection's prepared statements are not this
  // client's) it is sent as it is.
  pqxx::result exec_prepared(
      const std::string& name, const std::string& sql,
      const std::function<void(const std::string&, const std::string&)>& explain, bool analyze) {
    if (Store::pgbouncer()) return exec(sql, Params(), explain, analyze);
    c.prepare(name, sql);  // a no-op when this connection has it already
    pqxx::nontransaction tx(c);
    if (explain) {
      c.prepare_now(name);
      const char* how =
          analyze ? "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " : "EXPLAIN (FORMAT JSON) ";
      auto plan = tx.exec(how + std::string("EXECUTE ") + name);
      explain(sql, plan[0][0].c_str());
    }
    return tx.exec_prepared(name);
  }
  std::unique_ptr<pqxx::connection> owned;  // null when borrowed
  pqxx::connection& c;
};

DashboardDb::DashboardDb(std::string url, size_t max_idle, StorePool* pool)
    : url_(std::move(url)), max_idle_(max_idle), pool_(pool) {}

DashboardDb::~DashboardDb() = default;

void DashboardDb::set_explain(
    std::function<void(const std::string& sql, const std::string& plan_json)> sink, bool analyze) {
  std::lock_guard<std::mutex> lock(mu_);
  explain_ = std::move(sink);
  analyze_ = analyze;
}

std::unique_ptr<DashboardDb::Conn> DashboardDb::take() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  try {
    return std::make_unique<Conn>(url_);
  } catch (const std::exception& e) {
    throw StoreError(
        std::string("cannot connect to PostgreSQL at ") + log::redact(url_) + ": " + e.what(),
        true);
  }
}

void DashboardDb::give(std::unique_ptr<Conn> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_ && c->c.is_open()) idle_.push_back(std::move(c));
}

template <class F>
auto DashboardDb::with(F&& fn) -> decltype(fn(std::declval<Conn&>())) {
  // libpqxx errors as StoreError (transient: the connection is gone or must be dropped).
  auto guarded = [&](Conn& c) {
    try {
      return fn(c);
    } catch (const pqxx::broken_connection& e) {
      throw StoreError(std::string("database connection lost: ") + e.what(), true);
    } catch (const pqxx::sql_error& e) {
      throw StoreError(std::string("database error: ") + e.what(),
                       transient_sqlstate(e.sqlstate()));
    }
  };
  if (pool_ != nullptr) {
    // The HTTP server's pool (and its cap): the API and the dashboard share its connections.
    return pool_->with([&](Store& s) {
      auto* pc = static_cast<pqxx::connection*>(s.NativeHandle());
      if (pc == nullptr) throw StoreError("the dashboard needs a PostgreSQL store", false);
      Conn c(*pc);
      return guarded(c);
    });
  }
  std::unique_ptr<Conn> c = take();
  try {
    auto r = guarded(*c);
    give(std::move(c));
    return r;
  } catch (const StoreError& e) {
    if (!e.transient()) give(std::move(c));
    throw;
  }
}

// ---------------------------------------------------------------------------------------------
// Overview

namespace {

// The overview's statement: fixed text (the live-runner window is its only variable, written in
// as a literal), so each connection prepares it once and PostgreSQL keeps its generic plan:
// planning (3.5 to 21 ms per request in bench/ui, depending on load) is not paid per request.
//
// Counts per (queue, state), cheapest first:
//   1. the planner's statistics: the (queue, state) MCV lists of migration 11's extended
//      statistics (pg_stats_ext, one catalog read for both tables), scaled to the table's size
//      now. A count they put at kEstimateFrom or more is taken as is (marked estimated), unread;
//   2. otherwise an index-only count capped at kCountCap: exact below it, and at the cap the
//      larger of the cap and the estimate (marked estimated);
//   3. completed jobs (no per-queue index; 97% of the rows): one index scan of at most
//      kCountCap + 1 of them gives exact counts per queue while there are that few, and above
//      it every queue's count is the estimate.
std::string overview_sql(double live_seconds) {
  const std::string cap = std::to_string(kCountCap);
  const std::string far = std::to_string(kEstimateFrom);
  char live[64];
  std::snprintf(live, sizeof live, "%.3f", live_seconds);
  // Queues with available jobs and each queue's priority levels, by a loose index scan of
  // jr_jobs_queue_available_idx (queue, priority DESC, id): one probe per (queue, priority),
  // at most 2,000. The first entry of a level is its oldest job (lowest id).
  std::string sql = R"SQL(
    WITH RECURSIVE avp AS (
      SELECT 1 AS n, f.queue, f.priority, f.id
        FROM (SELECT queue, priority, id FROM jr_jobs WHERE state = 'available'
               ORDER BY queue, priority DESC, id LIMIT 1) f
      UNION ALL
      SELECT avp.n + 1, nx.queue, nx.priority, nx.id FROM avp CROSS JOIN LATERAL (
        SELECT * FROM (
          (SELECT j.queue, j.priority, j.id FROM jr_jobs j
            WHERE j.state = 'available' AND j.queue = avp.queue AND j.priority < avp.priority
            ORDER BY j.priority DESC, j.id LIMIT 1)
          UNION ALL
          (SELECT j.queue, j.priority, j.id FROM jr_jobs j
            WHERE j.state = 'available' AND j.queue > avp.queue
            ORDER BY j.queue, j.priority DESC, j.id LIMIT 1)) s LIMIT 1) nx
       WHERE avp.n < 2000),
    est AS (
      SELECT done, queue, state, max(n) AS n FROM (
      SELECT s.tablename = 'jr_jobs_done' AS done,
             s.most_common_vals[i][array_position(s.attnames, 'queue')] AS queue,
             s.most_common_vals[i][array_position(s.attnames, 'state')] AS state,
             round(s.most_common_freqs[i] * greatest(c.reltuples, 0) *
                   CASE WHEN c.relpages > 0
                        THEN pg_relation_size(c.oid) / current_setting('block_size')::float8
                             / c.relpages
                        ELSE 1 END)::bigint AS n
        FROM pg_stats_ext s
        JOIN pg_namespace ns ON ns.nspname = s.schemaname
        JOIN pg_class c ON c.relnamespace = ns.oid AND c.relname = s.tablename
        CROSS JOIN LATERAL generate_subscripts(s.most_common_freqs, 1) i
       WHERE s.statistics_name IN ('jr_jobs_ui_queue_state', 'jr_jobs_done_ui_queue_state')
         AND s.schemaname = current_schema()) m GROUP BY 1, 2, 3))SQL";
  // Queues of the pending states (jr_jobs_ui_pending_idx), of dead letters and cancelled jobs
  // (jr_jobs_done_ui_failed_idx): one probe per queue each. States are literals so that the
  // partial indexes' predicates are provably implied.
  auto distinct_queues = [](const std::string& name, const std::string& table,
                            const std::string& state) {
    return ",\n    " + name + " AS (SELECT min(queue) AS queue FROM " + table + " WHERE state = '" +
           state + "' UNION ALL SELECT (SELECT min(t.queue) FROM " + table +
           " t WHERE t.state = '" + state + "' AND t.queue > g.queue) FROM " + name +
           " g WHERE g.queue IS NOT NULL)";
  };
  for (const auto& s : kPending) sql += distinct_queues("q_" + s, "jr_jobs", s);
  sql += distinct_queues("q_discarded", "jr_jobs_done", "discarded");
  sql += distinct_queues("q_cancelled", "jr_jobs_done", "cancelled");
  auto est_of = [](bool done, const std::string& state, const std::string& queue) {
    return std::string("(SELECT e.n FROM est e WHERE e.done = ") + (done ? "true" : "false") +
           " AND e.state = '" + state + "' AND e.queue = " + queue + ")";
  };
  // One (state, queue) row per queue found: `est` from the statistics, `n` the capped count,
  // not read (NULL) when the statistics put it at kEstimateFrom or more.
  auto count_rows = [&](const std::string& table, const std::string& state,
                        const std::string& queues) {
    bool done = table == "jr_jobs_done";
    return "SELECT '" + state +
           "'::text AS state, g.queue, g.est, CASE WHEN coalesce(g.est, 0) < " + far +
           " THEN (SELECT count(*) FROM (SELECT 1 FROM " + table + " c WHERE c.state = '" + state +
           "' AND c.queue = g.queue LIMIT " + cap + ") x) END AS n FROM (SELECT q.queue, " +
           est_of(done, state, "q.queue") + " AS est FROM " + queues +
           " q WHERE q.queue IS NOT NULL) g";
  };
  sql += ",\n    run AS (SELECT queue FROM jr_jobs WHERE state = 'running' LIMIT " + cap + ")";
  sql +=
      ",\n    done_small AS (SELECT queue, count(*) AS n FROM (SELECT queue FROM jr_jobs_done "
      "WHERE state = 'completed' ORDER BY finished_at DESC LIMIT " +
      std::to_string(kCountCap + 1) + ") x GROUP BY queue)";
  sql += ",\n    done_big AS (SELECT coalesce(sum(n), 0) > " + cap + " AS big FROM done_small)";
  sql += ",\n    counts_other AS (" +
         count_rows("jr_jobs", "available", "(SELECT DISTINCT queue FROM avp)");
  for (const auto& s : kPending) sql += "\n      UNION ALL " + count_rows("jr_jobs", s, "q_" + s);
  for (const char* s : {"discarded", "cancelled"}) {
    sql += "\n      UNION ALL " + count_rows("jr_jobs_done", s, std::string("q_") + s);
  }
  sql += "\n      UNION ALL SELECT 'running', r.queue, " + est_of(false, "running", "r.queue") +
         ", r.n FROM (SELECT queue, count(*) AS n FROM run GROUP BY queue) r)";
  sql += R"SQL(,
    counts AS (
      SELECT * FROM counts_other
      UNION ALL SELECT 'completed', d.queue, NULL, d.n FROM done_small d
                 WHERE NOT (SELECT big FROM done_big)
      UNION ALL SELECT 'completed', a.queue,
                       coalesce(e.n, jr_ui_estimate(true, a.queue, 'completed')), NULL
                  FROM (SELECT queue FROM counts_other
                        UNION SELECT queue FROM est WHERE done AND state = 'completed') a
                  LEFT JOIN est e ON e.done AND e.state = 'completed' AND e.queue = a.queue
                 WHERE (SELECT big FROM done_big))
    SELECT json_build_object(
      'counts', (SELECT coalesce(json_agg(json_build_object(
                   'queue', c.queue, 'state', c.state, 'estimated', c.estimated,
                   'n', CASE WHEN c.n IS NULL THEN c.est
                             WHEN c.estimated
                             THEN greatest(c.n, coalesce(c.est, jr_ui_estimate(
                                    c.state IN ('discarded', 'cancelled', 'completed'),
                                    c.queue, c.state)))
                             ELSE c.n END)), '[]')
                   FROM (SELECT c.*, (c.n IS NULL OR c.n >= )SQL" +
         cap + R"SQL( OR (c.state = 'running' AND (SELECT count(*) FROM run) >= )SQL" + cap +
         R"SQL()) AS estimated FROM counts c) c),
      'oldest', (SELECT coalesce(json_agg(json_build_object(
                   'queue', o.queue, 'id', o.id, 'run_at', j.run_at, 'created_at', j.created_at)
                   ORDER BY o.queue), '[]')
                   FROM (SELECT DISTINCT ON (queue) queue, id FROM avp ORDER BY queue, id) o
                   JOIN jr_jobs j ON j.id = o.id),
      'next', (SELECT coalesce(json_agg(json_build_object('queue', h.queue, 'id', h.id)
                   ORDER BY h.queue), '[]')
                   FROM (SELECT DISTINCT ON (queue) queue, id FROM avp ORDER BY queue, n) h),
      'levels_truncated', (SELECT count(*) >= 2000 FROM avp),
      'paused', (SELECT coalesce(json_agg(queue ORDER BY queue), '[]') FROM jr_queue_pauses),
      'limited', (SELECT coalesce(json_agg(key ORDER BY key), '[]') FROM jr_rate_limits),
      'throughput', (SELECT coalesce(json_agg(json_build_object(
                       'minute', t.minute, 'outcome', t.outcome, 'n', t.n) ORDER BY t.minute), '[]')
                       FROM (SELECT minute, outcome, sum(count) AS n FROM jr_stats_minute
                              WHERE minute > date_trunc('minute', now()) - interval '60 minutes'
                              GROUP BY 1, 2) t),
      'running', (SELECT coalesce(json_agg(json_build_object(
                    'id', r.id, 'kind', r.kind, 'queue', r.queue, 'attempt', r.attempt,
                    'started_at', r.started_at, 'progress', r.progress, 'worker_id', r.lease_owner)
                    ORDER BY r.started_at, r.id), '[]')
                    FROM (SELECT id, kind, queue, attempt, started_at, progress, lease_owner
                            FROM jr_jobs WHERE state = 'running'
                           ORDER BY started_at, id LIMIT )SQL" +
         std::to_string(kRunningShown) + R"SQL() r),
      'running_total', (SELECT count(*) FROM run),
      'runners', (SELECT count(*) FROM jr_workers
                   WHERE heartbeat_at > now() - make_interval(secs => )SQL" +
         live + R"SQL(::float8)),
      'now', now())::text)SQL";
  return sql;
}

}  // namespace

nlohmann::json DashboardDb::overview(double live_seconds) {
  const std::string sql = overview_sql(live_seconds);
  char stmt[40];
  std::snprintf(stmt, sizeof stmt, "jr_ui_overview_%zx", std::hash<std::string>{}(sql));
  auto raw = with([&](Conn& c) {
    return std::string(c.exec_prepared(stmt, sql, explain_, analyze_)[0][0].c_str());
  });
  auto j = nlohmann::json::parse(raw);

  // Shape it per queue.
  std::map<std::string, nlohmann::json> queues;
  auto queue = [&](const std::string& name) -> nlohmann::json& {
    auto it = queues.find(name);
    if (it == queues.end()) {
      nlohmann::json q = {{"queue", name},
                          {"paused", false},
                          {"counts", nlohmann::json::object()},
                          {"estimated", nlohmann::json::array()}};
      for (const auto& s : job_states()) q["counts"][s] = 0;
      it = queues.emplace(name, std::move(q)).first;
    }
    return it->second;
  };
  nlohmann::json totals = nlohmann::json::object();
  for (const auto& s : job_states()) totals[s] = 0;
  bool totals_estimated = false;
  for (const auto& c : j["counts"]) {
    auto& q = queue(c["queue"].get<std::string>());
    std::string st = c["state"].get<std::string>();
    q["counts"][st] = c["n"];
    totals[st] = totals[st].get<int64_t>() + c["n"].get<int64_t>();
    if (c["estimated"].get<bool>()) {
      q["estimated"].push_back(st);
      totals_estimated = true;
    }
  }
  for (const auto& name : j["paused"]) queue(name.get<std::string>())["paused"] = true;
  for (const auto& key : j["limited"]) {
    std::string k = key.get<std::string>();
    if (k.rfind("queue:", 0) == 0) queue(k.substr(6))["rate_limited"] = true;
  }
  for (const auto& o : j["oldest"]) {
    auto& q = queue(o["queue"].get<std::string>());
    q["oldest_available"] = o;
  }
  for (const auto& h : j["next"]) queue(h["queue"].get<std::string>())["next_id"] = h["id"];
  nlohmann::json list = nlohmann::json::array();
  for (auto& [name, q] : queues) list.push_back(std::move(q));

  // Throughput: 60 one-minute buckets ending with the current minute.
  nlohmann::json tp = {{"outcomes", nlohmann::json::object()}};
  for (const auto& t : j["throughput"]) {
    std::string o = t["outcome"].get<std::string>();
    if (!tp["outcomes"].contains(o)) tp["outcomes"][o] = nlohmann::json::object();
    tp["outcomes"][o][t["minute"].get<std::string>()] = t["n"];
  }
  return {{"queues", list},
          {"totals", totals},
          {"totals_estimated", totals_estimated},
          {"count_cap", kCountCap},
          {"levels_truncated", j["levels_truncated"]},
          {"throughput", tp},
          {"running", j["running"]},
          {"running_total", j["running_total"]},
          {"runners", j["runners"]},
          {"now", j["now"]}};
}

nlohmann::json DashboardDb::prepared_statements() {
  std::string sql =
      "SELECT coalesce(json_agg(json_build_object('name', name, 'generic_plans', generic_plans, "
      "'custom_plans', custom_plans) ORDER BY name), '[]')::text FROM pg_prepared_statements "
      "WHERE name LIKE 'jr\\_ui\\_%'";
  Params p;
  return nlohmann::json::parse(
      with([&](Conn& c) { return std::string(c.exec(sql, p, nullptr, false)[0][0].c_str()); }));
}

// ---------------------------------------------------------------------------------------------
// Job lists

namespace {

// One index range of a list, in its order. `conds` hold only what the index serves; `residual`
// filters are applied to at most the scan budget of rows (see ui_store.hpp).
struct Part {
  std::string where;  // index-served conditions, "AND"-joined
  std::string order;  // ORDER BY of the range
  Params params;      // exactly those `where` uses (an unused parameter has no type)
};

std::string row_json(bool done) {
  return std::string(
             "json_build_object('id', id, 'state', state, 'kind', kind, 'queue', queue, "
             "'priority', priority, 'attempt', attempt, 'max_attempts', max_attempts, "
             "'created_at', created_at, 'started_at', started_at, ") +
         (done ? "'finished_at', finished_at, 'worker_id', worker_id, "
               : "'run_at', run_at, 'worker_id', lease_owner, ") +
         "'progress', progress, 'error', left(errors->-1->>'message', 300), 'error_kind', "
         "errors->-1->>'kind', 'payload_preview', left(payload::text, 200), 'payload_bytes', "
         "octet_length(payload::text))::text";
}

}  // namespace

nlohmann::json DashboardDb::jobs(const JobFilter& f) {
  const auto& states = job_states();
  if (std::find(states.begin(), states.end(), f.state) == states.end()) {
    throw std::invalid_argument(
        "state must be one of waiting, scheduled, available, running, retryable, completed, "
        "discarded, cancelled");
  }
  if (f.limit < 1 || f.limit > kMaxPage) {
    throw std::invalid_argument("limit must be between 1 and " + std::to_string(kMaxPage));
  }
  for (const auto* t : {&f.since, &f.before}) {
    if (*t && !is_iso8601_time(**t)) {
      throw std::invalid_argument("'" + t->value().substr(0, 60) +
                                  "' is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)");
    }
  }
  nlohmann::json cur = f.cursor ? decode_cursor(*f.cursor) : nlohmann::json();
  auto bad_cursor = [] {
    return std::invalid_argument(
        "invalid cursor for this state (use next_cursor of the previous "
        "page with the same filters)");
  };
  const bool done = finished_state(f.state);
  const std::string table = done ? "jr_jobs_done" : "jr_jobs";
  Params p;
  std::string base = "state = " + p.add(f.state);
  // Residual filters: applied to at most the scan budget of rows; they add their parameters per
  // statement (a statement must use every parameter it is given).
  std::vector<std::function<std::string(Params&)>> residual_fns;
  auto add_cond = [](std::string& where, const std::string& c) { where += " AND " + c; };
  std::vector<Part> parts;
  std::string key_sql;  // the sort key as a JSON array, for cursors

  if (done) {
    // (finished_at DESC, id DESC): jr_jobs_done_state_idx (state, finished_at), with kind
    // jr_jobs_done_kind_state_idx (state, kind, finished_at), with queue (dead letters and
    // cancelled only) jr_jobs_done_ui_failed_idx (state, queue, finished_at).
    std::string w = base;
    if (f.kind) add_cond(w, "kind = " + p.add(*f.kind));
    if (f.queue) {
      if (f.state == "completed") {
        residual_fns.push_back([&f](Params& ps) { return "queue = " + ps.add(*f.queue); });
      } else {
        add_cond(w, "queue = " + p.add(*f.queue));
      }
    }
    if (f.since) add_cond(w, "finished_at >= " + p.add(*f.since) + "::timestamptz");
    if (f.before) add_cond(w, "finished_at < " + p.add(*f.before) + "::timestamptz");
    if (!cur.is_null()) {
      if (cur.size() != 2 || !cur[0].is_number_integer() || !cur[1].is_number_integer()) {
        throw bad_cursor();
      }
      std::string ts = ts_from_us(p.add(cur[0].get<int64_t>()));
      std::string id = p.add(cur[1].get<int64_t>());
      add_cond(w, "finished_at <= " + ts + " AND (finished_at < " + ts + " OR id < " + id + ")");
    }
    parts.push_back({w, "finished_at DESC, id DESC", p});
    key_sql = "json_build_array(" + us_of("finished_at") + ", id)::text";
  } else if (f.state == "available") {
    // Claim order within each queue, queues by name: jr_jobs_queue_available_idx (queue,
    // priority DESC, id). The index's mixed directions take up to three ranges after a cursor.
    const std::string& w = base;
    if (!cur.is_null()) {
      if (cur.size() != 3 || !cur[0].is_string() || !cur[1].is_number_integer() ||
          !cur[2].is_number_integer() || (f.queue && cur[0].get<std::string>() != *f.queue)) {
        throw bad_cursor();
      }
      const std::string cq = cur[0].get<std::string>();
      const int64_t cp = cur[1].get<int64_t>(), ci = cur[2].get<int64_t>();
      Params a = p, b = p, c = p;
      std::string same = w + " AND queue = " + a.add(cq) + " AND priority = " + a.add(cp) +
                         " AND id > " + a.add(ci);
      parts.push_back({same, "id", a});
      std::string lower = w + " AND queue = " + b.add(cq) + " AND priority < " + b.add(cp);
      parts.push_back({lower, "priority DESC, id", b});
      if (!f.queue)
        parts.push_back({w + " AND queue > " + c.add(cq), "queue, priority DESC, id", c});
    } else if (f.queue) {
      Params a = p;
      std::string wq = w + " AND queue = " + a.add(*f.queue);
      parts.push_back({wq, "priority DESC, id", a});
    } else {
      parts.push_back({w, "queue, priority DESC, id", p});
    }
    key_sql = "json_build_array(queue, priority, id)::text";
  } else if (f.state == "running") {
    // Newest first; running jobs are bounded by the runners' slots.
    std::string w = base;
    if (f.queue) add_cond(w, "queue = " + p.add(*f.queue));
    if (!cur.is_null()) {
      if (cur.size() != 1 || !cur[0].is_number_integer()) throw bad_cursor();
      add_cond(w, "id < " + p.add(cur[0].get<int64_t>()));
    }
    parts.push_back({w, "id DESC", p});
    key_sql = "json_build_array(id)::text";
  } else {
    // waiting, scheduled, retryable: (queue, run_at, id) from jr_jobs_ui_pending_idx.
    std::string w = base;
    if (f.queue) add_cond(w, "queue = " + p.add(*f.queue));
    if (!cur.is_null()) {
      if (cur.size() != 3 || !cur[0].is_string() || !cur[1].is_number_integer() ||
          !cur[2].is_number_integer()) {
        throw bad_cursor();
      }
      add_cond(w, "(queue, run_at, id) > (" + p.add(cur[0].get<std::string>()) + ", " +
                      ts_from_us(p.add(cur[1].get<int64_t>())) + ", " +
                      p.add(cur[2].get<int64_t>()) + ")");
    }
    parts.push_back({w, "queue, run_at, id", p});
    key_sql = "json_build_array(queue, " + us_of("run_at") + ", id)::text";
  }
  if (!done) {
    if (f.kind) residual_fns.push_back([&f](Params& ps) { return "kind = " + ps.add(*f.kind); });
    if (f.since) {
      residual_fns.push_back(
          [&f](Params& ps) { return "created_at >= " + ps.add(*f.since) + "::timestamptz"; });
    }
    if (f.before) {
      residual_fns.push_back(
          [&f](Params& ps) { return "created_at < " + ps.add(*f.before) + "::timestamptz"; });
    }
  }
  if (f.search) {
    residual_fns.push_back([&f](Params& ps) {
      return "strpos(lower(payload::text), lower(" + ps.add(*f.search) + "::text)) > 0";
    });
  }
  const bool has_residual = !residual_fns.empty();

  const int64_t need_total = f.limit + 1;
  nlohmann::json rows = nlohmann::json::array();
  std::vector<std::string> keys;
  std::optional<std::string> stopped_at;  // the scan budget ran out here
  int64_t budget = kScanLimit;
  with([&](Conn& c) {
    for (const auto& part : parts) {
      int64_t need = need_total - static_cast<int64_t>(rows.size());
      if (need <= 0) break;
      Params q = part.params;
      std::string residual_sql;
      for (auto& fn : residual_fns) residual_sql += (residual_sql.empty() ? "" : " AND ") + fn(q);
      std::string sql;
      if (!has_residual) {
        sql = "SELECT " + row_json(done) + ", " + key_sql + " FROM " + table + " WHERE " +
              part.where + " ORDER BY " + part.order + " LIMIT " + q.add(need);
      } else {
        sql = "SELECT " + row_json(done) + ", " + key_sql + " FROM (SELECT * FROM " + table +
              " WHERE " + part.where + " ORDER BY " + part.order + " LIMIT " + q.add(budget) +
              ") s WHERE " + residual_sql + " ORDER BY " + part.order + " LIMIT " + q.add(need);
      }
      auto r = c.exec(sql, q, explain_, analyze_);
      for (const auto& row : r) {
        rows.push_back(nlohmann::json::parse(row[0].c_str()));
        keys.emplace_back(row[1].c_str());
      }
      if (!has_residual || static_cast<int64_t>(r.size()) >= need) continue;
      // The page is not full: how far did this range's scan get? (keys only)
      Params k = part.params;
      std::string scan = "SELECT " + key_sql + " AS key FROM " + table + " WHERE " + part.where +
                         " ORDER BY " + part.order + " LIMIT " + k.add(budget);
      auto e =
          c.exec("WITH s AS MATERIALIZED (SELECT key, row_number() OVER () AS rn FROM (" + scan +
                     ") x) SELECT (SELECT count(*) FROM s), (SELECT key FROM s ORDER BY rn "
                     "DESC LIMIT 1)",
                 k, explain_, analyze_);
      int64_t examined = e[0][0].as<int64_t>();
      if (examined >= budget) {
        stopped_at = e[0][1].c_str();
        break;
      }
      budget -= examined;
    }
    return 0;
  });
  nlohmann::json out = {{"state", f.state}};
  std::optional<std::string> next;
  const bool full = static_cast<int64_t>(rows.size()) > f.limit;
  if (full) {
    rows.erase(rows.size() - 1);
    next = keys[f.limit - 1];
  } else if (stopped_at) {
    next = *stopped_at;
  }
  out["jobs"] = std::move(rows);
  out["next_cursor"] =
      next ? nlohmann::json(encode_cursor(nlohmann::json::parse(*next))) : nlohmann::json();
  // Not full because the scan budget ran out: more may match further on (next_cursor).
  out["partial"] = !full && stopped_at.has_value();
  out["scan_limit"] = kScanLimit;
  out["order"] = done                     ? "finished_at desc, id desc"
                 : f.state == "available" ? "queue, priority desc, id (claim order)"
                 : f.state == "running"   ? "id desc"
                                          : "queue, run_at, id";
  return out;
}

// ---------------------------------------------------------------------------------------------
// Job page, dead letters, queues, cron, runners

nlohmann::json DashboardDb::dependencies(int64_t id) {
  Params p;
  std::string v = p.add(id);
  // Each neighbour's state from whichever table holds it (two primary-key probes).
  const char* node =
      "json_build_object('id', n.id, 'state', a.state, 'kind', a.kind, 'queue', a.queue)";
  const char* lookup =
      "LEFT JOIN LATERAL (SELECT state, kind, queue FROM jr_jobs WHERE id = n.id UNION ALL SELECT "
      "state, kind, queue FROM jr_jobs_done WHERE id = n.id LIMIT 1) a ON true";
  std::string sql =
      std::string("SELECT json_build_object(") + "'parents', (SELECT coalesce(json_agg(" + node +
      " ORDER BY n.id), '[]') FROM " + "(SELECT parent AS id FROM jr_job_deps WHERE child = " + v +
      ") n " + lookup + "), 'children', (SELECT coalesce(json_agg(" + node +
      " ORDER BY n.id), '[]') FROM (SELECT child AS id FROM jr_job_deps WHERE "
      "parent = " +
      v + " ORDER BY child LIMIT 101) n " + lookup + "))::text";
  auto j = nlohmann::json::parse(
      with([&](Conn& c) { return std::string(c.exec(sql, p, explain_, analyze_)[0][0].c_str()); }));
  j["more_children"] = j["children"].size() > 100;
  if (j["children"].size() > 100) j["children"].erase(100);
  return j;
}

nlohmann::json DashboardDb::dead_letter_count(const DeadLetterSelection& s) {
  for (const auto* t : {&s.since, &s.before}) {
    if (*t && !is_iso8601_time(**t)) {
      throw std::invalid_argument("'" + t->value().substr(0, 60) + "' is not an ISO 8601 time");
    }
  }
  Params p;
  std::string w = "state = 'discarded'";
  if (s.kind) w += " AND kind = " + p.add(*s.kind);
  if (s.queue) w += " AND queue = " + p.add(*s.queue);
  if (s.since) w += " AND finished_at >= " + p.add(*s.since) + "::timestamptz";
  if (s.before) w += " AND finished_at < " + p.add(*s.before) + "::timestamptz";
  std::string sql = "SELECT count(*) FROM (SELECT 1 FROM jr_jobs_done WHERE " + w + " LIMIT " +
                    p.add(100001) + ") x";
  int64_t n = with([&](Conn& c) { return c.exec(sql, p, explain_, analyze_)[0][0].as<int64_t>(); });
  return {{"count", std::min<int64_t>(n, 100000)}, {"capped", n > 100000}};
}

nlohmann::json DashboardDb::locks() {
  // jr_jobs_lock_running_idx (lock_key) WHERE lock_key IS NOT NULL AND state = 'running'.
  std::string sql = R"SQL(
    SELECT coalesce(json_agg(json_build_object('lock_key', lock_key, 'running', n, 'limit', lim,
                                               'job_ids', ids) ORDER BY lock_key), '[]')::text
      FROM (SELECT lock_key, count(*) AS n, max(coalesce(lock_limit, 1)) AS lim,
                   (array_agg(id ORDER BY id))[1:20] AS ids
              FROM jr_jobs WHERE lock_key IS NOT NULL AND state = 'running'
             GROUP BY lock_key ORDER BY lock_key LIMIT 1000) l)SQL";
  Params p;
  return {{"locks", nlohmann::json::parse(with([&](Conn& c) {
             return std::string(c.exec(sql, p, explain_, analyze_)[0][0].c_str());
           }))}};
}

nlohmann::json DashboardDb::kinds() {
  std::string sql =
      "SELECT coalesce(json_agg(json_build_object('kind', kind, 'plugin', plugin, "
      "'default_queue', default_queue) ORDER BY kind), '[]')::text FROM jr_kinds";
  Params p;
  return {{"kinds", nlohmann::json::parse(with([&](Conn& c) {
             return std::string(c.exec(sql, p, explain_, analyze_)[0][0].c_str());
           }))}};
}

nlohmann::json DashboardDb::cron() {
  // The last five ticks of each entry with the job each made, and that job's state now.
  std::string sql = R"SQL(
    SELECT coalesce(json_agg(json_build_object(
             'name', c.name, 'schedule', c.schedule, 'timezone', c.timezone, 'kind', c.kind,
             'queue', c.queue, 'payload', c.payload, 'backfill', c.backfill, 'source', c.source,
             'next_run_at', c.next_run_at, 'last_run_at', c.last_run_at,
             'runs', (SELECT coalesce(json_agg(json_build_object(
                        'tick', r.tick, 'job_id', r.job_id, 'enqueued_at', r.enqueued_at,
                        'state', coalesce((SELECT state FROM jr_jobs WHERE id = r.job_id),
                                          (SELECT state FROM jr_jobs_done WHERE id = r.job_id),
                                          'pruned')) ORDER BY r.job_id DESC), '[]')
                        FROM (SELECT * FROM jr_cron_runs r WHERE r.name = c.name
                               ORDER BY job_id DESC LIMIT 5) r))
             ORDER BY c.name), '[]')::text
      FROM jr_cron c)SQL";
  Params p;
  return {{"entries", nlohmann::json::parse(with([&](Conn& c) {
             return std::string(c.exec(sql, p, explain_, analyze_)[0][0].c_str());
           }))}};
}

nlohmann::json DashboardDb::runners(double live_seconds) {
  // Connections: the sessions each runner names "jobrunner PID@HOST" (ui_publish.hpp), counted
  // as `runner info` counts them.
  std::string sql = R"SQL(
    SELECT coalesce(json_agg(json_build_object(
             'id', w.id, 'host', w.host, 'pid', w.pid, 'kinds', w.kinds, 'queues', w.queues,
             'started_at', w.started_at, 'heartbeat_at', w.heartbeat_at,
             'heartbeat_age_seconds', extract(epoch from now() - w.heartbeat_at),
             'jobs_done', w.jobs_done,
             'connections', )SQL" +
                    std::string(runner_connections_sql()) + R"SQL(,
             'running', (SELECT count(*) FROM jr_jobs j
                          WHERE j.lease_owner = w.id AND j.state = 'running'),
             'details', w.details) ORDER BY w.started_at, w.id), '[]')::text
      FROM jr_workers w WHERE w.heartbeat_at > now() - make_interval(secs => $1::float8))SQL";
  Params p;
  p.add(std::to_string(live_seconds));
  return {{"runners", nlohmann::json::parse(with([&](Conn& c) {
             return std::string(c.exec(sql, p, explain_, analyze_)[0][0].c_str());
           }))}};
}

}  // namespace jr::ops::ui
