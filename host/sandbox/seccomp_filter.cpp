// The seccomp allowlist of a sandbox worker (libseccomp). Default action: kill the process
// (SIGSYS). Allowed: what glibc, the dynamic loader, libstdc++ threads, malloc, the IPC socket
// and ordinary file/time/poll work need. Deny by default also inside the allowed calls: a call
// whose arguments reach outside the process, or a kernel feature nobody modelled, fails cleanly
// with an errno (the plugin sees a refusal, not a crash):
//   - clone only for threads (else EPERM), clone3 -> ENOSYS (glibc falls back to clone);
//   - socket: EPERM with network "none"; otherwise only unix stream/datagram/seqpacket and
//     TCP/UDP over IPv4/IPv6 (no raw or packet sockets, no ICMP, SCTP, MPTCP; no netlink:
//     glibc's getaddrinfo works without it);
//   - setsockopt: an allowlist of (level, option) pairs that real clients set (libpq, libcurl,
//     c-ares, glibc's resolver); source routing (IP_OPTIONS, IPV6_RTHDR, ...), sticky packet
//     info, multicast, socket filters, ULPs, IPV6_ADDRFORM, SO_REUSEPORT: EPERM;
//   - prctl: only reading process attributes and naming threads/mappings (EPERM for the rest:
//     PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_PTRACER, PR_SET_CHILD_SUBREAPER, ...);
//   - ioctl: non-blocking/close-on-exec/readable-bytes/terminal queries only (else EPERM);
//   - fcntl F_SETOWN only to itself, F_SETOWN_EX refused (SIGIO to other processes);
//   - signals, prlimit64 and sched_setaffinity only on itself; sched_getaffinity of another
//     task: ENOSYS (glibc's pthread_getattr_np treats that as "no affinity information").
// execve, fork, ptrace, mount, namespaces, bpf, io_uring, keyrings, ... kill the worker.
// Unless the policy grants exec (issue 22, plugins/exec): then fork (clone without CLONE_THREAD,
// vfork) is allowed without namespace flags or CLONE_PARENT (those: EPERM), execve only with the
// worker's exec buffer as its pathname (ExecGate; any execve when the operator lets handlers run
// programs), setsid, PR_SET_PDEATHSIG(SIGKILL) and signals to any process but -1; Landlock
// decides which files may be executed and scopes signals to the worker's own domain.
//
// libseccomp 2.5 cannot combine an argument-less rule with argument rules for one system call
// (the argument-less one wins), so "everything else" is spelled out as aligned value blocks
// (masked equality) covering the complement of each allowed set; masked comparisons also ignore
// the upper half of 32-bit arguments, which callers may leave sign-extended or not.
#include <asm/unistd.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "confine.hpp"

namespace jr::sandbox {
namespace {

const char* const kAllowed[] = {
    // I/O on descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "pipe", "pipe2", "sendfile",
    "copy_file_range", "splice", "tee", "flock", "fsync", "fdatasync", "fadvise64", "readahead",
    "ftruncate", "fallocate", "memfd_create", "eventfd", "eventfd2",
    // files (Landlock decides which paths)
    "open", "openat", "openat2", "creat", "stat", "fstat", "lstat", "newfstatat", "statx", "access",
    "faccessat", "faccessat2", "readlink", "readlinkat", "getdents", "getdents64", "getcwd",
    "chdir", "fchdir", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
    "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat",
    "truncate", "utimensat", "utimes", "utime", "futimesat", "statfs", "fstatfs", "umask",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    // memory
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "msync", "mincore", "membarrier",
    // threads and synchronisation
    "futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "set_tid_address",
    "arch_prctl", "sched_yield", "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "getpriority",
    // time
    "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time",
    "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun", "timer_delete",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "alarm", "setitimer", "getitimer",
    "pause",
    // identity and limits (read-only, or lowering one's own limits)
    "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "getresuid", "getresgid", "getpgrp", "getpgid", "getsid", "uname", "sysinfo", "getrusage",
    "times", "getcpu", "getrandom", "getrlimit", "setrlimit",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigsuspend", "sigaltstack", "restart_syscall", "signalfd", "signalfd4",
    // waiting
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "wait4", "waitid",
    // sockets (socket() and setsockopt() are conditional below)
    "socketpair", "connect", "bind", "listen", "accept", "accept4", "getsockname", "getpeername",
    "getsockopt", "shutdown", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
    // leaving
    "exit", "exit_group"};

// prctl options a plugin may use: reading its own attributes, naming threads and mappings,
// its own timer slack.
const std::vector<uint32_t> kPrctlAllowed = {
    PR_GET_PDEATHSIG,
    PR_GET_DUMPABLE,
    PR_GET_KEEPCAPS,
    PR_SET_NAME,
    PR_GET_NAME,
    PR_GET_SECCOMP,
    PR_CAPBSET_READ,
    PR_GET_SECUREBITS,
    PR_SET_TIMERSLACK,
    PR_GET_TIMERSLACK,
    PR_GET_CHILD_SUBREAPER,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_TID_ADDRESS,
    PR_GET_THP_DISABLE,
    PR_GET_SPECULATION_CTRL,
    0x53564d41 /* PR_SET_VMA: names of its own anonymous mappings */};

// ioctl requests: blocking mode, close-on-exec, bytes queued, terminal probes (isatty, width:
// a worker never holds a terminal), interface name <-> index (scoped IPv6 addresses).
const std::vector<uint32_t> kIoctlAllowed = {
    FIONBIO,    FIONREAD,   FIOCLEX,      FIONCLEX,   TIOCOUTQ, TCGETS, 0x802c542a /* TCGETS2 */,
    TIOCGWINSZ, SIOCATMARK, SIOCGIFINDEX, SIOCGIFNAME};

// setsockopt (level, option) pairs, chosen from what libpq, libcurl, c-ares, glibc's resolver
// and OpenSSL set: buffer sizes, timeouts, keepalive, Nagle, lingering, dual-stack, error
// queues, TOS/TTL, path MTU discovery, receive-side packet info. Everything that changes where
// packets go (IP_OPTIONS source routes, IPV6_RTHDR and the other IPv6 extension headers,
// IPV6_PKTINFO/IPV6_NEXTHOP, IP_FREEBIND/IP_TRANSPARENT, multicast), converts the socket
// (IPV6_ADDRFORM, TCP_ULP, UDP_ENCAP), attaches programs (SO_ATTACH_*), or shares a port with
// another process (SO_REUSEPORT) is refused.
struct SockoptLevel {
  uint32_t level;
  std::vector<uint32_t> options;
};
const std::vector<SockoptLevel> kSockopts = {
    {SOL_SOCKET,
     {SO_REUSEADDR, SO_SNDBUF, SO_RCVBUF, SO_KEEPALIVE, SO_OOBINLINE, SO_LINGER, SO_PASSCRED,
      SO_RCVLOWAT, 20 /* SO_RCVTIMEO_OLD */, 21 /* SO_SNDTIMEO_OLD */, 29 /* SO_TIMESTAMP_OLD */,
      35 /* SO_TIMESTAMPNS_OLD */, 63 /* SO_TIMESTAMP_NEW */, 64 /* SO_TIMESTAMPNS_NEW */,
      66 /* SO_RCVTIMEO_NEW */, 67 /* SO_SNDTIMEO_NEW */}},
    {IPPROTO_TCP,
     {TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_SYNCNT,
      TCP_LINGER2, TCP_DEFER_ACCEPT, TCP_WINDOW_CLAMP, TCP_QUICKACK, TCP_USER_TIMEOUT,
      TCP_NOTSENT_LOWAT}},
    {IPPROTO_IP,
     {IP_TOS, IP_TTL, IP_PKTINFO, IP_MTU_DISCOVER, IP_RECVERR, IP_RECVTTL, IP_RECVTOS,
      24 /* IP_BIND_ADDRESS_NO_PORT */}},
    {IPPROTO_IPV6,
     {IPV6_UNICAST_HOPS, IPV6_MTU_DISCOVER, IPV6_RECVERR, IPV6_V6ONLY, IPV6_RECVPKTINFO,
      IPV6_RECVTCLASS, IPV6_TCLASS}},
    {IPPROTO_UDP, {1 /* UDP_CORK */, 103 /* UDP_SEGMENT */, 104 /* UDP_GRO */}},
};

// socket(domain, type & 0xf, protocol) triples allowed when the policy grants network.
struct SocketKind {
  uint32_t domain, type;
  std::vector<uint32_t> protocols;
};
const std::vector<SocketKind> kSockets = {
    {AF_UNIX, SOCK_STREAM, {0}},
    {AF_UNIX, SOCK_DGRAM, {0}},
    {AF_UNIX, SOCK_SEQPACKET, {0}},
    {AF_INET, SOCK_STREAM, {0, IPPROTO_TCP}},
    {AF_INET, SOCK_DGRAM, {0, IPPROTO_UDP}},
    {AF_INET6, SOCK_STREAM, {0, IPPROTO_TCP}},
    {AF_INET6, SOCK_DGRAM, {0, IPPROTO_UDP}},
};

struct CtxDeleter {
  void operator()(void* c) const { seccomp_release(c); }
};

// network = "loopback": these go to the host's NetGuard (net_guard.hpp) instead of the allowlist.
bool guarded(const std::string& name) {
  return name == "connect" || name == "bind" || name == "listen" || name == "sendto" ||
         name == "sendmsg" || name == "sendmmsg";
}

// One comparison of argument `arg` with every field named (libseccomp's SCMP_A*_64 macros leave
// datum_b out of their compound literal, which clang's -Wmissing-field-initializers rejects).
scmp_arg_cmp arg_cmp(unsigned arg, scmp_compare op, uint64_t a, uint64_t b = 0) {
  return scmp_arg_cmp{arg, op, a, b};
}

// Comparison of the low 32 bits of argument `arg` (mask within `width`) with `value`.
scmp_arg_cmp eq32(unsigned arg, uint32_t value, uint32_t width = 0xffffffffu) {
  return scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, width, value & width};
}

class Rules {
 public:
  explicit Rules(scmp_filter_ctx ctx) : ctx_(ctx) {}
  int rc() const { return rc_; }

  void add(uint32_t action, int sys, std::vector<scmp_arg_cmp> conds) {
    if (rc_ != 0) return;
    rc_ = seccomp_rule_add_array(ctx_, action, sys, static_cast<unsigned>(conds.size()),
                                 conds.empty() ? nullptr : conds.data());
  }

  // `action` when argument `arg` (within `width`) is one of `values`, and `extra` holds.
  void add_in(uint32_t action, int sys, unsigned arg, const std::vector<uint32_t>& values,
              const std::vector<scmp_arg_cmp>& extra, uint32_t width = 0xffffffffu) {
    for (uint32_t v : std::set<uint32_t>(values.begin(), values.end())) {
      auto c = extra;
      c.push_back(eq32(arg, v, width));
      add(action, sys, c);
    }
  }

  // `action` when argument `arg` (within `width`) is none of `values`, and `extra` holds: the
  // complement, as aligned power-of-two blocks (one masked comparison each).
  void add_except(uint32_t action, int sys, unsigned arg, const std::vector<uint32_t>& values,
                  const std::vector<scmp_arg_cmp>& extra, uint32_t width = 0xffffffffu) {
    std::set<uint64_t> in;
    for (uint32_t v : values) in.insert(v & width);
    uint64_t lo = 0;
    auto gap = [&](uint64_t from, uint64_t to) {  // [from, to], inclusive
      while (from <= to) {
        uint64_t size = 1;
        while ((from & (size * 2 - 1)) == 0 && from + size * 2 - 1 <= to &&
               size * 2 <= uint64_t{width} + 1) {
          size *= 2;
        }
        auto c = extra;
        c.push_back(
            scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, width & ~static_cast<uint32_t>(size - 1), from});
        add(action, sys, c);
        from += size;
      }
    };
    for (uint64_t v : in) {
      if (v > lo) gap(lo, v - 1);
      lo = v + 1;
    }
    if (lo <= width) gap(lo, width);
  }

 private:
  scmp_filter_ctx ctx_;
  int rc_ = 0;
};

// Loads the filter with a notification listener (into *notify_fd). Once the host's guard has
// received a call, the calling thread waits for the answer ignoring all but fatal signals
// (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux 5.19; libseccomp 2.5 cannot ask for it, so the
// program is exported and loaded here): a signal can then no longer restart a send the guard has
// half done, which would send its first part twice.
std::string load_with_listener(scmp_filter_ctx ctx, int* notify_fd) {
  auto err = [](const char* what) { return std::string(what) + ": " + std::strerror(errno); };
  int mfd = memfd_create("jr-seccomp", MFD_CLOEXEC);
  if (mfd < 0) return err("memfd_create");
  std::vector<sock_filter> prog;
  int rc = seccomp_export_bpf(ctx, mfd);
  off_t size = lseek(mfd, 0, SEEK_END);
  if (rc == 0 && size > 0 && size % static_cast<off_t>(sizeof(sock_filter)) == 0) {
    prog.resize(static_cast<size_t>(size) / sizeof(sock_filter));
    if (pread(mfd, prog.data(), static_cast<size_t>(size), 0) != size) prog.clear();
  }
  close(mfd);
  if (prog.empty())
    return rc != 0 ? std::string("seccomp_export_bpf: ") + std::strerror(-rc)
                   : "seccomp_export_bpf: no program";
  sock_fprog fprog{static_cast<unsigned short>(prog.size()), prog.data()};
  long fd =
      syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
              SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, &fprog);
  if (fd < 0 && errno == EINVAL) {
    // An older kernel: signals may interrupt a guarded call (it is then restarted).
    fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  }
  if (fd < 0) return err("seccomp(SECCOMP_SET_MODE_FILTER)");
  *notify_fd = static_cast<int>(fd);
  return "";
}

}  // namespace

std::string install_seccomp(Network net, pid_t self, int* notify_fd, const ExecGate* gate) {
  const bool allow_exec = gate != nullptr;
  *notify_fd = -1;
  std::unique_ptr<void, CtxDeleter> guard(seccomp_init(SCMP_ACT_KILL_PROCESS));
  scmp_filter_ctx ctx = guard.get();
  if (ctx == nullptr) return "seccomp_init failed";
  auto fail = [](const char* what, int rc) {
    return std::string(what) + ": " + std::strerror(-rc);
  };
  // libseccomp's default layout (a chain ordered by priority), not its binary tree (level 2):
  // the kernel's action cache already skips the filter for the unconditionally allowed calls,
  // which are the hot ones, so the tree only sped up the rare calls with argument checks, and
  // generating it cost every worker's start: libseccomp took about three quarters of a
  // worker's start-up CPU, and a pool of 10 started in 236 ms with the tree, 176-185 ms without
  // (docs/performance.md). The filter's decisions are the same either way.
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 1);
  int rc = 0;
  for (const char* name : kAllowed) {
    if (net == Network::loopback && guarded(name)) continue;
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) != 0) return fail(name, rc);
  }
  const uint32_t kEperm = SCMP_ACT_ERRNO(EPERM);
  const auto own = static_cast<uint32_t>(self);
  Rules r(ctx);
  // Threads only: a clone without CLONE_THREAD (fork, posix_spawn) fails with EPERM.
  r.add(SCMP_ACT_ALLOW, SCMP_SYS(clone),
        {arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
  if (!allow_exec) {
    r.add(kEperm, SCMP_SYS(clone), {arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0)});
  } else {
    // exec grant (issue 22): processes, but no new namespaces and no sibling of the worker
    // (CLONE_PARENT would hand the child to the runner).
    const uint64_t forbidden = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                               CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x80 /* NEWTIME */ |
                               CLONE_PARENT;
    r.add(SCMP_ACT_ALLOW, SCMP_SYS(clone),
          {arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD | forbidden, 0)});
    for (uint64_t bit = 1; bit != 0 && bit <= forbidden; bit <<= 1) {
      if ((forbidden & bit) == 0) continue;
      r.add(kEperm, SCMP_SYS(clone), {arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_THREAD | bit, bit)});
    }
    for (int sys : {SCMP_SYS(vfork), SCMP_SYS(setsid)}) r.add(SCMP_ACT_ALLOW, sys, {});
    if (gate->anywhere) {
      r.add(SCMP_ACT_ALLOW, SCMP_SYS(execve), {});
    } else {
      // Only the worker's spawn path: its pathname argument is the worker's exec buffer (a
      // handler's own execve, from a fresh address space, names other memory: EPERM).
      r.add(SCMP_ACT_ALLOW, SCMP_SYS(execve), {arg_cmp(0, SCMP_CMP_EQ, gate->path_addr)});
      r.add(kEperm, SCMP_SYS(execve), {arg_cmp(0, SCMP_CMP_NE, gate->path_addr)});
    }
    r.add(kEperm, SCMP_SYS(execveat), {});
    // A child arms its own parent-death signal before exec; nobody can disarm it.
    r.add(SCMP_ACT_ALLOW, SCMP_SYS(prctl),
          {eq32(0, PR_SET_PDEATHSIG), arg_cmp(1, SCMP_CMP_EQ, SIGKILL)});
  }
  // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes glibc use clone.
  r.add(SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), {});
  if (r.rc() != 0) return fail("clone", r.rc());
  // Sockets: only the kinds above (the type's flag bits, SOCK_NONBLOCK and SOCK_CLOEXEC, are
  // outside the 0xf type mask).
  if (net == Network::none) {
    r.add(kEperm, SCMP_SYS(socket), {});
  } else {
    std::vector<uint32_t> domains;
    std::map<uint32_t, std::vector<uint32_t>> types;
    for (const auto& k : kSockets) {
      std::vector<scmp_arg_cmp> dt = {eq32(0, k.domain), eq32(1, k.type, 0xf)};
      r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, k.protocols, dt);
      r.add_except(kEperm, SCMP_SYS(socket), 2, k.protocols, dt);
      domains.push_back(k.domain);
      types[k.domain].push_back(k.type);
    }
    for (const auto& [domain, ts] : types) {
      r.add_except(kEperm, SCMP_SYS(socket), 1, ts, {eq32(0, domain)}, 0xf);
    }
    r.add_except(SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 0, domains, {});
  }
  if (r.rc() != 0) return fail("socket", r.rc());
  // Socket options: the allowlist above, per level.
  std::vector<uint32_t> levels;
  for (const auto& l : kSockopts) {
    r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(setsockopt), 2, l.options, {eq32(1, l.level)});
    r.add_except(kEperm, SCMP_SYS(setsockopt), 2, l.options, {eq32(1, l.level)});
    levels.push_back(l.level);
  }
  r.add_except(kEperm, SCMP_SYS(setsockopt), 1, levels, {});
  if (r.rc() != 0) return fail("setsockopt", r.rc());
  if (net == Network::loopback) {
    // Every call that names a peer or a local address is checked (and performed) by the host;
    // sendto without an address (a connected socket: the bulk of the traffic) stays direct.
    for (int sys : {SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(sendmsg),
                    SCMP_SYS(sendmmsg)}) {
      r.add(SCMP_ACT_NOTIFY, sys, {});
    }
    r.add(SCMP_ACT_ALLOW, SCMP_SYS(sendto), {arg_cmp(4, SCMP_CMP_EQ, 0)});
    r.add(SCMP_ACT_NOTIFY, SCMP_SYS(sendto), {arg_cmp(4, SCMP_CMP_NE, 0)});
    if (r.rc() != 0) return fail("loopback rules", r.rc());
  }
  // Signals: only to this process (abort() and raise() use tgkill on themselves). With an exec
  // grant (issue 22) to any process: the worker stops its children, a child signals itself;
  // Landlock (ABI >= 6) scopes signals to the worker's domain.
  for (int sys :
       {SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo)}) {
    if (allow_exec) {
      // Not -1 (every process of the uid); Landlock (ABI >= 6) scopes the rest to the worker's
      // own domain, the uid to the plugin's processes.
      r.add(SCMP_ACT_ALLOW, sys, {arg_cmp(0, SCMP_CMP_NE, static_cast<uint32_t>(-1))});
      r.add(kEperm, sys, {arg_cmp(0, SCMP_CMP_EQ, static_cast<uint32_t>(-1))});
    } else {
      r.add(SCMP_ACT_ALLOW, sys, {arg_cmp(0, SCMP_CMP_EQ, static_cast<uint32_t>(own))});
    }
  }
  r.add(kEperm, SCMP_SYS(tkill), {});
  if (r.rc() != 0) return fail("signals", r.rc());
  // prlimit64 and sched_setaffinity on this process only (0 = the caller; glibc's
  // getrlimit/setrlimit use prlimit64 with 0). Reading the affinity of another task (another
  // thread of ours included: seccomp cannot tell) answers ENOSYS.
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 0, {0, own}, {});
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(sched_setaffinity), 0, {0, own}, {});
  r.add_except(kEperm, SCMP_SYS(sched_setaffinity), 0, {0, own}, {});
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(sched_getaffinity), 0, {0, own}, {});
  r.add_except(SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(sched_getaffinity), 0, {0, own}, {});
  if (r.rc() != 0) return fail("prlimit64/affinity", r.rc());
  // prctl: the allowlist; the rest (PR_SET_PDEATHSIG above all: the worker must die with the
  // host) fails with EPERM.
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(prctl), 0, kPrctlAllowed, {});
  if (!allow_exec) {
    r.add_except(kEperm, SCMP_SYS(prctl), 0, kPrctlAllowed, {});
  } else {
    // exec grant: PR_SET_PDEATHSIG(SIGKILL) is allowed above; any other value fails.
    std::vector<uint32_t> others = kPrctlAllowed;
    others.push_back(PR_SET_PDEATHSIG);
    r.add_except(kEperm, SCMP_SYS(prctl), 0, others, {});
    r.add(kEperm, SCMP_SYS(prctl), {eq32(0, PR_SET_PDEATHSIG), arg_cmp(1, SCMP_CMP_NE, SIGKILL)});
  }
  if (r.rc() != 0) return fail("prctl", r.rc());
  // ioctl: the allowlist (the request is 32 bits wide in the kernel).
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, kIoctlAllowed, {});
  r.add_except(kEperm, SCMP_SYS(ioctl), 1, kIoctlAllowed, {});
  if (r.rc() != 0) return fail("ioctl", r.rc());
  // fcntl: everything but F_SETOWN to another process and F_SETOWN_EX (SIGIO/SIGURG delivered
  // elsewhere).
  r.add_except(SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 1, {F_SETOWN, F_SETOWN_EX}, {});
  r.add_in(SCMP_ACT_ALLOW, SCMP_SYS(fcntl), 2, {0, own}, {eq32(1, F_SETOWN)});
  r.add_except(kEperm, SCMP_SYS(fcntl), 2, {0, own}, {eq32(1, F_SETOWN)});
  r.add(kEperm, SCMP_SYS(fcntl), {eq32(1, F_SETOWN_EX)});
  if (r.rc() != 0) return fail("fcntl", r.rc());
  if (net != Network::loopback) {
    if ((rc = seccomp_load(ctx)) != 0) return fail("seccomp_load", rc);
    return "";
  }
  return load_with_listener(ctx, notify_fd);
}

}  // namespace jr::sandbox
