// bench/ui: the dashboard at scale. Fills a throwaway PostgreSQL with --done finished jobs
// (default 10,000,000: 97% completed, 2% dead letters, 1% cancelled over 7 days, 10 queues, 20
// kinds) and --live jobs in jr_jobs (default 1,000,000: 90% available, then scheduled,
// retryable, waiting, 200 running), with generate_series and the secondary indexes dropped during
// the fill and rebuilt from their own definitions; then VACUUM ANALYZE (what autovacuum keeps).
// Times every dashboard endpoint over HTTP (the real server, in-process, loopback) --runs times
// and prints the median and the worst, then each endpoint's plans with EXPLAIN (ANALYZE, BUFFERS).
// A benchmark, not a test: read the numbers (docs/operations.md, "Dashboard at scale"). The full
// size took 17 minutes in all on a busy 2-core machine; `--done 1000000 --live 100000` (about 2
// minutes) compares two builds.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include "harness.hpp"
#include "managed_db.hpp"
#include "metrics.hpp"
#include "server.hpp"
#include "store.hpp"
#include "ui_store.hpp"

using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

void exec(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

// One line per plan node: type, relation and index, actual rows and time, buffers.
void print_plan(const nlohmann::json& n, int depth) {
  std::string line(depth * 2, ' ');
  line += n.value("Node Type", "?");
  if (n.contains("Index Name")) line += " using " + n["Index Name"].get<std::string>();
  if (n.contains("Relation Name")) line += " on " + n["Relation Name"].get<std::string>();
  char buf[160];
  std::snprintf(buf, sizeof buf, "  (rows=%.0f loops=%.0f time=%.3f ms, hit=%lld read=%lld)",
                n.value("Actual Rows", 0.0), n.value("Actual Loops", 0.0),
                n.value("Actual Total Time", 0.0),
                static_cast<long long>(n.value("Shared Hit Blocks", int64_t{0})),
                static_cast<long long>(n.value("Shared Read Blocks", int64_t{0})));
  std::cout << line << buf << "\n";
  if (n.contains("Plans")) {
    for (const auto& c : n["Plans"]) print_plan(c, depth + 1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench/ui: dashboard endpoints with millions of jobs"};
  int64_t done = 10000000, live = 1000000;
  int runs = 20;
  bool plans = true;
  bool keep = false;
  app.add_option("--done", done, "finished jobs in jr_jobs_done");
  app.add_option("--live", live, "jobs in jr_jobs (90% available)");
  app.add_option("--runs", runs, "requests per endpoint");
  app.add_option("--plans", plans, "print EXPLAIN (ANALYZE, BUFFERS) of every statement");
  app.add_flag("--keep", keep, "leave the cluster running (prints its URL) to look around");
  CLI11_PARSE(app, argc, argv);

  jrtest::TempDir dir;
  jr::ManagedDbOptions o;
  o.data_dir = dir.path() + "/pg";
  o.settings = {{"shared_buffers", "'512MB'"},
                {"max_wal_size", "'4GB'"},
                {"maintenance_work_mem", "'256MB'"},
                {"synchronous_commit", "off"}};
  jr::ManagedDb db(o);
  db.start();
  std::string url = db.url();
  jr::Store::open(url)->SchemaMigrate();
  pqxx::connection c(url);

  auto t = Clock::now();
  // Secondary indexes are rebuilt after the fill: much faster than maintaining them per row.
  // Unique ones stay (the finalizer trigger of migration 10 inserts ON CONFLICT (unique_key)).
  std::vector<std::string> defs;
  {
    pqxx::nontransaction tx(c);
    for (const auto& r :
         tx.exec("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('jr_jobs', "
                 "'jr_jobs_done') AND indexname NOT LIKE '%pkey' AND indexdef NOT LIKE "
                 "'CREATE UNIQUE %'")) {
      defs.emplace_back(r[1].c_str());
      tx.exec("DROP INDEX " + std::string(r[0].c_str()));
    }
  }
  exec(c,
       "ALTER TABLE jr_jobs_done SET (autovacuum_enabled = false); ALTER TABLE jr_jobs SET "
       "(autovacuum_enabled = false)");
  const int64_t chunk = 1000000;
  for (int64_t from = 1; from <= done; from += chunk) {
    int64_t to = std::min(done, from + chunk - 1);
    exec(c,
         "INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, attempt, "
         "created_at, started_at, finished_at, errors, worker_id) SELECT g, 'q' || (g % 10), "
         "'k' || (g % 20), jsonb_build_object('user', g % 100000, 'order', g), CASE WHEN g % "
         "50 = 0 THEN 'discarded' WHEN g % 100 = 1 THEN 'cancelled' ELSE 'completed' END, 0, "
         "1, f - interval '2 s', f - interval '1 s', f, CASE WHEN g % 50 = 0 THEN "
         "'[{\"attempt\": 1, \"kind\": \"error\", \"message\": \"boom\"}]'::jsonb ELSE "
         "'[]'::jsonb END, 'bench-runner' FROM (SELECT g, now() - make_interval(secs => (" +
             std::to_string(done) + " - g) * 604800.0 / " + std::to_string(done) +
             ") AS f FROM generate_series(" + std::to_string(from) + ", " + std::to_string(to) +
             ") g) s");
    std::fprintf(stderr, "  filled %lld finished jobs (%.0f s)\n", static_cast<long long>(to),
                 ms_since(t) / 1000);
  }
  const int64_t base = done + 1;
  exec(c,
       "INSERT INTO jr_jobs (id, queue, kind, payload, state, priority, base_priority, run_at, "
       "created_at, depends_on, lease_owner, lease_expires_at, started_at, attempt) SELECT "
       "g, 'q' || (g % 10), 'k' || (g % 20), jsonb_build_object('user', g % 100000), st, g % "
       "3, g % 3, CASE WHEN st IN ('scheduled', 'retryable') THEN now() + make_interval(secs "
       "=> g % 86400) ELSE now() - make_interval(secs => g % 3600) END, now() - "
       "make_interval(secs => g % 3600), CASE WHEN st = 'waiting' THEN ARRAY[g - 1] END, CASE "
       "WHEN st = 'running' THEN 'bench-runner' END, CASE WHEN st = 'running' THEN now() + "
       "interval '1 h' END, CASE WHEN st = 'running' THEN now() END, CASE WHEN st IN "
       "('running', 'retryable') THEN 1 ELSE 0 END FROM (SELECT g, CASE WHEN g % 1000 < 900 "
       "THEN 'available' WHEN g % 1000 < 950 THEN 'scheduled' WHEN g % 1000 < 980 THEN "
       "'retryable' WHEN g % 5000 = 999 THEN 'running' ELSE 'waiting' END AS st FROM "
       "generate_series(" +
           std::to_string(base) + ", " + std::to_string(base + live - 1) + ") g) s");
  exec(c, "SELECT setval(pg_get_serial_sequence('jr_jobs', 'id'), " + std::to_string(base + live) +
              ")");
  // jr_job_deps: written by the insert trigger of migration 11.
  exec(c,
       "INSERT INTO jr_stats_minute (minute, outcome, count) SELECT date_trunc('minute', "
       "now()) - make_interval(mins => m), o, 1000 + m FROM generate_series(0, 59) m, "
       "unnest(ARRAY['completed', 'retried', 'discarded', 'cancelled']) o");
  exec(c,
       "INSERT INTO jr_workers (id, host, pid, kinds, queues, details) SELECT 'bench-runner-' "
       "|| g, 'host' || g, 1000 + g, ARRAY['k1'], ARRAY[]::text[], '{\"plugins\": []}' FROM "
       "generate_series(1, 5) g");
  std::fprintf(stderr, "  filled %lld live jobs (%.0f s)\n", static_cast<long long>(live),
               ms_since(t) / 1000);
  for (const auto& d : defs) exec(c, d);
  exec(c,
       "ALTER TABLE jr_jobs_done RESET (autovacuum_enabled); ALTER TABLE jr_jobs RESET "
       "(autovacuum_enabled)");
  exec(c, "VACUUM ANALYZE");
  double fill_s = ms_since(t) / 1000;
  std::fprintf(stderr, "  indexes rebuilt, vacuumed and analyzed: %.0f s in all\n", fill_s);

  jr::ops::StorePool pool(url);
  jr::ops::Registry registry;
  jr::ops::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.live_seconds = 1e9;  // the bench's registry rows never heartbeat
  jr::ops::Server server(so, pool, registry, [] { return jr::ops::Readiness{}; });
  server.start();
  httplib::Client http("127.0.0.1", server.port());
  http.set_read_timeout(120, 0);

  const std::string some_done = std::to_string(done / 2);
  const std::string some_live = std::to_string(base + live / 2);
  std::vector<std::pair<std::string, std::string>> endpoints = {
      {"overview", "/api/v1/overview"},
      {"jobs available", "/api/v1/jobs?state=available"},
      {"jobs available q3", "/api/v1/jobs?state=available&queue=q3"},
      {"jobs scheduled", "/api/v1/jobs?state=scheduled"},
      {"jobs waiting q1", "/api/v1/jobs?state=waiting&queue=q1"},
      {"jobs running", "/api/v1/jobs?state=running"},
      {"jobs completed", "/api/v1/jobs?state=completed"},
      {"jobs completed kind", "/api/v1/jobs?state=completed&kind=k7"},
      {"jobs completed 1 day ago",
       "/api/v1/jobs?state=completed&before=" + std::string("2000-01-01")},  // replaced below
      {"jobs completed queue (scan)", "/api/v1/jobs?state=completed&queue=q4"},
      {"jobs completed search (scan)", "/api/v1/jobs?state=completed&q=nothing-matches"},
      {"dead letters", "/api/v1/jobs?state=discarded"},
      {"dead letters queue+kind", "/api/v1/jobs?state=discarded&queue=q0&kind=k0"},
      {"dead letter count", "/api/v1/dlq/count"},
      {"dead letter count queue", "/api/v1/dlq/count?queue=q0"},
      {"job (finished)", "/api/v1/jobs/" + some_done},
      {"job (live)", "/api/v1/jobs/" + some_live},
      {"dependencies", "/api/v1/jobs/" + some_live + "/dependencies"},
      {"locks", "/api/v1/locks"},
      {"cron", "/api/v1/cron"},
      {"runners", "/api/v1/runners"},
      {"kinds", "/api/v1/kinds"},
      {"limits", "/api/v1/limits"},
      {"queues (pre-dashboard, full count)", "/api/v1/queues"},
  };
  {  // a finished_at bound one day back
    pqxx::nontransaction tx(c);
    std::string day = tx.exec(
                            "SELECT to_char((now() - interval '1 day') AT TIME ZONE 'UTC', "
                            "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")[0][0]
                          .c_str();
    endpoints[8].second = "/api/v1/jobs?state=completed&before=" + day;
  }
  nlohmann::json out = {{"done", done}, {"live", live}, {"fill_seconds", fill_s}};
  std::printf("%-38s %10s %10s\n", "endpoint", "median ms", "max ms");
  for (const auto& [name, path] : endpoints) {
    std::vector<double> t_ms;
    for (int i = 0; i < runs + 1; ++i) {
      auto t0 = Clock::now();
      auto r = http.Get(path);
      double ms = ms_since(t0);
      if (!r || r->status != 200) {
        std::cerr << name << ": " << (r ? std::to_string(r->status) + " " + r->body : "no answer")
                  << "\n";
        return 1;
      }
      if (i > 0) t_ms.push_back(ms);  // the first request warms the cache and the pool
    }
    std::sort(t_ms.begin(), t_ms.end());
    double median = t_ms[t_ms.size() / 2], worst = t_ms.back();
    std::printf("%-38s %10.2f %10.2f\n", name.c_str(), median, worst);
    out["median_ms"][name] = median;
    out["max_ms"][name] = worst;
  }
  std::cout << std::flush;
  if (plans) {
    jr::ops::ui::DashboardDb dash(url);
    std::string current;
    auto sink = [&](const std::string& sql, const std::string& plan) {
      auto j = nlohmann::json::parse(plan)[0];
      if (keep) std::cout << "\n=== full SQL\n" << sql << "\n";
      std::cout << "\n--- " << current << ": " << sql.substr(0, 160)
                << (sql.size() > 160 ? "..." : "") << "\n";
      std::printf("planning %.3f ms, execution %.3f ms\n", j.value("Planning Time", 0.0),
                  j.value("Execution Time", 0.0));
      print_plan(j["Plan"], 1);
    };
    // The overview is a prepared statement: its first execution on a connection plans it; the
    // EXPLAIN below shows what every later request runs ("planning" is the plan cache's).
    dash.overview(1e9);
    dash.set_explain(sink, true);
    current = "overview";
    dash.overview(1e9);
    for (const char* st : {"available", "scheduled", "running", "completed", "discarded"}) {
      current = std::string("jobs ") + st;
      jr::ops::ui::JobFilter f;
      f.state = st;
      dash.jobs(f);
    }
    current = "jobs completed queue (scan)";
    jr::ops::ui::JobFilter f;
    f.state = "completed";
    f.queue = "q4";
    dash.jobs(f);
    current = "dead letter count";
    dash.dead_letter_count({});
    current = "runners";
    dash.runners(1e9);
  }
  server.stop();
  if (keep) {
    std::cout << "cluster left running: " << url << "\n";
    std::cout << out.dump() << std::endl;
    std::quick_exit(0);  // TempDir would remove the data directory
  }
  db.stop();
  std::cout << "\n" << out.dump() << std::endl;
  return 0;
}
