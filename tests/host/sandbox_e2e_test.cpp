// The sandbox through the real runner: plugins described and run in confined worker processes;
// a crashing job fails with its own error kind while healthy jobs keep completing.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "runner_fixture.hpp"

namespace {

using jrtest::echo_so;
using jrtest::RunnerProcess;
using jrtest::wait_until;
using namespace std::chrono_literals;

class SandboxE2E : public jrtest::RunnerFixture {};

TEST_F(SandboxE2E, CrashesAndTimeoutsAreClassifiedWhileHealthyJobsComplete) {
  int64_t segv =
      enqueue({"enqueue", "echo", "--payload", R"({"crash":"segv"})", "--max-attempts", "1"});
  int64_t abrt =
      enqueue({"enqueue", "echo", "--payload", R"({"crash":"abort"})", "--max-attempts", "1"});
  int64_t slow = enqueue({"enqueue", "echo", "--payload", R"({"sleep_ms":60000})", "--timeout",
                          "500ms", "--max-attempts", "1"});
  auto healthy = enqueue_many("echo", 200, R"({"ok":true})");
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--isolation", "sandbox", "--concurrency", "4"},
      env_);
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'") == 200; },
      60s))
      << runner.log();
  ASSERT_TRUE(wait_state(segv, "discarded", 30s)) << runner.log();
  ASSERT_TRUE(wait_state(abrt, "discarded", 30s));
  ASSERT_TRUE(wait_state(slow, "discarded", 30s));
  auto kind = [&](int64_t id) { return status(id)["errors"][0]["kind"].get<std::string>(); };
  EXPECT_EQ(kind(segv), "crash");
  EXPECT_NE(status(segv)["errors"][0]["message"].get<std::string>().find("SIGSEGV"),
            std::string::npos)
      << status(segv).dump();
  EXPECT_EQ(kind(abrt), "crash");
  EXPECT_EQ(kind(slow), "timeout");
  EXPECT_TRUE(runner.alive());
  EXPECT_NE(runner.log().find("plugin loaded in the sandbox"), std::string::npos);
  EXPECT_EQ(status(healthy[0])["result"]["ok"], true);
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(20s), 0) << runner.log();
}

// A plugin names its failures (jr.error_kind.v1) the same way in-process and sandboxed; a name
// the host reserves (its own verdicts), or one that is not a short identifier, is refused and
// logged, and the attempt keeps the generic kind.
TEST_F(SandboxE2E, PluginErrorKindsAreRecordedAndReservedOnesRefused) {
  for (const char* isolation : {"sandbox", "none"}) {
    SCOPED_TRACE(isolation);
    std::string q = std::string("kinds_") + isolation;
    auto job = [&](const std::string& payload) {
      return enqueue(
          {"enqueue", "echo", "--queue", q, "--max-attempts", "1", "--payload", payload});
    };
    int64_t named = job(R"({"fail":"retryable","fail_kind":"dns_timeout"})");
    int64_t named_perm = job(R"({"fail":"permanent","fail_kind":"invalid_domain"})");
    int64_t reserved = job(R"({"fail":"retryable","fail_kind":"timeout"})");
    int64_t reserved_perm = job(R"({"fail":"permanent","fail_kind":"oom"})");
    int64_t malformed = job(R"({"fail":"retryable","fail_kind":"bad-kind"})");
    int64_t too_long = job(R"({"fail":"retryable","fail_kind":")" + std::string(33, 'a') + R"("})");
    int64_t plain = job(R"({"fail":"retryable"})");
    RunnerProcess runner(
        {"--plugins", plugin_dir_with({echo_so()}), "--isolation", isolation, "--queues", q}, env_);
    for (int64_t id : {named, named_perm, reserved, reserved_perm, malformed, too_long, plain}) {
      ASSERT_TRUE(wait_state(id, "discarded", 30s)) << id << "\n" << runner.log();
    }
    auto kind = [&](int64_t id) { return status(id)["errors"][0]["kind"].get<std::string>(); };
    EXPECT_EQ(kind(named), "dns_timeout");
    EXPECT_EQ(kind(named_perm), "invalid_domain");
    EXPECT_EQ(kind(reserved), "error");
    EXPECT_EQ(kind(reserved_perm), "permanent");
    EXPECT_EQ(kind(malformed), "error");
    EXPECT_EQ(kind(too_long), "error");
    EXPECT_EQ(kind(plain), "error");
    EXPECT_NE(runner.log().find("is reserved for the host"), std::string::npos) << runner.log();
    EXPECT_NE(runner.log().find("may hold only a-z"), std::string::npos);
    EXPECT_NE(runner.log().find("must be 1 to 32 bytes, got 33"), std::string::npos);
    runner.signal(SIGTERM);
    EXPECT_EQ(runner.wait(20s), 0) << runner.log();
  }
}

TEST_F(SandboxE2E, PluginsCheckPrintsTheDescriptorPolicyAndLayers) {
  auto r = jrtest::run_runner({"plugins", "check", echo_so(), "--json"}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.dump().find("\"echo\"") != std::string::npos, true) << r.out;
  EXPECT_NE(r.out.find("seccomp"), std::string::npos) << r.out;
  // The uid it reports is the one its confined describe ran as: the plugin's own, not nobody's.
  if (geteuid() == 0) {
    ASSERT_TRUE(j["layers"]["user"].is_object()) << r.out;
    EXPECT_EQ(j["uid"]["uid"], j["layers"]["user"]["uid"]) << r.out;
    EXPECT_NE(j["uid"]["uid"], 65534) << r.out;
    EXPECT_TRUE(j["layers"].contains("cgroup")) << r.out;
  }
}

}  // namespace
