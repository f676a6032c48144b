// Time as the host reads it: one seam instead of a private helper per file.
//
// `steady_ms()` is the monotonic clock for deadlines and intervals; `unix_seconds()` the wall
// clock. Code whose decisions depend on time (the in-memory store's now(), and through it the
// engine's retry scheduling and lease expiry in unit tests) takes a `Clock&`, so a test moves
// time with ManualClock::advance instead of sleeping.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace jr {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double unix_seconds() const = 0;  // wall clock: what PostgreSQL's now() would say
  virtual int64_t steady_ms() const = 0;    // monotonic: deadlines and intervals
  // The process's real clocks.
  static Clock& system();
};

// A clock that moves only when told to (tests). Both readings advance together.
class ManualClock : public Clock {
 public:
  explicit ManualClock(double unix_start = 1.7e9)
      : micros_(static_cast<int64_t>(unix_start * 1e6)) {}
  double unix_seconds() const override { return static_cast<double>(micros_.load()) / 1e6; }
  int64_t steady_ms() const override { return (micros_.load() - start_) / 1000; }
  void advance(double seconds) { micros_ += static_cast<int64_t>(seconds * 1e6); }

 private:
  std::atomic<int64_t> micros_;
  const int64_t start_ = micros_.load();
};

// The system clock's readings, for code with no reason to take a Clock (no test moves its time).
inline int64_t steady_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
inline int64_t steady_us() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}
inline double unix_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

class SystemClock final : public Clock {
 public:
  double unix_seconds() const override { return jr::unix_seconds(); }
  int64_t steady_ms() const override { return jr::steady_ms(); }
};

inline Clock& Clock::system() {
  static SystemClock c;
  return c;
}

}  // namespace jr
