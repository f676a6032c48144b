// PgStore: jobs in (one, many by COPY, unique over a period), batches, workflows, and reading
// jobs back. SQL: host/store/sql/jobs.sql.
#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "pg_store.hpp"
#include "util.hpp"

namespace jr {

namespace {

using pg::opt;

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

// Two inserts whose rows differ at most in the payload.
bool same_options(const JobInsertParams& a, const JobInsertParams& b) {
  return a.kind == b.kind && a.queue == b.queue && a.priority == b.priority &&
         a.delay_seconds == b.delay_seconds && a.run_at == b.run_at &&
         a.max_attempts == b.max_attempts && a.timeout_ms == b.timeout_ms &&
         a.retry_schedule == b.retry_schedule && a.ttl_seconds == b.ttl_seconds &&
         a.result_ttl_seconds == b.result_ttl_seconds &&
         a.failure_ttl_seconds == b.failure_ttl_seconds && a.webhook == b.webhook &&
         a.lock_key == b.lock_key && a.lock_limit == b.lock_limit && a.rate_key == b.rate_key &&
         a.traceparent == b.traceparent;
}

// The insert of one job in the COPY (jobs with unique keys or parents go one by one).
bool needs_one_by_one(const JobInsertParams& j) {
  return j.unique || j.unique_key || !j.depends_on.empty() || j.unique_period();
}

}  // namespace

JobInsertResult PgStore::JobInsertEx(const JobInsertParams& p) {
  if (p.unique_period()) {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = pg::exec(tx, sql::job_enqueue_ex, p.kind, p.payload, enqueue_options(p));
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
                            ? pg_int_array(pg::to_i64(parse_retry_schedule(*p.retry_schedule)))
                            : std::string();
    std::string deps = pg_int_array(p.depends_on);
    for (int tries = 0;; ++tries) {
      pqxx::work tx(*conn_);
      if (!p.depends_on.empty()) {
        auto found = pg::exec(tx, sql::job_parents_missing, deps);
        if (!found[0][0].is_null()) {
          throw StoreError(
              "--depends-on names jobs that do not exist: " + std::string(found[0][0].c_str()),
              false);
        }
      }
      auto r = pg::exec(tx, sql::job_insert, p.kind, opt(p.queue), p.payload, p.priority,
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
      auto existing =
          pg::exec(tx, sql::job_unique_holder, p.kind, p.payload, p.unique, opt(p.unique_key));
      tx.commit();
      if (!existing.empty()) return JobInsertResult{existing[0][0].as<int64_t>(), false};
      if (tries > 10) throw StoreError("unique insert kept racing; giving up", true);
    }
  });
}

std::vector<int64_t> PgStore::JobInsertMany(const std::vector<JobInsertParams>& jobs) {
  // COPY cannot resolve unique keys or check parents: such jobs go one by one.
  if (std::any_of(jobs.begin(), jobs.end(), needs_one_by_one)) {
    std::vector<int64_t> ids;
    ids.reserve(jobs.size());
    for (const auto& j : jobs) ids.push_back(JobInsertEx(j).id);
    return ids;
  }
  return copy_jobs(
      jobs.size(), [&](size_t i) -> const JobInsertParams& { return jobs[i]; },
      [&](size_t i) -> const std::string& { return jobs[i].payload; });
}

std::vector<int64_t> PgStore::JobInsertBulk(const JobInsertParams& base,
                                            const std::vector<std::string>& payloads) {
  if (needs_one_by_one(base)) {
    std::vector<int64_t> ids;
    ids.reserve(payloads.size());
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

// Inserts n jobs with one COPY: job(i) gives the options of row i, payload(i) its JSON.
// Ids are reserved up front (COPY returns nothing) with one nextval per row, sent back as
// ranges of consecutive ids (usually one). The fields other than id and payload are
// formatted again only when a row's options differ from the previous row's.
template <class JobAt, class PayloadAt>
std::vector<int64_t> PgStore::copy_jobs(size_t n, JobAt job, PayloadAt payload) {
  return guard([&] {
    ensure_prepared();
    std::vector<int64_t> ids;
    if (n == 0) return ids;
    pqxx::work tx(*conn_);
    auto r = pg::exec(tx, sql::job_ids_reserve, static_cast<int64_t>(n));
    ids.reserve(n);
    for (const auto& row : r) {
      int64_t first = row[0].as<int64_t>(), count = row[1].as<int64_t>();
      for (int64_t k = 0; k < count; ++k) ids.push_back(first + k);
    }
    if (ids.size() != n) throw StoreError("id reservation returned the wrong count", false);
    double now = r[0][2].as<double>();
    // Default queue per kind, from the kinds the runners published.
    std::map<std::string, std::string> default_queue;
    for (const auto& row : pg::exec(tx, sql::kind_default_queues)) {
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
        f[6] = j.run_at ? *j.run_at : utc_timestamp(now + j.delay_seconds);
        f[7] = j.max_attempts ? std::to_string(*j.max_attempts) : std::string();
        f[8] = j.timeout_ms ? std::to_string(*j.timeout_ms) : std::string();
        f[9] = j.retry_schedule ? pg_int_array(pg::to_i64(parse_retry_schedule(*j.retry_schedule)))
                                : std::string();
        f[10] = j.ttl_seconds ? utc_timestamp(now + *j.ttl_seconds) : std::string();
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

std::optional<int64_t> PgStore::JobReplay(int64_t id) {
  auto src = guard([&]() -> std::optional<JobInsertParams> {
    pqxx::nontransaction tx(*conn_);
    auto r = pg::exec(tx, sql::job_replay_source, id);
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

std::optional<JobView> PgStore::JobGet(int64_t id) {
  return guard([&]() -> std::optional<JobView> {
    pqxx::nontransaction tx(*conn_);
    auto r = pg::exec(tx, sql::job_get, id);
    if (r.empty()) return std::nullopt;
    return JobView{r[0][0].c_str()};
  });
}

std::vector<JobView> PgStore::JobList(const JobListParams& p) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    auto r = pg::exec(tx, sql::job_list, opt(p.state), opt(p.kind), opt(p.queue), p.limit);
    std::vector<JobView> out;
    for (const auto& row : r) out.push_back(JobView{row[0].c_str()});
    return out;
  });
}

void PgStore::JobProgress(int64_t id, int attempt, double percent, const std::string& step) {
  guard([&] {
    pqxx::work tx(*conn_);
    pg::exec(tx, sql::job_progress, id, attempt, percent,
             step.empty() ? nullptr : valid_utf8(step).c_str());
    tx.commit();
    return 0;
  });
}

std::string PgStore::BatchEnqueue(const std::string& kind, const std::string& payloads,
                                  const std::string& options, const std::string& on_complete,
                                  const std::string& on_failure) {
  std::string refused;  // the SQL function's message for input it refuses
  std::string doc = guard([&] {
    pqxx::work tx(*conn_);
    try {
      auto r = pg::exec(tx, sql::batch_enqueue, kind, payloads, options, on_complete, on_failure);
      tx.commit();
      return std::string(r[0][0].c_str());
    } catch (const pqxx::sql_error& e) {
      if (e.sqlstate() != "22023" && e.sqlstate() != "22P02") throw;
      refused = pg::trim(e.what());
      if (refused.rfind("ERROR:  ", 0) == 0) refused = refused.substr(8);
      return std::string();
    }
  });
  if (!refused.empty()) throw std::invalid_argument(refused);
  return doc;
}

namespace {
// The one text value of a function's answer, or nothing for NULL (an id that does not exist).
std::optional<std::string> text_or_null(const pqxx::result& r) {
  if (r.empty() || r[0][0].is_null()) return std::nullopt;
  return std::string(r[0][0].c_str());
}
}  // namespace

std::optional<std::string> PgStore::BatchStatus(int64_t id) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return text_or_null(pg::exec(tx, sql::batch_status, id));
  });
}

std::string PgStore::WorkflowEnqueue(const std::string& doc_json) {
  return in_tx([&](pqxx::work& tx) {
    return std::string(pg::exec(tx, sql::workflow_enqueue, doc_json)[0][0].c_str());
  });
}

std::optional<std::string> PgStore::WorkflowStatus(int64_t id) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return text_or_null(pg::exec(tx, sql::workflow_status, id));
  });
}

std::optional<std::string> PgStore::JobParentResults(int64_t job_id, int64_t offset,
                                                     int64_t max_bytes, int64_t max_count) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return text_or_null(
        pg::exec(tx, sql::job_parent_results, job_id, offset, max_bytes, max_count));
  });
}

}  // namespace jr
