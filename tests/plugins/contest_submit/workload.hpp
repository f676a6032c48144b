// The generated contest workload shared by the concurrency tests (in-process threads and real
// runner processes): 20 contests of 1,000 submissions each (12 teams, 5 problems with every
// checker, icpc and points contests, wrong answers, invalid answers, late and early submissions,
// unknown problems), the contest rows to insert, and the reference standings computed serially
// here, from the rules in plugins/contest_submit/README.md, independently of the plugin's code.
// Header-only; deterministic (fixed seed).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace cswork {

constexpr int kContests = 20;
// 1,000 submissions per contest, 20,000 in all. The sanitizer builds (JR_TEST_SANITIZED) judge
// a quarter of them: ASan and UBSan check the code paths a submission takes, which 5,000 cover as
// well as 20,000, at four times the CPU of an optimised build, while scripts/test.sh runs the
// full volume on the release build (test_contest_submit_concurrency, and
// test_contest_submit_multi_runner_sandboxed, the runner's default).
#ifdef JR_TEST_SANITIZED
constexpr int kPerContest = 250;
#else
constexpr int kPerContest = 1000;
#endif
constexpr int kSubmissions = kContests * kPerContest;
constexpr int kTeams = 12;
constexpr int kProblems = 5;
constexpr int64_t kMinute = 60'000'000;
constexpr int64_t kBase = int64_t{1735725600} * 1'000'000;  // 2025-01-01T10:00:00Z
constexpr int64_t kLength = 300 * kMinute;

enum class Intent { kCorrect, kWrong, kInvalid, kOutside, kUnknownProblem };

struct Sub {
  std::string id;
  int contest = 0;
  std::string team;
  std::string problem;
  std::string answer;
  int64_t at_us = 0;
  std::string verdict;  // what the rules say it must get
};

inline int64_t start_of(int c) { return kBase + int64_t{c} * 24 * 60 * kMinute; }
inline bool is_points(int c) { return c % 2 == 0; }
inline int64_t penalty_of(int c) { return 10 + c % 3 * 5; }
inline int64_t points_of(int p) { return (p + 1) * 10; }
inline std::string expected_of(int c, int p) {
  switch (p) {
    case 0:
      return "answer-" + std::to_string(c);
    case 1:
      return "Mixed Case " + std::to_string(c);
    case 2:
      return std::to_string(c) + ".25";
    case 3:
      return "x[0-9]+";
    default:
      return std::to_string(c * 1000 + p);
  }
}
inline const char* checker_of(int p) {
  static const char* kCheckers[] = {"exact", "case_insensitive", "numeric", "regex", "exact"};
  return kCheckers[p];
}

inline std::string timestamp(int64_t us) {
  // Whole seconds only; the plugin's own formatting is not trusted here.
  time_t secs = static_cast<time_t>(us / 1'000'000);
  char buf[32];
  std::tm tm{};
  gmtime_r(&secs, &tm);  // called from judging threads: not gmtime()
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The job payload of a submission.
inline nlohmann::json payload(const Sub& s) {
  return {{"submission_id", s.id}, {"contest_id", s.contest},
          {"team_id", s.team},     {"problem_id", s.problem},
          {"answer", s.answer},    {"submitted_at", timestamp(s.at_us)}};
}

// SQL inserting contest `c` and its problems.
inline std::string contest_sql(int c) {
  std::string sql =
      "INSERT INTO contests (id, starts_at, ends_at, scoring, penalty_minutes) "
      "VALUES (" +
      std::to_string(c) + ", '" + timestamp(start_of(c)) + "', '" +
      timestamp(start_of(c) + kLength) + "', '" + (is_points(c) ? "points" : "icpc") + "', " +
      std::to_string(penalty_of(c)) + ");\n";
  for (int p = 0; p < kProblems; ++p) {
    sql += "INSERT INTO problems (contest_id, id, checker, tolerance, expected, points) VALUES (" +
           std::to_string(c) + ", '" + std::string(1, static_cast<char>('A' + p)) + "', '" +
           checker_of(p) + "', " + (p == 2 ? "0.01" : "0") + ", '" + expected_of(c, p) + "', " +
           std::to_string(points_of(p)) + ");\n";
  }
  return sql;
}

inline std::vector<Sub> generate() {
  std::mt19937_64 rng(20240501);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  std::vector<Sub> subs;
  for (int c = 1; c <= kContests; ++c) {
    for (int i = 0; i < kPerContest; ++i) {
      Sub s;
      s.id = "c" + std::to_string(c) + "-s" + std::to_string(i);
      s.contest = c;
      s.team = "team-" + std::to_string(pick(kTeams));
      int p = pick(kProblems);
      s.problem = std::string(1, static_cast<char>('A' + p));
      // 10-second slots: a team sometimes submits twice in the same instant (tie by id).
      s.at_us = start_of(c) + int64_t{pick(static_cast<int>(kLength / 10'000'000))} * 10'000'000;
      int roll = pick(100);
      Intent intent = roll < 35   ? Intent::kCorrect
                      : roll < 87 ? Intent::kWrong
                      : roll < 95 ? Intent::kInvalid
                      : roll < 98 ? Intent::kOutside
                                  : Intent::kUnknownProblem;
      const std::string want = expected_of(c, p);
      switch (intent) {
        case Intent::kCorrect:
          s.answer = p == 1   ? "mIXED cASE " + std::to_string(c)
                     : p == 2 ? std::to_string(c) + ".2549"
                     : p == 3 ? "x" + std::to_string(pick(100000))
                              : " " + want + "\n";
          s.verdict = "accepted";
          break;
        case Intent::kWrong:
          s.answer = p == 2 ? std::to_string(c) + ".3" : p == 3 ? "y1" : want + "!";
          s.verdict = "wrong_answer";
          break;
        case Intent::kInvalid:
          s.answer = p == 2 ? "twelve" : (pick(2) ? "" : std::string(1500, 'a'));
          s.verdict = "invalid";
          break;
        case Intent::kOutside:
          s.answer = want;
          s.at_us = pick(2) ? start_of(c) - kMinute * int64_t{1 + pick(60)} : start_of(c) + kLength;
          s.verdict = "contest_not_running";
          break;
        case Intent::kUnknownProblem:
          s.problem = "Q";
          s.answer = want;
          s.verdict = "unknown_problem";
          break;
      }
      subs.push_back(std::move(s));
    }
  }
  return subs;
}

struct Row {
  int64_t solved = 0, penalty = 0, points = 0, last = -1;  // last: epoch microseconds, -1 none
  bool operator==(const Row&) const = default;
};

// The reference standings, computed serially from the generated submissions.
inline std::map<std::pair<int, std::string>, Row> reference(const std::vector<Sub>& subs) {
  std::map<std::pair<int, std::string>, std::vector<const Sub*>> by_team;
  for (const Sub& s : subs) {
    if (s.verdict == "accepted" || s.verdict == "wrong_answer") {
      by_team[{s.contest, s.team}].push_back(&s);
    }
  }
  std::map<std::pair<int, std::string>, Row> out;
  for (auto& [key, list] : by_team) {
    std::sort(list.begin(), list.end(), [](const Sub* a, const Sub* b) {
      return std::tie(a->at_us, a->id) < std::tie(b->at_us, b->id);
    });
    Row row;
    std::map<std::string, int64_t> wrong;
    std::set<std::string> solved;
    for (const Sub* s : list) {
      if (solved.count(s->problem)) continue;
      if (s->verdict == "wrong_answer") {
        ++wrong[s->problem];
        continue;
      }
      solved.insert(s->problem);
      ++row.solved;
      row.points += points_of(s->problem[0] - 'A');
      if (!is_points(key.first)) {
        row.penalty +=
            (s->at_us - start_of(key.first)) / kMinute + wrong[s->problem] * penalty_of(key.first);
      }
      row.last = std::max(row.last, s->at_us);
    }
    out[key] = row;
  }
  return out;
}

// The standings table as Rows; last_accepted_at as epoch microseconds.
constexpr const char* kStandingsQuery =
    "SELECT contest_id, team_id, solved, penalty, points, "
    "coalesce((extract(epoch FROM last_accepted_at) * 1000000)::bigint, -1) FROM standings";

// What the database holds after judging `subs`: every stored verdict is the one the rules give,
// and the standings table equals the serial reference row by row (the first differences are
// reported). Also checks the reference is not trivial (penalties vary across teams).
inline void expect_database_matches_reference(pqxx::transaction_base& tx,
                                              const std::vector<Sub>& subs) {
  std::map<std::string, std::string> stored;
  for (const auto& row : tx.exec("SELECT id, verdict FROM submissions")) {
    stored[row[0].as<std::string>()] = row[1].as<std::string>();
  }
  int mismatched = 0;
  for (const Sub& s : subs) {
    if (stored[s.id] != s.verdict && ++mismatched <= 5) {
      ADD_FAILURE() << s.id << ": stored '" << stored[s.id] << "', want " << s.verdict;
    }
  }
  EXPECT_EQ(mismatched, 0);

  std::map<std::pair<int, std::string>, Row> got;
  for (const auto& row : tx.exec(kStandingsQuery)) {
    got[{row[0].as<int>(), row[1].as<std::string>()}] =
        Row{row[2].as<int64_t>(), row[3].as<int64_t>(), row[4].as<int64_t>(), row[5].as<int64_t>()};
  }
  const auto want = reference(subs);
  ASSERT_GT(want.size(), static_cast<size_t>(kContests * (kTeams - 1)));
  EXPECT_EQ(got.size(), want.size());
  auto text = [](const Row& r) {
    return std::to_string(r.solved) + "/" + std::to_string(r.penalty) + "/" +
           std::to_string(r.points) + "/" + std::to_string(r.last);
  };
  int differing = 0;
  for (const auto& [key, row] : want) {
    auto it = got.find(key);
    if ((it == got.end() || !(it->second == row)) && ++differing <= 5) {
      ADD_FAILURE() << "contest " << key.first << " " << key.second << ": got "
                    << (it == got.end() ? std::string("no row") : text(it->second)) << ", want "
                    << text(row);
    }
  }
  EXPECT_EQ(differing, 0);
  std::set<int64_t> penalties;
  for (const auto& [key, row] : want) penalties.insert(row.penalty);
  EXPECT_GT(penalties.size(), 50u);
}

}  // namespace cswork
