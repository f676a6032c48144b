// Answer checkers of contest_submit: how a submitted answer is compared with a problem's expected
// answer, and which answers are not judgeable text at all. Pure functions over strings; the only
// shared state is a mutex-protected cache of compiled regular expressions, so every function may
// be called from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace contest {

// The longest answer that is judged; longer answers get the `invalid` verdict.
inline constexpr std::size_t kMaxAnswerBytes = 1024;

enum class CheckerKind { kExact, kCaseInsensitive, kNumeric, kRegex };

std::optional<CheckerKind> parse_checker(std::string_view name);
std::string_view to_string(CheckerKind kind);

// A problem's checker as stored in the `problems` table.
struct CheckerSpec {
  CheckerKind kind = CheckerKind::kExact;
  std::string expected;  // the answer, or for kRegex the pattern (ECMAScript, whole answer)
  double tolerance = 0;  // kNumeric only: accepted when |answer - expected| <= tolerance
};

// The problem row itself is unusable (a regex that does not compile, a numeric checker whose
// expected answer is not a number). Not the submitter's fault: an operator must fix the row.
class ProblemConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class CheckOutcome { kCorrect, kWrong, kInvalid };

struct CheckResult {
  CheckOutcome outcome = CheckOutcome::kWrong;
  std::string detail;  // human-readable reason, empty for kCorrect
};

// Judges `answer` against `spec`. Surrounding ASCII whitespace of the answer is ignored by every
// checker. Answers that are not judgeable (see answer_problem) or, for kNumeric, not a number
// are kInvalid. Throws ProblemConfigError when `spec` is unusable.
CheckResult check_answer(const CheckerSpec& spec, std::string_view answer);

// Why `answer` cannot be judged at all (empty, too long, not UTF-8, control characters), or
// nullopt when it is judgeable text.
std::optional<std::string> answer_problem(std::string_view answer);

// `text` made safe to store in a PostgreSQL text column: invalid UTF-8 bytes and NULs replaced
// by U+FFFD, cut to at most kMaxAnswerBytes bytes at a character boundary.
std::string storable_text(std::string_view text);

bool valid_utf8(std::string_view text);
std::string_view trim(std::string_view text);
// Strict decimal number: optional sign, digits, optional fraction and exponent; finite only.
std::optional<double> parse_number(std::string_view text);

}  // namespace contest
