// bench/contest_submit: how many contest submissions the contest_submit plugin judges per second,
// in-process (the real .so through tests/support/plugin_host.hpp), on a throwaway PostgreSQL
// with default durability (fsync and synchronous_commit on). For each thread count: a fresh
// database, C contests, N submissions (random team, problem, time, right or wrong answers),
// judged once by T threads spread over H plugin instances ("fresh"), then all delivered again
// ("redelivered": the idempotent fast path). Prints human lines, then one JSON line.
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <thread>

#include "harness.hpp"
#include "managed_db.hpp"
#include "plugin_host.hpp"

using Clock = std::chrono::steady_clock;

namespace {

std::vector<std::string> make_payloads(int submissions, int contests, int teams, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(submissions));
  for (int i = 0; i < submissions; ++i) {
    int c = 1 + static_cast<int>(rng() % static_cast<uint64_t>(contests));
    int p = static_cast<int>(rng() % 4);
    bool right = rng() % 100 < 40;
    static const char* kRight[] = {"42", "hello WORLD", "3.1416", "1,2,3"};
    static const char* kWrong[] = {"41", "hello", "3.2", "1,,2"};
    char at[64];
    int minute = static_cast<int>(rng() % 300);
    std::snprintf(at, sizeof at, "2025-03-01T%02d:%02d:%02dZ", 10 + minute / 60, minute % 60,
                  static_cast<int>(rng() % 60));
    nlohmann::json j = {{"submission_id", "s" + std::to_string(i)},
                        {"contest_id", c},
                        {"team_id", "team-" + std::to_string(rng() % static_cast<uint64_t>(teams))},
                        {"problem_id", std::string(1, static_cast<char>('A' + p))},
                        {"answer", right ? kRight[p] : kWrong[p]},
                        {"submitted_at", at}};
    out.push_back(j.dump());
  }
  return out;
}

// Judges every payload once on `threads` threads; returns seconds taken and failures.
std::pair<double, int> run_all(std::vector<std::unique_ptr<jrtest::PluginHost>>& hosts, int threads,
                               const std::vector<std::string>& payloads) {
  std::atomic<size_t> next{0};
  std::atomic<int> failed{0};
  auto t0 = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      jrtest::PluginHost& host = *hosts[static_cast<size_t>(t) % hosts.size()];
      for (size_t i; (i = next.fetch_add(1)) < payloads.size();) {
        if (host.run("contest_submit", payloads[i]).status != JR_OK) ++failed;
      }
    });
  }
  for (auto& th : pool) th.join();
  return {std::chrono::duration<double>(Clock::now() - t0).count(), failed.load()};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench/contest_submit: submissions judged per second, in-process"};
  int submissions = 20000;
  int contests = 20;
  int teams = 50;
  int hosts_n = 4;
  std::vector<int> thread_counts = {1, 4, 8, 16};
  app.add_option("--submissions", submissions, "submissions per run");
  app.add_option("--contests", contests, "contests they are spread over");
  app.add_option("--teams", teams, "teams per contest");
  app.add_option("--hosts", hosts_n, "plugin instances (each its own connection pool)");
  app.add_option("--threads", thread_counts, "thread counts to measure")->delimiter(',');
  CLI11_PARSE(app, argc, argv);

  jrtest::TempDir dir;
  jr::ManagedDbOptions o;
  o.data_dir = dir.path() + "/pg";
  o.settings = {{"max_connections", "200"}, {"shared_buffers", "'256MB'"}};
  jr::ManagedDb db(o);
  db.start();
  const std::string so = jrtest::plugin_dir() + "/libjr_contest_submit.so";
  const std::vector<std::string> payloads = make_payloads(submissions, contests, teams, 42);

  nlohmann::json out = {{"bench", "contest_submit"},      {"submissions", submissions},
                        {"contests", contests},           {"teams_per_contest", teams},
                        {"plugin_instances", hosts_n},    {"durability", "fsync on"},
                        {"runs", nlohmann::json::array()}};
  int run = 0;
  for (int threads : thread_counts) {
    std::string name = "bench_cs_" + std::to_string(++run);
    {
      pqxx::connection c(db.url_for("postgres"));
      pqxx::nontransaction tx(c);
      tx.exec("CREATE DATABASE " + tx.quote_name(name));
    }
    // The password in the URL: a sandboxed plugin (JR_TEST_ISOLATION=sandbox) runs under
    // another uid and cannot read the runner's password file.
    std::string url = db.url_with_password_for(name);
    std::vector<std::unique_ptr<jrtest::PluginHost>> hosts;
    for (int h = 0; h < hosts_n; ++h) {
      hosts.push_back(
          std::make_unique<jrtest::PluginHost>(so, nlohmann::json{{"database_url", url}}));
    }
    {
      pqxx::connection c(url);
      pqxx::work tx(c);
      for (int id = 1; id <= contests; ++id) {
        std::string sid = std::to_string(id);
        tx.exec("INSERT INTO contests (id, starts_at, ends_at, scoring) VALUES (" + sid +
                ", '2025-03-01T10:00:00Z', '2025-03-01T15:00:00Z', '" +
                (id % 2 ? "icpc" : "points") + "')");
        tx.exec(
            "INSERT INTO problems (contest_id, id, checker, tolerance, expected, points) "
            "VALUES (" +
            sid + ", 'A', 'exact', 0, '42', 10), (" + sid +
            ", 'B', 'case_insensitive', 0, 'Hello World', 20), (" + sid +
            ", 'C', 'numeric', 0.001, '3.14159', 30), (" + sid +
            ", 'D', 'regex', 0, '[0-9]+(,[0-9]+)*', 40)");
      }
      tx.commit();
    }
    auto [fresh_s, fresh_failed] = run_all(hosts, threads, payloads);
    auto [again_s, again_failed] = run_all(hosts, threads, payloads);
    double fresh_rate = submissions / fresh_s;
    double again_rate = submissions / again_s;
    std::string judged;
    {
      pqxx::connection c(url);
      pqxx::nontransaction tx(c);
      judged = tx.exec("SELECT count(*) FROM submissions")[0][0].c_str();
    }
    std::cout << "threads " << threads << ": judged " << judged << " submissions, "
              << static_cast<int64_t>(fresh_rate) << "/s fresh, "
              << static_cast<int64_t>(again_rate) << "/s redelivered"
              << (fresh_failed + again_failed ? " (FAILURES)" : "") << std::endl;
    out["runs"].push_back({{"threads", threads},
                           {"judged_per_second", fresh_rate},
                           {"redelivered_per_second", again_rate},
                           {"failures", fresh_failed + again_failed},
                           {"stored", std::stoll(judged)}});
  }
  unsigned cores = std::thread::hardware_concurrency();
  out["cores"] = cores;
  std::cout << out.dump() << std::endl;
  db.stop();
  return 0;
}
