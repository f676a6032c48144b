// Red team for workflows (issue 23): jr.parent_results.v1 abused by a sandboxed plugin
// (tests/testplugins/hostile/parent_results.c) beside the healthy echo plugin, through the real
// runner (RedTeamFixture checks its invariants): forged request frames, calls past the budget, a
// NULL callback. Its subject is the sandbox's edge (labelled SANDBOX_SUBJECT): in-process, the
// forged frames would go to whatever fd 3 is in the runner.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "redteam.hpp"

namespace {

using nlohmann::json;
using namespace std::chrono_literals;

class WorkflowRedTeam : public jrtest::RedTeamFixture {
 protected:
  int64_t hostile(const std::string& arg) {
    return enqueue(
        {"enqueue", "hostile_parents", "--payload", arg_payload(arg), "--max-attempts", "1"});
  }
};

// The worker's request frame is fixed-size and checked to the byte by the host; a forged one
// (cut, or with bytes after its fields) ends the exchange as a protocol error and the worker is
// replaced; calls past the budget fail; a NULL callback is refused. Healthy jobs go on.
TEST_F(WorkflowRedTeam, ParentResultsAbuseFromTheSandboxIsBounded) {
  start_runner({jrtest::test_plugin_dir() + "/hostile_parents/libjr_hostile_parents.so"});
  enqueue_healthy(5);
  int64_t cut = hostile("short"), extra = hostile("long"), hammer = hostile("hammer"),
          null_cb = hostile("null");
  for (int64_t id : {cut, extra}) {
    ASSERT_EQ(wait_finished(id, 60s), "discarded") << runner_->log();
    json s = status(id);
    ASSERT_FALSE(s["errors"].empty()) << s.dump();
    EXPECT_EQ(s["errors"][0]["kind"], "protocol") << s.dump();
    EXPECT_NE(s["errors"][0]["message"].get<std::string>().find("malformed parent_results frame"),
              std::string::npos)
        << s.dump();
  }
  ASSERT_EQ(wait_finished(hammer, 120s), "completed") << runner_->log();
  EXPECT_EQ(status(hammer)["result"], (json{{"ok", 10000}, {"failed", 10}}));
  ASSERT_EQ(wait_finished(null_cb, 60s), "completed") << runner_->log();
  EXPECT_EQ(status(null_cb)["result"]["rc"], -1);
  std::string log = stop_and_check();
  EXPECT_NE(log.find("parent_results refused: the job used up its calls"), std::string::npos);
}

}  // namespace
