#include "config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "harness.hpp"

namespace jr {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    std::string path = dir_.path() + "/runner.toml";
    std::ofstream(path) << text;
    return path;
  }
  void SetUp() override {
    for (const char* v : {"DATABASE_URL", "RUNNER_DATABASE_URL", "RUNNER_CONCURRENCY",
                          "RUNNER_QUEUES", "RUNNER_LEASE_SECONDS", "RUNNER_PLUGINS"}) {
      unsetenv(v);
    }
  }
  jrtest::TempDir dir_;
};

TEST_F(ConfigTest, ReadsEveryWorkerSetting) {
  auto path = write(R"(
database_url = "postgresql://u@h/db"
log_level = "warn"
[worker]
plugins = "/opt/plugins"
concurrency = 32
queues = ["a", "b"]
kinds = "x,y"
lease_seconds = "1m"
poll_interval = 0.5
shutdown_grace = 10
[plugins.domain_check]
dns_timeout = 2.5
servers = ["127.0.0.1"]
)");
  Config c = load_config(path);
  EXPECT_EQ(c.database_url.value(), "postgresql://u@h/db");
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.plugins_dir, "/opt/plugins");
  EXPECT_EQ(c.concurrency, 32);
  EXPECT_EQ(c.queues, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.kinds, (std::vector<std::string>{"x", "y"}));
  EXPECT_DOUBLE_EQ(c.lease_seconds, 60);
  EXPECT_DOUBLE_EQ(c.poll_interval_seconds, 0.5);
  EXPECT_DOUBLE_EQ(c.shutdown_grace_seconds, 10);
  EXPECT_DOUBLE_EQ(c.plugin_config["domain_check"]["dns_timeout"].get<double>(), 2.5);
  EXPECT_EQ(c.plugin_config["domain_check"]["servers"][0], "127.0.0.1");
}

// Limits on host services (docs/sandbox.md): defaults, and each key read with its unit.
TEST_F(ConfigTest, ReadsTheHostServiceLimits) {
  Config d = load_config(write("[worker]\n"));
  EXPECT_EQ(d.enqueues_per_job, 1000);
  EXPECT_EQ(d.log_lines_per_job, 10000);
  EXPECT_EQ(d.log_bytes_per_job, 1048576);
  EXPECT_DOUBLE_EQ(d.progress_interval_seconds, 0.25);
  EXPECT_DOUBLE_EQ(d.idle_timeout_seconds, 60);
  EXPECT_DOUBLE_EQ(d.init_retry_max_seconds, 60);
  Config c = load_config(write(R"([worker]
enqueues_per_job = 50
log_lines_per_job = 200
log_bytes_per_job = 65536
progress_interval = "1s"
idle_timeout = "5m"
init_retry_max = "500ms"
)"));
  EXPECT_EQ(c.enqueues_per_job, 50);
  EXPECT_EQ(c.log_lines_per_job, 200);
  EXPECT_EQ(c.log_bytes_per_job, 65536);
  EXPECT_DOUBLE_EQ(c.progress_interval_seconds, 1);
  EXPECT_DOUBLE_EQ(c.idle_timeout_seconds, 300);
  EXPECT_DOUBLE_EQ(c.init_retry_max_seconds, 0.5);
  EXPECT_THROW(load_config(write("[worker]\nenqueues_per_job = -1\n")), ConfigError);
  EXPECT_THROW(validate(load_config(write("[worker]\nidle_timeout = 0\n"))), ConfigError);
}

TEST_F(ConfigTest, EnvironmentOverridesTheFile) {
  auto path = write("[worker]\nconcurrency = 4\nqueues = [\"a\"]\n");
  setenv("RUNNER_CONCURRENCY", "12", 1);
  setenv("RUNNER_QUEUES", "q1,q2", 1);
  setenv("DATABASE_URL", "postgresql://env@h/db", 1);
  Config c = load_config(path);
  EXPECT_EQ(c.concurrency, 12);
  EXPECT_EQ(c.queues, (std::vector<std::string>{"q1", "q2"}));
  EXPECT_EQ(c.database_url.value(), "postgresql://env@h/db");
}

TEST_F(ConfigTest, SyntaxErrorNamesFileAndLine) {
  auto path = write("[worker]\nconcurrency = 4\nqueues = [\"a\"\n");
  try {
    load_config(path);
    FAIL() << "accepted broken TOML";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":3"), std::string::npos) << e.what();
  }
}

TEST_F(ConfigTest, UnknownKeyNamesLineAndKey) {
  auto path = write("[worker]\nconcurrency = 4\nconcurency = 5\n");
  try {
    load_config(path);
    FAIL() << "accepted an unknown key";
  } catch (const ConfigError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path + ":3"), std::string::npos) << m;
    EXPECT_NE(m.find("'worker.concurency'"), std::string::npos) << m;
  }
}

TEST_F(ConfigTest, WrongTypeAndRangeNameTheKey) {
  auto path = write("[worker]\n\nconcurrency = \"many\"\n");
  try {
    load_config(path);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(":3:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("must be an integer"), std::string::npos) << e.what();
  }
  path = write("[worker]\nconcurrency = 0\n");
  EXPECT_THROW(load_config(path), ConfigError);
  path = write("[worker]\nlease_seconds = \"soon\"\n");
  EXPECT_THROW(load_config(path), ConfigError);
}

TEST_F(ConfigTest, BadEnvironmentValueNamesTheVariable) {
  setenv("RUNNER_CONCURRENCY", "lots", 1);
  try {
    load_config("");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RUNNER_CONCURRENCY"), std::string::npos);
  }
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  EXPECT_THROW(load_config(dir_.path() + "/nope.toml"), ConfigError);
}

}  // namespace
}  // namespace jr
