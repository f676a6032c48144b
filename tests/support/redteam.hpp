// Red-team fixture: hostile plugins run through the real `runner` (default isolation, as the test
// user: root in CI) with the healthy echo plugin beside them, under an operator config the test
// writes. After the run it checks what must hold whatever the hostile plugin did:
//   - the runner exits 0 on SIGTERM within the grace;
//   - every healthy echo job completed;
//   - no job anywhere has an attempt error of kind `lease_lost` (a stalled heartbeat);
//   - no jr-worker process of that runner is left behind.
// Tests add their own assertions about the hostile job's outcome and what must not have escaped
// (files, routes, database rows).
#pragma once

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "runner_fixture.hpp"

namespace jrtest {

class RedTeamFixture : public RunnerFixture {
 protected:
  // Starts a runner serving the plugins `sos` and the healthy echo plugin, with the operator
  // config `toml` ("" = none) and `extra` flags.
  void start_runner(const std::vector<std::string>& sos, const std::string& toml = "",
                    const std::vector<std::string>& extra = {}) {
    std::vector<std::string> all = sos;
    all.push_back(echo_so());
    plugins_ = plugin_dir_with(all);
    std::vector<std::string> args = {"--plugins", plugins_, "--concurrency", "4"};
    if (!toml.empty()) {
      std::string cfg = dir_.path() + "/redteam" + std::to_string(++dirs_) + ".toml";
      std::ofstream(cfg) << toml;
      args.push_back("--config");
      args.push_back(cfg);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    runner_ = std::make_unique<RunnerProcess>(args, env_);
  }

  // Enqueues `n` healthy echo jobs.
  void enqueue_healthy(int n) {
    auto ids = enqueue_many("echo", n, R"({"ok":true})");
    healthy_.insert(healthy_.end(), ids.begin(), ids.end());
  }

  // The state of job `id` once it is finished (completed, discarded, cancelled), or "" when it
  // is not finished within `limit`.
  std::string wait_finished(int64_t id, std::chrono::milliseconds limit) {
    std::string sql = "SELECT state FROM jr_jobs_done WHERE id = " + std::to_string(id);
    std::string state;
    wait_until(
        [&] {
          state = q(sql);
          return !state.empty();
        },
        limit);
    return state;
  }

  // Processes started as `jr-worker --host-pid <host>` that are still alive.
  static std::vector<pid_t> workers_of(pid_t host) { return sandbox_workers_of(host); }

  // SIGTERM, then the invariants above. Returns the runner's log for further checks.
  std::string stop_and_check(std::chrono::seconds healthy_limit = std::chrono::seconds(60)) {
    EXPECT_TRUE(runner_) << "start_runner was not called";
    if (!runner_) return "";
    pid_t host = runner_->pid();
    if (!healthy_.empty()) {
      std::string sql =
          "SELECT count(*) FROM jr_jobs_done WHERE kind = 'echo' AND state = "
          "'completed' AND id = ANY('{" +
          join_ids(healthy_) + "}')";
      bool all = wait_until([&] { return count(sql) == static_cast<int64_t>(healthy_.size()); },
                            healthy_limit);
      EXPECT_TRUE(all) << "healthy echo jobs did not all complete: " << count(sql) << " of "
                       << healthy_.size() << "\n"
                       << runner_->log();
    }
    runner_->signal(SIGTERM);
    int rc = runner_->wait(std::chrono::seconds(45));
    EXPECT_EQ(rc, 0) << "the runner did not exit 0 after SIGTERM\n" << runner_->log();
    EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all, jsonb_array_elements(errors) e "
                    "WHERE e->>'kind' = 'lease_lost'"),
              0)
        << "a job lost its lease while its runner was alive\n"
        << runner_->log();
    bool gone = wait_until([&] { return workers_of(host).empty(); }, std::chrono::seconds(5));
    EXPECT_TRUE(gone) << "jr-worker processes outlived their runner: " << workers_of(host).size();
    for (pid_t p : workers_of(host)) ::kill(p, SIGKILL);
    return runner_->log();
  }

  // The payload that hands a hostile test plugin its argument (tests/testplugins/hostile/
  // hostile_arg.h): payloads are JSON objects.
  static std::string arg_payload(const std::string& text) {
    return nlohmann::json({{"arg", text}}).dump();
  }

  static std::string join_ids(const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
    return s;
  }

  std::string plugins_;
  std::unique_ptr<RunnerProcess> runner_;
  std::vector<int64_t> healthy_;
};

}  // namespace jrtest
