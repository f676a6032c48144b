// The contest_submit payload: {submission_id, contest_id, team_id, problem_id, answer,
// submitted_at}, parsed and validated into a Submission. Pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace contest {

// The longest id (submission, team, problem) accepted, in bytes.
inline constexpr std::size_t kMaxIdBytes = 128;

struct Submission {
  std::string id;
  int64_t contest_id = 0;
  std::string team_id;
  std::string problem_id;
  std::string answer;  // as sent; judged (and maybe found invalid) later
  int64_t submitted_at_us = 0;
};

// The payload is malformed: it can never be judged. field() names the offending field ("" when
// the payload as a whole is wrong, e.g. not an object).
class InvalidSubmission : public std::runtime_error {
 public:
  InvalidSubmission(std::string field, const std::string& msg)
      : std::runtime_error(msg), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// Field rules: submission_id, team_id, problem_id: non-empty strings of at most kMaxIdBytes
// bytes of UTF-8 without control characters. contest_id: a positive integer. answer: a string
// (its content is judged, not validated here). submitted_at: an RFC 3339 timestamp string with
// a zone. Other fields are ignored. Throws InvalidSubmission naming the first bad field.
Submission parse_submission(const nlohmann::json& payload);

// The payload form of `s` (what a producer sends).
nlohmann::json to_payload(const Submission& s);

}  // namespace contest
