// Whether the machine's CPUs have room for a reader that polls instead of sleeping.
//
// A reader that polls a few microseconds for the other side's frame (proto::kSpinUs) saves the
// wake-ups of a sleeping CPU when the answer comes quickly, and that is most of the cost of one
// caller on an idle machine. When every CPU is busy the same polling takes CPU time from the
// processes the reader waits for (the worker, PostgreSQL's backends), and a drain ran about 8%
// slower with it. The kernel's pressure-stall information says which case this is: the share of
// time some runnable task waited for a CPU (/proc/pressure/cpu, "some").
//
// CpuRoom samples that counter at most every kIntervalMs, from whichever caller comes first
// (no thread of its own), smooths the share over the last few samples and says "room" while it
// stays under kMaxStall. Not zero: a reader that sleeps makes stall of its own, the wake-up of a
// sleeping CPU (one caller on an idle 2-vCPU VM without polling: 11-18% of the time; a drain
// that saturates the CPUs: 20-65%, mostly over 30%). Without the file (a kernel without PSI,
// or psi=0) it always says "room": the behaviour before it existed.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>

namespace jr::sandbox {

class CpuRoom {
 public:
  static constexpr int64_t kIntervalMs = 50;
  static constexpr double kMaxStall = 0.25;

  // The process-wide sampler of /proc/pressure/cpu.
  static CpuRoom& machine();

  // A sampler of another file (tests).
  explicit CpuRoom(const char* path);
  ~CpuRoom();
  CpuRoom(const CpuRoom&) = delete;
  CpuRoom& operator=(const CpuRoom&) = delete;

  // Cheap: a clock read and an atomic load, and a sample once per interval.
  bool room();
  // Whether the file was readable at construction (false: room() is always true).
  bool available() const { return fd_ >= 0; }

  // The "some" line's total (microseconds stalled) in the text of a pressure file.
  static std::optional<uint64_t> parse_some_total(std::string_view text);
  // The share of `elapsed_us` of wall time that `stalled_us` is, at most 1 (0 for no time).
  static double share(uint64_t stalled_us, int64_t elapsed_us) {
    if (elapsed_us <= 0) return 0;
    return std::min(1.0, static_cast<double>(stalled_us) / static_cast<double>(elapsed_us));
  }
  // The smoothed share after a sample: each sample weighs half.
  static double smooth(double before, double sample) { return (before + sample) / 2; }

 private:
  void sample(int64_t now_us);

  int fd_ = -1;
  std::mutex sampling_;
  std::atomic<int64_t> next_us_{0};
  std::atomic<bool> room_{true};
  double smoothed_ = 0;
  uint64_t last_total_ = 0;
  int64_t last_us_ = 0;
};

}  // namespace jr::sandbox
