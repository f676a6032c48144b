// Test harness shared by every test binary: a throwaway PostgreSQL cluster (real server, unix
// socket in a temp dir, started once per test process and stopped at exit), a fresh database
// per test, and helpers to run the real `runner` binary as a subprocess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace jrtest {

// The cluster of this test process. Started on first use. Like the runner's managed cluster it
// wants a password from everyone: the URLs below are the runner's role (not a superuser; owns
// the databases it creates) with the password in the URL, so a sandboxed worker under any uid
// can use them too.
class PgCluster {
 public:
  static PgCluster& get();
  // A new, empty database owned by the runner's role; returns its URL. Names are unique per
  // process.
  std::string create_database(const std::string& prefix = "t");
  std::string url(const std::string& database) const;
  // The cluster's superuser, for the tests that need its powers (say why where used).
  std::string superuser_url(const std::string& database) const;
  void restart();
  const std::string& root() const { return root_; }
  // Runs SQL on `url` and returns the first column of the first row ("" when none).
  static std::string query_one(const std::string& url, const std::string& sql);
  static void exec(const std::string& url, const std::string& sql);

 private:
  PgCluster();
  ~PgCluster();
  std::string root_;
  struct Impl;
  Impl* impl_;
};

// What `runner` gives a plugin granted a database: its own role and schema on the database at
// `url` (migrated first), made by the runner's own code (jr::provision_plugin_database). Tests
// put `url` into the plugin's config and read or seed the plugin's tables through it (its
// search_path is the plugin's schema); the runner, given the same database, reuses the role.
struct PluginDb {
  std::string url;  // the plugin's role, password included
  std::string role;
  std::string schema;
};
PluginDb plugin_database(const std::string& url, const std::string& plugin);

// Paths baked in by CMake.
std::string runner_path();
std::string plugin_dir();       // the shipped plugins + echo (build/plugins)
std::string test_plugin_dir();  // tiny test plugins, one subdirectory per case
std::string source_dir();

// Creates (or empties) `path` as a file every user may write: a sandboxed plugin, which runs as
// `nobody` when the tests run as root, can then append to it. Returns `path`.
std::string shared_file(const std::string& path);

// A temp directory removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs the runner binary to completion with `args`, extra environment `env` (DATABASE_URL is
// usually set there), and a time limit after which it is killed.
RunResult run_runner(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env,
                     std::chrono::seconds limit = std::chrono::seconds(60));

// A runner process in the background; stderr goes to a file readable with log().
class RunnerProcess {
 public:
  RunnerProcess(const std::vector<std::string>& args,
                const std::map<std::string, std::string>& env);
  ~RunnerProcess();  // SIGKILL if still running
  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit; returns the exit code (128+N when killed by signal N), -1 on timeout.
  int wait(std::chrono::milliseconds limit);
  bool alive();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool reaped_ = false;
  std::string log_path_;
  TempDir dir_;
};

// Polls `cond` every 20 ms until true or `limit` passes; returns the last value.
bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit);

// The contents of a /proc file (or any file), or "" when it cannot be read. A process can exit
// between listing /proc and reading its files (the read then fails with ESRCH, which makes
// std::ifstream throw); for a scan of processes that is a legitimate outcome, not an error.
std::string read_proc_file(const std::string& path);

// Runs `f` and returns the SQL error it raised as "SQLSTATE: message" ("" when it raised none),
// so a test asserts which error the database gave, not only that something was thrown.
std::string sql_error(const std::function<void()>& f);

// The processes alive now whose command line (/proc/PID/cmdline: the arguments, each ended by
// a NUL) satisfies `match`. One that exits during the scan is not listed, and is no error.
std::vector<pid_t> processes_where(const std::function<bool(const std::string& cmdline)>& match);

// The sandbox workers of the runner `host`: `jr-worker ... --host-pid <host>`, alive now.
std::vector<pid_t> sandbox_workers_of(pid_t host);

}  // namespace jrtest
