// Loopback DNS and WHOIS for the demo (scripts/demo.sh): a pair of dnsmasq child processes that
// answer NS for delegated names and NXDOMAIN for the rest of a zone, and a WHOIS (RFC 3912)
// server thread. Everything binds 127.0.0.1 on a free port. Each object owns its child process
// or threads and stops them in its destructor. Not thread-safe; create and destroy them on the
// main thread (the dnsmasq children are forked from it, with the parent-death signal set).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace demo {

// One dnsmasq on 127.0.0.1:<free port> with the given extra config lines; files (config, log)
// go to `dir`, which must exist.
class Dnsmasq {
 public:
  Dnsmasq(const std::string& dir, const std::string& name, const std::vector<std::string>& conf);
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  void stop();
  pid_t pid_ = -1;
  int port_ = 0;
};

// The resolver the plugin asks: a forwarding dnsmasq that sends `zones` to an authoritative
// dnsmasq (NS answers at each delegated name, NXDOMAIN below the zone) and refuses everything
// else (no upstream: the demo never leaves the machine). One dnsmasq cannot do both: in
// authoritative mode on an interface it refuses to forward.
class DemoDns {
 public:
  DemoDns(const std::string& dir, const std::vector<std::string>& zones,
          const std::vector<std::string>& delegated);
  int port() const { return resolver_.port(); }

 private:
  Dnsmasq auth_;
  Dnsmasq resolver_;
};

// WHOIS: a name in `registered` gets a registration record, any other name
// "No match for "NAME"." (the registry's "not found").
class WhoisServer {
 public:
  explicit WhoisServer(std::set<std::string> registered);
  ~WhoisServer();
  WhoisServer(const WhoisServer&) = delete;
  WhoisServer& operator=(const WhoisServer&) = delete;
  int port() const { return port_; }
  int queries() const { return queries_.load(); }

 private:
  void serve(int fd);
  int listen_fd_ = -1;
  int port_ = 0;
  std::set<std::string> registered_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
};

}  // namespace demo
