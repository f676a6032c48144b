// Verdict and scoring rules of contest_submit: which verdict a submission gets and how a team's
// standings row follows from its judged submissions. Pure functions over plain values (no I/O,
// no shared state): safe from any thread and unit-testable without a database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "contest_submit/src/checker.hpp"

namespace contest {

enum class Verdict { kAccepted, kWrongAnswer, kContestNotRunning, kUnknownProblem, kInvalid };

std::string_view to_string(Verdict v);
std::optional<Verdict> parse_verdict(std::string_view name);

enum class Scoring { kIcpc, kPoints };

std::string_view to_string(Scoring s);
std::optional<Scoring> parse_scoring(std::string_view name);

// A row of `contests`. Times are microseconds since the Unix epoch (UTC).
struct ContestInfo {
  int64_t id = 0;
  int64_t starts_at_us = 0;
  int64_t ends_at_us = 0;  // exclusive: a submission at ends_at is too late
  Scoring scoring = Scoring::kIcpc;
  int64_t penalty_minutes = 20;
};

// A row of `problems`.
struct ProblemInfo {
  std::string id;
  CheckerSpec checker;
  int64_t points = 1;
};

struct Judgement {
  Verdict verdict = Verdict::kInvalid;
  int64_t score = 0;   // the problem's points when accepted, else 0
  std::string detail;  // why, for humans
};

// The verdict for one submission. `contest` / `problem` are null when no such row exists.
// Order of the rules: no contest or submitted outside [starts_at, ends_at) -> contest_not_running;
// no problem -> unknown_problem; answer not judgeable -> invalid; then the checker decides
// between accepted and wrong_answer. Throws ProblemConfigError for an unusable problem row.
Judgement decide(const ContestInfo* contest, const ProblemInfo* problem, std::string_view answer,
                 int64_t submitted_at_us);

// One judged submission of a team, as far as standings care.
struct Attempt {
  std::string problem_id;
  std::string submission_id;
  int64_t submitted_at_us = 0;
  Verdict verdict = Verdict::kInvalid;
  int64_t points = 0;  // the problem's points
};

// A row of `standings`.
struct TeamStanding {
  int64_t solved = 0;
  int64_t penalty = 0;  // minutes; always 0 for points contests
  int64_t points = 0;   // sum of the points of solved problems
  std::optional<int64_t> last_accepted_at_us;

  bool operator==(const TeamStanding&) const = default;
};

// The team's standing from all its judged submissions, in any order. Per problem, submissions
// are ordered by (submitted_at, submission_id); the first accepted one solves the problem and
// everything after it is ignored; only wrong_answer verdicts before it cost penalty. ICPC:
// penalty += whole minutes from contest start to that acceptance + penalty_minutes per earlier
// wrong answer. Verdicts other than accepted / wrong_answer are ignored.
TeamStanding score_team(const ContestInfo& contest, std::vector<Attempt> attempts);

}  // namespace contest
