// bench/throughput: the runner's core numbers on one throwaway PostgreSQL (default durability:
// fsync and synchronous_commit on), driving the real `runner` binary with no-op echo jobs.
//   enqueue   bulk (COPY) and single-row insert rates
//   drain     N pre-enqueued jobs processed per second at concurrency C
//   latency   enqueue-to-start p50/p99 at a steady rate while the runner idles
// Prints human lines, then one JSON line with every figure.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "harness.hpp"
#include "managed_db.hpp"
#include "store.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string q1(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? "" : r[0][0].c_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench/throughput: enqueue, drain and latency of the runner on PostgreSQL"};
  int jobs = 100000;
  int concurrency = 10;
  int prefetch = 0;
  int rate = 500;
  double latency_seconds = 5;
  int single_inserts = 2000;
  std::string extra;
  std::string isolation = "none";
  app.add_option("--jobs", jobs, "no-op jobs to drain");
  app.add_option("--concurrency", concurrency, "runner slots");
  app.add_option("--prefetch", prefetch, "runner --prefetch");
  app.add_option("--rate", rate, "jobs/s for the latency phase");
  app.add_option("--latency-seconds", latency_seconds, "length of the latency phase");
  app.add_option("--single-inserts", single_inserts, "single-row inserts to time");
  app.add_option("--isolation", isolation,
                 "runner --isolation: none (in-process, the default here) or sandbox");
  std::string otel_endpoint;
  app.add_option("--otel-endpoint", otel_endpoint,
                 "runner --otel-endpoint: export a span per attempt to this OTLP/HTTP collector");
  CLI11_PARSE(app, argc, argv);

  jrtest::TempDir dir;
  jr::ManagedDbOptions o;
  o.data_dir = dir.path() + "/pg";
  o.settings = {{"max_connections", "200"}, {"shared_buffers", "'256MB'"}};
  jr::ManagedDb db(o);
  db.start();
  std::string url = db.url();
  auto store = jr::Store::open(url);
  store->SchemaMigrate();
  pqxx::connection conn(url);
  nlohmann::json out;
  out["jobs"] = jobs;
  out["concurrency"] = concurrency;
  out["prefetch"] = prefetch;
  out["isolation"] = isolation;

  // Bulk enqueue, in chunks of 10,000 (one COPY + one transaction each).
  {
    std::vector<jr::JobInsertParams> chunk;
    auto t0 = Clock::now();
    for (int i = 0; i < jobs;) {
      int n = std::min(10000, jobs - i);
      chunk.assign(n, jr::JobInsertParams{});
      for (auto& j : chunk) j.kind = "echo";
      store->JobInsertMany(chunk);
      i += n;
    }
    double s = secs_since(t0);
    out["enqueue_bulk_jobs_per_s"] = jobs / s;
    std::printf("enqueue bulk:   %9.0f jobs/s  (%d jobs in %.2f s)\n", jobs / s, jobs, s);
  }
  // Single-row inserts, one transaction each (what a web request does).
  {
    q1(conn, "SELECT 1");
    auto t0 = Clock::now();
    jr::JobInsertParams p;
    p.kind = "echo_not_served";  // not drained: kept out of the drain phase
    for (int i = 0; i < single_inserts; ++i) store->JobInsert(p);
    double s = secs_since(t0);
    out["enqueue_single_jobs_per_s"] = single_inserts / s;
    std::printf("enqueue single: %9.0f jobs/s  (%d inserts in %.2f s)\n", single_inserts / s,
                single_inserts, s);
    q1(conn, "DELETE FROM jr_jobs WHERE kind = 'echo_not_served'");
  }

  // Drain with the real runner binary.
  std::string plugins = dir.path() + "/plugins";
  fs::create_directories(plugins);
  fs::copy_file(jrtest::plugin_dir() + "/libjr_echo.so", plugins + "/libjr_echo.so");
  std::vector<std::string> args = {"--plugins",     plugins,
                                   "--concurrency", std::to_string(concurrency),
                                   "--prefetch",    std::to_string(prefetch),
                                   "--isolation",   isolation,
                                   "--log-level",   "warn"};
  if (!otel_endpoint.empty()) args.insert(args.end(), {"--otel-endpoint", otel_endpoint});
  {
    auto t0 = Clock::now();
    jrtest::RunnerProcess runner(args, {{"DATABASE_URL", url}});
    int64_t last = -1;
    auto last_print = Clock::now();
    for (;;) {
      // Index probes, not count(*): a count would scan the queue every 5 ms during the run.
      int64_t left = std::stoll(
          q1(conn,
             "SELECT (SELECT count(*) FROM (SELECT 1 FROM jr_jobs WHERE state = 'available' LIMIT "
             "1) a) + (SELECT count(*) FROM (SELECT 1 FROM jr_jobs WHERE state = 'running' LIMIT "
             "1) b)"));
      if (left == 0) break;
      if (secs_since(last_print) > 2 || last < 0) {
        std::fprintf(stderr, "  drain: %s left\n",
                     q1(conn, "SELECT count(*) FROM jr_jobs").c_str());
        last_print = Clock::now();
      }
      last = left;
      if (!runner.alive()) {
        std::cerr << "runner died:\n" << runner.log();
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    double s = secs_since(t0);
    out["drain_jobs_per_s"] = jobs / s;
    std::printf("drain:          %9.0f jobs/s  (%d jobs, concurrency %d, %.2f s incl. start-up)\n",
                jobs / s, jobs, concurrency, s);

    // Latency at a steady rate while the runner is idle and listening.
    q1(conn, "TRUNCATE jr_jobs_done");
    int total = static_cast<int>(rate * latency_seconds);
    auto start = Clock::now();
    jr::JobInsertParams p;
    p.kind = "echo";
    for (int i = 0; i < total; ++i) {
      auto due = start + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate));
      std::this_thread::sleep_until(due);
      store->JobInsert(p);
    }
    while (std::stoll(q1(conn, "SELECT count(*) FROM jr_jobs_done")) < total) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto pct = [&](double p_) {
      return std::stod(q1(conn, "SELECT percentile_cont(" + std::to_string(p_) +
                                    ") WITHIN GROUP (ORDER BY extract(epoch from started_at - "
                                    "created_at)) * 1000 FROM jr_jobs_done"));
    };
    double p50 = pct(0.5), p99 = pct(0.99);
    out["latency_rate"] = rate;
    out["latency_p50_ms"] = p50;
    out["latency_p99_ms"] = p99;
    std::printf("latency:        p50 %.2f ms, p99 %.2f ms  (%d jobs at %d/s)\n", p50, p99, total,
                rate);
    runner.signal(SIGTERM);
    runner.wait(std::chrono::seconds(30));
  }
  db.stop();
  std::cout << out.dump() << std::endl;
  return 0;
}
