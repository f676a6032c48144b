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
};

// The address policy of one worker: which peers and local addresses each call may use. Today
// "loopback": 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 (never a wildcard bind), and pathname
// unix sockets beneath the worker's grants. Named grants (host:port, CIDR:port) slot in here,
// without touching the guard's call handling.
class NetRules {
 public:
  struct UnixGrants {
    std::vector<std::string> bind;     // a socket may be created beneath these (writable paths)
    std::vector<std::string> connect;  // sockets beneath (or equal to) these may be reached
  };

  static NetRules loopback(UnixGrants unix_grants);
  // From a worker's Init frame: bind beneath the scratch dir and policy.writable; connect beneath
  // policy.readable, policy.writable, the scratch dir, policy.sockets, and the unix socket
  // directories named by config.database_url (the database the plugin was given).
  static NetRules for_worker(const nlohmann::json& init);

  // Whether `a` (from the worker, `len` bytes) may be used by `op` on a socket of family
  // `domain` (its SO_DOMAIN). The address family must be the socket's own; AF_UNSPEC is allowed
  // only for connect (it dissolves an association); every family but inet, inet6 and unix is
  // refused.
  NetVerdict check(NetOp op, int domain, const sockaddr_storage& a, socklen_t len) const;

  const UnixGrants& unix_grants() const { return unix_; }
  std::string describe() const;  // one line for logs and reports

 private:
  NetVerdict check_inet(NetOp op, const sockaddr_storage& a, socklen_t len) const;
  NetVerdict check_unix(NetOp op, const sockaddr_storage& a, socklen_t len) const;
  UnixGrants unix_;
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
  // `on_refusal` gets a human description of every refused call (called from guard threads).
  NetGuard(int listener, int pidfd, int64_t uid, int64_t gid, NetRules rules,
           std::function<void(const std::string&)> on_refusal);
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
