#include "contest_submit/src/checker.hpp"

#include <charconv>
#include <cmath>
#include <memory>
#include <mutex>
#include <regex>
#include <unordered_map>

namespace contest {
namespace {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 when it is ill-formed
// (overlong forms, surrogates and code points above U+10FFFF are ill-formed).
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (b(1) < lo || b(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (b(k) < 0x80 || b(k) > 0xBF) return 0;
  }
  return n;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Compiled patterns shared by all threads; matching on a const std::regex is thread-safe.
class RegexCache {
 public:
  std::shared_ptr<const std::regex> get(const std::string& pattern) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = cache_.find(pattern);
      if (it != cache_.end()) return it->second;
    }
    std::shared_ptr<const std::regex> re;
    try {
      re = std::make_shared<const std::regex>(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw ProblemConfigError("regex checker pattern '" + pattern +
                               "' does not compile: " + e.what());
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() >= kMaxEntries) cache_.clear();
    cache_.emplace(pattern, re);
    return re;
  }

 private:
  static constexpr std::size_t kMaxEntries = 512;
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<const std::regex>> cache_;
};

RegexCache& regex_cache() {
  static RegexCache* cache = new RegexCache();  // never destroyed: used until process exit
  return *cache;
}

}  // namespace

std::optional<CheckerKind> parse_checker(std::string_view name) {
  if (name == "exact") return CheckerKind::kExact;
  if (name == "case_insensitive") return CheckerKind::kCaseInsensitive;
  if (name == "numeric") return CheckerKind::kNumeric;
  if (name == "regex") return CheckerKind::kRegex;
  return std::nullopt;
}

std::string_view to_string(CheckerKind kind) {
  switch (kind) {
    case CheckerKind::kExact:
      return "exact";
    case CheckerKind::kCaseInsensitive:
      return "case_insensitive";
    case CheckerKind::kNumeric:
      return "numeric";
    case CheckerKind::kRegex:
      return "regex";
  }
  return "exact";
}

bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = utf8_sequence(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

std::optional<double> parse_number(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string_view digits = text;
  bool negative = false;
  if (digits.front() == '+' || digits.front() == '-') {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  // from_chars also reads "inf", "nan" and "1." style forms: demand a digit or '.' then a digit.
  if (digits.empty()) return std::nullopt;
  bool starts_ok =
      (digits.front() >= '0' && digits.front() <= '9') ||
      (digits.front() == '.' && digits.size() > 1 && digits[1] >= '0' && digits[1] <= '9');
  if (!starts_ok) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value,
                                   std::chars_format::general);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  if (!std::isfinite(value)) return std::nullopt;
  return negative ? -value : value;
}

std::optional<std::string> answer_problem(std::string_view answer) {
  if (answer.size() > kMaxAnswerBytes) {
    return "answer is " + std::to_string(answer.size()) + " bytes, more than the limit of " +
           std::to_string(kMaxAnswerBytes);
  }
  if (!valid_utf8(answer)) return "answer is not valid UTF-8 text";
  for (char c : answer) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && !is_space(c)) || u == 0x7F) return "answer contains control characters";
  }
  if (trim(answer).empty()) return "answer is empty";
  return std::nullopt;
}

std::string storable_text(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size() < kMaxAnswerBytes ? text.size() : kMaxAnswerBytes);
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = utf8_sequence(text, i);
    std::string_view piece = (n == 0 || text[i] == '\0') ? kReplacement : text.substr(i, n);
    if (out.size() + piece.size() > kMaxAnswerBytes) break;
    out.append(piece);
    i += n == 0 ? 1 : n;
  }
  return out;
}

CheckResult check_answer(const CheckerSpec& spec, std::string_view answer) {
  if (auto why = answer_problem(answer)) return {CheckOutcome::kInvalid, *why};
  std::string_view got = trim(answer);
  auto verdict = [](bool ok) {
    return ok ? CheckResult{CheckOutcome::kCorrect, ""}
              : CheckResult{CheckOutcome::kWrong, "answer does not match"};
  };
  switch (spec.kind) {
    case CheckerKind::kExact:
      return verdict(got == trim(spec.expected));
    case CheckerKind::kCaseInsensitive: {
      std::string_view want = trim(spec.expected);
      if (got.size() != want.size()) return verdict(false);
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (ascii_lower(got[i]) != ascii_lower(want[i])) return verdict(false);
      }
      return verdict(true);
    }
    case CheckerKind::kNumeric: {
      std::optional<double> want = parse_number(trim(spec.expected));
      if (!want) {
        throw ProblemConfigError("numeric checker: expected answer '" + spec.expected +
                                 "' is not a number");
      }
      if (!(spec.tolerance >= 0) || !std::isfinite(spec.tolerance)) {
        throw ProblemConfigError("numeric checker: tolerance must be a finite number >= 0");
      }
      std::optional<double> value = parse_number(got);
      if (!value) return {CheckOutcome::kInvalid, "answer is not a number"};
      return verdict(std::fabs(*value - *want) <= spec.tolerance);
    }
    case CheckerKind::kRegex: {
      auto re = regex_cache().get(spec.expected);
      return verdict(std::regex_match(got.begin(), got.end(), *re));
    }
  }
  return verdict(false);
}

}  // namespace contest
