#include "managed_db.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>

#include "log.hpp"
#include "process.hpp"

namespace fs = std::filesystem;

namespace jr {
namespace {

std::string find_bindir() {
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
  if (getpwnam("postgres") != nullptr) return "postgres";
  return "nobody";
}

void chown_to(const std::string& path, const std::string& user) {
  if (user.empty()) return;
  struct passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) return;
  if (chown(path.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
    throw std::runtime_error("cannot chown " + path + " to " + user);
  }
}

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
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

std::string ManagedDb::default_data_dir() {
  if (const char* d = std::getenv("RUNNER_DATA_DIR"); d && *d) return std::string(d) + "/pg";
  if (geteuid() == 0) return "/var/lib/jobrunner/pg";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x)
    return std::string(x) + "/jobrunner/pg";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/jobrunner/pg";
}

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
  auto r = run_command({bin("initdb"), "-D", opts_.data_dir, "-U", opts_.user, "--auth=trust",
                        "--encoding=UTF8", "--locale=C", "--no-instructions"},
                       run_as_);
  if (r.exit_code != 0) {
    throw std::runtime_error("initdb failed for " + opts_.data_dir + " (exit " +
                             std::to_string(r.exit_code) + "):\n" + r.output);
  }
  std::ofstream conf(opts_.data_dir + "/postgresql.conf", std::ios::app);
  conf << "\n# written by jobrunner: unix socket only\n"
       << "listen_addresses = ''\n"
       << "port = " << opts_.port << "\n"
       << "max_connections = 200\n";
  for (const auto& [k, v] : opts_.settings) conf << k << " = " << v << "\n";
}

void ManagedDb::prepare_socket_dir() {
  std::string dir = socket_dir();
  fs::create_directories(dir);
  if (run_as_.empty()) {
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  } else {
    struct passwd* owner = getpwnam(run_as_.c_str());
    if (owner == nullptr) throw std::runtime_error("user not found: " + run_as_);
    uid_t uid = owner->pw_uid;  // copied: the next getpwnam reuses the same buffer
    gid_t gid = static_cast<gid_t>(-1);
    if (!opts_.socket_group.empty()) {
      struct group* g = getgrnam(opts_.socket_group.c_str());
      if (g == nullptr) throw std::runtime_error("socket group not found: " + opts_.socket_group);
      gid = g->gr_gid;
    } else if (struct passwd* nobody = getpwnam("nobody")) {
      gid = nobody->pw_gid;
    }
    if (chown(dir.c_str(), uid, gid) != 0) {
      throw std::runtime_error("cannot give " + dir + " to " + run_as_);
    }
    fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
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

void ManagedDb::create_database() {
  pqxx::connection c(url_for("postgres"));
  pqxx::nontransaction tx(c);
  auto r = tx.exec_params("SELECT 1 FROM pg_database WHERE datname = $1", opts_.database);
  if (!r.empty()) return;
  try {
    tx.exec("CREATE DATABASE " + tx.quote_name(opts_.database));
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() != "42P04") throw;  // created concurrently by another runner: fine
  }
}

bool ManagedDb::start() {
  fs::create_directories(fs::path(opts_.data_dir).parent_path());
  DirLock lock(opts_.data_dir + ".lock");
  bool started = false;
  if (!initialised()) init_cluster();
  if (!running()) {
    prepare_socket_dir();
    std::string logfile = opts_.data_dir + "/server.log";
    auto r = run_command(
        {bin("pg_ctl"), "start", "-D", opts_.data_dir, "-l", logfile, "-w", "-t", "60"}, run_as_);
    if (r.exit_code != 0 && !running()) {
      throw std::runtime_error("could not start the managed PostgreSQL in " + opts_.data_dir +
                               ":\n" + r.output + "server log (last lines):\n" + log_tail());
    }
    started = true;
    log::info("managed PostgreSQL started", {{"data_dir", opts_.data_dir}});
  } else if (!fs::exists(socket_dir() + "/.s.PGSQL." + std::to_string(opts_.port))) {
    // Started by an older version, with the socket in the data directory: move it.
    prepare_socket_dir();
    restart();
    log::info("managed PostgreSQL restarted with its socket in " + socket_dir(),
              {{"data_dir", opts_.data_dir}});
  }
  create_database();
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
  return "postgresql:///" + url_encode(database) + "?host=" + url_encode(socket_dir()) +
         "&port=" + std::to_string(opts_.port) + "&user=" + url_encode(opts_.user);
}

}  // namespace jr
