// The managed local PostgreSQL: with no database configured, `runner` keeps a private cluster
// in a data directory (unix socket only, no TCP), initialising it on first use, starting it when
// it is not running and reusing it when it is. As root, the cluster runs as an unprivileged
// user (`postgres` when it exists, else `nobody`). The test harness uses the same class with a
// throwaway directory.
//
// Not thread-safe; start() forks helper processes, so call it before starting threads.
#pragma once

#include <map>
#include <string>

namespace jr {

struct ManagedDbOptions {
  std::string data_dir;            // required; created when missing
  int port = 5432;                 // names the socket file only; no TCP listener
  std::string user = "jobrunner";  // database superuser created by initdb
  std::string database = "jobrunner";
  std::map<std::string, std::string> settings;  // extra postgresql.conf settings
};

class ManagedDb {
 public:
  explicit ManagedDb(ManagedDbOptions opts);

  // Default data directory: $RUNNER_DATA_DIR/pg, else /var/lib/jobrunner/pg as root, else
  // $XDG_DATA_HOME/jobrunner/pg (or ~/.local/share/jobrunner/pg).
  static std::string default_data_dir();

  // Initialises (first time) and starts the cluster, then creates the database; returns true if
  // this call started it, false if it was already running. Throws std::runtime_error with the
  // server's log on failure.
  bool start();
  // Stops the cluster (fast shutdown); returns false if it was not running.
  bool stop();
  bool running() const;
  bool initialised() const;
  // Restarts the server (used by tests that check reconnects).
  void restart();

  // libpq URL of the database over the unix socket.
  std::string url() const;
  std::string url_for(const std::string& database) const;
  const std::string& data_dir() const { return opts_.data_dir; }
  // Unprivileged user that owns the cluster when we are root ("" otherwise).
  const std::string& run_as() const { return run_as_; }

 private:
  std::string bin(const std::string& tool) const;
  void init_cluster();
  void create_database();
  std::string log_tail() const;

  ManagedDbOptions opts_;
  std::string bindir_;
  std::string run_as_;
};

}  // namespace jr
