// A remote PostgreSQL under the default sandbox (issue 20): the shipped contest_submit and
// dataset_parse, sandboxed with network = "loopback", work against a server on 192.0.2.10 (not
// loopback) because the host grants each plugin the endpoints of its own database_url; a connect
// from a plugin with the same grants to any other address or port is refused and logged with the
// plugin, the address and the job id.
//
// No packet leaves the machine: main() re-executes this binary in a network and mount namespace
// of its own (`unshare --net --mount`), where only `lo` exists; the test gives it the
// documentation addresses 192.0.2.10 and 192.0.2.11 and starts its own PostgreSQL listening on
// 192.0.2.10. A host name (db.test) comes from an /etc/hosts bind-mounted in that mount
// namespace only.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "../plugins/dataset_parse/gen.hpp"
#include "db_auth.hpp"
#include "harness.hpp"
#include "managed_db.hpp"
#include "net_guard.hpp"

namespace fs = std::filesystem;
using jrtest::PgCluster;
using nlohmann::json;

namespace {

constexpr const char* kNsEnv = "JR_REMOTE_DB_TEST_NS";
constexpr const char* kDbAddr = "192.0.2.10";
constexpr const char* kOtherAddr = "192.0.2.11";
constexpr const char* kDnsAddr = "192.0.2.53";  // the namespace's resolver (its resolv.conf)

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

// The PostgreSQL of this test: a managed cluster (scram-sha-256, the runner's role not a
// superuser) that also listens on 192.0.2.10:5432 and accepts passwords over TCP from
// 192.0.2.0/24.
struct RemoteDb {
  jrtest::TempDir dir;
  std::unique_ptr<jr::ManagedDb> db;
  std::string password;  // the runner's role's

  RemoteDb() {
    jr::ManagedDbOptions o;
    o.data_dir = dir.path() + "/pg";
    o.settings = {{"fsync", "off"}, {"listen_addresses", std::string("'") + kDbAddr + "'"}};
    db = std::make_unique<jr::ManagedDb>(o);
    db->start();
    std::ofstream(o.data_dir + "/pg_hba.conf", std::ios::app)
        << "host all all 192.0.2.0/24 scram-sha-256\n";
    PgCluster::exec(db->superuser_url_for("postgres"), "SELECT pg_reload_conf()");
    password = jr::dbauth::parse_conninfo(db->url_with_password_for("postgres"))["password"];
  }
  ~RemoteDb() {
    try {
      db->stop();
    } catch (...) {
    }
  }
  // A new database of the runner's role, as a TCP URL naming `host`.
  std::string create(const std::string& name, const std::string& host) {
    PgCluster::exec(db->url_for("postgres"), "CREATE DATABASE " + name);
    return "postgresql://jobrunner:" + password + "@" + host + ":5432/" + name;
  }
};

RemoteDb* g_db = nullptr;

// A TCP listener on addr:port that counts the connections it accepted (none may arrive).
class Listener {
 public:
  Listener(const char* addr, int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, addr, &a.sin_addr);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd_, 16) != 0) {
      ADD_FAILURE() << "listen on " << addr << ":" << port << ": " << std::strerror(errno);
    }
  }
  ~Listener() { close(fd_); }
  int accepted() {
    for (;;) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return n_;
      ++n_;
      close(c);
    }
  }

 private:
  int fd_ = -1;
  int n_ = 0;
};

// A DNS server on 192.0.2.53:53 (UDP) that answers svc.test with 192.0.2.10 (A), everything
// else with NXDOMAIN, and records every question name it was asked.
class DnsServer {
 public:
  DnsServer() {
    fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(53);
    inet_pton(AF_INET, kDnsAddr, &a.sin_addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "bind 192.0.2.53:53: " << std::strerror(errno);
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~DnsServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::set<std::string> asked() {
    std::lock_guard<std::mutex> lock(mu_);
    return asked_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      unsigned char q[512];
      sockaddr_in from{};
      socklen_t flen = sizeof from;
      ssize_t n = recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      if (n < 12) continue;
      size_t at = 12;
      std::string name;
      while (at < static_cast<size_t>(n) && q[at] != 0 && at + q[at] < static_cast<size_t>(n)) {
        name += (name.empty() ? "" : ".") + std::string(reinterpret_cast<char*>(q + at + 1), q[at]);
        at += q[at] + 1;
      }
      at += 1;
      if (at + 4 > static_cast<size_t>(n)) continue;
      int type = (q[at] << 8) | q[at + 1];
      at += 4;
      {
        std::lock_guard<std::mutex> lock(mu_);
        asked_.insert(name);
      }
      std::vector<unsigned char> r(q, q + at);  // header and question
      r[2] = 0x81;
      bool known = name == "svc.test";
      r[3] = known ? 0x80 : 0x83;  // RA; NOERROR or NXDOMAIN
      r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
      if (known && type == 1) {
        r[7] = 1;
        unsigned char ans[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 10};
        r.insert(r.end(), ans, ans + sizeof ans);
      }
      sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::set<std::string> asked_;
  std::thread thread_;
};

class RemoteDbTest : public ::testing::Test {
 protected:
  void start(const std::string& url, const std::vector<std::string>& sos, const std::string& toml) {
    url_ = url;
    env_ = {{"DATABASE_URL", url_}, {"WORKER_STORAGE_ROOT", storage_.path()}};
    auto r = jrtest::run_runner({"migrate"}, env_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const auto& so : sos) {
      fs::copy_file(so, plugins_.path() + "/" + fs::path(so).filename().string());
    }
    std::string cfg = dir_.path() + "/runner.toml";
    std::ofstream(cfg) << toml;
    runner_ = std::make_unique<jrtest::RunnerProcess>(
        std::vector<std::string>{"--plugins", plugins_.path(), "--concurrency", "4", "--config",
                                 cfg},
        env_);
  }
  int64_t enqueue(const std::string& kind, const json& payload) {
    auto r = jrtest::run_runner({"enqueue", kind, "--payload", payload.dump()}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.empty() ? -1 : std::stoll(r.out);
  }
  json finished(int64_t id) {
    std::string sql =
        "SELECT json_build_object('state', state, 'result', result, 'errors', "
        "errors)::text FROM jr_jobs_done WHERE id = " +
        std::to_string(id);
    std::string row;
    jrtest::wait_until(
        [&] {
          row = PgCluster::query_one(url_, sql);
          return !row.empty();
        },
        std::chrono::seconds(60));
    return row.empty() ? json::object() : json::parse(row);
  }
  // The plugin's own role on the remote database, made by the runner (jr_plugin_roles).
  std::string plugin_url(const std::string& plugin) {
    return jrtest::plugin_database(url_, plugin).url;
  }
  void stop() {
    runner_->signal(SIGTERM);
    EXPECT_EQ(runner_->wait(std::chrono::seconds(45)), 0) << runner_->log();
  }
  static std::string so(const std::string& name) {
    return jrtest::plugin_dir() + "/libjr_" + name + ".so";
  }
  static std::string hostile_so() {
    return jrtest::test_plugin_dir() + "/hostile_netgrant/libjr_h_netgrant.so";
  }

  jrtest::TempDir dir_, plugins_, storage_;
  std::string url_;
  std::map<std::string, std::string> env_;
  std::unique_ptr<jrtest::RunnerProcess> runner_;
};

// The operator grants the test plugin what its manifest asks (a test plugin has no built-in
// approval); the shipped plugins need nothing (their built-in approvals).
constexpr const char* kGrants =
    "[plugins.hostile_netgrant]\ndatabase = true\n"
    "[plugins.hostile_netgrant.sandbox]\nnetwork = \"loopback\"\n";

TEST_F(RemoteDbTest, ShippedPluginsWorkAgainstARemoteServerAndNothingElseIsReachable) {
  Listener other_port(kDbAddr, 5433), other_addr(kOtherAddr, 5432);
  start(g_db->create("remote_ip", kDbAddr),
        {so("contest_submit"), so("dataset_parse"), hostile_so(), so("echo")}, kGrants);

  // contest_submit: judged through its own role on 192.0.2.10, from its sandbox.
  int64_t judged = enqueue("contest_submit", {{"submission_id", "s-1"},
                                              {"contest_id", 1},
                                              {"team_id", "red"},
                                              {"problem_id", "A"},
                                              {"answer", "42"},
                                              {"submitted_at", "2024-05-01T10:47:00Z"}});
  json j = finished(judged);
  ASSERT_EQ(j.value("state", ""), "completed") << j.dump() << "\n" << runner_->log();
  EXPECT_EQ(j["result"]["submission_id"], "s-1");

  // dataset_parse: its tables appear (init connected), then a dataset is parsed into them.
  std::string dp = plugin_url("dataset_parse");
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return PgCluster::query_one(dp, "SELECT to_regclass('datasets') IS NOT NULL") == "t"; },
      std::chrono::seconds(30)))
      << runner_->log();
  fs::create_directories(storage_.path() + "/us");
  dptest::write_file(storage_.path() + "/us/yob2021.txt", dptest::make_ssa_yob(500));
  PgCluster::exec(dp,
                  "INSERT INTO datasets (id, country_code, storage_path) VALUES "
                  "('us-2021', 'US', 'us/yob2021.txt')");
  json parsed = finished(enqueue("parse_dataset", {{"dataset_id", "us-2021"}}));
  ASSERT_EQ(parsed.value("state", ""), "completed") << parsed.dump() << "\n" << runner_->log();
  EXPECT_EQ(PgCluster::query_one(dp, "SELECT count(*) FROM names WHERE dataset_id = 'us-2021'"),
            "500");

  // The same grants in a plugin that tries elsewhere: its database server is reachable, another
  // port of that address, another address of the namespace and a UDP datagram there are not.
  auto errno_of = [&](const std::string& cmd, int64_t* id) {
    *id = enqueue("hostile_netgrant", {{"arg", cmd}});
    json r = finished(*id);
    EXPECT_EQ(r.value("state", ""), "completed") << cmd << ": " << r.dump();
    return r["result"].value("errno", -1);
  };
  int64_t ok_id = 0, port_id = 0, addr_id = 0, udp_id = 0;
  EXPECT_EQ(errno_of(std::string("tcp ") + kDbAddr + " 5432", &ok_id), 0);
  EXPECT_EQ(errno_of(std::string("tcp ") + kDbAddr + " 5433", &port_id), EPERM);
  EXPECT_EQ(errno_of(std::string("tcp ") + kOtherAddr + " 5432", &addr_id), EPERM);
  EXPECT_EQ(errno_of(std::string("udp ") + kOtherAddr + " 53", &udp_id), EPERM);
  EXPECT_EQ(other_port.accepted(), 0);
  EXPECT_EQ(other_addr.accepted(), 0);
  stop();

  // Each refusal is logged with the plugin, the address and the job.
  std::string log = runner_->log();
  auto logged = [&log](const std::string& address, int64_t job) {
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
      json l = json::parse(line, nullptr, false);
      if (l.is_object() && l.value("msg", "") == "sandbox: network call refused" &&
          l.value("plugin", "") == "hostile_netgrant" && l.value("address", "") == address &&
          l.value("job_id", int64_t{0}) == job) {
        return true;
      }
    }
    return false;
  };
  EXPECT_TRUE(logged(std::string(kDbAddr) + ":5433", port_id)) << log;
  EXPECT_TRUE(logged(std::string(kOtherAddr) + ":5432", addr_id)) << log;
  EXPECT_TRUE(logged(std::string(kOtherAddr) + ":53", udp_id)) << log;
  EXPECT_EQ(log.find("\"plugin\":\"contest_submit\",\"pid\""), std::string::npos) << log;
}

TEST_F(RemoteDbTest, AServerByNameAndPluginsCheckShowsTheGrants) {
  start(g_db->create("remote_name", "db.test"), {so("contest_submit"), so("echo")}, "");
  int64_t judged = enqueue("contest_submit", {{"submission_id", "s-2"},
                                              {"contest_id", 1},
                                              {"team_id", "blue"},
                                              {"problem_id", "A"},
                                              {"answer", "42"},
                                              {"submitted_at", "2024-05-01T10:47:00Z"}});
  json j = finished(judged);
  ASSERT_EQ(j.value("state", ""), "completed") << j.dump() << "\n" << runner_->log();
  stop();

  auto r = jrtest::run_runner({"plugins", "check", so("contest_submit"), "--json"}, env_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json doc = json::parse(r.out);
  bool found = false;
  for (const auto& g : doc["network_grants"]) {
    if (g.value("peer", "") == "db.test:5432" && g.value("source", "") == "database_url") {
      EXPECT_EQ(g["resolves_to"], json::array({kDbAddr})) << g.dump();
      found = true;
    }
  }
  EXPECT_TRUE(found) << doc["network_grants"].dump();
  auto text = jrtest::run_runner({"plugins", "check", so("contest_submit")}, env_);
  EXPECT_NE(text.out.find("network    db.test:5432  (database_url)  resolves to [\"192.0.2.10\"]"),
            std::string::npos)
      << text.out;
}

// A grant by name brings DNS with it: to the resolver of resolv.conf only, about the granted
// name only (glibc's queries go through the guard as sendmmsg on a connected UDP socket).
TEST_F(RemoteDbTest, DnsGoesOnlyToTheResolverAndOnlyAboutGrantedNames) {
  DnsServer dns;
  start(g_db->create("remote_dns", kDbAddr), {hostile_so(), so("echo")},
        std::string(kGrants) + "connect = [\"svc.test:5432\"]\n");
  auto run = [&](const std::string& cmd, int64_t* id) {
    *id = enqueue("hostile_netgrant", {{"arg", cmd}});
    json r = finished(*id);
    EXPECT_EQ(r.value("state", ""), "completed") << cmd << ": " << r.dump() << runner_->log();
    return r["result"];
  };
  int64_t ok_id = 0, leak_id = 0, port_id = 0;
  json ok = run("dns svc.test", &ok_id);
  EXPECT_EQ(ok.value("errno", -1), 0) << ok.dump() << runner_->log();
  EXPECT_EQ(ok.value("addr", ""), kDbAddr);
  json leak = run("dns leak-secret.example", &leak_id);
  EXPECT_NE(leak.value("errno", 0), 0) << leak.dump();
  EXPECT_EQ(run(std::string("udp ") + kDnsAddr + " 5353", &port_id).value("errno", -1), EPERM);
  stop();
  std::set<std::string> asked = dns.asked();
  EXPECT_TRUE(asked.count("svc.test")) << runner_->log();
  EXPECT_FALSE(asked.count("leak-secret.example")) << "the query reached the resolver";
  std::string log = runner_->log();
  EXPECT_NE(log.find("a DNS query about \\\"leak-secret.example\\\", which no grant names"),
            std::string::npos)
      << log;
}

// A name grant follows the name: once db.test points elsewhere, the new address is admitted
// (re-resolved) and the old one is not.
TEST(NetRulesByName, ANameIsResolvedAgainWhenItMoves) {
  using jr::sandbox::NetOp;
  using jr::sandbox::NetRules;
  NetRules r =
      NetRules::for_worker({{"policy", json::object()},
                            {"config", {{"database_url", "postgresql://u:p@db.test:5432/x"}}}});
  auto allowed = [&r](const char* ip) {
    sockaddr_storage a{};
    auto* in = reinterpret_cast<sockaddr_in*>(&a);
    in->sin_family = AF_INET;
    in->sin_port = htons(5432);
    inet_pton(AF_INET, ip, &in->sin_addr);
    return r.check(NetOp::connect, AF_INET, a, sizeof(sockaddr_in)).allowed;
  };
  EXPECT_TRUE(allowed(kDbAddr));
  EXPECT_FALSE(allowed(kOtherAddr));
  std::ofstream("/etc/hosts", std::ios::trunc) << "127.0.0.1 localhost\n"
                                               << kOtherAddr << " db.test\n";
  EXPECT_TRUE(jrtest::wait_until([&] { return allowed(kOtherAddr); }, std::chrono::seconds(5)));
  EXPECT_FALSE(allowed(kDbAddr));
  std::ofstream("/etc/hosts", std::ios::trunc) << "127.0.0.1 localhost\n"
                                               << kDbAddr << " db.test\n";
  EXPECT_TRUE(jrtest::wait_until([&] { return allowed(kDbAddr); }, std::chrono::seconds(5)));
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv(kNsEnv) == nullptr) {
    // Not yet in our own namespaces: re-execute there (never touch the host's interfaces).
    setenv(kNsEnv, "1", 1);
    std::vector<char*> args = {const_cast<char*>("unshare"), const_cast<char*>("--net"),
                               const_cast<char*>("--mount"), const_cast<char*>("--")};
    std::string self = fs::read_symlink("/proc/self/exe").string();
    args.push_back(self.data());
    for (int i = 1; i < argc; ++i) args.push_back(argv[i]);
    args.push_back(nullptr);
    execvp("unshare", args.data());
    std::fprintf(stderr, "cannot run unshare: %s\n", std::strerror(errno));
    return 1;
  }
  if (sh("ip link set lo up") != 0 ||
      sh(std::string("ip addr add ") + kDbAddr + "/32 dev lo") != 0 ||
      sh(std::string("ip addr add ") + kOtherAddr + "/32 dev lo") != 0) {
    std::fprintf(stderr, "cannot set up the test's network namespace\n");
    return 1;
  }
  if (sh(std::string("ip addr add ") + kDnsAddr + "/32 dev lo") != 0) return 1;
  // db.test -> 192.0.2.10, in this mount namespace only.
  char hosts[] = "/tmp/jr-remote-db-hosts-XXXXXX";
  int fd = mkstemp(hosts);
  if (fd < 0) return 1;
  close(fd);
  std::ofstream(hosts) << "127.0.0.1 localhost\n" << kDbAddr << " db.test\n";
  chmod(hosts, 0644);
  // The resolver: 192.0.2.53 (DnsServer), in this mount namespace only.
  char resolv[] = "/tmp/jr-remote-db-resolv-XXXXXX";
  fd = mkstemp(resolv);
  if (fd < 0) return 1;
  close(fd);
  std::ofstream(resolv) << "nameserver " << kDnsAddr << "\noptions timeout:1 attempts:1\n";
  chmod(resolv, 0644);
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount(hosts, "/etc/hosts", nullptr, MS_BIND, nullptr) != 0 ||
      mount(resolv, "/etc/resolv.conf", nullptr, MS_BIND, nullptr) != 0) {
    std::fprintf(stderr, "cannot bind-mount /etc/hosts: %s\n", std::strerror(errno));
    return 1;
  }
  ::testing::InitGoogleTest(&argc, argv);
  RemoteDb db;
  g_db = &db;
  int rc = RUN_ALL_TESTS();
  g_db = nullptr;
  unlink(hosts);
  unlink(resolv);
  return rc;
}
