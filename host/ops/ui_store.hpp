// The web dashboard's reads (host/ops/ui_api.cpp serves them as JSON): overview, job lists with
// filters and keyset cursors, dependencies, dead-letter counts, held lock keys, cron, runners.
// Every query walks an index range bounded by a LIMIT (migration 11 adds the indexes), so a page
// costs the same with 10 million finished jobs as with ten:
//   - counts are exact up to kCountCap per (queue, state), the planner's estimate above it;
//   - a filter no index serves (payload text, kind on live jobs, queue on completed jobs) is
//     applied to at most kScanLimit rows per request; a page it could not fill says so
//     ("partial") and its cursor continues the search where it stopped.
// Changes (replay, purge, pause, limits) go through Store (host/store/store.hpp), not here.
//
// Threading: thread-safe; each call takes a connection from a small pool (one per concurrent
// request, at most `max_idle` kept). Methods throw StoreError (transient() = connection lost)
// and std::invalid_argument for a bad filter or cursor (HTTP 400).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace jr::ops {
class StorePool;
}

namespace jr::ops::ui {

constexpr int64_t kCountCap = 2000;  // exact counts per (queue, state) up to this
// A (queue, state) the planner's statistics put at this many jobs or more is not counted: the
// overview shows the estimate (marked), which follows ANALYZE (autovacuum).
constexpr int64_t kEstimateFrom = 5 * kCountCap;
constexpr int kRunningShown = 20;      // running jobs listed on the overview (running_total: all)
constexpr int64_t kScanLimit = 10000;  // rows a filter without an index may examine per request
constexpr int kMaxPage = 500;

// The states a job can be in, live (jr_jobs) then finished (jr_jobs_done).
const std::vector<std::string>& job_states();
bool finished_state(const std::string& state);

struct JobFilter {
  std::string state;  // required: one of job_states()
  std::optional<std::string> kind;
  std::optional<std::string> queue;
  // ISO 8601 bounds on finished_at (finished states) or created_at (live states).
  std::optional<std::string> since;
  std::optional<std::string> before;
  std::optional<std::string> search;  // case-insensitive substring of the payload's JSON text
  std::optional<std::string> cursor;  // next_cursor of the previous page
  int limit = 50;                     // 1..kMaxPage
};

struct DeadLetterSelection {
  std::optional<std::string> kind, queue, since, before;
};

class DashboardDb {
 public:
  // With a pool, its statements run on the pool's connections (the runner's HTTP server: one
  // capped pool for the API and the dashboard, db_budget.hpp); without one, on its own.
  explicit DashboardDb(std::string url, size_t max_idle = 4, StorePool* pool = nullptr);
  ~DashboardDb();

  // {"queues": [{"queue", "paused", "counts": {state: n} (all eight states), "estimated":
  //   [states], "oldest_available", "next_id"}], "totals": {state: n}, "totals_estimated",
  //   "throughput": {"outcomes": {outcome: {minute: n}}}, "running": [up to kRunningShown jobs],
  //   "running_total", "runners", "now"}. Runners count as live within `live_seconds`. One
  //   prepared statement (planned once per connection); see overview_sql() for how it counts.
  nlohmann::json overview(double live_seconds);
  // {"jobs": [summary rows], "next_cursor": string|null, "partial": bool, "order": "..."}.
  nlohmann::json jobs(const JobFilter& f);
  // {"parents": [{"id","state","kind","queue"}], "children": [...], "more_children": bool}.
  nlohmann::json dependencies(int64_t id);
  // {"count": n, "capped": bool}: dead letters matching, exact up to 100,000.
  nlohmann::json dead_letter_count(const DeadLetterSelection& s);
  // {"locks": [{"lock_key", "running", "limit", "job_ids"}]}: lock keys held by running jobs.
  nlohmann::json locks();
  // {"kinds": [{"kind", "plugin", "default_queue"}]}: the kinds runners published (jr_kinds).
  nlohmann::json kinds();
  // {"entries": [jr_cron rows + "runs": [{"tick", "job_id", "enqueued_at", "state"}]]}.
  nlohmann::json cron();
  // {"runners": [jr_workers rows + "connections", "running", "details"]}.
  nlohmann::json runners(double live_seconds);

  // Tests and bench/ui: the statements prepared on an idle connection of this object's own pool
  // (not a borrowed StorePool), [{"name", "generic_plans", "custom_plans"}].
  nlohmann::json prepared_statements();

  // Tests and bench/ui: every statement is first run as EXPLAIN (FORMAT JSON) with the same
  // parameters (with `analyze`: EXPLAIN (ANALYZE, BUFFERS), which runs it) and the plan handed
  // to `sink` (nullptr: off).
  void set_explain(std::function<void(const std::string& sql, const std::string& plan_json)> sink,
                   bool analyze = false);

 private:
  class Conn;
  template <class F>
  auto with(F&& fn) -> decltype(fn(std::declval<Conn&>()));
  std::unique_ptr<Conn> take();
  void give(std::unique_ptr<Conn> c);

  std::string url_;
  size_t max_idle_;
  StorePool* pool_ = nullptr;
  std::mutex mu_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::function<void(const std::string&, const std::string&)> explain_;
  bool analyze_ = false;
};

// The cursor of a job list page: opaque to clients (base64url of a JSON array of the sort key).
std::string encode_cursor(const nlohmann::json& key);
nlohmann::json decode_cursor(const std::string& text);  // throws std::invalid_argument

}  // namespace jr::ops::ui
