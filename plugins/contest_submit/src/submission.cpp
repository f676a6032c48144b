#include "contest_submit/src/submission.hpp"

#include "contest_submit/src/checker.hpp"
#include "contest_submit/src/timestamp.hpp"

namespace contest {
namespace {

std::string type_name(const nlohmann::json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();  // "null", "boolean", "string", "array", "object"
}

const nlohmann::json& field(const nlohmann::json& payload, const std::string& name) {
  auto it = payload.find(name);
  if (it == payload.end()) {
    throw InvalidSubmission(name, "invalid submission: missing field '" + name + "'");
  }
  return *it;
}

std::string string_field(const nlohmann::json& payload, const std::string& name) {
  const nlohmann::json& v = field(payload, name);
  if (!v.is_string()) {
    throw InvalidSubmission(
        name, "invalid submission: field '" + name + "' must be a string, got " + type_name(v));
  }
  return v.get<std::string>();
}

std::string id_field(const nlohmann::json& payload, const std::string& name) {
  std::string s = string_field(payload, name);
  auto bad = [&](const std::string& why) {
    return InvalidSubmission(name, "invalid submission: field '" + name + "' " + why);
  };
  if (s.empty()) throw bad("must not be empty");
  if (s.size() > kMaxIdBytes) {
    throw bad("is longer than " + std::to_string(kMaxIdBytes) + " bytes");
  }
  if (!valid_utf8(s)) throw bad("is not valid UTF-8");
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) throw bad("contains control characters");
  }
  return s;
}

}  // namespace

Submission parse_submission(const nlohmann::json& payload) {
  if (!payload.is_object()) {
    throw InvalidSubmission(
        "", "invalid submission: payload must be a JSON object, got " + type_name(payload));
  }
  Submission s;
  s.id = id_field(payload, "submission_id");
  {
    const nlohmann::json& v = field(payload, "contest_id");
    if (!v.is_number_integer()) {
      throw InvalidSubmission(
          "contest_id",
          "invalid submission: field 'contest_id' must be an integer, got " + type_name(v));
    }
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      throw InvalidSubmission("contest_id", "invalid submission: field 'contest_id' is too large");
    }
    s.contest_id = v.get<int64_t>();
    if (s.contest_id <= 0) {
      throw InvalidSubmission("contest_id",
                              "invalid submission: field 'contest_id' must be positive");
    }
  }
  s.team_id = id_field(payload, "team_id");
  s.problem_id = id_field(payload, "problem_id");
  s.answer = string_field(payload, "answer");
  std::string at = string_field(payload, "submitted_at");
  std::optional<int64_t> us = parse_timestamp(at);
  if (!us) {
    throw InvalidSubmission("submitted_at",
                            "invalid submission: field 'submitted_at' must be an RFC 3339 "
                            "timestamp such as 2024-05-01T10:15:00Z, got '" +
                                storable_text(at.substr(0, 64)) + "'");
  }
  s.submitted_at_us = *us;
  return s;
}

nlohmann::json to_payload(const Submission& s) {
  return {{"submission_id", s.id}, {"contest_id", s.contest_id},
          {"team_id", s.team_id},  {"problem_id", s.problem_id},
          {"answer", s.answer},    {"submitted_at", format_timestamp(s.submitted_at_us)}};
}

}  // namespace contest
