#include "config.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <stdlib.h>

#include <fstream>
#include <map>

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
    for (const char* v : {"DATABASE_URL",
                          "RUNNER_DATABASE_URL",
                          "RUNNER_CONCURRENCY",
                          "RUNNER_QUEUES",
                          "RUNNER_LEASE_SECONDS",
                          "RUNNER_PLUGINS",
                          "RUNNER_WORKER_ID",
                          "DB_HOST",
                          "POSTGRES_HOST",
                          "DB_PORT",
                          "POSTGRES_PORT",
                          "DB_USER",
                          "POSTGRES_USER",
                          "DB_PASSWORD",
                          "POSTGRES_PASSWORD",
                          "DB_NAME",
                          "POSTGRES_DB",
                          "RQ_QUEUE",
                          "WORKER_ID",
                          "WORKER_CONCURRENCY",
                          "WORKER_POLL_INTERVAL",
                          "WORKER_MAX_RETRIES",
                          "RUNNER_HEARTBEAT_INTERVAL"}) {
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
  EXPECT_DOUBLE_EQ(d.plugin_start_timeout_seconds, 30);
  Config c = load_config(write(R"([worker]
enqueues_per_job = 50
log_lines_per_job = 200
log_bytes_per_job = 65536
progress_interval = "1s"
idle_timeout = "5m"
init_retry_max = "500ms"
plugin_start_timeout = "2s"
)"));
  EXPECT_EQ(c.enqueues_per_job, 50);
  EXPECT_EQ(c.log_lines_per_job, 200);
  EXPECT_EQ(c.log_bytes_per_job, 65536);
  EXPECT_DOUBLE_EQ(c.progress_interval_seconds, 1);
  EXPECT_DOUBLE_EQ(c.idle_timeout_seconds, 300);
  EXPECT_DOUBLE_EQ(c.init_retry_max_seconds, 0.5);
  EXPECT_DOUBLE_EQ(c.plugin_start_timeout_seconds, 2);
  EXPECT_THROW(load_config(write("[worker]\nenqueues_per_job = -1\n")), ConfigError);
  EXPECT_THROW(validate(load_config(write("[worker]\nidle_timeout = 0\n"))), ConfigError);
  EXPECT_THROW(validate(load_config(write("[worker]\nplugin_start_timeout = 0\n"))), ConfigError);
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

// The seeds' environment variables (docs/migrating.md): aliases below RUNNER_* and DATABASE_URL.
TEST_F(ConfigTest, SeedVariablesAreAliasesBelowTheRunnersOwn) {
  setenv("DB_HOST", "db.internal", 1);
  setenv("POSTGRES_HOST", "ignored.internal", 1);  // DB_* first, as in the seed's table
  setenv("POSTGRES_PORT", "6543", 1);
  setenv("DB_USER", "jobs", 1);
  setenv("DB_PASSWORD", "p@ss:w/rd %x'", 1);
  setenv("POSTGRES_DB", "domain_generator", 1);
  setenv("RQ_QUEUE", "domain_checks", 1);
  setenv("WORKER_ID", "worker-1", 1);
  setenv("WORKER_CONCURRENCY", "4", 1);
  setenv("WORKER_POLL_INTERVAL", "5s", 1);
  setenv("WORKER_MAX_RETRIES", "3", 1);
  Config c = load_config("");
  ASSERT_TRUE(c.database_url.has_value());
  // libpq reads the parts back exactly, the password's reserved characters included.
  PQconninfoOption* opts = PQconninfoParse(c.database_url->c_str(), nullptr);
  ASSERT_NE(opts, nullptr) << *c.database_url;
  std::map<std::string, std::string> parts;
  for (auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) parts[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  EXPECT_EQ(parts["host"], "db.internal");
  EXPECT_EQ(parts["port"], "6543");
  EXPECT_EQ(parts["user"], "jobs");
  EXPECT_EQ(parts["password"], "p@ss:w/rd %x'");
  EXPECT_EQ(parts["dbname"], "domain_generator");
  EXPECT_EQ(c.queues, std::vector<std::string>{"domain_checks"});
  EXPECT_EQ(c.worker_id, "worker-1");
  EXPECT_EQ(c.concurrency, 4);
  EXPECT_EQ(c.poll_interval_seconds, 5);
  EXPECT_EQ(c.max_attempts, 4);  // three retries after the first attempt
  EXPECT_EQ(c.env_aliases_used.size(), 10u);
  // The runner's own variables win; a URL wins over its parts.
  setenv("RUNNER_CONCURRENCY", "7", 1);
  setenv("RUNNER_QUEUES", "a", 1);
  setenv("RUNNER_WORKER_ID", "w-7", 1);
  setenv("DATABASE_URL", "postgresql://u@h/d", 1);
  c = load_config("");
  EXPECT_EQ(c.concurrency, 7);
  EXPECT_EQ(c.queues, std::vector<std::string>{"a"});
  EXPECT_EQ(c.worker_id, "w-7");
  EXPECT_EQ(*c.database_url, "postgresql://u@h/d");
  // A unix-socket directory and an IPv6 literal as DB_HOST.
  unsetenv("DATABASE_URL");
  setenv("DB_HOST", "/run/postgresql", 1);
  c = load_config("");
  opts = PQconninfoParse(c.database_url->c_str(), nullptr);
  ASSERT_NE(opts, nullptr) << *c.database_url;
  for (auto* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) parts[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  EXPECT_EQ(parts["host"], "/run/postgresql");
  EXPECT_EQ(parts["port"], "6543");
  setenv("DB_HOST", "::1", 1);
  c = load_config("");
  EXPECT_NE(c.database_url->find("@[::1]:6543/"), std::string::npos) << *c.database_url;
}

TEST_F(ConfigTest, BadSeedVariableNamesIt) {
  for (auto [var, value] :
       std::vector<std::pair<const char*, const char*>>{{"WORKER_CONCURRENCY", "lots"},
                                                        {"WORKER_MAX_RETRIES", "-1"},
                                                        {"WORKER_POLL_INTERVAL", "soon"},
                                                        {"DB_PORT", "54x"}}) {
    setenv(var, value, 1);
    try {
      load_config("");
      ADD_FAILURE() << var << "=" << value << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(var), std::string::npos) << e.what();
    }
    unsetenv(var);
  }
}

TEST_F(ConfigTest, HeartbeatIntervalIsShorterThanTheLease) {
  Config c = load_config(write("[worker]\nlease_seconds = \"10s\"\nheartbeat_interval = \"2s\"\n"));
  EXPECT_EQ(c.heartbeat_seconds, 2);
  EXPECT_NO_THROW(validate(c));
  c.heartbeat_seconds = 10;
  EXPECT_THROW(validate(c), ConfigError);
  c.heartbeat_seconds = 0.01;
  EXPECT_THROW(validate(c), ConfigError);
  c.heartbeat_seconds = 0;  // automatic: a quarter of the lease
  EXPECT_NO_THROW(validate(c));
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
