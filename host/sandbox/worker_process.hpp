// Host side of one jr-worker process: spawned by posix_spawn (exec of the jr-worker binary, never
// a fork of the multithreaded host) from one long-lived spawner thread (the parent-death signal
// follows the thread that created the child, so it must outlive the workers), with the IPC
// socket on fd 3 and the shared page on fd 4. Owns the socket, a pidfd, the mapping and the
// scratch directory; the destructor kills and reaps the process if it is still there.
//
// Threading: one WorkerProcess is used by one thread at a time (the pool hands it out).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "protocol.hpp"

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

  // Sends Init and waits for Hello (or the process' death, or the timeout). Returns the Hello
  // JSON; on failure returns null and sets `kind` ("crash", "seccomp", "oom", "protocol",
  // "timeout", "init") and `err`.
  nlohmann::json handshake(const nlohmann::json& init, int64_t timeout_ms, std::string* kind,
                           std::string* err);

  void kill();                         // SIGKILL; remembered so the status is not blamed on OOM
  bool wait_exit(int64_t timeout_ms);  // true once the process has exited (pidfd readable)
  int reap();                          // waits for and returns the wait status (once; cached)
  bool alive() const { return !reaped_; }
  bool killed_by_us() const { return killed_; }

  // The classification of a dead worker's wait status: kind + human text.
  static void classify(int status, bool killed_by_us, std::string* kind, std::string* text);

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

 private:
  explicit WorkerProcess(uint32_t max_frame);  // out of line: NetGuard is incomplete here
  bool take_net_guard(const proto::Frame& f, const nlohmann::json& init, int64_t deadline);
  int memfd_ = -1;
  bool killed_ = false;
  bool reaped_ = false;
  int status_ = 0;
};

// "SIGSEGV" for 11, "signal 77" for unknown numbers.
std::string signal_name(int sig);

}  // namespace jr::sandbox
