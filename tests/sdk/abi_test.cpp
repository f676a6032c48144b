// ABI compatibility of the plugin boundary, in-process through the host's own loader
// (host/plugin/plugin_loader) and jr_host_api (host/plugin/host_api): the struct layout of every
// header version, clang-built plugins (C++ and C) in this g++-built host, a plugin built against
// the frozen v1.0 SDK and one built against a future minor version.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <jobrunner/abi_checks.h>  // the x86_64 layout, checked at compile time by g++ here

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"
#include "layout_fields.h"
#include "plugin_host.hpp"

extern "C" {
extern const size_t jr_layout_current[];
extern const size_t jr_layout_v1_0[];
extern const size_t jr_layout_future[];
}

namespace {

std::string so(const std::string& name) {
  return std::string(JR_SDK_ABI_DIR) + "/libjr_t_" + name + ".so";
}

// Index of the struct sizes at the end of a layout array.
enum { kJobSize = JR_LAYOUT_SIZE - 4, kHostSize, kKindSize, kDescSize };

TEST(SdkAbiLayout, EveryV10FieldKeepsItsOffsetInV11AndInAFutureMinor) {
  size_t i = 0;
#define JR_CHECK_FIELD(type, field)                                                   \
  EXPECT_EQ(jr_layout_v1_0[i], offsetof(type, field)) << #type "." #field " (v1.0)";  \
  EXPECT_EQ(jr_layout_current[i], offsetof(type, field)) << #type "." #field;         \
  EXPECT_EQ(jr_layout_future[i], offsetof(type, field)) << #type "." #field " (1.7)"; \
  ++i;
  JR_LAYOUT_V1_0_FIELDS(JR_CHECK_FIELD)
#undef JR_CHECK_FIELD
  EXPECT_EQ(i, static_cast<size_t>(kJobSize));
}

TEST(SdkAbiLayout, SizesOnlyGrowAndTheV10ConstantsMatchTheFrozenHeader) {
  EXPECT_EQ(jr_layout_current[kJobSize], sizeof(jr_job));
  EXPECT_EQ(jr_layout_current[kHostSize], sizeof(jr_host_api));
  EXPECT_EQ(jr_layout_current[kKindSize], sizeof(jr_kind_desc));
  EXPECT_EQ(jr_layout_current[kDescSize], sizeof(jr_plugin_desc));
  // The v1.0 sizes the host accepts as a minimum are the frozen header's real sizes.
  EXPECT_EQ(jr_layout_v1_0[kDescSize], JR_PLUGIN_DESC_V1_0_SIZE);
  EXPECT_EQ(jr_layout_v1_0[kKindSize], JR_KIND_DESC_V1_0_SIZE);
  EXPECT_EQ(jr_layout_v1_0[kJobSize], JR_JOB_V1_0_SIZE);
  EXPECT_LT(jr_layout_v1_0[kDescSize], sizeof(jr_plugin_desc));  // v1.1 appended idle
  EXPECT_EQ(jr_layout_v1_0[kHostSize], sizeof(jr_host_api));
  for (int k : {kJobSize, kHostSize, kKindSize, kDescSize}) {
    EXPECT_GT(jr_layout_future[k], jr_layout_current[k]) << "struct #" << k;
  }
#if defined(__x86_64__)
  EXPECT_EQ(sizeof(jr_plugin_desc), 80u);
  EXPECT_EQ(jr_layout_v1_0[kDescSize], 72u);
#endif
}

// The same source compiled by clang++ and by g++ behaves identically in this host.
class SdkAbiProbe : public ::testing::TestWithParam<const char*> {
 protected:
  std::string compiler() const { return GetParam(); }
  std::string kind() const { return "abi_probe_" + compiler(); }
};

TEST_P(SdkAbiProbe, LoadsWithItsDescriptorAndRunsEveryOutcome) {
  jrtest::PluginHost host(so("abi_probe_" + compiler()), nlohmann::json::object());
  const jr::LoadedPlugin& p = host.plugin();
  EXPECT_EQ(p.name, "abi_probe_" + compiler());
  EXPECT_EQ(p.abi_minor, JR_ABI_MINOR);
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].default_queue, "abi_q");
  EXPECT_EQ(p.kinds[0].timeout_ms, 20000);
  EXPECT_EQ(p.kinds[0].max_attempts, 3);
  EXPECT_EQ(p.kinds[0].retry_schedule_text, "1,2");
  EXPECT_EQ(p.manifest["sandbox"]["network"], "none");

  auto ok = host.run(kind(), R"({"op":"ok","x":[1,"two"]})", 2);
  ASSERT_EQ(ok.status, JR_OK) << ok.error;
  auto r = nlohmann::json::parse(ok.result);
  EXPECT_EQ(r["compiler"], compiler());  // proves which compiler built the file
  EXPECT_EQ(r["caught"], true);          // unwinding inside the plugin works
  EXPECT_EQ(r["attempt"], 2);
  EXPECT_EQ(r["host_minor"], JR_ABI_MINOR);
  EXPECT_EQ(r["payload"]["x"][1], "two");
  ASSERT_EQ(ok.progress.size(), 1u);
  EXPECT_EQ(ok.progress[0], std::make_pair(50.0, std::string("half")));
  EXPECT_EQ(ok.logs, std::vector<std::string>{"probe ran"});

  auto perm = host.run(kind(), R"({"op":"permanent"})");
  EXPECT_EQ(perm.status, JR_ERR_PERMANENT);
  EXPECT_EQ(perm.error, "probe: permanent on purpose");
  auto retry = host.run(kind(), R"({"op":"retryable"})");
  EXPECT_EQ(retry.status, JR_ERR_RETRYABLE);
  EXPECT_EQ(retry.error, "probe: retryable on purpose");
  auto snooze = host.run(kind(), R"({"op":"snooze"})");
  EXPECT_EQ(snooze.status, JR_SNOOZE);
  EXPECT_DOUBLE_EQ(snooze.snooze_seconds, 12.5);
  auto bad = host.run(kind(), "{not json");
  EXPECT_EQ(bad.status, JR_ERR_PERMANENT);
  EXPECT_NE(bad.error.find("not valid JSON"), std::string::npos) << bad.error;

  auto enq = host.run(kind(), R"({"op":"enqueue"})");
  ASSERT_EQ(enq.status, JR_OK) << enq.error;
  auto queued = host.enqueued();
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].kind, kind());
  EXPECT_EQ(queued[0].payload, nlohmann::json({{"op", "ok"}}));
  EXPECT_EQ(queued[0].options, nlohmann::json({{"priority", 3}}));
  EXPECT_EQ(nlohmann::json::parse(enq.result)["enqueued"], 1000000);

  auto threads = host.run(kind(), R"({"op":"threads"})");
  ASSERT_EQ(threads.status, JR_OK) << threads.error;
  EXPECT_EQ(threads.logs.size(), 100u);  // 4 plugin threads x 25 host->log calls
}

INSTANTIATE_TEST_SUITE_P(Compilers, SdkAbiProbe, ::testing::Values("clang", "gcc"));

TEST(SdkAbi, ClangBuiltFileIsReallyFromClangAndExportsOnlyTheEntry) {
  void* h = dlopen(so("abi_probe_clang").c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << dlerror();
  EXPECT_NE(dlsym(h, "jr_plugin_entry_v1"), nullptr);
  // Hidden visibility + version script: the entry is the only dynamic symbol it defines.
  std::string nm = "nm -D --defined-only " + so("abi_probe_clang") + " 2>&1";
  FILE* n = popen(nm.c_str(), "r");
  ASSERT_NE(n, nullptr);
  std::vector<std::string> symbols;
  char line[1024];
  while (fgets(line, sizeof line, n) != nullptr) {
    std::string l(line);
    symbols.push_back(l.substr(l.rfind(' ') + 1, l.size() - l.rfind(' ') - 2));
  }
  EXPECT_EQ(pclose(n), 0);
  EXPECT_EQ(symbols, std::vector<std::string>{"jr_plugin_entry_v1"});
  // clang records itself in .comment; the file must say so (not a g++ build by mistake).
  std::string cmd = "readelf -p .comment " + so("abi_probe_clang") + " 2>/dev/null";
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string text;
  char buf[512];
  while (fgets(buf, sizeof buf, f) != nullptr) text += buf;
  pclose(f);
  EXPECT_NE(text.find("clang version"), std::string::npos) << text;
}

TEST(SdkAbi, PlainCPluginBuiltByClangLoadsAndRuns) {
  jrtest::PluginHost host(so("c_plugin_clang"), nlohmann::json::object());
  EXPECT_EQ(host.plugin().name, "c_plugin");
  auto ok = host.run("c_echo", R"({"a":1})");
  EXPECT_EQ(ok.status, JR_OK);
  EXPECT_EQ(ok.result, R"({"a":1})");
  EXPECT_EQ(ok.logs, std::vector<std::string>{"c plugin handling a job"});
  ASSERT_EQ(ok.progress.size(), 1u);
  EXPECT_EQ(ok.progress[0].second, "halfway");
  auto bad = host.run("c_echo", R"({"fail":true})");
  EXPECT_EQ(bad.status, JR_ERR_PERMANENT);
  EXPECT_EQ(bad.error, "c plugin refuses this payload");
}

TEST(SdkAbi, PluginBuiltAgainstTheFrozenV10SdkLoadsWithoutIdleAndRuns) {
  jrtest::PluginHost host(so("v1_0"), nlohmann::json::object());
  const jr::LoadedPlugin& p = host.plugin();
  EXPECT_EQ(p.abi_minor, 0);
  EXPECT_EQ(p.desc->struct_size, JR_PLUGIN_DESC_V1_0_SIZE);
  EXPECT_FALSE(p.has_idle);  // the host never reads past a v1.0 descriptor
  EXPECT_THROW(host.idle(), std::runtime_error);
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].default_queue, "v1_0_q");
  auto ok = host.run("v1_0_echo", R"({"n":7})");
  ASSERT_EQ(ok.status, JR_OK) << ok.error;
  auto r = nlohmann::json::parse(ok.result);
  EXPECT_EQ(r["plugin_minor"], 0);
  EXPECT_EQ(r["desc_size"], JR_PLUGIN_DESC_V1_0_SIZE);
  EXPECT_EQ(r["host_minor"], JR_ABI_MINOR);
  EXPECT_EQ(r["payload"]["n"], 7);
  auto bad = host.run("v1_0_echo", R"({"fail":1})");
  EXPECT_EQ(bad.status, JR_ERR_PERMANENT);
  EXPECT_EQ(bad.error, "v1.0 plugin refuses");
}

TEST(SdkAbi, PluginFromAFutureMinorLoadsAndSeesAnOlderHost) {
  jrtest::PluginHost host(so("future"), nlohmann::json::object());
  const jr::LoadedPlugin& p = host.plugin();
  EXPECT_EQ(p.name, "future_plugin");
  EXPECT_EQ(p.abi_minor, 7);
  EXPECT_GT(p.desc->struct_size, sizeof(jr_plugin_desc));  // trailing fields ignored
  EXPECT_FALSE(p.has_idle);                                // its idle is NULL
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].default_queue, "future_q");
  auto ok = host.run("future_echo", R"({"k":"v"})");
  ASSERT_EQ(ok.status, JR_OK) << ok.error;
  auto r = nlohmann::json::parse(ok.result);
  EXPECT_EQ(r["plugin_minor"], 7);
  EXPECT_EQ(r["host_minor"], JR_ABI_MINOR);
  EXPECT_EQ(r["host_api_size"], sizeof(jr_host_api));
  EXPECT_EQ(r["host_has_heartbeat"], false);  // it checked struct_size instead of calling
  EXPECT_EQ(r["job_size"], sizeof(jr_job));
  EXPECT_EQ(r["job_has_trace_id"], false);
  EXPECT_EQ(r["payload"]["k"], "v");
}

}  // namespace
