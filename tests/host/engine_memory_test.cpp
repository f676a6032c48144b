// The engine's decisions without a database: the real Engine (claiming, execution, outcomes,
// lease renewal, maintenance, shutdown) on the in-memory store (memory://, host/store/
// mem_store.hpp) with the echo plugin loaded in-process. The in-memory store's behaviour is
// pinned to PostgreSQL's by the contract suite (store_contract_test.cpp); these cases pin the
// engine's own rules, and run in seconds (`ctest -L unit`).
//
// Time: the store reads its now() from a ManualClock where a case is about scheduled time (a
// retry due in 60 s runs as soon as the test moves the clock 60 s on), and from the real clock
// where the engine's own timers matter (lease renewal runs on the engine's monotonic clock).
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "clock.hpp"
#include "engine.hpp"
#include "executor.hpp"
#include "harness.hpp"
#include "mem_store.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

namespace jr {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

class EngineOnMemory : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    url_ = "memory://engine-" + std::to_string(++n);
    memory_store_drop(url_);
    plugin_ = load_plugin(jrtest::plugin_dir() + "/libjr_echo.so");
    init_plugin(plugin_, json::object());
    store_ = Store::open(url_);
  }
  void TearDown() override {
    stop();
    if (plugin_.initialised && plugin_.desc->shutdown) plugin_.desc->shutdown(plugin_.state);
    memory_store_drop(url_);
  }

  void start(const std::function<void(EngineOptions&)>& tune = {},
             std::map<std::string, std::unique_ptr<Executor>> executors = {}) {
    EngineOptions o;
    o.database_url = url_;
    o.worker_id = "w1";
    o.concurrency = 4;
    o.poll_interval_seconds = 0.05;
    o.rescue_interval_seconds = 0.1;
    o.shutdown_grace_seconds = 5;
    if (tune) tune(o);
    engine_ = std::make_unique<Engine>(o, std::vector<LoadedPlugin*>{&plugin_},
                                       std::vector<std::string>{}, std::move(executors));
    thread_ = std::thread([this] { rc_ = engine_->run(); });
  }
  void stop() {
    if (!engine_) return;
    engine_->stop();
    if (thread_.joinable()) thread_.join();
    engine_.reset();
  }

  int64_t enqueue(const json& payload, const std::function<void(JobInsertParams&)>& tune = {}) {
    JobInsertParams p;
    p.kind = "echo";
    p.payload = payload.dump();
    if (tune) tune(p);
    return store_->JobInsert(p);
  }
  json job(int64_t id) {
    auto v = store_->JobGet(id);
    return v ? json::parse(v->json) : json();
  }
  std::string state(int64_t id) { return job(id).value("state", "(none)"); }
  bool wait_state(int64_t id, const std::string& want, seconds limit = seconds(20)) {
    return jrtest::wait_until([&] { return state(id) == want; }, limit);
  }
  int count(const std::string& st) {
    JobListParams lp;
    lp.state = st;
    lp.limit = 100000;
    return static_cast<int>(store_->JobList(lp).size());
  }

  std::string url_;
  LoadedPlugin plugin_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Engine> engine_;
  std::thread thread_;
  int rc_ = -1;
};

// An executor like a sandbox pool of `width` workers: it takes groups of up to 16 jobs, runs at
// most `width` of them at once (the others wait, as slots wait for a worker), and each group
// costs a round trip (`trip`). It runs the echo plugin in-process and records each group's size.
class PoolLikeExecutor final : public Executor {
 public:
  PoolLikeExecutor(LoadedPlugin* plugin, size_t width) : inner_(plugin), width_(width) {}
  ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline) override {
    std::vector<BatchJob> one{{&job, &ctx, 0}};
    struct One final : BatchSink {
      ExecOutcome out;
      bool may_send(size_t) override { return true; }
      void started(size_t, int64_t) override {}
      void finished(size_t, ExecOutcome o) override { out = std::move(o); }
    } sink;
    (void)deadline;
    run_batch(one, sink);
    return std::move(sink.out);
  }
  size_t batch_limit() const override { return 16; }
  size_t parallelism() const override { return width_; }
  void run_batch(const std::vector<BatchJob>& jobs, BatchSink& sink) override {
    auto t0 = std::chrono::steady_clock::now();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return running_ < width_; });
      ++running_;
      sizes_.push_back(jobs.size());
    }
    // The wait for a free worker is reported with the first job, as the sandbox does.
    struct Waited final : BatchSink {
      BatchSink* to;
      int64_t waited_us;
      bool may_send(size_t i) override { return to->may_send(i); }
      void started(size_t i, int64_t ms) override { to->started(i, ms); }
      void finished(size_t i, ExecOutcome o) override {
        if (i == 0) o.waited_us = waited_us;
        to->finished(i, std::move(o));
      }
    } waited;
    waited.to = &sink;
    waited.waited_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    std::this_thread::sleep_for(std::chrono::microseconds(300));  // the round trip
    inner_.Executor::run_batch(jobs, waited);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --running_;
    }
    cv_.notify_one();
  }
  std::vector<size_t> sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }

 private:
  class Inner final : public Executor {
   public:
    explicit Inner(LoadedPlugin* p) : p_(p) {}
    ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t d) override {
      return InProcessExecutor(p_).run(job, ctx, d);
    }

   private:
    LoadedPlugin* p_;
  } inner_;
  size_t width_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t running_ = 0;
  std::vector<size_t> sizes_;
};

// Fifty slots in front of a pool of two workers: the jobs waiting are shared out among the two
// groups that can run at once, not among fifty slots of which 48 would only wait (measured on
// a sandboxed drain: groups of 2.8 jobs on average with 50 slots, 7.5 with 10, so the slots
// made every round trip carry fewer jobs).
TEST_F(EngineOnMemory, GroupsAreSizedForTheExecutorsParallelismNotTheSlotCount) {
  auto pool = std::make_unique<PoolLikeExecutor>(&plugin_, 2);
  PoolLikeExecutor* seen = pool.get();
  std::map<std::string, std::unique_ptr<Executor>> ex;
  ex[plugin_.name] = std::move(pool);
  const int n = 4000;
  for (int i = 0; i < n; ++i) enqueue(json::object());
  start(
      [](EngineOptions& o) {
        o.concurrency = 50;
        o.prefetch = 2000;
      },
      std::move(ex));
  ASSERT_TRUE(jrtest::wait_until([&] { return count("completed") == n; }, seconds(60)))
      << count("completed") << " of " << n << " completed";
  auto sizes = seen->sizes();
  size_t jobs = 0;
  for (size_t s : sizes) jobs += s;
  ASSERT_EQ(jobs, static_cast<size_t>(n));
  double avg = static_cast<double>(jobs) / static_cast<double>(sizes.size());
  // 4,000 jobs in groups of at most 16 are 250 round trips at best; about 420 here (the groups
  // get smaller while the local queue runs low before a claim). Shared among the 50 slots they
  // held about 4 jobs each, about 1,000 round trips.
  EXPECT_GE(avg, 7.0) << sizes.size() << " groups";
}

TEST_F(EngineOnMemory, RunsJobsAndRecordsTheirResults) {
  start();
  std::vector<int64_t> ids;
  for (int i = 0; i < 30; ++i) ids.push_back(enqueue({{"n", i}}));
  ASSERT_TRUE(jrtest::wait_until([&] { return count("completed") == 30; }, seconds(20)))
      << count("completed") << " of 30 completed";
  for (int i = 0; i < 30; ++i) {
    json row = job(ids[static_cast<size_t>(i)]);
    EXPECT_EQ(row["result"], json({{"n", i}})) << "echo returns its payload";
    EXPECT_EQ(row["attempt"], 1);
    EXPECT_EQ(row["worker_id"], "w1");
  }
  EXPECT_EQ(engine_->stats().completed.load(), 30);
  stop();
  EXPECT_EQ(rc_, 0);
}

TEST_F(EngineOnMemory, ARetryableFailureWaitsForItsScheduleNotTheWallClock) {
  auto clock = std::make_shared<ManualClock>();
  memory_store_use_clock(url_, clock);
  start();
  int64_t id = enqueue({{"fail_attempts", 1}}, [](JobInsertParams& p) { p.retry_schedule = "60"; });
  ASSERT_TRUE(wait_state(id, "retryable"));
  json row = job(id);
  EXPECT_EQ(row["errors"][0]["kind"], "error");
  EXPECT_NE(row["errors"][0]["message"].get<std::string>().find("failing attempt 1"),
            std::string::npos);
  // Due 60 s after the failure on the store's clock: the scheduler leaves it until then.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(state(id), "retryable") << "promoted before its time";
  clock->advance(61);
  ASSERT_TRUE(wait_state(id, "completed"));
  EXPECT_EQ(job(id)["attempt"], 2);
}

TEST_F(EngineOnMemory, APermanentFailureIsDeadLetteredAtOnce) {
  start();
  int64_t id = enqueue({{"fail", "permanent"}, {"fail_kind", "bad_input"}});
  ASSERT_TRUE(wait_state(id, "discarded"));
  json row = job(id);
  EXPECT_EQ(row["attempt"], 1) << "no retry for a permanent failure";
  EXPECT_EQ(row["errors"][0]["kind"], "bad_input");
  EXPECT_EQ(store_->DeadLetterList(DeadLetterFilter{}).size(), 1u);
}

TEST_F(EngineOnMemory, RetriesStopAtMaxAttempts) {
  auto clock = std::make_shared<ManualClock>();
  memory_store_use_clock(url_, clock);
  start();
  int64_t id = enqueue({{"fail", "retryable"}}, [](JobInsertParams& p) {
    p.max_attempts = 3;
    p.retry_schedule = "10,20";
  });
  ASSERT_TRUE(wait_state(id, "retryable"));
  clock->advance(11);
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return job(id)["attempt"] == 2 && state(id) == "retryable"; }, seconds(20)));
  clock->advance(21);
  ASSERT_TRUE(wait_state(id, "discarded"));
  json row = job(id);
  EXPECT_EQ(row["attempt"], 3);
  EXPECT_EQ(row["errors"].size(), 3u) << "one entry per attempt";
}

TEST_F(EngineOnMemory, ASnoozeDoesNotUseAnAttempt) {
  start();
  double until = unix_seconds() + 0.5;
  int64_t id = enqueue({{"snooze_until", until}});
  ASSERT_TRUE(wait_state(id, "completed"));
  EXPECT_EQ(job(id)["attempt"], 1) << "the snoozed run gave its attempt back";
  EXPECT_GE(unix_seconds(), until);
}

TEST_F(EngineOnMemory, LeasesAreRenewedWhileAJobRunsPastThem) {
  start([](EngineOptions& o) { o.lease_seconds = 1; });  // renewed every 0.25 s
  int64_t id = enqueue({{"sleep_ms", 2500}});
  ASSERT_TRUE(wait_state(id, "completed", seconds(30)));
  json row = job(id);
  EXPECT_EQ(row["attempt"], 1) << "the rescuer took a live job: " << row.dump();
  EXPECT_TRUE(row["errors"].empty()) << row.dump();
}

TEST_F(EngineOnMemory, ACancelRequestReachesTheRunningHandler) {
  start([](EngineOptions& o) { o.lease_seconds = 2; });
  int64_t id = enqueue({{"sleep_ms", 20000}});
  ASSERT_TRUE(wait_state(id, "running"));
  EXPECT_EQ(store_->JobCancel(id), CancelResult::requested);
  ASSERT_TRUE(wait_state(id, "cancelled", seconds(10)));
}

TEST_F(EngineOnMemory, ShutdownFinishesTheRunningJobAndReleasesThePrefetchedOnes) {
  // All five are queued before the runner starts, so its first claim takes them together: the
  // first runs, the other four are claimed ahead (running in the store, waiting in the engine).
  // (Enqueued after the start, they were claimed as they came, and under ASan the first could
  // finish before the last was claimed: five were never running at once.)
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(enqueue({{"sleep_ms", 2000}}));
  start([](EngineOptions& o) {
    o.concurrency = 1;
    o.prefetch = 4;
  });
  ASSERT_TRUE(jrtest::wait_until([&] { return count("running") == 5; }, seconds(10)));
  stop();
  EXPECT_EQ(rc_, 0);
  EXPECT_EQ(count("running"), 0) << "no job is left leased to a runner that has gone";
  int completed = count("completed"), available = count("available");
  EXPECT_GE(completed, 1) << "the job in progress finishes within the grace";
  EXPECT_EQ(completed + available, 5);
  for (int64_t id : ids) {
    if (state(id) == "available") {
      EXPECT_EQ(job(id)["attempt"], 0) << "a released job is not charged";
    }
  }
}

TEST_F(EngineOnMemory, TheAutomaticPrefetchHoldsMoreWhileTheQueueIsDeep) {
  // 1,200 jobs of ~1 ms on 4 slots. Holding 2 ms of work per slot, the runner claims ~6 jobs
  // at a time (over 200 claims); while its claims come back full it holds 20 ms per slot and
  // claims ~40 at a time (~45 claims, the first few small while its average job time, which
  // starts at 100 ms, comes down).
  for (int i = 0; i < 1200; ++i) enqueue({{"sleep_ms", 1}});
  start([](EngineOptions& o) { o.prefetch = -1; });  // automatic, as `runner` has it by default
  ASSERT_TRUE(jrtest::wait_until([&] { return count("completed") == 1200; }, seconds(120)))
      << count("completed") << " of 1200 completed";
  int64_t claims = engine_->stats().claims.load();
  EXPECT_EQ(engine_->stats().claimed.load(), 1200);
  EXPECT_LE(claims, 100) << "claims of " << 1200 / std::max<int64_t>(1, claims)
                         << " jobs on average: the prefetch did not follow the backlog";
}

TEST_F(EngineOnMemory, AnInsertWakesAnIdleRunnerBeforeItsPoll) {
  start([](EngineOptions& o) { o.poll_interval_seconds = 30; });
  std::this_thread::sleep_for(milliseconds(300));  // idle, waiting on the notification
  int64_t id = enqueue({{"n", 1}});
  EXPECT_TRUE(wait_state(id, "completed", seconds(10))) << "the runner waited for its 30 s poll";
}

}  // namespace
}  // namespace jr
