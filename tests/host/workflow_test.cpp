// Workflows that pass data (issue 23, docs/job-model.md "Workflows"), migration 18, through the
// real runner binary on a real PostgreSQL, with the test plugin wf_probe
// (tests/testplugins/workflow_probe.cpp), which records every execution and whose join reads its
// parents' results through jr.parent_results.v1 from inside the sandbox:
//   - one root, a fan-out of 1,000 children and a join depending on all 1,000, across 3 runner
//     processes, one of them killed -9 while it runs children and started again: every step
//     completes, the join runs exactly once and sees the 1,000 results (their sum);
//   - bad documents refused naming the problem (CLI exit 2, SQL, API 400), nothing inserted, and
//     the CLI refuses before it connects; the C++ checks and the SQL ones say the same;
//   - a step failing for good cancels its dependents with the reason, the workflow is failed
//     with that step; replaying it from the dead letter queue brings the cancelled dependents
//     back, the workflow runs again and completes, the join reading the results;
//   - the API: POST /api/v1/workflows, GET /api/v1/workflows/ID, parent results in pages.
// The red-team case (a sandboxed plugin abusing parent_results) is workflow_redteam_test.cpp.
#include "workflow.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "runner_fixture.hpp"

namespace {

using jrtest::PgCluster;
using jrtest::RunnerProcess;
using jrtest::wait_until;
using nlohmann::json;
using namespace std::chrono_literals;

std::string probe_so() { return jrtest::test_so("wf_probe", "wf_probe"); }

class Workflow : public jrtest::RunnerFixture {
 protected:
  void SetUp() override {
    RunnerFixture::SetUp();
    record_ = dir_.path() + "/executions.log";
    jrtest::shared_file(record_);
    config_ = dir_.path() + "/wf.toml";
    std::ofstream(config_) << "[plugins.wf_probe]\nrecord_file = \"" << record_
                           << "\"\n[plugins.wf_probe.sandbox]\nwritable_config_keys = "
                              "[\"record_file\"]\n";
    plugins_ = plugin_dir_with({probe_so()});
  }
  std::vector<std::string> runner_args(const std::string& id, int concurrency = 8) {
    return {"--config",          config_,
            "--plugins",         plugins_,
            "--concurrency",     std::to_string(concurrency),
            "--worker-id",       id,
            "--lease-seconds",   "2",
            "--rescue-interval", "0.2",
            "--poll-interval",   "0.1"};
  }
  std::string file(const std::string& text) {
    std::string path = dir_.path() + "/doc" + std::to_string(++dirs_) + ".json";
    std::ofstream(path) << text;
    return path;
  }
  int64_t enqueue_workflow(const json& doc) {
    auto r = jrtest::run_runner({"enqueue", "--workflow", file(doc.dump())}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? std::stoll(r.out) : -1;
  }
  json wf_status(int64_t id) {
    auto r = jrtest::run_runner({"workflow", "status", std::to_string(id), "--json"}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(r.out) : json::object();
  }
  int64_t step_job(int64_t wf, const std::string& step) {
    return count("SELECT job_id FROM jr_workflow_steps WHERE workflow_id = " + std::to_string(wf) +
                 " AND step = '" + step + "'");
  }
  // Executions recorded by wf_probe: job id -> times started.
  std::map<int64_t, int> runs() {
    std::map<int64_t, int> out;
    std::ifstream in(record_);
    for (std::string line; std::getline(in, line);) ++out[std::stoll(line)];
    return out;
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
  static std::string sql_text(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }

  std::string record_, config_, plugins_;
};

json fan_out(int children, int sleep_ms) {
  json steps = json::array();
  steps.push_back({{"name", "root"}, {"kind", "wf_step"}, {"payload", {{"i", 0}}}});
  json all = json::array();
  for (int i = 0; i < children; ++i) {
    std::string name = "c" + std::to_string(i);
    steps.push_back({{"name", name},
                     {"kind", "wf_step"},
                     {"payload", {{"i", i}, {"sleep_ms", sleep_ms}}},
                     {"depends_on", {"root"}}});
    all.push_back(name);
  }
  steps.push_back({{"name", "join"}, {"kind", "wf_join"}, {"depends_on", all}});
  return {{"name", "fan-out"}, {"steps", steps}};
}

TEST_F(Workflow, FanOutOfThousandAndJoinUnderThreeRunnersAndKillNine) {
  int64_t wf = enqueue_workflow(fan_out(1000, 60));
  ASSERT_GT(wf, 0);
  ASSERT_EQ(count("SELECT count(*) FROM jr_jobs WHERE options->>'workflow' = '" +
                  std::to_string(wf) + "'"),
            1002);
  int64_t join = step_job(wf, "join");
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (const char* id : {"r0", "r1", "r2"}) {
    runners.push_back(std::make_unique<RunnerProcess>(runner_args(id), env_));
  }
  // Kill r0 -9 while it runs children, a fifth of the way through.
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_workflow_steps WHERE workflow_id = " +
                     std::to_string(wf) + " AND state = 'completed'") >= 200 &&
               count(
                   "SELECT count(*) FROM jr_jobs WHERE lease_owner = 'r0' AND state = "
                   "'running'") > 0;
      },
      180s))
      << runners[0]->log();
  runners[0]->signal(SIGKILL);
  runners[0]->wait(10s);
  runners[0] = std::make_unique<RunnerProcess>(runner_args("r0b"), env_);
  ASSERT_TRUE(wait_until([&] { return wf_status(wf).value("state", "") == "completed"; }, 300s))
      << runners[1]->log();
  json s = wf_status(wf);
  EXPECT_EQ(s["total"], 1002);
  EXPECT_EQ(s["completed"], 1002);
  EXPECT_EQ(s["pending"], 0);
  EXPECT_TRUE(s["failed_step"].is_null());
  EXPECT_FALSE(s["finished_at"].is_null());
  // Children the killed runner held were finished by the others after its lease ran out.
  int64_t lost = count("SELECT count(*) FROM jr_jobs_done WHERE options->>'workflow' = '" +
                       std::to_string(wf) + "' AND errors @> '[{\"kind\":\"lease_lost\"}]'");
  EXPECT_GT(lost, 0);
  std::printf("kill -9: %lld children finished after a lost lease\n", static_cast<long long>(lost));
  // Nothing lost, the join ran once and saw every child's result.
  auto r = runs();
  EXPECT_EQ(r[join], 1);
  EXPECT_EQ(r.size(), 1002u);
  json seen = json::parse(q("SELECT result FROM jr_jobs_done WHERE id = " + std::to_string(join)));
  EXPECT_EQ(seen["total"], 1000);
  EXPECT_EQ(seen["entries"], 1000);
  EXPECT_EQ(seen["distinct"], 1000);
  EXPECT_EQ(seen["named"], 1000);
  EXPECT_EQ(seen["not_completed"], 0);
  EXPECT_EQ(seen["sum_i"], 999 * 1000 / 2);
  EXPECT_EQ(seen["pages"], 1);  // 1,000 small results fit one page
  EXPECT_EQ(seen["past_end_count"], 0);
  // The runners go on; no second join execution appears.
  std::this_thread::sleep_for(1s);  // no event to wait for: the absence of one
  EXPECT_EQ(runs()[join], 1);
}

// Each bad document: the CLI refuses it with exit 2 naming the problem, before it connects (it
// refuses the same with an unreachable database); jr_workflow_enqueue() refuses it with the
// same message; nothing is inserted.
TEST_F(Workflow, BadDocumentsAreRefusedNamingTheProblemAndNothingIsInserted) {
  struct Case {
    std::string doc;
    std::string says;
  };
  std::vector<Case> cases = {
      {R"([])", "the workflow document must be a JSON object, got array"},
      {R"({"steps": []})", "the workflow has no steps"},
      {R"({})", "'steps' must be an array of steps, got nothing"},
      {R"({"steps": [], "owner": 1})", "unknown key 'owner' in the workflow document"},
      {R"({"steps": [{"name": "a", "kind": "wf_step"}, {"name": "a", "kind": "wf_step"}]})",
       "step name 'a' is used twice (steps[0] and steps[1])"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "depends_on": ["nope"]}]})",
       "step 'a' depends on 'nope', which is not a step of this workflow"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "depends_on": ["c"]},
                     {"name": "b", "kind": "wf_step", "depends_on": ["a"]},
                     {"name": "c", "kind": "wf_step", "depends_on": ["b"]},
                     {"name": "d", "kind": "wf_step", "depends_on": ["c"]}]})",
       "dependency cycle: a -> c -> b -> a (each step depends on the next)"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "depends_on": ["a"]}]})",
       "dependency cycle: a -> a"},
      {R"({"steps": [{"name": "a b", "kind": "wf_step"}]})", "steps[0] needs a 'name'"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "payload": [1]}]})",
       "step 'a': 'payload' must be a JSON object, got array"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "options": {"unique": true}}]})",
       "step 'a': option 'unique' cannot be used in a workflow step"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "options": {"depends_on": [1]}}]})",
       "step 'a': option 'depends_on' is not allowed in a step's options"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "depends_on": "b"}]})",
       "step 'a': 'depends_on' must be an array of step names, got string"},
      {R"({"steps": [{"name": "a", "kind": "wf_step", "colour": "red"}]})",
       "steps[0] has an unknown key 'colour'"},
  };
  std::map<std::string, std::string> offline = {
      {"DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}};
  for (const auto& c : cases) {
    std::string path = file(c.doc);
    auto r = jrtest::run_runner({"enqueue", "--workflow", path}, env_);
    EXPECT_EQ(r.exit_code, 2) << c.doc << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nothing was enqueued"), std::string::npos) << r.err;
    auto off = jrtest::run_runner({"enqueue", "--workflow", path}, offline);
    EXPECT_EQ(off.exit_code, 2) << off.err;
    EXPECT_NE(off.err.find(c.says), std::string::npos) << off.err;
    // The SQL function (for producers) says the same as the checks in C++.
    std::string sql = error_of("SELECT jr_workflow_enqueue(" + sql_text(c.doc) + ")");
    EXPECT_NE(sql.find("jr_workflow_enqueue: " + c.says), std::string::npos) << sql;
    try {
      jr::ops::check_workflow(json::parse(c.doc));
      ADD_FAILURE() << "accepted: " << c.doc;
    } catch (const jr::ops::WorkflowError& e) {
      EXPECT_NE(sql.find(std::string("jr_workflow_enqueue: ") + e.what()), std::string::npos)
          << "C++: " << e.what() << "\nSQL: " << sql;
    }
  }
  // A step whose options the one job-options parser refuses names the step and the option.
  auto r = jrtest::run_runner(
      {"enqueue", "--workflow", file(R"({"steps": [{"name": "ok", "kind": "wf_step"},
                          {"name": "late", "kind": "wf_step", "options": {"priority": "x"}}]})")},
      env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("step 'late': 'priority'"), std::string::npos) << r.err;
  EXPECT_NE(error_of(R"(SELECT jr_workflow_enqueue('{"steps": [{"name": "ok", "kind": "wf_step"},
            {"name": "late", "kind": "wf_step", "options": {"priority": "x"}}]}'))")
                .find("jr_workflow_enqueue: step 'late': jr_enqueue: 'priority'"),
            std::string::npos);
  // A kind and --workflow together, or not valid JSON.
  r = jrtest::run_runner({"enqueue", "wf_step", "--workflow", file("{}")}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--workflow takes no kind"), std::string::npos) << r.err;
  r = jrtest::run_runner({"enqueue", "--workflow", file("{\"steps\": [")}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("is not valid JSON"), std::string::npos) << r.err;
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_workflows"), 0);
}

// a -> b (fails for good) -> c -> join, and a -> e -> join. b's failure cancels c (reason: b)
// and then the join (reason: c); e completes; the workflow is failed with step b. Replaying b
// from the dead letter queue brings c and the join back to waiting: the workflow runs again and
// completes, and the join reads c's and e's results.
TEST_F(Workflow, FailedStepCancelsDependentsWithReasonAndReplayResumes) {
  json doc = {
      {"name", "resume"},
      {"steps",
       {{{"name", "a"}, {"kind", "wf_step"}, {"payload", {{"i", 1}}}},
        {{"name", "b"},
         {"kind", "wf_step"},
         {"payload", {{"i", 2}, {"fail_attempts", 1}}},
         {"options", {{"max_attempts", 1}}},
         {"depends_on", {"a"}}},
        {{"name", "c"}, {"kind", "wf_step"}, {"payload", {{"i", 3}}}, {"depends_on", {"b"}}},
        {{"name", "e"}, {"kind", "wf_step"}, {"payload", {{"i", 5}}}, {"depends_on", {"a"}}},
        {{"name", "join"}, {"kind", "wf_join"}, {"depends_on", {"c", "e"}}}}}};
  int64_t wf = enqueue_workflow(doc);
  ASSERT_GT(wf, 0);
  int64_t b = step_job(wf, "b"), c = step_job(wf, "c"), join = step_job(wf, "join");
  EXPECT_EQ(wf_status(wf)["state"], "running");
  RunnerProcess runner(runner_args("r0", 4), env_);
  ASSERT_TRUE(wait_state(join, "cancelled", 60s)) << runner.log();
  ASSERT_TRUE(wait_state(step_job(wf, "e"), "completed", 60s));
  json s = wf_status(wf);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["failed_step"]["step"], "b");
  EXPECT_EQ(s["failed_step"]["job_id"], b);
  EXPECT_EQ(s["failed_step"]["state"], "discarded");
  EXPECT_NE(s["failed_step"]["error"].value("message", "").find("failing on purpose"),
            std::string::npos)
      << s.dump();
  EXPECT_EQ(s["completed"], 2);  // a and e
  EXPECT_EQ(s["failed"], 1);
  EXPECT_EQ(s["cancelled"], 2);  // c and the join
  EXPECT_EQ(s["pending"], 0);
  // The reasons: each cancelled step names the parent that died.
  json cerr =
      json::parse(q("SELECT errors -> -1 FROM jr_jobs_done WHERE id = " + std::to_string(c)));
  EXPECT_EQ(cerr["kind"], "dependency");
  EXPECT_EQ(cerr["message"], "parent job " + std::to_string(b) + " was dead-lettered or cancelled");
  json jerr =
      json::parse(q("SELECT errors -> -1 FROM jr_jobs_done WHERE id = " + std::to_string(join)));
  EXPECT_EQ(jerr["message"], "parent job " + std::to_string(c) + " was dead-lettered or cancelled");
  auto human = jrtest::run_runner({"workflow", "status", std::to_string(wf)}, env_);
  EXPECT_EQ(human.exit_code, 0);
  EXPECT_NE(human.out.find("state:       failed"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("failed step: b (job " + std::to_string(b) + ", discarded)"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("cancelled:   c (job " + std::to_string(c) + ")"), std::string::npos)
      << human.out;
  EXPECT_EQ(runs()[c], 0);
  EXPECT_EQ(runs()[join], 0);

  // Replay the dead letter: b runs again (its second attempt succeeds), c and the join follow.
  auto replay = jrtest::run_runner({"dlq", "replay", "--kind", "wf_step"}, env_);
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  s = wf_status(wf);
  EXPECT_EQ(s["failed"], 0) << s.dump();
  EXPECT_EQ(s["cancelled"], 0) << s.dump();
  EXPECT_TRUE(s["failed_step"].is_null());
  EXPECT_NE(s["state"], "failed");  // running (or already completed on a fast machine)
  ASSERT_TRUE(wait_until([&] { return wf_status(wf).value("state", "") == "completed"; }, 60s))
      << runner.log();
  EXPECT_EQ(runs()[b], 2);
  EXPECT_EQ(runs()[c], 1);
  EXPECT_EQ(runs()[join], 1);
  json seen = json::parse(q("SELECT result FROM jr_jobs_done WHERE id = " + std::to_string(join)));
  EXPECT_EQ(seen["total"], 2);
  EXPECT_EQ(seen["sum_i"], 3 + 5);
  EXPECT_EQ(seen["named"], 2);
  // Parents come in ascending job id (steps are inserted parents first: e before c here).
  EXPECT_EQ(seen["first_step"], step_job(wf, "c") < step_job(wf, "e") ? "c" : "e");
}

// The API: a workflow enqueued by POST /api/v1/workflows (a bad one refused with 400 and the
// message), its status, and its join's parent results in pages bounded by max_bytes.
TEST_F(Workflow, ApiEnqueuesShowsStatusAndPagesParentResults) {
  auto env = env_;
  env["RUNNER_API_TOKEN"] = "t0ken-for-tests";
  RunnerProcess runner({"--config", config_, "--plugins", plugins_, "--http", "127.0.0.1:0",
                        "--poll-interval", "0.1"},
                       env);
  httplib::Headers auth = {{"Authorization", "Bearer t0ken-for-tests"}, {"X-Jobrunner-CSRF", "1"}};
  int port = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        std::string log = runner.log();
        size_t at = log.find("\"msg\":\"http server listening\"");
        if (at == std::string::npos) return false;
        at = log.find("\"port\":", at);
        if (at != std::string::npos) port = std::atoi(log.c_str() + at + 7);
        return port > 0;
      },
      30s))
      << runner.log();
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(10, 0);
  auto bad = http.Post("/api/v1/workflows", auth,
                       R"({"steps": [{"name": "a", "kind": "wf_step", "depends_on": ["a"]}]})",
                       "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("dependency cycle: a -> a"), std::string::npos) << bad->body;
  EXPECT_EQ(count("SELECT count(*) FROM jr_workflows"), 0);

  // Writes need the token, as every state-changing endpoint.
  EXPECT_EQ(http.Post("/api/v1/workflows", fan_out(2, 0).dump(), "application/json")->status, 401);
  auto res = http.Post("/api/v1/workflows", auth, fan_out(40, 0).dump(), "application/json");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  json made = json::parse(res->body);
  int64_t wf = made["workflow_id"];
  EXPECT_EQ(made["steps"].size(), 42u);
  EXPECT_EQ(made["steps"][41]["step"], "join");
  int64_t join = made["steps"][41]["job_id"];
  ASSERT_TRUE(wait_until(
      [&] {
        auto g = http.Get("/api/v1/workflows/" + std::to_string(wf));
        return g && g->status == 200 && json::parse(g->body).value("state", "") == "completed";
      },
      60s))
      << runner.log();
  auto g = http.Get("/api/v1/workflows/" + std::to_string(wf));
  json st = json::parse(g->body);
  EXPECT_EQ(st["completed"], 42);
  EXPECT_EQ(st["steps"].size(), 42u);
  EXPECT_EQ(http.Get("/api/v1/workflows/999999")->status, 404);
  // All 40 in one page; then pages of at most 1,024 bytes: every parent exactly once, in order.
  json all =
      json::parse(http.Get("/api/v1/jobs/" + std::to_string(join) + "/parent_results")->body);
  EXPECT_EQ(all["total"], 40);
  EXPECT_EQ(all["count"], 40);
  EXPECT_TRUE(all["next_offset"].is_null());
  std::vector<int64_t> ids;
  int pages = 0;
  json offset = 0;
  while (!offset.is_null()) {
    auto p = http.Get("/api/v1/jobs/" + std::to_string(join) +
                      "/parent_results?max_bytes=1024&offset=" + offset.dump());
    ASSERT_TRUE(p);
    ASSERT_EQ(p->status, 200) << p->body;
    EXPECT_LE(p->body.size(), 1024u);
    json page = json::parse(p->body);
    ASSERT_GT(page["count"].get<int>(), 0);
    for (const auto& e : page["parents"]) ids.push_back(e["job_id"]);
    offset = page["next_offset"];
    ++pages;
  }
  EXPECT_GT(pages, 2);
  ASSERT_EQ(ids.size(), 40u);
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(ids[i], all["parents"][i]["job_id"]);
  EXPECT_EQ(
      http.Get("/api/v1/jobs/" + std::to_string(join) + "/parent_results?max_bytes=10")->status,
      400);
  EXPECT_EQ(http.Get("/api/v1/jobs/999999/parent_results")->status, 404);
  // A parent whose result alone exceeds the page comes without it, marked.
  PgCluster::exec(url_,
                  "UPDATE jr_jobs_done SET result = jsonb_build_object('big', repeat('x', "
                  "5000)) WHERE id = " +
                      all["parents"][0]["job_id"].dump());
  json first = json::parse(
      http.Get("/api/v1/jobs/" + std::to_string(join) + "/parent_results?max_bytes=2048")->body);
  EXPECT_EQ(first["parents"][0]["result_omitted"], true);
  EXPECT_TRUE(first["parents"][0]["result"].is_null());
  EXPECT_GT(first["parents"][0]["result_bytes"].get<int>(), 5000);
}

}  // namespace
