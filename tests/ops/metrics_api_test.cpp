// End-to-end tests of the runner's HTTP server against real PostgreSQL and the real binary:
// /metrics counter deltas for a known set of jobs, /healthz, /readyz, and every JSON API
// endpoint with its error statuses (400, 401, 403, 404, 409).
#include <signal.h>

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
  httplib::Headers auth = {{"Authorization", "Bearer t0ken-for-tests"}};
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
  EXPECT_EQ(json(res)["error"], "'priority' must be an integer");
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

TEST_F(OpsHttp, BadHttpAddressIsAUsageError) {
  auto plugins = plugin_dir_with({echo_so()});
  auto res = run_runner({"--plugins", plugins, "--http", "nonsense"}, env_);
  EXPECT_EQ(res.exit_code, 2) << res.err;
  EXPECT_NE(res.err.find("bad HTTP address 'nonsense'"), std::string::npos) << res.err;
}

}  // namespace
}  // namespace jrtest
