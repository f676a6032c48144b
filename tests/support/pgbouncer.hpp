// A PgBouncer for tests: started by the test in front of the harness's PostgreSQL (which listens
// on a unix socket only), with its own ini and auth file in a temp dir, listening on 127.0.0.1 at
// a free port, in transaction pooling mode, scram-sha-256 for clients (the role's password in
// the userlist, which PgBouncer also uses for its scram login to PostgreSQL). Stopped (SIGTERM,
// then SIGKILL) when the object dies.
//
// Threading: one test thread. Needs the `pgbouncer` binary (Debian's package; install-deps.sh).
#pragma once

#include <sys/types.h>

#include <string>

#include "harness.hpp"

namespace jrtest {

class PgBouncer {
 public:
  // `backend_url`: a harness URL with the password in it (PgCluster::create_database). Waits
  // until PgBouncer accepts connections; throws std::runtime_error when it does not start.
  explicit PgBouncer(const std::string& backend_url, int pool_size = 10);
  ~PgBouncer();
  PgBouncer(const PgBouncer&) = delete;
  PgBouncer& operator=(const PgBouncer&) = delete;

  // The same database and role, through PgBouncer (TCP on 127.0.0.1).
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  std::string log() const;
  static bool available();  // the pgbouncer binary is installed

 private:
  TempDir dir_;
  std::string url_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace jrtest
