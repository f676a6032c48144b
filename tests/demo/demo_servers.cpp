// demo_servers: the local servers scripts/demo.sh needs, all on 127.0.0.1 and free ports.
//   HTTP   static pages from --site (for the scan plugin)
//   DNS    a forwarding dnsmasq in front of an authoritative one (for domain_check): NS at each
//          --delegated name, NXDOMAIN for any other name in a --zone, REFUSED outside the zones
//   WHOIS  "No match" for every name except the --whois-registered ones (domain_check's
//          confirmation of NXDOMAIN names)
// When everything answers it writes <state-dir>/ports.env (KEY=VALUE lines, shell-sourceable,
// written atomically), then runs until SIGTERM/SIGINT/SIGHUP and stops its servers and dnsmasq
// children. It also stops when its parent dies (parent-death signal).
//
// Usage: demo_servers --site DIR --state-dir DIR --zone test [--zone ...]
//                     [--delegated a.test,b.test] [--whois-registered c.test,...]
#include <httplib.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "net_servers.hpp"

namespace {

struct Options {
  std::string site;
  std::string state_dir;
  std::vector<std::string> zones;
  std::vector<std::string> delegated;
  std::vector<std::string> whois_registered;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

const char* const kUsage =
    "usage: demo_servers --site DIR --state-dir DIR --zone ZONE [--zone ZONE...]\n"
    "                    [--delegated NAME,NAME] [--whois-registered NAME,NAME]\n";

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::invalid_argument("missing value for " + a);
    std::string v = argv[++i];
    if (a == "--site") {
      o.site = v;
    } else if (a == "--state-dir") {
      o.state_dir = v;
    } else if (a == "--zone") {
      o.zones.push_back(v);
    } else if (a == "--delegated") {
      for (auto& n : split_commas(v)) o.delegated.push_back(n);
    } else if (a == "--whois-registered") {
      for (auto& n : split_commas(v)) o.whois_registered.push_back(n);
    } else {
      throw std::invalid_argument("unknown option " + a);
    }
  }
  if (o.site.empty() || o.state_dir.empty() || o.zones.empty()) {
    throw std::invalid_argument("--site, --state-dir and --zone are required");
  }
  if (!std::filesystem::is_directory(o.site)) {
    throw std::invalid_argument("--site " + o.site + " is not a directory");
  }
  return o;
}

// Static pages from `site` on 127.0.0.1:<free port>, served by its own thread.
class SiteServer {
 public:
  explicit SiteServer(const std::string& site) {
    if (!server_.set_mount_point("/", site)) {
      throw std::runtime_error("http: cannot serve " + site);
    }
    // The old address of the home page, to show a redirect hop in a scan report.
    server_.Get("/old-home", [](const httplib::Request&, httplib::Response& res) {
      res.status = 301;
      res.set_header("Location", "/");
    });
    server_.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::printf("demo_servers: http %s %s -> %d\n", req.method.c_str(), req.path.c_str(),
                  res.status);
      std::fflush(stdout);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("http: cannot bind 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    for (int i = 0; i < 500 && !server_.is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ~SiteServer() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

void write_ports(const std::string& dir, int http, int dns, int whois) {
  std::string tmp = dir + "/ports.env.tmp";
  {
    std::ofstream f(tmp);
    f << "DEMO_SERVERS_PID=" << ::getpid() << "\n"
      << "DEMO_HTTP_PORT=" << http << "\n"
      << "DEMO_DNS_PORT=" << dns << "\n"
      << "DEMO_WHOIS_PORT=" << whois << "\n";
    if (!f) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, dir + "/ports.env");
}

}  // namespace

int main(int argc, char** argv) {
  // Die with the script that started us; the signal is handled like any other stop request.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  // Block the stop signals in every thread; the main thread waits for them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  if (::getppid() == 1) return 1;  // parent already gone

  Options opt;
  try {
    opt = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "demo_servers: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    std::filesystem::create_directories(opt.state_dir);
    std::filesystem::remove(opt.state_dir + "/ports.env");
    SiteServer http(opt.site);
    std::printf("demo_servers: HTTP  on 127.0.0.1:%d serving %s\n", http.port(), opt.site.c_str());
    jrtest::net::WhoisServer whois({opt.whois_registered.begin(), opt.whois_registered.end()}, 0,
                                   jrtest::net::WhoisServer::Names::plain);
    std::printf("demo_servers: WHOIS on 127.0.0.1:%d\n", whois.port());
    jrtest::net::LoopbackDns dns(opt.zones, {}, opt.delegated, opt.state_dir);
    std::printf("demo_servers: DNS   on 127.0.0.1:%d (dnsmasq pair; logs in %s)\n", dns.port(),
                opt.state_dir.c_str());
    write_ports(opt.state_dir, http.port(), dns.port(), whois.port());
    std::printf("demo_servers: ready (%s/ports.env)\n", opt.state_dir.c_str());
    std::fflush(stdout);

    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::printf("demo_servers: %s, stopping (%d WHOIS queries served)\n", strsignal(sig),
                whois.queries());
    std::fflush(stdout);
    std::filesystem::remove(opt.state_dir + "/ports.env");
    // Destructors stop dnsmasq, WHOIS and HTTP, in that order.
  } catch (const std::exception& e) {
    std::cerr << "demo_servers: " << e.what() << "\n";
    return 1;
  }
  std::printf("demo_servers: stopped\n");
  return 0;
}
