// End to end through the real `runner` binary: enqueue scans with the CLI, a runner serving only
// the scan plugin (configured by a TOML file), `runner status ID --json`, and the scan_jobs row.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "scan_test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class ScanE2E : public scantest::RunnerScanTest {
 protected:
  void SetUp() override {
    set_up("scane2e", "request_timeout_ms = 3000\nuser_agent = \"scan-e2e/1.0\"\n");
  }
  int64_t enqueue(const json& payload, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"enqueue", "scan", "--payload", payload.dump()};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = jrtest::run_runner(args, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::stoll(r.out);
  }
  // Waits until the job leaves the queue (completed or discarded); returns its status.
  json wait_done(int64_t id) {
    json s;
    jrtest::wait_until(
        [&] {
          s = status(id);
          std::string st = s.value("state", "");
          return st == "completed" || st == "discarded";
        },
        std::chrono::seconds(60));
    return s;
  }
};

TEST_F(ScanE2E, EnqueuedScanCompletesWithItsReportAndTheRowIsFullReady) {
  int64_t signed_in =
      enqueue({{"scan_id", "e2e-user"}, {"url", server.url("/bad")}, {"user_id", "u-1"}},
              {"--priority", "10"});
  int64_t anonymous = enqueue({{"scan_id", "e2e-anon"}, {"url", server.url("/good")}});
  int64_t refused = enqueue({{"scan_id", "e2e-private"}, {"url", server.url("/to-private")}});
  jrtest::RunnerProcess runner({"--config", config, "--plugins", plugins}, env);

  json s = wait_done(signed_in);
  ASSERT_EQ(s["state"], "completed") << s.dump() << "\n" << runner.log();
  EXPECT_EQ(s["priority"], 10);
  EXPECT_EQ(s["result"]["scan_id"], "e2e-user");
  EXPECT_EQ(s["result"]["findings"][0]["id"], "title_missing");
  EXPECT_EQ(s["result"]["teaser"]["findings"].size(), 3u);
  EXPECT_EQ(scantest::q(pdb,
                        "SELECT status || ',' || user_id || ',' || progress FROM scan_jobs "
                        "WHERE id = 'e2e-user'"),
            "FULL_READY,u-1,100");
  EXPECT_EQ(json::parse(scantest::q(pdb, "SELECT result FROM scan_jobs WHERE id = 'e2e-user'")),
            s["result"]);

  json a = wait_done(anonymous);
  ASSERT_EQ(a["state"], "completed") << a.dump();
  EXPECT_EQ(a["result"]["page"]["title"], "Acme Widgets: Durable Garden Tools");
  EXPECT_EQ(server.last_user_agent("/good"), "scan-e2e/1.0");

  json r = wait_done(refused);
  EXPECT_EQ(r["state"], "discarded") << r.dump();
  EXPECT_NE(r.dump().find("ERROR_VALIDATION: refused address 10.0.0.1 (private)"),
            std::string::npos)
      << r.dump();
  EXPECT_EQ(scantest::q(pdb, "SELECT status FROM scan_jobs WHERE id = 'e2e-private'"),
            "ERROR_VALIDATION");

  // Cleanup through the runner too (the kind the hourly cron entry enqueues).
  jrtest::PgCluster::exec(pdb,
                          "UPDATE scan_jobs SET created_at = now() - interval '2 days' "
                          "WHERE id = 'e2e-private'");
  auto r2 = jrtest::run_runner({"enqueue", "cleanup_expired_scans", "--payload", "{}"}, env);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  json c = wait_done(std::stoll(r2.out));
  EXPECT_EQ(c["state"], "completed") << c.dump();
  EXPECT_EQ(c["result"]["deleted"], 1);
  EXPECT_EQ(scantest::q(pdb, "SELECT count(*) FROM scan_jobs"), "2");
}

}  // namespace
