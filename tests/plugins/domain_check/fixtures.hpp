// Real network fixtures on 127.0.0.1 for the domain_check tests and bench: a dnsmasq process
// serving a test zone, a UDP socket that never answers, a UDP responder that always says
// SERVFAIL, and a WHOIS (RFC 3912) server thread with per-name behaviour. Each object owns its
// process/threads/sockets and stops them in its destructor. Not thread-safe themselves; the
// servers' counters are atomics readable from any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dctest {

// A port with nothing bound to it (UDP and TCP), at the time of the call.
int dead_port();

// One dnsmasq process on 127.0.0.1:<free port> with the given config lines.
class Dnsmasq {
 public:
  explicit Dnsmasq(const std::vector<std::string>& conf_lines);
  ~Dnsmasq();
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
};

// The test DNS: an authoritative dnsmasq for the zones `auth_zones` (NS answers at each zone
// apex, NXDOMAIN below), and in front of it a forwarding dnsmasq - the resolver the plugin is
// given - that sends those zones to the authoritative one, each of `forwards` (domain -> port on
// 127.0.0.1) to its upstream, and answers REFUSED for anything else.
// (One dnsmasq cannot do both: its authoritative mode on an interface refuses to forward, and
// without an interface it answers NS at a zone apex with no records.)
class TestDns {
 public:
  TestDns(const std::vector<std::string>& auth_zones,
          const std::vector<std::pair<std::string, int>>& forwards);
  int port() const { return resolver_.port(); }

 private:
  static std::vector<std::string> auth_conf(const std::vector<std::string>& zones);
  static std::vector<std::string> resolver_conf(
      const std::vector<std::string>& zones, int auth_port,
      const std::vector<std::pair<std::string, int>>& forwards);
  std::vector<std::string> zones_;
  Dnsmasq auth_;
  Dnsmasq resolver_;
};

// A bound UDP socket nobody reads: queries to it hang.
class SilentUdp {
 public:
  SilentUdp();
  ~SilentUdp();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Answers every DNS query with SERVFAIL.
class ServfailUdp {
 public:
  ServfailUdp();
  ~ServfailUdp();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// WHOIS server. Reply by query name:
//   in registered()           a registration record
//   starts with "hang"        nothing, connection held open until shutdown
//   starts with "empty"       closes without a reply
//   starts with "limit"       "Query limit exceeded"
//   starts with "latin1"      a registration record in Latin-1 ("Soci\xe9t\xe9 G\xe9n\xe9rale")
//   starts with "cututf8"     a UTF-8 record whose byte 200 falls inside a two-byte "\xc3\xa9"
//   starts with "nulbyte"     a registration record with a NUL byte in it
//   otherwise                 "No match for "NAME"."
// delay_ms delays every reply (to observe concurrency).
class WhoisServer {
 public:
  explicit WhoisServer(std::set<std::string> registered, int delay_ms = 0);
  ~WhoisServer();
  int port() const { return port_; }
  int queries() const { return queries_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }

 private:
  void serve(int fd);
  int listen_fd_ = -1;
  int port_ = 0;
  std::set<std::string> registered_;
  int delay_ms_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
};

}  // namespace dctest
