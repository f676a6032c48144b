// Red-team cases of issue 16, classes 5 and 8, through the real runner (RedTeamFixture: the
// hostile plugin beside the healthy echo plugin, as root): the shared page, the worker's output,
// memory outside the rlimits (memfd), threads, scratch space, names outside the grants, other
// plugins' workers, and the pool's processes when it is killed. The hostile plugin is
// tests/testplugins/hostile/confine.c.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "redteam.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using jrtest::wait_until;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The cgroup directories a runner made for a plugin (every hierarchy: v2, or v1's pids, memory,
// cpu, freezer): names "jr-<pid ns>-<runner pid>-<plugin>-<n>".
std::vector<std::string> plugin_cgroups(pid_t runner, const std::string& plugin) {
  std::vector<std::string> out;
  std::string needle = "-" + std::to_string(runner) + "-" + plugin + "-";
  std::function<void(const std::string&, int)> walk = [&](const std::string& dir, int depth) {
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return;
    while (dirent* e = readdir(d)) {
      if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
      std::string name = e->d_name, path = dir + "/" + name;
      if (name.rfind("jr-", 0) == 0 && name.find(needle) != std::string::npos) {
        out.push_back(path);
      } else if (depth > 0) {
        walk(path, depth - 1);
      }
    }
    closedir(d);
  };
  walk("/sys/fs/cgroup", 4);
  return out;
}

// Every process in those cgroups (and their sub-cgroups).
std::set<pid_t> cgroup_procs(const std::vector<std::string>& dirs) {
  std::set<pid_t> out;
  std::function<void(const std::string&)> walk = [&](const std::string& dir) {
    std::istringstream in(slurp(dir + "/cgroup.procs"));
    for (long p; in >> p;) out.insert(static_cast<pid_t>(p));
    for (const auto& e :
         fs::directory_iterator(dir, fs::directory_options::skip_permission_denied)) {
      if (e.is_directory()) walk(e.path().string());
    }
  };
  for (const auto& d : dirs) {
    std::error_code ec;
    if (fs::exists(d, ec)) walk(d);
  }
  return out;
}

// Alive and not a zombie.
bool running(pid_t pid) {
  std::string st = slurp("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = st.rfind(')');
  return paren != std::string::npos && paren + 2 < st.size() && st[paren + 2] != 'Z';
}

// The file status flags of a process' fd (from /proc/PID/fdinfo/FD), -1 if unknown.
long fd_flags(pid_t pid, int fd) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd)));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags:", 0) == 0) return std::stol(line.substr(6), nullptr, 8);
  }
  return -1;
}

std::string scratch_root() {
  const char* t = std::getenv("TMPDIR");
  return t != nullptr && *t ? t : "/tmp";
}

class Confine : public jrtest::RedTeamFixture {
 protected:
  static std::string so(const std::string& c) {
    return jrtest::test_plugin_dir() + "/hostile_" + c + "/libjr_h_" + c + ".so";
  }
  // Enqueues one job running `cmd` (one attempt) and waits until it is finished; its status.
  nlohmann::json run(const std::string& kind, const std::string& cmd,
                     std::chrono::milliseconds limit = 60s) {
    int64_t id = enqueue({"enqueue", kind, "--payload", nlohmann::json({{"arg", cmd}}).dump(),
                          "--max-attempts", "1"});
    last_id_ = id;
    std::string state = wait_finished(id, limit);
    EXPECT_FALSE(state.empty()) << "job " << cmd << " did not finish\n" << runner_->log();
    return state.empty() ? nlohmann::json::object() : status(id);
  }
  bool wait_log(const std::string& needle, std::chrono::milliseconds limit = 30s) {
    return wait_until([&] { return runner_->log().find(needle) != std::string::npos; }, limit);
  }
  // Until the runner logged that `plugin`'s pool started.
  bool wait_loaded(const std::string& plugin, std::chrono::milliseconds limit = 30s) {
    return wait_until(
        [&] {
          std::istringstream in(runner_->log());
          for (std::string line; std::getline(in, line);) {
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (!j.is_discarded() && j.value("msg", "") == "plugin loaded in the sandbox" &&
                j.value("plugin", "") == plugin) {
              return true;
            }
          }
          return false;
        },
        limit);
  }
  // Scratch directories the runner made for `plugin`'s workers.
  std::vector<std::string> scratch_dirs(const std::string& plugin) {
    std::vector<std::string> out;
    std::string prefix = "jr-sandbox-" + plugin + "-" + std::to_string(runner_->pid()) + "-";
    for (const auto& e : fs::directory_iterator(scratch_root())) {
      if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
    }
    return out;
  }
  int64_t last_id_ = 0;
};

// Class 5: ftruncate of the shared page made the runner die of SIGBUS at the next job.
TEST_F(Confine, TheSharedPageCannotBeTruncated) {
  start_runner({so("confine")});
  enqueue_healthy(50);
  nlohmann::json st = run("hostile_confine", "truncate_shared");
  EXPECT_EQ(st.value("state", ""), "completed") << st.dump();
  EXPECT_EQ(st["result"].value("truncated", -1), 0) << st.dump();
  // The same warm worker serves the next jobs (one at a time: the first slot is always free),
  // so the host writes its page again for each.
  for (int i = 0; i < 5 && runner_->alive(); ++i) {
    nlohmann::json ok = run("hostile_confine", "ok", 15s);
    EXPECT_EQ(ok.value("state", ""), "completed") << ok.dump();
  }
  ASSERT_TRUE(runner_->alive()) << "the runner died\n" << runner_->log();
  stop_and_check();
}

// Class 5: fd 1/2 of a worker were the runner's stderr: truncated, reflagged, forged lines.
TEST_F(Confine, WorkerOutputIsAPipeTaggedAndBounded) {
  start_runner({so("confine")});
  enqueue_healthy(20);
  ASSERT_TRUE(wait_loaded("hostile_confine")) << runner_->log();
  long before = fd_flags(runner_->pid(), 2);
  nlohmann::json st = run("hostile_confine", "output");
  int64_t job = last_id_;
  EXPECT_EQ(st.value("state", ""), "completed") << st.dump();
  long after = fd_flags(runner_->pid(), 2);
  EXPECT_EQ(after & (O_NONBLOCK | O_APPEND), before & (O_NONBLOCK | O_APPEND))
      << "the plugin changed the flags of the runner's stderr";
  std::string log = stop_and_check();
  EXPECT_NE(log.find("plugin loaded in the sandbox"), std::string::npos)
      << "the runner's log lost its start (truncated)";
  int forged_tagged = 0, stdout_lines = 0, cut = 0, flood = 0, dropped_notices = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not a JSON log line: " << line.substr(0, 200);
    EXPECT_NE(j.value("msg", ""), "forged by plugin") << "a plugin forged a log line: " << line;
    if (j.value("msg", "") == "plugin output dropped" &&
        j.value("plugin", "") == "hostile_confine") {
      ++dropped_notices;
      EXPECT_GT(j.value("dropped_lines", 0), 0);
    }
    if (j.value("msg", "") != "plugin output" || j.value("plugin", "") != "hostile_confine")
      continue;
    EXPECT_GT(j.value("pid", 0), 0);
    std::string text = j.value("text", "");
    EXPECT_LE(text.size(), 4096u);
    if (text.find("forged by plugin") != std::string::npos) {
      EXPECT_EQ(j.value("job_id", int64_t{0}), job) << line;
      if (j.value("stream", "") == "stderr") {
        EXPECT_EQ(j.value("level", ""), "warn");
        ++forged_tagged;
      } else {
        EXPECT_EQ(j.value("stream", ""), "stdout");
        EXPECT_EQ(j.value("level", ""), "info");
        ++stdout_lines;
      }
    }
    if (j.value("truncated", false)) {
      EXPECT_EQ(text, std::string(4096, 'x'));
      ++cut;
    }
    if (!text.empty() && text[0] == 'f') ++flood;
  }
  EXPECT_EQ(forged_tagged, 1);
  EXPECT_EQ(stdout_lines, 1);
  EXPECT_EQ(cut, 1) << "the 100,000-byte line was not cut once at 4096 bytes";
  // 4 MB were written in 1 KB lines; the budget is 64 KiB per second (plus one second's burst).
  EXPECT_LT(flood, 512) << "the flood was not bounded";
  EXPECT_GE(dropped_notices, 1);
}

// Class 8: memfds held 2.7 GB under a 1 GB address-space limit, and stayed held while idle.
TEST_F(Confine, MemfdsCountAgainstTheMemoryLimit) {
  start_runner({so("confine")});
  enqueue_healthy(20);
  ASSERT_TRUE(wait_loaded("hostile_confine")) << runner_->log();
  nlohmann::json st = run("hostile_confine", "memfd 1024");  // its memory_mb is 256
  if (st.value("state", "") == "completed") {
    EXPECT_LE(st["result"].value("held_mb", 9999), 256) << st.dump();
  } else {
    ASSERT_TRUE(st.contains("errors")) << st.dump();
    EXPECT_EQ(st["errors"][0].value("kind", ""), "oom") << st.dump();
  }
  // Idle now: whatever worker serves the plugin holds no more than its limit.
  nlohmann::json held = run("hostile_confine", "held");
  EXPECT_LE(held["result"].value("held_mb", 9999), 256) << held.dump();
  auto cgroups = plugin_cgroups(runner_->pid(), "hostile_confine");
  ASSERT_FALSE(cgroups.empty()) << "the plugin has no cgroup";
  int64_t charged = -1;
  for (const auto& d : cgroups) {
    for (const char* f : {"/memory.current", "/memory.usage_in_bytes"}) {
      std::string v = slurp(d + f);
      if (!v.empty()) charged = std::max<int64_t>(charged, std::stoll(v));
    }
  }
  ASSERT_GE(charged, 0) << "no memory cgroup for the plugin";
  EXPECT_LE(charged, int64_t{300} << 20) << "memory charged to the idle plugin's workers";
  stop_and_check();
}

// Class 8: a thread bomb in one plugin stopped every other plugin from creating threads (all
// shared `nobody`, so RLIMIT_NPROC counted them together).
TEST_F(Confine, AThreadBombDoesNotStopAnotherPluginsThreads) {
  start_runner({so("confine"), so("confine_peer")},
               "[plugins.hostile_confine.sandbox]\nmax_threads = 64\n"
               "[plugins.hostile_confine_peer.sandbox]\nmax_threads = 64\n");
  enqueue_healthy(20);
  nlohmann::json bomb = run("hostile_confine", "threadbomb");
  EXPECT_EQ(bomb.value("state", ""), "completed") << bomb.dump();
  EXPECT_GT(bomb["result"].value("threads", 0), 0) << bomb.dump();
  EXPECT_LE(bomb["result"].value("threads", 0), 64) << bomb.dump();
  // The bomb's threads are still alive in its warm worker.
  nlohmann::json peer = run("hostile_confine_peer", "threads 8");
  EXPECT_EQ(peer.value("state", ""), "completed") << peer.dump();
  EXPECT_EQ(peer["result"].value("threads", 0), 8) << peer.dump();
  stop_and_check();
}

// Class 8: chmod of another plugin's scratch dir succeeded (same uid; Landlock has no chmod).
TEST_F(Confine, ChmodOfAnotherPluginsScratchDirFails) {
  start_runner({so("confine")});
  enqueue_healthy(10);
  ASSERT_TRUE(wait_loaded("hostile_confine")) << runner_->log();
  auto dirs = scratch_dirs("echo");
  ASSERT_FALSE(dirs.empty()) << "no scratch dir of echo in " << scratch_root();
  nlohmann::json st = run("hostile_confine", "chmod " + dirs[0]);
  EXPECT_NE(st["result"].value("chmod", 0), 0) << st.dump();
  struct stat sb {};
  ASSERT_EQ(stat(dirs[0].c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 07777, 0700u);
  stop_and_check();
}

// Class 8: disk use had no total; the scratch area is a tmpfs of scratch_mb.
TEST_F(Confine, DiskWritesBeyondTheScratchLimitFail) {
  start_runner({so("confine")},
               "[plugins.hostile_confine.sandbox]\nscratch_mb = 16\nmemory_mb = 512\n");
  enqueue_healthy(10);
  nlohmann::json st = run("hostile_confine", "fill 64");
  EXPECT_EQ(st.value("state", ""), "completed") << st.dump() << runner_->log();
  EXPECT_LE(st["result"].value("written_mb", 999), 16) << st.dump();
  EXPECT_EQ(st["result"].value("errno", 0), ENOSPC) << st.dump();
  stop_and_check();
}

// Class 8: names and metadata outside the grants were visible (stat, inotify), and files beside
// the plugin in its directory were readable.
TEST_F(Confine, NamesOutsideTheGrantsAreNotVisible) {
  start_runner({so("confine")});
  enqueue_healthy(10);
  ASSERT_TRUE(wait_loaded("hostile_confine")) << runner_->log();
  std::ofstream(plugins_ + "/secret.txt") << "beside the plugin\n";
  chmod((plugins_ + "/secret.txt").c_str(), 0644);
  auto echo_scratch = scratch_dirs("echo");
  ASSERT_FALSE(echo_scratch.empty());
  nlohmann::json st =
      run("hostile_confine", "stat /usr /home /root /etc/shadow /proc/1 " + plugins_ + " " +
                                 plugins_ + "/secret.txt " + echo_scratch[0] + " /var/lib");
  ASSERT_EQ(st.value("state", ""), "completed") << st.dump();
  // Only the control (/usr, which every worker reads) is there.
  EXPECT_EQ(st["result"]["visible"], nlohmann::json::array({"/usr"})) << st.dump();
  stop_and_check();
}

// Class 8: sched_setaffinity of another plugin's workers succeeded (same uid).
TEST_F(Confine, AnotherPluginsWorkersAreOutOfReach) {
  start_runner({so("confine")}, "[plugins.hostile_confine.sandbox]\nworkers = 1\n");
  enqueue_healthy(10);
  nlohmann::json me = run("hostile_confine", "ok");
  pid_t self = me["result"].value("pid", 0);
  ASSERT_GT(self, 0) << me.dump();
  std::string others;
  int n = 0;
  for (pid_t p : workers_of(runner_->pid())) {
    if (p == self) continue;
    others += " " + std::to_string(p);
    ++n;
  }
  ASSERT_GT(n, 0) << "no echo worker found";
  nlohmann::json st = run("hostile_confine", "affinity" + others);
  EXPECT_EQ(st["result"]["changed"], nlohmann::json::array()) << st.dump();
  stop_and_check();
}

// Class 8: killing the pool (quarantine, runner stop) leaves no process in the plugin's cgroup.
TEST_F(Confine, KillingThePoolLeavesNoProcessInItsCgroup) {
  // The whole pool warm (by default as many workers as CPUs start with it).
  start_runner({so("confine")}, "", {"--sandbox-warm-workers", "4"});
  enqueue_healthy(20);
  ASSERT_TRUE(wait_loaded("hostile_confine")) << runner_->log();
  auto cgroups = plugin_cgroups(runner_->pid(), "hostile_confine");
  ASSERT_FALSE(cgroups.empty()) << "the plugin has no cgroup";
  EXPECT_EQ(cgroup_procs(cgroups).size(), 4u) << "the warm pool (4 workers) is in its cgroup";
  // Five crashes within a minute quarantine the plugin: its warm workers go too.
  for (int i = 0; i < 5; ++i) {
    enqueue(
        {"enqueue", "hostile_confine", "--payload", R"({"arg":"crash"})", "--max-attempts", "1"});
  }
  ASSERT_TRUE(wait_log("plugin quarantined", 60s)) << runner_->log();
  EXPECT_TRUE(wait_until([&] { return cgroup_procs(cgroups).empty(); }, 5s))
      << cgroup_procs(cgroups).size() << " processes left in the quarantined plugin's cgroup";
  stop_and_check();
  for (const auto& d : cgroups) EXPECT_FALSE(fs::exists(d)) << d << " outlived the runner";
}

// Class 8: a worker that cleared its parent-death signal (and kept its job running) outlived a
// killed runner; the next runner on the machine empties the cgroups of runners that are gone
// (and removes their scratch dirs).
TEST_F(Confine, AWorkerOutlivingAKilledRunnerIsKilledByTheNext) {
  start_runner({so("confine")}, "[plugins.hostile_confine.sandbox]\nworkers = 1\n");
  int64_t job = enqueue(
      {"enqueue", "hostile_confine", "--payload", R"({"arg":"orphan"})", "--max-attempts", "1"});
  pid_t orphan = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        std::string log = runner_->log();
        size_t at = log.find("orphan pid ");
        if (at != std::string::npos) orphan = std::atoi(log.c_str() + at + 11);
        return orphan > 0;
      },
      30s))
      << runner_->log();
  pid_t first = runner_->pid();
  std::vector<std::string> old_scratch = scratch_dirs("hostile_confine");
  EXPECT_FALSE(old_scratch.empty());
  runner_->signal(SIGKILL);
  runner_->wait(10s);
  // Its job was running when its runner was killed: not a stalled heartbeat, take it away so
  // the next runner neither rescues it (lease_lost) nor runs it again.
  jrtest::PgCluster::exec(url_, "DELETE FROM jr_jobs WHERE id = " + std::to_string(job));
  // The other workers die with the runner (parent-death signal); the orphan is still there.
  start_runner({so("confine")});
  bool gone = wait_until([&] { return !running(orphan); }, 10s);
  EXPECT_TRUE(gone) << "worker " << orphan << " of the killed runner " << first
                    << " is still running";
  if (!gone) ::kill(orphan, SIGKILL);
  EXPECT_TRUE(wait_until([&] { return plugin_cgroups(first, "hostile_confine").empty(); }, 10s))
      << "the killed runner's cgroups were not removed";
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& d : old_scratch) {
          if (fs::exists(d)) return false;
        }
        return true;
      },
      30s))
      << "the killed runner's scratch dirs were left behind";
  enqueue_healthy(10);
  stop_and_check();
}

}  // namespace
