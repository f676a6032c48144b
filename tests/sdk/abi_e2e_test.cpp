// End to end through the real `runner` on PostgreSQL: plugins built by clang (C++ and C), by
// g++, against the frozen v1.0 SDK and against a future minor version, served together by one
// runner, sandboxed (each in its jr-worker processes) and in-process. Their kinds' defaults
// from the descriptors decide the queue, and every job reaches the state its plugin chose.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "harness.hpp"
#include "runner_fixture.hpp"

namespace {

class SdkAbiE2E : public jrtest::RunnerFixture, public ::testing::WithParamInterface<const char*> {
 protected:
  std::vector<std::string> abi_plugins() {
    std::vector<std::string> out;
    for (const char* n : {"abi_probe_clang", "abi_probe_gcc", "c_plugin_clang", "v1_0", "future"}) {
      out.push_back(std::string(JR_SDK_ABI_DIR) + "/libjr_t_" + n + ".so");
    }
    return out;
  }
};

// In sandboxed jr-worker processes and in-process (--isolation sandbox | none).
TEST_P(SdkAbiE2E, MixedCompilerAndVersionPluginsServeTheirJobs) {
  std::string plugins = plugin_dir_with(abi_plugins());
  jrtest::RunnerProcess runner(
      {"--plugins", plugins, "--concurrency", "4", "--isolation", GetParam()}, env_);
  // Kind defaults are registered when the runner starts; enqueue afterwards so they apply.
  ASSERT_TRUE(
      jrtest::wait_until([&] { return runner.log().find("runner started") != std::string::npos; },
                         std::chrono::seconds(60)))
      << runner.log();
  std::string loaded = std::string(GetParam()) == "none" ? "plugin loaded in-process"
                                                         : "plugin loaded in the sandbox";
  size_t n = 0;
  for (size_t at = runner.log().find(loaded); at != std::string::npos;
       at = runner.log().find(loaded, at + 1)) {
    ++n;
  }
  EXPECT_EQ(n, abi_plugins().size()) << runner.log();

  struct Case {
    std::string kind, payload, state, queue;
  };
  std::vector<Case> cases = {
      {"abi_probe_clang", R"({"op":"ok","n":1})", "completed", "abi_q"},
      {"abi_probe_gcc", R"({"op":"ok","n":2})", "completed", "abi_q"},
      {"abi_probe_clang", R"({"op":"permanent"})", "discarded", "abi_q"},
      {"c_echo", R"({"n":3})", "completed", "c_queue"},
      {"v1_0_echo", R"({"n":4})", "completed", "v1_0_q"},
      {"v1_0_echo", R"({"fail":1})", "discarded", "v1_0_q"},
      {"future_echo", R"({"n":5})", "completed", "future_q"},
  };
  std::vector<int64_t> ids;
  for (const auto& c : cases) ids.push_back(enqueue({"enqueue", c.kind, "--payload", c.payload}));
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(wait_state(ids[i], cases[i].state, std::chrono::seconds(60)))
        << cases[i].kind << " " << cases[i].payload << ": " << status(ids[i]).dump() << "\n"
        << runner.log();
    nlohmann::json doc = status(ids[i]);
    EXPECT_EQ(doc["queue"], cases[i].queue) << doc.dump();
  }
  auto result = [&](size_t i) { return status(ids[i])["result"]; };
  EXPECT_EQ(result(0)["compiler"], "clang");
  EXPECT_EQ(result(0)["caught"], true);
  EXPECT_EQ(result(1)["compiler"], "gcc");
  EXPECT_EQ(result(3), nlohmann::json({{"n", 3}}));
  EXPECT_EQ(result(4)["plugin_minor"], 0);
  EXPECT_EQ(result(4)["payload"]["n"], 4);
  EXPECT_EQ(result(6)["plugin_minor"], 7);
  EXPECT_EQ(result(6)["host_has_heartbeat"], false);
  EXPECT_NE(status(ids[2]).dump().find("probe: permanent on purpose"), std::string::npos);
  EXPECT_NE(status(ids[5]).dump().find("v1.0 plugin refuses"), std::string::npos);

  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
}

INSTANTIATE_TEST_SUITE_P(Isolation, SdkAbiE2E, ::testing::Values("sandbox", "none"));

}  // namespace
