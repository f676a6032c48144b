// The settings table (host/core/settings_table.hpp) is the one place a setting is declared; these
// cases hold everything that reads it to it: the TOML reader and the environment read every
// setting of the table into its field, the reference shows each setting's real default, the
// worker's flags are the table's, and the README's reference is the generated one.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <set>
#include <sstream>
#include <variant>

#include "config.hpp"
#include "harness.hpp"
#include "settings_table.hpp"

namespace jr {
namespace {

// A valid value of the setting's type that is not its default, as text, and the check that a
// Config holds it.
struct Probe {
  std::string text;  // for a variable or a flag
  std::string toml;  // for the file
  std::function<bool(const Config&)> holds;
};

Probe probe(const Setting& s) {
  const Config defaults;
  return std::visit(
      [&](auto member) -> Probe {
        using T = std::decay_t<decltype(defaults.*member)>;
        if constexpr (std::is_same_v<T, std::string> ||
                      std::is_same_v<T, std::optional<std::string>>) {
          std::string v = std::string("probe-") + s.key;
          return {v, "\"" + v + "\"", [=](const Config& c) { return c.*member == v; }};
        } else if constexpr (std::is_same_v<T, int> || std::is_same_v<T, int64_t>) {
          T v = static_cast<T>(defaults.*member == s.max ? s.min : s.max);
          return {std::to_string(v), std::to_string(v),
                  [=](const Config& c) { return c.*member == v; }};
        } else if constexpr (std::is_same_v<T, double>) {
          return {"7m", "\"7m\"", [=](const Config& c) { return c.*member == 420; }};
        } else if constexpr (std::is_same_v<T, bool>) {
          bool v = !(defaults.*member);
          return {v ? "true" : "false", v ? "true" : "false",
                  [=](const Config& c) { return c.*member == v; }};
        } else {
          return {"a,b", "[\"a\", \"b\"]", [=](const Config& c) {
                    return c.*member == std::vector<std::string>{"a", "b"};
                  }};
        }
      },
      s.field);
}

class Settings : public ::testing::Test {
 protected:
  void SetUp() override { clear_env(); }
  void TearDown() override { clear_env(); }
  static void clear_env() {
    for (const Setting& s : settings()) {
      if (*s.env) unsetenv(s.env);
      if (*s.env_alias) unsetenv(s.env_alias);
    }
  }
  std::string write(const std::string& text) {
    std::string path = dir_.path() + "/runner.toml";
    std::ofstream(path) << text;
    return path;
  }
  jrtest::TempDir dir_;
};

TEST_F(Settings, TheFileReadsEverySettingOfTheTableIntoItsField) {
  std::map<std::string, std::string> by_section;
  for (const Setting& s : settings()) {
    by_section[s.section] += std::string(s.key) + " = " + probe(s).toml + "\n";
  }
  std::string text = by_section[""];
  for (const auto& [section, lines] : by_section) {
    if (!section.empty()) text += "[" + section + "]\n" + lines;
  }
  Config c = load_config(write(text));
  for (const Setting& s : settings()) EXPECT_TRUE(probe(s).holds(c)) << setting_name(s);
}

TEST_F(Settings, EachVariableSetsItsSettingWithTheFilesParserAndBounds) {
  int with_env = 0;
  for (const Setting& s : settings()) {
    for (const char* var : {s.env, s.env_alias}) {
      if (!*var) continue;
      ++with_env;
      setenv(var, probe(s).text.c_str(), 1);
      Config c = load_config("");
      EXPECT_TRUE(probe(s).holds(c)) << var;
      unsetenv(var);
    }
  }
  EXPECT_GE(with_env, 30) << "every RUNNER_* variable of the README";
  setenv("RUNNER_SANDBOX_BATCH", "0", 1);
  try {
    load_config("");
    ADD_FAILURE() << "RUNNER_SANDBOX_BATCH=0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "environment variable RUNNER_SANDBOX_BATCH: must be between 1 and 256, got 0"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(Settings, TheRuntimeNameWinsOverItsAlias) {
  setenv("DATABASE_URL", "postgresql://alias@h/d", 1);
  EXPECT_EQ(load_config("").database_url, "postgresql://alias@h/d");
  setenv("RUNNER_DATABASE_URL", "postgresql://own@h/d", 1);
  EXPECT_EQ(load_config("").database_url, "postgresql://own@h/d");
}

TEST_F(Settings, TheReferenceShowsEachSettingsDefault) {
  // These show an example where the default is "unset" or computed at run time.
  const std::set<std::string> examples = {
      "database_url",  "listen_database_url",    "data_dir",     "approvals_file", "worker.plugins",
      "worker.queues", "worker.max_connections", "otel.endpoint"};
  const Config defaults;
  for (const Setting& s : settings()) {
    std::string text = std::string(*s.section ? "[" + std::string(s.section) + "]\n" : "") + s.key +
                       " = " + s.shown + "\n";
    Config shown;
    ASSERT_NO_THROW(shown = load_config(write(text))) << text;
    bool same = std::visit([&](auto m) { return shown.*m == defaults.*m; }, s.field);
    if (examples.count(setting_name(s))) {
      EXPECT_FALSE(same) << setting_name(s) << ": shown as an example, but it is the default";
    } else {
      EXPECT_TRUE(same) << setting_name(s) << " = " << s.shown << " is not its default";
    }
  }
}

TEST_F(Settings, TheReferenceLoadsAsAConfigFile) {
  Config c;
  ASSERT_NO_THROW(c = load_config(write(config_reference())));
  EXPECT_EQ(c.concurrency, 10);
  EXPECT_EQ(c.otel_endpoint, "http://collector:4318");
}

// README.md's reference block is `runner config reference`, verbatim.
TEST_F(Settings, TheReadmeReferenceIsTheGeneratedOne) {
  std::ifstream in(jrtest::source_dir() + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string readme = ss.str();
  const std::string begin = "<!-- config-reference: begin -->\n```toml\n";
  const std::string end = "```\n<!-- config-reference: end -->";
  size_t b = readme.find(begin), e = readme.find(end);
  ASSERT_NE(b, std::string::npos) << "README.md has no " << begin;
  ASSERT_NE(e, std::string::npos) << "README.md has no " << end;
  std::string block = readme.substr(b + begin.size(), e - b - begin.size());
  EXPECT_EQ(block, config_reference())
      << "README.md's reference is out of date: paste the output of `runner config reference` "
         "between the config-reference markers";
}

// The runner's flags are the table's: each named there is registered (with its range), and
// `runner config reference` prints the reference.
TEST_F(Settings, TheRunnerRegistersTheTablesFlagsAndPrintsTheReference) {
  auto help = jrtest::run_runner({"--help"}, {}, std::chrono::seconds(30));
  ASSERT_EQ(help.exit_code, 0) << help.err;
  for (const Setting& s : settings()) {
    if (*s.flag) {
      EXPECT_NE(help.out.find(s.flag), std::string::npos) << s.flag;
    }
  }
  auto ref = jrtest::run_runner({"config", "reference"}, {}, std::chrono::seconds(30));
  ASSERT_EQ(ref.exit_code, 0) << ref.err;
  EXPECT_EQ(ref.out, config_reference());
  auto range = jrtest::run_runner({"--sandbox-batch", "0"}, {}, std::chrono::seconds(30));
  EXPECT_EQ(range.exit_code, 2);
  EXPECT_NE(range.err.find("--sandbox-batch: Value 0 not in range 1 to 256"), std::string::npos)
      << range.err;
  auto bad = jrtest::run_runner({"--lease-seconds", "soon", "--plugins", dir_.path()}, {},
                                std::chrono::seconds(30));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--lease-seconds: "), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace jr
