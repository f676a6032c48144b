// Flow control across several runner processes on one real PostgreSQL: priorities with aging,
// cron, unique jobs, lock keys, rate limits, dependencies, fairness, pause, queue patterns and
// idle hooks.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <thread>

#include "cron.hpp"
#include "runner_fixture.hpp"
#include "store.hpp"

namespace {

using jrtest::echo_so;
using jrtest::RunnerProcess;
using jrtest::test_so;
using jrtest::wait_until;
using namespace std::chrono_literals;

class Flow : public jrtest::RunnerFixture {
 protected:
  std::string config(const std::string& text) {
    std::string path = dir_.path() + "/flow" + std::to_string(++dirs_) + ".toml";
    std::ofstream(path) << text;
    return path;
  }
  int64_t completed() {
    return count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'");
  }
};

TEST(CronSchedule, FieldsMacrosAndEvery) {
  using jr::CronSchedule;
  using jr::LocalTime;
  auto next = [](const std::string& s, const std::string& after) {
    return CronSchedule::parse(s).next_after(LocalTime::parse(after))->str();
  };
  EXPECT_EQ(next("0 * * * *", "2026-11-23 15:37:10"), "2026-11-23 16:00:00");
  EXPECT_EQ(next("@hourly", "2026-11-23 23:00:00"), "2026-11-24 00:00:00");
  EXPECT_EQ(next("*/15 9-17 * * mon-fri", "2026-11-27 17:50:00"), "2026-11-30 09:00:00");
  EXPECT_EQ(next("0 0 29 2 *", "2026-03-01 00:00:00"), "2028-02-29 00:00:00");
  EXPECT_EQ(next("30 4 1,15 * 5", "2026-11-23 00:00:00"), "2026-11-27 04:30:00");  // dom OR dow
  EXPECT_EQ(next("@every 2s", "2026-11-23 15:37:11"), "2026-11-23 15:37:12");
  EXPECT_EQ(next("@every 1h", "2026-12-31 23:30:00"), "2027-01-01 00:00:00");
  EXPECT_THROW(CronSchedule::parse("61 * * * *"), std::invalid_argument);
  EXPECT_THROW(CronSchedule::parse("* * *"), std::invalid_argument);
  EXPECT_THROW(CronSchedule::parse("@fortnightly"), std::invalid_argument);
}

TEST_F(Flow, AgingLetsALowPriorityJobStartWithinItsBound) {
  std::string cfg =
      config("[worker]\npriority_aging = 0.1\npoll_interval = 0.05\nrescue_interval = 0.2\n");
  int64_t low = enqueue({"enqueue", "echo", "--payload", R"({"sleep_ms":20})", "--priority", "0"});
  auto high = enqueue_many("echo", 300, R"({"sleep_ms":20})", {"--priority", "10"});
  auto t0 = std::chrono::steady_clock::now();
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--config", cfg, "--concurrency",
                        "1", "--prefetch", "0"},
                       env_);
  // 10 points at 0.1 s per point: about 1 s, against 6 s for the 300 jobs ahead of it.
  ASSERT_TRUE(wait_state(low, "completed", 30s)) << runner.log();
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t before = count("SELECT count(*) FROM jr_jobs_done d, jr_jobs_done l WHERE l.id = " +
                         std::to_string(low) + " AND d.started_at < l.started_at");
  std::printf("aging: the low-priority job started after %lld high-priority jobs (%.2f s)\n",
              static_cast<long long>(before), waited);
  EXPECT_LT(before, 150);
  EXPECT_GT(count("SELECT count(*) FROM jr_jobs WHERE state = 'available'"), 50);
  (void)high;
}

TEST_F(Flow, CronEnqueuesExactlyOneJobPerTickAcrossThreeRunners) {
  std::string cfg = config(
      "[worker]\npoll_interval = 0.1\n[[cron]]\nname = \"tick\"\nschedule = \"@every 1s\"\n"
      "kind = \"echo\"\npayload = { from = \"cron\" }\n");
  std::string plugins = plugin_dir_with({echo_so()});
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (int i = 0; i < 3; ++i) {
    runners.push_back(std::make_unique<RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins, "--config", cfg}, env_));
  }
  ASSERT_TRUE(wait_until([&] { return completed() >= 6; }, 30s)) << runners[0]->log();
  // Stop the leader mid-way: another runner takes over and the ticks go on, still one each.
  runners[0]->signal(SIGKILL);
  runners[0]->wait(5s);
  int64_t at_kill = completed();
  ASSERT_TRUE(wait_until([&] { return completed() >= at_kill + 5; }, 40s));
  for (size_t i = 1; i < runners.size(); ++i) runners[i]->signal(SIGTERM);
  for (size_t i = 1; i < runners.size(); ++i) runners[i]->wait(15s);
  // One job per distinct tick, and ticks one second apart.
  int64_t jobs = count("SELECT count(*) FROM jr_jobs_all WHERE kind = 'echo'");
  int64_t seconds = count(
      "SELECT count(DISTINCT date_trunc('second', created_at)) FROM jr_jobs_all WHERE kind = "
      "'echo'");
  EXPECT_EQ(jobs, seconds) << "two jobs were enqueued for one tick";
  EXPECT_GE(jobs, 11);
  auto ls = jrtest::run_runner({"cron", "ls", "--json"}, env_);
  auto arr = nlohmann::json::parse(ls.out);
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0]["name"], "tick");
  EXPECT_FALSE(arr[0]["next_run_at"].is_null());
}

TEST_F(Flow, AThousandConcurrentUniqueEnqueuesMakeOneJob) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<int64_t> ids;
  std::atomic<int> inserted{0};
  for (int t = 0; t < 20; ++t) {
    threads.emplace_back([&] {
      auto store = jr::Store::open(url_);
      for (int i = 0; i < 50; ++i) {
        jr::JobInsertParams p;
        p.kind = "echo";
        p.payload = R"({"b":2, "a":1})";
        p.unique = true;
        auto r = store->JobInsertEx(p);
        if (r.inserted) ++inserted;
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(r.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(inserted.load(), 1);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs"), 1);
  // The same payload written differently is the same job; the CLI prints the existing id.
  auto r =
      jrtest::run_runner({"enqueue", "echo", "--payload", R"({"a":1,"b":2})", "--unique"}, env_);
  EXPECT_EQ(std::stoll(r.out), *ids.begin());
  // Once it has run, a new one may be enqueued.
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()})}, env_);
  ASSERT_TRUE(wait_state(*ids.begin(), "completed", 20s));
  r = jrtest::run_runner({"enqueue", "echo", "--payload", R"({"a":1,"b":2})", "--unique"}, env_);
  EXPECT_NE(std::stoll(r.out), *ids.begin());
}

TEST_F(Flow, LockKeysNeverOverlapAcrossFourRunnersOfEightSlots) {
  std::string record;
  std::string cfg = dir_.path() + "/overlap.toml";
  record = dir_.path() + "/overlap.log";
  jrtest::shared_file(record);
  std::ofstream(cfg) << "[plugins.overlap]\nrecord_file = \"" << record
                     << "\"\n[plugins.overlap.sandbox]\nwritable_config_keys = [\"record_file\"]\n";
  for (int k = 0; k < 4; ++k) {
    enqueue_many("overlap", 40, "{\"key\":\"k" + std::to_string(k) + "\",\"sleep_ms\":15}",
                 {"--lock-key", "k" + std::to_string(k)});
  }
  enqueue_many("overlap", 60, R"({"key":"pair","sleep_ms":15})",
               {"--lock-key", "pair", "--lock-limit", "2"});
  std::string plugins = plugin_dir_with({test_so("overlap", "overlap")});
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (int i = 0; i < 4; ++i) {
    runners.push_back(std::make_unique<RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins, "--config", cfg, "--concurrency", "8",
                                 "--poll-interval", "0.05"},
        env_));
  }
  ASSERT_TRUE(wait_until([&] { return completed() == 220; }, 120s)) << runners[0]->log();
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> by_key;
  std::ifstream in(record);
  int64_t id, a, b;
  std::string key;
  while (in >> id >> key >> a >> b) by_key[key].push_back({a, b});
  int overlaps = 0, max_pair = 0;
  for (auto& [k, spans] : by_key) {
    // Sweep: the most spans open at one instant.
    std::vector<std::pair<int64_t, int>> ev;
    for (auto& s : spans) {
      ev.push_back({s.first, 1});
      ev.push_back({s.second, -1});
    }
    std::sort(ev.begin(), ev.end(), [](auto& x, auto& y) {
      return x.first != y.first ? x.first < y.first : x.second < y.second;
    });
    int open = 0, most = 0;
    for (auto& e : ev) most = std::max(most, open += e.second);
    if (k == "pair") {
      max_pair = most;
    } else if (most > 1) {
      ++overlaps;
    }
  }
  std::printf("lock keys: %d overlapping keys, at most %d running for the limit-2 key\n", overlaps,
              max_pair);
  EXPECT_EQ(overlaps, 0);
  EXPECT_LE(max_pair, 2);
  EXPECT_EQ(max_pair, 2);  // the limit is used, not just never exceeded
}

// Issue 17, handoff latency: the next job with a lock key starts within milliseconds of the
// previous one's completion, and so does a child whose last parent completed; the default poll
// interval must not be what hands them over. Gaps in the database's own times. The runner polls
// every 10 s here, so a handoff that waited for a poll shows as seconds, while a loaded machine's
// scheduling delays (390 ms once on CI's 2 cores) stay far below the 1 s bound.
TEST_F(Flow, LockKeyAndDependencyHandoffTakesMillisecondsNotAPoll) {
  const int n = 6;
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--concurrency", "4", "--poll-interval", "10"},
      env_);
  // One workload after the other, so neither is woken by the other's handoff.
  enqueue_many("echo", n, R"({"sleep_ms":100})", {"--lock-key", "handoff"});
  ASSERT_TRUE(wait_until([&] { return completed() == n; }, 60s)) << runner.log();
  // A child enqueued after its parents completed is available at once (no wait for a poll).
  int64_t parent = count("SELECT max(id) FROM jr_jobs_done");
  int64_t late = enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "late", "--depends-on",
                          std::to_string(parent)});
  ASSERT_TRUE(wait_until([&] { return completed() == n + 1; }, 60s)) << runner.log();
  std::string wait_ms =
      q("SELECT round(extract(epoch from started_at - created_at) * 1000) FROM jr_jobs_done "
        "WHERE id = " +
        std::to_string(late));
  std::printf("handoff: a child of a completed parent started %s ms after its enqueue\n",
              wait_ms.c_str());
  // Far below the 10 s poll it would otherwise wait for (a loaded CI machine took 117 ms).
  EXPECT_LT(std::stod(wait_ms), 1000);
  // The chain is enqueued whole (its queue paused meanwhile), then released at once.
  ASSERT_EQ(jrtest::run_runner({"queue", "pause", "chain"}, env_).exit_code, 0);
  int64_t prev = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> args = {"enqueue", "echo",      "--queue",
                                     "chain",   "--payload", R"({"sleep_ms":100})"};
    if (prev != 0) {
      args.push_back("--depends-on");
      args.push_back(std::to_string(prev));
    }
    prev = enqueue(args);
  }
  ASSERT_EQ(jrtest::run_runner({"queue", "resume", "chain"}, env_).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return completed() == 2 * n + 1; }, 60s)) << runner.log();
  for (const char* queue : {"default", "chain"}) {
    // Each job's start minus the previous one's end, in start order.
    std::string gaps =
        q("SELECT string_agg(round(gap)::text, ' ') FROM (SELECT extract(epoch from started_at - "
          "lag(finished_at) OVER (ORDER BY started_at)) * 1000 AS gap FROM jr_jobs_done "
          "WHERE queue = '" +
          std::string(queue) + "') g WHERE gap IS NOT NULL");
    std::printf("handoff %s: gaps %s ms\n", queue, gaps.c_str());
    std::istringstream in(gaps);
    int seen = 0;
    for (double g; in >> g; ++seen) {
      EXPECT_GE(g, 0) << queue << ": overlapping: " << gaps;
      EXPECT_LT(g, 1000) << queue << ": a handoff waited for the poll: " << gaps;
    }
    EXPECT_EQ(seen, n - 1) << gaps;
  }
}

TEST_F(Flow, RateLimitHoldsAcrossThreeRunners) {
  auto r = jrtest::run_runner({"limit", "set", "--key", "queue:rl", "--rate", "20", "--burst", "1"},
                              env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  enqueue_many("echo", 400, "{}", {"--queue", "rl"});
  std::string plugins = plugin_dir_with({echo_so()});
  std::vector<std::unique_ptr<RunnerProcess>> runners;
  for (int i = 0; i < 3; ++i) {
    runners.push_back(std::make_unique<RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins, "--concurrency", "8"}, env_));
  }
  // A 10 s window that begins once the runners were warm (1 s after the first start); wait until
  // a job has started after it, so the window is complete (400 jobs at 20/s outlast it).
  const std::string t0 =
      "WITH t AS (SELECT min(started_at) + interval '1 s' AS t0 FROM jr_jobs_done) ";
  ASSERT_TRUE(wait_until(
      [&] {
        return count(t0 +
                     "SELECT count(*) FROM jr_jobs_done, t WHERE started_at >= t0 + "
                     "interval '10 s'") > 0;
      },
      120s))
      << runners[0]->log();
  int64_t in_window = count(t0 +
                            "SELECT count(*) FROM jr_jobs_done, t WHERE started_at >= t0 AND "
                            "started_at < t0 + interval '10 s'");
  std::printf("rate limit 20/s: %lld jobs started in 10 s across 3 runners\n",
              static_cast<long long>(in_window));
  // The limit holds: 20/s with a burst of 1 allows at most 201 starts in 10 s (some slack for
  // the runners' clocks). This is the property under test and stays strict.
  EXPECT_LE(in_window, 220);
  // The limit is used, not starved: a limiter that refilled too slowly or lost tokens between
  // runners would start far fewer. The bound is a third of the rate, not the full rate, because
  // on a loaded CPU the runners themselves fall behind the limiter (171 of 200 was seen at load
  // 40; 94 on CI's 2 cores with a compile running beside the suite).
  EXPECT_GE(in_window, 67);
  auto ls = jrtest::run_runner({"limit", "ls", "--json"}, env_);
  EXPECT_EQ(nlohmann::json::parse(ls.out)[0]["key"], "queue:rl");
  EXPECT_EQ(jrtest::run_runner({"limit", "rm", "--key", "queue:rl"}, env_).exit_code, 0);
  // Any other key is a rate key (docs/job-model.md); a * only ends a pattern.
  EXPECT_EQ(jrtest::run_runner({"limit", "set", "--key", "bo*gus", "--rate", "1"}, env_).exit_code,
            2);
}

TEST_F(Flow, DependencyChainRunsInOrderAndADeadParentCancelsItsChild) {
  int64_t a = enqueue({"enqueue", "echo", "--payload", R"({"sleep_ms":200,"n":"a"})"});
  int64_t b =
      enqueue({"enqueue", "echo", "--payload", R"({"n":"b"})", "--depends-on", std::to_string(a)});
  int64_t c =
      enqueue({"enqueue", "echo", "--payload", R"({"n":"c"})", "--depends-on", std::to_string(b)});
  int64_t bad = enqueue({"enqueue", "echo", "--payload", R"({"fail":"permanent"})"});
  int64_t orphan = enqueue({"enqueue", "echo", "--payload", R"({"n":"orphan"})", "--depends-on",
                            std::to_string(a) + "," + std::to_string(bad)});
  EXPECT_EQ(status(b)["state"], "waiting");
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--concurrency", "4", "--poll-interval", "0.05"},
      env_);
  ASSERT_TRUE(wait_state(c, "completed", 30s)) << runner.log();
  auto ts = [&](int64_t id, const char* col) {
    return q("SELECT " + std::string(col) + " FROM jr_jobs_done WHERE id = " + std::to_string(id));
  };
  EXPECT_LE(ts(a, "finished_at"), ts(b, "started_at"));
  EXPECT_LE(ts(b, "finished_at"), ts(c, "started_at"));
  ASSERT_TRUE(wait_state(orphan, "cancelled", 20s));
  auto s = status(orphan);
  EXPECT_EQ(s["errors"][0]["kind"], "dependency");
  EXPECT_NE(s["errors"][0]["message"].get<std::string>().find(std::to_string(bad)),
            std::string::npos);
  auto r =
      jrtest::run_runner({"enqueue", "echo", "--payload", "{}", "--depends-on", "424242"}, env_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("424242"), std::string::npos) << r.err;
}

TEST_F(Flow, AFloodInOneQueueDoesNotStarveAnother) {
  enqueue_many("echo", 10000, "{}", {"--queue", "A"});
  auto b = enqueue_many("echo", 10, "{}", {"--queue", "B"});
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--concurrency", "8"}, env_);
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM jr_jobs_done WHERE queue = 'B'") == 10; }, 60s));
  int64_t a_done = count(
      "SELECT count(*) FROM jr_jobs_done WHERE queue = 'A' AND finished_at <= (SELECT "
      "max(started_at) FROM jr_jobs_done WHERE queue = 'B')");
  std::printf("fairness: %lld of 10,000 A jobs were done when the last B job started\n",
              static_cast<long long>(a_done));
  EXPECT_LT(a_done, 500);
  (void)b;
}

TEST_F(Flow, PauseHoldsAcrossRunnersAndResumeReleases) {
  ASSERT_EQ(jrtest::run_runner({"queue", "pause", "held"}, env_).exit_code, 0);
  enqueue_many("echo", 20, "{}", {"--queue", "held"});
  int64_t free_job = enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "free"});
  std::string plugins = plugin_dir_with({echo_so()});
  RunnerProcess a({"--plugins", plugins}, env_), b({"--plugins", plugins}, env_);
  ASSERT_TRUE(wait_state(free_job, "completed", 20s));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE queue = 'held' AND state <> "
                  "'available'"),
            0);
  auto ls = jrtest::run_runner({"queue", "ls"}, env_);
  EXPECT_NE(ls.out.find("held"), std::string::npos);
  ASSERT_EQ(jrtest::run_runner({"queue", "resume", "held"}, env_).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return completed() == 21; }, 20s));
}

TEST_F(Flow, QueuePatternServesNewQueuesWithoutRestart) {
  int64_t first =
      enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "contest:submissions:1"});
  int64_t other = enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "contest:other"});
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--queues", "contest:submissions:*"}, env_);
  ASSERT_TRUE(wait_state(first, "completed", 20s));
  int64_t later =
      enqueue({"enqueue", "echo", "--payload", "{}", "--queue", "contest:submissions:99"});
  ASSERT_TRUE(wait_state(later, "completed", 20s));
  EXPECT_EQ(status(other)["state"], "available");
}

TEST_F(Flow, IdleHookRunsWhenIdleOneRunnerAtATime) {
  std::string record = dir_.path() + "/idle.log";
  jrtest::shared_file(record);
  std::string cfg =
      config("[plugins.idler]\nrecord_file = \"" + record +
             "\"\n[plugins.idler.sandbox]\nwritable_config_keys = [\"record_file\"]\n");
  std::string plugins = plugin_dir_with({test_so("idler", "idler")});
  RunnerProcess a({"--plugins", plugins, "--config", cfg}, env_);
  RunnerProcess b({"--plugins", plugins, "--config", cfg}, env_);
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM jr_jobs_all WHERE kind = 'idler'") >= 6; }, 30s))
      << a.log();
  a.signal(SIGTERM);
  b.signal(SIGTERM);
  a.wait(10s);
  b.wait(10s);
  std::vector<std::pair<int64_t, int64_t>> spans;
  std::ifstream in(record);
  int64_t s, e;
  while (in >> s >> e) spans.push_back({s, e});
  std::sort(spans.begin(), spans.end());
  ASSERT_GE(spans.size(), 6u);
  for (size_t i = 1; i < spans.size(); ++i) {
    EXPECT_GE(spans[i].first, spans[i - 1].second) << "two idle calls overlapped";
  }
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE kind = 'idler'"),
            static_cast<int64_t>(spans.size()));
}

}  // namespace
