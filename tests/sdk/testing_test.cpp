// jobrunner/testing.hpp, the plugin authors' harness: every way to reach a plugin (a Plugin
// class, a linked-in entry, a built .so), every outcome class, what it records, its checks of
// descriptors and of ABI misuse, and agreement with the real host on the same plugin file.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <jobrunner/testing.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "plugin_host.hpp"

extern "C" const jr_plugin_desc* jr_plugin_entry_v1(uint32_t) noexcept;  // testing_entry_plugin

namespace {

using jobrunner::testing::Harness;
using jobrunner::testing::HarnessError;
using jobrunner::testing::JobSpec;
using jobrunner::testing::Outcome;

// One op per outcome class and per host function.
class Outcomes : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "outcomes";
    i.version = "0.3";
    i.kinds.push_back({"outcomes", "oq", 1500, 4, "1,2"});
    i.kinds.push_back({"other", "", 0, 0, ""});
    i.manifest = {{"sandbox", {{"network", "loopback"}, {"memory_mb", 64}}}};
    i.idle_hook = true;
    return i;
  }
  void init(const nlohmann::json& config) override {
    if (config.contains("refuse")) throw std::runtime_error("refused: " + config["refuse"].dump());
    tag_ = config.value("tag", "");
  }
  nlohmann::json handle(jobrunner::Job& job) override {
    if (job.kind() == "other") return {{"kind", "other"}, {"queue", std::string(job.queue())}};
    const auto& p = job.payload();
    std::string op = p.value("op", "ok");
    if (op == "permanent") throw jobrunner::PermanentError("bad input");
    if (op == "retryable") throw std::runtime_error("flaky");
    if (op == "snooze") throw jobrunner::Snooze(42);
    if (op == "missing_key") return {{"v", p.at("nope").get<int>()}};
    if (op == "cancel") {
      while (!job.cancelled()) {
      }
      throw jobrunner::Cancelled();
    }
    if (op == "enqueue") {
      int64_t a = job.enqueue("other", {{"i", 1}});
      int64_t b = job.enqueue("other", {{"i", 2}}, {{"queue", "q2"}, {"priority", 5}});
      return {{"ids", {a, b}}};
    }
    if (op == "extension") {
      const void* ext = job.host()->get_extension("test.answer");
      return {{"answer", ext ? *static_cast<const int*>(ext) : -1}};
    }
    job.debug("d");
    job.warn("w");
    job.progress(-5, "clamped low");
    job.progress(250);
    return {{"tag", tag_},
            {"id", job.id()},
            {"attempt", job.attempt()},
            {"max_attempts", job.max_attempts()},
            {"deadline", job.deadline_ms()},
            {"queue", std::string(job.queue())}};
  }
  int idle(jobrunner::Context& ctx) override {
    ctx.enqueue("outcomes", {{"from", "idle"}});
    return 1;
  }

 private:
  std::string tag_;
};

TEST(SdkTesting, PluginClassDescribesItselfLikeTheHostSeesIt) {
  Harness h = Harness::of<Outcomes>();
  EXPECT_EQ(h.name(), "outcomes");
  EXPECT_EQ(h.version(), "0.3");
  EXPECT_EQ(h.abi_minor(), JR_ABI_MINOR);
  ASSERT_EQ(h.kinds().size(), 2u);
  EXPECT_EQ(h.kinds()[0].default_queue, "oq");
  EXPECT_EQ(h.kinds()[0].timeout_ms, 1500);
  EXPECT_EQ(h.kinds()[0].max_attempts, 4);
  EXPECT_EQ(h.kinds()[0].retry_schedule, "1,2");
  EXPECT_EQ(h.manifest()["sandbox"]["memory_mb"], 64);
  EXPECT_TRUE(h.has_idle());
  EXPECT_EQ(h.host_api()->struct_size, sizeof(jr_host_api));
}

TEST(SdkTesting, EveryOutcomeClass) {
  Harness h = Harness::of<Outcomes>({{"tag", "T"}});
  auto ok = h.run({{"op", "ok"}});
  ASSERT_EQ(ok.outcome, Outcome::ok) << ok.describe();
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.result["tag"], "T");
  EXPECT_EQ(ok.result["queue"], "oq");  // the kind's default queue
  auto perm = h.run({{"op", "permanent"}});
  EXPECT_EQ(perm.outcome, Outcome::permanent);
  EXPECT_EQ(perm.error, "bad input");
  EXPECT_EQ(perm.describe(), "permanent: bad input");
  auto retry = h.run({{"op", "retryable"}});
  EXPECT_EQ(retry.outcome, Outcome::retryable);
  EXPECT_EQ(retry.error, "flaky");
  auto snooze = h.run({{"op", "snooze"}});
  EXPECT_EQ(snooze.outcome, Outcome::snooze);
  EXPECT_EQ(snooze.snooze_seconds, 42);
  JobSpec cancelled;
  cancelled.cancel_after_checks = 0;
  auto c = h.run({{"op", "cancel"}}, cancelled);
  EXPECT_EQ(c.outcome, Outcome::cancelled);
  EXPECT_EQ(c.cancel_checks, 1);
  // A missing payload key is bad input, not a transient failure.
  EXPECT_EQ(h.run({{"op", "missing_key"}}).outcome, Outcome::permanent);
  auto bad = h.run_text("{oops");
  EXPECT_EQ(bad.outcome, Outcome::permanent);
  EXPECT_NE(bad.error.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(bad.has_result);
  EXPECT_TRUE(bad.result.is_null());
}

TEST(SdkTesting, CancellationArrivesAfterTheGivenNumberOfChecks) {
  Harness h = Harness::of<Outcomes>();
  JobSpec spec;
  spec.cancel_after_checks = 3;
  auto r = h.run({{"op", "cancel"}}, spec);
  EXPECT_EQ(r.outcome, Outcome::cancelled);
  EXPECT_EQ(r.cancel_checks, 4);  // three answers "no", the fourth "yes"
}

TEST(SdkTesting, RecordsProgressLogsAndTheJobFields) {
  Harness h = Harness::of<Outcomes>();
  JobSpec spec;
  spec.id = 77;
  spec.attempt = 3;
  spec.max_attempts = 9;
  spec.deadline_ms = 123456;
  spec.queue = "custom";
  auto r = h.run({{"op", "ok"}}, spec);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.result["id"], 77);
  EXPECT_EQ(r.result["attempt"], 3);
  EXPECT_EQ(r.result["max_attempts"], 9);
  EXPECT_EQ(r.result["deadline"], 123456);
  EXPECT_EQ(r.result["queue"], "custom");
  ASSERT_EQ(r.logs.size(), 2u);
  EXPECT_EQ(r.logs[0].level, JR_LOG_DEBUG);
  EXPECT_EQ(r.logs[0].message, "d");
  EXPECT_EQ(r.logs[1].level, JR_LOG_WARN);
  ASSERT_EQ(r.progress.size(), 2u);
  EXPECT_EQ(r.progress[0].percent, 0);  // clamped like the host does
  EXPECT_EQ(r.progress[0].step, "clamped low");
  EXPECT_EQ(r.progress[1].percent, 100);
  EXPECT_EQ(r.progress[1].step, "");
  // Fresh ids when none is given.
  EXPECT_NE(h.run({{"op", "ok"}}).result["id"], h.run({{"op", "ok"}}).result["id"]);
}

TEST(SdkTesting, KindsAreChosenAndUnknownKindsRefused) {
  Harness h = Harness::of<Outcomes>();
  JobSpec spec;
  spec.kind = "other";
  auto r = h.run(nlohmann::json::object(), spec);
  EXPECT_EQ(r.result["kind"], "other");
  EXPECT_EQ(r.result["queue"], "default");  // no default queue declared
  spec.kind = "nope";
  EXPECT_THROW(h.run(nlohmann::json::object(), spec), HarnessError);
}

TEST(SdkTesting, InitFailureIsAHarnessErrorWithThePluginsMessage) {
  try {
    Harness h = Harness::of<Outcomes>({{"refuse", "yes"}});
    FAIL() << "init should have failed";
  } catch (const HarnessError& e) {
    EXPECT_NE(std::string(e.what()).find("refused: \"yes\""), std::string::npos) << e.what();
  }
}

TEST(SdkTesting, EnqueuedJobsAndARefusingHost) {
  Harness h = Harness::of<Outcomes>();
  auto r = h.run({{"op", "enqueue"}});
  ASSERT_TRUE(r.ok()) << r.describe();
  ASSERT_EQ(r.enqueued.size(), 2u);
  EXPECT_EQ(r.enqueued[0].kind, "other");
  EXPECT_EQ(r.enqueued[0].payload, nlohmann::json({{"i", 1}}));
  EXPECT_EQ(r.enqueued[1].options, nlohmann::json({{"queue", "q2"}, {"priority", 5}}));
  EXPECT_EQ(r.result["ids"], nlohmann::json({r.enqueued[0].id, r.enqueued[1].id}));
  EXPECT_EQ(h.enqueued().size(), 2u);
  h.fail_enqueue(true);
  auto refused = h.run({{"op", "enqueue"}});
  EXPECT_EQ(refused.outcome, Outcome::retryable);  // Context::enqueue throws RetryableError
  EXPECT_TRUE(refused.enqueued.empty());
  EXPECT_EQ(h.enqueued().size(), 2u);
}

TEST(SdkTesting, IdleHookAndExtensions) {
  Harness h = Harness::of<Outcomes>();
  auto idle = h.idle();
  EXPECT_EQ(idle.status, 1);
  ASSERT_EQ(idle.enqueued.size(), 1u);
  EXPECT_EQ(idle.enqueued[0].payload["from"], "idle");
  EXPECT_EQ(h.run({{"op", "extension"}}).result["answer"], -1);
  static const int answer = 42;
  h.provide_extension("test.answer", &answer);
  EXPECT_EQ(h.run({{"op", "extension"}}).result["answer"], 42);
  Harness linked = Harness::from_entry(&jr_plugin_entry_v1);
  EXPECT_FALSE(linked.has_idle());
  EXPECT_THROW(linked.idle(), HarnessError);
}

TEST(SdkTesting, ConcurrentRunsKeepTheirRecordsApart) {
  Harness h = Harness::of<Outcomes>();
  std::vector<std::thread> ts;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto r = h.run({{"op", "ok"}});
        if (r.ok() && r.logs.size() == 2 && r.progress.size() == 2) ++good;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(good.load(), 200);
}

TEST(SdkTesting, LinkedInEntryPoint) {
  Harness h = Harness::from_entry(&jr_plugin_entry_v1, {{"k", 1}});
  EXPECT_EQ(h.name(), "linked");
  auto r = h.run({{"x", 1}});
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.result["config"]["k"], 1);
  EXPECT_EQ(r.result["linked"], true);
}

// ---- ABI misuse the harness reports ----
jr_job_ctx* g_kept_ctx = nullptr;
const jr_host_api* g_kept_host = nullptr;

int32_t raw_init(const jr_host_api*, const char*, void** state, char*, size_t) {
  *state = nullptr;
  return 0;
}
int32_t raw_handle(void*, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  std::string p(job->payload, job->payload_len);
  if (p == "\"keep\"") {  // keeps ctx past the call: forbidden by abi.h
    g_kept_ctx = ctx;
    g_kept_host = host;
    return JR_OK;
  }
  if (p == "\"bad_result\"") {
    host->set_result(ctx, "{not json", 9);
    return JR_OK;
  }
  return 17;  // not a jr_status
}
const jr_kind_desc raw_kind = {sizeof(jr_kind_desc), 0, "raw", nullptr, 0, nullptr};
const jr_kind_desc* const raw_kinds[] = {&raw_kind};
jr_plugin_desc raw_desc() {
  jr_plugin_desc d{};
  d.struct_size = sizeof(jr_plugin_desc);
  d.abi_major = JR_ABI_MAJOR;
  d.abi_minor = JR_ABI_MINOR;
  d.name = "raw";
  d.version = "1";
  d.kinds = raw_kinds;
  d.kind_count = 1;
  d.init = raw_init;
  d.handle = raw_handle;
  return d;
}

TEST(SdkTesting, ReportsAbiMisuse) {
  static jr_plugin_desc d = raw_desc();
  Harness h(&d);
  auto unknown = h.run("x");
  EXPECT_EQ(unknown.outcome, Outcome::invalid);
  ASSERT_EQ(unknown.violations.size(), 1u);
  EXPECT_NE(unknown.violations[0].find("unknown status 17"), std::string::npos);
  auto bad = h.run("bad_result");
  EXPECT_EQ(bad.outcome, Outcome::ok);
  ASSERT_EQ(bad.violations.size(), 1u);
  EXPECT_NE(bad.violations[0].find("not valid JSON"), std::string::npos);
  EXPECT_TRUE(h.run("keep").violations.empty());
  EXPECT_TRUE(h.violations().empty());
  EXPECT_EQ(g_kept_host->set_result(g_kept_ctx, "1", 1), -1);  // after the call returned
  ASSERT_EQ(h.violations().size(), 1u);
  EXPECT_EQ(h.violations()[0], "set_result called after the call returned");
}

// One set of checks (jobrunner/abi_validate.h) for the harness and the host's loader: each bad
// descriptor is refused by the harness with exactly the reason check_descriptor gives, which
// is the reason the runner prints (the loader throws "plugin FILE: " + the same text).
TEST(SdkTesting, TheHarnessRefusesWithTheHostsReason) {
  static const jr_kind_desc bad_schedule = {sizeof(jr_kind_desc), 0, "k", nullptr, 0, "60s,300"};
  static const jr_kind_desc negative = {sizeof(jr_kind_desc), -1, "k", nullptr, 0, nullptr};
  static const jr_kind_desc bad_queue = {sizeof(jr_kind_desc), 0, "k", "no spaces", 0, nullptr};
  static const jr_kind_desc good = {sizeof(jr_kind_desc), 0, "k", "q", 0, " 60, 300 ,900"};
  static const jr_kind_desc* const one[][1] = {{&bad_schedule}, {&negative}, {&bad_queue}};
  static const jr_kind_desc* const twice[] = {&good, &good};
  static const std::string huge(jobrunner::abi::kMaxManifestBytes + 1, ' ');
  struct Case {
    std::function<void(jr_plugin_desc&)> spoil;
    std::string reason;
  };
  std::vector<Case> cases = {
      {[](jr_plugin_desc& d) { d.kinds = one[0]; }, "kind 'k': invalid retry schedule"},
      {[](jr_plugin_desc& d) { d.kinds = one[1]; }, "kind 'k' has negative max_attempts"},
      {[](jr_plugin_desc& d) { d.kinds = one[2]; }, "kind 'k' has an invalid default queue"},
      {[](jr_plugin_desc& d) {
         d.kinds = twice;
         d.kind_count = 2;
       },
       "declares kind 'k' twice"},
      {[](jr_plugin_desc& d) { d.manifest_json = huge.c_str(); }, "manifest_json is larger than"},
      {[](jr_plugin_desc& d) { d.handle = nullptr; }, "lacks the required init and handle"},
      {[](jr_plugin_desc& d) { d.kind_count = 5000; }, "declares too many job kinds"},
  };
  for (const auto& c : cases) {
    jr_plugin_desc d = raw_desc();
    c.spoil(d);
    std::string why = jobrunner::abi::check_descriptor(&d);
    EXPECT_NE(why.find(c.reason), std::string::npos) << why;
    try {
      Harness h(&d);
      ADD_FAILURE() << "accepted: " << c.reason;
    } catch (const HarnessError& e) {
      EXPECT_EQ(std::string(e.what()), "plugin descriptor: " + why);
    }
  }
  static const jr_kind_desc* const fine[] = {&good};
  jr_plugin_desc d = raw_desc();
  d.kinds = fine;
  EXPECT_EQ(jobrunner::abi::check_descriptor(&d), "") << "spaces and commas as the host reads them";
  EXPECT_NO_THROW(Harness h(&d));
}

TEST(SdkTesting, RefusesTheDescriptorsTheHostRefuses) {
  jr_plugin_desc d = raw_desc();
  d.abi_major = 2;
  EXPECT_THROW(Harness h(&d), HarnessError);
  d = raw_desc();
  d.struct_size = 8;
  EXPECT_THROW(Harness h(&d), HarnessError);
  d = raw_desc();
  d.name = "bad name";
  EXPECT_THROW(Harness h(&d), HarnessError);
  d = raw_desc();
  d.kind_count = 0;
  EXPECT_THROW(Harness h(&d), HarnessError);
  auto t = [](const std::string& dir, const std::string& name) {
    return jrtest::test_plugin_dir() + "/" + dir + "/libjr_t_" + name + ".so";
  };
  EXPECT_THROW(Harness::load(t("wrong_major", "wrong_major")), HarnessError);
  EXPECT_THROW(Harness::load(t("small_struct", "small_struct")), HarnessError);
  EXPECT_THROW(Harness::load(t("no_entry", "no_entry")), HarnessError);
  EXPECT_THROW(Harness::load(t("null_entry", "null_entry")), HarnessError);
  EXPECT_THROW(Harness::load("/nonexistent/libjr_x.so"), HarnessError);
  // Older and newer minors are accepted, as by the host.
  EXPECT_EQ(Harness::load(t("old_minor", "old_minor")).abi_minor(), 0);
  EXPECT_EQ(Harness::load(t("new_minor", "new_minor")).abi_minor(), 99);
  EXPECT_EQ(Harness::load(std::string(JR_SDK_ABI_DIR) + "/libjr_t_v1_0.so").has_idle(), false);
}

// The harness and the real host (loader + jr_host_api) agree on the same plugin file.
TEST(SdkTesting, AgreesWithTheRealHostOnTheEchoPlugin) {
  std::string echo = jrtest::plugin_dir() + "/libjr_echo.so";
  Harness h = Harness::load(echo);
  jrtest::PluginHost host(echo, nlohmann::json::object());
  double future =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() +
      3600;
  const std::vector<std::string> payloads = {R"({"a":[1,2,{"b":null}]})",
                                             R"({"fail":"retryable"})",
                                             R"({"fail":"permanent"})",
                                             R"({"fail_attempts":1})",
                                             R"({"crash":"nope"})",
                                             "[1,2]",
                                             "not json",
                                             R"({"snooze_until":)" + std::to_string(future) + "}"};
  for (const auto& p : payloads) {
    auto mine = h.run_text(p);
    auto real = host.run("echo", p);
    EXPECT_EQ(static_cast<int32_t>(mine.status), real.status) << p;
    EXPECT_EQ(mine.result_text, real.result) << p;
    EXPECT_EQ(mine.error, real.error) << p;
    EXPECT_NEAR(mine.snooze_seconds, real.snooze_seconds, 5.0) << p;
  }
  // And on the clang-built plain C plugin, logs and progress included.
  std::string c = std::string(JR_SDK_ABI_DIR) + "/libjr_t_c_plugin_clang.so";
  Harness hc = Harness::load(c);
  jrtest::PluginHost hostc(c, nlohmann::json::object());
  auto mine = hc.run({{"x", 1}});
  auto real = hostc.run("c_echo", R"({"x":1})");
  EXPECT_EQ(mine.result_text, real.result);
  ASSERT_EQ(mine.logs.size(), real.logs.size());
  EXPECT_EQ(mine.logs[0].message, real.logs[0]);
  ASSERT_EQ(mine.progress.size(), 1u);
  EXPECT_EQ(mine.progress[0].percent, real.progress[0].first);
  EXPECT_EQ(mine.progress[0].step, real.progress[0].second);
}

}  // namespace
