// A scan stopped by the host must still reach its scan_jobs row: through the real runner, a scan
// whose fetch hangs past its timeout (max attempts 1), a cancelled scan (running, and queued
// before any runner), a scan whose sandbox worker crashes, and one whose runner is killed (its
// lease rescued by another runner). Each row ends in ERROR_<KIND> with the host's reason, written
// by the scan_finalize job the host enqueues (manifest "finalizers"). Before, each stayed
// RUNNING/CRAWL (or QUEUED) for ever. Then the finalizer's own rules through the plugin .so.
#include <gtest/gtest.h>
#include <jobrunner/abi.h>
#include <signal.h>

#include "plugin_host.hpp"
#include "scan/src/pipeline.hpp"
#include "scan_test_util.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class ScanFinalize : public scantest::RunnerScanTest {
 protected:
  // The page fetch may take a minute: only the host stops these scans.
  void SetUp() override {
    set_up("scanfin", "request_timeout_ms = 60000\n");
    jrtest::PgCluster::exec(pdb, scan::kScanJobsDdl);  // the producer's table, polled below
  }
  int64_t enqueue(const std::string& id, const std::string& path,
                  const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"enqueue", "scan", "--payload",
                                     scantest::payload(id, server.url(path))};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = jrtest::run_runner(args, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::stoll(r.out);
  }
  std::string row(const std::string& id) {
    return scantest::q(pdb,
                       "SELECT status || '|' || coalesce(step, '-') || '|' || "
                       "coalesce(error_state, '-') || '|' || coalesce(error_message, '-') "
                       "FROM scan_jobs WHERE id = '" +
                           id + "'");
  }
  bool wait_row(const std::string& id, const std::string& prefix,
                std::chrono::milliseconds limit = 60s) {
    return jrtest::wait_until([&] { return row(id).rfind(prefix, 0) == 0; }, limit);
  }
  // The finalizer job of scan job `job`: "state|result.status".
  std::string finalizer_of(int64_t job) {
    return scantest::q(db,
                       "SELECT state || '|' || coalesce(result->>'status', '-') FROM jr_jobs_all "
                       "WHERE kind = 'scan_finalize' AND (payload->>'job_id')::bigint = " +
                           std::to_string(job));
  }
  std::vector<std::string> runner_args(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> a = {"--config",        config, "--plugins", plugins,
                                  "--poll-interval", "100ms"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

TEST_F(ScanFinalize, AFetchHangingPastItsTimeoutEndsInErrorTimeout) {
  int64_t id = enqueue("fin-timeout", "/hang", {"--timeout", "1s", "--max-attempts", "1"});
  jrtest::RunnerProcess runner(runner_args(), env);
  ASSERT_TRUE(wait_row("fin-timeout", "ERROR_")) << row("fin-timeout") << "\n" << runner.log();
  std::string r = row("fin-timeout");
  EXPECT_EQ(r.rfind("ERROR_TIMEOUT|CRAWL|ERROR_TIMEOUT|", 0), 0u) << r;
  EXPECT_NE(r.find("1000 ms"), std::string::npos) << r;  // the reason, as the host gave it
  EXPECT_NE(r.find("(attempt 1 of 1: no attempts left)"), std::string::npos) << r;
  EXPECT_EQ(status(id)["state"], "discarded");
  EXPECT_EQ(finalizer_of(id), "completed|ERROR_TIMEOUT");
  EXPECT_EQ(scantest::q(db, "SELECT finalizer FROM jr_kinds WHERE kind = 'scan'"), "scan_finalize");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(30s), 0) << runner.log();
}

TEST_F(ScanFinalize, ACancelledScanEndsInErrorCancelledRunningOrQueued) {
  jrtest::RunnerProcess runner(runner_args(), env);
  // The runners publish the finalizer with the kind's defaults when they start.
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return scantest::q(db, "SELECT count(*) FROM jr_kinds WHERE finalizer = 'scan_finalize'") ==
               "1";
      },
      30s))
      << runner.log();
  // Cancelled while it waits (scheduled for later): the producer's QUEUED row must not stay so.
  jrtest::PgCluster::exec(pdb, "INSERT INTO scan_jobs (id, url, status) VALUES ('fin-queued', '" +
                                   server.url("/hang") + "', 'QUEUED')");
  int64_t queued = enqueue("fin-queued", "/hang", {"--delay", "1h"});
  ASSERT_EQ(jrtest::run_runner({"cancel", std::to_string(queued)}, env).exit_code, 0);

  int64_t id = enqueue("fin-cancel", "/hang");
  ASSERT_TRUE(wait_row("fin-cancel", "RUNNING|CRAWL")) << row("fin-cancel") << runner.log();
  auto c = jrtest::run_runner({"cancel", std::to_string(id)}, env);
  ASSERT_EQ(c.exit_code, 0) << c.err;
  ASSERT_TRUE(wait_row("fin-cancel", "ERROR_")) << row("fin-cancel") << "\n" << runner.log();
  EXPECT_EQ(
      row("fin-cancel").rfind("ERROR_CANCELLED|CRAWL|ERROR_CANCELLED|cancelled on request", 0), 0u)
      << row("fin-cancel");
  EXPECT_EQ(status(id)["state"], "cancelled");

  ASSERT_TRUE(wait_row("fin-queued", "ERROR_")) << row("fin-queued") << "\n" << runner.log();
  EXPECT_EQ(row("fin-queued"),
            "ERROR_CANCELLED|-|ERROR_CANCELLED|cancelled on request before it ran");
  EXPECT_EQ(finalizer_of(queued), "completed|ERROR_CANCELLED");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(30s), 0) << runner.log();
}

TEST_F(ScanFinalize, AScanWhoseSandboxWorkerCrashesEndsInErrorCrash) {
  int64_t id = enqueue("fin-crash", "/hang", {"--max-attempts", "1"});
  // One sandbox worker, so the one killed is the one running the scan (a pool notices a dead
  // idle worker only when it hands it the next job).
  jrtest::RunnerProcess runner(runner_args({"--isolation", "sandbox", "--concurrency", "1"}), env);
  ASSERT_TRUE(wait_row("fin-crash", "RUNNING|CRAWL")) << row("fin-crash") << runner.log();
  std::vector<pid_t> workers = jrtest::sandbox_workers_of(runner.pid());
  ASSERT_EQ(workers.size(), 1u) << runner.log();
  for (pid_t w : workers) ::kill(w, SIGSEGV);
  ASSERT_TRUE(wait_row("fin-crash", "ERROR_")) << row("fin-crash") << "\n" << runner.log();
  EXPECT_EQ(row("fin-crash").rfind("ERROR_CRASH|CRAWL|ERROR_CRASH|", 0), 0u) << row("fin-crash");
  // The same in a sanitizer build: its workers leave a wild SIGSEGV to the kernel.
  EXPECT_NE(row("fin-crash").find("worker crashed with SIGSEGV"), std::string::npos)
      << row("fin-crash");
  EXPECT_EQ(status(id)["state"], "discarded");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(30s), 0) << runner.log();
}

TEST_F(ScanFinalize, AScanWhoseRunnerIsKilledEndsInErrorLeaseLost) {
  std::vector<std::string> fast = {"--lease-seconds", "2", "--rescue-interval", "0.2"};
  int64_t id = enqueue("fin-killed", "/hang", {"--max-attempts", "1"});
  jrtest::RunnerProcess victim(runner_args(fast), env);
  ASSERT_TRUE(wait_row("fin-killed", "RUNNING|CRAWL")) << row("fin-killed") << victim.log();
  victim.signal(SIGKILL);
  victim.wait(10s);
  jrtest::RunnerProcess rescuer(runner_args(fast), env);
  ASSERT_TRUE(wait_row("fin-killed", "ERROR_")) << row("fin-killed") << "\n" << rescuer.log();
  EXPECT_EQ(row("fin-killed").rfind("ERROR_LEASE_LOST|CRAWL|ERROR_LEASE_LOST|lease expired: ", 0),
            0u)
      << row("fin-killed");
  EXPECT_EQ(status(id)["state"], "discarded");
  EXPECT_EQ(finalizer_of(id), "completed|ERROR_LEASE_LOST");
  rescuer.signal(SIGTERM);
  EXPECT_EQ(rescuer.wait(30s), 0) << rescuer.log();
}

// The finalizer kind through the plugin .so: what it may and may not overwrite.
class ScanFinalizeRules : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's own role and schema (what a runner hands it).
    db = jrtest::plugin_database(jrtest::PgCluster::get().create_database("scanfinrules"), "scan")
             .url;
    host = std::make_unique<jrtest::PluginHost>(jrtest::plugin_dir() + "/libjr_scan.so",
                                                scantest::plugin_config(db, server));
  }
  jrtest::JobOutcome finalize(const std::string& scan_id, const std::string& url, int64_t job,
                              const std::string& error_kind = "timeout") {
    json p = {{"job_id", job},
              {"kind", "scan"},
              {"state", "discarded"},
              {"error_kind", error_kind},
              {"error", "attempt exceeded its timeout"},
              {"payload", {{"scan_id", scan_id}, {"url", url}}}};
    return host->run("scan_finalize", p.dump());
  }
  std::string status(const std::string& id) {
    return scantest::q(db, "SELECT status FROM scan_jobs WHERE id = '" + id + "'");
  }

  scantest::FixtureServer server;
  std::string db;
  std::unique_ptr<jrtest::PluginHost> host;
};

TEST_F(ScanFinalizeRules, OnlyANonTerminalRowOfTheFinishedJobAndUrlIsWritten) {
  std::string url = server.url("/good");
  // Finished by the pipeline: left alone.
  ASSERT_EQ(host->run("scan", scantest::payload("done", url), 1, 7).status, JR_OK);
  auto out = finalize("done", url, 7);
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(json::parse(out.result),
            (json{{"scan_id", "done"}, {"status", "FULL_READY"}, {"updated", false}}));
  EXPECT_EQ(status("done"), "FULL_READY");
  // Taken over by a newer job (9) since job 8 stopped: left alone; job 9's own finalizer writes.
  jrtest::PgCluster::exec(db,
                          "INSERT INTO scan_jobs (id, url, status, step, job_id) VALUES "
                          "('taken', '" +
                              url + "', 'RUNNING', 'CRAWL', 9)");
  EXPECT_EQ(json::parse(finalize("taken", url, 8).result)["updated"], false);
  EXPECT_EQ(status("taken"), "RUNNING");
  EXPECT_EQ(json::parse(finalize("taken", url, 9).result)["updated"], true);
  EXPECT_EQ(status("taken"), "ERROR_TIMEOUT");
  // A second finalizer run (the job retried after a lost reply) changes nothing.
  EXPECT_EQ(json::parse(finalize("taken", url, 9, "crash").result)["status"], "ERROR_TIMEOUT");
  // The row of another URL under the same id (the job was refused as a conflict): left alone.
  EXPECT_EQ(json::parse(finalize("done", server.url("/bad"), 10).result)["status"], nullptr);
  // A finished job whose payload named no scan: nothing to do, not an error.
  json no_scan = {{"job_id", 11},         {"kind", "scan"},
                  {"state", "discarded"}, {"error_kind", "permanent"},
                  {"error", "x"},         {"payload", {{"url", url}}}};
  EXPECT_EQ(host->run("scan_finalize", no_scan.dump()).status, JR_OK);
}

TEST_F(ScanFinalizeRules, AScanHeldByARunningJobMakesTheFinalizerWait) {
  std::string url = server.url("/good");
  jrtest::PgCluster::exec(db, std::string(scan::kScanJobsDdl) +
                                  "; INSERT INTO scan_jobs (id, url, status) VALUES ('held', '" +
                                  url + "', 'RUNNING')");
  scan::ScanStore store(db);
  auto lease = store.acquire();
  ASSERT_TRUE(scan::scan_try_lock(lease.conn(), "held"));
  auto out = finalize("held", url, 5);
  EXPECT_EQ(out.status, JR_SNOOZE);
  EXPECT_EQ(status("held"), "RUNNING");
  scan::scan_unlock(lease.conn(), "held");
  EXPECT_EQ(finalize("held", url, 5).status, JR_OK);
  EXPECT_EQ(status("held"), "ERROR_TIMEOUT");
}

TEST(ScanFinalizeStatus, ErrorKindsBecomeErrorStates) {
  using scan::Scanner;
  EXPECT_EQ(Scanner::finalize_status("timeout", "discarded"), "ERROR_TIMEOUT");
  EXPECT_EQ(Scanner::finalize_status("lease_lost", "discarded"), "ERROR_LEASE_LOST");
  EXPECT_EQ(Scanner::finalize_status("cancelled", "cancelled"), "ERROR_CANCELLED");
  EXPECT_EQ(Scanner::finalize_status("expired", "cancelled"), "ERROR_EXPIRED");
  EXPECT_EQ(Scanner::finalize_status("error", "discarded"), "ERROR_INTERNAL");
  EXPECT_EQ(Scanner::finalize_status("", "cancelled"), "ERROR_CANCELLED");
  EXPECT_EQ(Scanner::finalize_status("Bad Kind; DROP", "discarded"), "ERROR_UNKNOWN");
}

}  // namespace
