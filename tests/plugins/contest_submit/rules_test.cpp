// Unit tests of contest_submit's pure parts: checkers, answer validity, timestamps, payload
// parsing, verdict order and the scoring rules. No database.
#include "contest_submit/src/rules.hpp"

#include <gtest/gtest.h>

#include "contest_submit/src/checker.hpp"
#include "contest_submit/src/submission.hpp"
#include "contest_submit/src/timestamp.hpp"

namespace contest {
namespace {

CheckOutcome check(CheckerKind kind, const std::string& expected, const std::string& answer,
                   double tolerance = 0) {
  return check_answer(CheckerSpec{kind, expected, tolerance}, answer).outcome;
}

TEST(Checker, ExactIgnoresSurroundingWhitespaceOnly) {
  EXPECT_EQ(check(CheckerKind::kExact, "42", "42"), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kExact, "42", "  42\n"), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kExact, "hello world", "hello  world"), CheckOutcome::kWrong);
  EXPECT_EQ(check(CheckerKind::kExact, "Yes", "yes"), CheckOutcome::kWrong);
  EXPECT_EQ(check(CheckerKind::kExact, "42", "420"), CheckOutcome::kWrong);
}

TEST(Checker, CaseInsensitiveFoldsAsciiLetters) {
  EXPECT_EQ(check(CheckerKind::kCaseInsensitive, "Hello World", "hELLO wORLD"),
            CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kCaseInsensitive, "Hello", "Hello!"), CheckOutcome::kWrong);
  EXPECT_EQ(check(CheckerKind::kCaseInsensitive, "abc", "abd"), CheckOutcome::kWrong);
}

TEST(Checker, NumericUsesAbsoluteToleranceInclusive) {
  EXPECT_EQ(check(CheckerKind::kNumeric, "3.14159", "3.1416", 0.001), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kNumeric, "10", "10.5", 0.5), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kNumeric, "10", "10.51", 0.5), CheckOutcome::kWrong);
  EXPECT_EQ(check(CheckerKind::kNumeric, "1000", "1e3"), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kNumeric, "-2", "+-2"), CheckOutcome::kInvalid);
  EXPECT_EQ(check(CheckerKind::kNumeric, "-2", "-2.0"), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kNumeric, "0.5", ".5"), CheckOutcome::kCorrect);
}

TEST(Checker, NumericRejectsNonNumbersAsInvalid) {
  for (const char* bad : {"abc", "inf", "nan", "-inf", "0x10", "1,5", "1.5.2", "1e", "--1", "."}) {
    EXPECT_EQ(check(CheckerKind::kNumeric, "1", bad, 1e9), CheckOutcome::kInvalid) << bad;
  }
}

TEST(Checker, NumericWithNonNumericExpectedIsAConfigError) {
  EXPECT_THROW(check(CheckerKind::kNumeric, "abc", "1"), ProblemConfigError);
  EXPECT_THROW(check(CheckerKind::kNumeric, "1", "1", -1), ProblemConfigError);
}

TEST(Checker, RegexMustMatchTheWholeTrimmedAnswer) {
  const std::string pattern = "[0-9]+(,[0-9]+)*";
  EXPECT_EQ(check(CheckerKind::kRegex, pattern, "1,22,333"), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kRegex, pattern, " 7 "), CheckOutcome::kCorrect);
  EXPECT_EQ(check(CheckerKind::kRegex, pattern, "1,22,x"), CheckOutcome::kWrong);
  EXPECT_EQ(check(CheckerKind::kRegex, pattern, "x1"), CheckOutcome::kWrong);
  // Second use of the same pattern comes from the cache and must behave the same.
  EXPECT_EQ(check(CheckerKind::kRegex, pattern, "1,22,333"), CheckOutcome::kCorrect);
}

TEST(Checker, RegexThatDoesNotCompileIsAConfigError) {
  EXPECT_THROW(check(CheckerKind::kRegex, "([", "x"), ProblemConfigError);
}

TEST(Checker, UnjudgeableAnswersAreInvalidForEveryChecker) {
  for (CheckerKind k : {CheckerKind::kExact, CheckerKind::kCaseInsensitive, CheckerKind::kNumeric,
                        CheckerKind::kRegex}) {
    EXPECT_EQ(check(k, "1", ""), CheckOutcome::kInvalid);
    EXPECT_EQ(check(k, "1", " \n\t"), CheckOutcome::kInvalid);
    EXPECT_EQ(check(k, "1", std::string(kMaxAnswerBytes + 1, '1')), CheckOutcome::kInvalid);
    EXPECT_EQ(check(k, "1", "1\x01"), CheckOutcome::kInvalid);
    EXPECT_EQ(check(k, "1", std::string("1\0", 2)), CheckOutcome::kInvalid);
    EXPECT_EQ(check(k, "1", "\xff"), CheckOutcome::kInvalid);
  }
  EXPECT_EQ(check(CheckerKind::kExact, std::string(kMaxAnswerBytes, '1'),
                  std::string(kMaxAnswerBytes, '1')),
            CheckOutcome::kCorrect);
}

TEST(Checker, ParseCheckerNames) {
  for (CheckerKind k : {CheckerKind::kExact, CheckerKind::kCaseInsensitive, CheckerKind::kNumeric,
                        CheckerKind::kRegex}) {
    EXPECT_EQ(parse_checker(to_string(k)), k);
  }
  EXPECT_FALSE(parse_checker("fuzzy"));
}

TEST(Utf8, ValidationRejectsOverlongSurrogatesAndTruncation) {
  EXPECT_TRUE(valid_utf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xE2\x82"));          // truncated
}

TEST(Utf8, StorableTextReplacesBadBytesAndCutsAtACharacter) {
  EXPECT_EQ(storable_text(std::string("a\0b\xff", 4)),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD");
  std::string euros;
  for (int i = 0; i < 400; ++i) euros += "\xE2\x82\xAC";  // 1200 bytes
  std::string cut = storable_text(euros);
  EXPECT_EQ(cut.size(), 1023u);  // 341 whole characters
  EXPECT_TRUE(valid_utf8(cut));
}

TEST(Timestamp, ParsesZonesFractionsAndRejectsNonsense) {
  EXPECT_EQ(parse_timestamp("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_timestamp("2024-05-01T10:15:00Z"), int64_t{1714558500} * 1'000'000);
  EXPECT_EQ(parse_timestamp("2024-05-01T12:15:00+02:00"), int64_t{1714558500} * 1'000'000);
  EXPECT_EQ(parse_timestamp("2024-05-01 10:15:00.25z"), int64_t{1714558500} * 1'000'000 + 250000);
  EXPECT_EQ(parse_timestamp("2024-05-01T10:15:00.1234567Z"),
            int64_t{1714558500} * 1'000'000 + 123456);
  EXPECT_TRUE(parse_timestamp("2024-02-29T00:00:00Z"));
  for (const char* bad : {"2023-02-29T00:00:00Z", "2024-05-01T10:15:00", "2024-05-01",
                          "2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T10:15:00Zx",
                          "2024-05-01T10:15:00.Z", "yesterday", "", "1714558500"}) {
    EXPECT_FALSE(parse_timestamp(bad)) << bad;
  }
}

TEST(Timestamp, FormatRoundTrips) {
  for (int64_t us :
       {int64_t{0}, int64_t{1714558500123456}, int64_t{951782400000001}, int64_t{-1}}) {
    EXPECT_EQ(parse_timestamp(format_timestamp(us)), us) << format_timestamp(us);
  }
  EXPECT_EQ(format_timestamp(1714558500123456), "2024-05-01T10:15:00.123456Z");
}

nlohmann::json good_payload() {
  return {{"submission_id", "s1"}, {"contest_id", 1}, {"team_id", "t1"},
          {"problem_id", "A"},     {"answer", "42"},  {"submitted_at", "2024-05-01T10:15:00Z"}};
}

std::string parse_error(const nlohmann::json& p, std::string* field = nullptr) {
  try {
    parse_submission(p);
  } catch (const InvalidSubmission& e) {
    if (field) *field = e.field();
    return e.what();
  }
  return "";
}

TEST(Payload, ParsesAGoodPayload) {
  Submission s = parse_submission(good_payload());
  EXPECT_EQ(s.id, "s1");
  EXPECT_EQ(s.contest_id, 1);
  EXPECT_EQ(s.team_id, "t1");
  EXPECT_EQ(s.problem_id, "A");
  EXPECT_EQ(s.answer, "42");
  EXPECT_EQ(s.submitted_at_us, int64_t{1714558500} * 1'000'000);
  EXPECT_EQ(parse_submission(to_payload(s)).submitted_at_us, s.submitted_at_us);
}

TEST(Payload, EveryMissingFieldIsNamed) {
  for (const char* f :
       {"submission_id", "contest_id", "team_id", "problem_id", "answer", "submitted_at"}) {
    nlohmann::json p = good_payload();
    p.erase(f);
    std::string field;
    EXPECT_EQ(parse_error(p, &field), std::string("invalid submission: missing field '") + f + "'");
    EXPECT_EQ(field, f);
  }
}

TEST(Payload, WrongTypesAreNamedWithTheTypeReceived) {
  auto with = [](const char* f, nlohmann::json v) {
    nlohmann::json p = good_payload();
    p[f] = std::move(v);
    return p;
  };
  EXPECT_EQ(parse_error(with("contest_id", "1")),
            "invalid submission: field 'contest_id' must be an integer, got string");
  EXPECT_EQ(parse_error(with("contest_id", 1.5)),
            "invalid submission: field 'contest_id' must be an integer, got number");
  EXPECT_EQ(parse_error(with("contest_id", 0)),
            "invalid submission: field 'contest_id' must be positive");
  EXPECT_EQ(parse_error(with("submission_id", 17)),
            "invalid submission: field 'submission_id' must be a string, got integer");
  EXPECT_EQ(parse_error(with("answer", 42)),
            "invalid submission: field 'answer' must be a string, got integer");
  EXPECT_EQ(parse_error(with("team_id", nullptr)),
            "invalid submission: field 'team_id' must be a string, got null");
  EXPECT_EQ(parse_error(with("problem_id", "")),
            "invalid submission: field 'problem_id' must not be empty");
  EXPECT_EQ(parse_error(with("team_id", std::string(kMaxIdBytes + 1, 't'))),
            "invalid submission: field 'team_id' is longer than 128 bytes");
  EXPECT_EQ(parse_error(with("team_id", "a\tb")),
            "invalid submission: field 'team_id' contains control characters");
  EXPECT_EQ(parse_error(with("submitted_at", "10:15")),
            "invalid submission: field 'submitted_at' must be an RFC 3339 timestamp such as "
            "2024-05-01T10:15:00Z, got '10:15'");
  EXPECT_EQ(parse_error(nlohmann::json::array({1, 2})),
            "invalid submission: payload must be a JSON object, got array");
  EXPECT_EQ(parse_error(nlohmann::json("text")),
            "invalid submission: payload must be a JSON object, got string");
}

constexpr int64_t kStart = int64_t{1714557600} * 1'000'000;  // 2024-05-01T10:00:00Z
constexpr int64_t kMinute = 60'000'000;

ContestInfo icpc() { return {1, kStart, kStart + 300 * kMinute, Scoring::kIcpc, 20}; }

TEST(Decide, RulesApplyInOrderAndTheWindowIsHalfOpen) {
  ContestInfo c = icpc();
  ProblemInfo p{"A", {CheckerKind::kNumeric, "42", 0}, 7};
  EXPECT_EQ(decide(nullptr, &p, "42", kStart).verdict, Verdict::kContestNotRunning);
  EXPECT_EQ(decide(&c, &p, "42", kStart - 1).verdict, Verdict::kContestNotRunning);
  EXPECT_EQ(decide(&c, &p, "42", c.ends_at_us).verdict, Verdict::kContestNotRunning);
  // Outside the window, even an unknown problem or a garbage answer is contest_not_running.
  EXPECT_EQ(decide(&c, nullptr, "", c.ends_at_us).verdict, Verdict::kContestNotRunning);
  EXPECT_EQ(decide(&c, nullptr, "", kStart).verdict, Verdict::kUnknownProblem);
  EXPECT_EQ(decide(&c, &p, "forty-two", kStart).verdict, Verdict::kInvalid);
  EXPECT_EQ(decide(&c, &p, "41", c.ends_at_us - 1).verdict, Verdict::kWrongAnswer);
  Judgement ok = decide(&c, &p, "42", kStart);
  EXPECT_EQ(ok.verdict, Verdict::kAccepted);
  EXPECT_EQ(ok.score, 7);
  EXPECT_EQ(decide(&c, &p, "41", kStart).score, 0);
}

TEST(Decide, VerdictNamesRoundTrip) {
  for (Verdict v : {Verdict::kAccepted, Verdict::kWrongAnswer, Verdict::kContestNotRunning,
                    Verdict::kUnknownProblem, Verdict::kInvalid}) {
    EXPECT_EQ(parse_verdict(to_string(v)), v);
  }
  EXPECT_EQ(to_string(Verdict::kWrongAnswer), "wrong_answer");
  EXPECT_FALSE(parse_verdict("compile_error"));
}

Attempt at(const char* problem, const char* id, int64_t minutes, Verdict v, int64_t points = 1) {
  return {problem, id, kStart + minutes * kMinute, v, points};
}

TEST(Score, IcpcPenaltyIsMinutesPlusTwentyPerEarlierWrongAnswer) {
  TeamStanding s = score_team(
      icpc(), {at("A", "1", 5, Verdict::kWrongAnswer), at("A", "2", 20, Verdict::kWrongAnswer),
               at("A", "3", 47, Verdict::kAccepted), at("B", "4", 90, Verdict::kAccepted)});
  EXPECT_EQ(s.solved, 2);
  EXPECT_EQ(s.penalty, (47 + 2 * 20) + 90);
  EXPECT_EQ(s.points, 2);
  EXPECT_EQ(s.last_accepted_at_us, kStart + 90 * kMinute);
}

TEST(Score, PartialMinutesRoundDown) {
  TeamStanding s = score_team(icpc(), {{"A", "1", kStart + kMinute - 1, Verdict::kAccepted, 1}});
  EXPECT_EQ(s.penalty, 0);
}

TEST(Score, SubmissionsAfterTheFirstAcceptanceChangeNothing) {
  std::vector<Attempt> base = {at("A", "1", 10, Verdict::kWrongAnswer),
                               at("A", "2", 30, Verdict::kAccepted)};
  TeamStanding before = score_team(icpc(), base);
  base.push_back(at("A", "3", 40, Verdict::kWrongAnswer));
  base.push_back(at("A", "4", 50, Verdict::kAccepted));
  EXPECT_EQ(score_team(icpc(), base), before);
  EXPECT_EQ(before.penalty, 50);
}

TEST(Score, OrderOfJudgingDoesNotMatterOnlySubmissionTime) {
  std::vector<Attempt> a = {at("A", "3", 30, Verdict::kAccepted),
                            at("A", "1", 10, Verdict::kWrongAnswer),
                            at("A", "4", 40, Verdict::kWrongAnswer)};
  EXPECT_EQ(score_team(icpc(), a).penalty, 30 + 20);
}

TEST(Score, SameTimeIsOrderedBySubmissionId) {
  // "a" sorts before "b": the wrong answer comes first and costs penalty.
  TeamStanding s = score_team(
      icpc(), {at("A", "b", 30, Verdict::kAccepted), at("A", "a", 30, Verdict::kWrongAnswer)});
  EXPECT_EQ(s.penalty, 50);
  TeamStanding t = score_team(
      icpc(), {at("A", "a", 30, Verdict::kAccepted), at("A", "b", 30, Verdict::kWrongAnswer)});
  EXPECT_EQ(t.penalty, 30);
}

TEST(Score, OtherVerdictsAndUnsolvedProblemsCostNothing) {
  TeamStanding s = score_team(
      icpc(), {at("A", "1", 5, Verdict::kInvalid), at("A", "2", 6, Verdict::kUnknownProblem),
               at("A", "3", 7, Verdict::kContestNotRunning), at("A", "4", 8, Verdict::kAccepted),
               at("B", "5", 9, Verdict::kWrongAnswer)});
  EXPECT_EQ(s.solved, 1);
  EXPECT_EQ(s.penalty, 8);
  TeamStanding none = score_team(icpc(), {at("B", "5", 9, Verdict::kWrongAnswer)});
  EXPECT_EQ(none, TeamStanding{});
}

TEST(Score, PointsContestSumsPointsWithoutPenalty) {
  ContestInfo c = icpc();
  c.scoring = Scoring::kPoints;
  TeamStanding s = score_team(
      c, {at("A", "1", 5, Verdict::kWrongAnswer, 100), at("A", "2", 15, Verdict::kAccepted, 100),
          at("B", "3", 25, Verdict::kAccepted, 250), at("B", "4", 35, Verdict::kAccepted, 250)});
  EXPECT_EQ(s.solved, 2);
  EXPECT_EQ(s.points, 350);
  EXPECT_EQ(s.penalty, 0);
  EXPECT_EQ(s.last_accepted_at_us, kStart + 25 * kMinute);
}

}  // namespace
}  // namespace contest
