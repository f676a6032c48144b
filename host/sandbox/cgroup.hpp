// Per-plugin cgroups for sandbox workers (host side).
//
// Each plugin's pool gets a cgroup `jr-<pid ns inode>-<host pid>-<plugin>-<n>` below the host's own
// cgroup (cgroup v2: the host, when alone in its cgroup, first moves itself to a leaf `jr-host`
// so that controllers can be enabled for sub-cgroups). The host puts
// every worker in it between spawn and the Init frame, so no plugin code runs outside it:
//
//   cgroup v2 (a writable cgroup2 hierarchy with the memory and pids controllers):
//     <plugin>/            pids.max = max_threads (all workers together), cpu.weight = 100
//     <plugin>/w<N>/       one leaf per worker: memory.max = memory_mb (anonymous, page cache,
//                          shmem: memfd and tmpfs pages count), memory.swap.max = 0
//     killing the pool: cgroup.kill (or freeze, SIGKILL each, thaw on kernels before 5.14)
//   cgroup v1 (mounted, writable hierarchies), each controller that is there:
//     memory/<plugin>/w<N>/ memory.limit_in_bytes (and memsw) = memory_mb, per worker
//     pids/<plugin>/        pids.max = max_threads
//     cpu/<plugin>/         its own cpu.shares group (1024)
//     freezer/<plugin>/     to kill the pool: freeze, SIGKILL each process, thaw
//   neither: an inert object whose report() is "degraded: <why>" (the executor warns).
//
// Cgroups of runners that are gone (same pid namespace, dead pid) are emptied and removed
// when this process creates its first one. A cgroup is removed (after killing what is left in
// it) when the PluginCgroup is destroyed; a worker's leaf when its CgroupLeaf is.
//
// Ownership: the executor holds a shared_ptr; each worker's CgroupLeaf holds one too, so the
// plugin cgroup outlives its leaves. Threading: place()/kill_all()/pids() may be called from any
// thread (an internal mutex serialises them).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace jr::sandbox {

struct CgroupLimits {
  int64_t worker_memory_mb = 0;  // per worker leaf; 0 = no limit
  int64_t pids_max = 0;          // for the whole plugin; 0 = no limit
};

class PluginCgroup;

// One worker's leaf (removed when destroyed; the process must be gone by then).
class CgroupLeaf {
 public:
  ~CgroupLeaf();
  CgroupLeaf(const CgroupLeaf&) = delete;
  CgroupLeaf& operator=(const CgroupLeaf&) = delete;

 private:
  friend class PluginCgroup;
  CgroupLeaf() = default;
  std::shared_ptr<PluginCgroup> owner_;
  std::vector<std::string> dirs_;  // leaf directories (v2: one; v1: the memory leaf)
};

class PluginCgroup : public std::enable_shared_from_this<PluginCgroup> {
 public:
  // `label` names the cgroup (the plugin name, sanitised). `simulate_missing` containing
  // "cgroup" makes it inert with a degraded report (tests). Never returns null.
  static std::shared_ptr<PluginCgroup> create(const std::string& label, const CgroupLimits& lim,
                                              bool simulate_missing = false);
  ~PluginCgroup();
  PluginCgroup(const PluginCgroup&) = delete;
  PluginCgroup& operator=(const PluginCgroup&) = delete;

  bool active() const { return !dirs_.empty(); }
  // The layer report: {"status":"applied","version":"v2"|"v1",...} or "degraded: ...".
  const nlohmann::json& report() const { return report_; }
  const std::string& warning() const { return warning_; }  // "" unless degraded

  // Creates a leaf for one worker and moves `pid` into the plugin's cgroup(s). Null with `err`
  // set when that failed (the caller must kill the worker: it would run unconfined). Null with
  // no error when the cgroup is inert.
  std::unique_ptr<CgroupLeaf> place(pid_t pid, std::string* err);
  // SIGKILLs every process in the plugin's cgroup and waits up to `timeout_ms` for it to be
  // empty. True when it is (or the cgroup is inert).
  bool kill_all(int64_t timeout_ms = 2000);
  // Processes in the plugin's cgroup (all leaves).
  std::vector<pid_t> pids() const;
  // Bytes charged to the plugin's memory cgroup (all leaves; -1 without one).
  int64_t memory_bytes() const;
  // The main directory (v2: the plugin cgroup; v1: its pids or memory directory).
  std::string path() const { return dirs_.empty() ? "" : dirs_.front(); }

 private:
  friend class CgroupLeaf;
  // Not a throw in practice: nlohmann::json's default constructor has one for an impossible case.
  PluginCgroup() = default;  // NOLINT(bugprone-exception-escape)
  void remove_leaf(const std::vector<std::string>& dirs);
  std::vector<pid_t> pids_locked() const;
  bool kill_all_locked(int64_t timeout_ms);

  mutable std::mutex mu_;
  bool v2_ = false;
  std::vector<std::string> dirs_;      // the plugin's directories (v2: one; v1: one per controller)
  std::string memory_dir_;             // where worker leaves go ("" = no memory controller)
  std::vector<std::string> v1_plain_;  // v1: the plugin dirs the pid is written to directly
  std::string freezer_dir_;            // v1 freezer ("" = none)
  CgroupLimits limits_;
  uint64_t next_leaf_ = 0;
  nlohmann::json report_;
  std::string warning_;
};

// Parsing helpers (exposed for tests): the cgroup mounts in /proc/self/mountinfo text and the
// process' own cgroup paths in /proc/self/cgroup text.
struct CgroupMount {
  std::string fstype;                    // "cgroup2" or "cgroup"
  std::string mountpoint;                // where it is mounted
  std::string root;                      // which cgroup of the hierarchy is mounted there
  std::vector<std::string> controllers;  // v1: the super options naming controllers
};
std::vector<CgroupMount> parse_cgroup_mounts(const std::string& mountinfo);
// "" for the v2 line ("0::/path"), controller names for v1 lines -> path.
std::vector<std::pair<std::vector<std::string>, std::string>> parse_proc_cgroup(
    const std::string& text);

}  // namespace jr::sandbox
