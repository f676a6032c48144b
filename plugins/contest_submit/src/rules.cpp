#include "contest_submit/src/rules.hpp"

#include <algorithm>
#include <tuple>

#include "contest_submit/src/timestamp.hpp"

namespace contest {

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::kAccepted:
      return "accepted";
    case Verdict::kWrongAnswer:
      return "wrong_answer";
    case Verdict::kContestNotRunning:
      return "contest_not_running";
    case Verdict::kUnknownProblem:
      return "unknown_problem";
    case Verdict::kInvalid:
      return "invalid";
  }
  return "invalid";
}

std::optional<Verdict> parse_verdict(std::string_view name) {
  for (Verdict v : {Verdict::kAccepted, Verdict::kWrongAnswer, Verdict::kContestNotRunning,
                    Verdict::kUnknownProblem, Verdict::kInvalid}) {
    if (to_string(v) == name) return v;
  }
  return std::nullopt;
}

std::string_view to_string(Scoring s) { return s == Scoring::kPoints ? "points" : "icpc"; }

std::optional<Scoring> parse_scoring(std::string_view name) {
  if (name == "icpc") return Scoring::kIcpc;
  if (name == "points") return Scoring::kPoints;
  return std::nullopt;
}

Judgement decide(const ContestInfo* contest, const ProblemInfo* problem, std::string_view answer,
                 int64_t submitted_at_us) {
  if (contest == nullptr) return {Verdict::kContestNotRunning, 0, "no such contest"};
  if (submitted_at_us < contest->starts_at_us || submitted_at_us >= contest->ends_at_us) {
    return {Verdict::kContestNotRunning, 0,
            "submitted at " + format_timestamp(submitted_at_us) + ", contest runs from " +
                format_timestamp(contest->starts_at_us) + " to " +
                format_timestamp(contest->ends_at_us)};
  }
  if (problem == nullptr) return {Verdict::kUnknownProblem, 0, "no such problem in this contest"};
  CheckResult r = check_answer(problem->checker, answer);
  switch (r.outcome) {
    case CheckOutcome::kCorrect:
      return {Verdict::kAccepted, problem->points, ""};
    case CheckOutcome::kWrong:
      return {Verdict::kWrongAnswer, 0, r.detail};
    case CheckOutcome::kInvalid:
      return {Verdict::kInvalid, 0, r.detail};
  }
  return {Verdict::kInvalid, 0, "unreachable"};
}

TeamStanding score_team(const ContestInfo& contest, std::vector<Attempt> attempts) {
  std::sort(attempts.begin(), attempts.end(), [](const Attempt& a, const Attempt& b) {
    return std::tie(a.problem_id, a.submitted_at_us, a.submission_id) <
           std::tie(b.problem_id, b.submitted_at_us, b.submission_id);
  });
  TeamStanding s;
  constexpr int64_t kMicrosPerMinute = 60'000'000;
  for (std::size_t i = 0; i < attempts.size();) {
    std::size_t end = i;
    while (end < attempts.size() && attempts[end].problem_id == attempts[i].problem_id) ++end;
    int64_t wrong = 0;
    for (std::size_t k = i; k < end; ++k) {
      const Attempt& a = attempts[k];
      if (a.verdict == Verdict::kWrongAnswer) {
        ++wrong;
      } else if (a.verdict == Verdict::kAccepted) {
        s.solved += 1;
        s.points += a.points;
        if (contest.scoring == Scoring::kIcpc) {
          int64_t elapsed = a.submitted_at_us - contest.starts_at_us;
          int64_t minutes = elapsed >= 0 ? elapsed / kMicrosPerMinute : 0;
          s.penalty += minutes + wrong * contest.penalty_minutes;
        }
        if (!s.last_accepted_at_us || a.submitted_at_us > *s.last_accepted_at_us) {
          s.last_accepted_at_us = a.submitted_at_us;
        }
        break;  // later submissions on a solved problem change nothing
      }
    }
    i = end;
  }
  return s;
}

}  // namespace contest
