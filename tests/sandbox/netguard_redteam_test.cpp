// Red team, through the real runner (RedTeamFixture: the healthy echo plugin beside it, healthy
// jobs complete, no lease_lost, clean SIGTERM exit, no worker left): the loopback plugin
// hostile_netguard tries to make the runner's network guard act with the runner's (root's)
// rights, and to outlive a killed runner.
//
// The runner of the first test runs in a network namespace this test makes (lo up, and
// 192.0.2.1/32 on lo: TEST-NET-1, which exists only in there), so a route the guard might add,
// or a datagram it might send to a non-loopback address, stays inside it and can be observed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>

#include "redteam.hpp"

namespace {

std::string netguard_so() {
  return jrtest::test_plugin_dir() + "/hostile_netguard/libjr_h_netguard.so";
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  pclose(p);
  return out;
}

// A network namespace of the test. The calling thread enters it only inside `inside()`
// (processes forked there stay in it).
class TestNetns {
 public:
  TestNetns() {
    host_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (host_ < 0 || unshare(CLONE_NEWNET) != 0) {
      error_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    ns_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (std::system("ip link set lo up && ip addr add 192.0.2.1/32 dev lo") != 0) {
      error_ = "cannot set up lo in the test's network namespace";
    }
    if (setns(host_, CLONE_NEWNET) != 0) std::abort();  // never leave the thread in there
  }
  ~TestNetns() {
    if (ns_ >= 0) close(ns_);
    if (host_ >= 0) close(host_);
  }
  const std::string& error() const { return error_; }
  void inside(const std::function<void()>& fn) const {
    if (setns(ns_, CLONE_NEWNET) != 0) std::abort();
    fn();
    if (setns(host_, CLONE_NEWNET) != 0) std::abort();
  }
  std::string routes() const {
    std::string r;
    inside([&] { r = run_command("ip -4 route show table all; ip -6 route show table all"); });
    return r;
  }

 private:
  int host_ = -1, ns_ = -1;
  std::string error_;
};

int bound_socket(int type, const char* ip, int* port, int rcvbuf = 0) {
  int s = socket(AF_INET, type, 0);
  if (rcvbuf > 0) setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (type == SOCK_STREAM && listen(s, 16) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return s;
}

class NetGuardRedTeam : public jrtest::RedTeamFixture {
 protected:
  int64_t hostile(const std::string& cmd, const std::string& timeout = "20s") {
    return enqueue({"enqueue", "hostile_netguard", "--payload", R"({"cmd":")" + cmd + "\"}",
                    "--max-attempts", "1", "--timeout", timeout});
  }
  nlohmann::json result_of(int64_t id) {
    std::string state = wait_finished(id, std::chrono::seconds(30));
    EXPECT_EQ(state, "completed") << "job " << id << "\n" << (runner_ ? runner_->log() : "");
    std::string r = q("SELECT result FROM jr_jobs_done WHERE id = " + std::to_string(id));
    return nlohmann::json::parse(r.empty() ? "null" : r, nullptr, false);
  }
};

TEST_F(NetGuardRedTeam, LoopbackPluginCannotUseTheRunnersRights) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (the runner's rights are what must not leak)";
  TestNetns ns;
  ASSERT_EQ(ns.error(), "");
  std::string writable = dir_.path() + "/ng-writable", peers = dir_.path() + "/ng-peers";
  std::filesystem::create_directories(writable);
  std::filesystem::create_directories(peers);
  chmod(writable.c_str(), 0777);
  chmod(peers.c_str(), 0755);
  std::string tag = std::to_string(getpid());
  std::string in_tmp = "/tmp/jr-ng-redteam-" + tag + ".sock";
  std::string in_shm = "/dev/shm/jr-ng-redteam-" + tag + ".sock";
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) unlink(p.c_str());
    }
  } cleanup{{in_tmp, in_shm}};
  int peer = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un ua{};
  ua.sun_family = AF_UNIX;
  std::snprintf(ua.sun_path, sizeof ua.sun_path, "%s/peer.sock", peers.c_str());
  ASSERT_EQ(bind(peer, reinterpret_cast<sockaddr*>(&ua), sizeof ua), 0);
  ASSERT_EQ(listen(peer, 4), 0);
  chmod(ua.sun_path, 0777);
  int uport = 0, tport = 0, udp = -1, never_reads = -1;
  std::string routes_before = ns.routes();
  ns.inside([&] {
    udp = bound_socket(SOCK_DGRAM, "192.0.2.1", &uport);
    never_reads = bound_socket(SOCK_STREAM, "127.0.0.1", &tport, 4096);
    start_runner({netguard_so()},
                 "[plugins.hostile_netguard.sandbox]\nnetwork = \"loopback\"\n"
                 "writable = [\"" +
                     writable + "\"]\nreadable = [\"" + peers + "\"]\n");
  });
  ASSERT_GE(udp, 0);
  ASSERT_GE(never_reads, 0);
  enqueue_healthy(20);
  int64_t bind80 = hostile("bind_tcp 127.0.0.1 80");
  int64_t tmp = hostile("unix_bind " + in_tmp);
  int64_t shm = hostile("unix_bind " + in_shm);
  int64_t mine = hostile("unix_bind " + writable + "/mine.sock");
  int64_t connect = hostile("unix_connect " + std::string(ua.sun_path));
  int64_t netlink = hostile("netlink_route");
  int64_t unspec = hostile("unspec_sendto 192.0.2.1 " + std::to_string(uport));
  int64_t flood = hostile("flood 127.0.0.1 " + std::to_string(tport), "2s");

  // A privileged port: the guard binds as the worker, which may not.
  EXPECT_EQ(result_of(bind80), nlohmann::json({{"errno", EACCES}}));
  // Unix sockets only beneath the plugin's writable paths, created by the worker's uid.
  EXPECT_EQ(result_of(tmp), nlohmann::json({{"errno", EPERM}}));
  EXPECT_EQ(result_of(shm), nlohmann::json({{"errno", EPERM}}));
  EXPECT_FALSE(std::filesystem::exists(in_tmp)) << "a unix socket was created in /tmp";
  EXPECT_FALSE(std::filesystem::exists(in_shm)) << "a unix socket was created in /dev/shm";
  EXPECT_EQ(result_of(mine), nlohmann::json({{"errno", 0}}));
  struct stat st {};
  ASSERT_EQ(stat((writable + "/mine.sock").c_str(), &st), 0);
  // The plugin's own uid (allocated from 2,100,000,000 up), not root's.
  EXPECT_GE(st.st_uid, 2100000000u);
  // A unix-socket peer sees the worker, not root.
  EXPECT_EQ(result_of(connect), nlohmann::json({{"errno", 0}}));
  int c = accept(peer, nullptr, nullptr);
  ASSERT_GE(c, 0);
  ucred cred{};
  socklen_t len = sizeof cred;
  ASSERT_EQ(getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
  EXPECT_EQ(cred.uid, st.st_uid) << "the peer saw uid " << cred.uid;
  EXPECT_NE(cred.gid, 0u);
  close(c);
  // No netlink socket at all, so no route; the namespace's table is as it was.
  nlohmann::json nl = result_of(netlink);
  EXPECT_EQ(nl.value("socket_errno", 0), EAFNOSUPPORT) << nl;
  EXPECT_EQ(ns.routes(), routes_before) << "the plugin changed the routing table";
  // An AF_UNSPEC destination (UDP would send it as AF_INET) is refused; nothing arrived.
  EXPECT_EQ(result_of(unspec), nlohmann::json({{"errno", EPERM}}));
  char d[8];
  EXPECT_EQ(recv(udp, d, sizeof d, MSG_DONTWAIT), -1) << "a datagram reached 192.0.2.1";
  // A guarded send to a peer that never reads ends at the job's deadline, like any job.
  EXPECT_EQ(wait_finished(flood, std::chrono::seconds(20)), "discarded");
  nlohmann::json errors = nlohmann::json::parse(
      q("SELECT errors FROM jr_jobs_done WHERE id = " + std::to_string(flood)), nullptr, false);
  ASSERT_TRUE(errors.is_array() && !errors.empty()) << errors;
  EXPECT_EQ(errors.back().value("kind", ""), "timeout") << errors;
  std::string took =
      q("SELECT extract(epoch FROM finished_at - started_at) FROM jr_jobs_done "
        "WHERE id = " +
        std::to_string(flood));
  EXPECT_LT(std::stod(took.empty() ? "99" : took), 2 + 1 + 3) << "the timeout came too late";
  // Its slot serves jobs again.
  enqueue_healthy(10);
  stop_and_check();
  std::string routes_after = ns.routes();
  EXPECT_EQ(routes_after, routes_before);
  EXPECT_EQ(routes_after.find("192.0.2.0/24"), std::string::npos) << routes_after;
  close(peer);
  close(udp);
  close(never_reads);
}

// prctl(PR_SET_PDEATHSIG, 0) is refused, so a worker dies with a runner killed by SIGKILL.
TEST_F(NetGuardRedTeam, WorkerNeverOutlivesAKilledRunner) {
  start_runner({netguard_so()}, "[plugins.hostile_netguard.sandbox]\nnetwork = \"loopback\"\n");
  enqueue_healthy(5);
  hostile("pdeathsig_hold", "60s");
  bool holding = jrtest::wait_until(
      [&] { return runner_->log().find("pdeathsig cleared") != std::string::npos; },
      std::chrono::seconds(30));
  ASSERT_TRUE(holding) << runner_->log();
  EXPECT_NE(runner_->log().find("pdeathsig cleared: rc -1 errno 1 "), std::string::npos)
      << runner_->log();
  pid_t host = runner_->pid();
  ASSERT_FALSE(workers_of(host).empty());
  runner_->signal(SIGKILL);
  runner_->wait(std::chrono::seconds(10));
  bool gone = jrtest::wait_until([&] { return workers_of(host).empty(); }, std::chrono::seconds(5));
  EXPECT_TRUE(gone) << workers_of(host).size() << " worker(s) outlived their SIGKILLed runner";
  for (pid_t p : workers_of(host)) kill(p, SIGKILL);
}

}  // namespace
