#include "managed_db.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "db_auth.hpp"
#include "log.hpp"
#include "process.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace jr {
namespace {

std::string bindir_lookup() {
  if (const char* env = std::getenv("RUNNER_PG_BINDIR"); env && *env) return env;
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    fs::path b = entry.path() / "bin";
    if (fs::exists(b / "pg_ctl")) {
      int v = 0;
      try {
        v = std::stoi(entry.path().filename().string());
      } catch (...) {
      }
      found.emplace_back(v, b.string());
    }
  }
  if (found.empty()) {
    throw std::runtime_error(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (install the "
        "'postgresql' package, run scripts/install-deps.sh, or set RUNNER_PG_BINDIR)");
  }
  std::sort(found.begin(), found.end());
  return found.back().second;
}

std::string pick_run_as() {
  if (geteuid() != 0) return "";
  if (find_user("postgres")) return "postgres";
  return "nobody";
}

void chown_to(const std::string& path, const std::string& user) {
  if (user.empty()) return;
  auto pw = find_user(user);
  if (!pw) return;
  if (chown(path.c_str(), pw->uid, pw->gid) != 0) {
    throw std::runtime_error("cannot chown " + path + " to " + user);
  }
}

// pg_hba.conf of a managed cluster: a password for everyone, over the unix socket only.
constexpr const char* kHba =
    "# Written by jobrunner (host/store/managed_db.cpp): every connection needs a password\n"
    "# (scram-sha-256); unix socket only (listen_addresses = ''). No trust, no peer.\n"
    "local   all   all   scram-sha-256\n";

// A superuser that exists only while an earlier version's cluster is upgraded: the bootstrap
// role cannot rename itself, so this one renames it.
constexpr const char* kUpgradeRole = "jobrunner_upgrade";

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Holds an exclusive flock on a file beside the data directory while starting or stopping, so
// two runners that start at once do not both run initdb or pg_ctl start.
class DirLock {
 public:
  explicit DirLock(const std::string& path) {
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) flock(fd_, LOCK_EX);
  }
  ~DirLock() {
    if (fd_ >= 0) close(fd_);
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace

ManagedDb::ManagedDb(ManagedDbOptions opts) : opts_(std::move(opts)) {
  if (opts_.data_dir.empty()) opts_.data_dir = default_data_dir();
  opts_.data_dir = fs::absolute(opts_.data_dir).lexically_normal().string();
  while (opts_.data_dir.size() > 1 && opts_.data_dir.back() == '/') opts_.data_dir.pop_back();
  std::string sock = socket_dir() + "/.s.PGSQL." + std::to_string(opts_.port);
  if (sock.size() >= 107) {
    throw std::runtime_error("data directory path is too long for a unix socket (" +
                             std::to_string(sock.size()) + " > 106 bytes): " + opts_.data_dir);
  }
  run_as_ = pick_run_as();
}

std::string ManagedDb::default_data_dir() { return runner_state_dir() + "/pg"; }

std::string ManagedDb::find_bindir() { return bindir_lookup(); }

std::string ManagedDb::bin(const std::string& tool) const {
  if (bindir_.empty()) const_cast<ManagedDb*>(this)->bindir_ = find_bindir();
  return bindir_ + "/" + tool;
}

bool ManagedDb::initialised() const { return fs::exists(opts_.data_dir + "/PG_VERSION"); }

bool ManagedDb::running() const {
  if (!initialised()) return false;
  auto r = run_command({bin("pg_ctl"), "status", "-D", opts_.data_dir}, run_as_);
  return r.exit_code == 0;
}

std::string ManagedDb::log_tail() const {
  std::ifstream in(opts_.data_dir + "/server.log");
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i) {
    out += "  " + lines[i] + "\n";
  }
  return out;
}

void ManagedDb::init_cluster() {
  fs::path dir(opts_.data_dir);
  fs::create_directories(dir.parent_path());
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  chown_to(dir.string(), run_as_);
  log::info("initialising managed PostgreSQL cluster", {{"data_dir", opts_.data_dir}});
  // The superuser's password: kept by the runner's user; initdb (the cluster's user) reads it
  // from a private copy that is removed as soon as initdb is done.
  std::string pw = dbauth::load_or_create_passfile(superuser_passfile(), opts_.superuser);
  std::string pwfile = opts_.data_dir + ".initdb-pw";
  unlink(pwfile.c_str());
  int fd = open(pwfile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + pwfile);
  std::string line = pw + "\n";
  bool written = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  if (!run_as_.empty()) {
    auto owner = find_user(run_as_);
    written = written && owner && fchown(fd, owner->uid, owner->gid) == 0;
  }
  close(fd);
  CommandResult r;
  if (written) {
    std::vector<std::string> argv = {bin("initdb"),        "-D",
                                     opts_.data_dir,       "-U",
                                     opts_.superuser,      "--auth=scram-sha-256",
                                     "--pwfile=" + pwfile, "--encoding=UTF8",
                                     "--locale=C",         "--no-instructions"};
    if (opts_.initdb_no_sync) argv.emplace_back("--no-sync");
    r = run_command(argv, run_as_);
  }
  unlink(pwfile.c_str());
  if (!written) throw std::runtime_error("cannot write " + pwfile + " for initdb");
  if (r.exit_code != 0) {
    throw std::runtime_error("initdb failed for " + opts_.data_dir + " (exit " +
                             std::to_string(r.exit_code) + "):\n" + r.output);
  }
  std::ofstream conf(opts_.data_dir + "/postgresql.conf", std::ios::app);
  conf << "\n# written by jobrunner: unix socket only, passwords as SCRAM verifiers\n"
       << "listen_addresses = ''\n"
       << "port = " << opts_.port << "\n"
       << "max_connections = 200\n"
       << "password_encryption = 'scram-sha-256'\n";
  for (const auto& [k, v] : opts_.settings) conf << k << " = " << v << "\n";
  conf.close();
  write_hba();
}

void ManagedDb::prepare_socket_dir() {
  std::string dir = socket_dir();
  fs::create_directories(dir);
  if (run_as_.empty()) {
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  } else {
    // Owned by the cluster's user (the server creates the socket there); everyone may reach
    // the socket, since every role needs its password (sandboxed workers run under their own
    // uids and must connect).
    chown_to(dir, run_as_);
    fs::permissions(dir,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                        fs::perms::others_read | fs::perms::others_exec,
                    fs::perm_options::replace);
  }
  // Older clusters were initialised with the socket in the data directory: the last setting in
  // postgresql.conf wins, so (re)state it on every start.
  std::string conf_path = opts_.data_dir + "/postgresql.conf";
  std::string want = "unix_socket_directories = '" + dir + "'";
  std::ifstream in(conf_path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.rfind("unix_socket_directories", 0) == 0) last = line;
  }
  if (last != want) std::ofstream(conf_path, std::ios::app) << want << "\n";
}

// Whether every rule in pg_hba.conf asks for a password (scram-sha-256) or rejects: then it is
// ours, or an operator's addition that keeps to it, and is left alone. Any other method (trust,
// peer, ident, password in clear, md5) means a cluster of an earlier version: rewritten.
bool ManagedDb::hba_is_ours() const {
  std::istringstream in(read_file(opts_.data_dir + "/pg_hba.conf"));
  bool any = false;
  for (std::string line; std::getline(in, line);) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::vector<std::string> f;
    for (std::string w; words >> w;) f.push_back(w);
    if (f.empty()) continue;
    if (f[0] == "include" || f[0] == "include_if_exists" || f[0] == "include_dir") return false;
    // local DATABASE USER METHOD; host* DATABASE USER ADDRESS [MASK] METHOD: the method is the
    // first of the known ones after the address.
    size_t at = f[0] == "local" ? 3 : 4;
    bool ok = false;
    for (size_t i = at; i < f.size() && i <= at + 1; ++i) {
      if (f[i] == "scram-sha-256" || f[i] == "reject") ok = true;
    }
    if (!ok) return false;
    any = true;
  }
  return any;
}

void ManagedDb::write_hba() {
  std::string path = opts_.data_dir + "/pg_hba.conf";
  std::string tmp = path + ".jobrunner";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kHba;
    if (!out.flush()) throw std::runtime_error("cannot write " + tmp);
  }
  chmod(tmp.c_str(), 0600);
  chown_to(tmp, run_as_);
  if (rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot replace " + path);
}

std::string ManagedDb::role_url(const std::string& database, const std::string& role,
                                const std::string& passfile) const {
  std::string url = "postgresql:///" + dbauth::url_encode(database) +
                    "?host=" + dbauth::url_encode(socket_dir()) +
                    "&port=" + std::to_string(opts_.port) + "&user=" + dbauth::url_encode(role);
  if (!passfile.empty()) url += "&passfile=" + dbauth::url_encode(passfile);
  return url;
}

// An earlier version's cluster (trust authentication): the bootstrap superuser, named like the
// runner's role, becomes `superuser` with a password. Runs while pg_hba.conf still says trust,
// so connecting needs no password.
void ManagedDb::upgrade_bootstrap_role() {
  std::unique_ptr<pqxx::connection> c;
  std::string last_error;
  for (const std::string& who : {opts_.superuser, opts_.user, std::string(kUpgradeRole)}) {
    try {
      c = std::make_unique<pqxx::connection>(role_url("postgres", who, ""));
      break;
    } catch (const std::exception& e) {
      last_error = e.what();
    }
  }
  if (!c) {
    throw std::runtime_error("cannot upgrade the managed PostgreSQL in " + opts_.data_dir +
                             " to password authentication: no superuser connection (" + last_error +
                             ")");
  }
  auto one = [](pqxx::connection& conn, const std::string& sql) {
    pqxx::nontransaction tx(conn);
    auto r = tx.exec(sql);
    return r.empty() || r[0][0].is_null() ? std::string() : std::string(r[0][0].c_str());
  };
  std::string boot = one(*c, "SELECT rolname FROM pg_roles WHERE oid = 10");
  if (boot != opts_.superuser) {
    if (one(*c, "SELECT session_user") == boot) {
      // The bootstrap role cannot rename itself: a helper superuser does.
      pqxx::nontransaction tx(*c);
      if (tx.exec_params("SELECT 1 FROM pg_roles WHERE rolname = $1", kUpgradeRole).empty()) {
        tx.exec("CREATE ROLE " + tx.quote_name(kUpgradeRole) + " SUPERUSER LOGIN");
      }
      c = std::make_unique<pqxx::connection>(role_url("postgres", kUpgradeRole, ""));
    }
    pqxx::nontransaction tx(*c);
    if (!tx.exec_params("SELECT 1 FROM pg_roles WHERE rolname = $1", opts_.superuser).empty()) {
      throw std::runtime_error("cannot upgrade the managed PostgreSQL in " + opts_.data_dir +
                               ": a role named '" + opts_.superuser +
                               "' exists and is not the cluster's bootstrap superuser");
    }
    tx.exec("ALTER ROLE " + tx.quote_name(boot) + " RENAME TO " + tx.quote_name(opts_.superuser));
  }
  std::string pw = dbauth::load_or_create_passfile(superuser_passfile(), opts_.superuser);
  pqxx::nontransaction tx(*c);
  tx.exec("ALTER ROLE " + tx.quote_name(opts_.superuser) + " PASSWORD " +
          tx.quote(dbauth::scram_verifier(pw)));
}

void ManagedDb::setup_roles_and_database() {
  std::string pw = dbauth::load_or_create_passfile(passfile(), opts_.user);
  {
    pqxx::connection c(superuser_url_for("postgres"));
    pqxx::nontransaction tx(c);
    auto r = tx.exec_params("SELECT oid::bigint FROM pg_roles WHERE rolname = $1", opts_.user);
    if (!r.empty() && r[0][0].as<int64_t>() == 10) {
      throw std::runtime_error("the managed PostgreSQL's bootstrap superuser is named '" +
                               opts_.user + "', the runner's role");
    }
    std::string attrs =
        " WITH LOGIN NOSUPERUSER CREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS INHERIT PASSWORD " +
        tx.quote(dbauth::scram_verifier(pw));
    tx.exec((r.empty() ? "CREATE ROLE " : "ALTER ROLE ") + tx.quote_name(opts_.user) + attrs);
    if (tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", opts_.database).empty()) {
      tx.exec("CREATE DATABASE " + tx.quote_name(opts_.database) + " OWNER " +
              tx.quote_name(opts_.user));
    } else {
      tx.exec("ALTER DATABASE " + tx.quote_name(opts_.database) + " OWNER TO " +
              tx.quote_name(opts_.user));
    }
    tx.exec(std::string("DROP ROLE IF EXISTS ") + tx.quote_name(kUpgradeRole));
  }
  // PostgreSQL 15 no longer lets every role create objects in the public schema; older servers
  // did. Closed here for the databases new ones are copied from, and ours.
  for (const std::string& db :
       {std::string("template1"), std::string("postgres"), opts_.database}) {
    pqxx::connection c(superuser_url_for(db));
    pqxx::nontransaction tx(c);
    tx.exec("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    if (db != opts_.database) continue;
    std::string user = tx.quote_name(opts_.user);
    tx.exec("GRANT USAGE, CREATE ON SCHEMA public TO " + user);
    // A cluster of an earlier version: the superuser owned the jr_* objects (and any table a
    // plugin made). The runner's role takes them over.
    tx.exec(R"SQL(
DO $jr$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS obj,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                          WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                          ELSE 'TABLE' END AS what
      FROM pg_class c
     WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = 10
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype IN ('e', 'a', 'i'))
  LOOP
    EXECUTE format('ALTER %s %s OWNER TO %s', r.what, r.obj, )SQL" +
            tx.quote(user) + R"SQL();
  END LOOP;
  FOR r IN
    SELECT p.oid::regprocedure AS fn FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = 10
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER ROUTINE %s OWNER TO %s', r.fn, )SQL" +
            tx.quote(user) + R"SQL();
  END LOOP;
END $jr$)SQL");
  }
}

void ManagedDb::secure() {
  bool hba_ours = hba_is_ours();
  if (hba_ours && fs::exists(passfile())) {
    // Set up already: the runner's role reaches its database.
    try {
      pqxx::connection c(url());
      return;
    } catch (const std::exception&) {
      // The role or the database is missing (a fresh cluster, a crash half-way): set them up.
    }
  }
  if (!hba_ours) upgrade_bootstrap_role();
  setup_roles_and_database();
  if (!hba_ours) {
    write_hba();
    pqxx::connection c(superuser_url_for("postgres"));
    pqxx::nontransaction tx(c);
    tx.exec("SELECT pg_reload_conf()");
    log::warn(
        "managed PostgreSQL upgraded to password authentication: the runner now connects as "
        "its own role, which is not a superuser; restart runners of earlier versions",
        {{"data_dir", opts_.data_dir}, {"role", opts_.user}, {"superuser", opts_.superuser}});
  }
}

bool ManagedDb::start() {
  fs::create_directories(fs::path(opts_.data_dir).parent_path());
  DirLock lock(opts_.data_dir + ".lock");
  bool started = false;
  if (!initialised()) init_cluster();
  bool socket_there = fs::exists(socket_dir() + "/.s.PGSQL." + std::to_string(opts_.port));
  prepare_socket_dir();
  if (!running()) {
    std::string logfile = opts_.data_dir + "/server.log";
    auto r = run_command(
        {bin("pg_ctl"), "start", "-D", opts_.data_dir, "-l", logfile, "-w", "-t", "60"}, run_as_);
    if (r.exit_code != 0 && !running()) {
      throw std::runtime_error("could not start the managed PostgreSQL in " + opts_.data_dir +
                               ":\n" + r.output + "server log (last lines):\n" + log_tail());
    }
    started = true;
    log::info("managed PostgreSQL started", {{"data_dir", opts_.data_dir}});
  } else if (!socket_there) {
    // Started by an older version, with the socket in the data directory: move it.
    restart();
    log::info("managed PostgreSQL restarted with its socket in " + socket_dir(),
              {{"data_dir", opts_.data_dir}});
  }
  secure();
  return started;
}

bool ManagedDb::stop() {
  if (!running()) return false;
  DirLock lock(opts_.data_dir + ".lock");
  auto r = run_command({bin("pg_ctl"), "stop", "-D", opts_.data_dir, "-m", "fast", "-w"}, run_as_);
  if (r.exit_code != 0 && running()) {
    throw std::runtime_error("could not stop the managed PostgreSQL in " + opts_.data_dir + ":\n" +
                             r.output);
  }
  return true;
}

void ManagedDb::restart() {
  auto r = run_command({bin("pg_ctl"), "restart", "-D", opts_.data_dir, "-m", "fast", "-w", "-l",
                        opts_.data_dir + "/server.log"},
                       run_as_);
  if (r.exit_code != 0) throw std::runtime_error("pg_ctl restart failed:\n" + r.output);
}

std::string ManagedDb::url() const { return url_for(opts_.database); }

std::string ManagedDb::url_for(const std::string& database) const {
  return role_url(database, opts_.user, passfile());
}

std::string ManagedDb::url_with_password_for(const std::string& database) const {
  auto pw = dbauth::read_passfile(passfile(), opts_.user);
  if (!pw) throw std::runtime_error("no password for the runner's role in " + passfile());
  return role_url(database, opts_.user, "") + "&password=" + dbauth::url_encode(*pw);
}

std::string ManagedDb::superuser_url_for(const std::string& database) const {
  return role_url(database, opts_.superuser, superuser_passfile());
}

}  // namespace jr
