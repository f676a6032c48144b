#include "net_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace jr::sandbox {
namespace {

constexpr size_t kMaxPayload = 4u << 20;  // bytes copied for one send on the worker's behalf
constexpr size_t kMaxIov = 1024;
constexpr unsigned kMaxMmsg = 64;

struct Result {
  int64_t val = 0;
  int err = 0;  // positive errno; 0 = success
};

Result fail(int e) { return {-1, e}; }

// One notification: reads and writes the calling thread's memory.
struct Call {
  int listener;
  const seccomp_notif* req;
  uint64_t arg(int i) const { return req->data.args[i]; }
  bool read(uint64_t addr, void* out, size_t len) const {
    if (len == 0) return true;
    iovec local{out, len};
    iovec remote{reinterpret_cast<void*>(addr), len};
    return process_vm_readv(static_cast<pid_t>(req->pid), &local, 1, &remote, 1, 0) ==
           static_cast<ssize_t>(len);
  }
  bool write(uint64_t addr, const void* in, size_t len) const {
    iovec local{const_cast<void*>(in), len};
    iovec remote{reinterpret_cast<void*>(addr), len};
    return process_vm_writev(static_cast<pid_t>(req->pid), &local, 1, &remote, 1, 0) ==
           static_cast<ssize_t>(len);
  }
  // The thread is still waiting for this answer (its pid was not reused under us).
  bool valid() const { return seccomp_notify_id_valid(listener, req->id) == 0; }
};

// "" when `a` may be used, else why not; `shown` describes the address for the log.
std::string check_address(const sockaddr_storage& a, socklen_t len, bool bind, std::string* shown) {
  char buf[INET6_ADDRSTRLEN] = {0};
  switch (a.ss_family) {
    case AF_INET: {
      if (len < sizeof(sockaddr_in)) return "short address";
      const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
      inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
      *shown = std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
      return (ntohl(in->sin_addr.s_addr) >> 24) == 127 ? "" : "not a loopback address";
    }
    case AF_INET6: {
      if (len < sizeof(sockaddr_in6)) return "short address";
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
      *shown = "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
      if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return "";
      if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127) return "";
      return "not a loopback address";
    }
    case AF_UNIX: {
      const auto* un = reinterpret_cast<const sockaddr_un*>(&a);
      size_t off = offsetof(sockaddr_un, sun_path);
      size_t plen = len > off ? len - off : 0;
      if (plen == 0) {
        *shown = "unix (unnamed)";
        return bind ? "" : "no address";
      }
      if (un->sun_path[0] == '\0') {
        *shown = "unix (abstract)";
        return "abstract unix sockets are not allowed";
      }
      *shown = "unix:" + std::string(un->sun_path, strnlen(un->sun_path, plen));
      return "";
    }
    case AF_NETLINK:
      *shown = "netlink";
      return "";  // kernel interfaces (getaddrinfo's route dump), not the network
    case AF_UNSPEC:
      *shown = "AF_UNSPEC";
      // connect(AF_UNSPEC) dissolves an association; bind(AF_UNSPEC) means "any address".
      return bind ? "a wildcard bind" : "";
    default:
      *shown = "address family " + std::to_string(a.ss_family);
      return "address family not allowed";
  }
}

class Handler {
 public:
  Handler(const Call& c, int pidfd, const std::function<void(const std::string&)>& refuse)
      : c_(c), pidfd_(pidfd), refuse_(refuse) {}

  Result run() {
    int nr = c_.req->data.nr;
    if (nr == SCMP_SYS(connect)) return connect_or_bind(false);
    if (nr == SCMP_SYS(bind)) return connect_or_bind(true);
    if (nr == SCMP_SYS(listen)) return listen();
    if (nr == SCMP_SYS(sendto)) return sendto();
    if (nr == SCMP_SYS(sendmsg)) return sendmsg();
    if (nr == SCMP_SYS(sendmmsg)) return sendmmsg();
    return fail(ENOSYS);
  }

 private:
  struct Sock {
    int fd = -1;
    ~Sock() {
      if (fd >= 0) close(fd);
    }
  };

  bool read_address(uint64_t uaddr, uint64_t ulen, sockaddr_storage* a, socklen_t* len, Result* r) {
    if (ulen > sizeof(sockaddr_storage)) {
      *r = fail(EINVAL);
      return false;
    }
    *len = static_cast<socklen_t>(ulen);
    std::memset(a, 0, sizeof *a);
    if (!c_.read(uaddr, a, *len)) {
      *r = fail(EFAULT);
      return false;
    }
    return true;
  }

  bool allowed(const char* call, const sockaddr_storage& a, socklen_t len, bool bind, Result* r) {
    std::string shown;
    std::string why = check_address(a, len, bind, &shown);
    if (why.empty()) return true;
    refuse_(std::string(call) + " to " + shown + " refused by network policy loopback (" + why +
            ")");
    *r = fail(EPERM);
    return false;
  }

  bool dup_socket(int fd, Sock* s, Result* r) {
    s->fd = dup_from(pidfd_, fd);
    if (s->fd < 0) {
      *r = fail(errno == EBADF ? EBADF : ENOTSOCK);
      return false;
    }
    if (!c_.valid()) {
      *r = fail(EINTR);
      return false;
    }
    return true;
  }

  Result connect_or_bind(bool bind) {
    Result r;
    sockaddr_storage a;
    socklen_t len;
    if (!read_address(c_.arg(1), c_.arg(2), &a, &len, &r)) return r;
    if (!allowed(bind ? "bind" : "connect", a, len, bind, &r)) return r;
    Sock s;
    if (!dup_socket(static_cast<int>(c_.arg(0)), &s, &r)) return r;
    const auto* sa = reinterpret_cast<const sockaddr*>(&a);
    int rc = bind ? ::bind(s.fd, sa, len) : ::connect(s.fd, sa, len);
    return rc == 0 ? Result{} : fail(errno);
  }

  Result listen() {
    Result r;
    Sock s;
    if (!dup_socket(static_cast<int>(c_.arg(0)), &s, &r)) return r;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(s.fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return fail(errno);
    // An unbound inet socket would be bound to the wildcard address by listen itself.
    if (!allowed("listen", a, len, true, &r)) return r;
    return ::listen(s.fd, static_cast<int>(c_.arg(1))) == 0 ? Result{} : fail(errno);
  }

  // Gathers the payload of `m` (worker addresses) into `data`.
  bool gather(const msghdr& m, std::vector<char>* data, Result* r) {
    if (m.msg_iovlen > kMaxIov) {
      *r = fail(EMSGSIZE);
      return false;
    }
    std::vector<iovec> iov(m.msg_iovlen);
    if (!c_.read(reinterpret_cast<uint64_t>(m.msg_iov), iov.data(), iov.size() * sizeof(iovec))) {
      *r = fail(EFAULT);
      return false;
    }
    size_t total = 0;
    for (const auto& v : iov) total += v.iov_len;
    if (total > kMaxPayload) {
      *r = fail(EMSGSIZE);
      return false;
    }
    data->resize(total);
    size_t at = 0;
    for (const auto& v : iov) {
      if (!c_.read(reinterpret_cast<uint64_t>(v.iov_base), data->data() + at, v.iov_len)) {
        *r = fail(EFAULT);
        return false;
      }
      at += v.iov_len;
    }
    return true;
  }

  // One message of sendmsg/sendmmsg, performed on `fd` (a duplicate) with copied data.
  Result send_one(int fd, const msghdr& m, int flags) {
    Result r;
    if (m.msg_controllen > 0) {
      refuse_("sendmsg with control messages refused by network policy loopback");
      return fail(EPERM);
    }
    sockaddr_storage a;
    socklen_t alen = 0;
    bool named = m.msg_name != nullptr && m.msg_namelen > 0;
    if (named) {
      if (!read_address(reinterpret_cast<uint64_t>(m.msg_name), m.msg_namelen, &a, &alen, &r)) {
        return r;
      }
      if (!allowed("sendmsg", a, alen, false, &r)) return r;
    }
    std::vector<char> data;
    if (!gather(m, &data, &r)) return r;
    iovec one{data.data(), data.size()};
    msghdr out{};
    out.msg_name = named ? &a : nullptr;
    out.msg_namelen = named ? alen : 0;
    out.msg_iov = &one;
    out.msg_iovlen = 1;
    ssize_t n = ::sendmsg(fd, &out, flags | MSG_NOSIGNAL);
    return n < 0 ? fail(errno) : Result{n, 0};
  }

  Result sendto() {
    Result r;
    uint64_t len = c_.arg(2);
    int flags = static_cast<int>(c_.arg(3));
    sockaddr_storage a;
    socklen_t alen = 0;
    bool named = c_.arg(4) != 0;
    if (named) {
      if (!read_address(c_.arg(4), c_.arg(5), &a, &alen, &r)) return r;
      if (!allowed("sendto", a, alen, false, &r)) return r;
    }
    if (len > kMaxPayload) return fail(EMSGSIZE);
    std::vector<char> data(len);
    if (!c_.read(c_.arg(1), data.data(), len)) return fail(EFAULT);
    Sock s;
    if (!dup_socket(static_cast<int>(c_.arg(0)), &s, &r)) return r;
    ssize_t n = ::sendto(s.fd, data.data(), len, flags | MSG_NOSIGNAL,
                         named ? reinterpret_cast<sockaddr*>(&a) : nullptr, alen);
    return n < 0 ? fail(errno) : Result{n, 0};
  }

  Result sendmsg() {
    Result r;
    msghdr m{};
    if (!c_.read(c_.arg(1), &m, sizeof m)) return fail(EFAULT);
    Sock s;
    if (!dup_socket(static_cast<int>(c_.arg(0)), &s, &r)) return r;
    return send_one(s.fd, m, static_cast<int>(c_.arg(2)));
  }

  Result sendmmsg() {
    Result r;
    unsigned n = static_cast<unsigned>(std::min<uint64_t>(c_.arg(2), kMaxMmsg));
    if (n == 0) return Result{};
    std::vector<mmsghdr> v(n);
    if (!c_.read(c_.arg(1), v.data(), n * sizeof(mmsghdr))) return fail(EFAULT);
    Sock s;
    if (!dup_socket(static_cast<int>(c_.arg(0)), &s, &r)) return r;
    int flags = static_cast<int>(c_.arg(3));
    int64_t sent = 0;
    for (unsigned i = 0; i < n; ++i) {
      Result one = send_one(s.fd, v[i].msg_hdr, flags);
      if (one.err != 0) return sent == 0 ? one : Result{sent, 0};
      auto len = static_cast<unsigned>(one.val);
      uint64_t at = c_.arg(1) + i * sizeof(mmsghdr) + offsetof(mmsghdr, msg_len);
      if (!c_.write(at, &len, sizeof len)) return sent == 0 ? fail(EFAULT) : Result{sent, 0};
      ++sent;
    }
    return Result{sent, 0};
  }

  const Call& c_;
  int pidfd_;
  const std::function<void(const std::string&)>& refuse_;
};

}  // namespace

int dup_from(int pidfd, int target_fd) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target_fd, 0));
}

NetGuard::NetGuard(int listener, int pidfd, int64_t uid, int64_t gid,
                   std::function<void(const std::string&)> on_refusal)
    : listener_(listener),
      pidfd_(pidfd),
      uid_(uid),
      gid_(gid),
      on_refusal_(std::move(on_refusal)),
      thread_([this] { loop(); }) {}

NetGuard::~NetGuard() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  close(listener_);
  close(pidfd_);
}

void NetGuard::loop() {
  if (uid_ >= 0 && geteuid() == 0) {
    // This thread only: resolve unix socket paths as the worker would (glibc's wrappers would
    // change the whole process, so the raw system calls).
    syscall(SYS_setgroups, 0, nullptr);
    syscall(SYS_setfsgid, static_cast<gid_t>(gid_));
    syscall(SYS_setfsuid, static_cast<uid_t>(uid_));
  }
  seccomp_notif* req = nullptr;
  seccomp_notif_resp* resp = nullptr;
  if (seccomp_notify_alloc(&req, &resp) != 0) return;
  auto refuse = [this](const std::string& why) {
    refused_++;
    if (on_refusal_) on_refusal_(why);
  };
  while (!stop_.load()) {
    pollfd p{listener_, POLLIN, 0};
    int rc = poll(&p, 1, 100);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if ((p.revents & POLLIN) == 0) break;  // POLLHUP: every thread of the worker is gone
    std::memset(req, 0, sizeof *req);
    if (seccomp_notify_receive(listener_, req) != 0) continue;  // the caller died meanwhile
    Call c{listener_, req};
    uint64_t before = refused_.load();
    Result r = Handler(c, pidfd_, refuse).run();
    if (refused_.load() == before && r.err != EPERM) allowed_++;
    std::memset(resp, 0, sizeof *resp);
    resp->id = req->id;
    resp->val = r.err == 0 ? r.val : 0;
    resp->error = r.err == 0 ? 0 : -r.err;
    seccomp_notify_respond(listener_, resp);  // ENOENT when the caller died: nothing to do
  }
  seccomp_notify_free(req, resp);
}

}  // namespace jr::sandbox
