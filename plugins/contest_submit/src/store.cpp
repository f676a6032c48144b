#include "contest_submit/src/store.hpp"

#include "contest_submit/src/timestamp.hpp"

namespace contest {
namespace {

// Advisory lock keys. The schema lock uses the one-bigint key space ('contest_' in ASCII); the
// per-contest lock uses the two-int4 key space (class 'cs_j', object = hash of the contest id),
// so the two never collide. Two contests whose ids hash alike merely share a lock.
constexpr int64_t kSchemaLockKey = 0x636f6e746573745f;
constexpr int32_t kContestLockClass = 0x63735f6a;

const char* const kSchemaSql =
#include "contest_submit/schema.sql.inc"
    ;

#define CS_MICROS(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

void prepare(pqxx::connection_base& c) {
  c.prepare("cs_lock", "SELECT pg_advisory_xact_lock(" + std::to_string(kContestLockClass) +
                           ", hashint8($1::bigint))");
  c.prepare("cs_find",
            "SELECT contest_id, team_id, problem_id, answer, " CS_MICROS(
                "submitted_at") ", verdict, score, detail FROM submissions WHERE id = $1");
  c.prepare("cs_contest", "SELECT " CS_MICROS("starts_at") ", " CS_MICROS(
                              "ends_at") ", scoring, penalty_minutes FROM contests WHERE id = $1");
  c.prepare("cs_problem",
            "SELECT checker, tolerance, expected, points FROM problems "
            "WHERE contest_id = $1 AND id = $2");
  c.prepare("cs_insert",
            "INSERT INTO submissions (id, contest_id, team_id, problem_id, answer, submitted_at, "
            "verdict, score, detail, judged_at) "
            "VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7, $8, $9, clock_timestamp()) "
            "ON CONFLICT (id) DO NOTHING RETURNING id");
  c.prepare("cs_attempts",
            "SELECT s.problem_id, s.id, " CS_MICROS(
                "s.submitted_at") ", s.verdict, COALESCE(p.points, 0) "
                                  "FROM submissions s LEFT JOIN problems p "
                                  "ON p.contest_id = s.contest_id AND p.id = s.problem_id "
                                  "WHERE s.contest_id = $1 AND s.team_id = $2 "
                                  "AND s.verdict IN ('accepted', 'wrong_answer')");
  c.prepare("cs_upsert_standing",
            "INSERT INTO standings (contest_id, team_id, solved, penalty, points, "
            "last_accepted_at) VALUES ($1, $2, $3, $4, $5, NULLIF($6, '')::timestamptz) "
            "ON CONFLICT (contest_id, team_id) DO UPDATE SET solved = EXCLUDED.solved, "
            "penalty = EXCLUDED.penalty, points = EXCLUDED.points, "
            "last_accepted_at = EXCLUDED.last_accepted_at");
  c.prepare("cs_note_queue",
            "INSERT INTO contest_queues (queue, contest_id, first_job_id, first_submission_id) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (queue) DO NOTHING RETURNING queue");
  c.prepare("cs_standing", "SELECT solved, penalty, points, " CS_MICROS(
                               "last_accepted_at") " FROM standings "
                                                   "WHERE contest_id = $1 AND team_id = $2");
}

Verdict stored_verdict(const pqxx::field& f) {
  std::optional<Verdict> v = parse_verdict(f.as<std::string>());
  if (!v)
    throw std::runtime_error("submissions row has unknown verdict '" + f.as<std::string>() + "'");
  return *v;
}

}  // namespace

void ensure_schema(pqxx::connection_base& conn) {
  pqxx::work tx(conn);
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kSchemaLockKey) + ")");
  tx.exec(kSchemaSql);
  tx.commit();
}

nlohmann::json to_json(const JudgeOutcome& o) {
  nlohmann::json j = {{"submission_id", o.submission_id},
                      {"contest_id", o.contest_id},
                      {"team_id", o.team_id},
                      {"problem_id", o.problem_id},
                      {"verdict", std::string(to_string(o.verdict))},
                      {"score", o.score},
                      {"detail", o.detail},
                      {"redelivered", o.redelivered}};
  if (o.conflict) j["conflict"] = true;
  if (o.standing) {
    nlohmann::json st = {{"solved", o.standing->solved},
                         {"penalty", o.standing->penalty},
                         {"points", o.standing->points}};
    st["last_accepted_at"] =
        o.standing->last_accepted_at_us
            ? nlohmann::json(format_timestamp(*o.standing->last_accepted_at_us))
            : nlohmann::json(nullptr);
    j["standing"] = std::move(st);
  }
  return j;
}

JudgeConnection::JudgeConnection(const std::string& database_url, int64_t statement_timeout_ms)
    : conn_(database_url) {
  if (statement_timeout_ms > 0) {
    pqxx::nontransaction tx(conn_);
    tx.exec("SET statement_timeout = " + std::to_string(statement_timeout_ms));
  }
  prepare(conn_);
}

JudgeOutcome JudgeConnection::judge(const Submission& s) {
  JudgeOutcome o;
  o.submission_id = s.id;
  o.contest_id = s.contest_id;
  o.team_id = s.team_id;
  o.problem_id = s.problem_id;
  const std::string answer = storable_text(s.answer);
  const std::string submitted_at = format_timestamp(s.submitted_at_us);

  pqxx::work tx(conn_);
  tx.exec_prepared("cs_lock", s.contest_id);

  // A delivery of an id already judged returns the stored verdict and writes nothing.
  auto load_stored = [&](const pqxx::result& r) {
    const pqxx::row row = r[0];
    o.redelivered = true;
    o.verdict = stored_verdict(row[5]);
    o.score = row[6].as<int64_t>();
    o.detail = row[7].as<std::string>();
    o.conflict = row[0].as<int64_t>() != s.contest_id || row[1].as<std::string>() != s.team_id ||
                 row[2].as<std::string>() != s.problem_id || row[3].as<std::string>() != answer ||
                 row[4].as<int64_t>() != s.submitted_at_us;
    o.contest_id = row[0].as<int64_t>();
    o.team_id = row[1].as<std::string>();
    o.problem_id = row[2].as<std::string>();
  };
  if (pqxx::result prior = tx.exec_prepared("cs_find", s.id); !prior.empty()) {
    load_stored(prior);
    tx.commit();
    return o;
  }

  std::optional<ContestInfo> contest;
  if (pqxx::result r = tx.exec_prepared("cs_contest", s.contest_id); !r.empty()) {
    ContestInfo c;
    c.id = s.contest_id;
    c.starts_at_us = r[0][0].as<int64_t>();
    c.ends_at_us = r[0][1].as<int64_t>();
    c.scoring = parse_scoring(r[0][2].as<std::string>()).value_or(Scoring::kIcpc);
    c.penalty_minutes = r[0][3].as<int64_t>();
    contest = c;
  }
  std::optional<ProblemInfo> problem;
  if (contest) {
    if (pqxx::result r = tx.exec_prepared("cs_problem", s.contest_id, s.problem_id); !r.empty()) {
      ProblemInfo p;
      p.id = s.problem_id;
      std::optional<CheckerKind> kind = parse_checker(r[0][0].as<std::string>());
      if (!kind) {
        throw ProblemConfigError("problem '" + s.problem_id + "' of contest " +
                                 std::to_string(s.contest_id) + " has unknown checker '" +
                                 r[0][0].as<std::string>() + "'");
      }
      p.checker.kind = *kind;
      p.checker.tolerance = r[0][1].as<double>();
      p.checker.expected = r[0][2].as<std::string>();
      p.points = r[0][3].as<int64_t>();
      problem = std::move(p);
    }
  }

  Judgement j;
  try {
    j = decide(contest ? &*contest : nullptr, problem ? &*problem : nullptr, s.answer,
               s.submitted_at_us);
  } catch (const ProblemConfigError& e) {
    throw ProblemConfigError("problem '" + s.problem_id + "' of contest " +
                             std::to_string(s.contest_id) + ": " + e.what());
  }
  o.verdict = j.verdict;
  o.score = j.score;
  o.detail = j.detail;

  pqxx::result inserted =
      tx.exec_prepared("cs_insert", s.id, s.contest_id, s.team_id, s.problem_id, answer,
                       submitted_at, std::string(to_string(j.verdict)), j.score, j.detail);
  if (inserted.empty()) {
    // The same id was committed meanwhile under another contest's lock (a redelivery that
    // changed contest_id). The conflicting insert waited for it, so it is visible now.
    load_stored(tx.exec_prepared("cs_find", s.id));
    tx.commit();
    return o;
  }

  if (j.verdict == Verdict::kAccepted || j.verdict == Verdict::kWrongAnswer) {
    std::vector<Attempt> attempts;
    for (const pqxx::row& row : tx.exec_prepared("cs_attempts", s.contest_id, s.team_id)) {
      Attempt a;
      a.problem_id = row[0].as<std::string>();
      a.submission_id = row[1].as<std::string>();
      a.submitted_at_us = row[2].as<int64_t>();
      a.verdict = stored_verdict(row[3]);
      a.points = row[4].as<int64_t>();
      attempts.push_back(std::move(a));
    }
    TeamStanding st = score_team(*contest, std::move(attempts));
    std::string last = st.last_accepted_at_us ? format_timestamp(*st.last_accepted_at_us) : "";
    tx.exec_prepared("cs_upsert_standing", s.contest_id, s.team_id, st.solved, st.penalty,
                     st.points, last);
    o.standing = st;
  }
  tx.commit();
  return o;
}

bool JudgeConnection::note_queue(const std::string& queue, int64_t contest_id, int64_t job_id,
                                 const std::string& submission_id) {
  pqxx::nontransaction tx(conn_);
  return !tx.exec_prepared("cs_note_queue", queue, contest_id, job_id, submission_id).empty();
}

std::optional<TeamStanding> JudgeConnection::standing(int64_t contest_id,
                                                      const std::string& team_id) {
  pqxx::read_transaction tx(conn_);
  pqxx::result r = tx.exec_prepared("cs_standing", contest_id, team_id);
  if (r.empty()) return std::nullopt;
  TeamStanding st;
  st.solved = r[0][0].as<int64_t>();
  st.penalty = r[0][1].as<int64_t>();
  st.points = r[0][2].as<int64_t>();
  if (!r[0][3].is_null()) st.last_accepted_at_us = r[0][3].as<int64_t>();
  return st;
}

}  // namespace contest
