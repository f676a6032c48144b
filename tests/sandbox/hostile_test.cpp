// Hostile plugins, each run in the sandbox while a healthy echo plugin keeps completing jobs in
// the background: every misbehaviour must end in the right error kind, with a log line and a
// counter, and nothing may hurt the test process. Through SandboxExecutor directly, with a fake
// HostServices (no database here); the engine integration is tested by the lead via `runner`.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "sandbox_support.hpp"

using jr::sandbox::Restart;
using jr::sandbox::SandboxOptions;
using namespace sbtest;

namespace {

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    opts.kill_grace_ms = 200;
    opts.respawn_backoff_initial_ms = 10;
    logs.attach(opts);
  }
  void TearDown() override {
    load.stop();
    EXPECT_GT(load.ok(), 0) << "the healthy plugin completed no job";
    EXPECT_EQ(load.bad(), 0) << "the healthy plugin failed: " << load.last_error();
  }
  std::unique_ptr<jr::sandbox::SandboxExecutor> exec(const std::string& c,
                                                     const nlohmann::json& cfg = {}) {
    auto e = make(hostile(c), cfg.is_null() ? nlohmann::json::object() : cfg, opts);
    e->start();
    return e;
  }
  // After a worker death: the next job on the same executor runs on a fresh worker.
  void expect_respawn(jr::sandbox::SandboxExecutor& e, const std::string& kind) {
    uint64_t started = e.counters().workers_started.load();
    JobRun again = run_job(e, kind, "\"x\"", &services, 5000);
    (void)again;
    EXPECT_EQ(e.counters().workers_started.load(), started + 1);
  }

  HealthyLoad load;
  SandboxOptions opts;
  LogCapture logs;
  FakeServices services;
};

TEST_F(Hostile, SegfaultIsACrashWithItsSignal) {
  auto e = exec("segv");
  JobRun r = run_job(*e, "hostile_segv", "\"x\"", &services, 5000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::crash);
  EXPECT_NE(r.out.host_error.find("SIGSEGV"), std::string::npos) << r.out.host_error;
  EXPECT_EQ(e->counters().restarts_for(Restart::crash), 1u);
  EXPECT_EQ(e->counters().failures_for("crash"), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "crash"));
  expect_respawn(*e, "hostile_segv");
}

TEST_F(Hostile, AbortIsACrashWithSigabrt) {
  auto e = exec("abort");
  JobRun r = run_job(*e, "hostile_abort", "\"x\"", &services, 5000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::crash);
  EXPECT_NE(r.out.host_error.find("SIGABRT"), std::string::npos) << r.out.host_error;
  EXPECT_EQ(e->counters().restarts_for(Restart::crash), 1u);
  EXPECT_TRUE(logs.has("sandboxed job failed", "crash"));
}

TEST_F(Hostile, InfiniteLoopIsKilledAtTheDeadline) {
  auto e = exec("spin");
  JobRun r = run_job(*e, "hostile_spin", "\"x\"", &services, 300);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::timeout);
  EXPECT_GE(r.elapsed_ms, 300);
  EXPECT_LT(r.elapsed_ms, 300 + 200 + 1000) << "killed too late";
  EXPECT_EQ(e->counters().restarts_for(Restart::timeout), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "timeout"));
  JobRun again = run_job(*e, "hostile_spin", "\"x\"", &services, 100);
  EXPECT_EQ(again.out.host_error_kind, jr::ErrorKind::timeout);
  EXPECT_EQ(e->counters().workers_started.load(), 2u);
}

TEST_F(Hostile, WallTimeoutFromThePolicyBoundsAJobWithoutDeadline) {
  auto e = exec("spin", {{"sandbox", {{"wall_timeout_seconds", 0.3}}}});
  JobRun r = run_job(*e, "hostile_spin", "\"x\"", &services, 0);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::timeout);
  EXPECT_LT(r.elapsed_ms, 300 + 200 + 1000);
}

TEST_F(Hostile, IgnoredCancellationIsKilledAfterTheGrace) {
  auto e = exec("ignore_cancel");
  JobRun r = run_job(*e, "hostile_ignore_cancel", "\"x\"", &services, 0, 100, jr::kCancelUser);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::cancelled);
  EXPECT_LT(r.elapsed_ms, 100 + 200 + 1000);
  EXPECT_EQ(e->counters().restarts_for(Restart::cancelled), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "cancelled"));
  // The same plugin ignoring its deadline: a timeout.
  JobRun t = run_job(*e, "hostile_ignore_cancel", "\"x\"", &services, 300);
  EXPECT_EQ(t.out.host_error_kind, jr::ErrorKind::timeout);
  EXPECT_EQ(e->counters().restarts_for(Restart::timeout), 1u);
}

TEST_F(Hostile, EightGigabyteAllocationIsOomAndTheWorkerIsReplaced) {
  auto e = exec("oom");
  JobRun r = run_job(*e, "hostile_oom", "\"x\"", &services, 10000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::oom) << r.out.host_error << " / " << r.error;
  EXPECT_NE(r.out.host_error.find("bad_alloc"), std::string::npos) << r.out.host_error;
  EXPECT_EQ(e->counters().restarts_for(Restart::oom), 1u);
  EXPECT_EQ(e->counters().failures_for("oom"), 1u);
  EXPECT_TRUE(logs.has("sandbox worker recycled"));
  EXPECT_TRUE(logs.has("sandboxed job failed", "oom"));
  expect_respawn(*e, "hostile_oom");
}

TEST_F(Hostile, ForkBombGetsEpermFromFork) {
  auto e = exec("forkbomb");
  JobRun r = run_job(*e, "hostile_forkbomb", "\"x\"", &services, 5000);
  EXPECT_FALSE(r.out.host_error_kind.has_value()) << r.out.host_error;
  EXPECT_EQ(r.out.status, JR_ERR_RETRYABLE);
  EXPECT_NE(r.error.find("fork: Operation not permitted"), std::string::npos) << r.error;
  EXPECT_TRUE(services.logged("fork: Operation not permitted"));
  EXPECT_EQ(e->counters().failures_for("error"), 1u);
  EXPECT_EQ(e->counters().workers_started.load(), 1u);  // the worker survived
}

TEST_F(Hostile, ExecOfAShellIsKilledBySeccomp) {
  jrtest::TempDir dir;
  std::string marker = dir.path() + "/exec-ran";
  chmod(dir.path().c_str(), 0777);
  auto e = exec("exec");
  JobRun r = run_job(*e, "hostile_exec", "\"touch " + marker + "\"", &services, 5000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::seccomp) << r.out.host_error;
  EXPECT_NE(r.out.host_error.find("SIGSYS"), std::string::npos);
  EXPECT_EQ(e->counters().restarts_for(Restart::seccomp), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "seccomp"));
  EXPECT_NE(access(marker.c_str(), F_OK), 0) << "the shell ran";
}

TEST_F(Hostile, ReadingShadowAndFilesOutsideTheGrantsIsDenied) {
  auto e = exec("read_file");
  JobRun r = run_job(*e, "hostile_read_file", "\"/etc/shadow\"", &services, 5000);
  EXPECT_EQ(r.out.status, JR_ERR_RETRYABLE);
  // Not in the worker's minimal root at all (as root), or refused by its uid and Landlock.
  EXPECT_NE(r.error.find(geteuid() == 0 ? "No such file" : "Permission denied"), std::string::npos)
      << r.error;
  // A world-readable file in a world-readable dir: without the mount namespace, only Landlock
  // stands in the way.
  opts.simulate_missing = {"mountns"};
  e = exec("read_file");
  opts.simulate_missing.clear();
  jrtest::TempDir dir;
  chmod(dir.path().c_str(), 0755);
  std::string file = dir.path() + "/public.txt";
  std::ofstream(file) << "not for plugins\n";
  chmod(file.c_str(), 0644);
  JobRun o = run_job(*e, "hostile_read_file", "\"" + file + "\"", &services, 5000);
  if (kernel_landlock_abi() > 0) {
    EXPECT_EQ(o.out.status, JR_ERR_RETRYABLE);
    EXPECT_NE(o.error.find("Permission denied"), std::string::npos) << o.error;
  } else {
    EXPECT_TRUE(logs.has("sandbox layer degraded"));
  }
  EXPECT_TRUE(services.logged("open for reading: Permission denied"));
  EXPECT_GE(e->counters().failures_for("error"), 1u);
  // Granted in the host config: readable.
  auto granted = exec("read_file", {{"sandbox", {{"readable", {dir.path()}}}}});
  JobRun g = run_job(*granted, "hostile_read_file", "\"" + file + "\"", &services, 5000);
  EXPECT_EQ(g.out.status, JR_OK) << g.error;
  EXPECT_EQ(g.result, R"({"read":16})");
}

TEST_F(Hostile, WritingOutsideTheScratchDirIsDenied) {
  jrtest::TempDir dir;
  chmod(dir.path().c_str(), 0777);
  std::string target = dir.path() + "/pwned.txt";
  opts.simulate_missing = {"mountns"};  // Landlock alone (the minimal root hides the dir)
  auto e = exec("write_file");
  opts.simulate_missing.clear();
  JobRun r = run_job(*e, "hostile_write_file", "\"" + target + "\"", &services, 5000);
  if (kernel_landlock_abi() > 0) {
    EXPECT_EQ(r.out.status, JR_ERR_RETRYABLE);
    EXPECT_NE(r.error.find("Permission denied"), std::string::npos) << r.error;
    EXPECT_NE(access(target.c_str(), F_OK), 0);
    EXPECT_TRUE(services.logged("open for writing: Permission denied"));
  } else {
    EXPECT_TRUE(logs.has("sandbox layer degraded"));
  }
  JobRun w = run_job(*e, "hostile_write_file", "\"/etc/jr-sandbox-pwned\"", &services, 5000);
  EXPECT_EQ(w.out.status, JR_ERR_RETRYABLE);
  EXPECT_NE(access("/etc/jr-sandbox-pwned", F_OK), 0);
  EXPECT_GE(e->counters().failures_for("error"), 2u);
  // A granted writable dir works.
  auto granted = exec("write_file", {{"sandbox", {{"writable", {dir.path()}}}}});
  JobRun g = run_job(*granted, "hostile_write_file", "\"" + target + "\"", &services, 5000);
  EXPECT_EQ(g.out.status, JR_OK) << g.error;
  EXPECT_EQ(access(target.c_str(), F_OK), 0);
}

TEST_F(Hostile, TcpToLoopbackIsRefusedWhenNetworkIsNone) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(ls, 4), 0);
  socklen_t len = sizeof a;
  getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len);
  std::string port = "\"" + std::to_string(ntohs(a.sin_port)) + "\"";
  auto e = exec("connect");
  JobRun r = run_job(*e, "hostile_connect", port, &services, 5000);
  EXPECT_EQ(r.out.status, JR_ERR_RETRYABLE);
  EXPECT_NE(r.error.find("socket: Operation not permitted"), std::string::npos) << r.error;
  EXPECT_TRUE(services.logged("socket: Operation not permitted"));
  EXPECT_EQ(e->counters().failures_for("error"), 1u);
  // network = "loopback" in the host config: the same connection goes through.
  auto lo = exec("connect", {{"sandbox", {{"network", "loopback"}}}});
  JobRun ok = run_job(*lo, "hostile_connect", port, &services, 5000);
  EXPECT_EQ(ok.out.status, JR_OK) << ok.error;
  close(ls);
}

// A loopback socket of the test: returns its fd and writes its port.
int loopback_socket(int type, int* port) {
  int s = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return -1;
  if (type == SOCK_STREAM && listen(s, 4) != 0) return -1;
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  timeval tv{5, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

// network = "loopback": every call naming a peer or a local address goes through the host's
// guard. Loopback peers work (and the connection really is the worker's socket); anything else
// is refused with EPERM before a packet leaves (192.0.2.1 is TEST-NET-1: nothing is sent).
TEST_F(Hostile, LoopbackNetworkReachesOnlyLoopbackPeers) {
  int tport = 0, uport = 0;
  int ls = loopback_socket(SOCK_STREAM, &tport);
  int us = loopback_socket(SOCK_DGRAM, &uport);
  ASSERT_GE(ls, 0);
  ASSERT_GE(us, 0);
  auto e = exec("connect", {{"sandbox", {{"network", "loopback"}}}});
  EXPECT_NE(e->layers().dump().find("loopback: connect, bind, listen"), std::string::npos)
      << e->layers().dump();
  auto run = [&](const std::string& arg) {
    return run_job(*e, "hostile_connect", "\"" + arg + "\"", &services, 5000);
  };
  auto expect_refused = [&](const std::string& arg, const std::string& call) {
    JobRun r = run(arg);
    EXPECT_EQ(r.out.status, JR_ERR_RETRYABLE) << arg;
    EXPECT_NE(r.error.find(call + ": Operation not permitted"), std::string::npos)
        << arg << ": " << r.error;
  };
  // TCP to the test's listener: accepted, and the worker's "hello" arrives through it.
  JobRun ok = run("tcp 127.0.0.1 " + std::to_string(tport));
  EXPECT_EQ(ok.out.status, JR_OK) << ok.error;
  int c = accept(ls, nullptr, nullptr);
  ASSERT_GE(c, 0);
  char buf[16] = {0};
  EXPECT_EQ(read(c, buf, sizeof buf), 5);
  EXPECT_STREQ(buf, "hello");
  close(c);
  expect_refused("tcp 192.0.2.1 9", "connect");
  expect_refused("tcp 10.0.0.1 5432", "connect");
  // UDP with an address, by sendto and by sendmsg: the datagrams reach the test's socket.
  for (const char* mode : {"udp", "msg"}) {
    JobRun u = run(std::string(mode) + " 127.0.0.1 " + std::to_string(uport));
    EXPECT_EQ(u.out.status, JR_OK) << mode << ": " << u.error;
    char d[8] = {0};
    EXPECT_EQ(recv(us, d, sizeof d, 0), 4) << mode;
    EXPECT_STREQ(d, "ping");
  }
  expect_refused("udp 192.0.2.1 53", "sendto");
  expect_refused("msg 192.0.2.1 53", "sendmsg");
  // Listening: only on loopback addresses; a wildcard bind or an unbound listen is refused.
  JobRun b = run("bind 127.0.0.1 0");
  EXPECT_EQ(b.out.status, JR_OK) << b.error;
  expect_refused("bind 0.0.0.0 0", "bind");
  expect_refused("listen 0.0.0.0 0", "listen");
  // The worker survived all of it: refusals are errors the plugin sees, not kills.
  EXPECT_EQ(e->counters().restarts_for(Restart::seccomp), 0u);
  EXPECT_EQ(e->counters().workers_started.load(), 1u);
  close(ls);
  close(us);
}

TEST_F(Hostile, ResultOverTheFrameLimitIsAProtocolError) {
  auto e = exec("big_result");
  JobRun r = run_job(*e, "hostile_big_result", "\"x\"", &services, 10000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::protocol);
  EXPECT_NE(r.out.host_error.find("exceeds the sandbox frame limit"), std::string::npos)
      << r.out.host_error;
  EXPECT_FALSE(r.has_result);
  EXPECT_EQ(e->counters().failures_for("protocol"), 1u);
  EXPECT_TRUE(logs.has("sandboxed job failed", "protocol"));
}

TEST_F(Hostile, GarbageOnTheIpcSocketKillsTheWorker) {
  auto e = exec("garbage");
  JobRun r = run_job(*e, "hostile_garbage", "\"x\"", &services, 5000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::protocol);
  EXPECT_NE(r.out.host_error.find("exceeds the limit"), std::string::npos) << r.out.host_error;
  EXPECT_EQ(e->counters().restarts_for(Restart::protocol), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "protocol"));
  auto t = exec("garbage_type");
  JobRun rt = run_job(*t, "hostile_garbage_type", "\"x\"", &services, 5000);
  EXPECT_EQ(rt.out.host_error_kind, jr::ErrorKind::protocol);
  EXPECT_NE(rt.out.host_error.find("unexpected frame type 1337"), std::string::npos)
      << rt.out.host_error;
}

TEST_F(Hostile, ClosingTheIpcFdIsAProtocolError) {
  auto e = exec("close_ipc");
  JobRun r = run_job(*e, "hostile_close_ipc", "\"x\"", &services, 5000);
  EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::protocol) << r.out.host_error;
  EXPECT_EQ(e->counters().restarts_for(Restart::protocol), 1u);
  EXPECT_TRUE(logs.has("sandbox worker replaced", "protocol"));
  expect_respawn(*e, "hostile_close_ipc");
}

TEST_F(Hostile, ConstructorThatOpensShadowRunsOnlyInTheSandbox) {
  std::string so = hostile("ctor_shadow");
  auto e = exec("ctor_shadow");
  JobRun r = run_job(*e, "hostile_ctor_shadow", "\"x\"", &services, 5000);
  EXPECT_EQ(r.out.status, JR_OK);
  // Inside the worker: ENOENT in its minimal root (as root), else EACCES.
  EXPECT_EQ(r.result, geteuid() == 0 ? R"({"ctor_errno":2})" : R"({"ctor_errno":13})");
  std::ifstream maps("/proc/self/maps");
  std::string text((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find("libjr_h_ctor_shadow.so"), std::string::npos)
      << "the plugin was loaded into the test process";
}

TEST_F(Hostile, ConstructorThatAbortsCrashLoopsIntoQuarantine) {
  std::string so = hostile("ctor_abort");
  try {
    jr::sandbox::describe_in_sandbox(so);
    ADD_FAILURE() << "describe_in_sandbox accepted a plugin whose constructor aborts";
  } catch (const jr::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("SIGABRT"), std::string::npos) << e.what();
  }
  // The host knows it only by name and path: every worker start dies in the constructor.
  jr::LoadedPlugin p;
  p.name = "hostile_ctor_abort";
  p.path = so;
  opts.quarantine_release_delay_seconds = 0.01;
  auto e = jr::sandbox::make_executor(p, nlohmann::json::object(), opts);
  EXPECT_THROW(e->start(), jr::sandbox::SandboxError);
  for (int i = 0; i < 4; ++i) {
    JobRun r = run_job(*e, "hostile_ctor_abort", "\"x\"", &services, 5000);
    EXPECT_TRUE(r.out.release) << "a start failure must not use an attempt";
    EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::crash);
  }
  EXPECT_TRUE(e->quarantined());
  EXPECT_EQ(e->counters().quarantines.load(), 1u);
  EXPECT_EQ(e->counters().restarts_for(Restart::start_failure), 5u);
  EXPECT_TRUE(logs.has("plugin quarantined"));
  EXPECT_TRUE(logs.has("sandbox worker failed to start"));
  JobRun q = run_job(*e, "hostile_ctor_abort", "\"x\"", &services, 5000);
  EXPECT_TRUE(q.out.release);
  EXPECT_EQ(q.out.host_error_kind, jr::ErrorKind::unavailable);
  EXPECT_EQ(e->counters().released_quarantined.load(), 1u);
}

TEST_F(Hostile, CrashingJobsQuarantineThePluginAfterFiveDeaths) {
  opts.quarantine_release_delay_seconds = 0.01;
  auto e = exec("segv");
  for (int i = 0; i < 5; ++i) {
    JobRun r = run_job(*e, "hostile_segv", "\"x\"", &services, 5000);
    EXPECT_EQ(r.out.host_error_kind, jr::ErrorKind::crash);
    EXPECT_FALSE(r.out.release);
  }
  EXPECT_EQ(e->counters().quarantines.load(), 1u);
  JobRun q = run_job(*e, "hostile_segv", "\"x\"", &services, 5000);
  EXPECT_TRUE(q.out.release);
  EXPECT_TRUE(logs.has("plugin quarantined"));
}

}  // namespace
