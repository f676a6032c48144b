// `runner torture`: a stress test against a given database. Enqueues jobs with random
// failures, timeouts and snoozes into a private queue, runs K runner processes over them while
// killing (-9) and restarting them at random, then checks that every job reached the final
// state it had to, that none was lost, and reports re-executions and throughput.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
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

std::string q1(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? "0" : r[0][0].c_str();
}

}  // namespace

int cmd_torture(const GlobalFlags& g, const TortureFlags& f) {
  Config cfg = build_config(g);
  std::string url = resolve_database(cfg);
  Store::open(url)->SchemaMigrate();
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
  // The jobs, with the final state each must reach.
  std::vector<JobInsertParams> jobs;
  std::vector<std::string> expect;
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (int i = 0; i < f.jobs; ++i) {
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
  auto store = Store::open(url);
  auto ids = store->JobInsertMany(jobs);
  std::cout << "torture: " << ids.size() << " jobs in queue " << queue << ", " << f.runners
            << " runners x " << f.concurrency << " slots, kills every ~" << f.kill_every << " s\n"
            << std::flush;

  char tmpl[] = "/tmp/jr-torture-XXXXXX";
  std::string logdir = mkdtemp(tmpl) ? tmpl : "/tmp";
  std::vector<std::string> args = {
      "--database",      url,   "--plugins",         plugins,
      "--queues",        queue, "--concurrency",     std::to_string(f.concurrency),
      "--lease-seconds", "2",   "--rescue-interval", "0.5",
      "--poll-interval", "0.1", "--shutdown-grace",  "1s",
      "--log-level",     "warn"};
  std::vector<pid_t> pids;
  for (int i = 0; i < f.runners; ++i) {
    pids.push_back(spawn_runner(args, logdir + "/runner" + std::to_string(i) + ".log"));
  }
  pqxx::connection conn(url);
  auto t0 = std::chrono::steady_clock::now();
  auto next_kill = t0 + std::chrono::milliseconds(static_cast<int64_t>(f.kill_every * 1000));
  int kills = 0, terms = 0;
  bool done = false;
  auto last_report = t0;
  while (!done) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now_t = std::chrono::steady_clock::now();
    int64_t left =
        std::stoll(q1(conn, "SELECT count(*) FROM jr_jobs WHERE queue = '" + queue + "'"));
    done = left == 0;
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
      waitpid(pids[victim], nullptr, 0);
      (term ? terms : kills)++;
      pids[victim] = spawn_runner(args, logdir + "/runner" + std::to_string(victim) + ".log");
      next_kill = now_t + std::chrono::milliseconds(static_cast<int64_t>(
                              f.kill_every * 1000 * (0.5 + (rng() % 1000) / 1000.0)));
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (pid_t p : pids) kill(p, SIGTERM);
  for (pid_t p : pids) waitpid(p, nullptr, 0);

  // Verify.
  int lost = 0, wrong = 0;
  int64_t reexecuted = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string st = q1(conn, "SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(ids[i]));
    if (st == "0") {
      ++lost;
    } else if (st != expect[i]) {
      ++wrong;
      if (wrong <= 5) {
        std::cerr << "  job " << ids[i] << " ended " << st << ", expected " << expect[i] << "\n";
      }
    }
  }
  reexecuted = std::stoll(q1(conn,
                             "SELECT count(*) FROM jr_jobs_done d, jsonb_array_elements(d.errors) "
                             "e WHERE d.queue = '" +
                                 queue + "' AND e->>'kind' = 'lease_lost'"));
  int64_t fenced = 0;
  for (int i = 0; i < f.runners; ++i) {
    std::ifstream in(logdir + "/runner" + std::to_string(i) + ".log");
    for (std::string line; std::getline(in, line);) {
      if (line.find("outcome rejected") != std::string::npos) ++fenced;
    }
  }
  nlohmann::json out = {{"jobs", ids.size()},
                        {"lost", lost},
                        {"wrong_state", wrong},
                        {"attempts_lost_to_kills", reexecuted},
                        {"fenced_completions", fenced},
                        {"kills", kills},
                        {"sigterms", terms},
                        {"seconds", secs},
                        {"jobs_per_second", ids.size() / secs},
                        {"queue", queue},
                        {"logs", logdir}};
  std::cout << "torture: " << ids.size() << " jobs, " << lost << " lost, " << wrong
            << " in a wrong final state, " << reexecuted
            << " attempts re-run after a kill (possible duplicates), " << fenced
            << " late completions fenced off, " << kills << " kill -9, " << terms << " SIGTERM, "
            << static_cast<int64_t>(ids.size() / secs) << " jobs/s\n"
            << out.dump() << "\n";
  bool ok = lost == 0 && wrong == 0 && done;
  if (ok) fs::remove_all(logdir);
  return ok ? kExitOk : kExitError;
}

}  // namespace jr::cli
