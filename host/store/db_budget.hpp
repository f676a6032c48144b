// The runner's own database connections (issue 20): how many it opens and which services share
// which one, within the budget `[worker] max_connections` (RUNNER_MAX_CONNECTIONS,
// --max-connections). docs/scaling.md, "Connections per runner", has the table.
//
//   lease renewal   always a connection of its own: nothing else can delay it
//   LISTEN          waiting for NOTIFY jr_jobs: on the fetcher's claims connection, or one of its
//                   own (at the minimum budget, or a direct listen_database_url behind
//                   PgBouncer); none when polling (PgBouncer without listen_database_url)
//   HTTP            one, lazily, for the HTTP API and the dashboard (only with --http)
//   claims          the fetcher's claims; with the completions on it only at the minimum budget
//                   (or behind PgBouncer's default), else completers of their own
//   services        registry heartbeat, cancel polls, maintenance (leader election, scheduler,
//                   rescuer, pruner, cron), webhooks, the dashboard publisher, progress writes,
//                   plugin enqueues, idle hooks, start-up registration: one connection shared
//                   in turn; on the claims connection when the budget has no room for it
//
// SharedStore is one Store used by several threads in turn (thread-safe). The HTTP connections
// are capped by the server's StorePool (ops/server.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "store.hpp"

namespace jr {

struct ConnectionPlan {
  int heartbeat = 1;  // lease renewal
  int listen = 1;     // 0: poll every poll_interval
  // LISTEN on the claims connection, which then serves the fetcher alone: it claims, and waits
  // for a notification when a claim finds nothing, on one session (so no connection of its own).
  bool listen_on_claims = false;
  int http = 0;              // the HTTP API and dashboard (--http)
  int claims = 1;            // the fetcher
  int completers = 0;        // outcome writers with a connection each; 0: on the claims connection
  bool services_own = true;  // false: services share the claims connection
  int budget = 0;            // the max_connections this plan was made for

  int services() const { return services_own ? 1 : 0; }
  int listen_own() const { return listen > 0 && !listen_on_claims ? listen : 0; }
  int total() const { return heartbeat + listen_own() + http + claims + completers + services(); }
  // "lease renewal 1, claims+LISTEN 1, completions 1, services 1 = 4 of 4".
  std::string describe() const;
};

// The default budget: 4, or 5 with --http (one less when polling). Where LISTEN may share the
// claims connection that gives claims, completions and the services a connection each.
int default_max_connections(bool http, bool listen);

// The plan for `max_connections` (0: the default). `listen_may_share`: LISTEN uses the same
// server as the claims (not PgBouncer, no listen_database_url), so from 3 connections for claims,
// LISTEN, completions and services on, LISTEN moves onto the claims connection and completions
// get one of their own; a second completer comes next. Otherwise extra connections go to
// completions (one of their own, then a second). Throws std::invalid_argument saying what needs
// how many when the budget cannot hold the services asked for.
ConnectionPlan plan_connections(int max_connections, bool http, bool listen,
                                bool listen_may_share = false);

// One Store shared by several threads in turn. Opened on first use; a connection-level failure
// drops it (the next use reconnects). fn must not call with() again and should not hold the
// store long: everything that shares it waits meanwhile.
class SharedStore {
 public:
  // `name` says what shares it (for logs and tests).
  SharedStore(std::string url, std::string name);
  const std::string& name() const { return name_; }

  template <class F>
  auto with(F&& fn) -> decltype(fn(std::declval<Store&>())) {
    std::lock_guard<std::mutex> lock(mu_);
    // A connection that died while idle is replaced before use, not discovered by a failed
    // statement: a backend killed between two uses costs a reconnect, not an error, a backoff
    // and (for a claim) a recovery pass.
    if (store_ && store_->LostWhileIdle()) store_.reset();
    if (!store_) store_ = Store::open(url_);
    try {
      return fn(*store_);
    } catch (const StoreError& e) {
      if (e.transient()) store_.reset();
      throw;
    }
  }
  // Closes the connection (the next with() opens one). Waits for a with() in progress.
  void close();

 private:
  std::string url_;
  std::string name_;
  std::mutex mu_;
  std::unique_ptr<Store> store_;
};

}  // namespace jr
