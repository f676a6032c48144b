// The host side of `network = "loopback"`: a seccomp user-notification supervisor.
//
// A worker whose policy says loopback installs its seccomp filter with connect, bind, listen,
// sendmsg, sendmmsg and sendto-with-an-address turned into notifications. The listener fd comes
// to the host (pidfd_getfd) before any plugin code runs, and the worker closes its own copy, so
// the plugin cannot answer its own calls. For each call the guard copies the arguments out of the
// worker (process_vm_readv), asks its NetRules whether the address may be used, and performs the
// call itself on a duplicate of the worker's socket (pidfd_getfd) with its own copy of the
// arguments, then hands back the result. Nothing is re-read from the worker's memory after the
// check (no check-then-continue race), and the socket's file description is shared, so the
// worker's socket is the one connected.
//
// Work done for the worker is done as the worker: the guard's threads run with the worker's uid
// and gid and no supplementary groups (per-thread credentials), keeping only CAP_SYS_PTRACE (to
// read the worker's memory and take its descriptors: the worker is not dumpable after its uid
// change). So privileged ports, directory permissions and SO_PEERCRED all see the worker, never
// the root host. Unix socket paths additionally follow the worker's grants: a socket is created
// (bind) only beneath its writable paths, by a short-lived thread that also takes a Landlock
// domain allowing nothing else; connect and addressed sends reach only sockets beneath the paths
// NetRules lists, resolved beneath that path (no symlink or ".." leaves it) and used through the
// resolved descriptor.
//
// Nothing blocks without bound: calls are attempted without blocking; one that would block on a
// blocking socket continues on its own short-lived thread (at most kMaxPending per worker), which
// waits in slices, honours the socket's SO_SNDTIMEO, and gives up as soon as the worker is gone,
// the calling thread no longer waits, or the guard stops. Destroying the guard returns promptly.
//
// Threading: NetRules is immutable after construction. NetGuard owns one dispatcher thread plus
// its pending-call threads, all joined by the destructor; it is destroyed after the worker died
// (or was killed). The counters may be read from any thread.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "net_grants.hpp"

namespace jr::sandbox {

// What an address is being used for.
enum class NetOp { connect, bind, listen, send };

struct NetVerdict {
  bool allowed = false;
  std::string why;    // refusal reason (empty when allowed)
  std::string shown;  // the address, printable
  // AF_UNIX with a path: the lexically normalised path and the grants it lies beneath (longest
  // first), where the guard resolves it.
  std::string unix_path;
  std::vector<std::string> grants;
  // Allowed only as a DNS resolver of /etc/resolv.conf (port 53), because the plugin has a
  // grant by name: the guard checks the question names of what it sends there.
  bool dns = false;
};

// The address policy of one worker: which peers and local addresses each call may use.
// "loopback": 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (never a wildcard bind), pathname unix
// sockets beneath the worker's grants, and the named grants (issue 20): `connect` entries of the
// policy and the TCP endpoints of the plugin's own database_url, as peers of connect and
// addressed sends (never for bind or listen). A grant by host name admits every address the
// name resolves to (resolved by the guard, again when an address is not among the last answer
// and that answer is older than kResolveMs), and DNS to the nameservers of /etc/resolv.conf,
// for queries about granted names only.
// Threading: immutable after construction except the cache of resolved names (its own mutex);
// check() may be called from any thread.
class NetRules {
 public:
  static constexpr int64_t kResolveMs = 1000;  // re-resolve a name at most this often

  struct UnixGrants {
    std::vector<std::string> bind;     // a socket may be created beneath these (writable paths)
    std::vector<std::string> connect;  // sockets beneath (or equal to) these may be reached
  };

  static NetRules loopback(UnixGrants unix_grants);
  // Loopback plus inet grants (ConnectGrant::Kind::name or ::net; unix entries go to
  // unix_grants.connect). `resolv` is used when a grant names a host.
  static NetRules with_grants(UnixGrants unix_grants, std::vector<ConnectGrant> inet,
                              ResolvConf resolv);
  // From a worker's Init frame: bind beneath the scratch dir and policy.writable; connect beneath
  // policy.readable, policy.writable, the scratch dir, policy.sockets, the unix paths of
  // policy.connect, and the unix socket directories named by config.database_url (the database
  // the plugin was given); inet peers of policy.connect and of config.database_url; DNS to the
  // nameservers of `resolv_conf` when a grant names a host.
  static NetRules for_worker(const nlohmann::json& init,
                             const std::string& resolv_conf = "/etc/resolv.conf");

  // Whether `a` (from the worker, `len` bytes) may be used by `op` on a socket of family
  // `domain` (its SO_DOMAIN). The address family must be the socket's own; AF_UNSPEC is allowed
  // only for connect (it dissolves an association); every family but inet, inet6 and unix is
  // refused.
  NetVerdict check(NetOp op, int domain, const sockaddr_storage& a, socklen_t len) const;
  // Whether a DNS message sent to a resolver (NetVerdict::dns) asks only about granted names:
  // a granted name, or one with a search domain of resolv.conf appended. `stream`: TCP (the
  // message starts with its 2-byte length).
  bool dns_allowed(const unsigned char* data, size_t len, bool stream, std::string* why) const;
  // Whether `a` is a resolver that only the name grants admit (not loopback) on port 53.
  bool is_grant_resolver(const sockaddr_storage& a, socklen_t len) const;

  const UnixGrants& unix_grants() const { return unix_; }
  const std::vector<ConnectGrant>& inet_grants() const { return inet_; }
  const ResolvConf& resolvers() const { return resolv_; }
  std::string describe() const;  // one line for logs and reports
  // The effective grants, one object each: {"peer", "source"} (and "resolves_to" for names,
  // resolved now when `resolve`), for `runner plugins check`.
  nlohmann::json grants_json(bool resolve) const;

  struct Names;  // the cache of resolved names (net_guard.cpp)

 private:
  NetVerdict check_inet(NetOp op, const sockaddr_storage& a, socklen_t len) const;
  NetVerdict check_unix(NetOp op, const sockaddr_storage& a, socklen_t len) const;
  bool name_has(const std::string& name, const IpAddr& a) const;
  UnixGrants unix_;
  std::vector<ConnectGrant> inet_;
  ResolvConf resolv_;  // empty unless a grant names a host
  std::shared_ptr<Names> names_;
};

// "/a/b/c" for "/a//b/./c/"; "" (with `why`) for a relative path or one with "..".
std::string normalise_unix_path(const std::string& path, std::string* why);

// The unix socket directories (absolute paths) a libpq connection string names: the `host`
// query parameter or URI host of postgresql:// URLs, or host= in key=value form.
std::vector<std::string> database_socket_dirs(const std::string& conninfo);

class NetGuard {
 public:
  static constexpr int kMaxPending = 16;  // calls of one worker waiting at once (each holds
                                          // at most 4 MiB of copied data)

  // Takes ownership of `listener` (the seccomp notification fd) and `pidfd` (of the worker).
  // `uid`/`gid` >= 0: the worker's identity, taken by the guard's threads when the host is root.
  // `on_refusal` gets a human description of every refused call and the address it named ("" when
  // none was checked), called from guard threads.
  NetGuard(int listener, int pidfd, int64_t uid, int64_t gid, NetRules rules,
           std::function<void(const std::string&, const std::string&)> on_refusal);
  ~NetGuard();
  NetGuard(const NetGuard&) = delete;
  NetGuard& operator=(const NetGuard&) = delete;

  uint64_t allowed() const;
  uint64_t refused() const;
  int pending() const;  // calls waiting on their own threads now

  struct State;  // shared by the guard's threads (net_guard.cpp)

 private:
  void loop();

  std::unique_ptr<State> s_;
  int64_t uid_, gid_;
  std::thread thread_;
};

// Duplicates `target_fd` of the process behind `pidfd` (pidfd_getfd); -1 with errno on failure.
int dup_from(int pidfd, int target_fd);

}  // namespace jr::sandbox
