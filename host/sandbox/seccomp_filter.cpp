// The seccomp allowlist of a sandbox worker (libseccomp). Default action: kill the process
// (SIGSYS). Allowed: what glibc, the dynamic loader, libstdc++ threads, malloc, the IPC socket
// and ordinary file/time/poll work need. Conditional: clone only for threads (else EPERM),
// clone3 -> ENOSYS (glibc falls back to clone), socket -> EPERM unless the policy grants
// network, signals only to the worker itself.
// execve, fork, ptrace, mount, namespaces, bpf, io_uring, keyrings, ... kill the worker.
#include <asm/unistd.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "confine.hpp"

namespace jr::sandbox {
namespace {

const char* const kAllowed[] = {
    // I/O on descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "pipe", "pipe2",
    "sendfile", "copy_file_range", "splice", "tee", "flock", "fsync", "fdatasync", "fadvise64",
    "readahead", "ftruncate", "fallocate", "memfd_create", "eventfd", "eventfd2",
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
    "arch_prctl", "prctl", "sched_yield", "sched_getaffinity", "sched_setaffinity",
    "sched_getparam", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "getpriority",
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
    // sockets (socket() itself is conditional below)
    "socketpair", "connect", "bind", "listen", "accept", "accept4", "getsockname", "getpeername",
    "setsockopt", "getsockopt", "shutdown", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg",
    "recvmmsg",
    // leaving
    "exit", "exit_group"};

struct CtxDeleter {
  void operator()(void* c) const { seccomp_release(c); }
};

// network = "loopback": these go to the host's NetGuard (net_guard.hpp) instead of the allowlist.
bool guarded(const std::string& name) {
  return name == "connect" || name == "bind" || name == "listen" || name == "sendto" ||
         name == "sendmsg" || name == "sendmmsg";
}

}  // namespace

std::string install_seccomp(Network net, pid_t self, int* notify_fd) {
  *notify_fd = -1;
  std::unique_ptr<void, CtxDeleter> guard(seccomp_init(SCMP_ACT_KILL_PROCESS));
  scmp_filter_ctx ctx = guard.get();
  if (ctx == nullptr) return "seccomp_init failed";
  auto fail = [](const char* what, int rc) {
    return std::string(what) + ": " + std::strerror(-rc);
  };
  int rc = 0;
  for (const char* name : kAllowed) {
    if (net == Network::loopback && guarded(name)) continue;
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0)) != 0) return fail(name, rc);
  }
  // Threads only: a clone without CLONE_THREAD (fork, posix_spawn) fails with EPERM.
  rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                        SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
  if (rc == 0) {
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                          SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_THREAD, 0));
  }
  if (rc != 0) return fail("clone", rc);
  // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes glibc use clone.
  if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) != 0) {
    return fail("clone3", rc);
  }
  // Sockets.
  if (net == Network::none) {
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 0);
  } else {
    for (int domain : {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}) {
      if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                              SCMP_A0_32(SCMP_CMP_EQ, static_cast<uint32_t>(domain)));
      }
    }
    for (int domain : {AF_PACKET, AF_KEY, AF_ALG, AF_VSOCK, AF_BLUETOOTH}) {
      if (rc == 0) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                              SCMP_A0_32(SCMP_CMP_EQ, static_cast<uint32_t>(domain)));
      }
    }
  }
  if (rc != 0) return fail("socket", rc);
  if (net == Network::loopback) {
    // Every call that names a peer or a local address is checked (and performed) by the host;
    // sendto without an address (a connected socket: the bulk of the traffic) stays direct.
    for (int sys : {SCMP_SYS(connect), SCMP_SYS(bind), SCMP_SYS(listen), SCMP_SYS(sendmsg),
                    SCMP_SYS(sendmmsg)}) {
      if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, sys, 0);
    }
    if (rc == 0) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sendto), 1, SCMP_A4_64(SCMP_CMP_EQ, 0));
    }
    if (rc == 0) {
      rc = seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, SCMP_SYS(sendto), 1, SCMP_A4_64(SCMP_CMP_NE, 0));
    }
    if (rc != 0) return fail("loopback rules", rc);
  }
  // Signals: only to this process (abort() and raise() use tgkill on themselves).
  auto own = static_cast<scmp_datum_t>(self);
  for (int sys :
       {SCMP_SYS(kill), SCMP_SYS(tgkill), SCMP_SYS(rt_sigqueueinfo), SCMP_SYS(rt_tgsigqueueinfo)}) {
    if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sys, 1, SCMP_A0_32(SCMP_CMP_EQ, own));
  }
  if (rc == 0) rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(tkill), 0);
  if (rc != 0) return fail("signals", rc);
  // prlimit64 on this process only (glibc's getrlimit/setrlimit use it).
  rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0_32(SCMP_CMP_EQ, 0));
  if (rc == 0) {
    rc =
        seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0_32(SCMP_CMP_EQ, own));
  }
  if (rc != 0) return fail("prlimit64", rc);
  // ioctl: allowed. Terminal injection (TIOCSTI) needs a tty fd, and a worker never gets one:
  // the host hands it /dev/null instead of a terminal, and Landlock keeps /dev/tty closed.
  if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 0)) != 0) {
    return fail("ioctl", rc);
  }
  if ((rc = seccomp_load(ctx)) != 0) return fail("seccomp_load", rc);
  if (net == Network::loopback) {
    *notify_fd = seccomp_notify_fd(ctx);
    if (*notify_fd < 0) return fail("seccomp_notify_fd", *notify_fd);
  }
  return "";
}

}  // namespace jr::sandbox
