// Database side of contest_submit: the application schema and the judging transaction, shared
// by the plugin and the `contest-submit` CLI so both judge with the same code.
//
// Ownership/threading: a JudgeConnection owns one PostgreSQL connection and is used by one
// thread at a time (the plugin keeps a pool of them). Correctness across threads, processes and
// hosts comes from the database: a transaction-level advisory lock per contest serializes the
// judging of one contest, and the submission row is written with ON CONFLICT DO NOTHING in the
// same transaction as the standings update, so a redelivered submission never counts twice.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/pqxx>
#include <string>

#include "contest_submit/src/rules.hpp"
#include "contest_submit/src/submission.hpp"

namespace contest {

// Creates the tables (contests, problems, submissions, contest_queues, standings) if missing, under
// a transaction-level advisory lock so concurrent first starts do not race.
void ensure_schema(pqxx::connection_base& conn);

struct JudgeOutcome {
  std::string submission_id;
  int64_t contest_id = 0;
  std::string team_id;
  std::string problem_id;
  Verdict verdict = Verdict::kInvalid;
  int64_t score = 0;
  std::string detail;
  // True when the submission id was already judged: the stored verdict is returned and nothing
  // was written.
  bool redelivered = false;
  // Redelivered with different content (contest, team, problem, answer or time) than stored.
  bool conflict = false;
  // The team's standings row after this submission (accepted / wrong_answer on first judging).
  std::optional<TeamStanding> standing;
};

nlohmann::json to_json(const JudgeOutcome& o);

class JudgeConnection {
 public:
  // Connects; statement_timeout_ms > 0 bounds every statement (lock waits included).
  explicit JudgeConnection(const std::string& database_url, int64_t statement_timeout_ms = 0);

  // Judges `s` in one transaction and commits. Throws ProblemConfigError for an unusable
  // problem row (nothing written), pqxx::broken_connection / pqxx::sql_error for database
  // trouble (nothing written; retrying is safe).
  JudgeOutcome judge(const Submission& s);

  // Records `queue` in contest_queues unless it is there already; true when this call added
  // it (the first submission judged from that queue, by any runner). Autocommit.
  bool note_queue(const std::string& queue, int64_t contest_id, int64_t job_id,
                  const std::string& submission_id);

  // The stored standings row of a team, if any.
  std::optional<TeamStanding> standing(int64_t contest_id, const std::string& team_id);

  bool is_open() const { return conn_.is_open(); }
  pqxx::connection& raw() { return conn_; }

 private:
  pqxx::connection conn_;
};

}  // namespace contest
