#include "domain_check/src/whois_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace domain_check {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on fd until the deadline, waking every 100 ms for cancellation.
// Returns 1 ready, 0 deadline, -1 cancelled, -2 error.
int wait_for(int fd, short events, Clock::time_point deadline, const CancelFn& cancelled) {
  for (;;) {
    if (cancelled && cancelled()) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return 0;
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (rc > 0) return 1;
    if (rc < 0 && errno != EINTR) return -2;
  }
}

}  // namespace

bool contains_nocase(const std::string& haystack, const std::string& needle) {
  auto it = std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(),
                        [](char a, char b) {
                          return std::tolower(static_cast<unsigned char>(a)) ==
                                 std::tolower(static_cast<unsigned char>(b));
                        });
  return it != haystack.end();
}

WhoisReply whois_query(const ResolvedHost& server, const std::string& query, double timeout_s,
                       size_t max_bytes, const CancelFn& cancelled) {
  WhoisReply out;
  auto deadline = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6));
  std::string last_error = "no address";
  for (size_t i = 0; i < server.addrs.size(); ++i) {
    const auto* sa = reinterpret_cast<const sockaddr*>(&server.addrs[i]);
    Fd fd(::socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last_error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    if (::connect(fd.get(), sa, server.lens[i]) != 0) {
      if (errno != EINPROGRESS) {
        last_error = std::string("connect: ") + std::strerror(errno);
        continue;
      }
      int w = wait_for(fd.get(), POLLOUT, deadline, cancelled);
      if (w == -1) return {WhoisReply::kCancelled, "", "cancelled"};
      if (w == 0) return {WhoisReply::kTimeout, "", "connect timed out"};
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (w < 0 || err != 0) {
        last_error = std::string("connect: ") + std::strerror(err ? err : errno);
        continue;
      }
    }
    // Connected: send the query, then read until EOF.
    std::string line = query + "\r\n";
    size_t sent = 0;
    while (sent < line.size()) {
      ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        int w = wait_for(fd.get(), POLLOUT, deadline, cancelled);
        if (w == -1) return {WhoisReply::kCancelled, "", "cancelled"};
        if (w == 0) return {WhoisReply::kTimeout, "", "timed out sending the query"};
        if (w > 0) continue;
      }
      return {WhoisReply::kError, "", std::string("send: ") + std::strerror(errno)};
    }
    char buf[8192];
    for (;;) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n > 0) {
        out.text.append(buf, std::min(static_cast<size_t>(n), max_bytes - out.text.size()));
        if (out.text.size() >= max_bytes) break;  // enough to classify
        continue;
      }
      if (n == 0) break;
      if (errno == EAGAIN || errno == EINTR) {
        int w = wait_for(fd.get(), POLLIN, deadline, cancelled);
        if (w == -1) return {WhoisReply::kCancelled, out.text, "cancelled"};
        if (w == 0) {
          return {WhoisReply::kTimeout, out.text,
                  out.text.empty() ? "no reply in time" : "reply not finished in time"};
        }
        if (w > 0) continue;
      }
      return {WhoisReply::kError, out.text, std::string("recv: ") + std::strerror(errno)};
    }
    out.status = WhoisReply::kOk;
    return out;
  }
  out.status = WhoisReply::kUnreachable;
  out.detail = last_error;
  return out;
}

}  // namespace domain_check
