// Host side of one jr-worker process: spawned by posix_spawn (exec of the jr-worker binary, never
// a fork of the multithreaded host) from one long-lived spawner thread (the parent-death signal
// follows the thread that created the child, so it must outlive the workers), with the IPC
// socket on fd 3, the shared page on fd 4 (a memfd sealed against shrinking and growing, so the
// worker cannot make the host's mapping fault) and its own stdout/stderr pipes on fd 1/2 (read
// by worker_output.hpp). Owns the socket, a pidfd, the mapping, the output pipes, its cgroup
// leaf and the scratch directory; the destructor kills and reaps the process if it is still
// there, then logs what it wrote last and removes its leaf.
//
// Threading: one WorkerProcess is used by one thread at a time (the pool hands it out).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cgroup.hpp"
#include "error_kind.hpp"
#include "protocol.hpp"
#include "worker_output.hpp"

namespace jr::sandbox {

// How long one read on a worker's socket blocks before the job loop looks at ctx.cancel and the
// deadline again (so deadlines are enforced within this granularity).
constexpr int kReadTickMs = 50;

class NetGuard;

class WorkerProcess {
 public:
  // Starts `worker_path` with `plugin_path` open on proto::kPluginFd; nullptr with `err` set on
  // failure.
  static std::unique_ptr<WorkerProcess> spawn(const std::string& worker_path,
                                              const std::string& plugin_path, uint32_t max_frame,
                                              std::string* err);
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Sends Init and waits for Hello (or the process' death, or the timeout, or `abort()` turning
  // true: the runner shuts down, or the job waiting for this worker is stopped). Returns the Hello
  // JSON; on failure returns null and sets `kind`
  // ("crash", "seccomp", "oom", "protocol", "timeout", "cancelled", "init") and `err`. The worker
  // is killed on timeout and abort.
  nlohmann::json handshake(const nlohmann::json& init, int64_t timeout_ms, ErrorKind* kind,
                           std::string* err, const std::function<bool()>& abort = {});

  // Moves the (just spawned) worker into `cg` before it gets its Init frame. False with `err`
  // set when that failed: the worker must not run (the caller drops it).
  bool join_cgroup(PluginCgroup& cg, std::string* err);
  // The seals of the shared page's memfd (tests).
  int shared_seals() const;

  void kill();                         // SIGKILL; remembered so the status is not blamed on OOM
  bool wait_exit(int64_t timeout_ms);  // true once the process has exited (pidfd readable)
  int reap();                          // waits for and returns the wait status (once; cached)
  bool alive() const { return !reaped_; }
  bool killed_by_us() const { return killed_; }

  // The classification of a dead worker's wait status: kind + human text.
  static void classify(int status, bool killed_by_us, ErrorKind* kind, std::string* text);

  pid_t pid = -1;
  int fd = -1;  // host end of the socketpair (non-blocking)
  int pidfd = -1;
  proto::SharedPage* shared = nullptr;
  proto::FrameReader reader;
  proto::Encoder enc;
  uint64_t seq = 0;    // last job seq sent
  int64_t jobs = 0;    // jobs completed
  int64_t cpu_us = 0;  // as last reported
  int64_t maxrss_kb = 0;
  std::string scratch;  // removed with the worker
  int64_t started_ms = 0;
  std::unique_ptr<NetGuard> net_guard;  // network = "loopback" only
  uint64_t generation = 0;              // the executor's pool generation when it started
  // Declared last among the public members: destroyed first after the process is reaped.
  std::unique_ptr<CgroupLeaf> cgroup_leaf;
  std::unique_ptr<WorkerOutput> output;  // its stdout/stderr

 private:
  explicit WorkerProcess(uint32_t max_frame);  // out of line: NetGuard is incomplete here
  bool take_net_guard(const proto::Frame& f, const nlohmann::json& init, int64_t deadline);
  int memfd_ = -1;
  bool killed_ = false;
  bool reaped_ = false;
  int status_ = 0;
};

// The directories of the unix sockets a plugin's config names: the host (or host=) of its
// `database_url` when that is an absolute path (a PostgreSQL socket directory). A worker with a
// network sees them in its minimal root (mount_ns.hpp).
std::vector<std::string> unix_socket_dirs(const nlohmann::json& plugin_config);

// Once per process and scratch root: removes the scratch directories
// (`jr-sandbox-<plugin>-<pid>-<n>`) of runners that are gone (their pid is dead here).
void remove_stale_scratch_dirs(const std::string& root);

// "SIGSEGV" for 11, "signal 77" for unknown numbers.
std::string signal_name(int sig);

}  // namespace jr::sandbox
