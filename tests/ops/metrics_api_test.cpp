// End-to-end tests of the runner's HTTP server against real PostgreSQL and the real binary:
// /metrics counter deltas for a known set of jobs, /healthz, /readyz, and every JSON API
// endpoint with its error statuses (400, 401, 403, 404, 409).
#include <signal.h>

#include <filesystem>
#include <thread>

#include "ops_fixture.hpp"

namespace jrtest {
namespace {

class OpsHttp : public RunnerFixture {};

double v(const std::map<std::string, double>& m, const std::string& k) { return prom_value(m, k); }

TEST_F(OpsHttp, MetricsCountExactlyTheJobsRun) {
  auto plugins = plugin_dir_with({echo_so()});
  auto r = start_http_runner(plugins, env_, {"--concurrency", "4"});
  ASSERT_GT(r.port, 0);
  auto before = scrape(r);
  ASSERT_FALSE(before.empty());
  EXPECT_EQ(v(before, "jobrunner_build_info{version=\"0.1.0\"}"), 1);

  enqueue_many("echo", 5, R"({"ok": 1})");
  enqueue_many("echo", 3, R"({"ok": 2})", {"--queue", "other"});
  enqueue_many("echo", 2, R"({"fail": "permanent"})");
  enqueue({"enqueue", "echo", "--payload", R"({"fail_attempts": 1})", "--retry-schedule", "0"});
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs_done") == 11; },
                         std::chrono::seconds(30)))
      << r.proc->log();
  // Metrics are updated before outcomes are written, so they are complete once all are done.
  auto after = scrape(r);
  auto d = [&](const std::string& k) { return v(after, k) - v(before, k); };
  const std::string f = "jobrunner_jobs_finished_total";
  EXPECT_EQ(d(f + "{kind=\"echo\",outcome=\"completed\",queue=\"default\"}"), 6);
  EXPECT_EQ(d(f + "{kind=\"echo\",outcome=\"completed\",queue=\"other\"}"), 3);
  EXPECT_EQ(d(f + "{kind=\"echo\",outcome=\"discarded\",queue=\"default\"}"), 2);
  EXPECT_EQ(d(f + "{kind=\"echo\",outcome=\"retried\",queue=\"default\"}"), 1);
  EXPECT_EQ(d("jobrunner_job_duration_seconds_count{kind=\"echo\"}"), 12);
  EXPECT_EQ(d("jobrunner_job_wait_seconds_count{kind=\"echo\"}"), 12);
  EXPECT_EQ(d("jobrunner_retries_total"), 1);
  EXPECT_EQ(d("jobrunner_dead_letters_total{source=\"attempt\"}"), 2);
  EXPECT_EQ(v(after, "jobrunner_running_jobs"), 0);
  EXPECT_EQ(d("jobrunner_database_errors_total"), 0);

  // Queue depth comes from the database (cached up to a second).
  enqueue({"enqueue", "echo", "--payload", "{}", "--delay", "1h", "--queue", "later"});
  ASSERT_TRUE(wait_until(
      [&] {
        auto m = scrape(r);
        return v(m, "jobrunner_queue_depth{queue=\"later\",state=\"scheduled\"}") == 1;
      },
      std::chrono::seconds(5)));
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(30)), 0);
}

TEST_F(OpsHttp, HealthAndReadiness) {
  auto plugins = plugin_dir_with({echo_so()});
  auto r = start_http_runner(plugins, env_, {"--shutdown-grace", "20s"});
  ASSERT_GT(r.port, 0);
  auto c = r.client();
  auto h = c->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  // Ready once its plugins are up (they start in the background; "starting" until then).
  std::string last = "no answer";
  ASSERT_TRUE(wait_until(
      [&] {
        auto ready = c->Get("/readyz");
        if (ready) last = ready->body;
        return ready && ready->status == 200;
      },
      std::chrono::seconds(30)))
      << last;
  // While a job drains after SIGTERM, the runner is alive but no longer ready.
  int64_t id = enqueue({"enqueue", "echo", "--payload", R"({"sleep_ms": 3000})"});
  ASSERT_TRUE(wait_state(id, "running", std::chrono::seconds(10)));
  r.proc->signal(SIGTERM);
  ASSERT_TRUE(wait_until(
      [&] {
        auto res = r.client()->Get("/readyz");
        return res && res->status == 503;
      },
      std::chrono::seconds(5)));
  auto nr = r.client()->Get("/readyz");
  if (nr) {
    auto j = nlohmann::json::parse(nr->body);
    EXPECT_EQ(j["reason"], "shutting down");
  }
  auto alive = r.client()->Get("/healthz");
  ASSERT_TRUE(alive);
  EXPECT_EQ(alive->status, 200);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(30)), 0);
  EXPECT_EQ(q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(id)), "completed");
}

TEST_F(OpsHttp, ApiEndpointsAndErrors) {
  auto plugins = plugin_dir_with({echo_so()});
  auto env = env_;
  env["RUNNER_API_TOKEN"] = "t0ken-for-tests";
  auto r = start_http_runner(plugins, env);
  ASSERT_GT(r.port, 0);
  auto c = r.client();
  // Every POST carries the dashboard's CSRF header too (host/ops/server.cpp, authorise_write).
  httplib::Headers auth = {{"Authorization", "Bearer t0ken-for-tests"}, {"X-Jobrunner-CSRF", "1"}};
  auto json = [](const httplib::Result& res) { return nlohmann::json::parse(res->body); };

  // 401 without or with a wrong token; nothing is enqueued.
  auto res = c->Post("/api/v1/jobs", R"({"kind": "echo"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json(res)["error"], "missing Authorization: Bearer <token> header");
  res = c->Post("/api/v1/jobs", {{"Authorization", "Bearer wrong"}}, R"({"kind": "echo"})",
                "application/json");
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json(res)["error"], "invalid API token");
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);

  // 400: bad JSON, bad options.
  res = c->Post("/api/v1/jobs", auth, "{not json", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json(res)["error"], "the request body is not valid JSON");
  res = c->Post("/api/v1/jobs", auth, R"({"kind": "echo", "priority": "x"})", "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json(res)["error"],
            "'priority' must be an integer between -1000000 and 1000000, got a string");
  res = c->Post("/api/v1/jobs", auth, R"({"kind": "echo", "depends_on": [987654]})",
                "application/json");
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(json(res)["error"].get<std::string>().find("987654"), std::string::npos);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);

  // Enqueue, then read the finished job back.
  res = c->Post("/api/v1/jobs", auth, R"({"kind": "echo", "payload": {"hello": "api"}})",
                "application/json");
  ASSERT_EQ(res->status, 201) << res->body;
  int64_t id = json(res)["id"].get<int64_t>();
  EXPECT_EQ(json(res)["queue"], "default");
  EXPECT_EQ(json(res)["inserted"], true);
  ASSERT_TRUE(wait_state(id, "completed", std::chrono::seconds(15)));
  res = c->Get("/api/v1/jobs/" + std::to_string(id));
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(json(res)["state"], "completed");
  EXPECT_EQ(json(res)["result"], nlohmann::json::parse(R"({"hello": "api"})"));
  res = c->Get("/api/v1/jobs/99999999");
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json(res)["error"], "no job with id 99999999");
  res = c->Get("/api/v1/nothing-here");
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json(res)["error"], "not found");

  // Unique: the second insert returns the first id with 200.
  std::string uniq =
      R"({"kind": "echo", "payload": {"u": 1}, "delay_seconds": 3600, "unique": true})";
  res = c->Post("/api/v1/jobs", auth, uniq, "application/json");
  ASSERT_EQ(res->status, 201);
  int64_t delayed = json(res)["id"].get<int64_t>();
  EXPECT_EQ(json(res)["state"], "scheduled");
  res = c->Post("/api/v1/jobs", auth, uniq, "application/json");
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(json(res)["id"].get<int64_t>(), delayed);
  EXPECT_EQ(json(res)["inserted"], false);

  // Queues: depth per state.
  res = c->Get("/api/v1/queues");
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(json(res)["queues"]["default"]["scheduled"], 1);
  EXPECT_EQ(json(res)["queues"]["default"]["available"], 0);

  // Cancel and retry, with their errors.
  std::string base = "/api/v1/jobs/" + std::to_string(delayed);
  res = c->Post(base + "/cancel", "", "application/json");
  EXPECT_EQ(res->status, 401);
  res = c->Post(base + "/cancel", auth, "", "application/json");
  ASSERT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json(res)["state"], "cancelled");
  res = c->Post(base + "/cancel", auth, "", "application/json");
  EXPECT_EQ(res->status, 409);
  res = c->Post(base + "/retry", auth, "", "application/json");
  ASSERT_EQ(res->status, 200) << res->body;
  ASSERT_TRUE(wait_state(delayed, "completed", std::chrono::seconds(15)));
  res = c->Post(base + "/retry", auth, "", "application/json");
  EXPECT_EQ(res->status, 409);
  EXPECT_NE(json(res)["error"].get<std::string>().find("is completed"), std::string::npos);
  res = c->Post("/api/v1/jobs/99999999/retry", auth, "", "application/json");
  EXPECT_EQ(res->status, 404);
  res = c->Post("/api/v1/jobs/99999999/cancel", auth, "", "application/json");
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json(res)["error"], "no job with id 99999999");
}

TEST_F(OpsHttp, WritesAreRefusedWithoutAConfiguredToken) {
  auto plugins = plugin_dir_with({echo_so()});
  auto r = start_http_runner(plugins, env_);
  ASSERT_GT(r.port, 0);
  auto res = r.client()->Post("/api/v1/jobs", {{"Authorization", "Bearer anything"}},
                              R"({"kind": "echo"})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 403);
  EXPECT_NE(nlohmann::json::parse(res->body)["error"].get<std::string>().find("RUNNER_API_TOKEN"),
            std::string::npos);
  // Reads stay open.
  EXPECT_EQ(r.client()->Get("/api/v1/queues")->status, 200);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
}

// Issue 17: the API refuses what the CLI refuses, with 400 and a message, and stores nothing:
// ids beyond 2^63-1 (was 500 {"error":"stoll"}), NUL in kind or queue (was cut by libpq and
// run as `echo`), wrapped integers (2^64-1 was stored as priority -1), non-object payloads.
TEST_F(OpsHttp, ApiRefusesBadInputWithA400) {
  auto plugins = plugin_dir_with({echo_so()});
  auto env = env_;
  env["RUNNER_API_TOKEN"] = "t0ken-for-tests";
  auto r = start_http_runner(plugins, env);
  ASSERT_GT(r.port, 0);
  auto c = r.client();
  // Every POST carries the dashboard's CSRF header too (host/ops/server.cpp, authorise_write).
  httplib::Headers auth = {{"Authorization", "Bearer t0ken-for-tests"}, {"X-Jobrunner-CSRF", "1"}};
  auto error_of = [](const httplib::Result& res) {
    return nlohmann::json::parse(res->body).value("error", std::string());
  };
  for (const char* path : {"/api/v1/jobs/99999999999999999999", "/api/v1/jobs/0"}) {
    auto res = c->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << path << " " << res->body;
    EXPECT_NE(error_of(res).find("is not a job id"), std::string::npos) << res->body;
  }
  auto res = c->Post("/api/v1/jobs/99999999999999999999/cancel", auth, "", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  struct Case {
    std::string body, error;
  };
  std::vector<Case> cases = {
      {R"({"kind": "echo\u0000evil"})", "'kind' must be 1 to 128 characters"},
      {R"({"kind": "echo", "queue": "default\u0000x"})", "'queue' contains a NUL character"},
      {R"({"kind": "echo", "priority": 18446744073709551615})",
       "'priority' must be an integer between -1000000 and 1000000, got 18446744073709551615"},
      {R"({"kind": "echo", "depends_on": [18446744073709551615]})",
       "'depends_on' must be an integer between 1 and 9223372036854775807"},
      {R"({"kind": "echo", "payload": [1, 2]})", "'payload' must be a JSON object, got an array"},
      {R"({"kind": "echo", "payload": {"a": "\u0000"}})", "'payload' contains a NUL character"},
      {R"({"kind": "echo", "run_at": "tomorrow"})", "'run_at' must be an ISO 8601 time"},
      {R"({"kind": "echo", "delay_seconds": 1e300})", "'delay_seconds' must be between 0 and"},
  };
  for (const auto& cs : cases) {
    res = c->Post("/api/v1/jobs", auth, cs.body, "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << cs.body << " " << res->body;
    EXPECT_EQ(error_of(res).rfind(cs.error, 0), 0u) << cs.body << " " << res->body;
  }
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(30)), 0);
}

// jobrunner_start_time_seconds is the process's start, not the time of the first scrape.
TEST_F(OpsHttp, StartTimeIsWhenTheProcessStarted) {
  auto unix_now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
  double spawned = unix_now();
  auto r = start_http_runner(plugin_dir_with({echo_so()}), env_);
  ASSERT_GT(r.port, 0);
  // The first scrape comes 3 s after the start (a wait on the clock itself).
  jrtest::wait_until([&] { return unix_now() - spawned >= 3; }, std::chrono::seconds(10));
  auto m = scrape(r);
  double started = v(m, "jobrunner_start_time_seconds");
  EXPECT_GE(started, spawned - 1);
  EXPECT_LE(started, spawned + 1.5) << "the first scrape's time, not the process start";
  EXPECT_EQ(v(scrape(r), "jobrunner_start_time_seconds"), started);
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(30)), 0);
}

// A stop at any moment of start-up ends the runner: the HTTP listener thread may not have
// reached its accept loop when the stop comes (it used to miss the stop and hang, SIGTERM then
// being ignored). The runner exits 0, or is killed by the SIGTERM's default action when it
// arrives before the runner handles signals at all.
TEST_F(OpsHttp, StopDuringStartUpAlwaysEndsTheRunner) {
  std::string empty = dir_.path() + "/empty";
  std::filesystem::create_directories(empty);
  // No plugin: the runner stops by itself right after starting its HTTP server.
  for (int i = 0; i < 20; ++i) {
    RunnerProcess p({"--plugins", empty, "--http", "127.0.0.1:0"}, env_);
    int rc = p.wait(std::chrono::seconds(10));
    ASSERT_NE(rc, -1) << "run " << i << ": did not exit\n" << p.log();
    EXPECT_EQ(rc, 2) << p.log();  // no job kind to serve
  }
  std::string plugins = plugin_dir_with({echo_so()});
  for (int round = 0; round < 2; ++round) {
    for (int delay_ms : {0, 2, 5, 10, 20, 50, 100, 200, 400, 800}) {
      RunnerProcess p({"--plugins", plugins, "--http", "127.0.0.1:0"}, env_);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));  // the moment of the stop
      p.signal(SIGTERM);
      int rc = p.wait(std::chrono::seconds(15));
      ASSERT_TRUE(rc == 0 || rc == 128 + SIGTERM)
          << "SIGTERM after " << delay_ms << " ms: " << (rc == -1 ? "did not exit" : "exit ") << rc
          << "\n"
          << p.log();
    }
  }
}

TEST_F(OpsHttp, BadHttpAddressIsAUsageError) {
  auto plugins = plugin_dir_with({echo_so()});
  auto res = run_runner({"--plugins", plugins, "--http", "nonsense"}, env_);
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("bad HTTP address 'nonsense'"), std::string::npos) << res.err;
}

}  // namespace
}  // namespace jrtest
