// A real HTTP server for the scan tests and bench (cpp-httplib on 127.0.0.1, port 0): fixture
// pages with and without problems, slow, huge, redirect chains, redirects to refused addresses,
// non-HTML content, a page that never comes (/hang), one that fails with 503 a set number of
// times (/recovering), a page whose scan is slow at two visible steps (/staged), pages in
// Latin-1 / windows-1252 declared by header or <meta> (/latin1, /cp1252-meta, /latin1-http-equiv,
// /header-wins, /unknown-charset). Counts hits per path and records the Host and User-Agent
// headers it saw. ResetServer: a TCP server that resets every connection.
// Thread-safe: handlers run on the server's pool; accessors lock.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace scantest {

class FixtureServer {
 public:
  FixtureServer();
  ~FixtureServer();

  int port() const { return port_; }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string url(const std::string& path) const { return base() + path; }

  int hits(const std::string& path) const;
  std::string last_host(const std::string& path) const;
  std::string last_user_agent(const std::string& path) const;
  std::string last_method(const std::string& path) const;
  // When true, /flaky answers 500; otherwise the good page.
  void set_flaky_failing(bool failing) { flaky_failing_ = failing; }
  // /recovering answers 503 to its first `n` requests, then the good page.
  void set_recovering_after(int n) { recovering_after_ = n; }

  static std::string good_page(const std::string& base);
  static std::string bad_page();
  // The /staged page: slow to fetch, with three slow internal links (/slow-link/N).
  static std::string staged_page();

 private:
  void pause(std::chrono::milliseconds d) const;  // sleeps, cut short when stopping
  void record(const std::string& path, const std::string& host, const std::string& ua,
              const std::string& method);

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> flaky_failing_{false};
  std::atomic<int> recovering_after_{0};
  mutable std::mutex mu_;
  std::map<std::string, int> hits_;
  std::map<std::string, std::string> hosts_, agents_, methods_;
};

// A TCP server on 127.0.0.1 that reads a request and resets the connection (SO_LINGER 0), as a
// crashing backend or an overloaded load balancer does: curl sees "connection reset by peer".
class ResetServer {
 public:
  ResetServer();
  ~ResetServer();
  int port() const { return port_; }
  int connections() const { return connections_.load(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

}  // namespace scantest
