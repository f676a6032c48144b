// Red-team tests of the host code that faces plugins (issue 16 classes 6, 7 and 9; issue 17's
// start-up item), through the real runner with the healthy echo plugin beside a hostile one
// (tests/testplugins/hostile/robust.c):
//   - a 200,000-letter secret in a log line or an error text: the runner survives, the text is
//     cut and redacted;
//   - host->enqueue of another plugin's kind is refused; an enqueue flood stops at the budget;
//   - log and progress floods neither delay the healthy jobs nor grow the runner's log or memory;
//   - an idle hook that never returns stops neither lease renewal nor SIGTERM;
//   - a plugin whose init fails does not stop the runner: its jobs wait, /readyz says why, and
//     once its init succeeds its jobs run without a restart;
//   - an init or a constructor that never returns: the worker is killed at the start deadline
//     ([worker] plugin_start_timeout), the plugin is not ready, and SIGTERM does not wait for it.
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "redteam.hpp"

namespace {

using namespace std::chrono_literals;
using jrtest::wait_until;

std::string robust_so(const std::string& name) {
  return jrtest::test_plugin_dir() + "/hostile_" + name + "/libjr_hostile_" + name + ".so";
}

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Peak resident memory of a process (VmHWM), in KiB.
int64_t peak_rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

class Robust : public jrtest::RedTeamFixture {
 protected:
  int64_t enqueue_do(const std::string& what) {
    return enqueue({"enqueue", "hostile_robust", "--payload", R"({"do":")" + what + R"("})"});
  }
  // The port of the runner's HTTP server, from its "http server listening" line.
  int http_port() {
    int port = 0;
    wait_until(
        [&] {
          std::string log = runner_->log();
          size_t at = log.find("\"msg\":\"http server listening\"");
          if (at == std::string::npos) return !runner_->alive();
          at = log.find("\"port\":", at);
          if (at != std::string::npos) port = std::atoi(log.c_str() + at + 7);
          return port > 0;
        },
        30s);
    return port;
  }
  // The "plugin failed to start; retrying" log lines of `plugin`.
  std::vector<nlohmann::json> start_failures(const std::string& plugin) {
    std::vector<nlohmann::json> out;
    std::istringstream in(runner_->log());
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j.value("msg", "") == "plugin failed to start; retrying" &&
          j.value("plugin", "") == plugin) {
        out.push_back(j);
      }
    }
    return out;
  }
  // Whether /readyz lists `plugin` as ready (null when it is not listed).
  static nlohmann::json plugin_ready(const nlohmann::json& body, const std::string& plugin) {
    if (!body.is_object() || !body.contains("plugins")) return nullptr;
    for (const auto& p : body["plugins"]) {
      if (p.value("name", "") == plugin) return p.value("ready", false);
    }
    return nullptr;
  }
  // GET /readyz: {status code, body}.
  static std::pair<int, nlohmann::json> readyz(int port) {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(10, 0);
    auto res = c.Get("/readyz");
    if (!res) return {0, nullptr};
    return {res->status, nlohmann::json::parse(res->body, nullptr, false)};
  }
};

// Class 6: std::regex redaction recursed per character and crashed the runner (SIGSEGV).
TEST_F(Robust, LongSecretInALogLineAndInAnErrorTextIsCutAndRedacted) {
  start_runner({robust_so("robust")});
  enqueue_healthy(5);
  int64_t logged = enqueue_do("token_log");
  int64_t failed = enqueue_do("token_error");
  EXPECT_EQ(wait_finished(logged, 60s), "completed") << runner_->log();
  EXPECT_EQ(wait_finished(failed, 60s), "discarded") << runner_->log();
  EXPECT_TRUE(runner_->alive()) << runner_->log();
  // The error text is kept, cut to 64 KiB on a character boundary and marked as cut.
  auto s = status(failed);
  ASSERT_EQ(s["errors"].size(), 1u) << s.dump().substr(0, 2000);
  std::string message = s["errors"][0]["message"].get<std::string>();
  EXPECT_LE(message.size(), 64u * 1024);
  EXPECT_EQ(message.rfind("token=abcdefghij", 0), 0u) << message.substr(0, 100);
  EXPECT_NE(message.find("[cut: 200006 bytes in all]"), std::string::npos)
      << message.substr(message.size() - 100);
  std::string log = stop_and_check();
  // In the log both are cut and redacted: not one run of the secret's letters is left.
  EXPECT_EQ(log.find("abcdefghijklmnopqrstuvwxyzabc"), std::string::npos);
  EXPECT_GE(occurrences(log, "token=*** [cut: 200006 bytes in all]"), 2u) << log.substr(0, 4000);
  for (size_t at = 0, end; (end = log.find('\n', at)) != std::string::npos; at = end + 1) {
    EXPECT_LT(end - at, 80u * 1024) << "a log line longer than the bounds allow";
  }
}

// Class 7: a plugin forged jobs of another plugin's kind.
TEST_F(Robust, EnqueueOfAnotherPluginsKindIsRefused) {
  start_runner({robust_so("robust")});
  enqueue_healthy(3);
  int64_t id = enqueue_do("enqueue_other");
  ASSERT_EQ(wait_finished(id, 60s), "completed") << runner_->log();
  EXPECT_EQ(status(id)["result"]["rc"], -1);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE payload ? 'forged'"), 0);
  std::string log = stop_and_check();
  EXPECT_NE(log.find("enqueue refused: a plugin may enqueue only its own kinds"), std::string::npos)
      << log;
}

// Class 7: host->enqueue had no budget.
TEST_F(Robust, EnqueueFloodOfItsOwnKindStopsAtTheBudget) {
  start_runner({robust_so("robust")});
  enqueue_healthy(3);
  int64_t id = enqueue_do("enqueue_many");
  ASSERT_EQ(wait_finished(id, 120s), "completed") << runner_->log();
  EXPECT_EQ(status(id)["result"]["ok"], 1000);  // the default enqueues_per_job
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE kind = 'hostile_robust' AND "
                  "payload ? 'noop'"),
            1000);
  std::string log = stop_and_check();
  EXPECT_EQ(occurrences(log, "used up its enqueue budget"), 1u);
}

// Class 7: logs (56 MB in a second) and progress updates were unbounded; each progress update
// was a database write on one shared connection.
TEST_F(Robust, LogAndProgressFloodsNeitherDelayHealthyJobsNorGrowTheRunner) {
  start_runner({robust_so("robust")});
  enqueue_healthy(2);  // the runner is up and serving
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs_done") == 2; }, 60s))
      << runner_->log();
  size_t log_before = runner_->log().size();
  int64_t logs = enqueue_do("log_flood");
  int64_t progress = enqueue_do("progress_flood");
  ASSERT_TRUE(wait_state(logs, "running", 30s) || wait_state(logs, "completed", 1s))
      << "state " << q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(logs)) << "\n"
      << runner_->log().substr(runner_->log().size() > 6000 ? runner_->log().size() - 6000 : 0);
  // Healthy jobs enqueued during the floods complete within a bound.
  auto t0 = std::chrono::steady_clock::now();
  auto ids = enqueue_many("echo", 20, R"({"during":"flood"})");
  healthy_.insert(healthy_.end(), ids.begin(), ids.end());
  std::string sql = "SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND id = ANY('{" +
                    join_ids(ids) + "}')";
  ASSERT_TRUE(wait_until([&] { return count(sql) == 20; }, 30s)) << runner_->log().substr(0, 5000);
  auto healthy_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_LT(healthy_ms, 10000) << "healthy jobs were held up by the floods";
  // The floods themselves finish quickly: a progress call does not wait on the database.
  EXPECT_EQ(wait_finished(logs, 30s), "completed") << runner_->log().substr(0, 5000);
  EXPECT_EQ(wait_finished(progress, 30s), "completed");
  // The last progress value is written before the outcome.
  EXPECT_EQ(q("SELECT (progress->>'percent') || ' ' || (progress->>'step') FROM jr_jobs_all "
              "WHERE id = " +
              std::to_string(progress)),
            "100 final");
  int64_t flood_bytes = status(logs)["result"]["bytes"].get<int64_t>();
  int64_t rss_kb = peak_rss_kb(runner_->pid());
  std::string log = stop_and_check();
  EXPECT_GT(flood_bytes, 2 * 1024 * 1024) << "the flood was too small to show anything";
  // The log of the flood job stays within its budget (1 MiB by default) plus the host's lines.
  EXPECT_LT(static_cast<int64_t>(log.size() - log_before), 3 * 1024 * 1024);
  EXPECT_EQ(occurrences(log, "log budget exhausted: further lines of this job are suppressed"), 1u);
  EXPECT_EQ(occurrences(log, "log budget exhausted: lines of this job were suppressed"), 1u);
  EXPECT_GT(rss_kb, 0);
  EXPECT_LT(rss_kb, 200 * 1024) << "runner peak RSS " << rss_kb << " KiB";
  std::cout << "[ measure ] healthy jobs during the floods: " << healthy_ms
            << " ms; flood: " << flood_bytes / (1024 * 1024)
            << " MiB of log lines; runner peak RSS " << rss_kb / 1024 << " MiB\n";
}

// Class 9: the idle hook ran on the heartbeat thread with no deadline: leases expired
// (lease_lost) and SIGTERM hung.
TEST_F(Robust, IdleHookThatNeverReturnsStopsNeitherLeasesNorShutdown) {
  // (The hook's deadline, 2 s, is in its manifest: "idle": {"timeout_seconds": 2}.)
  start_runner({robust_so("idle_hang")},
               "[worker]\nlease_seconds = 2\nrescue_interval = \"1s\"\nshutdown_grace = \"10s\"\n");
  ASSERT_TRUE(wait_until(
      [&] {
        return runner_->log().find("idle hook entered; never returning") != std::string::npos;
      },
      60s))
      << runner_->log();
  // Jobs three lease lengths long, while the hook hangs (and is killed and called again).
  auto ids = enqueue_many("echo", 3, R"({"sleep_ms":6000})");
  healthy_.insert(healthy_.end(), ids.begin(), ids.end());
  enqueue_healthy(5);
  std::string sql = "SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND id = ANY('{" +
                    join_ids(healthy_) + "}')";
  ASSERT_TRUE(wait_until([&] { return count(sql) == static_cast<int64_t>(healthy_.size()); }, 60s))
      << runner_->log();
  EXPECT_NE(runner_->log().find("idle hook ran past its deadline; its worker was killed"),
            std::string::npos);
  // SIGTERM while the hook hangs (it is called again after each kill): exit 0 within the grace.
  ASSERT_TRUE(wait_until(
      [&] { return occurrences(runner_->log(), "idle hook entered; never returning") >= 2; }, 30s));
  auto t0 = std::chrono::steady_clock::now();
  stop_and_check();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 12s);
  for (int64_t id : ids) EXPECT_EQ(status(id)["attempt"], 1) << status(id).dump();
}

// Issue 17: a plugin whose init fails made `runner` exit 1 at start-up.
TEST_F(Robust, PluginWhoseInitAlwaysFailsDoesNotStopTheRunner) {
  start_runner({robust_so("init")}, "[worker]\nhttp = \"127.0.0.1:0\"\n");
  int port = http_port();
  ASSERT_GT(port, 0) << runner_->log();
  enqueue_healthy(5);
  auto waiting = enqueue_many("hostile_init", 3, "{}");
  ASSERT_TRUE(wait_until(
      [&] { return occurrences(runner_->log(), "plugin failed to start; retrying") >= 3; }, 30s))
      << runner_->log();
  auto [code, body] = readyz(port);
  EXPECT_EQ(code, 503) << body.dump();
  EXPECT_NE(body.value("reason", "")
                .find("plugin hostile_init is not ready: init failed: "
                      "dependency unreachable"),
            std::string::npos)
      << body.dump();
  bool echo_ready = false, init_listed = false;
  for (const auto& p : body["plugins"]) {
    if (p["name"] == "echo") echo_ready = p["ready"].get<bool>();
    if (p["name"] == "hostile_init") init_listed = !p["ready"].get<bool>();
  }
  EXPECT_TRUE(echo_ready) << body.dump();
  EXPECT_TRUE(init_listed) << body.dump();
  EXPECT_TRUE(body.contains("refused_plugins")) << body.dump();
  std::string log = stop_and_check();
  for (int64_t id : waiting) {
    EXPECT_EQ(q("SELECT state || ' ' || attempt FROM jr_jobs_all WHERE id = " + std::to_string(id)),
              "available 0");
  }
  EXPECT_NE(log.find("\"plugin\":\"hostile_init\""), std::string::npos);
}

// Issue 17: the dependency of a plugin's init comes back (a database restart during a rolling
// deploy): the plugin becomes ready and its jobs run, without a restart of the runner.
TEST_F(Robust, PluginWhoseInitFailsIsServedOnceItsDependencyIsBack) {
  double until =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() +
      8;
  start_runner({robust_so("init")},
               "[worker]\nhttp = \"127.0.0.1:0\"\n[plugins.hostile_init]\nfail_until = " +
                   std::to_string(until) + "\n");
  int port = http_port();
  ASSERT_GT(port, 0) << runner_->log();
  auto ids = enqueue_many("hostile_init", 3, "{}");
  enqueue_healthy(3);
  // While its dependency is down: not ready, saying why; its jobs wait.
  std::pair<int, nlohmann::json> r;
  ASSERT_TRUE(wait_until(
      [&] {
        r = readyz(port);
        return r.first == 503 &&
               r.second.value("reason", "").find("hostile_init") != std::string::npos;
      },
      20s))
      << r.second.dump() << runner_->log();
  EXPECT_EQ(status(ids[0])["state"], "available");
  // Then served, and ready.
  for (int64_t id : ids) EXPECT_EQ(wait_finished(id, 60s), "completed") << runner_->log();
  ASSERT_TRUE(wait_until([&] { return readyz(port).first == 200; }, 20s))
      << readyz(port).second.dump();
  std::string log = stop_and_check();
  EXPECT_NE(log.find("\"msg\":\"plugin loaded in the sandbox\",\"plugin\":\"hostile_init\""),
            std::string::npos);
}

// Class 9: an init that never returns. Its worker is killed at the start deadline (here 2 s) and
// the start retried, each failure logged with the plugin's name; /readyz says it is not ready;
// echo jobs complete; SIGTERM exits cleanly with no worker left.
TEST_F(Robust, InitThatNeverReturnsIsKilledAtTheStartDeadline) {
  start_runner({robust_so("init_hang")},
               "[worker]\nhttp = \"127.0.0.1:0\"\nplugin_start_timeout = \"2s\"\n");
  int port = http_port();
  ASSERT_GT(port, 0) << runner_->log();
  enqueue_healthy(10);
  auto waiting = enqueue_many("hostile_init_hang", 3, "{}");
  ASSERT_TRUE(wait_until([&] { return start_failures("hostile_init_hang").size() >= 2; }, 60s))
      << runner_->log();
  for (const auto& f : start_failures("hostile_init_hang")) {
    EXPECT_NE(f.value("error", "").find("did not finish loading the plugin within 2000 ms"),
              std::string::npos)
        << f.dump();
  }
  EXPECT_GE(occurrences(runner_->log(), "init entered; never returning"), 2u) << runner_->log();
  auto [code, body] = readyz(port);
  EXPECT_EQ(code, 503) << body.dump();
  EXPECT_NE(body.value("reason", "").find("plugin hostile_init_hang is not ready"),
            std::string::npos)
      << body.dump();
  EXPECT_EQ(plugin_ready(body, "hostile_init_hang"), false) << body.dump();
  EXPECT_EQ(plugin_ready(body, "echo"), true) << body.dump();
  std::string log = stop_and_check();
  for (int64_t id : waiting) {
    EXPECT_EQ(q("SELECT state || ' ' || attempt FROM jr_jobs_all WHERE id = " + std::to_string(id)),
              "available 0");
  }
}

// Class 9: a constructor that hangs only in a worker that serves jobs (describing the plugin
// works, so it is accepted): the same deadline applies to loading it.
TEST_F(Robust, ConstructorThatHangsOnlyWhenServingIsKilledAtTheStartDeadline) {
  start_runner({robust_so("ctor_hang")},
               "[worker]\nhttp = \"127.0.0.1:0\"\nplugin_start_timeout = \"2s\"\n");
  int port = http_port();
  ASSERT_GT(port, 0) << runner_->log();
  enqueue_healthy(10);
  ASSERT_TRUE(wait_until([&] { return start_failures("hostile_ctor_hang").size() >= 2; }, 60s))
      << runner_->log();
  EXPECT_NE(start_failures("hostile_ctor_hang")[0].value("error", "").find("within 2000 ms"),
            std::string::npos)
      << runner_->log();
  EXPECT_GE(occurrences(runner_->log(), "constructor entered; never returning"), 2u);
  auto [code, body] = readyz(port);
  EXPECT_EQ(code, 503) << body.dump();
  EXPECT_EQ(plugin_ready(body, "hostile_ctor_hang"), false) << body.dump();
  EXPECT_EQ(plugin_ready(body, "echo"), true) << body.dump();
  std::string log = stop_and_check();
  EXPECT_EQ(log.find("plugin refused"), std::string::npos) << "describing it should work: " << log;
}

// Class 9: SIGTERM while a plugin's init hangs, long before its start deadline (5 minutes here):
// the loading worker is killed at once; the runner neither waits for the deadline nor abandons
// the start (which would leave the worker to the parent-death signal).
TEST_F(Robust, SigtermDuringAnInitThatNeverReturnsDoesNotWaitForTheDeadline) {
  start_runner({robust_so("init_hang")}, "[worker]\nplugin_start_timeout = \"5m\"\n");
  enqueue_healthy(10);
  ASSERT_TRUE(wait_until(
      [&] { return runner_->log().find("init entered; never returning") != std::string::npos; },
      60s))
      << runner_->log();
  auto t0 = std::chrono::steady_clock::now();
  std::string log = stop_and_check();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 15s) << log;
  EXPECT_EQ(log.find("a plugin call did not return in time"), std::string::npos) << log;
  EXPECT_EQ(log.find("exiting with handlers still running"), std::string::npos) << log;
}

}  // namespace
