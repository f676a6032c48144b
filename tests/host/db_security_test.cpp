// The database as a boundary (issue 16, class 4), against real PostgreSQL clusters:
//   - the managed cluster asks every role for a password (no trust), and the runner's role is
//     not a superuser;
//   - a cluster an earlier version initialised with trust authentication is upgraded on start,
//     running or stopped, without losing its jobs;
//   - migration v7: nothing of the runner's is PUBLIC; SQL producers enqueue through the role
//     jobrunner_producer; an up-to-date migrate does not wait for the migration lock;
//   - plugin roles: names, attributes, schema, search_path, idempotent and race-free
//     provisioning (several runners; several databases of one cluster), repair, refusal.
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "db_auth.hpp"
#include "harness.hpp"
#include "managed_db.hpp"
#include "migrations.hpp"
#include "plugin_db.hpp"
#include "plugin_loader.hpp"
#include "process.hpp"
#include "store.hpp"

namespace fs = std::filesystem;
using jrtest::PgCluster;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The SQLSTATE `sql` fails with on `url` ("" when it succeeds).
std::string sqlstate_of(const std::string& url, const std::string& sql) {
  try {
    PgCluster::exec(url, sql);
    return "";
  } catch (const pqxx::insufficient_privilege&) {
    return "42501";  // libpqxx 6 leaves sqlstate() empty on its specific classes
  } catch (const pqxx::sql_error& e) {
    return e.sqlstate().empty() ? std::string("error: ") + e.what() : e.sqlstate();
  }
}

// pg_hba.conf without its comments.
std::string hba_rules(const std::string& path) {
  std::ifstream in(path);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out += line + "\n";
  }
  return out;
}

// Connecting as `user` with no password at all: the error text, or "CONNECTED".
std::string connect_without_password(const std::string& socket_dir, const std::string& user) {
  try {
    pqxx::connection c("host=" + socket_dir + " port=5432 dbname=postgres user=" + user +
                       " passfile=/nonexistent");
    return "CONNECTED";
  } catch (const std::exception& e) {
    return e.what();
  }
}

TEST(ManagedCluster, EveryRoleNeedsItsPasswordAndTheRunnersRoleIsNoSuperuser) {
  PgCluster& pg = PgCluster::get();
  std::string url = pg.create_database("sec");
  jr::ManagedDbOptions o;
  o.data_dir = pg.root() + "/pg";
  jr::ManagedDb md(o);
  for (const char* user : {"jobrunner", "jobrunner_admin", "postgres"}) {
    std::string r = connect_without_password(md.socket_dir(), user);
    EXPECT_NE(r.find("password"), std::string::npos) << user << ": " << r;
  }
  EXPECT_THROW(pqxx::connection(md.url_for("postgres") + "&password=wrong"),
               pqxx::broken_connection);
  std::string hba = hba_rules(o.data_dir + "/pg_hba.conf");
  EXPECT_EQ(hba.find("trust"), std::string::npos) << hba;
  EXPECT_EQ(PgCluster::query_one(pg.superuser_url("postgres"),
                                 "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method <> "
                                 "'scram-sha-256' OR error IS NOT NULL"),
            "0");
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT current_user || ' ' || rolsuper || rolcreaterole || "
                                 "rolcreatedb FROM pg_roles WHERE rolname = current_user"),
            "jobrunner falsetruetrue");
  EXPECT_EQ(PgCluster::query_one(pg.superuser_url("postgres"),
                                 "SELECT current_user || ' ' || rolsuper FROM pg_roles WHERE "
                                 "rolname = current_user"),
            "jobrunner_admin true");
  // Not a superuser: no programs, no server files.
  EXPECT_EQ(sqlstate_of(url, "COPY (SELECT 1) TO PROGRAM 'true'"), "42501");
  EXPECT_EQ(sqlstate_of(url, "SELECT pg_read_file('/etc/hostname')"), "42501");
  // The passwords: private files of the user running the runner; none in the runner's URL.
  for (const std::string& f : {md.passfile(), md.superuser_passfile()}) {
    struct stat st {};
    ASSERT_EQ(stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
    EXPECT_EQ(st.st_uid, geteuid()) << f;
  }
  EXPECT_EQ(md.url().find("password="), std::string::npos) << md.url();
  pqxx::connection via_passfile(md.url_for("postgres"));
  EXPECT_TRUE(via_passfile.is_open());
  if (geteuid() == 0) {
    // Sandboxed workers run under per-plugin uids: the socket is reachable, passwords guard it.
    struct stat st {};
    ASSERT_EQ(stat(md.socket_dir().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0755u);
  }
}

// A cluster as versions before issue 16 initialised it: trust authentication, the runner
// connected as the bootstrap superuser `jobrunner`, socket directory 0750, schema v1..v6, a
// queued job and a plugin's table in public.
class TrustCluster {
 public:
  explicit TrustCluster(const std::string& data_dir) : dir_(data_dir) {
    run_as_ = geteuid() == 0 ? (getpwnam("postgres") ? "postgres" : "nobody") : "";
    bin_ = jr::ManagedDb::find_bindir();
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::replace);
    fs::create_directories(sock());
    if (!run_as_.empty()) {
      struct passwd* pw = getpwnam(run_as_.c_str());
      EXPECT_EQ(chown(dir_.c_str(), pw->pw_uid, pw->pw_gid), 0);
      EXPECT_EQ(chown(sock().c_str(), pw->pw_uid, pw->pw_gid), 0);
      chmod(sock().c_str(), 0750);
    }
    auto r = jr::run_command({bin_ + "/initdb", "-D", dir_, "-U", "jobrunner", "--auth=trust",
                              "--encoding=UTF8", "--locale=C", "--no-instructions"},
                             run_as_);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(dir_ + "/postgresql.conf", std::ios::app)
        << "\nlisten_addresses = ''\nport = 5432\nmax_connections = 50\nfsync = off\n"
        << "unix_socket_directories = '" << sock() << "'\n";
    start();
    pqxx::connection c(url("postgres"));
    pqxx::nontransaction(c).exec("CREATE DATABASE jobrunner");
    pqxx::connection j(url("jobrunner"));
    pqxx::work tx(j);
    tx.exec(
        "CREATE TABLE jr_migrations (version integer PRIMARY KEY, name text NOT NULL, "
        "applied_at timestamptz NOT NULL DEFAULT now())");
    for (const auto& m : jr::migrations()) {
      if (m.version > 6) break;
      tx.exec(m.sql);
      tx.exec_params("INSERT INTO jr_migrations (version, name) VALUES ($1, $2)", m.version,
                     m.name);
    }
    tx.exec("SELECT jr_enqueue('echo', '{\"old\": true}')");
    tx.exec("CREATE TABLE contests (id bigint PRIMARY KEY); INSERT INTO contests VALUES (7)");
    tx.commit();
  }
  std::string sock() const { return dir_ + ".sock"; }
  std::string url(const std::string& db) const {
    return "host=" + sock() + " port=5432 user=jobrunner dbname=" + db;
  }
  void start() {
    auto r = jr::run_command(
        {bin_ + "/pg_ctl", "start", "-D", dir_, "-l", dir_ + "/server.log", "-w"}, run_as_);
    ASSERT_EQ(r.exit_code, 0) << r.output << slurp(dir_ + "/server.log");
  }
  void stop() {
    auto r = jr::run_command({bin_ + "/pg_ctl", "stop", "-D", dir_, "-m", "fast", "-w"}, run_as_);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

 private:
  std::string dir_, run_as_, bin_;
};

// What an upgraded cluster must look like, seen from outside.
void expect_upgraded(const std::string& data_dir) {
  jr::ManagedDbOptions o;
  o.data_dir = data_dir;
  jr::ManagedDb md(o);
  for (const char* user : {"jobrunner", "jobrunner_admin", "jobrunner_upgrade"}) {
    std::string r = connect_without_password(md.socket_dir(), user);
    EXPECT_NE(r.find("password"), std::string::npos) << user << ": " << r;
  }
  std::string su = md.superuser_url_for("jobrunner");
  EXPECT_EQ(PgCluster::query_one(su,
                                 "SELECT rolname || ' ' || rolsuper FROM pg_roles WHERE "
                                 "oid = 10"),
            "jobrunner_admin true");
  EXPECT_EQ(
      PgCluster::query_one(su, "SELECT count(*) FROM pg_roles WHERE rolname = 'jobrunner_upgrade'"),
      "0");
  std::string url = md.url();
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT rolsuper::text FROM pg_roles WHERE rolname = "
                                 "current_user"),
            "false");
  // The runner's role owns the database, the queue (with its job) and the old plugin table.
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE "
                                 "datname = current_database()"),
            "jobrunner");
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT count(*) FROM pg_class WHERE relnamespace = "
                                 "'public'::regnamespace AND relowner = 10"),
            "0");
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT count(*) FROM pg_proc WHERE pronamespace = "
                                 "'public'::regnamespace AND proowner = 10"),
            "0");
  EXPECT_EQ(PgCluster::query_one(url, "SELECT count(*) FROM jr_jobs WHERE payload ? 'old'"), "1");
  EXPECT_EQ(PgCluster::query_one(url, "SELECT id FROM contests"), "7");
  EXPECT_EQ(hba_rules(data_dir + "/pg_hba.conf"), "local   all   all   scram-sha-256\n");
}

TEST(ManagedCluster, ARunningTrustClusterOfAnEarlierVersionIsUpgradedOnStart) {
  jrtest::TempDir tmp;
  TrustCluster old(tmp.path() + "/pg");
  // The new runner, on that data directory: its first command upgrades and migrates.
  auto r = jrtest::run_runner({"--data-dir", tmp.path(), "enqueue", "echo", "--payload", "{}"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("upgraded to password authentication"), std::string::npos) << r.err;
  expect_upgraded(tmp.path() + "/pg");
  jr::ManagedDbOptions o;
  o.data_dir = tmp.path() + "/pg";
  jr::ManagedDb md(o);
  EXPECT_EQ(PgCluster::query_one(md.url(), "SELECT count(*) FROM jr_jobs"), "2");
  EXPECT_EQ(PgCluster::query_one(md.url(), "SELECT max(version) FROM jr_migrations"),
            std::to_string(jr::migrations().back().version));
  // Stopped and started again by the runner: set up already, nothing to upgrade.
  ASSERT_EQ(jrtest::run_runner({"--data-dir", tmp.path(), "db", "stop"}, {}).exit_code, 0);
  r = jrtest::run_runner({"--data-dir", tmp.path(), "enqueue", "echo", "--payload", "{}"}, {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("upgraded"), std::string::npos) << r.err;
  EXPECT_EQ(PgCluster::query_one(md.url(), "SELECT count(*) FROM jr_jobs"), "3");
  md.stop();
}

TEST(ManagedCluster, AStoppedTrustClusterIsUpgradedWhenStarted) {
  jrtest::TempDir tmp;
  {
    TrustCluster old(tmp.path() + "/pg");
    old.stop();
  }
  jr::ManagedDbOptions o;
  o.data_dir = tmp.path() + "/pg";
  jr::ManagedDb md(o);
  EXPECT_TRUE(md.start());
  expect_upgraded(o.data_dir);
  EXPECT_FALSE(md.start());  // running, set up: a no-op
  md.stop();
}

class Privileges : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = PgCluster::get().create_database("priv");
    jr::Store::open(url_)->SchemaMigrate();
  }
  // A login role of the test's own, with `password`, and its URL on this database.
  std::string login_role(const std::string& name, const std::string& password) {
    PgCluster::exec(url_, "CREATE ROLE " + name + " LOGIN PASSWORD '" + password + "'");
    return jr::dbauth::url_for_role(url_, name, password);
  }
  std::string url_;
};

TEST_F(Privileges, NothingOfTheRunnersIsPublicAndProducersEnqueueThroughTheirRole) {
  EXPECT_EQ(PgCluster::query_one(
                url_,
                "SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, "
                "acldefault('r', c.relowner))) a WHERE c.relname LIKE 'jr\\_%' AND a.grantee = 0"),
            "0");
  EXPECT_EQ(PgCluster::query_one(
                url_,
                "SELECT count(*) FROM pg_proc p, aclexplode(coalesce(p.proacl, "
                "acldefault('f', p.proowner))) a WHERE p.proname LIKE 'jr\\_%' AND a.grantee = 0"),
            "0");
  // PostgreSQL 15's default, checked: nobody but the owner creates objects in public.
  EXPECT_EQ(PgCluster::query_one(url_,
                                 "SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) "
                                 "a WHERE n.nspname = 'public' AND a.grantee = 0 AND "
                                 "a.privilege_type = 'CREATE'"),
            "0");

  std::string app = "jr_test_app_" + std::to_string(getpid());
  std::string app_url = login_role(app, "app-pw");
  const char* enqueue = "SELECT jr_enqueue('echo', '{\"from\": \"app\"}')";
  EXPECT_EQ(sqlstate_of(app_url, enqueue), "42501");
  EXPECT_EQ(sqlstate_of(app_url, "SELECT count(*) FROM jr_jobs"), "42501");
  EXPECT_EQ(sqlstate_of(app_url, "CREATE TABLE public.x (i int)"), "42501");
  PgCluster::exec(url_, "GRANT jobrunner_producer TO " + app);
  EXPECT_EQ(sqlstate_of(app_url, enqueue), "");
  EXPECT_EQ(PgCluster::query_one(url_,
                                 "SELECT count(*) FROM jr_jobs WHERE payload->>'from' = "
                                 "'app'"),
            "1");
  // The function runs as its owner; the producer still sees nothing of the queue.
  EXPECT_EQ(sqlstate_of(app_url, "SELECT count(*) FROM jr_jobs"), "42501");
  EXPECT_EQ(sqlstate_of(app_url, "SELECT count(*) FROM jr_plugin_roles"), "42501");
}

TEST_F(Privileges, AnUpToDateMigrateDoesNotWaitForTheMigrationLock) {
  // Any role can take an advisory lock: a plugin's role holds the runner's migration lock.
  jrtest::PluginDb locker = jrtest::plugin_database(url_, "locker");
  pqxx::connection hold(locker.url);
  pqxx::nontransaction(hold).exec("SELECT pg_advisory_lock(" + std::to_string(0x6a6f6272756e0001) +
                                  ")");
  auto start = std::chrono::steady_clock::now();
  auto r = jrtest::run_runner({"migrate"}, {{"DATABASE_URL", url_}}, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(PluginRoles, NamesAreIdentifiersThatNeverCollide) {
  EXPECT_EQ(jr::plugin_role_name("contest_submit"), "jr_plugin_contest_submit");
  EXPECT_EQ(jr::plugin_schema_name("contest_submit"), "plugin_contest_submit");
  std::set<std::string> roles, schemas;
  for (const std::string& n :
       {std::string("a.b"), std::string("a_b"), std::string("A_b"), std::string("a-b"),
        std::string(200, 'x'), std::string(199, 'x') + "y"}) {
    std::string r = jr::plugin_role_name(n), s = jr::plugin_schema_name(n);
    EXPECT_LE(r.size() + 9, 63u) << r;  // room for a database suffix
    EXPECT_LE(s.size(), 63u) << s;
    for (char c : r + s) EXPECT_TRUE(islower(c) || isdigit(c) || c == '_') << r << " " << s;
    roles.insert(r);
    schemas.insert(s);
  }
  EXPECT_EQ(roles.size(), 6u);
  EXPECT_EQ(schemas.size(), 6u);
}

TEST(PluginRoles, APluginWithoutAGrantGetsNoUrlAndAnOperatorsUrlIsKept) {
  jr::LoadedPlugin p;
  p.name = "quiet";
  jr::PluginDatabases dbs("postgresql:///unreachable?host=/nonexistent");  // never connected
  EXPECT_EQ(dbs.url_for(p, nlohmann::json::object()), "");
  EXPECT_EQ(dbs.url_for(p, {{"quiet", {{"x", 1}}}}), "");
  EXPECT_TRUE(jr::plugin_config_for(p, {{"quiet", {{"x", 1}}}}, "").count("database_url") == 0);
  p.manifest = {{"database", true}};  // a request alone grants nothing
  EXPECT_EQ(dbs.url_for(p, nlohmann::json::object()), "");
  p.grants.database = true;
  EXPECT_EQ(dbs.url_for(p, {{"quiet", {{"database_url", "postgresql:///mine"}}}}),
            "postgresql:///mine");
}

TEST(PluginRoles, ARoleOwnsItsSchemaOnlyAndProvisioningIsIdempotent) {
  std::string url = PgCluster::get().create_database("roles");
  jrtest::PluginDb a = jrtest::plugin_database(url, "alpha");
  EXPECT_EQ(a.role, "jr_plugin_alpha");
  EXPECT_EQ(a.schema, "plugin_alpha");
  EXPECT_EQ(PgCluster::query_one(
                url,
                "SELECT concat_ws(' ', rolsuper, rolcreaterole, rolcreatedb, rolreplication, "
                "rolbypassrls, rolcanlogin, rolconnlimit) FROM pg_roles WHERE rolname = "
                "'jr_plugin_alpha'"),
            "f f f f f t 64");
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE "
                                 "nspname = 'plugin_alpha'"),
            "jr_plugin_alpha");
  // Neither the runner's role nor the plugin's is a member of the other (or of anything).
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT pg_has_role('jobrunner', 'jr_plugin_alpha', "
                                 "'USAGE')::text || pg_has_role('jr_plugin_alpha', "
                                 "'jobrunner', 'MEMBER')::text"),
            "falsefalse");
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT count(*) FROM pg_auth_members WHERE member = "
                                 "'jr_plugin_alpha'::regrole"),
            "0");
  // The password is stored as a SCRAM verifier, and the runner keeps it where only it reads.
  EXPECT_EQ(PgCluster::query_one(PgCluster::get().superuser_url("postgres"),
                                 "SELECT rolpassword LIKE 'SCRAM-SHA-256$4096:%' FROM pg_authid "
                                 "WHERE rolname = 'jr_plugin_alpha'"),
            "t");
  EXPECT_EQ(PgCluster::query_one(a.url,
                                 "SELECT current_user || ' ' || current_setting("
                                 "'search_path')"),
            "jr_plugin_alpha plugin_alpha");
  PgCluster::exec(a.url, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
  EXPECT_EQ(PgCluster::query_one(a.url, "SELECT count(*) FROM plugin_alpha.t"), "1");
  // Again (a runner restart): the same role, the same password.
  jrtest::PluginDb again = jrtest::plugin_database(url, "alpha");
  EXPECT_EQ(again.url, a.url);
  EXPECT_EQ(PgCluster::query_one(url, "SELECT count(*) FROM jr_plugin_roles"), "1");
  // A plugin that changed its own password is repaired by the next provisioning.
  PgCluster::exec(a.url, "ALTER ROLE CURRENT_USER PASSWORD 'mine-now'");
  EXPECT_THROW(pqxx::connection{a.url}, pqxx::broken_connection);
  EXPECT_EQ(jrtest::plugin_database(url, "alpha").url, a.url);
  EXPECT_EQ(PgCluster::query_one(a.url, "SELECT count(*) FROM t"), "1");
  // Other plugins' schemas are closed to it.
  jrtest::PluginDb b = jrtest::plugin_database(url, "beta");
  EXPECT_EQ(sqlstate_of(b.url, "SELECT count(*) FROM plugin_alpha.t"), "42501");
}

TEST(PluginRoles, RunnersStartingAtOnceAgreeOnOneRoleAndPassword) {
  std::string url = PgCluster::get().create_database("race");
  jr::Store::open(url)->SchemaMigrate();
  std::vector<std::string> urls(6);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < urls.size(); ++i) {
    threads.emplace_back([&, i] { urls[i] = jr::provision_plugin_database(url, "racer").url; });
  }
  for (auto& t : threads) t.join();
  for (const auto& u : urls) EXPECT_EQ(u, urls[0]);
  EXPECT_EQ(PgCluster::query_one(urls[0], "SELECT current_user"), "jr_plugin_racer");
}

TEST(PluginRoles, TwoDatabasesOfOneClusterGetTwoRoles) {
  std::string one = PgCluster::get().create_database("twoa");
  std::string two = PgCluster::get().create_database("twob");
  jrtest::PluginDb a = jrtest::plugin_database(one, "twin");
  jrtest::PluginDb b = jrtest::plugin_database(two, "twin");
  EXPECT_EQ(a.role, "jr_plugin_twin");
  EXPECT_EQ(b.role.rfind("jr_plugin_twin_", 0), 0u) << b.role;
  EXPECT_EQ(b.schema, "plugin_twin");
  // The second did not take the first's role over: both still log in.
  EXPECT_EQ(PgCluster::query_one(a.url, "SELECT current_user"), a.role);
  EXPECT_EQ(PgCluster::query_one(b.url, "SELECT current_user"), b.role);
  EXPECT_EQ(jrtest::plugin_database(two, "twin").role, b.role);
  // A role of that name an operator made (not jobrunner's) is not taken over either.
  PgCluster::exec(one, "CREATE ROLE jr_plugin_squatter NOLOGIN");
  EXPECT_NE(jrtest::plugin_database(one, "squatter").role, "jr_plugin_squatter");
}

TEST(PluginRoles, ARunnerRoleThatCannotCreateRolesIsRefusedSayingSo) {
  std::string su = PgCluster::get().superuser_url("postgres");
  std::string role = "jr_nocreate_" + std::to_string(getpid());
  PgCluster::exec(su, "CREATE ROLE " + role + " LOGIN PASSWORD 'pw'");
  PgCluster::exec(su, "CREATE DATABASE " + role + " OWNER " + role);
  std::string base = PgCluster::get().url(role);
  std::string url = jr::dbauth::url_for_role(base, role, "pw");
  jr::Store::open(url)->SchemaMigrate();
  try {
    jr::provision_plugin_database(url, "wants_db");
    ADD_FAILURE() << "provisioned without CREATEROLE";
  } catch (const jr::PluginDbRefused& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create roles (it needs CREATEROLE)"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("[plugins.wants_db] database_url"), std::string::npos)
        << e.what();
  }
}

TEST(DbAuth, ScramVerifiersAndPasswordFiles) {
  std::string pw = jr::dbauth::random_password();
  EXPECT_EQ(pw.size(), 48u);
  EXPECT_NE(pw, jr::dbauth::random_password());
  std::string v = jr::dbauth::scram_verifier(pw);
  EXPECT_EQ(v.rfind("SCRAM-SHA-256$4096:", 0), 0u) << v;
  jrtest::TempDir tmp;
  std::string f = tmp.path() + "/x.pgpass";
  EXPECT_FALSE(jr::dbauth::read_passfile(f, "u"));
  jr::dbauth::write_passfile(f, "u:x", "p\\w:d");
  EXPECT_EQ(jr::dbauth::read_passfile(f, "u:x").value_or(""), "p\\w:d");
  EXPECT_EQ(jr::dbauth::load_or_create_passfile(f, "u:x"), "p\\w:d");
  struct stat st {};
  ASSERT_EQ(stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::string u = jr::dbauth::url_for_role(
      "postgresql://old:secret@db.example:6543/jobs?sslmode=require&sslcert=/c&passfile=/p", "n",
      "q r");
  EXPECT_EQ(u,
            "postgresql:///jobs?host=db.example&port=6543&sslmode=require&user=n&password=q%20r");
}

}  // namespace
