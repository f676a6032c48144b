// Concurrency: 20,000 submissions (5,000 in the sanitizer builds: workload.hpp) across 20 contests
// judged by 8 threads over 4 in-process plugin instances (each with its own connection pool, like 4
// runners sharing one database), with redeliveries injected both concurrently (the same submission
// twice, back to back in the work list) and later (after everything was judged). The work list
// groups each team's submissions together so that the threads constantly race on the same standings
// row: without the per-contest lock this test loses updates. The final standings must equal a
// reference computed serially (workload.hpp), independently of the plugin's code, and every
// submission id must have been judged fresh exactly once.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "harness.hpp"
#include "plugin_host.hpp"
#include "workload.hpp"

namespace {

using cswork::checker_of;
using cswork::expected_of;
using cswork::is_points;
using cswork::kContests;
using cswork::kLength;
using cswork::kProblems;
using cswork::kTeams;
using cswork::penalty_of;
using cswork::points_of;
using cswork::reference;
using cswork::Row;
using cswork::start_of;
using cswork::Sub;
using cswork::timestamp;

constexpr int kHosts = 4;
constexpr int kThreadsPerHost = 2;

struct Delivery {
  const Sub* sub;
  bool fresh;  // not a redelivery according to the plugin
  std::string verdict;
  int32_t status;
  std::string error;
};

// Runs `work` on kHosts x kThreadsPerHost threads; returns every delivery's outcome.
std::vector<Delivery> judge_all(std::vector<std::unique_ptr<jrtest::PluginHost>>& hosts,
                                const std::vector<const Sub*>& work) {
  std::atomic<size_t> next{0};
  std::vector<std::vector<Delivery>> per_thread(hosts.size() * kThreadsPerHost);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < per_thread.size(); ++t) {
    threads.emplace_back([&, t] {
      jrtest::PluginHost& host = *hosts[t % hosts.size()];
      for (size_t i; (i = next.fetch_add(1)) < work.size();) {
        const Sub& s = *work[i];
        jrtest::JobOutcome o =
            host.run("contest_submit", cswork::payload(s).dump(), 1, static_cast<int64_t>(i));
        Delivery d{&s, false, "", o.status, o.error};
        if (o.status == JR_OK) {
          nlohmann::json r = nlohmann::json::parse(o.result);
          d.fresh = !r.value("redelivered", true);
          d.verdict = r.value("verdict", "");
        }
        per_thread[t].push_back(std::move(d));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<Delivery> all;
  for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
  return all;
}

TEST(ContestConcurrency, TwentyThousandSubmissionsEightThreadsRedeliveriesMatchSerialReference) {
  // The plugin's own role and schema (what a runner hands it): the tables are seeded and read
  // there.
  std::string url =
      jrtest::plugin_database(jrtest::PgCluster::get().create_database("csconc"), "contest_submit")
          .url;
  std::vector<std::unique_ptr<jrtest::PluginHost>> hosts;
  for (int h = 0; h < kHosts; ++h) {
    hosts.push_back(std::make_unique<jrtest::PluginHost>(
        jrtest::plugin_dir() + "/libjr_contest_submit.so", nlohmann::json{{"database_url", url}}));
  }
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    for (int contest = 1; contest <= kContests; ++contest) {
      tx.exec_params(
          "INSERT INTO contests (id, starts_at, ends_at, scoring, penalty_minutes) VALUES "
          "($1, $2::timestamptz, $3::timestamptz, $4, $5)",
          contest, timestamp(start_of(contest)), timestamp(start_of(contest) + kLength),
          is_points(contest) ? "points" : "icpc", penalty_of(contest));
      for (int p = 0; p < kProblems; ++p) {
        tx.exec_params(
            "INSERT INTO problems (contest_id, id, checker, tolerance, expected, points) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            contest, std::string(1, static_cast<char>('A' + p)), checker_of(p), p == 2 ? 0.01 : 0.0,
            expected_of(contest, p), points_of(p));
      }
    }
    tx.commit();
  }

  const std::vector<Sub> subs = cswork::generate();
  ASSERT_EQ(subs.size(), static_cast<size_t>(cswork::kSubmissions));
  // Phase 1: every submission once, shuffled; 1,000 of them twice back to back, so two threads
  // judge the same id at the same moment. Phase 2: 1,000 others again after everything.
  std::mt19937_64 rng(7);
  std::vector<const Sub*> order;
  for (const Sub& s : subs) order.push_back(&s);
  std::shuffle(order.begin(), order.end(), rng);
  // Worst case for the standings: consecutive work items (taken by different threads at the same
  // moment) belong to the same team of the same contest, in random time order.
  std::stable_sort(order.begin(), order.end(), [](const Sub* a, const Sub* b) {
    return std::tie(a->contest, a->team) < std::tie(b->contest, b->team);
  });
  std::vector<const Sub*> phase1, phase2;
  for (size_t i = 0; i < order.size(); ++i) {
    phase1.push_back(order[i]);
    if (i % 20 == 0) phase1.push_back(order[i]);
    if (i % 20 == 10) phase2.push_back(order[i]);
  }
  ASSERT_EQ(phase1.size(), static_cast<size_t>(cswork::kSubmissions / 20 * 21));
  ASSERT_EQ(phase2.size(), static_cast<size_t>(cswork::kSubmissions / 20));

  auto started = std::chrono::steady_clock::now();
  std::vector<Delivery> deliveries = judge_all(hosts, phase1);
  std::vector<Delivery> later = judge_all(hosts, phase2);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "judged " << deliveries.size() + later.size() << " deliveries in " << secs
            << " s on " << kHosts * kThreadsPerHost << " threads\n";
  deliveries.insert(deliveries.end(), later.begin(), later.end());

  std::map<std::string, int> fresh;
  int redelivered = 0, failed = 0, wrong_verdicts = 0;
  for (const Delivery& d : deliveries) {
    if (d.status != JR_OK) {
      if (++failed <= 5) ADD_FAILURE() << d.sub->id << ": status " << d.status << " " << d.error;
      continue;
    }
    if (d.verdict != d.sub->verdict && ++wrong_verdicts <= 5) {
      ADD_FAILURE() << d.sub->id << ": verdict " << d.verdict << ", want " << d.sub->verdict;
    }
    if (d.fresh) {
      ++fresh[d.sub->id];
    } else {
      ++redelivered;
    }
  }
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(wrong_verdicts, 0);
  EXPECT_EQ(redelivered, cswork::kSubmissions / 10);
  EXPECT_EQ(fresh.size(), subs.size());
  int double_counted = 0;
  for (const auto& [id, n] : fresh) double_counted += n > 1 ? 1 : 0;
  EXPECT_EQ(double_counted, 0);

  pqxx::connection c(url);
  pqxx::read_transaction tx(c);
  EXPECT_EQ(tx.exec("SELECT count(*) FROM submissions")[0][0].as<int64_t>(), cswork::kSubmissions);
  cswork::expect_database_matches_reference(tx, subs);
}

}  // namespace
