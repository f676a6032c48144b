// `contest-submit`: judges one submission directly against the database with the same library
// code as the contest_submit plugin (the direct-submission path), creates the schema, and prints
// standings. Single-threaded.
//
// Exit codes: 0 judged (whatever the verdict) or command done; 1 database or configuration
// error; 2 usage error or malformed submission.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <pqxx/pqxx>

#include "contest_submit/src/store.hpp"
#include "contest_submit/src/submission.hpp"
#include "contest_submit/src/timestamp.hpp"

namespace {

int judge(const std::string& url, const nlohmann::json& payload) {
  contest::Submission s;
  try {
    s = contest::parse_submission(payload);
  } catch (const contest::InvalidSubmission& e) {
    std::cerr << "contest-submit: " << e.what() << "\n";
    return 2;
  }
  contest::JudgeConnection conn(url);
  contest::ensure_schema(conn.raw());
  contest::JudgeOutcome o = conn.judge(s);
  std::cout << contest::to_json(o).dump() << "\n";
  return 0;
}

int standings(const std::string& url, int64_t contest_id) {
  pqxx::connection conn(url);
  pqxx::read_transaction tx(conn);
  pqxx::result r = tx.exec_params(
      "SELECT s.team_id, s.solved, s.penalty, s.points, s.last_accepted_at, c.scoring "
      "FROM standings s JOIN contests c ON c.id = s.contest_id WHERE s.contest_id = $1 "
      "ORDER BY CASE WHEN c.scoring = 'points' THEN -s.points ELSE -s.solved END, "
      "CASE WHEN c.scoring = 'points' THEN 0 ELSE s.penalty END, "
      "s.last_accepted_at NULLS LAST, s.team_id",
      contest_id);
  nlohmann::json rows = nlohmann::json::array();
  int rank = 0;
  for (const pqxx::row& row : r) {
    rows.push_back({{"rank", ++rank},
                    {"team_id", row[0].as<std::string>()},
                    {"solved", row[1].as<int64_t>()},
                    {"penalty", row[2].as<int64_t>()},
                    {"points", row[3].as<int64_t>()},
                    {"last_accepted_at",
                     row[4].is_null() ? nlohmann::json(nullptr) : nlohmann::json(row[4].c_str())}});
  }
  std::cout << rows.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "contest-submit: judge a contest submission directly (same code as the "
      "contest_submit job kind)"};
  app.require_subcommand(1);
  std::string url;
  app.add_option("--database", url, "PostgreSQL URL (default: $DATABASE_URL)")
      ->envname("DATABASE_URL");

  auto* schema = app.add_subcommand("schema", "create the contest tables if missing");

  auto* judge_cmd = app.add_subcommand("judge", "judge one submission; prints the outcome JSON");
  std::string payload_text, submission_id, team_id, problem_id, answer, submitted_at;
  int64_t contest_id = 0;
  auto* payload_opt = judge_cmd->add_option("--payload", payload_text,
                                            "the job payload as JSON (instead of flags)");
  judge_cmd->add_option("--submission-id", submission_id)->excludes(payload_opt);
  judge_cmd->add_option("--contest", contest_id)->excludes(payload_opt);
  judge_cmd->add_option("--team", team_id)->excludes(payload_opt);
  judge_cmd->add_option("--problem", problem_id)->excludes(payload_opt);
  judge_cmd->add_option("--answer", answer)->excludes(payload_opt);
  judge_cmd->add_option("--submitted-at", submitted_at, "RFC 3339 time (default: now)")
      ->excludes(payload_opt);

  auto* standings_cmd = app.add_subcommand("standings", "print a contest's standings as JSON");
  int64_t standings_contest = 0;
  standings_cmd->add_option("--contest", standings_contest)->required();

  CLI11_PARSE(app, argc, argv);
  if (url.empty()) {
    std::cerr << "contest-submit: no database: pass --database or set DATABASE_URL\n";
    return 2;
  }
  try {
    if (*schema) {
      pqxx::connection conn(url);
      contest::ensure_schema(conn);
      return 0;
    }
    if (*standings_cmd) return standings(url, standings_contest);
    nlohmann::json payload;
    if (!payload_text.empty()) {
      payload = nlohmann::json::parse(payload_text, nullptr, false);
      if (payload.is_discarded()) {
        std::cerr << "contest-submit: --payload is not valid JSON\n";
        return 2;
      }
    } else {
      if (submitted_at.empty()) {
        auto now = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::system_clock::now().time_since_epoch());
        submitted_at = contest::format_timestamp(now.count());
      }
      payload = nlohmann::json::object();
      // Only flags given become fields, so a missing one is reported like a missing field.
      if (!submission_id.empty()) payload["submission_id"] = submission_id;
      if (contest_id != 0) payload["contest_id"] = contest_id;
      if (!team_id.empty()) payload["team_id"] = team_id;
      if (!problem_id.empty()) payload["problem_id"] = problem_id;
      if (judge_cmd->count("--answer") > 0) payload["answer"] = answer;
      payload["submitted_at"] = submitted_at;
    }
    return judge(url, payload);
  } catch (const contest::ProblemConfigError& e) {
    std::cerr << "contest-submit: contest configuration error: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "contest-submit: " << e.what() << "\n";
  }
  return 1;
}
