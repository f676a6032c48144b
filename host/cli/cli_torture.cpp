// `runner torture`: a stress test against a given database. Enqueues jobs with random
// failures, timeouts and snoozes into a private queue, runs K runner processes over them while
// killing (-9) and restarting them at random, then checks that every job reached the final
// state it had to, that none was lost and that none ran twice (a completion fenced off, or a
// lease lost by a runner that was never killed), and reports re-executions and throughput.
// Fails (exit 1) on any of these, and when fewer kills than --min-kills happened.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "log.hpp"

namespace fs = std::filesystem;

namespace jr::cli {
namespace {

pid_t spawn_runner(const std::vector<std::string>& args, const std::string& log_path) {
  std::string self = fs::read_symlink("/proc/self/exe").string();
  pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::freopen(log_path.c_str(), "a", stderr);
    (void)f;
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(self.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

// Jobs of `queue` not final yet (every state in jr_jobs), from the store's queue depths.
int64_t unfinished(Store& store, const std::string& queue) {
  auto depths = nlohmann::json::parse(store.QueueDepths());
  int64_t n = 0;
  if (depths.contains(queue)) {
    for (const auto& [state, count] : depths[queue].items()) n += count.get<int64_t>();
  }
  return n;
}

}  // namespace

int cmd_torture(const GlobalFlags& g, const TortureFlags& f) {
  Config cfg = build_config(g);
  std::string url = migrated_database(cfg);
  std::string plugins = f.plugins;
  if (plugins.empty()) {
    plugins = (fs::read_symlink("/proc/self/exe").parent_path() / "plugins").string();
  }
  if (!fs::exists(plugins + "/libjr_echo.so")) {
    std::cerr << "runner torture: needs the echo plugin: no libjr_echo.so in " << plugins
              << " (give --plugins DIR)\n";
    return kExitUsage;
  }
  std::mt19937_64 rng(f.seed ? f.seed : std::random_device{}());
  std::string queue = "torture-" + std::to_string(rng() % 1000000);
  // The jobs, with the final state each must reach. More waves are added while the kills
  // asked for (--min-kills) have not happened yet: a fast machine must not finish the run
  // before the faults it is meant to survive.
  std::vector<int64_t> ids;
  std::vector<std::string> expect;
  auto store = Store::open(url);
  auto enqueue_wave = [&](int n) {
    std::vector<JobInsertParams> jobs;
    double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    for (int i = 0; i < n; ++i) {
      JobInsertParams p;
      p.kind = "echo";
      p.queue = queue;
      p.max_attempts = 10;
      p.retry_schedule = "0,1";
      int dice = static_cast<int>(rng() % 100);
      int sleep = static_cast<int>(rng() % 30);
      std::string e = "completed";
      if (dice < 65) {
        p.payload = "{\"sleep_ms\":" + std::to_string(sleep) + "}";
      } else if (dice < 80) {
        p.payload = "{\"sleep_ms\":" + std::to_string(sleep) +
                    ",\"fail_attempts\":" + std::to_string(1 + rng() % 3) + "}";
      } else if (dice < 85) {
        p.payload = R"({"fail":"permanent"})";
        e = "discarded";
      } else if (dice < 90) {
        p.payload = R"({"sleep_ms":3000})";  // always times out
        p.timeout_ms = 150;
        p.max_attempts = 2;
        e = "discarded";
      } else {
        p.payload = "{\"snooze_until\":" + std::to_string(now + 1 + rng() % 3) + "}";
      }
      jobs.push_back(std::move(p));
      expect.push_back(e);
    }
    for (int64_t id : store->JobInsertMany(jobs)) ids.push_back(id);
  };
  enqueue_wave(f.jobs);
  std::cout << "torture: " << ids.size() << " jobs in queue " << queue << ", " << f.runners
            << " runners x " << f.concurrency << " slots, kills every ~" << f.kill_every
            << " s, at least " << f.min_kills << " kill -9\n"
            << std::flush;

  char tmpl[] = "/tmp/jr-torture-XXXXXX";
  std::string logdir = mkdtemp(tmpl) ? tmpl : "/tmp";
  std::vector<std::string> args = {
      "--database",      url,   "--plugins",         plugins,
      "--queues",        queue, "--concurrency",     std::to_string(f.concurrency),
      "--lease-seconds", "2",   "--rescue-interval", "0.5",
      "--poll-interval", "0.1", "--shutdown-grace",  "1s",
      "--log-level",     "warn"};
  // Each runner process has its own worker id, so every lease_lost entry names the process
  // that lost it: only a killed (-9) one may.
  std::vector<pid_t> pids;
  std::vector<std::string> worker_ids;
  std::vector<uintmax_t> log_sizes;  // each runner's log file size when it was started
  std::set<std::string> killed_workers;
  int generation = 0;
  auto spawn = [&](size_t i) {
    std::string id = queue + "-r" + std::to_string(i) + "-g" + std::to_string(++generation);
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--worker-id", id});
    std::string log = logdir + "/runner" + std::to_string(i) + ".log";
    std::error_code ec;
    uintmax_t log_size = fs::exists(log, ec) ? fs::file_size(log, ec) : 0;
    pid_t pid = spawn_runner(a, log);
    if (i < pids.size()) {
      pids[i] = pid;
      worker_ids[i] = id;
      log_sizes[i] = log_size;
    } else {
      pids.push_back(pid);
      worker_ids.push_back(id);
      log_sizes.push_back(log_size);
    }
  };
  for (int i = 0; i < f.runners; ++i) spawn(static_cast<size_t>(i));
  auto t0 = std::chrono::steady_clock::now();
  auto next_kill = t0 + std::chrono::milliseconds(static_cast<int64_t>(f.kill_every * 1000));
  int kills = 0, terms = 0, unclean_exits = 0, terms_before_start = 0;
  std::error_code fs_ec;
  bool done = false;
  auto last_report = t0;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now_t = std::chrono::steady_clock::now();
    int64_t left = unfinished(*store, queue);
    done = left == 0;
    if (done && f.kill_every > 0 && kills < f.min_kills &&
        now_t - t0 < std::chrono::seconds(f.time_limit)) {
      int n = std::max(100, f.jobs / 4);
      enqueue_wave(n);
      std::cout << "  all final after " << kills << " kill -9 of " << f.min_kills
                << ": another wave of " << n << " jobs\n"
                << std::flush;
      done = false;
      continue;
    }
    if (now_t - last_report > std::chrono::seconds(2)) {
      std::cout << "  " << left << " jobs not final yet, " << kills << " kills, " << terms
                << " SIGTERMs\n"
                << std::flush;
      last_report = now_t;
    }
    if (now_t - t0 > std::chrono::seconds(f.time_limit)) {
      std::cerr << "runner torture: time limit reached with " << left << " jobs not final\n";
      break;
    }
    if (!done && f.kill_every > 0 && now_t >= next_kill) {
      size_t victim = rng() % pids.size();
      bool term = rng() % 4 == 0;
      kill(pids[victim], term ? SIGTERM : SIGKILL);
      int status = 0;
      waitpid(pids[victim], &status, 0);
      (term ? terms : kills)++;
      // A runner that did not exit 0 on SIGTERM was not clean either: its leases count as lost.
      if (!term || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        killed_workers.insert(worker_ids[victim]);
      }
      // A SIGTERM that lands before the runner's main() holds the signal (the first moments of
      // exec, dynamic loading) kills it by the default action: it had written no line, claimed
      // nothing and held nothing, so there is nothing it could shut down uncleanly.
      bool before_start = term && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM &&
                          fs::file_size(logdir + "/runner" + std::to_string(victim) + ".log",
                                        fs_ec) == log_sizes[victim] &&
                          !fs_ec;
      if (before_start) ++terms_before_start;
      if (term && !before_start && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        ++unclean_exits;
        // Say how, with the end of its log (the file is reused by the next runner in the slot).
        std::cerr << "runner torture: runner " << worker_ids[victim] << " "
                  << (WIFEXITED(status) ? "exited " + std::to_string(WEXITSTATUS(status))
                                        : "died of signal " + std::to_string(WTERMSIG(status)))
                  << " on SIGTERM; the end of its log:\n";
        std::ifstream in(logdir + "/runner" + std::to_string(victim) + ".log");
        std::vector<std::string> tail;
        for (std::string line; std::getline(in, line);) {
          tail.push_back(line);
          if (tail.size() > 15) tail.erase(tail.begin());
        }
        for (const auto& line : tail) std::cerr << "  " << line << "\n";
      }
      spawn(victim);
      next_kill = now_t + std::chrono::milliseconds(static_cast<int64_t>(
                              f.kill_every * 1000 * (0.5 + (rng() % 1000) / 1000.0)));
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (pid_t p : pids) kill(p, SIGTERM);
  for (pid_t p : pids) waitpid(p, nullptr, 0);

  // Verify.
  // Each job's final state, and the attempts it lost to an expired lease. A lease lost by a
  // runner that was never killed means a live runner's job was run again elsewhere while it
  // still ran it.
  int lost = 0, wrong = 0;
  int64_t reexecuted = 0, live_lost = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto view = store->JobGet(ids[i]);
    if (!view) {
      ++lost;
      continue;
    }
    auto job = nlohmann::json::parse(view->json);
    std::string st = job.value("state", "");
    if (st != expect[i]) {
      ++wrong;
      if (wrong <= 5) {
        std::cerr << "  job " << ids[i] << " ended " << st << ", expected " << expect[i] << "\n";
      }
    }
    if (!job.contains("errors") || !job["errors"].is_array()) continue;
    for (const auto& e : job["errors"]) {
      // Read defensively: an entry that is not an object, or whose kind is null, is skipped
      // (as the SQL this replaced skipped it).
      if (!e.is_object()) continue;
      auto kind = e.find("kind");
      if (kind == e.end() || !kind->is_string() || *kind != "lease_lost") continue;
      ++reexecuted;
      std::string w = e.contains("worker_id") && e["worker_id"].is_string()
                          ? e["worker_id"].get<std::string>()
                          : "";
      if (killed_workers.count(w)) continue;
      if (++live_lost <= 5) {
        std::cerr << "  job " << ids[i] << " lost its lease while runner '" << w
                  << "' was alive: it ran twice\n";
      }
    }
  }
  int64_t fenced = 0;
  for (int i = 0; i < f.runners; ++i) {
    std::ifstream in(logdir + "/runner" + std::to_string(i) + ".log");
    for (std::string line; std::getline(in, line);) {
      if (line.find("outcome rejected") != std::string::npos) ++fenced;
    }
  }
  // A completion fenced off means a handler ran to completion on an attempt that was no
  // longer the job's: the job ran twice.
  nlohmann::json out = {{"jobs", ids.size()},
                        {"lost", lost},
                        {"wrong_state", wrong},
                        {"ran_twice_live_lease_lost", live_lost},
                        {"unclean_sigterm_exits", unclean_exits},
                        {"sigterms_before_start", terms_before_start},
                        {"attempts_lost_to_kills", reexecuted},
                        {"fenced_completions", fenced},
                        {"kills", kills},
                        {"sigterms", terms},
                        {"seconds", secs},
                        {"jobs_per_second", ids.size() / secs},
                        {"queue", queue},
                        {"logs", logdir}};
  std::cout << "torture: " << ids.size() << " jobs, " << lost << " lost, " << wrong
            << " in a wrong final state, " << live_lost << " leases lost by live runners, "
            << reexecuted << " attempts re-run after a kill (possible duplicates), " << fenced
            << " late completions fenced off, " << kills << " kill -9, " << terms << " SIGTERM ("
            << terms_before_start << " before the runner had started), "
            << static_cast<int64_t>(ids.size() / secs) << " jobs/s\n"
            << out.dump() << "\n";
  if (fenced > 0 || live_lost > 0) {
    std::cerr << "runner torture: jobs ran twice: " << fenced
              << " duplicate completions fenced off, " << live_lost
              << " leases lost by live runners\n";
  }
  if (unclean_exits > 0) {
    std::cerr << "runner torture: " << unclean_exits << " runners did not exit 0 on SIGTERM\n";
  }
  if (f.kill_every > 0 && kills < f.min_kills) {
    std::cerr << "runner torture: only " << kills << " kill -9 of the " << f.min_kills
              << " asked for (--min-kills) within the time limit\n";
  }
  bool ok = lost == 0 && wrong == 0 && done && fenced == 0 && live_lost == 0 &&
            unclean_exits == 0 && (f.kill_every <= 0 || kills >= f.min_kills);
  if (ok) fs::remove_all(logdir);
  return ok ? kExitOk : kExitError;
}

void register_torture(CLI::App& app, Context& ctx) {
  auto tf = std::make_shared<TortureFlags>();
  auto* torture = app.add_subcommand(
      "torture", "stress test: random failures, timeouts and kills; verifies nothing is lost");
  torture->fallthrough();
  torture->add_option("--jobs", tf->jobs, "jobs to run (default 2000)")
      ->check(CLI::Range(1, 10000000));
  torture->add_option("--runners", tf->runners, "runner processes (default 3)")
      ->check(CLI::Range(1, 64));
  torture->add_option("--kill-every", tf->kill_every, "seconds between random kills (0: none)");
  torture
      ->add_option("--min-kills", tf->min_kills,
                   "kill -9s the run must see; more jobs are enqueued until then (default 4)")
      ->check(CLI::Range(0, 1000));
  torture->add_option("--time-limit", tf->time_limit, "give up after this many seconds");
  torture->add_option("--seed", tf->seed, "random seed (default: random)");
  // The runners it starts take these two worker flags.
  ctx.worker_flags_of["torture"] = {"--plugins", "--concurrency"};
  on_parsed(torture, ctx, [&ctx, tf] {
    tf->plugins = ctx.w.of("worker.plugins");
    std::string c = ctx.w.of("worker.concurrency");  // in range: checked by CLI11
    tf->concurrency = c.empty() ? 50 : std::stoi(c);
    return cmd_torture(ctx.g, *tf);
  });
}

}  // namespace jr::cli
