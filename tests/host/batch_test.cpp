// Batches with callbacks (issue 23, docs/job-model.md "Batches"), migration 17, through the real
// runner binary on a real PostgreSQL:
//   - 300 echo jobs in one batch, 30 failing for good, across 3 runner processes, one of them
//     killed -9 while it runs members and started again: one callback job, of the on_failure
//     spec, with the counts, and it completes; the batch's counts match the finished members;
//   - all members completing: the on_complete callback (enqueued with `runner enqueue
//     --batch-on-complete`) gets the counts; `runner batch status` before and after;
//   - a member retried from the dead letter queue: before the callback it is taken out of the
//     counts (the callback waits for it), after the callback the counts follow it and no second
//     callback runs; pruning a finished member changes nothing;
//   - bad input refused naming the problem, nothing inserted (SQL and CLI), an empty batch too;
//   - the HTTP API: POST /api/v1/batches (token) and GET /api/v1/batches/{id}, with the same
//     rules and messages; the pruner deletes a batch row after the longest retention.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <thread>

#include "runner_fixture.hpp"

namespace {

using jrtest::echo_so;
using jrtest::PgCluster;
using jrtest::RunnerProcess;
using jrtest::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;

class Batch : public jrtest::RunnerFixture {
 protected:
  // jr_batch_enqueue() in SQL; returns {"batch_id", "job_ids"}.
  json batch_sql(const std::string& payloads, const std::string& on_complete,
                 const std::string& on_failure, const std::string& options = "{}") {
    return json::parse(q("SELECT jr_batch_enqueue('echo', '" + payloads + "', '" + options + "', " +
                         on_complete + ", " + on_failure + ")"));
  }
  json batch_status(int64_t id) {
    auto r = jrtest::run_runner({"batch", "status", std::to_string(id), "--json"}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }
  // The message of the error `sql` fails with ("" when it succeeds).
  std::string error_of(const std::string& sql) {
    try {
      PgCluster::exec(url_, sql);
      return "";
    } catch (const pqxx::sql_error& e) {
      std::string m = e.what();
      auto nl = m.find('\n');
      return nl == std::string::npos ? m : m.substr(0, nl);
    }
  }
  // Callback jobs: the only jobs whose payload carries "batch".
  int64_t callbacks() { return count("SELECT count(*) FROM jr_jobs_all WHERE payload ? 'batch'"); }
  std::string runner_file(const std::string& text) {
    std::string path = dir_.path() + "/in" + std::to_string(++dirs_);
    std::ofstream(path) << text;
    return path;
  }
};

TEST_F(Batch, CallbackRunsExactlyOnceUnderThreeRunnersAndKillNine) {
  std::string payloads = "[";
  for (int i = 0; i < 300; ++i) {
    payloads += i ? "," : "";
    payloads += i % 10 == 3 ? R"({"fail":"permanent","i":)" + std::to_string(i) + "}"
                            : R"({"sleep_ms":150,"i":)" + std::to_string(i) + "}";
  }
  payloads += "]";
  json b = batch_sql(payloads, R"('{"kind":"echo","payload":{"cb":"complete"}}')",
                     R"('{"kind":"echo","payload":{"cb":"failure"}}')");
  int64_t batch = b["batch_id"];
  ASSERT_EQ(b["job_ids"].size(), 300u);
  std::string plugins = plugin_dir_with({echo_so()});
  auto start = [&](const std::string& id) {
    return std::make_unique<RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins, "--concurrency", "8", "--worker-id", id,
                                 "--lease-seconds", "2", "--rescue-interval", "0.2",
                                 "--poll-interval", "0.1"},
        env_);
  };
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (const char* id : {"r0", "r1", "r2"}) runners.push_back(start(id));
  // Kill r0 while it runs members, a third of the way through.
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT completed + failed FROM jr_batches WHERE id = " +
                     std::to_string(batch)) >= 100 &&
               count(
                   "SELECT count(*) FROM jr_jobs WHERE lease_owner = 'r0' AND state = "
                   "'running'") > 0;
      },
      120s))
      << runners[0]->log();
  runners[0]->signal(SIGKILL);
  runners[0]->wait(10s);
  runners[0] = start("r0b");
  ASSERT_TRUE(wait_until(
      [&] {
        return q("SELECT d.state FROM jr_batches b JOIN jr_jobs_done d ON d.id = "
                 "b.callback_job_id WHERE b.id = " +
                 std::to_string(batch)) == "completed";
      },
      180s))
      << runners[1]->log();
  // Members the killed runner held were finished by the others after its lease ran out.
  EXPECT_GT(count("SELECT count(*) FROM jr_jobs_done WHERE options->>'batch' = '" +
                  std::to_string(batch) + "' AND errors @> '[{\"kind\":\"lease_lost\"}]'"),
            0);
  std::printf("kill -9: %s members finished after a lost lease\n",
              q("SELECT count(*) FROM jr_jobs_done WHERE options->>'batch' = '" +
                std::to_string(batch) + "' AND errors @> '[{\"kind\":\"lease_lost\"}]'")
                  .c_str());
  EXPECT_EQ(callbacks(), 1);
  json cb =
      json::parse(q("SELECT d.payload FROM jr_batches b JOIN jr_jobs_done d ON d.id = "
                    "b.callback_job_id WHERE b.id = " +
                    std::to_string(batch)));
  EXPECT_EQ(cb["cb"], "failure");
  EXPECT_EQ(cb["batch"], (json{{"id", batch}, {"total", 300}, {"completed", 270}, {"failed", 30}}));
  json s = batch_status(batch);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["completed"], 270);
  EXPECT_EQ(s["failed"], 30);
  EXPECT_EQ(s["pending"], 0);
  // The counts are those of the finished members.
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE options->>'batch' = '" +
                  std::to_string(batch) + "' AND state = 'completed'"),
            270);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_done WHERE options->>'batch' = '" +
                  std::to_string(batch) + "' AND state = 'discarded'"),
            30);
  // Nothing more comes: the runners go on polling and no second callback appears.
  std::this_thread::sleep_for(1s);  // no event to wait for: the absence of one
  EXPECT_EQ(callbacks(), 1);
}

// Many small batches finishing at once on 3 runners: the last members of a batch are finished
// concurrently by different runners (and one runner's outcome statement finishes members of
// several batches), yet each batch gets exactly one callback with its own counts.
TEST_F(Batch, ManySmallBatchesOnThreeRunnersEachGetOneCallback) {
  for (int i = 0; i < 60; ++i) {
    batch_sql(R"([{}, {}, {"fail":"permanent"}, {}, {}])",
              R"('{"kind":"echo","payload":{"cb":"complete"}}')", "NULL");
  }
  std::string plugins = plugin_dir_with({echo_so()});
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (int i = 0; i < 3; ++i) {
    runners.push_back(std::make_unique<RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins, "--concurrency", "8", "--poll-interval",
                                 "0.1"},
        env_));
  }
  ASSERT_TRUE(wait_until(
      [&] {
        return count(
                   "SELECT count(*) FROM jr_batches b JOIN jr_jobs_done d ON d.id = "
                   "b.callback_job_id AND d.state = 'completed'") == 60;
      },
      120s))
      << runners[0]->log();
  EXPECT_EQ(callbacks(), 60);
  // One callback per batch, each with its own batch's counts (no on_failure: on_complete).
  EXPECT_EQ(count("SELECT count(DISTINCT (payload->'batch'->>'id')) FROM jr_jobs_all "
                  "WHERE payload ? 'batch' AND payload->>'cb' = 'complete' AND "
                  "payload->'batch' @> '{\"total\": 5, \"completed\": 4, \"failed\": 1}'"),
            60);
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches WHERE completed = 4 AND failed = 1 AND "
                  "finished_at IS NOT NULL AND callback_error IS NULL"),
            60);
}

TEST_F(Batch, AllSucceedRunsOnCompleteWithTheCountsFromTheCli) {
  std::string file;
  for (int i = 0; i < 20; ++i) file += R"({"n":)" + std::to_string(i) + "}\n";
  auto r = jrtest::run_runner(
      {"enqueue", "echo", "--payload-file", runner_file(file), "--batch-on-complete", "echo",
       "--batch-on-failure", "echo", "--batch-payload", R"({"report":"nightly"})"},
      env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // stdout: the member ids, one a line, as without a batch; stderr: "batch ID".
  auto at = r.err.find("batch ");
  ASSERT_NE(at, std::string::npos) << r.err;
  int64_t batch = std::stoll(r.err.substr(at + 6));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 20);
  json s = batch_status(batch);
  EXPECT_EQ(s["state"], "running");
  EXPECT_EQ(s["total"], 20);
  EXPECT_EQ(s["pending"], 20);
  EXPECT_TRUE(s["callback_job_id"].is_null());
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "0.1"}, env_);
  ASSERT_TRUE(wait_until([&] { return batch_status(batch)["state"] == "completed"; }, 60s))
      << runner.log();
  s = batch_status(batch);
  ASSERT_TRUE(s["callback_job_id"].is_number()) << s.dump();
  int64_t cb = s["callback_job_id"];
  ASSERT_TRUE(wait_state(cb, "completed", 30s)) << runner.log();
  json p = json::parse(q("SELECT payload FROM jr_jobs_all WHERE id = " + std::to_string(cb)));
  EXPECT_EQ(p, (json{{"report", "nightly"},
                     {"batch", {{"id", batch}, {"total", 20}, {"completed", 20}, {"failed", 0}}}}));
  EXPECT_EQ(callbacks(), 1);
  // The human form.
  auto h = jrtest::run_runner({"batch", "status", std::to_string(batch)}, env_);
  EXPECT_EQ(h.exit_code, 0) << h.err;
  EXPECT_NE(h.out.find("completed:   20"), std::string::npos) << h.out;
  EXPECT_EQ(jrtest::run_runner({"batch", "status", "999999"}, env_).exit_code, 3);
}

// A member that is retried (runner retry: back from jr_jobs_done to jr_jobs) before the batch
// finished is taken out of the counts: the callback waits for it. Cancel and retry are the
// runner's own paths (no runner needed to move members).
TEST_F(Batch, RetryBeforeTheCallbackTakesTheMemberOutOfTheCounts) {
  json b = batch_sql("[{}, {}]", R"('{"kind":"echo","payload":{"cb":"complete"}}')",
                     R"('{"kind":"echo","payload":{"cb":"failure"}}')");
  int64_t batch = b["batch_id"];
  std::string m1 = std::to_string(b["job_ids"][0].get<int64_t>());
  std::string m2 = std::to_string(b["job_ids"][1].get<int64_t>());
  ASSERT_EQ(jrtest::run_runner({"cancel", m1}, env_).exit_code, 0);
  json s = batch_status(batch);
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["pending"], 1);
  ASSERT_EQ(jrtest::run_runner({"retry", m1}, env_).exit_code, 0);
  s = batch_status(batch);
  EXPECT_EQ(s["failed"], 0);
  EXPECT_EQ(s["pending"], 2);
  ASSERT_EQ(jrtest::run_runner({"cancel", m2}, env_).exit_code, 0);
  // Without the retry taking m1 out, this would be 2 of 2 and the callback would be there.
  EXPECT_EQ(callbacks(), 0);
  EXPECT_EQ(batch_status(batch)["pending"], 1);
  ASSERT_EQ(jrtest::run_runner({"cancel", m1}, env_).exit_code, 0);
  s = batch_status(batch);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["failed"], 2);
  EXPECT_EQ(callbacks(), 1);
  EXPECT_EQ(q("SELECT payload->>'cb' FROM jr_jobs WHERE id = " + s["callback_job_id"].dump()),
            "failure");
  // Pruning a finished member (a delete for good) leaves the counts alone.
  PgCluster::exec(url_, "DELETE FROM jr_jobs_done WHERE id = " + m2);
  EXPECT_EQ(batch_status(batch)["failed"], 2);
}

// After the callback ran: the retried member goes back into the counts when it finishes (the
// status follows it), and no second callback is enqueued.
TEST_F(Batch, RetryAfterTheCallbackUpdatesTheCountsWithoutASecondCallback) {
  json b = batch_sql(R"([{}, {}, {"fail_permanent_attempts":1}])",
                     R"('{"kind":"echo","payload":{"cb":"complete"}}')",
                     R"('{"kind":"echo","payload":{"cb":"failure"}}')");
  int64_t batch = b["batch_id"];
  int64_t failing = b["job_ids"][2];
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "0.1"}, env_);
  ASSERT_TRUE(wait_until([&] { return batch_status(batch)["state"] == "failed"; }, 60s))
      << runner.log();
  json s = batch_status(batch);
  int64_t cb = s["callback_job_id"];
  ASSERT_TRUE(wait_state(cb, "completed", 30s)) << runner.log();
  EXPECT_EQ(
      q("SELECT payload->'batch'->>'failed' FROM jr_jobs_done WHERE id = " + std::to_string(cb)),
      "1");
  ASSERT_EQ(jrtest::run_runner({"dlq", "replay", "--kind", "echo"}, env_).exit_code, 0);
  ASSERT_TRUE(wait_state(failing, "completed", 30s)) << runner.log();
  s = batch_status(batch);
  EXPECT_EQ(s["state"], "completed");
  EXPECT_EQ(s["completed"], 3);
  EXPECT_EQ(s["failed"], 0);
  EXPECT_EQ(s["callback_job_id"], cb);
  EXPECT_EQ(callbacks(), 1);
}

TEST_F(Batch, BadInputIsRefusedNamingTheProblemAndNothingIsInserted) {
  auto err = [&](const std::string& args) {
    return error_of("SELECT jr_batch_enqueue('echo', " + args + ")");
  };
  EXPECT_NE(err(R"('[{}]', '{"priority": "high"}')").find("'priority'"), std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{"bogus": 1}')").find("'bogus' is not a known job option"),
            std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{"unique": true}')").find("option 'unique' cannot be used for batch"),
            std::string::npos);
  EXPECT_NE(err(R"('[]')").find("'payloads' is empty"), std::string::npos);
  EXPECT_NE(err(R"('[1]')").find("payloads[0] must be a JSON object"), std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{}', '{"kind": "echo", "options": {"bogus": 1}}')")
                .find("'on_complete': jr_enqueue: 'bogus' is not a known job option"),
            std::string::npos)
      << err(R"('[{}]', '{}', '{"kind": "echo", "options": {"bogus": 1}}')");
  EXPECT_NE(err(R"('[{}]', '{}', NULL, '{"kind": "no spaces allowed"}')").find("'on_failure'"),
            std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{}', '{"kind": "echo", "when": "now"}')").find("unknown key 'when'"),
            std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{}', '{"payload": {}}')").find("needs \"kind\""), std::string::npos);
  EXPECT_NE(err(R"('[{}]', '{}', '"echo"')").find("must be a JSON object"), std::string::npos);
  // The CLI: an empty batch, a callback payload that is not JSON or has no callback.
  std::string empty = runner_file("");
  auto r = jrtest::run_runner(
      {"enqueue", "echo", "--payload-file", empty, "--batch-on-complete", "echo"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'payloads' is empty"), std::string::npos) << r.err;
  r = jrtest::run_runner({"enqueue", "echo", "--payload", "{}", "--batch-on-complete", "echo",
                          "--batch-payload", "{nope"},
                         env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--batch-payload is not valid JSON"), std::string::npos) << r.err;
  r = jrtest::run_runner({"enqueue", "echo", "--payload", "{}", "--batch-payload", "{}"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--batch-payload needs --batch-on-complete"), std::string::npos) << r.err;
  r = jrtest::run_runner(
      {"enqueue", "echo", "--payload", "{}", "--batch-on-complete", "echo", "--unique-key", "k"},
      env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("'unique_key' cannot be used for batch"), std::string::npos) << r.err;
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches"), 0);
  // Producers may call it, as jr_enqueue_many.
  if (count("SELECT count(*) FROM pg_roles WHERE rolname = 'jobrunner_producer'") == 1) {
    EXPECT_EQ(q("SELECT has_function_privilege('jobrunner_producer', "
                "'jr_batch_enqueue(text, jsonb, jsonb, jsonb, jsonb)', 'EXECUTE')"),
              "t");
    EXPECT_EQ(q("SELECT has_function_privilege('public', 'jr_batch_status(bigint)', 'EXECUTE')"),
              "f");
  }
}

// The HTTP API takes the same batches as jr_batch_enqueue() (every part checked by the one
// job-options parser first, then the SQL function's rules), needs the token for POST, and
// answers GET /api/v1/batches/{id} with jr_batch_status(). A finished batch's row is pruned
// once it is older than the longest retention.
TEST_F(Batch, HttpApiCreatesBatchesWithTheSameRulesAndThePrunerRemovesOldOnes) {
  std::string cfg = runner_file("[worker]\nhttp = \"127.0.0.1:0\"\nresult_ttl = \"1h\"\n");
  auto env = env_;
  env["RUNNER_API_TOKEN"] = "batch-token";
  auto runner = std::make_unique<RunnerProcess>(
      std::vector<std::string>{"--plugins", plugin_dir_with({echo_so()}), "--config", cfg,
                               "--poll-interval", "0.1"},
      env);
  int port = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        std::string log = runner->log();
        size_t at = log.find("\"msg\":\"http server listening\"");
        if (at == std::string::npos) return false;
        at = log.find("\"port\":", at);
        if (at != std::string::npos) port = std::atoi(log.c_str() + at + 7);
        return port > 0;
      },
      60s))
      << runner->log();
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(30, 0);
  httplib::Headers auth = {{"Authorization", "Bearer batch-token"}, {"X-Jobrunner-CSRF", "1"}};
  auto post = [&](const json& body, const httplib::Headers& h) {
    return c.Post("/api/v1/batches", h, body.dump(), "application/json");
  };
  json good = {
      {"kind", "echo"},
      {"payloads", json::array({json{{"n", 1}}, json{{"n", 2}}, json{{"fail", "permanent"}}})},
      {"options", {{"queue", "default"}, {"max_attempts", 1}}},
      {"on_complete", {{"kind", "echo"}, {"payload", {{"cb", "complete"}}}}},
      {"on_failure", {{"kind", "echo"}, {"payload", {{"cb", "failure"}}}}}};
  // Without the token: refused, nothing inserted.
  auto res = post(good, {{"X-Jobrunner-CSRF", "1"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401) << res->body;
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches"), 0);
  // Bad requests: 400 naming the part, nothing inserted.
  struct Bad {
    json body;
    std::string says;
  };
  std::vector<Bad> bad = {
      {json{{"kind", "echo"}}, "'payloads' is required"},
      {json{{"kind", "echo"}, {"payloads", json::array()}}, "'payloads' is empty"},
      {json{{"kind", "echo"}, {"payloads", json::array({1})}}, "'payloads[0]' must be"},
      {json{{"kind", "echo"}, {"payloads", json::array({json{{"s", std::string("a\0b", 3)}}})}},
       "'payloads[0]' contains a NUL"},
      {json{{"kind", std::string("echo\0evil", 9)}, {"payloads", json::array({json::object()})}},
       "'kind'"},
      {json{{"kind", "echo"}, {"payloads", json::array({json::object()})}, {"extra", 1}},
       "is not a batch key"},
      {json{{"kind", "echo"},
            {"payloads", json::array({json::object()})},
            {"options", {{"priority", 18446744073709551615ull}}}},
       "'priority' must be an integer"},
      {json{{"kind", "echo"},
            {"payloads", json::array({json::object()})},
            {"options", {{"unique_key", "k"}}}},
       "cannot be used for batch members"},
      {json{{"kind", "echo"},
            {"payloads", json::array({json::object()})},
            {"on_complete", {{"kind", "echo"}, {"options", {{"bogus", 1}}}}}},
       "'on_complete.bogus' is not a known job option"},
      {json{{"kind", "echo"}, {"payloads", json::array({json::object()})}, {"on_failure", "echo"}},
       "'on_failure' must be null or"},
  };
  for (const auto& b : bad) {
    res = post(b.body, auth);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << b.body.dump(-1, ' ', false, json::error_handler_t::replace);
    EXPECT_NE(res->body.find(b.says), std::string::npos) << res->body;
  }
  res = c.Post("/api/v1/batches", auth, "{nope", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
  // A good one: 201 with the ids; the runner finishes it and runs on_failure once.
  res = post(good, auth);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  json made = json::parse(res->body);
  int64_t batch = made["batch_id"];
  ASSERT_EQ(made["job_ids"].size(), 3u);
  json s;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = c.Get("/api/v1/batches/" + std::to_string(batch));
        if (!r || r->status != 200) return false;
        s = json::parse(r->body);
        return s["state"] == "failed" && s["callback_job_id"].is_number();
      },
      60s))
      << s.dump() << runner->log();
  EXPECT_EQ(s["completed"], 2);
  EXPECT_EQ(s["failed"], 1);
  int64_t cb = s["callback_job_id"];
  ASSERT_TRUE(wait_state(cb, "completed", 30s)) << runner->log();
  EXPECT_EQ(
      json::parse(q("SELECT payload FROM jr_jobs_all WHERE id = " + std::to_string(cb)))["cb"],
      "failure");
  EXPECT_EQ(callbacks(), 1);
  auto missing = c.Get("/api/v1/batches/999999");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto huge = c.Get("/api/v1/batches/99999999999999999999");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->status, 400);
  // Pruning: a second, unfinished batch stays; the finished one goes once its callback is older
  // than the longest retention (the default failure_ttl, 30 days, here), not before.
  PgCluster::exec(url_, "SELECT jr_batch_enqueue('nobody_serves_this', '[{}]')");
  runner->signal(SIGTERM);
  runner->wait(30s);
  PgCluster::exec(url_,
                  "UPDATE jr_batches SET finished_at = now() - interval '2 days' WHERE id = " +
                      std::to_string(batch));
  // The pruner runs when a leader is elected: a new runner makes one pass at start.
  runner = std::make_unique<RunnerProcess>(
      std::vector<std::string>{"--plugins", plugin_dir_with({echo_so()}), "--config", cfg}, env);
  ASSERT_TRUE(wait_until([&] { return runner->log().find("leader") != std::string::npos; }, 30s))
      << runner->log();
  std::this_thread::sleep_for(1s);  // the absence of a deletion has no event to wait for
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches"), 2);
  runner->signal(SIGTERM);
  runner->wait(30s);
  PgCluster::exec(url_,
                  "UPDATE jr_batches SET finished_at = now() - interval '31 days' WHERE id = " +
                      std::to_string(batch));
  runner = std::make_unique<RunnerProcess>(
      std::vector<std::string>{"--plugins", plugin_dir_with({echo_so()}), "--config", cfg}, env);
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_batches WHERE id = " + std::to_string(batch)) == 0;
      },
      30s))
      << runner->log();
  EXPECT_EQ(count("SELECT count(*) FROM jr_batches"), 1);  // the unfinished one stays
}

}  // namespace
