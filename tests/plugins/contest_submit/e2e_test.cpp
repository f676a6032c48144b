// End-to-end: the `contest-submit` CLI (direct-submission path, same library as the plugin) and
// the real `runner` binary serving per-contest queues.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "contest_fixture.hpp"
#include "harness.hpp"
#include "plugin_host.hpp"

namespace fs = std::filesystem;

namespace {

// Runs the contest-submit CLI with DATABASE_URL=url; returns exit code, stdout, stderr.
jrtest::RunResult run_cli(const std::vector<std::string>& args, const std::string& url) {
  jrtest::TempDir dir;
  std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  pid_t pid = fork();
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(out, 1);
    dup2(err, 2);
    setenv("DATABASE_URL", url.c_str(), 1);
    std::vector<char*> argv;
    std::string path = CONTEST_SUBMIT_CLI;
    argv.push_back(path.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  jrtest::RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::stringstream o, e;
  o << std::ifstream(out_path).rdbuf();
  e << std::ifstream(err_path).rdbuf();
  r.out = o.str();
  r.err = e.str();
  return r;
}

class ContestE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = jrtest::PgCluster::get().create_database("cse2e");
    env_ = {{"DATABASE_URL", url_}};
    // The plugin's own role and schema (what a runner hands it): the CLI, the plugin and the
    // test's queries of the contest tables all use it.
    plugin_url_ = jrtest::plugin_database(url_, "contest_submit").url;
  }
  std::string q(const std::string& sql) { return jrtest::PgCluster::query_one(plugin_url_, sql); }
  std::string url_;         // the runner's role: the queue
  std::string plugin_url_;  // the plugin's role: the contest tables
  std::map<std::string, std::string> env_;
};

TEST_F(ContestE2E, CliJudgesWithTheSameCodeAndThePluginSeesItAsJudged) {
  auto schema = run_cli({"schema"}, plugin_url_);
  ASSERT_EQ(schema.exit_code, 0) << schema.err;
  cstest::create_demo_contests(plugin_url_);

  auto wa = run_cli({"judge", "--submission-id", "cli-1", "--contest", "1", "--team", "t1",
                     "--problem", "A", "--answer", "41", "--submitted-at", "2024-05-01T10:05:00Z"},
                    plugin_url_);
  ASSERT_EQ(wa.exit_code, 0) << wa.err;
  EXPECT_EQ(nlohmann::json::parse(wa.out)["verdict"], "wrong_answer");

  nlohmann::json ac_payload = {
      {"submission_id", "cli-2"}, {"contest_id", 1}, {"team_id", "t1"},
      {"problem_id", "A"},        {"answer", "42"},  {"submitted_at", "2024-05-01T10:30:00Z"}};
  auto ac = run_cli({"judge", "--payload", ac_payload.dump()}, plugin_url_);
  ASSERT_EQ(ac.exit_code, 0) << ac.err;
  nlohmann::json r = nlohmann::json::parse(ac.out);
  EXPECT_EQ(r["verdict"], "accepted");
  EXPECT_EQ(r["standing"]["penalty"], 50);

  // The same submission arriving as a job afterwards is a redelivery: counted once.
  jrtest::PluginHost host(cstest::plugin_so(), nlohmann::json{{"database_url", plugin_url_}});
  jrtest::JobOutcome o = host.run("contest_submit", ac_payload.dump());
  ASSERT_EQ(o.status, JR_OK) << o.error;
  EXPECT_EQ(nlohmann::json::parse(o.result)["redelivered"], true);
  auto again = run_cli({"judge", "--payload", ac_payload.dump()}, plugin_url_);
  EXPECT_EQ(nlohmann::json::parse(again.out)["redelivered"], true);
  EXPECT_EQ(cstest::read_standing(plugin_url_, 1, "t1"),
            (cstest::Standing{1, 50, 1, "2024-05-01 10:30:00"}));

  auto table = run_cli({"standings", "--contest", "1"}, plugin_url_);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  nlohmann::json rows = nlohmann::json::parse(table.out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["team_id"], "t1");
  EXPECT_EQ(rows[0]["rank"], 1);
}

TEST_F(ContestE2E, CliRejectsAMalformedSubmissionNamingTheField) {
  ASSERT_EQ(run_cli({"schema"}, plugin_url_).exit_code, 0);
  auto r =
      run_cli({"judge", "--submission-id", "x", "--contest", "1", "--team", "t1", "--problem", "A"},
              plugin_url_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("missing field 'answer'"), std::string::npos) << r.err;
  auto t =
      run_cli({"judge", "--payload", R"({"submission_id":"x","contest_id":"one"})"}, plugin_url_);
  EXPECT_EQ(t.exit_code, 2);
  EXPECT_NE(t.err.find("field 'contest_id' must be an integer, got string"), std::string::npos)
      << t.err;
  EXPECT_EQ(q("SELECT count(*) FROM submissions"), "0");
}

TEST_F(ContestE2E, RunnerServesPerContestQueuesAndDeadLettersMalformedSubmissions) {
  ASSERT_EQ(jrtest::run_runner({"migrate"}, env_).exit_code, 0);
  ASSERT_EQ(run_cli({"schema"}, plugin_url_).exit_code, 0);
  cstest::create_demo_contests(plugin_url_);
  jrtest::TempDir dir;
  fs::copy_file(cstest::plugin_so(), dir.path() + "/libjr_contest_submit.so");

  auto enqueue = [&](const std::string& queue, const nlohmann::json& payload) {
    auto r = jrtest::run_runner(
        {"enqueue", "contest_submit", "--queue", queue, "--payload", payload.dump()}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::stoll(r.out);
  };
  auto sub = [](const std::string& id, int64_t contest, const std::string& team,
                const std::string& problem, const std::string& answer, const std::string& at) {
    return nlohmann::json{{"submission_id", id},   {"contest_id", contest}, {"team_id", team},
                          {"problem_id", problem}, {"answer", answer},      {"submitted_at", at}};
  };
  std::vector<int64_t> ids;
  ids.push_back(
      enqueue("contest:submissions:1", sub("e1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z")));
  ids.push_back(
      enqueue("contest:submissions:1", sub("e2", 1, "t1", "A", "42", "2024-05-01T10:30:00Z")));
  ids.push_back(
      enqueue("contest:submissions:1", sub("e2", 1, "t1", "A", "42", "2024-05-01T10:30:00Z")));
  ids.push_back(
      enqueue("contest:submissions:2", sub("e3", 2, "t9", "Y", "2.5", "2024-06-01T12:01:00Z")));
  // Misrouted by its producer: still judged for its own contest, with a warning.
  ids.push_back(
      enqueue("contest:submissions:2", sub("e6", 1, "t2", "A", "42", "2024-05-01T11:00:00Z")));
  int64_t bad = enqueue("contest:submissions:2", nlohmann::json{{"submission_id", "e4"}});
  int64_t elsewhere = enqueue("contest:submissions:3",
                              sub("e5", 1, "t1", "B", "hello world", "2024-05-01T10:40:00Z"));

  jrtest::RunnerProcess runner(
      {"--plugins", dir.path(), "--queues", "contest:submissions:1,contest:submissions:2",
       "--concurrency", "4"},
      env_);
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return jrtest::PgCluster::query_one(url_, "SELECT count(*) FROM jr_jobs_done") == "6";
      },
      std::chrono::seconds(30)))
      << runner.log();
  auto status = [&](int64_t id) {
    auto r = jrtest::run_runner({"status", std::to_string(id), "--json"}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  for (int64_t id : ids) EXPECT_EQ(status(id)["state"], "completed") << status(id).dump();
  nlohmann::json dead = status(bad);
  EXPECT_EQ(dead["state"], "discarded");
  EXPECT_NE(dead.dump().find("invalid submission: missing field 'contest_id'"), std::string::npos)
      << dead.dump();
  // Queue contest:submissions:3 is not served by this runner.
  EXPECT_EQ(status(elsewhere)["state"], "available");

  EXPECT_EQ(cstest::read_standing(plugin_url_, 1, "t1"),
            (cstest::Standing{1, 50, 1, "2024-05-01 10:30:00"}));
  EXPECT_EQ(cstest::read_standing(plugin_url_, 2, "t9"),
            (cstest::Standing{1, 0, 250, "2024-06-01 12:01:00"}));
  EXPECT_EQ(cstest::read_standing(plugin_url_, 1, "t2"),
            (cstest::Standing{1, 60, 1, "2024-05-01 11:00:00"}));
  EXPECT_NE(runner.log().find("submission e6 of contest 1 arrived on queue contest:submissions:2"),
            std::string::npos)
      << runner.log();
  EXPECT_EQ(q("SELECT count(*) FROM submissions"), "4");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
}

}  // namespace
