// Shared helpers of the contest_submit tests: where the plugin and CLI are, a demo pair of
// contests, and reading a standings row. Header-only; used from one thread per test.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "harness.hpp"

namespace cstest {

inline std::string plugin_so() { return jrtest::plugin_dir() + "/libjr_contest_submit.so"; }

// Contest 1 (icpc, 2024-05-01 10:00-15:00 UTC, 20 penalty minutes):
//   A exact "42", B case_insensitive "Hello World", C numeric 3.14159 +- 0.001,
//   D regex "[0-9]+(,[0-9]+)*".
// Contest 2 (points, 2024-06-01 12:00-14:00 UTC): X case_insensitive "alpha" 100 points,
//   Y numeric 2.5 (exact) 250 points.
// The schema must exist (the plugin's init creates it).
inline void create_demo_contests(const std::string& url) {
  jrtest::PgCluster::exec(url, R"SQL(
    INSERT INTO contests (id, starts_at, ends_at, scoring, penalty_minutes) VALUES
      (1, '2024-05-01T10:00:00Z', '2024-05-01T15:00:00Z', 'icpc', 20),
      (2, '2024-06-01T12:00:00Z', '2024-06-01T14:00:00Z', 'points', 0);
    INSERT INTO problems (contest_id, id, checker, tolerance, expected, points) VALUES
      (1, 'A', 'exact', 0, '42', 1),
      (1, 'B', 'case_insensitive', 0, 'Hello World', 1),
      (1, 'C', 'numeric', 0.001, '3.14159', 1),
      (1, 'D', 'regex', 0, '[0-9]+(,[0-9]+)*', 1),
      (2, 'X', 'case_insensitive', 0, 'alpha', 100),
      (2, 'Y', 'numeric', 0, '2.5', 250);
  )SQL");
}

struct Standing {
  int64_t solved = 0;
  int64_t penalty = 0;
  int64_t points = 0;
  std::string last_accepted_at;  // UTC, PostgreSQL text form ("" when none)
  bool operator==(const Standing&) const = default;
};

inline std::ostream& operator<<(std::ostream& o, const Standing& s) {
  return o << "{solved " << s.solved << ", penalty " << s.penalty << ", points " << s.points
           << ", last " << s.last_accepted_at << "}";
}

inline std::optional<Standing> read_standing(const std::string& url, int64_t contest,
                                             const std::string& team) {
  std::string row = jrtest::PgCluster::query_one(
      url,
      "SELECT concat_ws('|', solved, penalty, points, "
      "coalesce((last_accepted_at AT TIME ZONE 'UTC')::text, '')) FROM standings "
      "WHERE contest_id = " +
          std::to_string(contest) + " AND team_id = '" + team + "'");
  if (row.empty()) return std::nullopt;
  Standing s;
  std::size_t a = row.find('|'), b = row.find('|', a + 1), c = row.find('|', b + 1);
  s.solved = std::stoll(row.substr(0, a));
  s.penalty = std::stoll(row.substr(a + 1, b - a - 1));
  s.points = std::stoll(row.substr(b + 1, c - b - 1));
  s.last_accepted_at = row.substr(c + 1);
  return s;
}

}  // namespace cstest
