#include "net_guard.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <seccomp.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <system_error>
#include <utility>

#include "clock.hpp"
#include "conninfo.hpp"

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace jr::sandbox {
namespace {

constexpr size_t kMaxPayload = 4u << 20;  // bytes copied for one call on the worker's behalf
constexpr size_t kMaxIov = 1024;
constexpr unsigned kMaxMmsg = 64;
constexpr int kSliceMs = 100;  // a waiting call re-checks that its caller still waits this often
// Send flags the guard passes on; anything else (MSG_FASTOPEN, MSG_ZEROCOPY, MSG_DONTROUTE, ...)
// is refused.
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR | MSG_OOB | MSG_CONFIRM;

int64_t now_ms() { return jr::steady_ms(); }

struct Result {
  int64_t val = 0;
  int err = 0;  // positive errno; 0 = success
};

Result fail(int e) { return {-1, e}; }

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

bool beneath(const std::string& path, const std::string& dir, bool strictly) {
  if (dir == "/") return path.size() > 1 || !strictly;
  if (path.size() == dir.size()) return !strictly && path == dir;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

// The grants `path` lies beneath (strictly: a bind creates a new entry), longest first.
std::vector<std::string> grants_for(const std::string& path, const std::vector<std::string>& all,
                                    bool strictly) {
  std::vector<std::string> out;
  for (const auto& g : all) {
    if (beneath(path, g, strictly)) out.push_back(g);
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

void add_hosts(const std::string& list, std::vector<std::string>* out) {
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    std::string h = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (!h.empty() && h[0] == '/') out->push_back(h);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
}

// --- The guard's identity ----------------------------------------------------------------

// This thread (only: raw system calls, not glibc's process-wide wrappers) becomes uid/gid with
// no supplementary groups, keeping CAP_SYS_PTRACE alone. Threads it creates inherit that.
std::string become_worker(uid_t uid, gid_t gid) {
  auto err = [](const char* what) { return std::string(what) + ": " + std::strerror(errno); };
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return err("setgroups");
  if (syscall(SYS_setresgid, gid, gid, gid) != 0) return err("setresgid");
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return err("PR_SET_KEEPCAPS");
  if (syscall(SYS_setresuid, uid, uid, uid) != 0) return err("setresuid");
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].permitted = data[0].effective = 1u << CAP_SYS_PTRACE;
  if (syscall(SYS_capset, &hdr, data) != 0) return err("capset");
  prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  // Verify rather than trust.
  uid_t r = 0, e = 0, s = 0;
  gid_t rg = 0, eg = 0, sg = 0;
  syscall(SYS_getresuid, &r, &e, &s);
  syscall(SYS_getresgid, &rg, &eg, &sg);
  __user_cap_data_struct now[2] = {};
  syscall(SYS_capget, &hdr, now);
  if (r != uid || e != uid || s != uid || rg != gid || eg != gid || sg != gid ||
      syscall(SYS_getgroups, 0, nullptr) != 0 || now[0].effective != (1u << CAP_SYS_PTRACE) ||
      now[0].permitted != (1u << CAP_SYS_PTRACE) || now[1].effective != 0 ||
      now[1].permitted != 0) {
    return "the credential change did not take effect";
  }
  return "";
}

// This thread may create sockets only beneath `dirs` (Landlock, this thread only). Returns ""
// when restricted, "unsupported" when the kernel has no Landlock, else the error.
std::string restrict_socket_creation(const std::vector<std::string>& dirs) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return "PR_SET_NO_NEW_PRIVS failed";
  landlock_ruleset_attr attr{};
  attr.handled_access_fs = LANDLOCK_ACCESS_FS_MAKE_SOCK;
  Fd rs(static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0)));
  if (rs.get() < 0) {
    return errno == ENOSYS || errno == EOPNOTSUPP ? "unsupported"
                                                  : std::string("landlock: ") + strerror(errno);
  }
  for (const auto& d : dirs) {
    Fd dir(open(d.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() < 0) continue;  // a grant that does not exist (or is a file) allows nothing
    landlock_path_beneath_attr rule{};
    rule.allowed_access = LANDLOCK_ACCESS_FS_MAKE_SOCK;
    rule.parent_fd = dir.get();
    if (syscall(SYS_landlock_add_rule, rs.get(), LANDLOCK_RULE_PATH_BENEATH, &rule, 0) != 0) {
      return std::string("landlock_add_rule: ") + strerror(errno);
    }
  }
  if (syscall(SYS_landlock_restrict_self, rs.get(), 0) != 0) {
    return std::string("landlock_restrict_self: ") + strerror(errno);
  }
  return "";
}

// `path` (normalised, beneath one of `grants`) opened as O_PATH, resolved beneath the grant it
// lies in: no symlink, ".." or magic link leads out of it. -1 with errno on failure.
int open_beneath(const std::string& path, const std::vector<std::string>& grants) {
  int last = ENOENT;
  for (const auto& g : grants) {
    Fd base(open(g.c_str(), O_PATH | O_CLOEXEC));
    if (base.get() < 0) {
      last = errno;
      continue;
    }
    if (path == g) return fcntl(base.get(), F_DUPFD_CLOEXEC, 0);
    std::string rel = path.substr(g == "/" ? 1 : g.size() + 1);
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(syscall(SYS_openat2, base.get(), rel.c_str(), &how, sizeof how));
    if (fd >= 0) return fd;
    last = errno == EXDEV ? EACCES : errno;
  }
  errno = last;
  return -1;
}

// connect() as if the socket were non-blocking, leaving its flags as they were.
int connect_now(int fd, const sockaddr* a, socklen_t len) {
  int flags = fcntl(fd, F_GETFL);
  bool flip = flags >= 0 && (flags & O_NONBLOCK) == 0;
  if (flip) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, a, len);
  int saved = errno;
  if (flip) fcntl(fd, F_SETFL, flags);
  errno = saved;
  return rc;
}

std::string show_flags(int flags) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%x", static_cast<unsigned>(flags));
  return buf;
}

}  // namespace

// --- NetRules ------------------------------------------------------------------------------

std::string normalise_unix_path(const std::string& path, std::string* why) {
  if (path.empty() || path[0] != '/') {
    *why = "a relative unix socket path (only absolute paths are checked)";
    return "";
  }
  std::string out;
  size_t at = 1;
  while (at <= path.size()) {
    size_t slash = path.find('/', at);
    std::string part = path.substr(at, slash == std::string::npos ? std::string::npos : slash - at);
    if (part == "..") {
      *why = "'..' in a unix socket path";
      return "";
    }
    if (!part.empty() && part != ".") out += "/" + part;
    if (slash == std::string::npos) break;
    at = slash + 1;
  }
  return out.empty() ? "/" : out;
}

std::vector<std::string> database_socket_dirs(const std::string& conninfo) {
  // libpq's own parser: host (a comma-separated list; socket directories start with '/') in the
  // URI authority, its query, or the key=value form, exactly as libpq will read it.
  std::vector<std::string> out;
  try {
    auto kv = dbauth::parse_conninfo(conninfo);
    if (kv.count("host")) add_hosts(kv["host"], &out);
  } catch (const std::invalid_argument&) {
  }
  return out;
}

struct NetRules::Names {
  struct Entry {
    std::vector<IpAddr> addrs;
    int64_t at_ms = 0;
    std::string error;
  };
  std::mutex mu;
  std::map<std::string, Entry> cache;  // guarded by mu

  static Entry resolve(const std::string& name) {
    Entry e;
    e.at_ms = now_ms();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(name.c_str(), nullptr, &hints, &res);
    if (rc != 0) {
      e.error = gai_strerror(rc);
      return e;
    }
    for (addrinfo* ai = res; ai != nullptr && e.addrs.size() < 64; ai = ai->ai_next) {
      IpAddr a;
      char buf[INET6_ADDRSTRLEN] = {0};
      if (ai->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, buf, sizeof buf);
      } else if (ai->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, buf,
                  sizeof buf);
      }
      if (parse_ip(buf, &a) && std::find(e.addrs.begin(), e.addrs.end(), a) == e.addrs.end()) {
        e.addrs.push_back(a);
      }
    }
    freeaddrinfo(res);
    return e;
  }

  // Whether `a` is among the addresses of `name`: the cached answer, else a fresh one when the
  // cached one is older than kResolveMs (a moved database is found on its next connect).
  bool has(const std::string& name, const IpAddr& a) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(name);
    auto contains = [&a](const Entry& e) {
      return std::find(e.addrs.begin(), e.addrs.end(), a) != e.addrs.end();
    };
    if (it != cache.end() && contains(it->second)) return true;
    if (it != cache.end() && now_ms() - it->second.at_ms < kResolveMs) return false;
    cache[name] = resolve(name);
    return contains(cache[name]);
  }
  Entry now(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu);
    cache[name] = resolve(name);
    return cache[name];
  }
};

NetRules NetRules::loopback(UnixGrants unix_grants) {
  NetRules r;
  for (auto* list : {&unix_grants.bind, &unix_grants.connect}) {
    std::vector<std::string> clean;
    for (const auto& p : *list) {
      std::string why;
      std::string n = normalise_unix_path(p, &why);
      if (!n.empty() && std::find(clean.begin(), clean.end(), n) == clean.end()) {
        clean.push_back(n);
      }
    }
    *list = std::move(clean);
  }
  r.unix_ = std::move(unix_grants);
  return r;
}

NetRules NetRules::with_grants(UnixGrants unix_grants, std::vector<ConnectGrant> inet,
                               ResolvConf resolv) {
  for (const auto& g : inet) {
    if (g.kind == ConnectGrant::Kind::unix_path) unix_grants.connect.push_back(g.path);
  }
  NetRules r = loopback(std::move(unix_grants));
  bool names = false;
  for (auto& g : inet) {
    if (g.kind == ConnectGrant::Kind::unix_path) continue;
    names = names || g.kind == ConnectGrant::Kind::name;
    r.inet_.push_back(std::move(g));
  }
  if (names) {
    r.resolv_ = std::move(resolv);
    r.names_ = std::make_shared<Names>();
  }
  return r;
}

NetRules NetRules::for_worker(const nlohmann::json& init, const std::string& resolv_conf) {
  UnixGrants g;
  auto strings = [](const nlohmann::json& obj, const char* key, std::vector<std::string>* out) {
    if (!obj.is_object() || !obj.contains(key) || !obj[key].is_array()) return;
    for (const auto& v : obj[key]) {
      if (v.is_string()) out->push_back(v.get<std::string>());
    }
  };
  const nlohmann::json& policy = init.contains("policy") ? init["policy"] : nlohmann::json();
  std::string scratch = init.value("scratch", "");
  strings(policy, "writable", &g.bind);
  if (!scratch.empty()) g.bind.push_back(scratch);
  strings(policy, "readable", &g.connect);
  strings(policy, "writable", &g.connect);
  strings(policy, "sockets", &g.connect);
  if (!scratch.empty()) g.connect.push_back(scratch);
  std::vector<ConnectGrant> inet;
  std::vector<std::string> entries;
  strings(policy, "connect", &entries);
  for (const auto& e : entries) {
    ConnectGrant c;
    std::string why;
    if (parse_connect_grant(e, &c, &why)) inet.push_back(c);  // validated by the policy already
  }
  if (init.contains("config") && init["config"].is_object()) {
    auto url = init["config"].find("database_url");
    if (url != init["config"].end() && url->is_string()) {
      for (auto& d : database_socket_dirs(url->get<std::string>())) g.connect.push_back(d);
      for (auto& c : database_endpoints(url->get<std::string>())) inet.push_back(c);
    }
  }
  bool names = std::any_of(inet.begin(), inet.end(), [](const ConnectGrant& c) {
    return c.kind == ConnectGrant::Kind::name;
  });
  return with_grants(std::move(g), std::move(inet),
                     names ? read_resolv_conf(resolv_conf) : ResolvConf{});
}

std::string NetRules::describe() const {
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& p : v) s += (s.empty() ? "" : ", ") + p;
    return s.empty() ? std::string("none") : s;
  };
  std::vector<std::string> peers, dns;
  for (const auto& g : inet_) peers.push_back(g.text + " (" + g.source + ")");
  for (const auto& n : resolv_.nameservers) dns.push_back(n.str() + ":53");
  return "loopback (127.0.0.0/8, ::1); peers: " + list(peers) +
         "; DNS for granted names to: " + list(dns) +
         "; unix sockets created beneath: " + list(unix_.bind) +
         "; reached beneath: " + list(unix_.connect);
}

nlohmann::json NetRules::grants_json(bool resolve) const {
  nlohmann::json out = nlohmann::json::array();
  out.push_back({{"peer", "127.0.0.0/8, ::1"}, {"source", "loopback"}});
  for (const auto& g : inet_) {
    nlohmann::json j = {{"peer", g.text}, {"source", g.source}};
    if (g.kind == ConnectGrant::Kind::name && resolve && names_) {
      Names::Entry e = names_->now(g.name);
      nlohmann::json addrs = nlohmann::json::array();
      for (const auto& a : e.addrs) addrs.push_back(a.str());
      j["resolves_to"] = addrs;
      if (!e.error.empty()) j["resolve_error"] = e.error;
    }
    out.push_back(j);
  }
  for (const auto& n : resolv_.nameservers) {
    out.push_back({{"peer", (n.family == AF_INET6 ? "[" + n.str() + "]" : n.str()) + ":53"},
                   {"source", "resolv.conf (DNS for granted names)"}});
  }
  for (const auto& p : unix_.connect) out.push_back({{"peer", p}, {"source", "unix"}});
  return out;
}

bool NetRules::name_has(const std::string& name, const IpAddr& a) const {
  return names_ && names_->has(name, a);
}

bool NetRules::is_grant_resolver(const sockaddr_storage& a, socklen_t len) const {
  if (resolv_.nameservers.empty()) return false;
  if (a.ss_family != AF_INET && a.ss_family != AF_INET6) return false;
  NetVerdict v = check_inet(NetOp::send, a, len);
  return v.allowed && v.dns;
}

bool NetRules::dns_allowed(const unsigned char* data, size_t len, bool stream,
                           std::string* why) const {
  if (stream) {
    if (len < 2) {
      *why = "a DNS message without its length";
      return false;
    }
    data += 2;
    len -= 2;
  }
  std::vector<std::string> names;
  if (!dns_query_names(data, len, &names, why)) return false;
  for (const auto& n : names) {
    bool ok = false;
    for (const auto& g : inet_) {
      if (g.kind != ConnectGrant::Kind::name) continue;
      if (n == g.name) ok = true;
      for (const auto& d : resolv_.search) {
        if (n == g.name + "." + d) ok = true;
      }
    }
    if (!ok) {
      *why = "a DNS query about \"" + n.substr(0, 100) + "\", which no grant names";
      return false;
    }
  }
  return true;
}

NetVerdict NetRules::check(NetOp op, int domain, const sockaddr_storage& a, socklen_t len) const {
  NetVerdict v;
  if (len < sizeof(sa_family_t)) {
    v.shown = "(no address)";
    v.why = "address too short";
    return v;
  }
  if (a.ss_family == AF_UNSPEC) {
    v.shown = "AF_UNSPEC";
    if (op == NetOp::connect) {
      v.allowed = true;  // dissolves the socket's association; names no peer
    } else {
      v.why = "an AF_UNSPEC address (only connect may use one, to dissolve an association)";
    }
    return v;
  }
  if (a.ss_family != domain) {
    v.shown = "address family " + std::to_string(a.ss_family);
    v.why = "the address family does not match the socket's (" + std::to_string(domain) + ")";
    return v;
  }
  switch (domain) {
    case AF_INET:
    case AF_INET6:
      return check_inet(op, a, len);
    case AF_UNIX:
      return check_unix(op, a, len);
    default:
      v.shown = "address family " + std::to_string(domain);
      v.why = "address family not allowed";
      return v;
  }
}

NetVerdict NetRules::check_inet(NetOp op, const sockaddr_storage& a, socklen_t len) const {
  NetVerdict v;
  char buf[INET6_ADDRSTRLEN] = {0};
  bool loopback = false;
  IpAddr ip;
  uint16_t port = 0;
  if (a.ss_family == AF_INET) {
    if (len < sizeof(sockaddr_in)) {
      v.shown = "AF_INET (short)";
      v.why = "short address";
      return v;
    }
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    v.shown = std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
    loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    port = ntohs(in->sin_port);
  } else {
    if (len < 24) {  // SIN6_LEN_RFC2133: without the scope id, as the kernel accepts
      v.shown = "AF_INET6 (short)";
      v.why = "short address";
      return v;
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    v.shown = "[" + std::string(buf) + "]:" + std::to_string(ntohs(in6->sin6_port));
    loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127);
    port = ntohs(in6->sin6_port);
  }
  // connect, send: the peer; bind, listen: the local address (a wildcard is not loopback).
  if (loopback) {
    v.allowed = true;
    return v;
  }
  if (op == NetOp::bind || op == NetOp::listen) {
    v.why = "not a loopback address";
    return v;
  }
  // Named grants: peers of connect and addressed sends only.
  if (!inet_.empty() && parse_ip(buf, &ip)) {
    for (const auto& g : inet_) {
      if (g.kind == ConnectGrant::Kind::net && g.matches(ip, port)) {
        v.allowed = true;
        return v;
      }
    }
    for (const auto& g : inet_) {
      if (g.kind == ConnectGrant::Kind::name && g.port == port && name_has(g.name, ip)) {
        v.allowed = true;
        return v;
      }
    }
    if (port == 53 && std::find(resolv_.nameservers.begin(), resolv_.nameservers.end(), ip) !=
                          resolv_.nameservers.end()) {
      v.allowed = true;
      v.dns = true;
      return v;
    }
  }
  v.why = inet_.empty() ? "not a loopback address" : "neither loopback nor a granted peer";
  return v;
}

NetVerdict NetRules::check_unix(NetOp op, const sockaddr_storage& a, socklen_t len) const {
  NetVerdict v;
  const auto* un = reinterpret_cast<const sockaddr_un*>(&a);
  size_t off = offsetof(sockaddr_un, sun_path);
  size_t plen = len > off ? len - off : 0;
  if (plen == 0) {
    v.shown = "unix (unnamed)";
    // bind: the kernel picks an abstract name nobody outside can guess (autobind); listening
    // on it, or sending to "no address", is refused.
    if (op == NetOp::bind) {
      v.allowed = true;
    } else {
      v.why = op == NetOp::listen ? "listening needs a pathname address" : "no address";
    }
    return v;
  }
  if (un->sun_path[0] == '\0') {
    v.shown = "unix (abstract)";
    v.why = "abstract unix sockets are not allowed";
    return v;
  }
  std::string path(un->sun_path, strnlen(un->sun_path, plen));
  v.shown = "unix:" + path;
  if (op == NetOp::listen) {
    v.allowed = true;  // bound by the guard, beneath a writable path
    return v;
  }
  v.unix_path = normalise_unix_path(path, &v.why);
  if (v.unix_path.empty()) return v;
  if (op == NetOp::bind) {
    v.grants = grants_for(v.unix_path, unix_.bind, true);
    if (v.grants.empty()) v.why = "not beneath a writable path of the plugin";
  } else {
    v.grants = grants_for(v.unix_path, unix_.connect, false);
    if (v.grants.empty()) v.why = "not beneath a path the plugin may reach";
  }
  v.allowed = !v.grants.empty();
  return v;
}

// --- The guard -----------------------------------------------------------------------------

struct NetGuard::State {
  int listener = -1;
  int pidfd = -1;
  int wake = -1;  // eventfd, readable once the guard stops
  NetRules rules;
  std::function<void(const std::string&, const std::string&)> on_refusal;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> allowed{0}, refused{0};
  std::atomic<int> pending{0};

  void refuse(const std::string& why, const std::string& address = "") {
    refused++;
    if (on_refusal) on_refusal(why, address);
  }
  bool valid(uint64_t id) const { return seccomp_notify_id_valid(listener, id) == 0; }
  void respond(uint64_t id, const Result& r) const {
    seccomp_notif_resp* resp = nullptr;
    if (seccomp_notify_alloc(nullptr, &resp) != 0) return;
    resp->id = id;
    resp->val = r.err == 0 ? r.val : 0;
    resp->error = r.err == 0 ? 0 : -r.err;
    resp->flags = 0;
    seccomp_notify_respond(listener, resp);  // ENOENT when the caller is gone: nothing to do
    seccomp_notify_free(nullptr, resp);
  }
};

namespace {

using State = NetGuard::State;

// One notification, copied out of the kernel's buffer.
struct Req {
  uint64_t id = 0;
  pid_t pid = 0;  // the calling thread
  int nr = 0;
  uint64_t args[6] = {};
};

// An operation that may have to wait for its socket: attempt() tries once without blocking.
class Pending {
 public:
  virtual ~Pending() = default;
  // True when finished (the result in *r); false to be retried once the socket is ready for
  // *events (0: after a short sleep).
  virtual bool attempt(Result* r, short* next) = 0;
  virtual Result timed_out() = 0;                 // the result once SO_SNDTIMEO has passed
  virtual int64_t progress() const { return 0; }  // grows while data is being sent
  int fd() const { return sock_.get(); }
  int64_t deadline_ms = 0;  // 0 = none (the caller is killed at its job's deadline)
  short events = POLLOUT;

 protected:
  explicit Pending(Fd sock) : sock_(std::move(sock)) {}
  Fd sock_;
};

class ConnectInet final : public Pending {
 public:
  explicit ConnectInet(Fd sock) : Pending(std::move(sock)) {}
  bool attempt(Result* r, short* next) override {
    pollfd p{fd(), POLLOUT, 0};
    if (::poll(&p, 1, 0) <= 0) {
      *next = POLLOUT;
      return false;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    *r = err == 0 ? Result{} : fail(err);
    return true;
  }
  Result timed_out() override { return fail(EINPROGRESS); }  // as a blocking connect's timeout
};

class ConnectUnix final : public Pending {
 public:
  ConnectUnix(Fd sock, Fd target, sockaddr_un addr, socklen_t len)
      : Pending(std::move(sock)), target_(std::move(target)), addr_(addr), len_(len) {
    events = 0;  // a full backlog has no readiness to wait for: retry after a short sleep
  }
  bool attempt(Result* r, short* next) override {
    if (connect_now(fd(), reinterpret_cast<const sockaddr*>(&addr_), len_) == 0) {
      *r = Result{};
      return true;
    }
    if (errno == EAGAIN) {
      *next = 0;
      return false;
    }
    *r = fail(errno);
    return true;
  }
  Result timed_out() override { return fail(EAGAIN); }

 private:
  Fd target_;  // the resolved socket file the address names
  sockaddr_un addr_;
  socklen_t len_;
};

// One message of a send: our own copy of the data and of the destination.
struct Msg {
  std::vector<char> data;
  bool named = false;
  bool dns = false;  // to a resolver that only name grants admit: its questions are checked
  sockaddr_storage addr{};
  socklen_t alen = 0;
  Fd target;  // unix: the resolved socket file ("/proc/self/fd/N" in addr)
};

class Send final : public Pending {
 public:
  // `mmsg` != 0: sendmmsg (the result counts messages and each msg_len is written back there).
  Send(Fd sock, std::vector<Msg> msgs, int flags, bool stream, bool nonblock, uint64_t mmsg,
       pid_t pid)
      : Pending(std::move(sock)),
        msgs_(std::move(msgs)),
        flags_(flags),
        stream_(stream),
        nonblock_(nonblock),
        mmsg_(mmsg),
        pid_(pid) {}

  bool attempt(Result* r, short* next) override {
    while (idx_ < msgs_.size()) {
      Msg& m = msgs_[idx_];
      iovec one{m.data.data() + off_, m.data.size() - off_};
      msghdr h{};
      h.msg_name = m.named ? &m.addr : nullptr;
      h.msg_namelen = m.named ? m.alen : 0;
      h.msg_iov = &one;
      h.msg_iovlen = 1;
      ssize_t n = ::sendmsg(fd(), &h, flags_ | MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if ((errno == EAGAIN || errno == EWOULDBLOCK) && !nonblock_) {
          *next = POLLOUT;
          return false;
        }
        *r = finish(errno);
        return true;
      }
      off_ += static_cast<size_t>(n);
      bytes_ += n;
      msg_bytes_ += n;
      if (!stream_ || off_ >= m.data.size()) {
        if (mmsg_ != 0) {
          auto l = static_cast<unsigned>(msg_bytes_);
          iovec local{&l, sizeof l};
          // An address in the supervised process, written with process_vm_writev.
          iovec remote{
              // NOLINTNEXTLINE(performance-no-int-to-ptr)
              reinterpret_cast<void*>(mmsg_ + idx_ * sizeof(mmsghdr) + offsetof(mmsghdr, msg_len)),
              sizeof l};
          process_vm_writev(pid_, &local, 1, &remote, 1, 0);
        }
        ++idx_;
        ++sent_;
        off_ = 0;
        msg_bytes_ = 0;
      }
    }
    *r = finish(0);
    return true;
  }
  Result timed_out() override { return finish(EAGAIN); }
  int64_t progress() const override { return bytes_ + static_cast<int64_t>(sent_); }

 private:
  Result finish(int err) const {
    if (mmsg_ != 0) return sent_ > 0 ? Result{static_cast<int64_t>(sent_), 0} : fail(err);
    if (bytes_ > 0 || err == 0) return Result{bytes_, 0};
    return fail(err);
  }
  std::vector<Msg> msgs_;
  int flags_;
  bool stream_, nonblock_;
  uint64_t mmsg_;
  pid_t pid_;
  size_t idx_ = 0, off_ = 0, sent_ = 0;
  int64_t bytes_ = 0, msg_bytes_ = 0;
};

// Waits for `p` in slices until it finishes, times out, or its caller stops waiting (the worker
// died, the calling thread was killed) or the guard stops; then answers (or not: nobody waits).
void wait_and_answer(const State& s, const Req& req, Pending& p) {
  short events = p.events;
  bool backoff = false;  // the socket said ready, yet the call would still block: sleep first
  int sleep_ms = 1;
  Result r;
  for (;;) {
    int64_t now = now_ms();
    if (p.deadline_ms > 0 && now >= p.deadline_ms) {
      r = p.timed_out();
      break;
    }
    int wait = kSliceMs;
    if (p.deadline_ms > 0) wait = static_cast<int>(std::min<int64_t>(wait, p.deadline_ms - now));
    short want = backoff ? short{0} : events;
    if (want == 0) {
      // No readiness to wait for (a unix connect to a full backlog; a datagram socket that is
      // writable while its destination's queue is full): retry after 1, 2, 4 ... 50 ms.
      wait = std::min(wait, sleep_ms);
      sleep_ms = std::min(sleep_ms * 2, 50);
    }
    pollfd fds[3] = {{s.wake, POLLIN, 0}, {s.pidfd, POLLIN, 0}, {p.fd(), want, 0}};
    int rc = ::poll(fds, want != 0 ? 3 : 2, wait);
    if (rc < 0 && errno != EINTR) return;
    if (s.stop.load() || fds[0].revents != 0 || fds[1].revents != 0) return;  // nobody waits
    if (!s.valid(req.id)) return;
    if (want != 0 && rc > 0 && fds[2].revents == 0) continue;
    bool said_ready = want != 0 && rc > 0;
    int64_t before = p.progress();
    if (p.attempt(&r, &events)) break;
    backoff = said_ready && events != 0 && p.progress() == before;
    if (!backoff && want != 0) sleep_ms = 1;
  }
  s.respond(req.id, r);
}

// A notification in the dispatcher: copies the arguments, checks them, and either finishes the
// call (*out) or leaves what remains to a thread of its own (*later: a wait; *confined: a unix
// bind under Landlock).
class Handler {
 public:
  Handler(State& s, const Req& req) : s_(s), req_(req) {}

  void run(Result* out, std::unique_ptr<Pending>* later, std::function<Result()>* confined) {
    later_ = later;
    confined_ = confined;
    int nr = req_.nr;
    if (nr == SCMP_SYS(connect)) {
      *out = connect();
    } else if (nr == SCMP_SYS(bind)) {
      *out = bind();
    } else if (nr == SCMP_SYS(listen)) {
      *out = listen();
    } else if (nr == SCMP_SYS(sendto)) {
      *out = sendto();
    } else if (nr == SCMP_SYS(sendmsg)) {
      *out = sendmsg();
    } else if (nr == SCMP_SYS(sendmmsg)) {
      *out = sendmmsg();
    } else {
      *out = fail(ENOSYS);
    }
  }
  bool refused() const { return refused_; }

 private:
  uint64_t arg(int i) const { return req_.args[i]; }

  bool read(uint64_t addr, void* out, size_t len) const {
    if (len == 0) return true;
    iovec local{out, len};
    // An address in the supervised process, read with process_vm_readv.
    iovec remote{reinterpret_cast<void*>(addr), len};  // NOLINT(performance-no-int-to-ptr)
    return process_vm_readv(req_.pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
  }

  Result refuse(const char* call, const NetVerdict& v) {
    refused_ = true;
    s_.refuse(std::string(call) + " to " + v.shown + " refused by network policy loopback (" +
                  v.why + ")",
              v.shown);
    return fail(EPERM);
  }
  Result refuse(const std::string& text) {
    refused_ = true;
    s_.refuse(text);
    return fail(EPERM);
  }

  bool read_address(uint64_t uaddr, uint64_t ulen, sockaddr_storage* a, socklen_t* len, Result* r) {
    if (ulen > sizeof(sockaddr_storage)) {
      *r = fail(EINVAL);
      return false;
    }
    *len = static_cast<socklen_t>(ulen);
    std::memset(a, 0, sizeof *a);
    if (!read(uaddr, a, *len)) {
      *r = fail(EFAULT);
      return false;
    }
    return true;
  }

  // The worker's socket, duplicated, and its family and type. Checks that the caller still
  // waits (its pid was not reused while we read its memory).
  bool dup_socket(int fd, Fd* s, int* domain, int* type, Result* r) {
    // The calling thread's own descriptor table, not the worker's: with an exec grant (issue 22)
    // the caller may be a handler process the worker started, whose fd N is another file.
    // PIDFD_THREAD (Linux 6.9) names any thread; without it only a process's main thread.
    // Before Linux 6.9 (EINVAL): the worker's own table, as for a plugin without exec (an exec
    // handler's sockets are then not reachable: its connects fail with EBADF/ENOTSOCK).
    Fd caller(static_cast<int>(syscall(SYS_pidfd_open, req_.pid, 0x80 /* PIDFD_THREAD */)));
    bool old_kernel = caller.get() < 0 && errno == EINVAL;
    if (caller.get() < 0 && !old_kernel) {
      *r = fail(EINTR);  // the caller is gone
      return false;
    }
    *s = Fd(dup_from(old_kernel ? s_.pidfd : caller.get(), fd));
    if (s->get() < 0) {
      *r = fail(errno == EBADF ? EBADF : ENOTSOCK);
      return false;
    }
    if (!s_.valid(req_.id)) {
      *r = fail(EINTR);
      return false;
    }
    socklen_t len = sizeof *domain;
    if (getsockopt(s->get(), SOL_SOCKET, SO_DOMAIN, domain, &len) != 0) {
      *r = fail(errno);
      return false;
    }
    len = sizeof *type;
    if (getsockopt(s->get(), SOL_SOCKET, SO_TYPE, type, &len) != 0) {
      *r = fail(errno);
      return false;
    }
    return true;
  }

  static bool blocking(int fd, int flags) {
    if ((flags & MSG_DONTWAIT) != 0) return false;
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK) == 0;
  }

  static int64_t send_deadline(int fd) {
    timeval tv{};
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, &len) != 0) return 0;
    if (tv.tv_sec == 0 && tv.tv_usec == 0) return 0;
    return now_ms() + tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
  }

  // A unix address that names a path, replaced by one naming the resolved socket file
  // ("/proc/self/fd/N", N held in *target).
  bool resolve_unix(const NetVerdict& v, sockaddr_storage* a, socklen_t* len, Fd* target,
                    Result* r) {
    *target = Fd(open_beneath(v.unix_path, v.grants));
    if (target->get() < 0) {
      *r = fail(errno);
      return false;
    }
    struct stat st {};
    if (fstat(target->get(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
      *r = fail(ECONNREFUSED);  // what connecting to a file that is not a socket answers
      return false;
    }
    auto* un = reinterpret_cast<sockaddr_un*>(a);
    std::memset(a, 0, sizeof *a);
    un->sun_family = AF_UNIX;
    int n = std::snprintf(un->sun_path, sizeof un->sun_path, "/proc/self/fd/%d", target->get());
    *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + static_cast<size_t>(n) + 1);
    return true;
  }

  Result connect() {
    Result r;
    sockaddr_storage a;
    socklen_t len;
    if (!read_address(arg(1), arg(2), &a, &len, &r)) return r;
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    NetVerdict v = s_.rules.check(NetOp::connect, domain, a, len);
    if (!v.allowed) return refuse("connect", v);
    const auto* sa = reinterpret_cast<const sockaddr*>(&a);
    if (a.ss_family == AF_UNSPEC) return ::connect(s.get(), sa, len) == 0 ? Result{} : fail(errno);
    bool wait = blocking(s.get(), 0);
    if (domain == AF_UNIX) {
      Fd target;
      if (!resolve_unix(v, &a, &len, &target, &r)) return r;
      if (connect_now(s.get(), sa, len) == 0) return Result{};
      if (errno != EAGAIN || !wait) return fail(errno);
      auto p = std::make_unique<ConnectUnix>(std::move(s), std::move(target),
                                             *reinterpret_cast<sockaddr_un*>(&a), len);
      p->deadline_ms = send_deadline(p->fd());
      *later_ = std::move(p);
      return r;
    }
    if (connect_now(s.get(), sa, len) == 0) return Result{};
    if (errno != EINPROGRESS || !wait) return fail(errno);
    auto p = std::make_unique<ConnectInet>(std::move(s));
    Result now;
    short ev = POLLOUT;
    if (p->attempt(&now, &ev)) return now;  // loopback handshakes are usually done already
    p->deadline_ms = send_deadline(p->fd());
    *later_ = std::move(p);
    return r;
  }

  Result bind() {
    Result r;
    sockaddr_storage a;
    socklen_t len;
    if (!read_address(arg(1), arg(2), &a, &len, &r)) return r;
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    NetVerdict v = s_.rules.check(NetOp::bind, domain, a, len);
    if (!v.allowed) return refuse("bind", v);
    if (domain != AF_UNIX || v.unix_path.empty()) {
      return ::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), len) == 0 ? Result{}
                                                                              : fail(errno);
    }
    // Creating the socket file: on a thread of its own that may create sockets only beneath the
    // worker's writable paths, so the kernel checks the path it really creates (no race with a
    // plugin thread swapping a directory for a symlink).
    auto fd = std::make_shared<Fd>(std::move(s));
    std::vector<std::string> dirs = s_.rules.unix_grants().bind;
    State* st = &s_;
    std::string shown = v.shown;
    *confined_ = [fd, a, len, dirs, st, shown]() -> Result {
      std::string err = restrict_socket_creation(dirs);
      if (!err.empty() && err != "unsupported") {
        st->refuse("bind to " + shown + " refused: cannot confine the socket's creation (" + err +
                   ")");
        return fail(EPERM);
      }
      // "unsupported": no Landlock in this kernel; the worker's own file access is degraded
      // too, and the lexical check above is what remains.
      return ::bind(fd->get(), reinterpret_cast<const sockaddr*>(&a), len) == 0 ? Result{}
                                                                                : fail(errno);
    };
    return r;
  }

  Result listen() {
    Result r;
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return fail(errno);
    // An unbound inet socket would be bound to the wildcard address by listen itself, an unbound
    // unix socket to an abstract one.
    NetVerdict v = s_.rules.check(NetOp::listen, domain, a, len);
    if (!v.allowed) return refuse("listen", v);
    return ::listen(s.get(), static_cast<int>(arg(1))) == 0 ? Result{} : fail(errno);
  }

  // Checks the flags of a send.
  bool send_flags(const char* call, int flags, Result* r) {
    if ((flags & ~kSendFlags) == 0) return true;
    *r = refuse(std::string(call) + " with flags " + show_flags(flags & ~kSendFlags) +
                " refused by network policy loopback");
    return false;
  }

  // Reads and checks one destination; a unix path is resolved into m->target.
  bool destination(const char* call, int domain, uint64_t uaddr, uint64_t ulen, Msg* m, Result* r) {
    if (!read_address(uaddr, ulen, &m->addr, &m->alen, r)) return false;
    NetVerdict v = s_.rules.check(NetOp::send, domain, m->addr, m->alen);
    if (!v.allowed) {
      *r = refuse(call, v);
      return false;
    }
    m->named = true;
    m->dns = v.dns;
    if (domain == AF_UNIX && !v.unix_path.empty()) {
      return resolve_unix(v, &m->addr, &m->alen, &m->target, r);
    }
    return true;
  }

  // Copies the payload of `h` (worker addresses) into `data`; `budget` bounds the total.
  bool gather(const msghdr& h, std::vector<char>* data, size_t* budget, Result* r) {
    if (h.msg_iovlen > kMaxIov) {
      *r = fail(EMSGSIZE);
      return false;
    }
    std::vector<iovec> iov(h.msg_iovlen);
    if (!read(reinterpret_cast<uint64_t>(h.msg_iov), iov.data(), iov.size() * sizeof(iovec))) {
      *r = fail(EFAULT);
      return false;
    }
    size_t total = 0;
    for (const auto& v : iov) {
      if (v.iov_len > kMaxPayload) {
        *r = fail(EMSGSIZE);
        return false;
      }
      total += v.iov_len;
    }
    if (total > *budget) {
      *r = fail(EMSGSIZE);
      return false;
    }
    *budget -= total;
    data->resize(total);
    size_t at = 0;
    for (const auto& v : iov) {
      if (!read(reinterpret_cast<uint64_t>(v.iov_base), data->data() + at, v.iov_len)) {
        *r = fail(EFAULT);
        return false;
      }
      at += v.iov_len;
    }
    return true;
  }

  // Runs a send built from copies: at once when it does not have to wait.
  Result start_send(Fd s, std::vector<Msg> msgs, int flags, int type, uint64_t mmsg) {
    bool wait = blocking(s.get(), flags);
    auto p = std::make_unique<Send>(std::move(s), std::move(msgs), flags & ~MSG_DONTWAIT,
                                    type == SOCK_STREAM, !wait, mmsg, req_.pid);
    Result r;
    short ev = POLLOUT;
    if (p->attempt(&r, &ev)) return r;
    p->deadline_ms = send_deadline(p->fd());
    *later_ = std::move(p);
    return r;
  }

  Result sendto() {
    Result r;
    uint64_t len = arg(2);
    int flags = static_cast<int>(arg(3));
    if (!send_flags("sendto", flags, &r)) return r;
    if (len > kMaxPayload) return fail(EMSGSIZE);
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    std::vector<Msg> msgs(1);
    if (arg(4) != 0 && !destination("sendto", domain, arg(4), arg(5), &msgs[0], &r)) return r;
    msgs[0].data.resize(len);
    if (!read(arg(1), msgs[0].data.data(), len)) return fail(EFAULT);
    if (msgs[0].dns && !dns_ok("sendto", msgs[0], type, &r)) return r;
    return start_send(std::move(s), std::move(msgs), flags, type, 0);
  }

  // One msghdr of sendmsg/sendmmsg (worker addresses) into a Msg of copies.
  bool message(const char* call, int domain, const msghdr& h, size_t* budget, Msg* m, Result* r) {
    if (h.msg_controllen > 0) {
      *r = refuse(std::string(call) + " with control messages refused by network policy loopback");
      return false;
    }
    if (h.msg_name != nullptr && h.msg_namelen > 0 &&
        !destination(call, domain, reinterpret_cast<uint64_t>(h.msg_name), h.msg_namelen, m, r)) {
      return false;
    }
    if (!gather(h, &m->data, budget, r)) return false;
    if (!m->named) m->dns = peer_dns_;
    return !m->dns || dns_ok(call, *m, type_, r);
  }

  // A message to a resolver admitted for the name grants: only questions about granted names.
  bool dns_ok(const char* call, const Msg& m, int type, Result* r) {
    std::string why;
    if (s_.rules.dns_allowed(reinterpret_cast<const unsigned char*>(m.data.data()), m.data.size(),
                             type == SOCK_STREAM, &why)) {
      return true;
    }
    *r = refuse(std::string(call) + " to a DNS resolver refused by network policy loopback (" +
                why + ")");
    return false;
  }

  // Whether the connected peer of `fd` is a resolver admitted for the name grants (the messages
  // of a sendmsg/sendmmsg without a destination go there).
  void connected_peer(int fd, int type) {
    type_ = type;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    peer_dns_ = getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 &&
                s_.rules.is_grant_resolver(a, len);
  }

  Result sendmsg() {
    Result r;
    int flags = static_cast<int>(arg(2));
    if (!send_flags("sendmsg", flags, &r)) return r;
    msghdr h{};
    if (!read(arg(1), &h, sizeof h)) return fail(EFAULT);
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    connected_peer(s.get(), type);
    std::vector<Msg> msgs(1);
    size_t budget = kMaxPayload;
    if (!message("sendmsg", domain, h, &budget, &msgs[0], &r)) return r;
    return start_send(std::move(s), std::move(msgs), flags, type, 0);
  }

  Result sendmmsg() {
    Result r;
    int flags = static_cast<int>(arg(3));
    if (!send_flags("sendmmsg", flags, &r)) return r;
    unsigned n = static_cast<unsigned>(std::min<uint64_t>(arg(2), kMaxMmsg));
    if (n == 0) return Result{};
    std::vector<mmsghdr> v(n);
    if (!read(arg(1), v.data(), n * sizeof(mmsghdr))) return fail(EFAULT);
    Fd s;
    int domain = 0, type = 0;
    if (!dup_socket(static_cast<int>(arg(0)), &s, &domain, &type, &r)) return r;
    connected_peer(s.get(), type);
    std::vector<Msg> msgs(n);
    size_t budget = kMaxPayload;
    for (unsigned i = 0; i < n; ++i) {
      if (!message("sendmmsg", domain, v[i].msg_hdr, &budget, &msgs[i], &r)) return r;
    }
    return start_send(std::move(s), std::move(msgs), flags, type, arg(1));
  }

  State& s_;
  const Req& req_;
  bool refused_ = false;
  bool peer_dns_ = false;  // sendmsg/sendmmsg: the socket is connected to such a resolver
  int type_ = 0;           // sendmsg/sendmmsg: the socket's SO_TYPE
  std::unique_ptr<Pending>* later_ = nullptr;
  std::function<Result()>* confined_ = nullptr;
};

}  // namespace

int dup_from(int pidfd, int target_fd) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target_fd, 0));
}

NetGuard::NetGuard(int listener, int pidfd, int64_t uid, int64_t gid, NetRules rules,
                   std::function<void(const std::string&, const std::string&)> on_refusal)
    : s_(std::make_unique<State>()), uid_(uid), gid_(gid) {
  s_->listener = listener;
  s_->pidfd = pidfd;
  s_->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  s_->rules = std::move(rules);
  s_->on_refusal = std::move(on_refusal);
  thread_ = std::thread([this] { loop(); });
}

NetGuard::~NetGuard() {
  s_->stop = true;
  if (s_->wake >= 0) eventfd_write(s_->wake, 1);
  if (thread_.joinable()) thread_.join();
  close(s_->listener);
  close(s_->pidfd);
  if (s_->wake >= 0) close(s_->wake);
}

uint64_t NetGuard::allowed() const { return s_->allowed.load(); }
uint64_t NetGuard::refused() const { return s_->refused.load(); }
int NetGuard::pending() const { return s_->pending.load(); }

void NetGuard::loop() {
  State& s = *s_;
  std::string identity;  // why this thread could not become the worker ("" = it did, or no need)
  if (uid_ >= 0 && geteuid() == 0) {
    identity = become_worker(static_cast<uid_t>(uid_), static_cast<gid_t>(gid_));
  }
  seccomp_notif* req = nullptr;
  if (seccomp_notify_alloc(&req, nullptr) != 0) return;
  struct Job {
    std::thread t;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Job> jobs;
  auto reap = [&jobs](bool all) {
    for (auto it = jobs.begin(); it != jobs.end();) {
      if (all || it->done->load()) {
        it->t.join();
        it = jobs.erase(it);
      } else {
        ++it;
      }
    }
  };
  while (!s.stop.load()) {
    reap(false);
    pollfd p[2] = {{s.listener, POLLIN, 0}, {s.wake, POLLIN, 0}};
    int rc = ::poll(p, 2, 1000);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (p[1].revents != 0) break;
    if ((p[0].revents & POLLIN) == 0) break;  // POLLHUP: every thread of the worker is gone
    std::memset(req, 0, sizeof *req);
    if (seccomp_notify_receive(s.listener, req) != 0) continue;  // the caller died meanwhile
    Req r;
    r.id = req->id;
    r.pid = static_cast<pid_t>(req->pid);
    r.nr = req->data.nr;
    std::memcpy(r.args, req->data.args, sizeof r.args);
    if (!identity.empty()) {
      // Fail closed: never act for the worker with the host's credentials.
      s.refuse("network call refused: the guard could not take the worker's identity (" + identity +
               ")");
      s.respond(r.id, fail(EPERM));
      continue;
    }
    Result out;
    std::unique_ptr<Pending> later;
    std::function<Result()> confined;
    Handler h(s, r);
    h.run(&out, &later, &confined);
    if (!h.refused()) s.allowed++;
    if (!later && !confined) {
      s.respond(r.id, out);
      continue;
    }
    if (s.pending.load() >= kMaxPending) {
      s.refuse("network call refused: " + std::to_string(kMaxPending) +
               " calls of this worker are already waiting");
      s.respond(r.id, fail(EAGAIN));
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    s.pending++;
    try {
      // Inherits this thread's credentials (the worker's).
      std::thread t([&s, r, done, p = std::move(later), c = std::move(confined)]() mutable {
        if (p) {
          wait_and_answer(s, r, *p);
        } else {
          s.respond(r.id, c());
        }
        p.reset();
        s.pending--;
        done->store(true);
      });
      jobs.push_back({std::move(t), done});
    } catch (const std::system_error&) {
      s.pending--;
      s.respond(r.id, fail(EAGAIN));
    }
  }
  reap(true);
  seccomp_notify_free(req, nullptr);
}

}  // namespace jr::sandbox
