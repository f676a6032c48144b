// network = "loopback" against a hostile plugin (hostile_netguard, tests/testplugins/hostile/
// netguard.c), through SandboxExecutor as the tests' user (root in CI), while a healthy echo
// plugin keeps completing jobs: the host's guard acts with the worker's credentials and grants
// only (privileged ports, unix socket files, SO_PEERCRED), refuses what it does not model
// (AF_UNSPEC destinations, source routing, raw/netlink sockets), never blocks without bound, and
// the seccomp filter refuses arguments that reach outside the worker (prctl, affinity, ioctl).
// Every peer here is the test's own socket on 127.0.0.1 or a unix socket in its temp dir; the
// refused destinations (192.0.2.1) are refused before a packet exists.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>

#include "net_guard.hpp"
#include "sandbox_support.hpp"

using jr::sandbox::SandboxOptions;
using namespace sbtest;

namespace {

constexpr uid_t kNobody = 65534;  // a stranger uid for the test's own unprivileged child

// A socket of the test on 127.0.0.1; its port in *port.
int inet_socket(int type, int* port, int rcvbuf = 0) {
  int s = socket(AF_INET, type, 0);
  if (rcvbuf > 0) setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (type == SOCK_STREAM && listen(s, 64) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return s;
}

// A listening unix socket at `path` that every user may connect to.
int unix_listener(const std::string& path) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 4) != 0) return -1;
  chmod(path.c_str(), 0777);
  return s;
}

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

class NetGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    opts.kill_grace_ms = 200;
    opts.respawn_backoff_initial_ms = 10;
    logs.attach(opts);
    chmod(dir.path().c_str(), 0755);
  }
  void TearDown() override {
    load.stop();
    EXPECT_GT(load.ok(), 0) << "the healthy plugin completed no job";
    EXPECT_EQ(load.bad(), 0) << "the healthy plugin failed: " << load.last_error();
  }
  // The hostile plugin with network = "loopback" from the host config, plus `extra` policy keys.
  std::unique_ptr<jr::sandbox::SandboxExecutor> exec(
      nlohmann::json extra = nlohmann::json::object(), nlohmann::json config = {}) {
    extra["network"] = "loopback";
    if (!config.is_object()) config = nlohmann::json::object();
    config["sandbox"] = extra;
    auto e = make(hostile("netguard"), config, opts);
    e->start();
    return e;
  }
  // Runs one command; returns its JSON result (null when the job did not succeed).
  nlohmann::json run(jr::sandbox::SandboxExecutor& e, const std::string& cmd,
                     int64_t timeout_ms = 5000) {
    JobRun r = run_job(e, "hostile_netguard", "\"" + cmd + "\"", &services, timeout_ms);
    EXPECT_EQ(r.out.status, JR_OK) << cmd << ": " << r.out.host_error << " / " << r.error;
    if (r.out.status != JR_OK) return nullptr;
    return nlohmann::json::parse(r.result, nullptr, false);
  }
  // A new directory every user may enter (and, with `writable`, write).
  std::string subdir(const std::string& name, bool writable) {
    std::string d = dir.path() + "/" + name;
    std::filesystem::create_directories(d);
    chmod(d.c_str(), writable ? 0777 : 0755);
    return d;
  }

  HealthyLoad load;
  SandboxOptions opts;
  LogCapture logs;
  FakeServices services;
  jrtest::TempDir dir;
};

// As root the host may bind port 80; the worker may not, and the guard acts as the worker.
TEST_F(NetGuardTest, PrivilegedPortBindIsRefusedLikeForTheWorker) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (the host's privileges are what must not leak)";
  auto e = exec();
  EXPECT_EQ(run(*e, "bind_tcp 127.0.0.1 80"), nlohmann::json({{"errno", EACCES}}));
  EXPECT_EQ(run(*e, "bind_tcp 127.0.0.1 0"), nlohmann::json({{"errno", 0}}));  // ports >= 1024
}

// A unix socket file is created only beneath the worker's writable paths, and the kernel checks
// the path it really creates: a symlink inside the writable dir does not lead out of it.
TEST_F(NetGuardTest, UnixSocketsAreCreatedOnlyBeneathWritablePaths) {
  std::string w = subdir("writable", true);
  std::string tag = std::to_string(getpid());
  std::string in_tmp = "/tmp/jr-netguard-" + tag + ".sock";
  std::string in_shm = "/dev/shm/jr-netguard-" + tag + ".sock";
  std::string escaped = dir.path() + "/escaped.sock";
  std::filesystem::create_symlink(dir.path(), w + "/link");  // as a plugin could make it
  struct Cleanup {
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) unlink(p.c_str());
    }
  } cleanup{{in_tmp, in_shm}};
  auto e = exec({{"writable", {w}}});
  for (const auto& path : {in_tmp, in_shm, w + "/link/escaped.sock"}) {
    nlohmann::json r = run(*e, "unix_bind " + path);
    EXPECT_TRUE(r == nlohmann::json({{"errno", EPERM}}) || r == nlohmann::json({{"errno", EACCES}}))
        << path << ": " << r;
  }
  EXPECT_FALSE(exists(in_tmp)) << "a unix socket was created in /tmp";
  EXPECT_FALSE(exists(in_shm)) << "a unix socket was created in /dev/shm";
  EXPECT_FALSE(exists(escaped)) << "a unix socket was created through a symlink";
  // Beneath the writable path it works, and the file belongs to the worker.
  EXPECT_EQ(run(*e, "unix_bind " + w + "/ok.sock"), nlohmann::json({{"errno", 0}}));
  struct stat st {};
  ASSERT_EQ(stat((w + "/ok.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  if (geteuid() == 0) {
    EXPECT_EQ(st.st_uid, e->layers()["user"].value("uid", 0u))
        << "the socket file was created by the host, not the worker";
    EXPECT_NE(st.st_uid, 0u);
  }
}

// A unix-socket peer sees the worker's credentials (SO_PEERCRED), and only sockets beneath the
// plugin's grants are reachable.
TEST_F(NetGuardTest, UnixPeerSeesTheWorkerAndOnlyGrantedSocketsAreReachable) {
  std::string granted = subdir("granted", false);
  std::string other = subdir("other", false);
  int peer = unix_listener(granted + "/peer.sock");
  int outside = unix_listener(other + "/peer.sock");
  ASSERT_GE(peer, 0);
  ASSERT_GE(outside, 0);
  auto e = exec({{"readable", {granted}}});
  EXPECT_EQ(run(*e, "unix_connect " + granted + "/peer.sock"), nlohmann::json({{"errno", 0}}));
  int c = accept(peer, nullptr, nullptr);
  ASSERT_GE(c, 0);
  ucred cred{};
  socklen_t len = sizeof cred;
  ASSERT_EQ(getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
  if (geteuid() == 0) {
    nlohmann::json user = e->layers()["user"];
    EXPECT_EQ(cred.uid, user.value("uid", 0u)) << "the peer saw the host's uid";
    EXPECT_EQ(cred.gid, user.value("gid", 0u)) << "the peer saw the host's gid";
    EXPECT_NE(cred.uid, 0u);
  }
  char buf[4] = {0};
  EXPECT_EQ(read(c, buf, sizeof buf), 2);
  close(c);
  // Outside the grants: refused before any connection is made.
  EXPECT_EQ(run(*e, "unix_connect " + other + "/peer.sock"), nlohmann::json({{"errno", EPERM}}));
  pollfd p{outside, POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0) << "a connection reached a socket outside the grants";
  // Relative, "..", and abstract names are refused.
  EXPECT_EQ(run(*e, "unix_connect " + granted + "/../other/peer.sock"),
            nlohmann::json({{"errno", EPERM}}));
  EXPECT_EQ(run(*e, "unix_connect peer.sock"), nlohmann::json({{"errno", EPERM}}));
  close(peer);
  close(outside);
}

// Sockets the policy lists (`sockets`) and the database the plugin was given (the unix socket
// directory of its database_url) are reachable too; nothing else beside them.
TEST_F(NetGuardTest, SocketsOfThePolicyAndOfTheDatabaseUrlAreReachable) {
  std::string listed = subdir("listed", false);
  std::string db = subdir("db.sock", false);
  int a = unix_listener(listed + "/service.sock");
  int b = unix_listener(listed + "/other.sock");
  int d = unix_listener(db + "/.s.PGSQL.5432");
  ASSERT_TRUE(a >= 0 && b >= 0 && d >= 0);
  auto e = exec({{"sockets", {listed + "/service.sock"}}},
                {{"database_url", "postgresql:///app?host=" + db + "&port=5432"}});
  EXPECT_EQ(run(*e, "unix_connect " + listed + "/service.sock"), nlohmann::json({{"errno", 0}}));
  EXPECT_EQ(run(*e, "unix_connect " + db + "/.s.PGSQL.5432"), nlohmann::json({{"errno", 0}}));
  EXPECT_EQ(run(*e, "unix_connect " + listed + "/other.sock"), nlohmann::json({{"errno", EPERM}}));
  close(a);
  close(b);
  close(d);
}

// Linux UDP sends to an AF_UNSPEC address as if it were AF_INET: the guard refuses any address
// whose family is not the socket's own (here the peer is the test's own loopback socket, so the
// datagram would have been delivered).
TEST_F(NetGuardTest, UnspecifiedFamilyDestinationIsRefused) {
  int port = 0;
  int u = inet_socket(SOCK_DGRAM, &port);
  ASSERT_GE(u, 0);
  auto e = exec();
  EXPECT_EQ(run(*e, "unspec_sendto 127.0.0.1 " + std::to_string(port)),
            nlohmann::json({{"errno", EPERM}}));
  char d[8];
  EXPECT_EQ(recv(u, d, sizeof d, MSG_DONTWAIT), -1) << "the datagram was delivered";
  close(u);
}

// Socket options and kinds that reroute packets, convert the socket or reach kernel interfaces
// are refused by seccomp; the options real clients set still work.
TEST_F(NetGuardTest, SourceRoutingAndUnmodelledSocketsAreRefused) {
  auto e = exec();
  nlohmann::json r = run(*e, "sockopts");
  for (const char* refused : {"ip_options", "ipv6_rthdr", "ipv6_addrform", "tcp_ulp",
                              "so_reuseport", "ip_freebind", "sock_raw", "sock_ping"}) {
    EXPECT_EQ(r.value(refused, -1), EPERM) << refused << " in " << r;
  }
  for (const char* refused : {"sock_netlink", "sock_packet"}) {
    EXPECT_EQ(r.value(refused, -1), EAFNOSUPPORT) << refused << " in " << r;
  }
  for (const char* allowed : {"tcp_nodelay", "so_keepalive", "tcp_keepidle", "so_rcvbuf",
                              "so_sndtimeo", "ip_recverr", "ipv6_v6only"}) {
    EXPECT_EQ(r.value(allowed, -1), 0) << allowed << " in " << r;
  }
  // The same routing header as ancillary data: control messages never pass the guard.
  int port = 0;
  int u = inet_socket(SOCK_DGRAM, &port);
  EXPECT_EQ(run(*e, "rthdr_cmsg " + std::to_string(port)), nlohmann::json({{"errno", EPERM}}));
  close(u);
  // glibc's resolver does without netlink (AI_ADDRCONFIG assumes both families).
  nlohmann::json g = run(*e, "getaddrinfo localhost");
  EXPECT_EQ(g.value("rc", -1), 0) << g;
  EXPECT_GE(g.value("addresses", 0), 1) << g;
  EXPECT_EQ(e->counters().workers_started.load(), 1u);  // refusals are errors, not kills
}

// prctl: a worker cannot clear its parent-death signal (it would outlive a killed runner), make
// itself dumpable or traceable, or become a subreaper; naming threads still works.
TEST_F(NetGuardTest, PrctlOutsideTheAllowlistIsRefused) {
  auto e = exec();
  nlohmann::json r = run(*e, "prctl");
  for (const char* refused : {"set_pdeathsig_0", "set_dumpable_1", "set_ptracer_any",
                              "set_child_subreaper", "set_keepcaps", "set_seccomp"}) {
    EXPECT_EQ(r.value(refused, -1), EPERM) << refused << " in " << r;
  }
  EXPECT_EQ(r.value("set_name", -1), 0) << r;
  EXPECT_EQ(r.value("get_name", -1), 0) << r;
  EXPECT_EQ(r.value("pdeathsig", -1), SIGKILL) << r;
}

// sched_setaffinity of another process (another plugin's worker, say: the same uid) is refused;
// on itself it works.
TEST_F(NetGuardTest, AffinityOfAnotherProcessIsRefused) {
  cpu_set_t before;
  auto e = exec();
  // The other process runs as the worker's own uid, so only the seccomp rule (not the kernel's
  // permission check) can refuse the call.
  const uid_t worker_uid = e->layers()["user"].value("uid", kNobody);
  pid_t child = fork();
  if (child == 0) {
    if (geteuid() == 0 && setresuid(worker_uid, worker_uid, worker_uid) != 0) _exit(1);
    pause();
    _exit(0);
  }
  ASSERT_GT(child, 0);
  ASSERT_EQ(sched_getaffinity(child, sizeof before, &before), 0);
  nlohmann::json r = run(*e, "affinity " + std::to_string(child));
  EXPECT_EQ(r.value("set_other", -1), EPERM) << r;
  EXPECT_EQ(r.value("get_other", -1), ENOSYS) << r;
  EXPECT_EQ(r.value("get_self", -1), 0) << r;
  EXPECT_EQ(r.value("set_self", -1), 0) << r;
  cpu_set_t after;
  ASSERT_EQ(sched_getaffinity(child, sizeof after, &after), 0);
  EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "the other process' affinity changed";
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

// ioctl: only an allowlist (terminal injection, async I/O signals refused); fcntl F_SETOWN only
// to itself.
TEST_F(NetGuardTest, IoctlAndSignalOwnershipOutsideTheAllowlistAreRefused) {
  auto e = exec();
  nlohmann::json r = run(*e, "ioctl");
  for (const char* allowed :
       {"fionbio", "fionread", "fioclex", "isatty_errno_enotty", "f_setown_self"}) {
    EXPECT_EQ(r.value(allowed, -1), 0) << allowed << " in " << r;
  }
  for (const char* refused : {"tiocsti", "fioasync", "f_setown_other"}) {
    EXPECT_EQ(r.value(refused, -1), EPERM) << refused << " in " << r;
  }
}

// Runs a job that may get stuck in the guard on today's code: if it is not back in time, the
// test fails and closes `unblock` (the peer the guard is stuck sending to) so it can finish.
JobRun run_bounded(jr::sandbox::SandboxExecutor& e, const std::string& cmd, int64_t timeout_ms,
                   FakeServices* services, int64_t limit_ms, int* unblock) {
  auto f = std::async(std::launch::async, [&] {
    return run_job(e, "hostile_netguard", "\"" + cmd + "\"", services, timeout_ms);
  });
  if (f.wait_for(std::chrono::milliseconds(limit_ms)) != std::future_status::ready) {
    ADD_FAILURE() << cmd << ": the job was not back " << limit_ms
                  << " ms after it started: the guard is stuck";
    close(*unblock);
    *unblock = -1;
  }
  return f.get();
}

// A guarded send to a peer that never reads: the job ends at its deadline like any other, the
// worker is killed, its slot serves the next job, and the guard is released at once.
TEST_F(NetGuardTest, BlockedGuardedSendEndsAtTheDeadline) {
  int port = 0;
  int never_reads = inet_socket(SOCK_STREAM, &port, 4096);
  ASSERT_GE(never_reads, 0);
  auto e = exec();
  JobRun r = run_bounded(*e, "flood 127.0.0.1 " + std::to_string(port), 500, &services, 6000,
                         &never_reads);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::timeout) << r.out.host_error << " / " << r.result;
  EXPECT_LT(r.elapsed_ms, 500 + 200 + 1500) << "killed too late";
  // The slot is free again: the next job runs on a fresh worker, promptly.
  JobRun next = run_job(*e, "hostile_netguard", "\"bind_tcp 127.0.0.1 0\"", &services, 5000);
  EXPECT_EQ(next.out.status, JR_OK) << next.out.host_error;
  EXPECT_LT(next.elapsed_ms, 2000);
  EXPECT_EQ(e->counters().workers_started.load(), 2u);
  auto t0 = std::chrono::steady_clock::now();
  e.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1))
      << "destroying the executor (and its guards) took too long";
  if (never_reads >= 0) close(never_reads);
}

// Several threads of one worker: one stuck in a guarded send does not hold up the others'
// guarded calls; the stuck call is abandoned when the worker goes.
TEST_F(NetGuardTest, GuardedCallsOfOneWorkerDoNotQueueBehindABlockedOne) {
  int tport = 0, uport = 0;
  int never_reads = inet_socket(SOCK_STREAM, &tport, 4096);
  int u = inet_socket(SOCK_DGRAM, &uport);
  ASSERT_GE(never_reads, 0);
  ASSERT_GE(u, 0);
  auto e = exec();
  JobRun r = run_bounded(
      *e, "flood_and_udp 127.0.0.1 " + std::to_string(tport) + " " + std::to_string(uport), 5000,
      &services, 8000, &never_reads);
  ASSERT_EQ(r.out.status, JR_OK) << r.out.host_error_kind << ": " << r.out.host_error;
  nlohmann::json j = nlohmann::json::parse(r.result);
  EXPECT_EQ(j["flood_errno"], 0) << j;  // still stuck in its send
  EXPECT_GT(j["flood_calls"].get<int>(), j["flood_sends"].get<int>()) << j;  // inside a send
  EXPECT_EQ(j["udp"], 0) << j;
  EXPECT_EQ(j["connect"], 0) << j;
  EXPECT_LT(j["ms"].get<int>(), 1000) << j;
  char d[8] = {0};
  pollfd p{u, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 2000), 1);
  EXPECT_EQ(recv(u, d, sizeof d, 0), 4);
  EXPECT_STREQ(d, "ping");
  // The worker still has a thread stuck in the guard: stopping the executor kills it, and the
  // guard lets go of the call at once.
  auto t0 = std::chrono::steady_clock::now();
  e.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1))
      << "destroying the executor (and its guards) took too long";
  if (never_reads >= 0) close(never_reads);
  close(u);
}

// The calls waiting in the guard are bounded per worker: beyond NetGuard::kMaxPending a
// blocking guarded call fails with EAGAIN (it is not queued), and the guard keeps answering.
TEST_F(NetGuardTest, WaitingGuardedCallsAreBoundedPerWorker) {
  int port = 0;
  int never_reads = inet_socket(SOCK_STREAM, &port, 4096);
  ASSERT_GE(never_reads, 0);
  auto e = exec();
  const int n = jr::sandbox::NetGuard::kMaxPending + 4;
  JobRun r =
      run_bounded(*e, "flood_threads 127.0.0.1 " + std::to_string(port) + " " + std::to_string(n),
                  10000, &services, 12000, &never_reads);
  ASSERT_EQ(r.out.status, JR_OK) << r.out.host_error_kind << ": " << r.out.host_error;
  nlohmann::json j = nlohmann::json::parse(r.result);
  EXPECT_EQ(j["stuck"], jr::sandbox::NetGuard::kMaxPending) << j;
  EXPECT_EQ(j["eagain"], 4) << j;
  EXPECT_EQ(j["other"], 0) << j;
  EXPECT_EQ(j["connect"], 0) << j;
  auto t0 = std::chrono::steady_clock::now();
  e.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  if (never_reads >= 0) close(never_reads);
}

// A blocking guarded send larger than the socket buffers completes like the kernel's: every byte,
// in order, while the peer reads slowly; with SO_SNDTIMEO and a peer that stops reading, it
// returns the bytes sent so far once the timeout has passed.
TEST_F(NetGuardTest, BlockingGuardedSendsKeepTheirSemantics) {
  int port = 0;
  int ls = inet_socket(SOCK_STREAM, &port);
  ASSERT_GE(ls, 0);
  auto e = exec();
  const size_t total = size_t{3} << 20;
  size_t got = 0;
  bool in_order = true;
  std::thread reader([&] {
    int c = accept(ls, nullptr, nullptr);
    if (c < 0) return;
    std::vector<unsigned char> buf(16384);
    for (;;) {
      ssize_t n = read(c, buf.data(), buf.size());
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[static_cast<size_t>(i)] != static_cast<unsigned char>((got + i) * 7)) {
          in_order = false;
        }
      }
      got += static_cast<size_t>(n);
      usleep(200);  // a slow reader, so the guard has to wait for room many times
    }
    close(c);
  });
  nlohmann::json r = run(*e, "send_big 127.0.0.1 " + std::to_string(port) + " 3072 0", 30000);
  reader.join();
  EXPECT_EQ(r.value("sent", int64_t{-1}), static_cast<int64_t>(total)) << r;
  EXPECT_EQ(got, total);
  EXPECT_TRUE(in_order);
  // A peer that never reads, and a send timeout of 300 ms: a partial count, then the call ends.
  int never_reads = inet_socket(SOCK_STREAM, &port, 4096);
  nlohmann::json t = run(*e, "send_big 127.0.0.1 " + std::to_string(port) + " 4000 300", 10000);
  EXPECT_EQ(t.value("errno", -1), 0) << t;
  EXPECT_GT(t.value("sent", int64_t{0}), 0) << t;
  EXPECT_LT(t.value("sent", int64_t{0}), int64_t{4000} << 10) << t;
  EXPECT_GE(t.value("ms", 0), 300) << t;
  EXPECT_LT(t.value("ms", 0), 2000) << t;
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  close(never_reads);
  close(ls);
}

}  // namespace
