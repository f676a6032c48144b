// CpuRoom: when a sandbox reader may poll instead of sleeping (host/sandbox/cpu_room.hpp).
#include "cpu_room.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using jr::sandbox::CpuRoom;

TEST(CpuRoom, ParsesTheSomeLinesTotalAndRefusesAnythingElse) {
  EXPECT_EQ(CpuRoom::parse_some_total("some avg10=0.00 avg60=1.20 avg300=7.39 total=2731280515\n"
                                      "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
            2731280515u);
  EXPECT_EQ(CpuRoom::parse_some_total("some avg10=0.00 total=7"), 7u);
  EXPECT_FALSE(CpuRoom::parse_some_total(""));
  EXPECT_FALSE(CpuRoom::parse_some_total("full avg10=0.00 total=5\nsome total=9\n"));
  EXPECT_FALSE(CpuRoom::parse_some_total("some avg10=0.00 avg60=0.00\n"));
  EXPECT_FALSE(CpuRoom::parse_some_total("some avg10=0.00 total=\n"));
  EXPECT_FALSE(CpuRoom::parse_some_total("some avg10=0.00 total=x1\n"));
}

TEST(CpuRoom, TheShareIsStalledTimeOverWallTimeSmoothedOverSamples) {
  EXPECT_DOUBLE_EQ(CpuRoom::share(0, 50000), 0);
  EXPECT_DOUBLE_EQ(CpuRoom::share(12500, 50000), 0.25);
  EXPECT_DOUBLE_EQ(CpuRoom::share(60000, 50000), 1);  // "some" may pass wall time: capped
  EXPECT_DOUBLE_EQ(CpuRoom::share(100, 0), 0);        // no time passed: nothing to judge
  EXPECT_DOUBLE_EQ(CpuRoom::smooth(0, 1), 0.5);
  EXPECT_DOUBLE_EQ(CpuRoom::smooth(0.5, 0), 0.25);
  // A reader's own wake-ups (one caller, no polling: 11-18% stalled) leave room; a saturated
  // machine (a drain: mostly over 30%) does not.
  double s = 0;
  for (double x : {0.12, 0.18, 0.11, 0.15}) s = CpuRoom::smooth(s, x);
  EXPECT_LT(s, CpuRoom::kMaxStall);
  s = 0;
  for (double x : {0.45, 0.19, 0.40, 0.26}) s = CpuRoom::smooth(s, x);
  EXPECT_GE(s, CpuRoom::kMaxStall);
}

namespace {
void write_total(const std::string& path, uint64_t total) {
  std::ofstream(path, std::ios::trunc) << "some avg10=0.00 avg60=0.00 avg300=0.00 total=" << total
                                       << "\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
}
void next_interval() {
  std::this_thread::sleep_for(std::chrono::milliseconds(CpuRoom::kIntervalMs + 20));
}
}  // namespace

// The sampler follows the counter's growth per interval, in both directions, and keeps its
// last answer when the file turns unreadable.
TEST(CpuRoom, FollowsTheCountersGrowthBetweenSamples) {
  std::string path = ::testing::TempDir() + "jr_cpu_room_" + std::to_string(::getpid());
  write_total(path, 1000);
  CpuRoom r(path.c_str());
  ASSERT_TRUE(r.available());
  EXPECT_TRUE(r.room());
  next_interval();
  write_total(path, 1000 + 10'000'000);  // 10 s stalled in about 70 ms: every CPU is contended
  EXPECT_FALSE(r.room());
  next_interval();
  write_total(path, 1000 + 10'000'000 + 50);  // 50 us in about 70 ms: just over 1/4
  EXPECT_FALSE(r.room());
  next_interval();
  write_total(path, 1000 + 10'000'000 + 100);  // and to 1/8: room again
  EXPECT_TRUE(r.room());
  next_interval();
  write_total(path, 1000 + 30'000'000);
  EXPECT_FALSE(r.room());
  std::ofstream(path, std::ios::trunc) << "garbage\n";
  next_interval();
  EXPECT_FALSE(r.room());  // unparsable: the last answer stands
  std::remove(path.c_str());
}

TEST(CpuRoom, WithoutTheFileThereIsAlwaysRoom) {
  CpuRoom r("/nonexistent/pressure/cpu");
  EXPECT_FALSE(r.available());
  EXPECT_TRUE(r.room());
  next_interval();
  EXPECT_TRUE(r.room());
}

// The real kernel counter: with twice as many busy threads as CPUs, some runnable task always
// waits, and the machine's sampler says so within a few intervals.
TEST(CpuRoom, TheKernelsCounterSeesBusyCpus) {
  CpuRoom& m = CpuRoom::machine();
  if (!m.available()) GTEST_SKIP() << "/proc/pressure/cpu is not readable (kernel without PSI)";
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  unsigned n = 2 * std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) {
    hogs.emplace_back([&] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) x = x + 1;
    });
  }
  bool saw_no_room = false;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!saw_no_room && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    saw_no_room = !m.room();
  }
  stop = true;
  for (auto& t : hogs) t.join();
  EXPECT_TRUE(saw_no_room) << "the sampler kept saying 'room' with " << n << " busy threads";
}
