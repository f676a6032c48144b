#include "cpu_room.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

#include "clock.hpp"

namespace jr::sandbox {
namespace {

// Reads the whole (small) file from its start; nullopt on any error.
std::optional<uint64_t> read_total(int fd) {
  char buf[256];
  ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return std::nullopt;
  return CpuRoom::parse_some_total(std::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace

CpuRoom& CpuRoom::machine() {
  static CpuRoom m("/proc/pressure/cpu");
  return m;
}

CpuRoom::CpuRoom(const char* path) {
  fd_ = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return;
  std::optional<uint64_t> t = read_total(fd_);
  if (!t) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  last_total_ = *t;
  last_us_ = jr::steady_us();
  next_us_.store(last_us_ + kIntervalMs * 1000, std::memory_order_relaxed);
}

CpuRoom::~CpuRoom() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<uint64_t> CpuRoom::parse_some_total(std::string_view text) {
  // "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull ..."
  size_t line_end = text.find('\n');
  std::string_view line = text.substr(0, line_end);
  if (line.substr(0, 5) != "some ") return std::nullopt;
  size_t at = line.find(" total=");
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view digits = line.substr(at + 7);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || end == digits.data()) return std::nullopt;
  return v;
}

bool CpuRoom::room() {
  if (fd_ < 0) return true;
  int64_t now = jr::steady_us();
  if (now >= next_us_.load(std::memory_order_relaxed)) {
    std::unique_lock<std::mutex> lock(sampling_, std::try_to_lock);
    if (lock.owns_lock() && now >= next_us_.load(std::memory_order_relaxed)) sample(now);
  }
  return room_.load(std::memory_order_relaxed);
}

void CpuRoom::sample(int64_t now_us) {
  next_us_.store(now_us + kIntervalMs * 1000, std::memory_order_relaxed);
  std::optional<uint64_t> t = read_total(fd_);
  if (!t) return;  // keep the last answer
  uint64_t stalled = *t >= last_total_ ? *t - last_total_ : 0;
  smoothed_ = smooth(smoothed_, share(stalled, now_us - last_us_));
  room_.store(smoothed_ < kMaxStall, std::memory_order_relaxed);
  last_total_ = *t;
  last_us_ = now_us;
}

}  // namespace jr::sandbox
