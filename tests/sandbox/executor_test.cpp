// SandboxExecutor with well-behaved plugins: results and host calls travel over the IPC channel,
// the layers are reported (or their degradation logged), workers are pooled, recycled and
// restarted, the plugin config reaches init, and `plugins check` prints the effective policy.
// Through the executor with a fake HostServices; the engine integration is tested by the lead.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <functional>
#include <iostream>
#include <sstream>

#include "identity.hpp"
#include "sandbox_support.hpp"

using jr::sandbox::Restart;
using jr::sandbox::SandboxOptions;
using namespace sbtest;

namespace {

std::unique_ptr<jr::sandbox::SandboxExecutor> good(
    SandboxOptions o = {}, const nlohmann::json& cfg = nlohmann::json::object()) {
  auto e = make(hostile("good"), cfg, o);
  e->start();
  return e;
}

TEST(Sandbox, EchoResultTravelsBack) {
  FakeServices s;
  auto e = make(echo_path(), nlohmann::json::object(), {});
  e->start();
  JobRun r = run_job(*e, "echo", R"({"hello":"world"})", &s, 5000);
  EXPECT_EQ(r.out.status, JR_OK);
  EXPECT_FALSE(r.out.host_error_kind.has_value());
  EXPECT_EQ(r.result, R"({"hello":"world"})");
  JobRun p = run_job(*e, "echo", R"({"fail":"permanent"})", &s, 5000);
  EXPECT_EQ(p.out.status, JR_ERR_PERMANENT);
  EXPECT_EQ(p.error, "permanent failure on purpose");
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  EXPECT_EQ(e->counters().jobs.load(), 2u);
}

TEST(Sandbox, HostCallsAreForwarded) {
  FakeServices s;
  auto e = good();
  JobRun t = run_job(*e, "hostile_good", "\"threads\"", &s, 5000);
  EXPECT_EQ(t.out.status, JR_OK) << t.error;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(s.logged("hello from thread " + std::to_string(i)));
  JobRun q = run_job(*e, "hostile_good", "\"enqueue\"", &s, 5000);
  EXPECT_EQ(q.result, R"({"id":4243})");
  ASSERT_EQ(s.enqueued.size(), 1u);
  EXPECT_EQ(s.enqueued[0].kind, "echo");
  EXPECT_EQ(s.enqueued[0].payload, R"({"x":1})");
  EXPECT_EQ(s.enqueued[0].options, R"({"queue":"q"})");
  JobRun p = run_job(*e, "hostile_good", "\"progress\"", &s, 5000);
  ASSERT_EQ(s.progress.size(), 1u);
  EXPECT_EQ(s.progress[0].first, 50.0);
  EXPECT_EQ(s.progress[0].second, "halfway");
  JobRun z = run_job(*e, "hostile_good", "\"snooze\"", &s, 5000);
  EXPECT_EQ(z.out.status, JR_SNOOZE);
  EXPECT_EQ(z.snooze, 7.5);
  JobRun b = run_job(*e, "hostile_good", "\"permanent\"", &s, 5000);
  EXPECT_EQ(b.out.status, JR_ERR_PERMANENT);
  EXPECT_EQ(b.error, "bad input");
  JobRun sc = run_job(*e, "hostile_good", "\"scratch\"", &s, 5000);
  EXPECT_EQ(sc.out.status, JR_OK) << sc.error;
  EXPECT_EQ(e->counters().workers_started.load(), 1u);  // one warm worker served them all
}

TEST(Sandbox, CooperativeCancellationReachesTheWorker) {
  FakeServices s;
  auto e = good();
  JobRun r = run_job(*e, "hostile_good", "\"cancel_wait\"", &s, 0, 50, jr::kCancelUser);
  EXPECT_EQ(r.out.status, JR_CANCELLED);
  EXPECT_FALSE(r.out.host_error_kind.has_value());
  EXPECT_LT(r.elapsed_ms, 1000);
  EXPECT_EQ(e->counters().restarts_for(Restart::cancelled), 0u);  // it stopped by itself
  // Deadline: the worker sees is_cancelled() too.
  JobRun d = run_job(*e, "hostile_good", "\"cancel_wait\"", &s, 100);
  EXPECT_EQ(d.out.status, JR_CANCELLED);
}

TEST(Sandbox, WorkerIsConfinedAndReportsItsLayers) {
  FakeServices s;
  SandboxOptions o;
  LogCapture logs;
  logs.attach(o);
  auto e = good(o);
  nlohmann::json L = e->layers();
  EXPECT_EQ(L["pdeathsig"], "applied");
  EXPECT_EQ(L["no_new_privs"], "applied");
  EXPECT_EQ(L["environment"], "cleared");
  EXPECT_EQ(L["rlimits"]["RLIMIT_CORE"], 0);
  EXPECT_EQ(L["rlimits"]["RLIMIT_NOFILE"], 256);
  EXPECT_EQ(L["seccomp"], "applied (allowlist, kill on violation)");
  if (kernel_landlock_abi() > 0) {
    EXPECT_EQ(L["landlock"]["status"], "applied");
    EXPECT_EQ(L["landlock"]["abi"], kernel_landlock_abi());
  } else {
    EXPECT_TRUE(logs.has("sandbox layer degraded"));
  }
  if (geteuid() == 0) {
    // A uid of its own, allocated from the documented range.
    EXPECT_GE(L["user"]["uid"].get<int64_t>(), jr::sandbox::kUidBase);
    EXPECT_LT(L["user"]["uid"].get<int64_t>(),
              int64_t{jr::sandbox::kUidBase} + jr::sandbox::kUidSlots);
    EXPECT_EQ(L["user"]["source"], "allocated");
    EXPECT_EQ(L["netns"], "applied (empty network namespace)");
  } else {
    EXPECT_EQ(L["netns"].get<std::string>().rfind("degraded", 0), 0u);
    EXPECT_TRUE(logs.has("sandbox layer degraded"));
  }
  JobRun env = run_job(*e, "hostile_good", "\"env\"", &s, 5000);
  nlohmann::json j = nlohmann::json::parse(env.result);
  EXPECT_EQ(j["env"], 2);  // TMPDIR and HOME only
  if (geteuid() == 0) {
    EXPECT_EQ(j["uid"], L["user"]["uid"]);
    EXPECT_EQ(e->uid(), L["user"]["uid"]);
  }
  JobRun fds = run_job(*e, "hostile_good", "\"fds\"", &s, 5000);
  // 0 (/dev/null), 1-2 (its output pipes), the IPC socket; the shared page is mapped, not open.
  EXPECT_EQ(fds.result, R"({"fds":4})");
}

TEST(Sandbox, MissingKernelLayersDegradeWithAWarning) {
  FakeServices s;
  SandboxOptions o;
  o.simulate_missing = {"landlock", "seccomp", "netns"};
  LogCapture logs;
  logs.attach(o);
  auto e = good(o);
  nlohmann::json L = e->layers();
  for (const char* layer : {"landlock", "seccomp", "netns"}) {
    ASSERT_TRUE(L[layer].is_string()) << layer;
    EXPECT_EQ(L[layer].get<std::string>().rfind("degraded", 0), 0u) << L[layer];
  }
  EXPECT_EQ(logs.count("sandbox layer degraded"), 3);
  JobRun r = run_job(*e, "hostile_good", "\"threads\"", &s, 5000);
  EXPECT_EQ(r.out.status, JR_OK);
  // A second worker does not repeat the warnings.
  auto e2 = make(hostile("good"), nlohmann::json::object(), o);
  e2->start();
  EXPECT_EQ(logs.count("sandbox layer degraded"), 6);  // per executor, not per worker
}

TEST(Sandbox, PoolServesConcurrentCallers) {
  SandboxOptions o;
  o.pool_size = 3;
  o.warm_workers = 3;  // every worker from the start: none is started on demand below
  auto e = make(echo_path(), nlohmann::json::object(), o);
  e->start();
  EXPECT_EQ(e->counters().workers_started.load(), 3u);
  std::atomic<int> ok{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      FakeServices s;
      for (int i = 0; i < 50; ++i) {
        std::string p = R"({"i":)" + std::to_string(i) + R"(,"t":)" + std::to_string(t) + "}";
        JobRun r = run_job(*e, "echo", p, &s, 10000);
        if (r.out.status == JR_OK && r.result == p) ++ok;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(ok.load(), 300);
  EXPECT_EQ(e->counters().workers_started.load(), 3u);
}

// A pool starts its warm workers only; a job that finds them all busy starts a worker of its own
// once every busy worker has been on its job as long as a start takes. Slow jobs thus grow the
// pool to its full size and run side by side; one caller at a time never waits, and never
// starts one.
TEST(Sandbox, ThePoolStartsItsWarmWorkersAndGrowsWhileTheyAreOnSlowJobs) {
  SandboxOptions o;
  o.pool_size = 4;
  o.warm_workers = 1;
  auto e = make(echo_path(), nlohmann::json::object(), o);
  e->start();
  EXPECT_EQ(e->warm_workers(), 1);
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  EXPECT_EQ(e->parallelism(), 1u);  // the engine sizes its groups of short jobs by it
  {
    FakeServices s;  // one caller at a time never waits for a worker: no growth
    for (int i = 0; i < 20; ++i) ASSERT_EQ(run_job(*e, "echo", "{}", &s, 5000).out.status, JR_OK);
  }
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  // Four callers at once, each one job; returns the seconds until all four are done.
  auto four_at_once = [&](const char* payload) {
    std::atomic<int> ok{0};
    std::vector<std::thread> ts;
    auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < 4; ++t) {
      ts.emplace_back([&] {
        FakeServices s;
        if (run_job(*e, "echo", payload, &s, 10000).out.status == JR_OK) ++ok;
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(ok.load(), 4) << payload;
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // Jobs of 600 ms: the three callers that find the worker busy each start one, and the four
  // run side by side (one after the other would take 2.4 s).
  EXPECT_LT(four_at_once(R"({"sleep_ms":600})"), 1.8);
  EXPECT_EQ(e->counters().workers_started.load(), 4u);
  // Grown, the pool stays: four callers again start no worker, and it runs four at once.
  four_at_once(R"({"sleep_ms":100})");
  EXPECT_EQ(e->counters().workers_started.load(), 4u);
  EXPECT_EQ(e->parallelism(), 4u);
}

// The wait for a free worker is reported apart from the job's own time (the engine's average job
// time, which sizes its groups, must not count it).
TEST(Sandbox, AJobsWaitForAFreeWorkerIsReportedApart) {
  SandboxOptions o;
  o.pool_size = 1;
  auto e = make(echo_path(), nlohmann::json::object(), o);
  e->start();
  FakeServices s;
  JobRun free_worker = run_job(*e, "echo", "{}", &s, 5000);
  ASSERT_EQ(free_worker.out.status, JR_OK);
  EXPECT_LT(free_worker.out.waited_us, 100000);
  std::thread slow([&] {
    FakeServices s2;
    EXPECT_EQ(run_job(*e, "echo", R"({"sleep_ms":500})", &s2, 5000).out.status, JR_OK);
  });
  // The slow job holds the only worker (it may take a moment to reach it).
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  JobRun behind = run_job(*e, "echo", "{}", &s, 5000);
  slow.join();
  ASSERT_EQ(behind.out.status, JR_OK);
  EXPECT_GT(behind.out.waited_us, 200000) << "it waited for the slow job's worker";
  EXPECT_LE(behind.out.waited_us, behind.elapsed_ms * 1000 + 1000);
}

TEST(Sandbox, APoolOfNoWarmSizeStartsAsManyWorkersAsCpusAtMostItsSize) {
  SandboxOptions o;
  o.pool_size = 64;
  auto e = make(echo_path(), nlohmann::json::object(), o);
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  const int cpus = std::min(64, CPU_COUNT(&set));
  EXPECT_EQ(e->warm_workers(), cpus);
  e->start();
  EXPECT_EQ(e->counters().workers_started.load(), static_cast<uint64_t>(cpus));
  SandboxOptions small;
  small.pool_size = 1;
  small.warm_workers = 8;  // never above the pool
  EXPECT_EQ(make(echo_path(), nlohmann::json::object(), small)->warm_workers(), 1);
}

TEST(Sandbox, WorkersAreRecycledAfterMaxJobsAndAboveTheRssLimit) {
  FakeServices s;
  SandboxOptions o;
  LogCapture logs;
  logs.attach(o);
  auto e = make(echo_path(), {{"sandbox", {{"max_jobs", 3}}}}, o);
  e->start();
  for (int i = 0; i < 7; ++i) EXPECT_EQ(run_job(*e, "echo", "{}", &s, 5000).out.status, JR_OK);
  EXPECT_EQ(e->counters().restarts_for(Restart::recycle), 2u);
  EXPECT_EQ(e->counters().workers_started.load(), 3u);
  EXPECT_TRUE(logs.has("sandbox worker recycled"));
  auto r = make(echo_path(), {{"sandbox", {{"max_rss_mb", 1}}}}, o);
  r->start();
  EXPECT_EQ(run_job(*r, "echo", "{}", &s, 5000).out.status, JR_OK);
  EXPECT_EQ(r->counters().restarts_for(Restart::recycle), 1u);
}

TEST(Sandbox, PluginConfigReachesInitInTheWorker) {
  try {
    good({}, {{"refuse_init", true}});
    ADD_FAILURE() << "init should have refused";
  } catch (const jr::sandbox::SandboxError& e) {
    EXPECT_NE(std::string(e.what()).find("init refused on purpose"), std::string::npos) << e.what();
  }
}

TEST(Sandbox, DescribeReadsTheDescriptorWithoutLoadingThePlugin) {
  jr::LoadedPlugin p = jr::sandbox::describe_in_sandbox(echo_path());
  EXPECT_EQ(p.name, "echo");
  EXPECT_EQ(p.version, "1.0.0");
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].kind, "echo");
  EXPECT_EQ(p.kinds[0].default_queue, "default");
  EXPECT_EQ(p.manifest["sandbox"]["network"], "none");
  EXPECT_EQ(p.desc, nullptr);
  // Refusals carry load_plugin's own text.
  EXPECT_THROW(jr::sandbox::describe_in_sandbox("/nonexistent.so"), jr::PluginError);
  try {
    jr::sandbox::describe_in_sandbox(jrtest::test_plugin_dir() +
                                     "/wrong_major/libjr_t_wrong_major.so");
    ADD_FAILURE();
  } catch (const jr::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("ABI major version"), std::string::npos) << e.what();
  }
}

TEST(Sandbox, IsolationAndPolicyComeFromManifestAndConfig) {
  jr::LoadedPlugin p = jr::sandbox::describe_in_sandbox(echo_path());
  EXPECT_EQ(jr::sandbox::isolation_of(p, nlohmann::json::object()), "sandbox");
  EXPECT_EQ(jr::sandbox::isolation_of(p, {{"isolation", "none"}}), "none");
  EXPECT_THROW(jr::sandbox::isolation_of(p, {{"isolation", "maybe"}}), jr::sandbox::SandboxError);
  auto pol = jr::sandbox::policy_for(p, {{"sandbox", {{"memory_mb", 64}}}});
  EXPECT_EQ(pol.memory_mb, 64);
  EXPECT_EQ(pol.network, jr::sandbox::Network::none);  // from the manifest
}

jr::sandbox::TrustContext trust_with(const nlohmann::json& sections) {
  jr::sandbox::TrustContext c;
  c.sections = sections;
  return c;
}

TEST(Sandbox, PluginsCheckPrintsDescriptorPolicyAndLayers) {
  std::stringstream out;
  auto* old = std::cout.rdbuf(out.rdbuf());
  int rc = jr::sandbox::cmd_plugins_check(
      echo_path(), trust_with({{"echo", {{"sandbox", {{"memory_mb", 128}}}}}}), true);
  std::cout.rdbuf(old);
  ASSERT_EQ(rc, 0) << out.str();
  nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["name"], "echo");
  EXPECT_EQ(j["abi"], "1.1");
  EXPECT_EQ(j["kinds"][0]["kind"], "echo");
  EXPECT_EQ(j["policy"]["memory_mb"], 128);
  EXPECT_EQ(j["policy"]["network"], "none");
  EXPECT_EQ(j["isolation"], "sandbox");
  EXPECT_EQ(j["layers"]["rlimits"]["RLIMIT_AS"], 128 << 20);
  EXPECT_EQ(j["layers"]["seccomp"], "applied (allowlist, kill on violation)");
  std::stringstream human;
  old = std::cout.rdbuf(human.rdbuf());
  rc = jr::sandbox::cmd_plugins_check(echo_path(), trust_with(nlohmann::json::object()), false);
  std::cout.rdbuf(old);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(human.str().find("plugin     echo 1.0.0 (ABI 1.1)"), std::string::npos) << human.str();
  EXPECT_NE(human.str().find("layer      seccomp: applied"), std::string::npos);
  EXPECT_EQ(jr::sandbox::cmd_plugins_check("/nonexistent.so", trust_with(nlohmann::json::object()),
                                           false),
            1);
}

}  // namespace

// Several jobs handed to one worker at once (Executor::run_batch, what the engine does while its
// local queue is deep and jobs are short): each is still its own attempt, with its own outcome,
// deadline, cancellation and host calls, and a worker lost to one job loses no other.
namespace {

struct BatchRun {
  struct Job {
    std::string payload;
    int64_t timeout_ms = 0;
    jr_job_ctx ctx;
    jr_job j{};
    int64_t started_at = -1;  // order of started(), -1 = never
    int64_t finished_at = -1;
    jr::ExecOutcome out;
    std::string result;
  };
  std::vector<std::unique_ptr<Job>> jobs;
  std::function<bool(size_t)> may_send = [](size_t) { return true; };
  std::atomic<int> started{0};  // started() calls so far, for other threads

  BatchRun(const std::vector<std::string>& payloads, FakeServices* s, int64_t timeout_ms = 0) {
    static std::atomic<int64_t> next_id{100000};
    for (const auto& p : payloads) {
      auto b = std::make_unique<Job>();
      b->payload = p;
      b->timeout_ms = timeout_ms;
      b->ctx.job_id = next_id++;
      b->ctx.attempt = 1;
      b->ctx.kind = "hostile_good";
      b->ctx.services = s;
      b->j.struct_size = sizeof(jr_job);
      b->j.id = b->ctx.job_id;
      b->j.kind = "hostile_good";
      b->j.queue = "default";
      b->j.payload = b->payload.c_str();
      b->j.payload_len = b->payload.size();
      b->j.attempt = 1;
      b->j.max_attempts = 3;
      jobs.push_back(std::move(b));
    }
  }

  void run(jr::Executor& e) {
    class Sink : public jr::BatchSink {
     public:
      explicit Sink(BatchRun* r) : r_(r) {}
      bool may_send(size_t i) override { return r_->may_send(i); }
      void started(size_t i, int64_t) override {
        EXPECT_EQ(r_->jobs[i]->started_at, -1) << "started twice: job " << i;
        r_->jobs[i]->started_at = seq_++;
        r_->started.fetch_add(1);
      }
      void finished(size_t i, jr::ExecOutcome out) override {
        Job& b = *r_->jobs[i];
        EXPECT_EQ(b.finished_at, -1) << "finished twice: job " << i;
        b.finished_at = seq_++;
        b.out = std::move(out);
        std::lock_guard<std::mutex> lock(b.ctx.mu);
        b.result = b.ctx.result;
      }

     private:
      BatchRun* r_;
      int64_t seq_ = 0;
    } sink(this);
    std::vector<jr::BatchJob> batch;
    for (auto& b : jobs) batch.push_back({&b->j, &b->ctx, b->timeout_ms});
    e.run_batch(batch, sink);
    for (size_t i = 0; i < jobs.size(); ++i) {
      EXPECT_GE(jobs[i]->finished_at, 0) << "job " << i << " got no outcome";
    }
  }
  int pid(size_t i) const {
    auto j = nlohmann::json::parse(jobs[i]->result, nullptr, false);
    return j.is_object() ? j.value("pid", -1) : -1;
  }
};

}  // namespace

TEST(SandboxBatch, EachJobRunsOnceInOrderOnOneWorker) {
  FakeServices s;
  auto e = good();
  ASSERT_GT(e->batch_limit(), 1u);
  BatchRun b(std::vector<std::string>(8, "\"pid\""), &s);
  b.run(*e);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(b.jobs[i]->out.status, JR_OK) << i;
    EXPECT_FALSE(b.jobs[i]->out.host_error_kind.has_value()) << i;
    EXPECT_EQ(b.pid(i), b.pid(0)) << i;
    if (i > 0) {
      EXPECT_GT(b.jobs[i]->started_at, b.jobs[i - 1]->started_at);
    }
    EXPECT_LT(b.jobs[i]->started_at, b.jobs[i]->finished_at);
  }
  EXPECT_GT(b.pid(0), 0);
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  EXPECT_EQ(e->counters().jobs.load(), 8u);
  // Each job's log line is its own.
  std::lock_guard<std::mutex> lock(s.mu);
  ASSERT_EQ(s.logs.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(s.logs[i].job_id, b.jobs[i]->ctx.job_id);
}

TEST(SandboxBatch, ACrashEndsOnlyTheRunningJobTheRestRunOnTheReplacement) {
  FakeServices s;
  auto e = good();
  BatchRun b({"\"pid\"", "\"pid\"", "\"crash\"", "\"pid\"", "\"pid\""}, &s);
  b.run(*e);
  EXPECT_EQ(b.jobs[0]->out.status, JR_OK);
  EXPECT_EQ(b.jobs[1]->out.status, JR_OK);
  EXPECT_EQ(b.jobs[2]->out.host_error_kind, jr::ErrorKind::crash) << b.jobs[2]->out.host_error;
  EXPECT_FALSE(b.jobs[2]->out.release);
  for (size_t i : {3, 4}) {
    EXPECT_EQ(b.jobs[i]->out.status, JR_OK) << i;
    EXPECT_FALSE(b.jobs[i]->out.release) << i;
    EXPECT_FALSE(b.jobs[i]->out.host_error_kind.has_value()) << i;
  }
  EXPECT_EQ(b.pid(0), b.pid(1));
  EXPECT_NE(b.pid(3), b.pid(0));  // a new worker
  EXPECT_EQ(b.pid(3), b.pid(4));
  EXPECT_EQ(e->counters().workers_started.load(), 2u);
}

TEST(SandboxBatch, EachJobsDeadlineCountsFromItsOwnStart) {
  FakeServices s;
  auto e = good();
  // 4 x 300 ms with a timeout of 1 s each: the batch takes 1.2 s, each job 300 ms (the margin
  // is wide so a loaded machine does not push a job past its own deadline).
  BatchRun ok(std::vector<std::string>(4, "\"sleep_300\""), &s, 1000);
  ok.run(*e);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ok.jobs[i]->out.status, JR_OK) << i << ": " << ok.jobs[i]->out.host_error;
    EXPECT_FALSE(ok.jobs[i]->out.host_error_kind.has_value()) << i;
  }
  // One that ignores its deadline is killed; the ones behind it run on a new worker.
  BatchRun h({"\"pid\"", "\"hang\"", "\"pid\"", "\"pid\""}, &s, 1500);
  h.run(*e);
  EXPECT_EQ(h.jobs[0]->out.status, JR_OK);
  EXPECT_EQ(h.jobs[1]->out.host_error_kind, jr::ErrorKind::timeout) << h.jobs[1]->out.host_error;
  EXPECT_EQ(h.jobs[2]->out.status, JR_OK);
  EXPECT_EQ(h.jobs[3]->out.status, JR_OK);
  EXPECT_NE(h.pid(2), h.pid(0));
}

TEST(SandboxBatch, AJobCancelledBeforeItStartsDoesNotRun) {
  FakeServices s;
  auto e = good();
  BatchRun b({"\"sleep_1500\"", "\"pid\"", "\"pid\""}, &s);
  std::thread canceller([&] {
    // While job 0 runs (it started, and its 1.5 s are far from over): job 1's frame waits in
    // the worker's socket by then, or is about to be sent; either way it must not run.
    while (b.started.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    b.jobs[1]->ctx.cancel.store(jr::kCancelUser);
  });
  b.run(*e);
  canceller.join();
  EXPECT_EQ(b.jobs[0]->out.status, JR_OK);
  EXPECT_EQ(b.jobs[1]->out.status, JR_CANCELLED);
  EXPECT_FALSE(b.jobs[1]->out.host_error_kind.has_value());
  EXPECT_EQ(b.jobs[2]->out.status, JR_OK);
  std::lock_guard<std::mutex> lock(s.mu);
  for (const auto& l : s.logs) EXPECT_NE(l.job_id, b.jobs[1]->ctx.job_id) << "job 1 ran";
  EXPECT_EQ(s.logs.size(), 1u);  // job 2's
}

// Host calls that wait for a reply (enqueue, parent_results) while the next jobs' frames sit
// in front of the reply in the worker's socket: the worker keeps those frames for later.
TEST(SandboxBatch, HostCallsWorkWithJobsSentAhead) {
  FakeServices s;
  auto e = good();
  BatchRun b(std::vector<std::string>(6, "\"enqueue\""), &s);
  b.run(*e);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(b.jobs[i]->out.status, JR_OK) << i << ": " << b.jobs[i]->out.host_error;
    EXPECT_FALSE(b.jobs[i]->out.host_error_kind.has_value())
        << i << ": " << b.jobs[i]->out.host_error;
  }
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  std::lock_guard<std::mutex> lock(s.mu);
  EXPECT_EQ(s.enqueued.size(), 6u);
}

// Cancelled before its frame was written (the running job, or one sent ahead): it is marked
// before the worker can read it, so it never starts, however fast the worker is.
TEST(SandboxBatch, AJobCancelledBeforeItWasSentDoesNotStart) {
  FakeServices s;
  auto e = good();
  BatchRun b({"\"pid\"", "\"pid\"", "\"pid\"", "\"pid\""}, &s);
  b.jobs[0]->ctx.cancel.store(jr::kCancelUser);
  b.jobs[2]->ctx.cancel.store(jr::kCancelUser);
  b.run(*e);
  EXPECT_EQ(b.jobs[0]->out.status, JR_CANCELLED);
  EXPECT_EQ(b.jobs[1]->out.status, JR_OK);
  EXPECT_EQ(b.jobs[2]->out.status, JR_CANCELLED);
  EXPECT_EQ(b.jobs[3]->out.status, JR_OK);
  std::lock_guard<std::mutex> lock(s.mu);
  ASSERT_EQ(s.logs.size(), 2u);  // "ran pid" of jobs 1 and 3 only
  EXPECT_EQ(s.logs[0].job_id, b.jobs[1]->ctx.job_id);
  EXPECT_EQ(s.logs[1].job_id, b.jobs[3]->ctx.job_id);
}

// The plugin's jr_job.deadline_ms counts from the job's own start, not from when the batch
// was handed over: the second job, started 300 ms in, still has its whole second.
TEST(SandboxBatch, ThePluginSeesItsOwnDeadline) {
  FakeServices s;
  auto e = good();
  BatchRun b({"\"sleep_300\"", "\"deadline\""}, &s, 1000);
  b.run(*e);
  ASSERT_EQ(b.jobs[1]->out.status, JR_OK) << b.jobs[1]->out.host_error;
  auto j = nlohmann::json::parse(b.jobs[1]->result, nullptr, false);
  ASSERT_TRUE(j.is_object()) << b.jobs[1]->result;
  EXPECT_GT(j.value("left_ms", -1), 900) << b.jobs[1]->result;
  EXPECT_LE(j.value("left_ms", -1), 1000) << b.jobs[1]->result;
}

TEST(SandboxBatch, AStopReleasesTheJobsNotYetHandedOver) {
  FakeServices s;
  auto e = good();
  BatchRun b(std::vector<std::string>(5, "\"pid\""), &s);
  b.may_send = [](size_t) { return false; };  // the engine is stopping
  b.run(*e);
  EXPECT_EQ(b.jobs[0]->out.status, JR_OK);
  for (size_t i = 1; i < 5; ++i) {
    EXPECT_TRUE(b.jobs[i]->out.release) << i;
    EXPECT_EQ(b.jobs[i]->started_at, -1) << i;
  }
  EXPECT_EQ(e->counters().jobs.load(), 1u);
}

TEST(SandboxBatch, MaxJobsRecyclesBetweenJobsOfABatch) {
  FakeServices s;
  auto e = make(hostile("good"), {{"sandbox", {{"max_jobs", 3}}}}, {});
  e->start();
  BatchRun b(std::vector<std::string>(8, "\"pid\""), &s);
  b.run(*e);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(b.jobs[i]->out.status, JR_OK) << i;
    EXPECT_EQ(b.pid(i), b.pid(i / 3 * 3)) << i;  // three jobs per worker
  }
  EXPECT_NE(b.pid(0), b.pid(3));
  EXPECT_NE(b.pid(3), b.pid(6));
  EXPECT_EQ(e->counters().restarts_for(Restart::recycle), 2u);
}
