// The host side of `network = "loopback"`: a seccomp user-notification supervisor.
//
// A worker whose policy says loopback installs its seccomp filter with connect, bind, listen,
// sendmsg, sendmmsg and sendto-with-an-address turned into notifications. The listener fd comes
// to the host (pidfd_getfd) before any plugin code runs, and the worker closes its own copy, so
// the plugin cannot answer its own calls. For each call this guard copies the arguments out of
// the worker (process_vm_readv), checks every address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104,
// pathname unix sockets, netlink; never a wildcard bind), and performs the call itself on a
// duplicate of the worker's socket (pidfd_getfd) with its own copy of the arguments, then hands
// back the result. Nothing is re-read from the worker's memory after the check (no
// check-then-continue race), and the socket's file description is shared, so the worker's
// socket is the one connected.
//
// Unix socket paths are resolved with the worker's identity: the guard's thread takes the
// worker's uid/gid as its filesystem ids and drops its supplementary groups (per thread), so a
// root host does not lend its permissions. Abstract unix addresses and control messages
// (SCM_RIGHTS, SCM_CREDENTIALS) are refused.
//
// Threading: one thread per guarded worker; destroyed after the worker died (or is killed).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace jr::sandbox {

class NetGuard {
 public:
  // Takes ownership of `listener` (the seccomp notification fd) and `pidfd` (of the worker).
  // `uid`/`gid` >= 0: the worker's identity (the guard's thread resolves paths as it).
  // `on_refusal` gets a human description of every refused call (called from the guard's thread).
  NetGuard(int listener, int pidfd, int64_t uid, int64_t gid,
           std::function<void(const std::string&)> on_refusal);
  ~NetGuard();
  NetGuard(const NetGuard&) = delete;
  NetGuard& operator=(const NetGuard&) = delete;

  uint64_t allowed() const { return allowed_.load(); }
  uint64_t refused() const { return refused_.load(); }

 private:
  void loop();

  int listener_;
  int pidfd_;
  int64_t uid_, gid_;
  std::function<void(const std::string&)> on_refusal_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> allowed_{0}, refused_{0};
  std::thread thread_;
};

// Duplicates `target_fd` of the process behind `pidfd` (pidfd_getfd); -1 with errno on failure.
int dup_from(int pidfd, int target_fd);

}  // namespace jr::sandbox
