// Worker side: confines the jr-worker process before any plugin code runs. Layers, in order:
// parent-death signal, close other fds, clear the environment, rlimits, no-new-privs, network
// namespace and mount namespace with a minimal root and the scratch tmpfs (both need
// privileges, so before the uid drop; mount_ns.hpp), uid/gid drop (when root), Landlock file
// (and TCP) rules, seccomp allowlist. (The cgroup is the host's doing: the worker is in it
// before it reads its Init frame.) A layer the kernel lacks is reported as "degraded: ..."
// with a warning, never skipped silently; a layer that must not fail (uid drop, rlimits,
// no-new-privs) throws ConfineError and the worker refuses to load the plugin.
//
// Single-threaded: called once, from the worker's main thread, before any other thread exists.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "policy.hpp"

namespace jr::sandbox {

class ConfineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ConfineSpec {
  Policy policy;
  std::string plugin_path;       // as the host named it
  std::string plugin_real_path;  // symlinks resolved ("" = unknown)
  int plugin_fd = -1;            // the plugin file, opened by the host (proto::kPluginFd)
  std::string scratch_dir;
  int64_t uid = -1;  // target uid/gid when running as root; -1 = keep
  int64_t gid = -1;
  std::string uid_source;                // how the host chose it (for the report)
  std::string user_name;                 // its name in the minimal root's /etc/passwd
  std::vector<std::string> socket_dirs;  // unix socket directories to show in the minimal root
  pid_t host_pid = 0;
  // Test hook: layers to treat as unsupported by the kernel ("landlock", "seccomp", "netns",
  // "mountns"),
  // so the degradation path is exercised on a kernel that has them all.
  std::set<std::string> simulate_missing;
};

struct ConfineReport {
  nlohmann::json layers = nlohmann::json::object();  // layer -> "applied ..." / "degraded: ..."
  std::vector<std::string> warnings;                 // one per degraded layer
  // exec grant (issue 22): a private page whose address is the only pathname execve accepts
  // (ExecGate). The worker's spawn path copies the program's path here in the forked child.
  char* exec_path = nullptr;
  size_t exec_path_cap = 0;
  // network = "loopback": the seccomp notification fd the host's NetGuard must take over
  // (worker_main hands it over and closes it before loading the plugin); -1 otherwise.
  int notify_fd = -1;
};

ConfineReport confine(const ConfineSpec& spec);

// exec grant (issue 22): what seccomp lets through to execve. `path_addr`: the worker's exec
// buffer (ConfineReport::exec_path), the only pathname pointer execve accepts unless `anywhere`
// (the operator lets handlers run programs of their own).
struct ExecGate {
  uint64_t path_addr = 0;
  bool anywhere = false;
};

// The seccomp layer alone (seccomp_filter.cpp). Returns "" when loaded, else the reason.
// With Network::loopback, `notify_fd` receives the notification listener. `gate` (a policy with
// an exec grant): fork without namespace flags, execve as the gate says, setsid, its own
// parent-death signal and signals to any process but -1 (Landlock scopes them).
std::string install_seccomp(Network net, pid_t self, int* notify_fd,
                            const ExecGate* gate = nullptr);

// Landlock ABI version of the running kernel (0 when unsupported).
int landlock_abi();

}  // namespace jr::sandbox
