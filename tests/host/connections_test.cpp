// The runner's connection budget (issue 20, host/store/db_budget.hpp): the real runner with the
// echo plugin (sandboxed, the default) at concurrency 10 under load, its sessions counted in
// pg_stat_activity by the application_name it gives them ("jobrunner PID@HOST"); a budget too
// small is refused; lease renewal goes on while the shared services connection is stuck.
//
// Measure another build (the numbers before a change): JR_TEST_RUNNER_BINARY=/path/to/runner.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "runner_fixture.hpp"

namespace jrtest {
namespace {

std::string session_name(pid_t pid) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::string name = "jobrunner " + std::to_string(pid) + "@" + host;
  if (name.size() > 63) name.resize(63);
  return name;
}

class Connections : public RunnerFixture {
 protected:
  int64_t sessions(pid_t pid) {
    return count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" +
                 session_name(pid) + "'");
  }

  // Runs `jobs` echo jobs of `sleep_ms` each through a runner started with `flags` and samples
  // its sessions every 20 ms while they run (a sample's own queries can take hundreds of ms under
  // ASan on a loaded machine, so the callers size the work at 3-4 s of running, not at a number
  // of samples: 40 ms jobs once gave 9 samples where 10 were asked); returns the most seen (and the
  // samples taken while jobs were running in `busy_samples`).
  int64_t peak_under_load(const std::vector<std::string>& flags, int jobs, int sleep_ms,
                          int* busy_samples, std::string* runner_log = nullptr) {
    enqueue_many("echo", jobs, "{\"sleep_ms\": " + std::to_string(sleep_ms) + "}");
    std::vector<std::string> args = {"--plugins", plugin_dir_with({echo_so()}), "--concurrency",
                                     "10"};
    args.insert(args.end(), flags.begin(), flags.end());
    RunnerProcess runner(args, env_);
    int64_t peak = 0;
    *busy_samples = 0;
    bool done = wait_until(
        [&] {
          int64_t n = sessions(runner.pid());
          peak = std::max(peak, n);
          if (count("SELECT count(*) FROM jr_jobs WHERE state = 'running'") > 0) ++*busy_samples;
          return count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'") == jobs;
        },
        std::chrono::seconds(120));
    EXPECT_TRUE(done) << runner.log();
    // `runner info --json` counts the same sessions for this runner.
    auto info = run_runner({"info", "--json"}, env_);
    EXPECT_EQ(info.exit_code, 0) << info.err;
    auto j = nlohmann::json::parse(info.out, nullptr, false);
    bool found = false;
    for (const auto& w : j["workers"]) {
      if (w.value("pid", 0) != runner.pid()) continue;
      found = true;
      EXPECT_GE(w.value("connections", int64_t{0}), 1) << info.out;
      EXPECT_LE(w.value("connections", int64_t{0}), peak + 1) << info.out;
    }
    EXPECT_TRUE(found) << info.out;
    auto text = run_runner({"info"}, env_);
    EXPECT_NE(text.out.find("CONNS"), std::string::npos) << text.out;
    runner.signal(SIGTERM);
    EXPECT_EQ(runner.wait(std::chrono::seconds(60)), 0) << runner.log();
    if (runner_log) *runner_log = runner.log();
    std::cout << "peak sessions of the runner under load: " << peak << "\n";
    return peak;
  }
};

// Before issue 20 such a runner held 9 (fetcher+LISTEN, two completers, lease renewal, registry,
// maintenance, webhooks, publisher, registration): docs/scaling.md.
TEST_F(Connections, OnePluginAtConcurrencyTenHoldsAtMostFourOfItsOwn) {
  int busy = 0;
  std::string log;
  int64_t peak = peak_under_load({}, 400, 100, &busy, &log);
  EXPECT_GE(busy, 5) << "too few samples while jobs ran";
  EXPECT_LE(peak, 4);
  EXPECT_GE(peak, 3) << "the runner's sessions were not found (application_name)";
  EXPECT_NE(log.find("claims+LISTEN 1, completions 1, services 1 = 4 of 4"), std::string::npos)
      << log;
}

// LISTEN on the fetcher's claims connection (the default plan): an idle runner is woken by the
// enqueue's notification, not by its next poll. The fetcher waits at most a second between
// claims, so each job is enqueued at another point of that second: polling alone would start
// eight in a row within half a second once in about 250 runs. Measured from a runner that has
// run a job already (the plugin's start is not what is measured).
TEST_F(Connections, AnIdleRunnerIsWokenByNotificationsOnItsClaimsConnection) {
  auto completed = [&](int64_t id) {
    return q("SELECT state FROM jr_jobs_done WHERE id = " + std::to_string(id)) == "completed";
  };
  int64_t first = enqueue({"enqueue", "echo", "--payload", "{}"});
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "30"}, env_);
  ASSERT_TRUE(wait_until([&] { return completed(first); }, std::chrono::seconds(60)))
      << runner.log();
  EXPECT_NE(runner.log().find("claims+LISTEN 1"), std::string::npos) << runner.log();
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + 110 * i));
    int64_t id = enqueue({"enqueue", "echo", "--payload", "{\"wake\": 1}"});
    ASSERT_TRUE(wait_until([&] { return completed(id); }, std::chrono::seconds(10)))
        << runner.log();
    double latency = std::stod(
        q("SELECT extract(epoch from started_at - created_at) FROM jr_jobs_done WHERE id = " +
          std::to_string(id)));
    EXPECT_LT(latency, 0.5) << "job " << id << " waited for a poll, not a notification";
  }
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(60)), 0) << runner.log();
}

TEST_F(Connections, BudgetOfThreeSharesClaimsCompletionsAndServices) {
  int busy = 0;
  std::string log;
  int64_t peak = peak_under_load({"--max-connections", "3"}, 300, 100, &busy, &log);
  EXPECT_GE(busy, 5) << "too few samples while jobs ran";
  EXPECT_LE(peak, 3);
  EXPECT_NE(log.find("claims+completions+services 1 = 3 of 3"), std::string::npos) << log;
}

// With --http the server's API and dashboard pools together stay within their one connection,
// however many requests come at once.
TEST_F(Connections, HttpRequestsStayWithinTheBudget) {
  enqueue_many("echo", 300, "{\"sleep_ms\": 40}");
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--concurrency", "10", "--http",
                        "0", "--max-connections", "4"},
                       env_);
  int port = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        std::smatch m;
        std::string l = runner.log();
        if (!std::regex_search(l, m, std::regex("http server listening[^\\n]*\"port\":([0-9]+)"))) {
          return false;
        }
        port = std::stoi(m[1]);
        return true;
      },
      std::chrono::seconds(30)))
      << runner.log();
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::mutex fail_mu;
  std::string failures;
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      const char* paths[] = {"/api/v1/overview", "/api/v1/queues", "/api/v1/runners", "/metrics"};
      while (!stop) {
        std::string cmd =
            "curl -s -w ' %{http_code}' --max-time 20 http://127.0.0.1:" + std::to_string(port) +
            paths[i];
        FILE* f = popen(cmd.c_str(), "r");
        std::string body;
        if (f != nullptr) {
          char buf[4096];
          for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) body.append(buf, n);
          pclose(f);
        }
        if (body.size() >= 4 && body.compare(body.size() - 4, 4, " 200") == 0) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard<std::mutex> lock(fail_mu);
          if (failures.size() < 2000)
            failures += std::string(paths[i]) + ": " + body.substr(0, 300) + "\n";
        }
      }
    });
  }
  int64_t peak = 0;
  bool done = wait_until(
      [&] {
        int64_t n = sessions(runner.pid());
        peak = std::max(peak, n);
        return count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'") == 300;
      },
      std::chrono::seconds(120));
  stop = true;
  for (auto& t : clients) t.join();
  EXPECT_TRUE(done) << runner.log();
  std::cout << "peak sessions with HTTP requests: " << peak << "\n";
  EXPECT_GT(ok.load(), 20);
  EXPECT_EQ(failed.load(), 0) << failures;
  EXPECT_LE(peak, 4);
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(60)), 0) << runner.log();
}

TEST_F(Connections, TooSmallBudgetIsRefusedSayingWhatNeedsHowMany) {
  std::string dir = plugin_dir_with({echo_so()});
  auto r = run_runner({"--plugins", dir, "--max-connections", "2"}, env_);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("max_connections 2 is too small"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lease renewal needs 1, LISTEN 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("at least 3"), std::string::npos) << r.err;
  auto h = run_runner({"--plugins", dir, "--http", "0", "--max-connections", "3"}, env_);
  EXPECT_EQ(h.exit_code, 2) << h.err;
  EXPECT_NE(h.err.find("the HTTP server 1"), std::string::npos) << h.err;
  EXPECT_NE(h.err.find("at least 4"), std::string::npos) << h.err;
  auto env = env_;
  env["RUNNER_MAX_CONNECTIONS"] = "two";
  auto e = run_runner({"--plugins", dir}, env);
  EXPECT_EQ(e.exit_code, 2) << e.err;
  EXPECT_NE(e.err.find("RUNNER_MAX_CONNECTIONS"), std::string::npos) << e.err;
}

// The services connection (maintenance, registry, webhooks, publisher...) stuck behind a lock
// for longer than two leases: the lease of the running job is renewed all along (lease renewal
// has a connection of its own) and the job completes on its first attempt.
TEST_F(Connections, LeaseRenewalGoesOnWhileTheSharedConnectionIsStuck) {
  int64_t id = enqueue({"enqueue", "echo", "--payload", "{\"sleep_ms\": 9000}"});
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--concurrency", "10", "--lease-seconds", "2"},
      env_);
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_jobs WHERE state = 'running' AND id = " +
                     std::to_string(id)) == 1;
      },
      std::chrono::seconds(30)))
      << runner.log();
  // Every election statement of the maintenance leader (every 2 s, on the services connection)
  // now waits for this lock.
  pqxx::connection c(url_);
  pqxx::work tx(c);
  tx.exec("LOCK TABLE jr_leaders IN ACCESS EXCLUSIVE MODE");
  std::string name = session_name(runner.pid());
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + name +
                     "' AND wait_event_type = 'Lock'") == 1;
      },
      std::chrono::seconds(10)))
      << "the services connection never queued behind the lock";
  double first = std::stod(q(
      "SELECT extract(epoch from lease_expires_at) FROM jr_jobs WHERE id = " + std::to_string(id)));
  // 5 s stuck (two and a half leases): the lease never runs out and keeps moving.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  int samples = 0;
  double last = first;
  while (std::chrono::steady_clock::now() < until) {
    std::string left =
        q("SELECT extract(epoch from lease_expires_at - now()) || ' ' || "
          "extract(epoch from lease_expires_at) FROM jr_jobs WHERE id = " +
          std::to_string(id));
    ASSERT_FALSE(left.empty()) << "the job left the running state while the lock was held";
    double remaining = std::stod(left.substr(0, left.find(' ')));
    last = std::stod(left.substr(left.find(' ') + 1));
    EXPECT_GT(remaining, 0) << "the lease expired while the services connection was stuck";
    ++samples;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Still stuck at the end, so the whole window was a stall of the shared connection.
  EXPECT_EQ(count("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + name +
                  "' AND wait_event_type = 'Lock'"),
            1);
  tx.commit();
  EXPECT_GE(samples, 10) << "the lease was sampled too rarely to show it held";
  EXPECT_GT(last, first + 3) << "the lease was not renewed during the stall";
  ASSERT_TRUE(wait_until(
      [&] {
        return q("SELECT state FROM jr_jobs_done WHERE id = " + std::to_string(id)) == "completed";
      },
      std::chrono::seconds(30)))
      << runner.log();
  EXPECT_EQ(q("SELECT attempt FROM jr_jobs_done WHERE id = " + std::to_string(id)), "1");
  EXPECT_EQ(runner.log().find("lease_lost"), std::string::npos) << runner.log();
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(60)), 0) << runner.log();
}

}  // namespace
}  // namespace jrtest
