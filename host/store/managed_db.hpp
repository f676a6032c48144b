// The managed local PostgreSQL: with no database configured, `runner` keeps a private cluster
// in a data directory (unix socket only, no TCP), initialising it on first use, starting it when
// it is not running and reusing it when it is. As root, the cluster runs as an unprivileged
// user (`postgres` when it exists, else `nobody`). The test harness uses the same class with a
// throwaway directory.
//
// Authentication: every connection needs a password (scram-sha-256 in pg_hba.conf; no trust,
// no peer). Two roles are the runner's:
//   - the cluster's superuser (`superuser`, initdb's bootstrap role), used only here, to set the
//     cluster up; its password is in `<data_dir>.superuser.pgpass`;
//   - the runner's role (`user`): LOGIN CREATEROLE CREATEDB, not a superuser; it owns
//     the database and the jr_* objects and creates the plugins' roles. Its password is in
//     `<data_dir>.pgpass`, which url() names as libpq's passfile, so the URL holds no secret.
// Both files are libpq password files, mode 0600, owned by the user that runs `runner`, beside
// the data directory (which the cluster's own user owns).
//
// A cluster initialised by an earlier version (trust authentication, the runner connected as
// the bootstrap superuser `jobrunner`) is upgraded by start(): the bootstrap role is renamed to
// `superuser` and given a password, the runner's role is created and given the database and
// every object the old superuser owned in its public schema, pg_hba.conf is rewritten and the
// server reloaded. Runners of the earlier version must be restarted (their new connections,
// without a password, are refused from then on).
//
// The socket lives in its own directory beside the data directory (`<data_dir>.sock`), mode
// 0755 as root (0700 otherwise): with passwords required, reaching the socket is not the
// boundary, and sandboxed workers, each plugin under its own uid, must reach it.
//
// Not thread-safe; start() forks helper processes, so call it before starting threads.
#pragma once

#include <map>
#include <string>

namespace jr {

struct ManagedDbOptions {
  std::string data_dir;                       // required; created when missing
  int port = 5432;                            // names the socket file only; no TCP listener
  std::string user = "jobrunner";             // the runner's role (not a superuser)
  std::string superuser = "jobrunner_admin";  // the cluster's superuser (initdb's bootstrap role)
  std::string database = "jobrunner";
  std::map<std::string, std::string> settings;  // extra postgresql.conf settings
  // initdb without its final fsync of the new cluster (-N): 0.5 s instead of 4 s here. Only for
  // a throwaway cluster (the tests'): after a power cut the cluster could be corrupt.
  bool initdb_no_sync = false;
};

class ManagedDb {
 public:
  explicit ManagedDb(ManagedDbOptions opts);

  // Default data directory: $RUNNER_DATA_DIR/pg, else /var/lib/jobrunner/pg as root, else
  // $XDG_DATA_HOME/jobrunner/pg (or ~/.local/share/jobrunner/pg).
  static std::string default_data_dir();
  // The PostgreSQL server binaries used: $RUNNER_PG_BINDIR, else the newest
  // /usr/lib/postgresql/*/bin. Throws std::runtime_error when there are none.
  static std::string find_bindir();

  // Initialises (first time) and starts the cluster, upgrades an earlier version's trust setup,
  // makes sure the roles and the database exist; returns true if this call started the server,
  // false if it was already running. Throws std::runtime_error with the server's log on failure.
  bool start();
  // Stops the cluster (fast shutdown); returns false if it was not running.
  bool stop();
  bool running() const;
  bool initialised() const;
  // Restarts the server (used by tests that check reconnects).
  void restart();

  // libpq URL of the runner's role on the database over the unix socket; the password comes
  // from the passfile named in the URL (readable by the user that runs `runner` only).
  std::string url() const;
  std::string url_for(const std::string& database) const;
  // The same with the password itself in the URL, for a client that cannot read the passfile
  // (another uid). Log lines redact it; do not print it.
  std::string url_with_password_for(const std::string& database) const;
  // The cluster's superuser on `database` (passfile form). For setup and tests only.
  std::string superuser_url_for(const std::string& database) const;
  const std::string& data_dir() const { return opts_.data_dir; }
  std::string socket_dir() const { return opts_.data_dir + ".sock"; }
  std::string passfile() const { return opts_.data_dir + ".pgpass"; }
  std::string superuser_passfile() const { return opts_.data_dir + ".superuser.pgpass"; }
  const std::string& user() const { return opts_.user; }
  const std::string& superuser() const { return opts_.superuser; }
  const std::string& database() const { return opts_.database; }
  // Unprivileged user that owns the cluster when we are root ("" otherwise).
  const std::string& run_as() const { return run_as_; }

 private:
  std::string bin(const std::string& tool) const;
  std::string role_url(const std::string& database, const std::string& role,
                       const std::string& passfile) const;
  void init_cluster();
  void prepare_socket_dir();
  bool hba_is_ours() const;
  void write_hba();
  void secure();
  void upgrade_bootstrap_role();
  void setup_roles_and_database();
  std::string log_tail() const;

  ManagedDbOptions opts_;
  std::string bindir_;
  std::string run_as_;
};

}  // namespace jr
