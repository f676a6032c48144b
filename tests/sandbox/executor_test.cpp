// SandboxExecutor with well-behaved plugins: results and host calls travel over the IPC channel,
// the layers are reported (or their degradation logged), workers are pooled, recycled and
// restarted, the plugin config reaches init, and `plugins check` prints the effective policy.
// Through the executor with a fake HostServices; the engine integration is tested by the lead.
#include <gtest/gtest.h>
#include <unistd.h>

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
  EXPECT_TRUE(r.out.host_error_kind.empty());
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
  EXPECT_TRUE(r.out.host_error_kind.empty());
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
