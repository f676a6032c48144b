#include "fixtures.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

extern char** environ;

namespace dctest {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int bound_socket(int type, int port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  int one = 1;
  if (type == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
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
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A port free for both UDP and TCP right now.
int free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int u = bound_socket(SOCK_DGRAM, 0);
    int port = port_of(u);
    int t = bound_socket(SOCK_STREAM, port);
    ::close(u);
    if (t >= 0) {
      ::close(t);
      return port;
    }
  }
  throw std::runtime_error("no free port");
}

// True when something answers a DNS query on 127.0.0.1:port within `ms`.
bool dns_answers(int port, int ms) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  // id 0x1234, RD, one question: "test" NS IN
  const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0,   1,   0, 0, 0, 0, 0,
                             0,    4,    't',  'e',  's', 't', 0, 0, 2, 0, 1};
  sockaddr_in a = loopback(port);
  ::sendto(fd, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  pollfd p{fd, POLLIN, 0};
  bool ok = ::poll(&p, 1, ms) == 1;
  if (ok) {
    unsigned char buf[512];
    ok = ::recv(fd, buf, sizeof buf, 0) > 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace

int dead_port() { return free_port(); }

Dnsmasq::Dnsmasq(const std::vector<std::string>& conf_lines) {
  char tmpl[] = "/tmp/dc-dnsmasq-XXXXXX";
  if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  {
    std::ofstream conf(dir_ + "/dnsmasq.conf");
    conf << "no-resolv\nno-hosts\nbind-interfaces\nlisten-address=127.0.0.1\ncache-size=0\n";
    for (const auto& line : conf_lines) conf << line << "\n";
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    std::vector<std::string> args = {"/usr/sbin/dnsmasq",
                                     "--keep-in-foreground",
                                     "--conf-file=" + dir_ + "/dnsmasq.conf",
                                     "--port=" + std::to_string(port_),
                                     "--pid-file=" + dir_ + "/pid",
                                     "--log-facility=" + dir_ + "/log"};
    if (::geteuid() == 0) {
      args.push_back("--user=root");
      args.push_back("--group=root");
    }
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    std::string out = dir_ + "/stderr";
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
      throw std::runtime_error("cannot start /usr/sbin/dnsmasq: " + std::string(strerror(rc)));
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;  // exited: port taken meanwhile, or bad config; retry / fail below
      }
      if (dns_answers(port_, 100)) return;
    }
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  std::ifstream err(dir_ + "/stderr");
  std::string text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  throw std::runtime_error("dnsmasq did not start: " + text);
}

Dnsmasq::~Dnsmasq() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> TestDns::auth_conf(const std::vector<std::string>& zones) {
  std::vector<std::string> c = {"auth-server=ns1.test,127.0.0.1"};
  for (const auto& z : zones) c.push_back("auth-zone=" + z);
  return c;
}

std::vector<std::string> TestDns::resolver_conf(
    const std::vector<std::string>& zones, int auth_port,
    const std::vector<std::pair<std::string, int>>& forwards) {
  std::vector<std::string> c;
  for (const auto& z : zones)
    c.push_back("server=/" + z + "/127.0.0.1#" + std::to_string(auth_port));
  for (const auto& [dom, port] : forwards) {
    c.push_back("server=/" + dom + "/127.0.0.1#" + std::to_string(port));
  }
  return c;
}

TestDns::TestDns(const std::vector<std::string>& auth_zones,
                 const std::vector<std::pair<std::string, int>>& forwards)
    : zones_(auth_zones),
      auth_(auth_conf(auth_zones)),
      resolver_(resolver_conf(auth_zones, auth_.port(), forwards)) {}

SilentUdp::SilentUdp() {
  fd_ = bound_socket(SOCK_DGRAM, 0);
  port_ = port_of(fd_);
}
SilentUdp::~SilentUdp() { ::close(fd_); }

ServfailUdp::ServfailUdp() {
  fd_ = bound_socket(SOCK_DGRAM, 0);
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

WhoisServer::WhoisServer(std::set<std::string> registered, int delay_ms)
    : registered_(std::move(registered)), delay_ms_(delay_ms) {
  listen_fd_ = bound_socket(SOCK_STREAM, 0);
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

void WhoisServer::serve(int fd) {
  int now = ++in_flight_;
  for (int prev = max_in_flight_.load();
       now > prev && !max_in_flight_.compare_exchange_weak(prev, now);) {
  }
  std::string line;
  char buf[512];
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until &&
         !stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) != 1) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  std::string name = line.substr(0, line.find_first_of("\r\n"));
  ++queries_;
  std::string reply;
  if (name.rfind("hang", 0) == 0) {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } else if (name.rfind("empty", 0) == 0) {
    reply = "";
  } else if (name.rfind("limit", 0) == 0) {
    reply = "Query limit exceeded; try again later\r\n";
  } else if (name.rfind("latin1", 0) == 0) {
    reply = "Domain Name: " + name + "\r\nRegistrant: Soci\xe9t\xe9 G\xe9n\xe9rale\r\n";
  } else if (name.rfind("cututf8", 0) == 0) {
    reply = "Domain Name: " + name + "\r\nRegistrant: ";
    reply.append(199 - reply.size(), 'x');  // bytes 0-198; byte 199 starts a 2-byte character
    reply += "\xc3\xa9t\xc3\xa9\r\n";
  } else if (name.rfind("nulbyte", 0) == 0) {
    reply = "Domain Name: " + name + "\r\nRemarks: a";
    reply.push_back('\0');
    reply += "b\r\n";
  } else if (registered_.count(name)) {
    reply = "Domain Name: " + name + "\r\nRegistrar: Loopback Registrar\r\nName Server: NONE\r\n";
  } else {
    reply = "No match for \"" + name + "\".\r\n>>> Last update of whois database <<<\r\n";
  }
  if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
  if (!reply.empty()) ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  --in_flight_;
  ::close(fd);
}

}  // namespace dctest
