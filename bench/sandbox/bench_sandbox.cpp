// bench_sandbox: microseconds per no-op echo job ("{}"), in-process (InProcessExecutor) against
// sandboxed (SandboxExecutor, warm pool with one worker per caller), at 1 and several concurrent
// callers. Each caller runs jobs back to back for a fixed time; per-job time = wall / jobs per
// caller. Usage: bench_sandbox [seconds per point, default 2] [network: none (default) | loopback].
// Human lines, then one JSON line.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "host_api.hpp"
#include "sandbox.hpp"

namespace {

class NullServices : public jr::HostServices {
 public:
  void job_log(jr_job_ctx*, int, std::string_view) override {}
  void job_progress(jr_job_ctx*, double, std::string_view) override {}
  int64_t job_enqueue(jr_job_ctx*, std::string_view, std::string_view, std::string_view) override {
    return 1;
  }
};

// Jobs per second over all callers, and mean microseconds one caller waits per job.
struct Point {
  double jobs_per_s = 0;
  double us_per_job = 0;
  int64_t failures = 0;
};

Point measure(jr::Executor& ex, int callers, double seconds) {
  std::atomic<int64_t> total{0}, failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  auto t0 = std::chrono::steady_clock::now();
  for (int c = 0; c < callers; ++c) {
    ts.emplace_back([&] {
      NullServices s;
      std::string kind = "echo", payload = "{}";
      jr_job j{};
      j.struct_size = sizeof(jr_job);
      j.kind = kind.c_str();
      j.queue = "default";
      j.payload = payload.c_str();
      j.payload_len = payload.size();
      j.attempt = 1;
      j.max_attempts = 1;
      int64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        jr_job_ctx ctx;
        ctx.job_id = j.id = n;
        ctx.kind = kind;
        ctx.services = &s;
        jr::ExecOutcome o = ex.run(j, ctx, 0);
        if (o.status != JR_OK || o.host_error_kind) ++failures;
        ++n;
      }
      total += n;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Point p;
  p.jobs_per_s = static_cast<double>(total.load()) / wall;
  p.us_per_job = wall * 1e6 * callers / static_cast<double>(std::max<int64_t>(1, total.load()));
  p.failures = failures.load();
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  std::string network = argc > 2 ? argv[2] : "none";
  nlohmann::json sandbox_config = {{"sandbox", {{"network", network}}}};
  std::string echo = jrtest::plugin_dir() + "/libjr_echo.so";
  jr::LoadedPlugin inproc = jr::load_plugin(echo);
  jr::init_plugin(inproc, nlohmann::json::object());
  jr::InProcessExecutor in(&inproc);
  jr::LoadedPlugin described = jr::sandbox::describe_in_sandbox(echo);
  nlohmann::json points = nlohmann::json::array();
  std::printf("no-op echo job, network %s, %.1f s per point, %u hardware threads\n",
              network.c_str(), seconds, std::thread::hardware_concurrency());
  std::printf("%8s %16s %16s %16s %14s\n", "callers", "in-process us", "sandboxed us",
              "overhead us", "sandbox jobs/s");
  for (int callers : {1, 2, 4, 8}) {
    jr::sandbox::SandboxOptions o;
    o.pool_size = callers;
    auto sb = jr::sandbox::make_executor(described, sandbox_config, o);
    sb->start();
    Point a = measure(in, callers, seconds);
    Point b = measure(*sb, callers, seconds);
    std::printf("%8d %16.2f %16.2f %16.2f %14.0f\n", callers, a.us_per_job, b.us_per_job,
                b.us_per_job - a.us_per_job, b.jobs_per_s);
    if (a.failures + b.failures > 0) {
      std::printf("  failures: in-process %lld, sandboxed %lld\n",
                  static_cast<long long>(a.failures), static_cast<long long>(b.failures));
    }
    points.push_back({{"callers", callers},
                      {"in_process_us_per_job", a.us_per_job},
                      {"sandboxed_us_per_job", b.us_per_job},
                      {"overhead_us_per_job", b.us_per_job - a.us_per_job},
                      {"in_process_jobs_per_s", a.jobs_per_s},
                      {"sandboxed_jobs_per_s", b.jobs_per_s},
                      {"failures", a.failures + b.failures}});
    sb->stop();
  }
  // Worker start: spawn, confinement, plugin load and init of one worker (a pool of one).
  std::vector<double> starts;
  for (int i = 0; i < 20; ++i) {
    jr::sandbox::SandboxOptions o;
    auto sb = jr::sandbox::make_executor(described, nlohmann::json::object(), o);
    auto t0 = std::chrono::steady_clock::now();
    sb->start();
    starts.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    sb->stop();
  }
  std::sort(starts.begin(), starts.end());
  std::printf("worker start ms: median %.2f, p90 %.2f (20 starts)\n", starts[starts.size() / 2],
              starts[starts.size() * 9 / 10]);
  std::cout << nlohmann::json({{"bench", "sandbox"},
                               {"network", network},
                               {"points", points},
                               {"worker_start_ms_median", starts[starts.size() / 2]},
                               {"worker_start_ms_p90", starts[starts.size() * 9 / 10]}})
                   .dump()
            << "\n";
  return 0;
}
