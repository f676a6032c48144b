// Issue 9, end to end through the real `runner` binary:
//  - a scan's status transitions as a front end sees them while the job runs: `runner status ID
//    --json` and the scan_jobs row, polled side by side, plus every write to the row (an audit
//    trigger), for a page that is slow to fetch and whose link checks are slow (/staged);
//  - the manifest's hourly cron entry for cleanup_expired_scans, fired by the leader's real cron
//    machinery after its next run time is moved into the past in jr_cron (no hour of waiting).
// Runs under the runner's default isolation; RUNNER_ISOLATION=sandbox|none in the environment
// (inherited by the runner processes) picks one.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "scan_test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

class ScanStatusCron : public scantest::RunnerScanTest {
 protected:
  void SetUp() override {
    set_up("scanstat", "request_timeout_ms = 5000\nlink_check_timeout_ms = 5000\n");
  }
};

// Order of the scan_jobs statuses and of the RUNNING steps.
int status_rank(const std::string& s) {
  static const std::map<std::string, int> kRank = {
      {"QUEUED", 0}, {"RUNNING", 1}, {"TEASER_READY", 2}, {"FULL_READY", 3}};
  auto it = kRank.find(s);
  return it == kRank.end() ? -1 : it->second;
}
int step_rank(const std::string& s) {
  static const std::map<std::string, int> kRank = {
      {"-", 0}, {"CRAWL", 1}, {"PARSE", 2}, {"ANALYZE", 3}, {"GENERATE", 4}};
  auto it = kRank.find(s);
  return it == kRank.end() ? -1 : it->second;
}
int job_state_rank(const std::string& s) {
  static const std::map<std::string, int> kRank = {
      {"available", 0}, {"running", 1}, {"completed", 2}};
  auto it = kRank.find(s);
  return it == kRank.end() ? -1 : it->second;
}

struct JobSeen {  // one `runner status --json` answer
  std::string state;
  double percent = -1;  // -1: no progress reported yet
  std::string step;
};
struct RowSeen {  // one read of the scan_jobs row
  std::string status, step;
  int progress = 0;
  bool teaser = false, result = false;
};

std::string str(const std::vector<JobSeen>& v) {
  std::string out;
  for (const auto& s : v) {
    out += s.state + "/" + s.step + "/" + std::to_string(static_cast<int>(s.percent)) + " ";
  }
  return out;
}
std::string str(const std::vector<RowSeen>& v) {
  std::string out;
  for (const auto& s : v) {
    out += s.status + "/" + s.step + "/" + std::to_string(s.progress) + (s.teaser ? "/T" : "/-") +
           (s.result ? "R " : "- ");
  }
  return out;
}

TEST_F(ScanStatusCron, StatusTransitionsObservedThroughRunnerStatusAndTheScanJobsRow) {
  scantest::install_audit(pdb);
  // The producer creates the row (QUEUED) and enqueues the job, as the README describes.
  jrtest::PgCluster::exec(pdb,
                          "INSERT INTO scan_jobs (id, url, user_id, status, progress, created_at, "
                          "expires_at) VALUES ('staged-1', '" +
                              server.url("/staged") +
                              "', 'u-1', 'QUEUED', 0, now(), now() + interval '1 day')");
  auto e = jrtest::run_runner(
      {"enqueue", "scan", "--priority", "10", "--payload",
       json{{"scan_id", "staged-1"}, {"url", server.url("/staged")}, {"user_id", "u-1"}}.dump()},
      env);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  const int64_t id = std::stoll(e.out);

  // Two pollers, as two front ends would: one through the CLI, one on the table.
  std::vector<JobSeen> jobs;
  std::vector<RowSeen> rows;
  std::atomic<bool> stop{false};
  std::thread row_poller([&] {
    pqxx::connection c(pdb);
    while (!stop) {
      pqxx::read_transaction tx(c);
      auto r = tx.exec(
          "SELECT status, coalesce(step, '-'), progress, teaser IS NOT NULL, result IS NOT NULL "
          "FROM scan_jobs WHERE id = 'staged-1'");
      tx.commit();
      if (!r.empty()) {
        RowSeen s{r[0][0].as<std::string>(), r[0][1].as<std::string>(), r[0][2].as<int>(),
                  r[0][3].as<bool>(), r[0][4].as<bool>()};
        if (rows.empty() || s.status != rows.back().status || s.step != rows.back().step ||
            s.progress != rows.back().progress || s.teaser != rows.back().teaser ||
            s.result != rows.back().result) {
          rows.push_back(s);
        }
        if (s.status == "FULL_READY" || s.status.rfind("ERROR_", 0) == 0) break;
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  auto poll_job = [&] {
    json s = status(id);
    JobSeen seen{s.value("state", ""), -1, ""};
    if (s.contains("progress") && s["progress"].is_object()) {
      seen.percent = s["progress"].value("percent", -1.0);
      seen.step = s["progress"].value("step", "");
    }
    if (jobs.empty() || seen.state != jobs.back().state || seen.percent != jobs.back().percent ||
        seen.step != jobs.back().step) {
      jobs.push_back(seen);
    }
    return seen.state;
  };
  // Before any runner: queued.
  poll_job();
  std::this_thread::sleep_for(50ms);
  jrtest::RunnerProcess runner({"--config", config, "--plugins", plugins}, env);
  auto deadline = std::chrono::steady_clock::now() + 60s;
  std::string state;
  while (std::chrono::steady_clock::now() < deadline) {
    state = poll_job();
    if (state == "completed" || state == "discarded") break;
  }
  stop = true;
  row_poller.join();
  ASSERT_EQ(state, "completed") << str(jobs) << "\n" << runner.log();

  // runner status: available -> running -> completed, progress never goes back, and the slow
  // steps were seen while running: the fetch (CRAWL) and the link checks after the teaser.
  SCOPED_TRACE("runner status: " + str(jobs));
  ASSERT_GE(jobs.size(), 3u);
  EXPECT_EQ(jobs.front().state, "available");
  EXPECT_EQ(jobs.front().percent, -1);
  int last_state = -1;
  double last_pct = -1;
  bool saw_crawl = false, saw_links = false;
  for (const auto& s : jobs) {
    int rank = job_state_rank(s.state);
    EXPECT_GE(rank, last_state) << s.state;
    last_state = rank;
    EXPECT_GE(s.percent, last_pct);
    last_pct = s.percent;
    if (s.state == "running" && s.step == "CRAWL") saw_crawl = true;
    if (s.state == "running" && s.percent >= 80 && s.percent < 100) saw_links = true;
  }
  EXPECT_TRUE(saw_crawl);
  EXPECT_TRUE(saw_links);
  EXPECT_EQ(jobs.back().state, "completed");
  EXPECT_EQ(jobs.back().percent, 100);
  EXPECT_EQ(jobs.back().step, "FULL_READY");
  json done = status(id);
  EXPECT_EQ(done["result"]["scan_id"], "staged-1");
  EXPECT_EQ(done["result"]["link_checks"].size(), 3u);
  EXPECT_EQ(done["attempt"], 1);

  // The polled row: QUEUED -> RUNNING (steps in order) -> TEASER_READY (teaser, no result) ->
  // FULL_READY (both), progress never going back.
  SCOPED_TRACE("scan_jobs polled: " + str(rows));
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().status, "QUEUED");
  int last_status = -1, last_step = -1, last_progress = -1;
  bool row_crawl = false, row_teaser = false;
  for (const auto& s : rows) {
    int st = status_rank(s.status), sp = step_rank(s.step);
    EXPECT_GE(st, 0) << s.status;
    EXPECT_GE(sp, 0) << s.step;
    EXPECT_TRUE(st > last_status || (st == last_status && sp >= last_step)) << s.status << s.step;
    EXPECT_GE(s.progress, last_progress);
    last_status = st;
    last_step = sp;
    last_progress = s.progress;
    EXPECT_EQ(s.teaser, st >= 2) << s.status;
    EXPECT_EQ(s.result, st == 3) << s.status;
    if (s.status == "RUNNING" && s.step == "CRAWL") row_crawl = true;
    if (s.status == "TEASER_READY") row_teaser = true;
  }
  EXPECT_TRUE(row_crawl);
  EXPECT_TRUE(row_teaser);
  EXPECT_EQ(rows.back().status, "FULL_READY");
  EXPECT_EQ(rows.back().progress, 100);

  // Every write to the row (the trigger): the complete flow, in order.
  EXPECT_EQ(scantest::audit(pdb, "staged-1"),
            "QUEUED/-/0/--,RUNNING/CRAWL/5/--,RUNNING/CRAWL/25/--,RUNNING/PARSE/30/--,"
            "RUNNING/PARSE/45/--,RUNNING/ANALYZE/50/--,RUNNING/ANALYZE/65/--,"
            "RUNNING/GENERATE/70/--,TEASER_READY/GENERATE/80/T-,TEASER_READY/GENERATE/85/T-,"
            "TEASER_READY/GENERATE/90/T-,TEASER_READY/GENERATE/95/T-,FULL_READY/GENERATE/100/TR");
  EXPECT_EQ(server.hits("/staged"), 1);
  std::printf("runner status saw: %s\nscan_jobs polled: %s\n", str(jobs).c_str(),
              str(rows).c_str());
  EXPECT_EQ(server.last_method("/slow-link/3"), "HEAD");

  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(30s), 0) << runner.log();
}

TEST_F(ScanStatusCron, HourlyCleanupFiresThroughTheHostCron) {
  // Scans of every age, before any runner: the cleanup deletes those created more than the TTL
  // (24 h) ago or past their expires_at, and keeps the rest.
  jrtest::PgCluster::exec(pdb, scan::kScanJobsDdl);
  jrtest::PgCluster::exec(pdb, R"SQL(
    INSERT INTO scan_jobs (id, url, status, created_at, expires_at) VALUES
      ('old',      'http://example.com/1', 'FULL_READY', now() - interval '25 hours', NULL),
      ('expired',  'http://example.com/2', 'ERROR_CRAWL', now() - interval '2 hours',
                   now() - interval '1 minute'),
      ('recent',   'http://example.com/3', 'FULL_READY', now() - interval '23 hours',
                   now() + interval '1 hour'),
      ('fresh',    'http://example.com/4', 'QUEUED', now(), now() + interval '1 day'))SQL");

  // Within 20 s of a top of the hour the real tick could fire during the test: start after it.
  int64_t to_hour = std::stoll(scantest::q(
      db,
      "SELECT ceil(extract(epoch FROM date_trunc('hour', now()) + interval '1 hour' - now()))"));
  if (to_hour < 20) std::this_thread::sleep_for(std::chrono::seconds(to_hour + 3));

  jrtest::RunnerProcess runner({"--config", config, "--plugins", plugins}, env);
  // The manifest's entry is registered by the runner and scheduled by the leader: next run at
  // the top of the next hour.
  json entry;
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        auto r = jrtest::run_runner({"cron", "ls", "--json"}, env);
        if (r.exit_code != 0) return false;
        for (const auto& c : json::parse(r.out)) {
          if (c.value("name", "") == "cleanup_expired_scans" && !c["next_run_at"].is_null()) {
            entry = c;
            return true;
          }
        }
        return false;
      },
      30s))
      << runner.log();
  EXPECT_EQ(entry["schedule"], "0 * * * *");
  EXPECT_EQ(entry["kind"], "cleanup_expired_scans");
  EXPECT_TRUE(entry["last_run_at"].is_null()) << entry.dump();
  EXPECT_EQ(scantest::q(db,
                        "SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'MI:SS') || ' ' || "
                        "(next_run_at > now() AND next_run_at <= now() + interval '1 hour') "
                        "FROM jr_cron WHERE name = 'cleanup_expired_scans'"),
            "00:00 true");
  auto text = jrtest::run_runner({"cron", "ls"}, env);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("cleanup_expired_scans"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("0 * * * *"), std::string::npos) << text.out;
  EXPECT_EQ(scantest::q(pdb, "SELECT count(*) FROM scan_jobs"), "4");

  // An hour passes for the cron table: the tick is due now. The leader's maintainer enqueues
  // the job on its next pass, and a slot runs it.
  jrtest::PgCluster::exec(db,
                          "UPDATE jr_cron SET next_run_at = now() - interval '1 second' "
                          "WHERE name = 'cleanup_expired_scans'");
  std::string job;
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        job = scantest::q(db,
                          "SELECT id FROM jr_jobs_done WHERE kind = 'cleanup_expired_scans' "
                          "AND state = 'completed'");
        return !job.empty();
      },
      30s))
      << scantest::q(db, "SELECT string_agg(id || ' ' || state, ', ') FROM jr_jobs_all") << "\n"
      << runner.log();
  json s = status(std::stoll(job));
  EXPECT_EQ(s["state"], "completed") << s.dump();
  EXPECT_EQ(s["queue"], "scan");
  EXPECT_EQ(s["result"]["deleted"], 2) << s.dump();
  EXPECT_EQ(s["result"]["ttl_seconds"], 86400);
  EXPECT_EQ(scantest::q(pdb, "SELECT string_agg(id, ',' ORDER BY id) FROM scan_jobs"),
            "fresh,recent");
  EXPECT_NE(runner.log().find("cron: periodic jobs enqueued"), std::string::npos) << runner.log();

  // The entry moved on to the next top of the hour; the tick was enqueued exactly once.
  auto after = jrtest::run_runner({"cron", "ls", "--json"}, env);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  for (const auto& c : json::parse(after.out)) {
    if (c.value("name", "") != "cleanup_expired_scans") continue;
    EXPECT_FALSE(c["last_run_at"].is_null()) << c.dump();
  }
  EXPECT_EQ(scantest::q(db,
                        "SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'MI:SS') || ' ' || "
                        "(next_run_at > now()) || ' ' || (last_run_at IS NOT NULL) "
                        "FROM jr_cron WHERE name = 'cleanup_expired_scans'"),
            "00:00 true true");
  std::this_thread::sleep_for(1500ms);  // several more maintainer passes
  EXPECT_EQ(
      scantest::q(db, "SELECT count(*) FROM jr_jobs_all WHERE kind = 'cleanup_expired_scans'"),
      "1");

  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(30s), 0) << runner.log();
}

}  // namespace
