#include "harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "managed_db.hpp"
#include "plugin_db.hpp"
#include "store.hpp"

namespace fs = std::filesystem;

namespace jrtest {

struct PgCluster::Impl {
  std::unique_ptr<jr::ManagedDb> db;
  std::atomic<int> counter{0};
};

PgCluster& PgCluster::get() {
  static PgCluster* c = new PgCluster();  // stopped by atexit below
  return *c;
}

PgCluster::PgCluster() : impl_(new Impl) {
  char tmpl[] = "/tmp/jrpg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  root_ = tmpl;
  // The cluster may run as an unprivileged user (when tests run as root): let it traverse.
  chmod(root_.c_str(), 0755);
  jr::ManagedDbOptions o;
  o.data_dir = root_ + "/pg";
  // Durability is not under test here; speed is welcome. (Crash/restart tests use pg_ctl
  // restart, a clean shutdown, so fsync=off loses nothing there.)
  o.settings = {{"fsync", "off"}, {"full_page_writes", "off"}, {"max_connections", "300"}};
  o.initdb_no_sync = true;  // the same reason: a throwaway cluster, 3.5 s less per test binary
  impl_->db = std::make_unique<jr::ManagedDb>(o);
  impl_->db->start();
  static std::string data_dir = o.data_dir;
  static std::string root = root_;
  std::atexit([] {
    jr::ManagedDbOptions so;
    so.data_dir = data_dir;
    try {
      jr::ManagedDb(so).stop();
    } catch (...) {
    }
    std::error_code ec;
    fs::remove_all(root, ec);
  });
}

PgCluster::~PgCluster() { delete impl_; }

std::string PgCluster::create_database(const std::string& prefix) {
  std::string name =
      prefix + "_" + std::to_string(getpid()) + "_" + std::to_string(++impl_->counter);
  pqxx::connection c(impl_->db->url_for("postgres"));
  pqxx::nontransaction tx(c);
  tx.exec("CREATE DATABASE " + tx.quote_name(name));
  return impl_->db->url_with_password_for(name);
}

std::string PgCluster::url(const std::string& database) const {
  return impl_->db->url_with_password_for(database);
}

std::string PgCluster::superuser_url(const std::string& database) const {
  return impl_->db->superuser_url_for(database);
}

PluginDb plugin_database(const std::string& url, const std::string& plugin) {
  jr::Store::open(url)->SchemaMigrate();
  jr::PluginDbRole r = jr::provision_plugin_database(url, plugin);
  return PluginDb{r.url, r.role, r.schema};
}

void PgCluster::restart() { impl_->db->restart(); }

namespace {
// One connection per URL and thread, kept between calls. Tests poll the database every 20 ms
// while they wait (wait_until); a new connection per poll cost a backend start and a SCRAM
// exchange each time, and with several suites at once that was most of the CPU the test run
// used (measured: PostgreSQL 13 of 19 CPU-seconds of one contest_submit suite).
// A connection found closed by the server while idle (a restart, a test that kills backends)
// is replaced before use; one that breaks on a statement is replaced and the statement sent
// again once when the connection had been reused (it may have died just before the send).
bool closed_while_idle(pqxx::connection& c) {
  if (!c.is_open()) return true;
  pollfd p{c.sock(), POLLIN, 0};
  // Idle means nothing to read: anything readable is the server's goodbye (or EOF).
  return ::poll(&p, 1, 0) != 0;
}

template <typename F>
auto with_connection(const std::string& url, F&& f) {
  thread_local std::map<std::string, std::unique_ptr<pqxx::connection>> cache;
  auto& c = cache[url];
  bool reused = c != nullptr;
  if (c && closed_while_idle(*c)) c.reset(), reused = false;
  if (!c) c = std::make_unique<pqxx::connection>(url);
  try {
    return f(*c);
  } catch (const pqxx::broken_connection&) {
    c.reset();
    if (!reused) throw;
    c = std::make_unique<pqxx::connection>(url);
    return f(*c);
  } catch (...) {
    // A failed statement leaves the session usable (nontransaction), but a test may have
    // changed the session (SET, LISTEN) on its way to the error: start the next one clean.
    c.reset();
    throw;
  }
}
}  // namespace

std::string PgCluster::query_one(const std::string& url, const std::string& sql) {
  return with_connection(url, [&](pqxx::connection& c) -> std::string {
    pqxx::nontransaction tx(c);
    auto r = tx.exec(sql);
    if (r.empty() || r[0][0].is_null()) return "";
    return r[0][0].c_str();
  });
}

void PgCluster::exec(const std::string& url, const std::string& sql) {
  with_connection(url, [&](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec(sql);
    return 0;
  });
}

// JR_TEST_RUNNER_BINARY runs another build's runner (e.g. to measure a number before a change).
std::string runner_path() {
  const char* other = std::getenv("JR_TEST_RUNNER_BINARY");
  return other != nullptr && *other != 0 ? other : JR_TEST_RUNNER;
}
std::string plugin_dir() { return JR_TEST_PLUGIN_DIR; }
std::string test_plugin_dir() { return JR_TEST_TESTPLUGIN_DIR; }
std::string source_dir() { return JR_TEST_SOURCE_DIR; }

std::string shared_file(const std::string& path) {
  std::ofstream(path, std::ios::trunc).flush();
  chmod(path.c_str(), 0666);
  return path;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/jrtest-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {

pid_t spawn(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
            const std::string& out_path, const std::string& err_path) {
  std::vector<std::string> argv_s = {runner_path()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out >= 0) dup2(out, 1);
    if (err >= 0) dup2(err, 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

RunResult run_runner(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env, std::chrono::seconds limit) {
  TempDir dir;
  std::string out = dir.path() + "/out", err = dir.path() + "/err";
  pid_t pid = spawn(args, env, out, err);
  RunResult r;
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = "[harness: killed after time limit]\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err += slurp(err);
  return r;
}

RunnerProcess::RunnerProcess(const std::vector<std::string>& args,
                             const std::map<std::string, std::string>& env) {
  log_path_ = dir_.path() + "/stderr.log";
  pid_ = spawn(args, env, dir_.path() + "/stdout.log", log_path_);
}

RunnerProcess::~RunnerProcess() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void RunnerProcess::signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

int RunnerProcess::wait(std::chrono::milliseconds limit) {
  if (reaped_) return status_;
  auto deadline = std::chrono::steady_clock::now() + limit;
  int status = 0;
  for (;;) {
    pid_t w = waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return status_;
    }
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool RunnerProcess::alive() {
  if (reaped_) return false;
  return wait(std::chrono::milliseconds(0)) == -1;
}

std::string RunnerProcess::log() const { return slurp(log_path_); }

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_proc_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {  // ESRCH: the process exited while we read
      out.clear();
      break;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string sql_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const pqxx::sql_error& e) {
    return e.sqlstate() + ": " + e.what();
  }
  return "";
}

std::vector<pid_t> processes_where(const std::function<bool(const std::string&)>& match) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    // "" when the process exited after readdir: not alive, so not listed.
    std::string cmd = read_proc_file("/proc/" + std::string(e->d_name) + "/cmdline");
    if (!cmd.empty() && match(cmd)) out.push_back(pid);
  }
  closedir(d);
  return out;
}

std::vector<pid_t> sandbox_workers_of(pid_t host) {
  std::string want = std::string("--host-pid") + '\0' + std::to_string(host) + '\0';
  return processes_where([&](const std::string& cmd) {
    return cmd.find("jr-worker") != std::string::npos && cmd.find(want) != std::string::npos;
  });
}

}  // namespace jrtest
