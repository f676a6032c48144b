#include "confine.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "mount_ns.hpp"

namespace jr::sandbox {
namespace {

// Landlock constants newer than the installed kernel headers (ABI-stable values).
constexpr uint64_t kFsTruncate = 1ULL << 14;  // ABI 3
constexpr uint64_t kFsIoctlDev = 1ULL << 15;  // ABI 5
constexpr uint64_t kNetBindTcp = 1ULL << 0;   // ABI 4
constexpr uint64_t kNetConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr uint64_t kScopeSignal = 1ULL << 1;

struct RulesetAttr {  // struct landlock_ruleset_attr as of ABI 6
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

std::string errstr(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void set_limit(int res, const char* name, rlim_t soft, rlim_t hard, nlohmann::json& out) {
  struct rlimit rl {
    soft, hard
  };
  if (setrlimit(res, &rl) != 0) throw ConfineError(errstr(name));
  out[name] = soft == RLIM_INFINITY ? nlohmann::json("unlimited") : nlohmann::json(soft);
}

uint64_t fs_rights(int abi) {
  uint64_t all = (1ULL << 13) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) all |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) all |= kFsTruncate;
  if (abi >= 5) all |= kFsIoctlDev;
  return all;
}

// exec grant (issue 22): with a policy that grants programs, no rule but theirs carries the
// execute right (set once per worker by apply_landlock, before any rule is added).
uint64_t g_drop_access = 0;

// Adds one path_beneath rule for an open file or directory; returns false (errno set) on error.
bool add_fd(int ruleset, int fd, bool writable, int abi) {
  struct stat st {};
  fstat(fd, &st);
  const uint64_t file_only = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                             LANDLOCK_ACCESS_FS_READ_FILE | (abi >= 3 ? kFsTruncate : 0) |
                             (abi >= 5 ? kFsIoctlDev : 0);
  uint64_t access = writable ? fs_rights(abi)
                             : (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR |
                                LANDLOCK_ACCESS_FS_EXECUTE);
  access &= ~g_drop_access;
  if (!S_ISDIR(st.st_mode)) access &= file_only;
  landlock_path_beneath_attr attr{};
  attr.allowed_access = access;
  attr.parent_fd = fd;
  return syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &attr, 0) == 0;
}

// Adds one path_beneath rule; returns false (errno set) when the path cannot be opened.
bool add_path(int ruleset, const std::string& path, bool writable, int abi) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = add_fd(ruleset, fd, writable, abi);
  int saved = errno;
  close(fd);
  errno = saved;
  return ok;
}

// Returns the layer's report; appends a warning when it degraded.
nlohmann::json apply_landlock(const ConfineSpec& spec, std::vector<std::string>& warnings) {
  int abi = spec.simulate_missing.count("landlock") ? 0 : landlock_abi();
  if (abi <= 0) {
    std::string why =
        spec.simulate_missing.count("landlock")
            ? "the kernel does not support Landlock (simulated)"
            : "the kernel does not support Landlock (" + std::string(std::strerror(errno)) + ")";
    warnings.push_back("landlock: " + why + "; file access is limited by uid and seccomp only");
    return "degraded: " + why;
  }
  // exec grant (issue 22): only the granted programs (and their interpreters) are executable.
  g_drop_access = spec.policy.exec.empty() ? 0 : LANDLOCK_ACCESS_FS_EXECUTE;
  RulesetAttr attr{};
  attr.handled_access_fs = fs_rights(abi);
  bool net_rules = abi >= 4 && spec.policy.network == Network::none;
  if (net_rules) attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
  if (abi >= 6) attr.scoped = kScopeAbstractUnix | kScopeSignal;
  size_t size = abi >= 6 ? sizeof(RulesetAttr) : abi >= 4 ? 16 : 8;
  int rs = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, size, 0));
  if (rs < 0) {
    std::string why = errstr("landlock_create_ruleset");
    warnings.push_back("landlock: " + why);
    return "degraded: " + why;
  }
  std::vector<std::string> ro = {"/lib",
                                 "/lib64",
                                 "/lib32",
                                 "/usr",
                                 "/etc/ld.so.cache",
                                 "/etc/localtime",
                                 "/etc/passwd",
                                 "/etc/group",
                                 "/etc/ssl",
                                 "/dev/urandom",
                                 "/dev/random",
                                 "/dev/zero",
                                 "/sys/devices/system/cpu",
                                 "/proc/self"};
  if (spec.policy.network != Network::none) {
    for (const char* p : {"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
                          "/etc/host.conf", "/etc/services", "/etc/protocols"}) {
      ro.push_back(p);
    }
  }
  // The plugin: the content the host pinned for us. A sealed memfd lives outside every file
  // system (Landlock neither restricts nor accepts a rule for it: EBADFD); an ordinary file gets a
  // rule for itself alone. Its directory is not granted: files beside a plugin are not readable
  // unless the policy grants them (issue 16, trust model).
  if (spec.plugin_fd >= 0 && !add_fd(rs, spec.plugin_fd, false, abi) && errno != EBADFD) {
    warnings.push_back(std::string("landlock: the plugin file not granted: ") + strerror(errno));
  }
  for (const auto& p : ro) add_path(rs, p, false, abi);  // missing system paths are fine
  add_path(rs, "/dev/null", true, abi);
  nlohmann::json granted_ro = nlohmann::json::array(), granted_rw = nlohmann::json::array();
  for (const auto& p : spec.policy.readable) {
    if (add_path(rs, p, false, abi)) {
      granted_ro.push_back(p);
    } else {
      warnings.push_back("landlock: readable path " + p + " not granted: " + std::strerror(errno));
    }
  }
  std::vector<std::string> rw = spec.policy.writable;
  if (!spec.scratch_dir.empty()) rw.push_back(spec.scratch_dir);
  for (const auto& p : rw) {
    if (add_path(rs, p, true, abi)) {
      granted_rw.push_back(p);
    } else {
      warnings.push_back("landlock: writable path " + p + " not granted: " + std::strerror(errno));
    }
  }
  // exec grant (issue 22): execute (and read) on each granted program file, nothing else.
  nlohmann::json granted_exec = nlohmann::json::array();
  for (const auto& p : spec.policy.exec) {
    int fd = open(p.c_str(), O_PATH | O_CLOEXEC);
    struct stat st {};
    landlock_path_beneath_attr pb{};
    pb.allowed_access = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_READ_FILE;
    pb.parent_fd = fd;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) == 0) {
      granted_exec.push_back(p);
    } else {
      warnings.push_back(
          "landlock: program " + p + " not granted: " +
          (fd >= 0 && !S_ISREG(st.st_mode) ? "not a regular file" : std::strerror(errno)));
    }
    if (fd >= 0) close(fd);
  }
  if (!spec.policy.exec.empty() && abi < 6) {
    warnings.push_back(
        "landlock: ABI " + std::to_string(abi) +
        " cannot scope signals: a handler may signal other processes of its uid (give the "
        "plugin its own user)");
  }
  if (syscall(SYS_landlock_restrict_self, rs, 0) != 0) {
    std::string why = errstr("landlock_restrict_self");
    close(rs);
    warnings.push_back("landlock: " + why);
    return "degraded: " + why;
  }
  close(rs);
  nlohmann::json r = {{"status", "applied"},
                      {"abi", abi},
                      {"readable", granted_ro},
                      {"writable", granted_rw},
                      {"tcp", net_rules ? "denied" : "not restricted"},
                      {"scoped", abi >= 6 ? "abstract unix sockets, signals" : "unsupported"}};
  if (!spec.policy.exec.empty()) r["exec"] = granted_exec;  // issue 22
  if (spec.policy.network == Network::none && abi < 4) {
    r["tcp"] = "not restricted (Landlock ABI < 4)";
  }
  return r;
}

}  // namespace

int landlock_abi() {
  long v = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return v < 0 ? 0 : static_cast<int>(v);
}

ConfineReport confine(const ConfineSpec& spec) {
  ConfineReport rep;
  auto& L = rep.layers;
  const Policy& pol = spec.policy;
  // 1. Die with the host. Also checked after the uid drop, which clears the setting.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) throw ConfineError(errstr("PR_SET_PDEATHSIG"));
  if (spec.host_pid > 0 && getppid() != spec.host_pid) _exit(70);
  L["pdeathsig"] = "applied";
  // 2. Only stdin (/dev/null), stdout/stderr (pipes the host reads), the IPC socket (3), the
  //    shared page (4, closed once mapped) and the plugin file (5) stay open.
  if (close_range(6, ~0U, 0) != 0) throw ConfineError(errstr("close_range"));
  L["close_fds"] = "applied (kept 0-5)";
  L["output"] = "stdout and stderr are pipes the host reads, bounds and logs tagged";
  // 3. Environment: nothing from the host; TMPDIR and HOME point at the scratch dir.
  clearenv();
  if (!spec.scratch_dir.empty()) {
    setenv("TMPDIR", spec.scratch_dir.c_str(), 1);
    setenv("HOME", spec.scratch_dir.c_str(), 1);
  }
  L["environment"] = "cleared";
  // 4. Resource limits.
  nlohmann::json lim = nlohmann::json::object();
  if (pol.memory_mb > 0) {
    rlim_t as = static_cast<rlim_t>(pol.memory_mb) << 20;
#if defined(JR_ADDRESS_SANITIZER)
    rep.warnings.push_back("rlimits: RLIMIT_AS not set in an AddressSanitizer build");
    lim["RLIMIT_AS"] = "degraded: AddressSanitizer build";
    (void)as;
#else
    set_limit(RLIMIT_AS, "RLIMIT_AS", as, as, lim);
#endif
  }
  if (pol.cpu_seconds > 0) {
    // The per-job budget is enforced per worker life: 2x the budget, and the host recycles a
    // worker that has used more than one budget, so every job starts with at least one left.
    rlim_t cpu = static_cast<rlim_t>(std::ceil(pol.cpu_seconds * 2));
    set_limit(RLIMIT_CPU, "RLIMIT_CPU", cpu, cpu + 1, lim);
  }
  set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", static_cast<rlim_t>(pol.max_open_files),
            static_cast<rlim_t>(pol.max_open_files), lim);
  set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", static_cast<rlim_t>(pol.max_file_mb) << 20,
            static_cast<rlim_t>(pol.max_file_mb) << 20, lim);
  set_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 0, lim);
  // 5. No privilege gain through exec (setuid binaries, file capabilities).
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw ConfineError(errstr("NO_NEW_PRIVS"));
  L["no_new_privs"] = "applied";
  // 6. Network namespace (needs CAP_SYS_ADMIN: before the uid drop).
  if (pol.network == Network::none) {
    if (spec.simulate_missing.count("netns")) {
      rep.warnings.push_back("netns: network namespaces unavailable (simulated)");
      L["netns"] = "degraded: network namespaces unavailable (simulated)";
    } else if (unshare(CLONE_NEWNET) != 0) {
      std::string why = errstr("unshare(CLONE_NEWNET)");
      rep.warnings.push_back("netns: " + why + "; seccomp still refuses socket()");
      L["netns"] = "degraded: " + why;
    } else {
      L["netns"] = "applied (empty network namespace)";
    }
  } else {
    L["netns"] = std::string("not requested (network ") + network_name(pol.network) + ")";
  }
  // 6b. Mount namespace with a minimal root and the scratch tmpfs (needs CAP_SYS_ADMIN).
  {
    RootSpec rs;
    rs.readable = pol.readable;
    // exec grant (issue 22): programs outside the system directories appear in the root too.
    for (const auto& p : pol.exec) {
      if (p.rfind("/usr/", 0) != 0 && p.rfind("/lib", 0) != 0) rs.readable.push_back(p);
    }
    rs.writable = pol.writable;
    if (pol.network != Network::none) rs.socket_dirs = spec.socket_dirs;
    rs.network = pol.network != Network::none;
    rs.scratch_dir = spec.scratch_dir;
    rs.scratch_mb = pol.scratch_mb;
    rs.uid = geteuid() == 0 ? spec.uid : -1;
    rs.gid = geteuid() == 0 ? spec.gid : -1;
    rs.user_name = spec.user_name;
    rs.simulate_missing = spec.simulate_missing.count("mountns") > 0;
    try {
      enter_minimal_root(rs, L, rep.warnings);
    } catch (const std::exception& e) {
      throw ConfineError(e.what());
    }
  }
  // 7. Unprivileged uid/gid.
  if (geteuid() == 0 && spec.uid >= 0) {
    gid_t g = static_cast<gid_t>(spec.gid);
    uid_t u = static_cast<uid_t>(spec.uid);
    if (setgroups(0, nullptr) != 0) throw ConfineError(errstr("setgroups"));
    if (setresgid(g, g, g) != 0) throw ConfineError(errstr("setresgid"));
    if (setresuid(u, u, u) != 0) throw ConfineError(errstr("setresuid"));
    if (getuid() != u || geteuid() != u || getgid() != g) {
      throw ConfineError("uid drop did not take effect");
    }
    L["user"] = {{"status", "applied"}, {"uid", u}, {"gid", g}, {"source", spec.uid_source}};
    // A dedicated uid makes RLIMIT_NPROC meaningful (root ignores it): no thread/fork bombs.
    set_limit(RLIMIT_NPROC, "RLIMIT_NPROC", static_cast<rlim_t>(pol.max_threads),
              static_cast<rlim_t>(pol.max_threads), lim);
  } else {
    L["user"] = "unchanged: the host does not run as root (uid " + std::to_string(geteuid()) + ")";
    lim["RLIMIT_NPROC"] = "not set (shared uid)";
  }
  L["rlimits"] = lim;
  // The credential change cleared the parent-death signal: set it again.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) throw ConfineError(errstr("PR_SET_PDEATHSIG"));
  if (spec.host_pid > 0 && getppid() != spec.host_pid) _exit(70);
  // 8. Landlock.
  L["landlock"] = apply_landlock(spec, rep.warnings);
  // exec grant (issue 22): orphaned descendants of a handler are re-parented to this worker,
  // which finds them (/proc/self/task/*/children) and stops them with their handler.
  if (!pol.exec.empty()) {
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) throw ConfineError(errstr("PR_SET_CHILD_SUBREAPER"));
    L["subreaper"] = "applied (orphaned descendants come back to the worker)";
  }
  // 9. seccomp, last: everything above needs system calls the filter refuses.
  if (spec.simulate_missing.count("seccomp")) {
    rep.warnings.push_back("seccomp: unavailable (simulated); system calls are not filtered");
    L["seccomp"] = "degraded: unavailable (simulated)";
  } else {
    ExecGate gate;
    if (!pol.exec.empty()) {
      void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (page == MAP_FAILED) throw ConfineError(errstr("mmap(exec path buffer)"));
      rep.exec_path = static_cast<char*>(page);
      rep.exec_path_cap = 4096;
      gate.path_addr = reinterpret_cast<uintptr_t>(page);
      gate.anywhere = pol.exec_from_handlers;
    }
    std::string err =
        install_seccomp(pol.network, getpid(), &rep.notify_fd, pol.exec.empty() ? nullptr : &gate);
    if (err.empty()) {
      L["seccomp"] = "applied (allowlist, kill on violation)";
      if (!pol.exec.empty()) {  // issue 22
        L["seccomp"] =
            std::string(
                "applied (allowlist, kill on violation; exec granted: fork without "
                "namespaces, signals but to -1, execve ") +
            (pol.exec_from_handlers ? "anywhere (sandbox.exec)" : "only from the spawn path") + ")";
      }
      if (pol.network == Network::loopback) {
        L["network"] =
            "loopback: connect, bind, listen and addressed sends are checked and performed by "
            "the host (127.0.0.0/8, ::1, unix paths)";
      }
    } else {
      rep.warnings.push_back("seccomp: " + err + "; system calls are not filtered");
      L["seccomp"] = "degraded: " + err;
    }
  }
  return rep;
}

}  // namespace jr::sandbox
