#include "net_servers.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace jrtest::net {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A socket bound to 127.0.0.1:port (0 = any free port), or -1 if the port is taken.
int bound_socket(int type, int port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  if (type == SOCK_STREAM) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// True when something answers a DNS query ("." NS) on 127.0.0.1:port within `ms`.
bool dns_answers(int port, int ms) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const unsigned char query[] = {0x44, 0x45, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1};
  sockaddr_in a = loopback(port);
  ::sendto(fd, query, sizeof query, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  pollfd p{fd, POLLIN, 0};
  bool ok = ::poll(&p, 1, ms) == 1;
  if (ok) {
    unsigned char buf[512];
    ok = ::recv(fd, buf, sizeof buf, 0) > 0;
  }
  ::close(fd);
  return ok;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

int free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int u = bound_socket(SOCK_DGRAM, 0);
    if (u < 0) continue;
    int port = port_of(u);
    int t = bound_socket(SOCK_STREAM, port);
    ::close(u);
    if (t >= 0) {
      ::close(t);
      return port;
    }
  }
  throw std::runtime_error("no free loopback port");
}

Dnsmasq::Dnsmasq(const std::vector<std::string>& conf_lines, const std::string& dir_given,
                 const std::string& name) {
  std::string dir = dir_given;
  if (dir.empty()) {
    char tmpl[] = "/tmp/jr-dnsmasq-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir = own_dir_ = tmpl;
  }
  const std::string conf_path = dir + "/" + name + ".conf";
  const std::string log_path = dir + "/" + name + ".log";
  {
    std::ofstream f(conf_path);
    f << "no-resolv\nno-hosts\nno-poll\nbind-interfaces\nlisten-address=127.0.0.1\n"
      << "cache-size=0\n";
    for (const auto& line : conf_lines) f << line << "\n";
    if (!f) throw std::runtime_error("cannot write " + conf_path);
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    std::vector<std::string> args = {"/usr/sbin/dnsmasq",
                                     "--keep-in-foreground",
                                     "--conf-file=" + conf_path,
                                     "--port=" + std::to_string(port_),
                                     "--pid-file=" + dir + "/" + name + ".pid",
                                     "--log-facility=" + log_path};
    if (::geteuid() == 0) {  // stay root instead of switching to a user that cannot read `dir`
      args.push_back("--user=root");
      args.push_back("--group=root");
    }
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    int out = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) throw std::runtime_error("cannot open " + log_path);
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls until exec. dnsmasq dies with us, even on SIGKILL.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      sigset_t none;  // the caller may block stop signals; exec keeps the mask
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    pid_ = pid;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // exited: port taken meanwhile, or a bad config; try again / fail below
        break;
      }
      if (dns_answers(port_, 100)) return;
    }
    stop();
  }
  std::string log = read_file(log_path);
  std::error_code ec;
  if (!own_dir_.empty()) std::filesystem::remove_all(own_dir_, ec);
  throw std::runtime_error("dnsmasq (" + name + ") did not start; " + log_path + ":\n" + log);
}

void Dnsmasq::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (::waitpid(pid_, &status, WNOHANG) == 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
  }
  pid_ = -1;
}

Dnsmasq::~Dnsmasq() {
  stop();
  std::error_code ec;
  if (!own_dir_.empty()) std::filesystem::remove_all(own_dir_, ec);
}

namespace {

std::vector<std::string> auth_conf(const std::vector<std::string>& zones,
                                   const std::vector<std::string>& delegated) {
  std::vector<std::string> c = {"auth-server=ns1." + zones.at(0) + ",127.0.0.1"};
  for (const auto& z : zones) c.push_back("auth-zone=" + z);
  for (const auto& d : delegated) c.push_back("auth-zone=" + d);
  return c;
}

std::vector<std::string> resolver_conf(const std::vector<std::string>& zones, int auth_port,
                                       const std::vector<std::pair<std::string, int>>& forwards) {
  std::vector<std::string> c;
  for (const auto& z : zones) {
    c.push_back("server=/" + z + "/127.0.0.1#" + std::to_string(auth_port));
  }
  for (const auto& [domain, port] : forwards) {
    c.push_back("server=/" + domain + "/127.0.0.1#" + std::to_string(port));
  }
  return c;
}

}  // namespace

LoopbackDns::LoopbackDns(const std::vector<std::string>& zones,
                         const std::vector<std::pair<std::string, int>>& forwards,
                         const std::vector<std::string>& delegated, const std::string& dir)
    : auth_(auth_conf(zones, delegated), dir, "dnsmasq-auth"),
      resolver_(resolver_conf(zones, auth_.port(), forwards), dir, "dnsmasq-resolver") {}

SilentUdp::SilentUdp() {
  fd_ = bound_socket(SOCK_DGRAM, 0);
  if (fd_ < 0) throw std::runtime_error("cannot bind a UDP socket on 127.0.0.1");
  port_ = port_of(fd_);
}
SilentUdp::~SilentUdp() { ::close(fd_); }

ServfailUdp::ServfailUdp() {
  fd_ = bound_socket(SOCK_DGRAM, 0);
  if (fd_ < 0) throw std::runtime_error("cannot bind a UDP socket on 127.0.0.1");
  port_ = port_of(fd_);
  thread_ = std::thread([this] {
    unsigned char buf[1500];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      sockaddr_in from{};
      socklen_t len = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 12) continue;
      buf[2] = static_cast<unsigned char>(buf[2] | 0x80);               // QR
      buf[3] = static_cast<unsigned char>((buf[3] & 0xf0) | 2 | 0x80);  // RA, RCODE=SERVFAIL
      ::sendto(fd_, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  });
}
ServfailUdp::~ServfailUdp() {
  stop_ = true;
  thread_.join();
  ::close(fd_);
}

WhoisServer::WhoisServer(std::set<std::string> registered, int delay_ms, Names names)
    : registered_(std::move(registered)), delay_ms_(delay_ms), names_(names) {
  listen_fd_ = bound_socket(SOCK_STREAM, 0);
  if (listen_fd_ < 0) throw std::runtime_error("whois: cannot bind 127.0.0.1");
  port_ = port_of(listen_fd_);
  ::listen(listen_fd_, 128);
  accept_thread_ = std::thread([this] {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      conns_.emplace_back([this, fd] { serve(fd); });
    }
  });
}

WhoisServer::~WhoisServer() {
  stop_ = true;
  accept_thread_.join();
  std::vector<std::thread> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns.swap(conns_);
  }
  for (auto& t : conns) t.join();
  ::close(listen_fd_);
}

std::string WhoisServer::reply_to(const std::string& name) const {
  auto starts = [&](const char* word) {
    return names_ == Names::scripted && name.rfind(word, 0) == 0;
  };
  if (starts("empty")) return "";
  if (starts("limit")) return "Query limit exceeded; try again later\r\n";
  if (starts("latin1")) {
    return "Domain Name: " + name + "\r\nRegistrant: Soci\xe9t\xe9 G\xe9n\xe9rale\r\n";
  }
  if (starts("cututf8")) {
    std::string r = "Domain Name: " + name + "\r\nRegistrant: ";
    r.append(199 - r.size(), 'x');  // bytes 0-198; byte 199 starts a 2-byte character
    return r + "\xc3\xa9t\xc3\xa9\r\n";
  }
  if (starts("nulbyte")) {
    std::string r = "Domain Name: " + name + "\r\nRemarks: a";
    r.push_back('\0');
    return r + "b\r\n";
  }
  if (registered_.count(name)) {
    return "Domain Name: " + name + "\r\nRegistrar: Loopback Registrar\r\nName Server: NONE\r\n";
  }
  return "No match for \"" + name + "\".\r\n>>> Last update of whois database <<<\r\n";
}

void WhoisServer::serve(int fd) {
  int now = ++in_flight_;
  for (int prev = max_in_flight_.load();
       now > prev && !max_in_flight_.compare_exchange_weak(prev, now);) {
  }
  // RFC 3912: one line with the query, then the server replies and closes.
  std::string line;
  char buf[512];
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (line.find('\n') == std::string::npos && line.size() < 4096 &&
         std::chrono::steady_clock::now() < until && !stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) != 1) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  std::string name = line.substr(0, line.find_first_of("\r\n"));
  ++queries_;
  if (names_ == Names::scripted && name.rfind("hang", 0) == 0) {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } else {
    std::string reply = reply_to(name);
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    if (!reply.empty()) ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  }
  --in_flight_;
  ::close(fd);
}

}  // namespace jrtest::net
