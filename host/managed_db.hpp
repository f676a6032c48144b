// The managed local PostgreSQL: with no database configured, `runner` keeps a private cluster
// in a data directory (unix socket only, no TCP), initialising it on first use, starting it when
// it is not running and reusing it when it is. As root, the cluster runs as an unprivileged
// user (`postgres` when it exists, else `nobody`). The test harness uses the same class with a
// throwaway directory.
//
// The socket lives in its own directory beside the data directory (`<data_dir>.sock`), not in
// the data directory (which PostgreSQL keeps at mode 0700): sandboxed plugin workers connect
// to the database too, and as root they run as `nobody`. That directory is 0700 and owned by
// the current user when not root (workers keep the uid); as root it is owned by the cluster's
// user with group `socket_group` (default: the group of `nobody`, the sandbox's uid) and mode
// 0750, so root, the cluster's user and the sandbox workers can connect, and other local users
// cannot even reach the socket.
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
  std::string socket_group;  // as root: group allowed to connect ("" = the group of nobody)
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
  std::string socket_dir() const { return opts_.data_dir + ".sock"; }
  // Unprivileged user that owns the cluster when we are root ("" otherwise).
  const std::string& run_as() const { return run_as_; }

 private:
  std::string bin(const std::string& tool) const;
  void init_cluster();
  void prepare_socket_dir();
  void create_database();
  std::string log_tail() const;

  ManagedDbOptions opts_;
  std::string bindir_;
  std::string run_as_;
};

}  // namespace jr
