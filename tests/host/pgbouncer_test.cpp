// The lifecycle core through PgBouncer in transaction pooling mode (issue 20): a PgBouncer 1.18
// started by the test (tests/support/pgbouncer.hpp) in front of the harness's PostgreSQL; the
// real runner with --pgbouncer (no named prepared statements, no session settings) and the CLI
// with RUNNER_PGBOUNCER=1 go through it: claim and complete, retry with backoff, rescue of an
// expired lease, a cron tick; once polling (no listen_database_url) and once with LISTEN on a
// direct listen_database_url.
#include "pgbouncer.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "harness.hpp"
#include "runner_fixture.hpp"

namespace jrtest {
namespace {

std::string session_name(pid_t pid) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string name = "jobrunner " + std::to_string(pid) + "@" + host;
  if (name.size() > 63) name.resize(63);
  return name;
}

class PgBouncerLifecycle : public RunnerFixture {
 protected:
  void SetUp() override {
    RunnerFixture::SetUp();
    if (::testing::Test::HasFatalFailure()) return;
    ASSERT_TRUE(PgBouncer::available()) << "pgbouncer is not installed (scripts/install-deps.sh)";
    bouncer_ = std::make_unique<PgBouncer>(url_);
    // Everything below, the CLI included, goes through PgBouncer; url_ stays the direct URL
    // for the test's own checks and the setup of the rescue case.
    bounced_ = {{"DATABASE_URL", bouncer_->url()}, {"RUNNER_PGBOUNCER", "1"}};
  }

  int64_t enqueue_bounced(const std::vector<std::string>& args) {
    auto r = run_runner(args, bounced_);
    EXPECT_EQ(r.exit_code, 0) << r.err << bouncer_->log();
    return r.out.empty() ? -1 : std::stoll(r.out);
  }
  std::string done_state(int64_t id) {
    return q("SELECT state FROM jr_jobs_done WHERE id = " + std::to_string(id));
  }

  // Claim+complete, retry with backoff, rescue, cron, through PgBouncer. `listen_url`: a direct
  // URL for LISTEN, or "" (polling).
  void lifecycle(const std::string& listen_url, const std::string& poll) {
    // Rescue: a job whose runner died while running it (lease expired, owner gone).
    int64_t orphan = enqueue_bounced({"enqueue", "echo", "--payload", "{\"n\": 0}"});
    PgCluster::exec(
        url_,
        "UPDATE jr_jobs SET state = 'running', attempt = 1, lease_owner = 'dead-runner', "
        "lease_expires_at = now() - interval '1 second', started_at = now() WHERE id = " +
            std::to_string(orphan));
    // Retry with backoff: fails twice (1 s apart), then succeeds.
    int64_t flaky = enqueue_bounced({"enqueue", "echo", "--payload", "{\"fail_attempts\": 2}",
                                     "--retry-schedule", "1,1", "--max-attempts", "5"});
    // Claim and complete.
    std::vector<int64_t> plain = enqueue_many("echo", 30, "{\"n\": 1}");
    std::string cfg = dir_.path() + "/cron.toml";
    std::ofstream(cfg) << "[[cron]]\nname = \"tick\"\nschedule = \"@every 1s\"\nkind = \"echo\"\n"
                          "payload = { cron = true }\n";
    auto env = bounced_;
    if (!listen_url.empty()) env["RUNNER_LISTEN_DATABASE_URL"] = listen_url;
    RunnerProcess runner(
        {"--config", cfg, "--plugins", plugin_dir_with({echo_so()}), "--concurrency", "10",
         "--pgbouncer", "--poll-interval", poll, "--rescue-interval", "1s", "--lease-seconds", "5"},
        env);
    ASSERT_TRUE(wait_until(
        [&] {
          return count(
                     "SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND "
                     "payload = '{\"n\": 1}'") == 30 &&
                 done_state(orphan) == "completed" && done_state(flaky) == "completed" &&
                 count(
                     "SELECT count(*) FROM jr_cron_runs r JOIN jr_jobs_done d ON d.id = "
                     "r.job_id WHERE r.name = 'tick' AND d.state = 'completed'") >= 1;
        },
        std::chrono::seconds(60)))
        << runner.log() << bouncer_->log();
    EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND attempt = 1 "
                    "AND payload = '{\"n\": 1}'"),
              30);
    // The retry: third attempt, two errors, each retry at least its 1 s backoff later.
    std::string f = std::to_string(flaky);
    EXPECT_EQ(q("SELECT attempt FROM jr_jobs_done WHERE id = " + f), "3");
    EXPECT_EQ(q("SELECT jsonb_array_length(errors) FROM jr_jobs_done WHERE id = " + f), "2");
    EXPECT_EQ(q("SELECT (extract(epoch from finished_at - (errors->0->>'at')::timestamptz) >= "
                "1.9)::text FROM jr_jobs_done WHERE id = " +
                f),
              "true");
    // The rescue: the lost attempt counted as lease_lost, the second ran here.
    std::string o = std::to_string(orphan);
    EXPECT_EQ(q("SELECT attempt FROM jr_jobs_done WHERE id = " + o), "2");
    EXPECT_EQ(q("SELECT errors->0->>'kind' FROM jr_jobs_done WHERE id = " + o), "lease_lost");
    // The cron tick's job went through the claim path too.
    EXPECT_GE(count("SELECT count(*) FROM jr_jobs_done WHERE payload = '{\"cron\": true}'"), 1);
    // Where LISTEN happens: on the direct connection, or nowhere (polling).
    int64_t listening = count(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = "
        "'LISTEN \"jr_jobs\"' AND application_name = '" +
        session_name(runner.pid()) + "'");
    std::string log = runner.log();
    if (listen_url.empty()) {
      EXPECT_EQ(listening, 0);
      EXPECT_NE(log.find("PgBouncer mode without listen_database_url"), std::string::npos) << log;
      EXPECT_NE(log.find("claims+completions 1, services 1 = 3 of 3"), std::string::npos) << log;
    } else {
      EXPECT_EQ(listening, 1);
      EXPECT_NE(log.find("LISTEN on the direct listen_database_url"), std::string::npos) << log;
      // A job enqueued through PgBouncer wakes the idle runner through the direct LISTEN:
      // started well within the fetcher's one-second wait, every time.
      for (int i = 0; i < 4; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(300 + 170 * i));
        int64_t id = enqueue_bounced({"enqueue", "echo", "--payload", "{\"wake\": 1}"});
        ASSERT_TRUE(
            wait_until([&] { return done_state(id) == "completed"; }, std::chrono::seconds(10)));
        double latency = std::stod(
            q("SELECT extract(epoch from started_at - created_at) FROM jr_jobs_done WHERE id = " +
              std::to_string(id)));
        EXPECT_LT(latency, 0.5) << "job " << id << " waited for a poll, not a notification";
      }
    }
    EXPECT_EQ(log.find("prepared statement \""), std::string::npos) << log;  // "... does not exist"
    EXPECT_EQ(log.find("database error"), std::string::npos) << log;
    runner.signal(SIGTERM);
    EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
  }

  std::unique_ptr<PgBouncer> bouncer_;
  std::map<std::string, std::string> bounced_;
};

TEST_F(PgBouncerLifecycle, CorePollingWithoutListenUrl) { lifecycle("", "500ms"); }

TEST_F(PgBouncerLifecycle, CoreWithDirectListenUrl) { lifecycle(url_, "2s"); }

}  // namespace
}  // namespace jrtest
