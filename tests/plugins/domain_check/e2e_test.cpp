// End to end through the real `runner` binary: enqueue a domain_check job with the CLI, a runner
// serving only this plugin completes it, `runner status --json` shows per-domain statuses.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_env.hpp"

namespace {

using jrtest::PgCluster;
using nlohmann::json;

TEST(DomainCheckE2E, RunnerCompletesAJobWithPerDomainStatuses) {
  std::string db = PgCluster::get().create_database("dce2e");
  // The plugin's table is in its own schema, under its own role (the runner reuses it).
  std::string plugin_url = jrtest::plugin_database(db, "domain_check").url;
  jrtest::TempDir dir;
  std::string plugins = dir.path() + "/plugins";
  std::filesystem::create_directories(plugins);
  std::filesystem::create_symlink(dctest::so_path(), plugins + "/libjr_domain_check.so");
  std::string conf = dir.path() + "/runner.toml";
  {
    std::ofstream f(conf);
    f << "[plugins.domain_check]\n"
      << "dns_server = \"127.0.0.1\"\n"
      << "dns_timeout = 1.0\n"
      << "whois_timeout = 1.0\n"
      << "[plugins.domain_check.whois_servers]\n"
      << "test = \"127.0.0.1:" << dctest::env().whois.port() << "\"\n";
  }
  // The resolver port comes through the manifest's env override.
  std::map<std::string, std::string> envs = {
      {"DATABASE_URL", db},
      {"RUNNER_CONFIG", conf},
      {"DOMAIN_CHECKER_DNS_PORT", std::to_string(dctest::env().dns.port())}};
  jrtest::RunnerProcess runner({"--plugins", plugins}, envs);

  // `runner enqueue` applies a kind's default queue once a runner has registered the kind.
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return PgCluster::query_one(db,
                                    "SELECT count(*) FROM pg_tables WHERE tablename = "
                                    "'jr_kinds'") == "1" &&
               PgCluster::query_one(db,
                                    "SELECT count(*) FROM jr_kinds WHERE kind = "
                                    "'domain_check'") == "1";
      },
      std::chrono::seconds(20)))
      << runner.log();
  jrtest::RunResult enq = jrtest::run_runner(
      {"enqueue", "domain_check", "--payload",
       R"({"domains": ["taken.test", "free.test", "parked.test", "not a name", "hang.slow"]})"},
      envs);
  ASSERT_EQ(enq.exit_code, 0) << enq.err;
  std::string id = enq.out.substr(0, enq.out.find('\n'));

  json job;
  bool done = jrtest::wait_until(
      [&] {
        jrtest::RunResult st = jrtest::run_runner({"status", id, "--json"}, envs);
        if (st.exit_code != 0) return false;
        job = json::parse(st.out, nullptr, false);
        return !job.is_discarded() && job.value("state", "") == "completed";
      },
      std::chrono::seconds(30));
  ASSERT_TRUE(done) << job.dump() << "\n" << runner.log();
  EXPECT_EQ(job["queue"], "domain_checks");
  json result =
      job["result"].is_string() ? json::parse(job["result"].get<std::string>()) : job["result"];
  EXPECT_EQ(dctest::entry(result, "taken.test")["status"], "registered");
  EXPECT_EQ(dctest::entry(result, "free.test")["status"], "available");
  EXPECT_EQ(dctest::entry(result, "parked.test")["status"], "registered");
  EXPECT_EQ(dctest::entry(result, "not a name")["status"], "invalid");
  EXPECT_EQ(dctest::entry(result, "hang.slow")["status"], "unknown");
  EXPECT_EQ(dctest::entry(result, "hang.slow")["reason"], "timeout");
  EXPECT_EQ(PgCluster::query_one(plugin_url,
                                 "SELECT string_agg(name || '=' || status, ',' ORDER BY name)"
                                 " FROM domains"),
            "free.test=available,hang.slow=unknown,parked.test=registered,taken.test=registered");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(20)), 0) << runner.log();
}

}  // namespace
