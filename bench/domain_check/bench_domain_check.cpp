// bench/domain_check: how many domains per second one domain_check job checks with
// max_concurrent_checks = C (default 10), against dnsmasq on 127.0.0.1 (a forwarding resolver in
// front of an authoritative one, no cache) and a loopback WHOIS server, results upserted into a
// throwaway PostgreSQL. Workloads:
//   dns_only   every name is registered (NS answer): one DNS query per name
//   mixed      half registered, half NXDOMAIN confirmed over WHOIS (NS query + TCP WHOIS)
// Prints human lines, then one JSON line with every figure.
#include <jobrunner/abi.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "net_servers.hpp"
#include "plugin_host.hpp"

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

struct Run {
  double seconds = 0;
  double per_second = 0;
};

Run run_job(jrtest::PluginHost& host, const json& names, const std::string& expect_status,
            int expect_count) {
  json payload = {{"domains", names}};
  std::string text = payload.dump();
  auto t0 = Clock::now();
  jrtest::JobOutcome out = host.run("domain_check", text);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (out.status != JR_OK) throw std::runtime_error("job failed: " + out.error);
  json res = json::parse(out.result);
  int unknown = res["summary"]["unknown"].get<int>();
  if (unknown != 0 ||
      (!expect_status.empty() && res["summary"][expect_status].get<int>() != expect_count)) {
    throw std::runtime_error("unexpected summary " + res["summary"].dump());
  }
  return {secs, static_cast<double>(names.size()) / secs};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"domain_check: domains checked per second against a local resolver"};
  int domains = 2000;
  int concurrency = 10;
  int runs = 3;
  app.add_option("--domains", domains, "names per job (default 2000)");
  app.add_option("--concurrency", concurrency, "max_concurrent_checks (default 10)");
  app.add_option("--runs", runs, "runs per workload; the median is reported (default 3)");
  CLI11_PARSE(app, argc, argv);

  int half = domains / 2;
  std::vector<std::string> zones = {"test"};
  for (int i = 0; i < domains; ++i) zones.push_back("reg" + std::to_string(i) + ".test");
  jrtest::net::LoopbackDns dns(zones);
  jrtest::net::WhoisServer whois({});
  std::string db = jrtest::PgCluster::get().create_database("benchdc");
  json cfg = {{"database_url", db},
              {"dns_server", "127.0.0.1"},
              {"dns_port", dns.port()},
              {"max_concurrent_checks", concurrency},
              {"max_domains_per_job", domains},
              {"whois_servers", {{"test", "127.0.0.1:" + std::to_string(whois.port())}}}};
  jrtest::PluginHost host(jrtest::plugin_dir() + "/libjr_domain_check.so", cfg);

  json registered = json::array(), mixed = json::array();
  for (int i = 0; i < domains; ++i) registered.push_back("reg" + std::to_string(i) + ".test");
  for (int i = 0; i < half; ++i) mixed.push_back("reg" + std::to_string(i) + ".test");
  for (int i = half; i < domains; ++i) mixed.push_back("free" + std::to_string(i) + ".test");
  run_job(host, registered, "registered", domains);  // warm-up: table, connections

  auto median = [](std::vector<Run> v) {
    std::sort(v.begin(), v.end(),
              [](const Run& a, const Run& b) { return a.per_second < b.per_second; });
    return v[v.size() / 2];
  };
  std::vector<Run> dns_runs, mixed_runs;
  for (int r = 0; r < runs; ++r) {
    dns_runs.push_back(run_job(host, registered, "registered", domains));
    mixed_runs.push_back(run_job(host, mixed, "available", domains - half));
  }
  Run d = median(dns_runs), m = median(mixed_runs);
  std::printf("domain_check, %d names per job, max_concurrent_checks=%d, median of %d runs\n",
              domains, concurrency, runs);
  std::printf("  dns_only  %8.0f domains/s  (%.3f s per job; NS query via dnsmasq)\n", d.per_second,
              d.seconds);
  std::printf("  mixed     %8.0f domains/s  (%.3f s per job; half NXDOMAIN + loopback WHOIS)\n",
              m.per_second, m.seconds);
  std::printf("  whois queries served: %d\n", whois.queries());
  json out = {{"bench", "domain_check"},
              {"domains_per_job", domains},
              {"max_concurrent_checks", concurrency},
              {"runs", runs},
              {"dns_only_domains_per_second", d.per_second},
              {"dns_only_job_seconds", d.seconds},
              {"mixed_domains_per_second", m.per_second},
              {"mixed_job_seconds", m.seconds}};
  std::cout << out.dump() << std::endl;
  return 0;
}
