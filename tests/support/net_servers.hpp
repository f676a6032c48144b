// Real DNS and WHOIS servers on 127.0.0.1, for the demo (scripts/demo.sh, tests/demo) and for
// the domain_check tests and bench: one implementation of each.
//
//   Dnsmasq      one dnsmasq process on a free loopback port with the given config lines
//   LoopbackDns  the resolver a plugin is given: a forwarding dnsmasq in front of an
//                authoritative one (NS answers at each zone apex and delegated name, NXDOMAIN
//                below a zone), other upstreams per domain, REFUSED for anything else
//   SilentUdp    a bound UDP socket nobody reads: queries to it hang
//   ServfailUdp  answers every DNS query with SERVFAIL
//   WhoisServer  RFC 3912 on a free loopback port: a record for the registered names
//
// Each object owns its process, threads or sockets and stops them in its destructor; a dnsmasq
// child also dies with this process (parent-death signal), even on SIGKILL. Create and destroy
// them on one thread; their counters are atomics readable from any thread. No gtest here: the
// demo's server program links this too.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace jrtest::net {

// A port free for both UDP and TCP on 127.0.0.1 at the time of the call (nothing answers it).
int free_port();

class Dnsmasq {
 public:
  // Files (config, pid, log) go to `dir` as NAME.*, or to a temporary directory of its own
  // (removed at the end) when `dir` is empty.
  explicit Dnsmasq(const std::vector<std::string>& conf_lines, const std::string& dir = "",
                   const std::string& name = "dnsmasq");
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;
  int port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  void stop();
  pid_t pid_ = -1;
  int port_ = 0;
  std::string own_dir_;  // removed at the end; "" when the caller gave the directory
};

// (One dnsmasq cannot do both: its authoritative mode on an interface refuses to forward, and
// without an interface it answers NS at a zone apex with no records.)
class LoopbackDns {
 public:
  // `zones`: authoritative, NS at each apex; `delegated`: names inside them that get NS answers
  // too; `forwards`: (domain, port on 127.0.0.1) upstreams of the resolver.
  LoopbackDns(const std::vector<std::string>& zones,
              const std::vector<std::pair<std::string, int>>& forwards = {},
              const std::vector<std::string>& delegated = {}, const std::string& dir = "");
  int port() const { return resolver_.port(); }

 private:
  Dnsmasq auth_;
  Dnsmasq resolver_;
};

class SilentUdp {
 public:
  SilentUdp();
  ~SilentUdp();
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

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

// The reply to a query, by name: a registration record for a name in `registered`, else
// "No match for "NAME"." (the registry's "not found"). With Names::scripted (the tests), names
// that start with these words get odd replies instead:
//   hang     nothing, the connection held open until shutdown
//   empty    closed without a reply
//   limit    "Query limit exceeded"
//   latin1   a registration record in Latin-1 ("Soci\xe9t\xe9 G\xe9n\xe9rale")
//   cututf8  a UTF-8 record whose byte 200 falls inside a two-byte "\xc3\xa9"
//   nulbyte  a registration record with a NUL byte in it
// delay_ms delays every reply (to observe concurrency).
class WhoisServer {
 public:
  enum class Names { plain, scripted };
  explicit WhoisServer(std::set<std::string> registered, int delay_ms = 0,
                       Names names = Names::scripted);
  ~WhoisServer();
  WhoisServer(const WhoisServer&) = delete;
  WhoisServer& operator=(const WhoisServer&) = delete;
  int port() const { return port_; }
  int queries() const { return queries_.load(); }
  int max_in_flight() const { return max_in_flight_.load(); }

 private:
  void serve(int fd);
  std::string reply_to(const std::string& name) const;
  int listen_fd_ = -1;
  int port_ = 0;
  std::set<std::string> registered_;
  int delay_ms_;
  Names names_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
  std::thread accept_thread_;
  std::mutex mu_;
  std::vector<std::thread> conns_;
};

}  // namespace jrtest::net
