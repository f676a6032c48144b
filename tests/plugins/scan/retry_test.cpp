// Seed 001 retries crawl failures (Retry(max=3, interval=[10, 30, 60])). Each class of crawl
// error against the fixture server, through the real plugin .so (in-process or sandboxed):
// transient ones (HTTP 5xx, timeout, connection reset, connection refused) are retryable with the
// row left RUNNING and the failure in error_message; SSRF refusals, 4xx and the other crawl
// errors stay permanent; the last attempt ends in ERROR_CRAWL. Then through the real runner with
// a short retry schedule: a page that recovers completes on its third attempt, one that keeps
// failing is dead-lettered after the kind's 4 attempts, a 404 and a refusal after one.
#include <gtest/gtest.h>
#include <jobrunner/abi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "plugin_host.hpp"
#include "scan_test_util.hpp"

namespace {

using nlohmann::json;

// A loopback port with nothing listening on it (at the time of the call).
int dead_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class ScanRetryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's own role and schema (what a runner hands it).
    db = jrtest::plugin_database(jrtest::PgCluster::get().create_database("scanretry"), "scan").url;
    json cfg = scantest::plugin_config(db, server);
    cfg["allow_hosts"].push_back("127.0.0.1:" + std::to_string(reset.port()));
    cfg["allow_hosts"].push_back("127.0.0.1:" + std::to_string(refused_port));
    host = std::make_unique<jrtest::PluginHost>(jrtest::plugin_dir() + "/libjr_scan.so", cfg);
  }
  std::string row(const std::string& id, const std::string& col) {
    return scantest::q(
        db, "SELECT coalesce(" + col + "::text, '<null>') FROM scan_jobs WHERE id = '" + id + "'");
  }

  scantest::FixtureServer server;
  scantest::ResetServer reset;
  int refused_port = dead_port();
  std::string db;
  std::unique_ptr<jrtest::PluginHost> host;
};

TEST_F(ScanRetryTest, TheKindDeclaresSeed001sSchedule) {
  const jr::KindInfo& k = host->plugin().kinds.at(0);
  ASSERT_EQ(k.kind, "scan");
  EXPECT_EQ(k.retry_schedule, (std::vector<int>{10, 30, 60}));
  EXPECT_EQ(k.max_attempts, 4);  // the first attempt and three retries
}

TEST_F(ScanRetryTest, TransientCrawlErrorsAreRetryableAndTheRowKeepsRunning) {
  struct Case {
    std::string url, needle;
  };
  const std::vector<Case> cases = {
      {server.url("/error500"), "HTTP 500 from"},
      {server.url("/slow"), "timed out after 3000 ms"},
      {"http://127.0.0.1:" + std::to_string(reset.port()) + "/", "Connection reset by peer"},
      {"http://127.0.0.1:" + std::to_string(refused_port) + "/", "fetch of http://127.0.0.1:"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    std::string id = "transient-" + std::to_string(n++);
    auto out = host->run("scan", scantest::payload(id, c.url), 1);
    EXPECT_EQ(out.status, JR_ERR_RETRYABLE) << out.error;
    EXPECT_EQ(out.error.rfind("attempt 1 of 25 failed: ", 0), 0u) << out.error;
    EXPECT_NE(out.error.find(c.needle), std::string::npos) << out.error;
    EXPECT_NE(out.error.find("; retrying"), std::string::npos) << out.error;
    // Not terminal: a poller keeps waiting and sees why it takes longer.
    EXPECT_EQ(row(id, "status"), "RUNNING");
    EXPECT_EQ(row(id, "step"), "CRAWL");
    EXPECT_EQ(row(id, "error_state"), "<null>");
    EXPECT_EQ(row(id, "error_message"), out.error);
  }
  EXPECT_EQ(reset.connections(), 1);
}

TEST_F(ScanRetryTest, RefusalsClientErrorsAndTheLastAttemptArePermanent) {
  struct Case {
    std::string path, state, needle;
    int attempt;
  };
  const std::vector<Case> cases = {
      {"/missing", "ERROR_CRAWL", "HTTP 404", 1},
      {"/to-private", "ERROR_VALIDATION", "10.0.0.1 (private)", 1},
      {"/to-metadata", "ERROR_VALIDATION", "cloud metadata", 1},
      {"/huge", "ERROR_CRAWL", "too large", 1},
      {"/data.json", "ERROR_CRAWL", "unsupported content type", 1},
      {"/redirect/4", "ERROR_CRAWL", "too many redirects", 1},
      {"/error500", "ERROR_CRAWL", "HTTP 500", 25},  // transient, but no attempt left
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    std::string id = "permanent-" + std::to_string(n++);
    auto out = host->run("scan", scantest::payload(id, server.url(c.path)), c.attempt);
    EXPECT_EQ(out.status, JR_ERR_PERMANENT) << out.error;
    EXPECT_EQ(out.error.rfind(c.state + ": ", 0), 0u) << out.error;
    EXPECT_EQ(row(id, "status"), c.state);
    EXPECT_EQ(row(id, "error_state"), c.state);
    EXPECT_NE(row(id, "error_message").find(c.needle), std::string::npos);
  }
}

class ScanRetryRunner : public scantest::RunnerScanTest {
 protected:
  void SetUp() override { set_up("scanretryrun", "request_timeout_ms = 3000\n"); }
  int64_t enqueue(const std::string& id, const std::string& path) {
    auto r = jrtest::run_runner({"enqueue", "scan", "--retry-schedule", "0,0,0", "--payload",
                                 scantest::payload(id, server.url(path))},
                                env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::stoll(r.out);
  }
};

TEST_F(ScanRetryRunner, TransientFailuresAreRetriedUpToTheKindsAttemptsAndOthersAreNot) {
  server.set_recovering_after(2);
  int64_t recovering = enqueue("r-recovering", "/recovering");
  int64_t failing = enqueue("r-failing", "/error500");
  int64_t missing = enqueue("r-missing", "/missing");
  int64_t refused = enqueue("r-refused", "/to-private");
  jrtest::RunnerProcess runner(
      {"--config", config, "--plugins", plugins, "--poll-interval", "100ms"}, env);
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return scantest::q(db, "SELECT count(*) FROM jr_jobs_done WHERE kind = 'scan'") == "4";
      },
      std::chrono::seconds(60)))
      << runner.log();

  json r = status(recovering);
  EXPECT_EQ(r["state"], "completed") << r.dump();
  EXPECT_EQ(r["attempt"], 3);
  ASSERT_EQ(r["errors"].size(), 2u) << r.dump();
  EXPECT_NE(r["errors"][0]["message"].get<std::string>().find("attempt 1 of 4 failed: HTTP 503"),
            std::string::npos)
      << r.dump();
  EXPECT_EQ(server.hits("/recovering"), 3);
  EXPECT_EQ(scantest::q(pdb, "SELECT status FROM scan_jobs WHERE id = 'r-recovering'"),
            "FULL_READY");

  json f = status(failing);
  EXPECT_EQ(f["state"], "discarded") << f.dump();
  EXPECT_EQ(f["attempt"], 4);
  EXPECT_EQ(f["errors"].size(), 4u) << f.dump();
  EXPECT_EQ(server.hits("/error500"), 4);
  EXPECT_EQ(scantest::q(pdb,
                        "SELECT status || ': ' || error_message FROM scan_jobs "
                        "WHERE id = 'r-failing'"),
            "ERROR_CRAWL: HTTP 500 from " + server.url("/error500"));

  for (auto [id, scan, state] : {std::tuple{missing, "r-missing", "ERROR_CRAWL"},
                                 std::tuple{refused, "r-refused", "ERROR_VALIDATION"}}) {
    json s = status(id);
    EXPECT_EQ(s["state"], "discarded") << s.dump();
    EXPECT_EQ(s["attempt"], 1) << s.dump();
    EXPECT_EQ(
        scantest::q(pdb, std::string("SELECT status FROM scan_jobs WHERE id = '") + scan + "'"),
        state);
  }
  EXPECT_EQ(server.hits("/missing"), 1);
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
}

}  // namespace
