// The connection plan for a budget (host/store/db_budget.hpp) and the settings behind it
// (max_connections, pgbouncer, listen_database_url in host/core/config.cpp). The runner's real
// sessions under load are counted in connections_test.cpp.
#include "db_budget.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <stdexcept>
#include <string>

#include "config.hpp"
#include "harness.hpp"

namespace jr {
namespace {

TEST(ConnectionPlan, DefaultIsFourAndFiveWithHttp) {
  ConnectionPlan p = plan_connections(0, false, true);
  EXPECT_EQ(p.total(), 4);
  EXPECT_EQ(p.describe(), "lease renewal 1, LISTEN 1, claims+completions 1, services 1 = 4 of 4");
  ConnectionPlan h = plan_connections(0, true, true);
  EXPECT_EQ(h.total(), 5);
  EXPECT_EQ(h.http, 1);
  // Polling (PgBouncer without a direct LISTEN URL): one less.
  EXPECT_EQ(plan_connections(0, false, false).total(), 3);
}

// LISTEN on the claims connection when it may share it (the claims' own server): the default 4
// then gives claims, completions and services a connection each.
TEST(ConnectionPlan, ListenSharesTheClaimsConnectionSoCompletionsGetTheirOwn) {
  ConnectionPlan p = plan_connections(0, false, true, true);
  EXPECT_TRUE(p.listen_on_claims);
  EXPECT_EQ(p.completers, 1);
  EXPECT_TRUE(p.services_own);
  EXPECT_EQ(p.total(), 4);
  EXPECT_EQ(p.describe(), "lease renewal 1, claims+LISTEN 1, completions 1, services 1 = 4 of 4");
  ConnectionPlan h = plan_connections(0, true, true, true);
  EXPECT_EQ(h.describe(),
            "lease renewal 1, HTTP 1, claims+LISTEN 1, completions 1, services 1 = 5 of 5");
  EXPECT_EQ(plan_connections(5, false, true, true).completers, 2);
  EXPECT_EQ(plan_connections(5, false, true, true).total(), 5);
  EXPECT_EQ(plan_connections(50, false, true, true).total(), 5) << "a ceiling, not a target";
  // The minimum keeps LISTEN apart: the one other connection is shared by claims, completions
  // and services, and a wait for notifications must not park it.
  ConnectionPlan three = plan_connections(3, false, true, true);
  EXPECT_FALSE(three.listen_on_claims);
  EXPECT_EQ(three.describe(), "lease renewal 1, LISTEN 1, claims+completions+services 1 = 3 of 3");
  // Polling: nothing to share.
  EXPECT_FALSE(plan_connections(0, false, false, true).listen_on_claims);
  EXPECT_EQ(plan_connections(0, false, false, true).total(), 3);
}

TEST(ConnectionPlan, ExtraConnectionsGoToCompletionsAndFewerShareOne) {
  ConnectionPlan three = plan_connections(3, false, true);
  EXPECT_FALSE(three.services_own);
  EXPECT_EQ(three.completers, 0);
  EXPECT_EQ(three.total(), 3);
  EXPECT_EQ(three.describe(), "lease renewal 1, LISTEN 1, claims+completions+services 1 = 3 of 3");
  EXPECT_EQ(plan_connections(5, false, true).completers, 1);
  EXPECT_EQ(plan_connections(5, false, true).total(), 5);
  EXPECT_EQ(plan_connections(6, false, true).completers, 2);
  // More than the services can use is a ceiling, not a target.
  EXPECT_EQ(plan_connections(50, false, true).total(), 6);
  EXPECT_EQ(plan_connections(2, false, false).total(), 2);
}

TEST(ConnectionPlan, TooSmallSaysWhatNeedsHowMany) {
  try {
    plan_connections(3, true, true);
    FAIL() << "a budget of 3 with HTTP was accepted";
  } catch (const std::invalid_argument& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("max_connections 3 is too small"), std::string::npos) << m;
    EXPECT_NE(m.find("lease renewal needs 1, LISTEN 1, the HTTP server 1"), std::string::npos) << m;
    EXPECT_NE(m.find("at least 4; the default is 5"), std::string::npos) << m;
  }
  EXPECT_THROW(plan_connections(1, false, false), std::invalid_argument);
  EXPECT_THROW(plan_connections(-1, false, true), std::invalid_argument);
}

class BudgetConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"RUNNER_MAX_CONNECTIONS", "RUNNER_PGBOUNCER", "RUNNER_MAINTENANCE",
                          "RUNNER_LISTEN_DATABASE_URL", "DATABASE_URL", "RUNNER_DATABASE_URL"}) {
      unsetenv(v);
    }
  }
  void TearDown() override { SetUp(); }
  std::string write(const std::string& text) {
    std::string path = dir_.path() + "/runner.toml";
    std::ofstream(path) << text;
    return path;
  }
  jrtest::TempDir dir_;
};

TEST_F(BudgetConfig, FileEnvironmentAndErrors) {
  Config d = load_config("");
  EXPECT_EQ(d.max_connections, 0);
  EXPECT_FALSE(d.pgbouncer);
  EXPECT_FALSE(d.listen_database_url.has_value());
  Config c = load_config(
      write("listen_database_url = \"postgresql://direct/db\"\n[worker]\nmax_connections = 6\n"
            "pgbouncer = true\n"));
  EXPECT_EQ(c.max_connections, 6);
  EXPECT_TRUE(c.pgbouncer);
  EXPECT_EQ(c.listen_database_url.value_or(""), "postgresql://direct/db");
  EXPECT_THROW(load_config(write("[worker]\nmax_connections = 0\n")), ConfigError);
  EXPECT_THROW(load_config(write("[worker]\npgbouncer = \"yes\"\n")), ConfigError);
  setenv("RUNNER_MAX_CONNECTIONS", "3", 1);
  setenv("RUNNER_PGBOUNCER", "0", 1);
  setenv("RUNNER_LISTEN_DATABASE_URL", "postgresql://other/db", 1);
  Config e = load_config(write("[worker]\nmax_connections = 6\npgbouncer = true\n"));
  EXPECT_EQ(e.max_connections, 3);
  EXPECT_FALSE(e.pgbouncer);
  EXPECT_EQ(e.listen_database_url.value_or(""), "postgresql://other/db");
  setenv("RUNNER_PGBOUNCER", "maybe", 1);
  try {
    load_config("");
    FAIL() << "RUNNER_PGBOUNCER=maybe was accepted";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("RUNNER_PGBOUNCER"), std::string::npos) << err.what();
  }
}

// maintenance: on unless the file or the environment turns it off; the environment wins, and a
// value that is not a boolean is refused by name.
TEST_F(BudgetConfig, MaintenanceSetting) {
  EXPECT_TRUE(load_config("").maintenance);
  EXPECT_FALSE(load_config(write("[worker]\nmaintenance = false\n")).maintenance);
  EXPECT_THROW(load_config(write("[worker]\nmaintenance = \"off\"\n")), ConfigError);
  setenv("RUNNER_MAINTENANCE", "on", 1);
  EXPECT_TRUE(load_config(write("[worker]\nmaintenance = false\n")).maintenance);
  setenv("RUNNER_MAINTENANCE", "no", 1);
  EXPECT_FALSE(load_config("").maintenance);
  setenv("RUNNER_MAINTENANCE", "sometimes", 1);
  try {
    load_config("");
    FAIL() << "RUNNER_MAINTENANCE=sometimes was accepted";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("RUNNER_MAINTENANCE"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace jr
