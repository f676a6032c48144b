#include "pgbouncer.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "db_auth.hpp"

namespace jrtest {
namespace {

const char* kBinary = "/usr/sbin/pgbouncer";

std::map<std::string, std::string> parse_url(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err ? err : "unknown error";
    PQfreemem(err);
    throw std::runtime_error("cannot parse the backend URL: " + why);
  }
  std::map<std::string, std::string> out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// A value for the userlist or a connection string: double quotes doubled.
std::string auth_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

}  // namespace

bool PgBouncer::available() { return access(kBinary, X_OK) == 0; }

PgBouncer::PgBouncer(const std::string& backend_url, int pool_size) {
  auto b = parse_url(backend_url);
  for (const char* k : {"dbname", "host", "port", "user", "password"}) {
    if (!b.count(k)) throw std::runtime_error(std::string("backend URL without ") + k);
  }
  port_ = free_port();
  const std::string d = dir_.path();
  {
    std::ofstream ini(d + "/pgbouncer.ini");
    ini << "[databases]\n"
        << b["dbname"] << " = host=" << b["host"] << " port=" << b["port"]
        << " dbname=" << b["dbname"] << "\n"
        << "[pgbouncer]\n"
        << "listen_addr = 127.0.0.1\n"
        << "listen_port = " << port_ << "\n"
        << "unix_socket_dir =\n"
        << "auth_type = scram-sha-256\n"
        << "auth_file = " << d << "/userlist.txt\n"
        << "pool_mode = transaction\n"
        << "default_pool_size = " << pool_size << "\n"
        << "max_client_conn = 500\n"
        << "server_reset_query =\n"
        << "ignore_startup_parameters = extra_float_digits\n"
        << "logfile = " << d << "/pgbouncer.log\n"
        << "pidfile = " << d << "/pgbouncer.pid\n";
    std::ofstream users(d + "/userlist.txt");
    users << auth_quoted(b["user"]) << " " << auth_quoted(b["password"]) << "\n";
  }
  // PgBouncer refuses to run as root: as root, it is started as postgres (-u), which must read
  // its files and write its log.
  bool as_root = geteuid() == 0;
  if (as_root) {
    struct passwd* pw = getpwnam("postgres");
    if (pw == nullptr) throw std::runtime_error("no postgres user to run pgbouncer as");
    for (const std::string& f : {d, d + "/pgbouncer.ini", d + "/userlist.txt"}) {
      if (chown(f.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        throw std::runtime_error("cannot chown " + f + " to postgres");
      }
    }
  }
  chmod((d + "/userlist.txt").c_str(), 0600);
  pid_ = fork();
  if (pid_ == 0) {
    int out = open((d + "/stdout.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    std::string ini = d + "/pgbouncer.ini";
    if (as_root) {
      execl(kBinary, kBinary, "-u", "postgres", ini.c_str(), static_cast<char*>(nullptr));
    } else {
      execl(kBinary, kBinary, ini.c_str(), static_cast<char*>(nullptr));
    }
    _exit(127);
  }
  url_ = "postgresql://" + jr::dbauth::url_encode(b["user"]) + ":" +
         jr::dbauth::url_encode(b["password"]) + "@127.0.0.1:" + std::to_string(port_) + "/" +
         jr::dbauth::url_encode(b["dbname"]);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  std::string last;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("pgbouncer exited at start: " + log());
    }
    try {
      pqxx::connection c(url_);
      pqxx::nontransaction tx(c);
      tx.exec("SELECT 1");
      return;
    } catch (const std::exception& e) {
      last = e.what();
    }
    if (std::chrono::steady_clock::now() > until) {
      throw std::runtime_error("pgbouncer did not accept connections: " + last + "\n" + log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

PgBouncer::~PgBouncer() {
  if (pid_ <= 0) return;
  kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
}

std::string PgBouncer::log() const {
  std::string out;
  for (const char* f : {"/stdout.log", "/pgbouncer.log"}) {
    std::ifstream in(dir_.path() + f);
    std::stringstream ss;
    ss << in.rdbuf();
    out += ss.str();
  }
  return out;
}

}  // namespace jrtest
