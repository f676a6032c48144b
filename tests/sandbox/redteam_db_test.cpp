// Red team, issue 16 class 4 (the database is a way out): hostile plugins with network =
// "loopback" next to the healthy echo plugin in a real runner (default isolation, as root),
// on the test cluster, which authenticates like the managed one.
//   - hostile_db is granted a database: it gets its own role and schema, and from there it
//     cannot read the queue (another plugin's payloads), forge or change jobs, call jr_enqueue,
//     run programs (COPY ... TO PROGRAM), read server files, create roles or databases, raise
//     its own role, read the plugins' passwords (jr_plugin_roles) or another plugin's schema,
//     nor create anything in public; it can use its own schema.
//   - hostile_db_nogrant asks for no database and gets no database_url at all.
//   - neither can log in without a password as the runner's role, the superuser or postgres.
//   - with a runner role that cannot create roles (an external database), the plugin that
//     asks for a database is refused alone, with a message saying how to fix it, until the
//     operator gives it one ([plugins.<name>] database_url).
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "db_auth.hpp"
#include "plugin_db.hpp"
#include "redteam.hpp"

namespace {

using jrtest::PgCluster;
using nlohmann::json;

// What the operator grants (test plugins have no built-in approval): both plugins the loopback
// network their manifests ask for, hostile_db the database its manifest asks for.
constexpr const char* kGrants =
    "[plugins.hostile_db]\ndatabase = true\n"
    "[plugins.hostile_db.sandbox]\nnetwork = \"loopback\"\n"
    "[plugins.hostile_db_nogrant.sandbox]\nnetwork = \"loopback\"\n";

std::string hostile_so(const std::string& c) {
  return jrtest::test_plugin_dir() + "/hostile_" + c + "/libjr_h_" + c + ".so";
}

class RedTeamDb : public jrtest::RedTeamFixture {
 protected:
  // "host=... port=... dbname=..." of url_: where the socket is, without any credentials.
  std::string socket_conninfo() {
    auto p = jr::dbauth::parse_conninfo(url_);
    return "host=" + p["host"] + " port=" + p["port"] + " dbname=" + p["dbname"];
  }
  // A role and a database as an operator's external server might have them: the runner's role
  // may log in and owns its database, but cannot create roles. Made with the cluster's
  // superuser (creating a role without CREATEROLE for someone else needs one).
  std::string external_database(const std::string& role, const std::string& password) {
    std::string su = PgCluster::get().superuser_url("postgres");
    PgCluster::exec(su, "CREATE ROLE " + role + " LOGIN PASSWORD '" + password + "'");
    PgCluster::exec(su, "CREATE DATABASE " + role + " OWNER " + role);
    auto p = jr::dbauth::parse_conninfo(url_);
    return "postgresql:///" + role + "?host=" + jr::dbauth::url_encode(p["host"]) +
           "&port=" + p["port"] + "&user=" + role + "&password=" + password;
  }
  json result_of(int64_t id) {
    std::string r = q("SELECT result::text FROM jr_jobs_done WHERE id = " + std::to_string(id));
    return r.empty() ? json::object() : json::parse(r);
  }
};

TEST_F(RedTeamDb, APluginWithADatabaseCannotLeaveItsOwnRoleAndOneWithoutGetsNoUrl) {
  const std::string marker = "/tmp/jr-redteam-db-" + std::to_string(getpid());
  std::filesystem::remove(marker);
  // Another plugin's data: a schema of its own with a secret in it, and a queued job.
  jrtest::PluginDb peer = jrtest::plugin_database(url_, "hostile_db_peer");
  PgCluster::exec(peer.url, "CREATE TABLE secrets (s text); INSERT INTO secrets VALUES ('p')");
  int64_t victim = enqueue(
      {"enqueue", "echo", "--payload", R"({"secret":"queue-secret-4711"})", "--delay", "1h"});
  ASSERT_GT(victim, 0);

  // The operator grants hostile_db the database its manifest asks for (a test plugin has no
  // built-in approval); hostile_db_nogrant asks for none.
  start_runner({hostile_so("db"), hostile_so("db_nogrant")}, kGrants);
  enqueue_healthy(20);
  // The runner's password: in no plugin's config, under any key (hostile_db's config has its own
  // role's URL, hostile_db_nogrant's no URL at all).
  const std::string runner_password = jr::dbauth::parse_conninfo(url_)["password"];
  ASSERT_GE(runner_password.size(), 8u) << "the harness's runner URL has no password: " << url_;
  std::string payload = arg_payload(socket_conninfo() + "|" + marker + "|" + runner_password);
  int64_t granted = enqueue({"enqueue", "hostile_db", "--payload", payload});
  int64_t nogrant = enqueue({"enqueue", "hostile_db_nogrant", "--payload", payload});
  ASSERT_EQ(wait_finished(granted, std::chrono::seconds(60)), "completed") << runner_->log();
  ASSERT_EQ(wait_finished(nogrant, std::chrono::seconds(60)), "completed") << runner_->log();

  json g = result_of(granted);
  ASSERT_TRUE(g.value("has_url", false)) << g.dump(2);
  ASSERT_TRUE(g.value("connected", false)) << g.dump(2);
  const json& a = g["attacks"];
  // Its own role (not a superuser), its own schema first on its search_path.
  EXPECT_EQ(a.value("whoami", ""), "OK: jr_plugin_hostile_db plugin_hostile_db false") << g.dump(2);
  for (const char* name :
       {"read_jobs", "read_jobs_all", "read_done", "update_jobs", "enqueue", "copy_program",
        "read_server_file", "create_role", "grant_program", "alter_self", "read_plugin_roles",
        "create_in_public", "create_database", "read_peer"}) {
    EXPECT_EQ(a.value(name, "").substr(0, 6), "42501:") << name << ": " << a.value(name, "");
  }
  EXPECT_EQ(a.value("own_table", ""), "OK: 7") << g.dump(2);
  EXPECT_EQ(g.dump().find("queue-secret-4711"), std::string::npos) << g.dump(2);
  json n = result_of(nogrant);
  EXPECT_FALSE(n.value("has_url", true)) << n.dump(2);
  EXPECT_FALSE(n.value("connected", true)) << n.dump(2);
  for (const json& r : {g, n}) {
    EXPECT_EQ(r.value("config_has_secret", true), false)
        << "the runner's password is in a plugin's config: " << r.dump(2);
    for (const char* user : {"jobrunner", "jobrunner_admin", "postgres", "root"}) {
      EXPECT_EQ(r["no_password"].value(user, ""), "refused") << user << ": " << r.dump(2);
    }
  }

  stop_and_check();
  // Nothing escaped: no program ran, nothing was created or changed outside its schema.
  EXPECT_FALSE(std::filesystem::exists(marker));
  std::filesystem::remove(marker);
  EXPECT_EQ(count("SELECT count(*) FROM pg_roles WHERE rolname = 'jr_evil_role'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM pg_database WHERE datname = 'jr_evil_db'"), 0);
  EXPECT_EQ(q("SELECT to_regclass('public.jr_evil_table') IS NULL"), "t");
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE payload ? 'forged'"), 0);
  EXPECT_EQ(q("SELECT priority || ' ' || state FROM jr_jobs WHERE id = " + std::to_string(victim)),
            "0 scheduled");
  EXPECT_EQ(q("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = "
              "'jr_plugin_hostile_db'"),
            "f");
  EXPECT_EQ(count("SELECT count(*) FROM jr_plugin_roles WHERE plugin = 'hostile_db_nogrant'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM pg_roles WHERE rolname = 'jr_plugin_hostile_db_nogrant'"),
            0);
}

TEST_F(RedTeamDb, WithoutCreateRoleTheGrantedPluginIsRefusedAloneUntilTheOperatorGivesOne) {
  const std::string tag = std::to_string(getpid());
  url_ = external_database("jr_ext_" + tag, "ext-password-" + tag);
  env_ = {{"DATABASE_URL", url_}};
  auto m = jrtest::run_runner({"migrate"}, env_);
  ASSERT_EQ(m.exit_code, 0) << m.err;

  start_runner({hostile_so("db")}, kGrants);
  enqueue_healthy(10);
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return count("SELECT count(*) FROM jr_workers WHERE 'echo' = ANY(kinds)") == 1; },
      std::chrono::seconds(30)))
      << runner_->log();
  EXPECT_EQ(count("SELECT count(*) FROM jr_workers WHERE 'hostile_db' = ANY(kinds)"), 0);
  std::string log = stop_and_check();
  EXPECT_NE(log.find("plugin refused"), std::string::npos) << log;
  EXPECT_NE(log.find("cannot create roles (it needs CREATEROLE)"), std::string::npos) << log;
  EXPECT_NE(log.find("[plugins.hostile_db] database_url"), std::string::npos) << log;
  EXPECT_EQ(count("SELECT count(*) FROM jr_plugin_roles"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'plugin\\_%'"), 0);

  // The operator gives the plugin a role of its own, by configuration.
  std::string su = PgCluster::get().superuser_url("postgres");
  std::string role = "jr_ext_plugin_" + tag;
  PgCluster::exec(su, "CREATE ROLE " + role + " LOGIN PASSWORD 'p-" + tag + "'");
  auto p = jr::dbauth::parse_conninfo(url_);
  std::string plugin_url = "postgresql:///" + p["dbname"] +
                           "?host=" + jr::dbauth::url_encode(p["host"]) + "&port=" + p["port"] +
                           "&user=" + role + "&password=p-" + tag;
  start_runner({hostile_so("db")},
               "[plugins.hostile_db]\ndatabase = true\ndatabase_url = \"" + plugin_url +
                   "\"\n[plugins.hostile_db.sandbox]\nnetwork = \"loopback\"\n");
  enqueue_healthy(5);
  int64_t id = enqueue({"enqueue", "hostile_db", "--payload", arg_payload(socket_conninfo())});
  ASSERT_EQ(wait_finished(id, std::chrono::seconds(60)), "completed") << runner_->log();
  json r = result_of(id);
  EXPECT_TRUE(r.value("connected", false)) << r.dump(2);
  EXPECT_EQ(r["attacks"].value("whoami", "").rfind("OK: " + role + " ", 0), 0u) << r.dump(2);
  EXPECT_EQ(r["attacks"].value("read_jobs", "").substr(0, 6), "42501:") << r.dump(2);
  stop_and_check();
}

}  // namespace
