// The stdout and stderr of sandbox workers (host side).
//
// A worker's fd 1 and fd 2 are the write ends of two pipes of its own (never the runner's
// stderr: a plugin could truncate the runner's log, forge lines in it, or change the flags of
// the runner's open file description). One reader thread in the host (epoll over every
// worker's pipes, started on first use and never stopped) reads them, cuts the text into lines
// and re-logs each line as a structured log line "plugin output" with fields plugin, pid,
// job_id (the job the worker was running when the line was read, absent between jobs), stream
// ("stdout" at level info, "stderr" at level warn) and text.
//
// Bounds, per worker (both pipes together): a line longer than `line_max` bytes is cut there
// (field "truncated": true, the rest of it is dropped); at most `bytes_per_second` bytes (with a
// burst of one second's worth) are logged; the excess is dropped and counted, and one notice
// "plugin output dropped" with the counts follows each episode of dropping (when output fits
// the budget again, when the worker goes, and every 10 s while it lasts). A worker that keeps
// writing over its budget is not read for a while (its writes then block on the full pipe), so
// a flood costs the host little.
//
// Ownership: a WorkerOutput owns the read ends; its destructor reads what is left (the worker
// is dead by then), logs it and closes them. Threading: set_job() is lock-free (the job loop
// calls it per job); everything else is serialised by the reader's mutex.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "log.hpp"

namespace jr::sandbox {

struct OutputLimits {
  size_t line_max = 4096;
  size_t bytes_per_second = 64 * 1024;
};

using OutputObserver = std::function<void(log::Level, const std::string&, const nlohmann::json&)>;

struct OutputTag;

class WorkerOutput {
 public:
  // Takes ownership of the read ends `out_fd` (the worker's stdout) and `err_fd` (stderr).
  static std::unique_ptr<WorkerOutput> attach(int out_fd, int err_fd, const std::string& plugin,
                                              pid_t pid);
  ~WorkerOutput();  // NOLINT(bugprone-exception-escape): see its definition
  WorkerOutput(const WorkerOutput&) = delete;
  WorkerOutput& operator=(const WorkerOutput&) = delete;

  // Who the lines are attributed to, the bounds, and an observer that sees every line this
  // worker's output produced (tests: SandboxOptions::log_observer).
  void configure(const std::string& plugin, const OutputLimits& lim, OutputObserver observer);
  // The job the worker runs now (0 = none).
  void set_job(int64_t job_id);
  // Reads the job set last (0 = none); usable from any thread, valid after this object is gone.
  std::function<int64_t()> job_reader() const;

 private:
  WorkerOutput() = default;
  std::shared_ptr<OutputTag> tag_;
  uint64_t ids_[2] = {0, 0};
};

}  // namespace jr::sandbox
