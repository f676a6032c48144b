// End-to-end tests of the real `runner` binary against a real PostgreSQL.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "harness.hpp"
#include "runner_fixture.hpp"

namespace fs = std::filesystem;
using jrtest::PgCluster;
using jrtest::run_runner;
using jrtest::RunnerProcess;

namespace {

using RunnerE2E = jrtest::RunnerFixture;
using jrtest::echo_so;
using jrtest::test_so;

TEST_F(RunnerE2E, TenThousandJobsTwoRunnersEachExecutedExactlyOnce) {
  const int n = 10000;
  std::string record = dir_.path() + "/executions.log";
  std::string cfg = dir_.path() + "/runner.toml";
  jrtest::shared_file(record);
  std::ofstream(cfg) << "[plugins.record]\nrecord_file = \"" << record
                     << "\"\n[plugins.record.sandbox]\nwritable_config_keys = [\"record_file\"]\n";
  std::string payloads = dir_.path() + "/jobs.jsonl";
  {
    std::ofstream out(payloads);
    for (int i = 0; i < n; ++i) out << "{\"i\":" << i << "}\n";
  }
  std::string plugins = plugin_dir_with({test_so("record", "record")});
  std::vector<std::string> args = {"--plugins", plugins, "--config", cfg, "--concurrency", "8"};
  RunnerProcess a(args, env_), b(args, env_);
  // The jobs come once both runners serve the plugin (in the sandbox, or in-process where the
  // suite runs without one, as under ASan): "both took part" (below) is about sharing a queue,
  // not about which start was faster (under CI load one runner drained all 10,000 before the
  // other's sandbox was up).
  for (RunnerProcess* p : {&a, &b}) {
    ASSERT_TRUE(
        jrtest::wait_until([&] { return p->log().find("\"plugin loaded in") != std::string::npos; },
                           std::chrono::seconds(60)))
        << p->log();
  }
  auto r = run_runner({"enqueue", "record", "--payload-file", payloads}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<int64_t> ids;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) ids.insert(std::stoll(line));
  ASSERT_EQ(ids.size(), static_cast<size_t>(n));
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return q("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'") ==
               std::to_string(n);
      },
      std::chrono::seconds(180)))
      << "completed: " << q("SELECT count(*) FROM jr_jobs_done") << "\n"
      << a.log();
  a.signal(SIGTERM);
  b.signal(SIGTERM);
  EXPECT_EQ(a.wait(std::chrono::seconds(30)), 0) << a.log();
  EXPECT_EQ(b.wait(std::chrono::seconds(30)), 0) << b.log();

  std::map<int64_t, int> executions;
  std::ifstream rec(record);
  for (std::string line; std::getline(rec, line);) ++executions[std::stoll(line)];
  int duplicates = 0, missing = 0;
  for (int64_t id : ids) {
    auto it = executions.find(id);
    if (it == executions.end()) {
      ++missing;
    } else if (it->second != 1) {
      ++duplicates;
    }
  }
  EXPECT_EQ(executions.size(), static_cast<size_t>(n));
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(duplicates, 0);
  // Both runners took part.
  EXPECT_EQ(q("SELECT count(DISTINCT lease_owner) FROM jr_jobs"), "0");
  EXPECT_NE(a.log().find("runner stopped"), std::string::npos);
  auto worked = [](const std::string& log) {
    std::smatch m;
    std::regex re(R"x("completed":(\d+))x");
    return std::regex_search(log, m, re) ? std::stoi(m[1]) : -1;
  };
  EXPECT_GT(worked(a.log()), 0) << a.log();
  EXPECT_GT(worked(b.log()), 0) << b.log();
  EXPECT_EQ(worked(a.log()) + worked(b.log()), n);
}

TEST_F(RunnerE2E, MalformedPayloadIsRefusedAndNothingInserted) {
  auto r = run_runner({"enqueue", "echo", "--payload", "{\"a\": 1,"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--payload is not valid JSON"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nothing was enqueued"), std::string::npos) << r.err;
  std::string file = dir_.path() + "/bad.jsonl";
  std::ofstream(file) << "{\"ok\":1}\n{\"ok\":2}\nnot json\n";
  r = run_runner({"enqueue", "echo", "--payload-file", file}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(file + ":3"), std::string::npos) << r.err;
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs_all"), "0");
}

// A payload file saved with a UTF-8 byte order mark: JSON parsers skip it, PostgreSQL's jsonb
// does not, so the bulk path must strip it (else the whole COPY fails).
TEST_F(RunnerE2E, PayloadFileWithAByteOrderMarkIsEnqueued) {
  std::string file = dir_.path() + "/bom.jsonl";
  std::ofstream(file) << "\xEF\xBB\xBF{\"a\":1}\n{\"b\":2}\n";
  auto r = run_runner({"enqueue", "echo", "--payload-file", file}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs_all"), "2");
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs_all WHERE payload = '{\"a\":1}'::jsonb"), "1");
}

TEST_F(RunnerE2E, JobOfAKindNobodyHandlesWaitsAndStatusSaysWhy) {
  int64_t orphan = enqueue({"enqueue", "nobody_handles_this", "--payload", "{}"});
  int64_t echo = enqueue({"enqueue", "echo", "--payload", R"({"x":1})"});
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()})}, env_);
  ASSERT_TRUE(jrtest::wait_until([&] { return status(echo)["state"] == "completed"; },
                                 std::chrono::seconds(30)))
      << runner.log();
  auto s = status(orphan);
  EXPECT_EQ(s["state"], "available");
  EXPECT_NE(s.value("note", "")
                .find("no running runner has a loaded plugin that handles kind "
                      "'nobody_handles_this'"),
            std::string::npos)
      << s.dump();
  auto human = run_runner({"status", std::to_string(orphan)}, env_);
  EXPECT_NE(human.out.find("nobody_handles_this"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("no running runner"), std::string::npos) << human.out;
  // A served kind has no such note.
  EXPECT_FALSE(status(echo).contains("note"));
}

TEST_F(RunnerE2E, UnreachableDatabaseIsRetriedWithBackoffNotACrash) {
  std::map<std::string, std::string> env = {
      {"DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:1/jobs?connect_timeout=1"}};
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()})}, env);
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        std::string log = runner.log();
        size_t first = log.find("database unreachable");
        return first != std::string::npos &&
               log.find("database unreachable", first + 1) != std::string::npos &&
               log.find("database unreachable", log.find("database unreachable", first + 1) + 1) !=
                   std::string::npos;
      },
      std::chrono::seconds(20)))
      << runner.log();
  EXPECT_TRUE(runner.alive());
  std::string log = runner.log();
  EXPECT_NE(log.find("127.0.0.1:1"), std::string::npos) << log;
  EXPECT_EQ(log.find("hunter2"), std::string::npos) << "password leaked into the log";
  // The retry delay grows.
  std::regex re(R"x("retry_in_ms":(\d+))x");
  std::vector<int> delays;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re); it != std::sregex_iterator();
       ++it) {
    delays.push_back(std::stoi((*it)[1]));
  }
  ASSERT_GE(delays.size(), 3u) << log;
  EXPECT_LT(delays.front(), delays.back());
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(10)), 0) << runner.log();
}

TEST_F(RunnerE2E, ThrowingHandlerFailsTheJobWithItsMessageAndTheRunnerLivesOn) {
  int64_t bad = enqueue({"enqueue", "thrower", "--payload", "{}"});
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so(), test_so("thrower", "thrower")})},
                       env_);
  ASSERT_TRUE(jrtest::wait_until([&] { return status(bad)["state"] == "discarded"; },
                                 std::chrono::seconds(30)))
      << runner.log();
  auto s = status(bad);
  ASSERT_EQ(s["errors"].size(), 2u) << s.dump();  // the kind allows 2 attempts
  EXPECT_NE(s["errors"][0]["message"].get<std::string>().find("boom from handler"),
            std::string::npos);
  int64_t ok = enqueue({"enqueue", "echo", "--payload", R"({"after":"boom"})"});
  ASSERT_TRUE(jrtest::wait_until([&] { return status(ok)["state"] == "completed"; },
                                 std::chrono::seconds(30)));
  EXPECT_EQ(status(ok)["result"]["after"], "boom");
  EXPECT_TRUE(runner.alive());
  EXPECT_NE(runner.log().find("\"job_id\":" + std::to_string(bad)), std::string::npos);
}

TEST_F(RunnerE2E, StartUpRefusesBadPluginsNamingTheFile) {
  auto r = run_runner({"--plugins", jrtest::test_plugin_dir() + "/dup"}, env_);
  // Both claimants of the contested kind are refused; with no plugin left the runner exits 1.
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("job kind 'shared_kind' is also declared by"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no plugin left to serve"), std::string::npos) << r.err;
}

// Issue 17: a plugin whose init fails is retried in the background, never fatal; the other
// plugins are served meanwhile. (The sandboxed case, with readiness and recovery, is in
// tests/host/robust_test.cpp.)
TEST_F(RunnerE2E, InProcessInitFailureIsRetriedNotFatal) {
  std::string plugins = plugin_dir_with({test_so("init_fails", "init_fails"), jrtest::echo_so()});
  RunnerProcess runner({"--plugins", plugins, "--isolation", "none"}, env_);
  int64_t waiting = enqueue({"enqueue", "init_fails_kind", "--payload", "{}"});
  int64_t echo = enqueue({"enqueue", "echo", "--payload", R"({"x":1})"});
  ASSERT_TRUE(wait_state(echo, "completed", std::chrono::seconds(30))) << runner.log();
  auto retries = [&] {
    size_t n = 0;
    std::string log = runner.log();
    for (size_t at = log.find("plugin failed to start; retrying"); at != std::string::npos;
         at = log.find("plugin failed to start; retrying", at + 1)) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(jrtest::wait_until([&] { return retries() >= 3; }, std::chrono::seconds(30)))
      << runner.log();
  std::string log = runner.log();
  EXPECT_NE(log.find("libjr_t_init_fails.so: init failed: cannot reach the license server"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("\"plugin\":\"init_fails\""), std::string::npos) << log;
  EXPECT_TRUE(runner.alive());
  EXPECT_EQ(status(waiting)["state"], "available");  // never claimed: the plugin is not ready
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(20)), 0) << runner.log();
}

TEST_F(RunnerE2E, PlainCPluginRunsThroughTheRunnerWithItsDefaultQueue) {
  std::string plugins = plugin_dir_with({test_so("c", "c_plugin")});
  RunnerProcess runner({"--plugins", plugins}, env_);
  ASSERT_TRUE(jrtest::wait_until([&] { return q("SELECT count(*) FROM jr_kinds") == "1"; },
                                 std::chrono::seconds(20)));
  int64_t id = enqueue({"enqueue", "c_echo", "--payload", R"({"from":"c"})"});
  ASSERT_TRUE(jrtest::wait_until([&] { return status(id)["state"] == "completed"; },
                                 std::chrono::seconds(30)))
      << runner.log();
  auto s = status(id);
  EXPECT_EQ(s["queue"], "c_queue");
  EXPECT_EQ(s["result"]["from"], "c");
  EXPECT_EQ(s["progress"]["step"], "halfway");
}

TEST_F(RunnerE2E, JobsLsJsonIsAnArrayOfJobsWithIds) {
  enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "q1", "--priority", "3"});
  enqueue({"enqueue", "echo", "--payload", "{}", "--delay", "1h"});
  auto r = run_runner({"jobs", "ls", "--json"}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto arr = nlohmann::json::parse(r.out);
  ASSERT_EQ(arr.size(), 2u);
  EXPECT_TRUE(arr[0].contains("id"));
  EXPECT_EQ(arr[0]["queue"], "q1");
  EXPECT_EQ(arr[0]["priority"], 3);
  EXPECT_EQ(arr[1]["state"], "scheduled");
  r = run_runner({"jobs", "ls", "--state", "scheduled", "--json"}, env_);
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 1u);
  r = run_runner({"status", "999999"}, env_);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("no job with id 999999"), std::string::npos);
}

TEST_F(RunnerE2E, BadConfigStopsTheStartNamingFileLineAndKey) {
  std::string cfg = dir_.path() + "/bad.toml";
  std::ofstream(cfg) << "[worker]\nconcurrency = 4\nlease_secnds = 10\n";
  auto r = run_runner({"--config", cfg, "--plugins", plugin_dir_with({echo_so()})}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(cfg + ":3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("worker.lease_secnds"), std::string::npos) << r.err;
}

}  // namespace
