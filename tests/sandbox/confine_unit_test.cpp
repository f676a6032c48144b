// The host-side pieces of the confinement layers on their own: uid allocation, cgroup discovery
// and a real plugin cgroup on this machine, the socket directories a config names, and the seals
// of the shared page. (The end-to-end cases are in confine_test.cpp.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "cgroup.hpp"
#include "harness.hpp"
#include "identity.hpp"
#include "policy.hpp"
#include "sandbox.hpp"
#include "worker_output.hpp"
#include "worker_process.hpp"

using namespace jr::sandbox;
namespace fs = std::filesystem;

namespace {

TEST(Identity, EachPluginGetsAStableUidOfItsOwnFromTheRange) {
  if (geteuid() != 0) GTEST_SKIP() << "uids are only changed when the host runs as root";
  WorkerIdentity a = plugin_identity("unit_alpha", "");
  WorkerIdentity b = plugin_identity("unit_beta", "");
  EXPECT_EQ(a.source, "allocated");
  EXPECT_EQ(a.uid, a.gid);
  EXPECT_NE(a.uid, b.uid);
  for (const auto& id : {a, b}) {
    EXPECT_GE(id.uid, kUidBase);
    EXPECT_LT(id.uid, int64_t{kUidBase} + kUidSlots);
  }
  EXPECT_EQ(a.uid, kUidBase + uid_slot("unit_alpha"));
  EXPECT_EQ(plugin_identity("unit_alpha", "").uid, a.uid);  // asked again: the same
  EXPECT_EQ(describe_identity("").uid, kUidBase);
  // A configured user wins; an unknown one is refused by name.
  struct passwd* daemon = getpwnam("daemon");
  ASSERT_NE(daemon, nullptr);
  WorkerIdentity d = plugin_identity("unit_alpha", "daemon");
  EXPECT_EQ(d.uid, daemon->pw_uid);
  EXPECT_EQ(d.source, "configured user daemon");
  try {
    plugin_identity("unit_alpha", "no-such-user-jr");
    ADD_FAILURE() << "an unknown user was accepted";
  } catch (const SandboxError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-user-jr"), std::string::npos);
  }
}

TEST(Identity, TwoPluginsWhoseNamesCollideGetDifferentUids) {
  if (geteuid() != 0) GTEST_SKIP() << "uids are only changed when the host runs as root";
  // Find two names in the same slot (a birthday search over 2^20 slots).
  std::map<uint32_t, std::string> seen;
  std::string x, y;
  for (int i = 0; x.empty() && i < 200000; ++i) {
    std::string n = "collide_" + std::to_string(i);
    auto [it, fresh] = seen.emplace(uid_slot(n), n);
    if (!fresh) {
      x = it->second;
      y = n;
    }
  }
  ASSERT_FALSE(x.empty());
  WorkerIdentity a = plugin_identity(x, ""), b = plugin_identity(y, "");
  EXPECT_NE(a.uid, b.uid);
  EXPECT_EQ(a.uid, kUidBase + uid_slot(x));
  EXPECT_EQ(b.uid, a.uid + 1);  // the next free slot
  EXPECT_EQ(plugin_identity(y, "").uid, b.uid);
}

TEST(Cgroup, MountsAndMembershipAreParsed) {
  std::string mountinfo =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "41 31 0:38 /sub /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
      "50 23 0:40 / /proc rw - proc proc rw\n";
  auto m = parse_cgroup_mounts(mountinfo);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].fstype, "cgroup");
  EXPECT_EQ(m[0].mountpoint, "/sys/fs/cgroup/cpu");
  EXPECT_EQ(m[0].controllers, (std::vector<std::string>{"rw", "cpu", "cpuacct"}));
  EXPECT_EQ(m[2].fstype, "cgroup2");
  EXPECT_EQ(m[2].root, "/sub");  // optional fields before "-" are skipped
  auto own = parse_proc_cgroup("4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/sub/runner\n");
  ASSERT_EQ(own.size(), 3u);
  EXPECT_EQ(own[0].first, std::vector<std::string>{"memory"});
  EXPECT_EQ(own[0].second, "/process_api/x");
  EXPECT_EQ(own[1].first, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_TRUE(own[2].first.empty());
  EXPECT_EQ(own[2].second, "/sub/runner");
}

pid_t spawn_sleep() {
  pid_t pid = -1;
  const char* argv[] = {"sleep", "60", nullptr};
  posix_spawnp(&pid, "sleep", nullptr, nullptr, const_cast<char**>(argv), environ);
  return pid;
}

// A real cgroup on this machine (v2 where usable, else v1): limits, placement, kill, removal.
TEST(Cgroup, APluginCgroupHoldsLimitsKillsItsProcessesAndGoes) {
  if (geteuid() != 0) GTEST_SKIP() << "cgroups need root here";
  auto cg = PluginCgroup::create("unit_cg", {128, 32});
  ASSERT_TRUE(cg->active()) << cg->report().dump();
  EXPECT_EQ(cg->report()["status"], "applied");
  std::vector<std::string> dirs;
  for (const auto& e : fs::recursive_directory_iterator(
           "/sys/fs/cgroup", fs::directory_options::skip_permission_denied)) {
    if (e.is_directory() && e.path().filename().string().find("-unit_cg-") != std::string::npos) {
      dirs.push_back(e.path().string());
    }
  }
  ASSERT_FALSE(dirs.empty());
  pid_t a = spawn_sleep(), b = spawn_sleep();
  ASSERT_GT(a, 0);
  std::string err;
  auto la = cg->place(a, &err);
  auto lb = cg->place(b, &err);
  ASSERT_TRUE(la && lb) << err;
  auto pids = cg->pids();
  EXPECT_EQ(pids, (std::vector<pid_t>{std::min(a, b), std::max(a, b)}));
  // The per-worker memory limit and the plugin's thread limit are in the files.
  bool saw_memory = false, saw_pids = false;
  for (const auto& d : dirs) {
    for (const auto& e : fs::recursive_directory_iterator(d)) {
      std::string f = e.path().filename().string();
      std::ifstream in(e.path());
      std::string v;
      in >> v;
      if (f == "memory.limit_in_bytes" || f == "memory.max") {
        if (e.path().parent_path().filename().string()[0] == 'w') {
          EXPECT_EQ(v, std::to_string(128 << 20)) << e.path();
          saw_memory = true;
        }
      }
      if (f == "pids.max" && e.path().parent_path().string() == d) {
        EXPECT_EQ(v, "32");
        saw_pids = true;
      }
    }
  }
  EXPECT_TRUE(saw_memory);
  EXPECT_TRUE(saw_pids);
  EXPECT_TRUE(cg->kill_all(2000));
  int st = 0;
  EXPECT_EQ(waitpid(a, &st, 0), a);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  EXPECT_EQ(waitpid(b, &st, 0), b);
  la.reset();
  lb.reset();
  cg.reset();
  for (const auto& d : dirs) EXPECT_FALSE(fs::exists(d)) << d;
}

TEST(Cgroup, WithoutCgroupsTheLayerSaysDegraded) {
  auto cg = PluginCgroup::create("unit_none", {128, 32}, true);
  EXPECT_FALSE(cg->active());
  EXPECT_EQ(cg->report().get<std::string>().rfind("degraded: ", 0), 0u);
  EXPECT_FALSE(cg->warning().empty());
  std::string err;
  EXPECT_EQ(cg->place(getpid(), &err), nullptr);
  EXPECT_TRUE(err.empty());
}

TEST(SocketDirs, TheDatabaseSocketDirectoryIsFoundInEveryUrlForm) {
  using V = std::vector<std::string>;
  auto dirs = [](const std::string& url) {
    return unix_socket_dirs(nlohmann::json{{"database_url", url}});
  };
  EXPECT_EQ(dirs("postgresql:///jobs?host=%2Fvar%2Frun%2Fpg&port=5432&user=x"), V{"/var/run/pg"});
  EXPECT_EQ(dirs("postgresql://user:pw@%2Ftmp%2Fpg:5433/jobs"), V{"/tmp/pg"});
  EXPECT_EQ(dirs("host=/run/postgresql dbname=jobs"), V{"/run/postgresql"});
  EXPECT_EQ(dirs("postgresql://u:p@127.0.0.1:5432/jobs"), V{});
  EXPECT_EQ(dirs("postgresql:///jobs?host=/a,/b/"), (V{"/a", "/b"}));
  EXPECT_EQ(dirs("host=/x/../etc dbname=j"), V{});  // no climbing
  EXPECT_EQ(unix_socket_dirs(nlohmann::json::object()), V{});
}

TEST(SharedPage, TheMemfdIsSealedAgainstShrinkingAndGrowing) {
  std::string err;
  auto w = WorkerProcess::spawn(default_worker_path(), jrtest::plugin_dir() + "/libjr_echo.so",
                                proto::kDefaultMaxFrame, &err);
  ASSERT_TRUE(w) << err;
  int seals = w->shared_seals();
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_EQ(seals & F_SEAL_WRITE, 0);  // both sides write it
}

TEST(Policy, ScratchMbIsParsedAndBounded) {
  EXPECT_EQ(make_policy(nlohmann::json::object(), nullptr, nlohmann::json::object()).scratch_mb,
            256);
  EXPECT_EQ(make_policy({{"sandbox", {{"scratch_mb", 16}}}}, nullptr, nlohmann::json::object())
                .scratch_mb,
            16);
  EXPECT_THROW(make_policy({{"sandbox", {{"scratch_mb", 0}}}}, nullptr, nlohmann::json::object()),
               PolicyError);
  EXPECT_THROW(
      make_policy({{"sandbox", {{"scratch_mb", "big"}}}}, nullptr, nlohmann::json::object()),
      PolicyError);
}

// The reader on its own: lines tagged with the job, an overlong line cut, a flood over the
// budget dropped and counted in one notice, what is left read when the output is detached.
TEST(WorkerOutput, LinesAreTaggedCutAndBudgeted) {
  int out[2], err[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(err, O_CLOEXEC), 0);
  std::mutex mu;
  std::vector<std::pair<std::string, nlohmann::json>> seen;
  auto w = WorkerOutput::attach(out[0], err[0], "file.so", 4242);
  OutputLimits lim;
  lim.line_max = 64;
  lim.bytes_per_second = 1000;
  w->configure("unit_plugin", lim,
               [&](jr::log::Level, const std::string& m, const nlohmann::json& f) {
                 std::lock_guard<std::mutex> l(mu);
                 seen.emplace_back(m, f);
               });
  w->set_job(77);
  std::string text = "hello\n" + std::string(200, 'x') + "\nafter\n";
  ASSERT_EQ(write(err[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ASSERT_EQ(write(out[1], "to stdout\n", 10), 10);
  // The two pipes are read in whatever order poll reports them: the flood goes out only once
  // the lines above were read, so the budget it exhausts cannot be the one they needed.
  auto lines_seen = [&] {
    std::lock_guard<std::mutex> l(mu);
    return seen.size();
  };
  auto t0 = std::chrono::steady_clock::now();
  while (lines_seen() < 4 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(lines_seen(), 4u);  // hello, the cut line, after, to stdout
  std::string flood;
  for (int i = 0; i < 100; ++i) flood += std::string(50, 'f') + "\n";  // 5100 bytes > 1000/s
  ASSERT_EQ(write(err[1], flood.data(), flood.size()), static_cast<ssize_t>(flood.size()));
  close(out[1]);
  close(err[1]);
  w.reset();  // drains what is left
  std::lock_guard<std::mutex> l(mu);
  int hello = 0, cut = 0, after = 0, stdout_lines = 0, flood_lines = 0, notices = 0;
  for (const auto& [msg, f] : seen) {
    if (msg == "plugin output dropped") {
      ++notices;
      EXPECT_GT(f.value("dropped_lines", 0), 0);
      continue;
    }
    ASSERT_EQ(msg, "plugin output");
    EXPECT_EQ(f.value("plugin", ""), "unit_plugin");
    EXPECT_EQ(f.value("pid", 0), 4242);
    EXPECT_EQ(f.value("job_id", 0), 77);
    std::string t = f.value("text", "");
    EXPECT_LE(t.size(), 64u);
    hello += t == "hello";
    after += t == "after";
    flood_lines += !t.empty() && t[0] == 'f';
    if (f.value("truncated", false)) {
      EXPECT_EQ(t, std::string(64, 'x'));
      ++cut;
    }
    if (f.value("stream", "") == "stdout") {
      EXPECT_EQ(t, "to stdout");
      ++stdout_lines;
    }
  }
  EXPECT_EQ(hello, 1);
  EXPECT_EQ(cut, 1);
  EXPECT_EQ(after, 1);
  EXPECT_EQ(stdout_lines, 1);
  EXPECT_LT(flood_lines, 30) << "the budget of 1000 bytes per second was not kept";
  EXPECT_EQ(notices, 1);
}

}  // namespace
