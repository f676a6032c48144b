// bench/scan: how many page scans per second the scan plugin completes against the local
// fixture server (127.0.0.1) and a throwaway PostgreSQL.
//   cpu       parse + analyze + findings of the fixture page, no network, no database
//   plugin    whole scans through the real .so (PluginHost), one at a time: fetch, 11 row
//             writes, one HEAD link check
//   threads   whole scans through the Scanner shared by T threads, as the runner's slots do
// Each phase runs for a bounded time (--seconds, default 3). Prints human lines, then one JSON
// line with every figure.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fixture_server.hpp"
#include "harness.hpp"
#include "plugin_host.hpp"
#include "scan/src/page_parser.hpp"
#include "scan/src/pipeline.hpp"
#include "scan/src/report.hpp"

using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Quiet : scan::ScanObserver {
  void progress(double, const std::string&) override {}
  void log(const std::string&) override {}
  bool cancelled() override { return false; }
};

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--seconds") seconds = std::stod(argv[i + 1]);
  }
  scantest::FixtureServer server;
  std::string db = jrtest::PgCluster::get().create_database("scanbench");
  nlohmann::json cfg = {{"database_url", db},
                        {"allow_hosts", {"127.0.0.1:" + std::to_string(server.port())}}};
  nlohmann::json out = {{"bench", "scan"}, {"seconds_per_phase", seconds}};

  // cpu
  {
    std::string html = scantest::FixtureServer::good_page(server.base());
    scan::ReportConfig rc;
    int64_t n = 0;
    auto t0 = Clock::now();
    while (secs_since(t0) < seconds) {
      auto page = scan::parse_page(html, server.url("/good"));
      auto a = scan::analyze_page(page, {{"bytes", html.size()}, {"fetch_ms", 1.0}}, rc);
      auto f = scan::page_findings(page, a, rc);
      n += f.size() < 1000 ? 1 : 0;
    }
    double rate = static_cast<double>(n) / secs_since(t0);
    std::printf("cpu:     %.0f pages/s parsed+analyzed (%zu-byte page)\n", rate, html.size());
    out["cpu_pages_per_sec"] = rate;
    out["page_bytes"] = html.size();
  }

  // plugin, sequential
  {
    jrtest::PluginHost host(jrtest::plugin_dir() + "/libjr_scan.so", cfg);
    int64_t n = 0, failed = 0;
    auto t0 = Clock::now();
    while (secs_since(t0) < seconds) {
      nlohmann::json p = {{"scan_id", "seq-" + std::to_string(n)}, {"url", server.url("/good")}};
      auto r = host.run("scan", p.dump());
      failed += r.status == JR_OK ? 0 : 1;
      ++n;
    }
    double el = secs_since(t0);
    std::printf("plugin:  %.1f scans/s (%lld scans, %lld failed, %.2f ms each)\n",
                static_cast<double>(n) / el, static_cast<long long>(n),
                static_cast<long long>(failed), 1000.0 * el / static_cast<double>(n));
    out["plugin_scans_per_sec"] = static_cast<double>(n) / el;
    out["plugin_failed"] = failed;
  }

  // threads sharing one Scanner
  scan::Scanner scanner(scan::parse_config(cfg));
  for (int threads : {2, 4}) {
    std::atomic<int64_t> n{0}, failed{0};
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        Quiet quiet;
        for (int64_t i = 0; secs_since(t0) < seconds; ++i) {
          scan::ScanRequest req{
              "t" + std::to_string(threads) + "-" + std::to_string(t) + "-" + std::to_string(i),
              server.url("/good"), ""};
          try {
            scanner.run(req, quiet);
          } catch (const std::exception&) {
            ++failed;
          }
          ++n;
        }
      });
    }
    for (auto& t : ts) t.join();
    double rate = static_cast<double>(n) / secs_since(t0);
    std::printf("threads: %d -> %.1f scans/s (%lld failed)\n", threads, rate,
                static_cast<long long>(failed.load()));
    out["threads_" + std::to_string(threads) + "_scans_per_sec"] = rate;
    out["threads_" + std::to_string(threads) + "_failed"] = failed.load();
  }
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
