// Loader tests with real tiny plugins (tests/testplugins), one per failure path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "harness.hpp"
#include "plugin_host.hpp"
#include "plugin_loader.hpp"

namespace fs = std::filesystem;

namespace jr {
namespace {

std::string so(const std::string& dir, const std::string& name) {
  return jrtest::test_plugin_dir() + "/" + dir + "/libjr_t_" + name + ".so";
}

// Expects load_plugin(path) to throw a PluginError naming the file and containing `reason`.
void expect_refused(const std::string& path, const std::string& reason) {
  try {
    load_plugin(path);
    ADD_FAILURE() << "loaded " << path;
  } catch (const PluginError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(reason), std::string::npos) << m;
  }
}

TEST(Loader, RefusesWrongAbiMajor) {
  expect_refused(so("wrong_major", "wrong_major"), "ABI major version 2");
}

TEST(Loader, RefusesMissingEntrySymbol) {
  expect_refused(so("no_entry", "no_entry"), "missing entry symbol 'jr_plugin_entry_v1'");
}

TEST(Loader, RefusesTooSmallDescriptor) {
  expect_refused(so("small_struct", "small_struct"), "struct_size 8 is smaller");
}

TEST(Loader, RefusesNullDescriptor) {
  expect_refused(so("null_entry", "null_entry"), "returned no descriptor");
}

TEST(Loader, RefusesMissingFileAndNonLibrary) {
  expect_refused("/nonexistent/libx.so", "file not found");
  jrtest::TempDir d;
  std::string fake = d.path() + "/libfake.so";
  std::ofstream(fake) << "not an ELF file";
  expect_refused(fake, "cannot be loaded");
}

TEST(Loader, InitFailureIsReportedWithTheFileAndMessage) {
  LoadedPlugin p = load_plugin(so("init_fails", "init_fails"));
  try {
    init_plugin(p, nlohmann::json::object());
    FAIL() << "init succeeded";
  } catch (const PluginError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(p.path), std::string::npos) << m;
    EXPECT_NE(m.find("cannot reach the license server"), std::string::npos) << m;
  }
}

TEST(Loader, HandlerExceptionBecomesARetryableFailureWithItsMessage) {
  jrtest::PluginHost host(so("thrower", "thrower"), nlohmann::json::object());
  auto out = host.run("thrower", "{}");
  EXPECT_EQ(out.status, JR_ERR_RETRYABLE);
  EXPECT_EQ(out.error, "boom from handler");
  // The host lives on: the same plugin runs again.
  EXPECT_EQ(host.run("thrower", "{}").status, JR_ERR_RETRYABLE);
}

TEST(Loader, DuplicateKindInOneDirectoryIsAStartUpError) {
  try {
    load_plugin_dir(jrtest::test_plugin_dir() + "/dup");
    FAIL() << "two plugins claiming one kind were accepted";
  } catch (const PluginError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("shared_kind"), std::string::npos) << m;
    EXPECT_NE(m.find("libjr_t_dup_a.so"), std::string::npos) << m;
    EXPECT_NE(m.find("libjr_t_dup_b.so"), std::string::npos) << m;
  }
}

TEST(Loader, PlainCPluginLoadsAndRuns) {
  jrtest::PluginHost host(so("c", "c_plugin"), nlohmann::json::object());
  ASSERT_EQ(host.plugin().kinds.size(), 1u);
  EXPECT_EQ(host.plugin().kinds[0].kind, "c_echo");
  EXPECT_EQ(host.plugin().kinds[0].default_queue, "c_queue");
  auto ok = host.run("c_echo", R"({"x":1})");
  EXPECT_EQ(ok.status, JR_OK);
  EXPECT_EQ(ok.result, R"({"x":1})");
  ASSERT_EQ(ok.progress.size(), 1u);
  EXPECT_EQ(ok.progress[0].second, "halfway");
  EXPECT_EQ(ok.logs.size(), 1u);
  auto bad = host.run("c_echo", R"({"fail":true})");
  EXPECT_EQ(bad.status, JR_ERR_PERMANENT);
  EXPECT_EQ(bad.error, "c plugin refuses this payload");
}

TEST(Loader, OlderMinorDescriptorWithoutNewFieldsLoadsAndRuns) {
  jrtest::PluginHost host(so("old_minor", "old_minor"), nlohmann::json::object());
  EXPECT_EQ(host.plugin().abi_minor, 0);
  EXPECT_FALSE(host.plugin().has_idle);  // the field lies beyond its struct_size: never read
  EXPECT_EQ(host.run("case_old_minor", "[1,2]").result, "[1,2]");
}

TEST(Loader, NewerMinorDescriptorLoadsAndRuns) {
  jrtest::PluginHost host(so("new_minor", "new_minor"), nlohmann::json::object());
  EXPECT_EQ(host.plugin().abi_minor, 99);
  EXPECT_EQ(host.run("case_new_minor", "\"hi\"").result, "\"hi\"");
}

TEST(Loader, EchoPluginDescribesItself) {
  LoadedPlugin p = load_plugin(jrtest::plugin_dir() + "/libjr_echo.so");
  EXPECT_EQ(p.name, "echo");
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].kind, "echo");
  EXPECT_EQ(p.manifest["sandbox"]["network"], "none");
}

TEST(Loader, PluginsLsNamesTheBadFile) {
  auto r = jrtest::run_runner({"plugins", "ls", jrtest::test_plugin_dir() + "/wrong_major"}, {});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("libjr_t_wrong_major.so"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ABI major version 2"), std::string::npos) << r.err;
  auto ok = jrtest::run_runner({"plugins", "ls", jrtest::test_plugin_dir() + "/c"}, {});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("c_echo"), std::string::npos) << ok.out;
}

// One description of a plugin's kinds: `plugins ls --json` (the sandboxed describe, i.e. the
// worker's hello) and `plugins check --json` agree, the retry schedule in its declared form
// (they disagreed: one printed [60, 300, 900], the other "60,300,900").
TEST(Loader, PluginsLsAndCheckDescribeKindsTheSameWay) {
  std::string so = jrtest::plugin_dir() + "/libjr_dataset_parse.so";
  std::string dir = jrtest::plugin_dir() + "/../ls_check_dir";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(so, dir + "/libjr_dataset_parse.so",
                             std::filesystem::copy_options::overwrite_existing);
  auto ls = jrtest::run_runner({"plugins", "ls", dir, "--json"}, {});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  auto check = jrtest::run_runner({"plugins", "check", so, "--json"}, {});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  auto listed = nlohmann::json::parse(ls.out);
  auto checked = nlohmann::json::parse(check.out);
  ASSERT_EQ(listed.size(), 1u) << ls.out;
  ASSERT_TRUE(checked.contains("kinds")) << check.out;
  EXPECT_EQ(listed[0]["kinds"], checked["kinds"]);
  bool seen = false;
  for (const auto& k : listed[0]["kinds"]) {
    if (k["retry_schedule"] == nlohmann::json::array({60, 300, 900})) seen = true;
  }
  EXPECT_TRUE(seen) << listed[0]["kinds"].dump();
  std::filesystem::remove_all(dir);
}

TEST(Loader, ConfigSectionAndGrantedEnvReachThePlugin) {
  LoadedPlugin p = load_plugin(so("c", "c_plugin"));
  p.manifest = {{"env", {{"JR_TEST_TIMEOUT", "timeout"}, {"JR_TEST_NAME", "name"}}}};
  setenv("JR_TEST_TIMEOUT", "2.5", 1);
  setenv("JR_TEST_NAME", "abc", 1);
  // The manifest's "env" is only a request: nothing is copied until the operator grants it.
  auto asked = plugin_config_for(p, {{"c_plugin", {{"x", 1}}}}, "postgresql:///db");
  EXPECT_FALSE(asked.contains("timeout")) << asked.dump();
  EXPECT_FALSE(asked.contains("name")) << asked.dump();
  p.grants.env = {{"JR_TEST_TIMEOUT", "timeout"}, {"JR_TEST_NAME", "name"}};
  auto cfg = plugin_config_for(p, {{"c_plugin", {{"x", 1}}}}, "postgresql:///db");
  EXPECT_EQ(cfg["x"], 1);
  EXPECT_EQ(cfg["database_url"], "postgresql:///db");
  EXPECT_DOUBLE_EQ(cfg["timeout"].get<double>(), 2.5);
  EXPECT_EQ(cfg["name"], "abc");
}

TEST(Loader, LoadPinsTheContentBySha256) {
  LoadedPlugin p = load_plugin(so("c", "c_plugin"));
  ASSERT_TRUE(p.pin);
  EXPECT_EQ(p.sha256.size(), 64u);
  EXPECT_EQ(p.sha256, p.pin->sha256());
  EXPECT_EQ(p.path, so("c", "c_plugin"));
}

}  // namespace
}  // namespace jr
