#include "protocol.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

#include "clock.hpp"

namespace jr::sandbox::proto {

int64_t steady_ms() { return jr::steady_ms(); }

FrameReader::Result FrameReader::parse(Frame& out) {
  size_t have = end_ - start_;
  if (have < sizeof(Header)) return Result::need_more;
  Header h;
  std::memcpy(&h, buf_.data() + start_, sizeof h);
  last_len_ = h.len;
  if (h.len > max_) return Result::too_big;
  if (have < sizeof(Header) + h.len) {
    // Make room for the whole frame now, so fill() can complete it.
    size_t need = sizeof(Header) + h.len;
    if (start_ > 0 && buf_.size() - start_ < need) {
      std::memmove(buf_.data(), buf_.data() + start_, have);
      start_ = 0;
      end_ = have;
    }
    if (buf_.size() < need) buf_.resize(need);
    return Result::need_more;
  }
  out.type = static_cast<Type>(h.type);
  out.payload = std::string_view(buf_.data() + start_ + sizeof(Header), h.len);
  start_ += sizeof(Header) + h.len;
  return Result::frame;
}

FrameReader::Result FrameReader::fill(int fd) {
  if (start_ == end_) {
    start_ = end_ = 0;
  } else if (end_ == buf_.size()) {
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  // At most (CPUs - 1) readers of this process spin at once: more would only take the CPU from
  // the workers they wait for.
  static std::atomic<int> spinners{0};
  static const int max_spinners =
      std::max(1, static_cast<int>(std::thread::hardware_concurrency()) - 1);
  if (spin_us_ > 0 && spinners.fetch_add(1) < max_spinners) {
    struct Leave {
      ~Leave() { spinners.fetch_sub(1); }
    } leave;
    int64_t until = 0;
    for (int i = 0;; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) != 0) break;  // readable, closed, or an error: read() will say
      int64_t now = jr::steady_us();
      if (i == 0) until = now + spin_us_;
      if (now >= until) break;
      sched_yield();
    }
  } else if (spin_us_ > 0) {
    spinners.fetch_sub(1);
  }
  for (;;) {
    ssize_t n = ::read(fd, buf_.data() + end_, buf_.size() - end_);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return Result::need_more;
    }
    if (n == 0) return Result::eof;
    if (errno == EINTR) continue;
    return Result::error;
  }
}

FrameReader::Result FrameReader::next_blocking(int fd, Frame& out) {
  for (;;) {
    Result r = parse(out);
    if (r != Result::need_more) return r;
    r = fill(fd);
    if (r != Result::need_more) return r;
  }
}

bool write_all(int fd, std::string_view data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::send(fd, p, left, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

bool write_all_until(int fd, std::string_view data, int64_t deadline_steady_ms) {
  if (deadline_steady_ms <= 0) deadline_steady_ms = steady_ms() + 10000;
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      p += n;
      left -= static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
    int64_t wait = deadline_steady_ms - steady_ms();
    if (wait <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd pfd{fd, POLLOUT, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(wait, 1000)));
  }
  return true;
}

}  // namespace jr::sandbox::proto
