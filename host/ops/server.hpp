// The runner's HTTP server (cpp-httplib): /metrics, /healthz, /readyz and the JSON API under
// /api/v1. Off unless an address is configured; binds loopback unless told otherwise. Endpoints
// that change state need "Authorization: Bearer <api token>"; without a configured token they
// answer 403. Errors are JSON {"error": "..."}.
//
// Threading: httplib serves requests on its own thread pool; every handler takes a Store from a
// small mutex-protected pool (a Store is not thread-safe) and gives it back afterwards.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "metrics.hpp"
#include "store.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace jr::ops {

namespace ui {
class DashboardDb;
}

// "9090" -> {"127.0.0.1", 9090}; "0.0.0.0:9090"; "[::1]:9090". Throws std::invalid_argument.
std::pair<std::string, int> parse_listen_address(const std::string& text);

// Hands out Stores (one connection each) to request threads. With `max_open`, at most that
// many are open at once (the runner's HTTP connections in its budget, db_budget.hpp; the
// dashboard borrows its connections from here too): a request waits for one to come back, up
// to 10 s (then StoreError, transient: HTTP 503).
class StorePool {
 public:
  explicit StorePool(std::string url, size_t max_idle = 4, size_t max_open = 0)
      : url_(std::move(url)), max_idle_(max_idle), max_open_(max_open) {}
  const std::string& url() const { return url_; }
  // Runs fn(store) with a pooled Store; a Store whose connection failed is dropped.
  template <class F>
  auto with(F&& fn) -> decltype(fn(std::declval<Store&>())) {
    std::unique_ptr<Store> s = take();
    try {
      if constexpr (std::is_void_v<decltype(fn(*s))>) {
        fn(*s);
        give(std::move(s));
      } else {
        auto r = fn(*s);
        give(std::move(s));
        return r;
      }
    } catch (const StoreError& e) {
      if (e.transient()) {
        drop(std::move(s));
      } else {
        give(std::move(s));
      }
      throw;
    } catch (...) {
      give(std::move(s));  // not the connection's fault
      throw;
    }
  }

 private:
  std::unique_ptr<Store> take();
  void give(std::unique_ptr<Store> s);
  void drop(std::unique_ptr<Store> s);
  std::string url_;
  size_t max_idle_;
  size_t max_open_;  // 0: no cap
  size_t open_ = 0;  // idle and in use
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Store>> idle_;
};

struct Readiness {
  bool ready = true;
  std::string reason;                                 // why not
  nlohmann::json details = nlohmann::json::object();  // more members of /readyz's body
};

struct ServerOptions {
  std::string listen;           // "ADDR:PORT" or "PORT"
  std::string api_token;        // empty: state-changing endpoints answer 403
  double live_seconds = 30;     // dashboard: runners silent longer are gone (one lease)
  bool dashboard_only = false;  // `runner ui`: this process serves no jobs
};

// Authorises a state-changing request: a configured token (else 403), "Authorization: Bearer
// <token>" (else 401) and the X-Jobrunner-CSRF header the dashboard sets (else 403: a cross-site
// form cannot send it). False: `res` already holds the error.
bool authorise_write(const std::string& api_token, const httplib::Request& req,
                     httplib::Response& res);

class Server {
 public:
  // `ready` is asked by /readyz (besides the database check); `registry` renders /metrics.
  Server(ServerOptions opts, StorePool& pool, const Registry& registry,
         std::function<Readiness()> ready);
  ~Server();
  // Binds and starts serving on a thread; throws std::runtime_error when it cannot bind.
  void start();
  void stop();
  int port() const { return port_; }
  const std::string& host() const { return host_; }

 private:
  void routes();
  ServerOptions opts_;
  StorePool& pool_;
  const Registry& registry_;
  std::function<Readiness()> ready_;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<ui::DashboardDb> dashboard_;  // /ui and its API (host/ops/ui_api.cpp)
  std::thread thread_;
  std::atomic<bool> listener_done_{false};  // listen_after_bind() returned
  std::string host_;
  int port_ = 0;
};

}  // namespace jr::ops
