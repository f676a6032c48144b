// Judging against a real PostgreSQL through the real plugin .so, in-process (PluginHost):
// verdicts, ICPC and points standings, after-accept submissions, redeliveries, malformed
// payloads (permanent errors naming the field) and misconfigured problems.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "contest_fixture.hpp"
#include "harness.hpp"
#include "plugin_host.hpp"

namespace {

using cstest::Standing;

class Judge : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's own role and schema (what a runner hands it); the test reads and seeds the
    // plugin's tables through it too.
    url_ = jrtest::plugin_database(jrtest::PgCluster::get().create_database("cs"), "contest_submit")
               .url;
    host_ = std::make_unique<jrtest::PluginHost>(cstest::plugin_so(),
                                                 nlohmann::json{{"database_url", url_}});
    cstest::create_demo_contests(url_);
  }

  // Runs one job; expects success and returns the result document.
  nlohmann::json submit(const std::string& id, int64_t contest, const std::string& team,
                        const std::string& problem, const std::string& answer,
                        const std::string& at) {
    nlohmann::json p = {{"submission_id", id},   {"contest_id", contest}, {"team_id", team},
                        {"problem_id", problem}, {"answer", answer},      {"submitted_at", at}};
    jrtest::JobOutcome o = host_->run("contest_submit", p.dump());
    EXPECT_EQ(o.status, JR_OK) << o.error;
    return o.result.empty() ? nlohmann::json() : nlohmann::json::parse(o.result);
  }
  std::string verdict(const std::string& id, int64_t contest, const std::string& team,
                      const std::string& problem, const std::string& answer,
                      const std::string& at) {
    return submit(id, contest, team, problem, answer, at).value("verdict", "");
  }
  jrtest::JobOutcome run_raw(const std::string& payload) {
    return host_->run("contest_submit", payload);
  }
  std::string q(const std::string& sql) { return jrtest::PgCluster::query_one(url_, sql); }
  std::optional<Standing> standing(int64_t contest, const std::string& team) {
    return cstest::read_standing(url_, contest, team);
  }

  std::string url_;
  std::unique_ptr<jrtest::PluginHost> host_;
};

TEST_F(Judge, InitCreatesTheSchemaAndASecondInitIsHarmless) {
  EXPECT_EQ(q("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
              "'plugin_contest_submit' AND table_name IN "
              "('contests', 'problems', 'submissions', 'standings')"),
            "4");
  jrtest::PluginHost second(cstest::plugin_so(), nlohmann::json{{"database_url", url_}});
  EXPECT_EQ(q("SELECT count(*) FROM contests"), "2");
}

TEST_F(Judge, ContestNotRunningOutsideTheWindowAndForUnknownContests) {
  EXPECT_EQ(verdict("n1", 1, "t1", "A", "42", "2024-05-01T09:59:59Z"), "contest_not_running");
  EXPECT_EQ(verdict("n2", 1, "t1", "A", "42", "2024-05-01T15:00:00Z"), "contest_not_running");
  EXPECT_EQ(verdict("n3", 1, "t1", "A", "42", "2024-05-01T16:00:00+01:00"), "contest_not_running");
  nlohmann::json r = submit("n4", 99, "t1", "A", "42", "2024-05-01T10:30:00Z");
  EXPECT_EQ(r["verdict"], "contest_not_running");
  EXPECT_EQ(r["detail"], "no such contest");
  EXPECT_FALSE(standing(1, "t1"));
  EXPECT_EQ(q("SELECT count(*) FROM submissions WHERE verdict = 'contest_not_running'"), "4");
  EXPECT_EQ(q("SELECT count(*) FROM standings"), "0");
}

TEST_F(Judge, UnknownProblem) {
  nlohmann::json r = submit("u1", 1, "t1", "Z", "42", "2024-05-01T10:30:00Z");
  EXPECT_EQ(r["verdict"], "unknown_problem");
  EXPECT_EQ(r["score"], 0);
  EXPECT_FALSE(standing(1, "t1"));
}

TEST_F(Judge, InvalidAnswersAreStoredAndCostNoPenalty) {
  EXPECT_EQ(verdict("i1", 1, "t1", "C", "three", "2024-05-01T10:01:00Z"), "invalid");
  EXPECT_EQ(verdict("i2", 1, "t1", "A", "   ", "2024-05-01T10:02:00Z"), "invalid");
  EXPECT_EQ(verdict("i3", 1, "t1", "A", std::string(2000, '4'), "2024-05-01T10:03:00Z"), "invalid");
  EXPECT_EQ(verdict("i4", 1, "t1", "A",
                    std::string("4\0"
                                "2",
                                3),
                    "2024-05-01T10:04:00Z"),
            "invalid");
  EXPECT_FALSE(standing(1, "t1"));
  // Stored text stays within the limit, NUL replaced.
  EXPECT_EQ(q("SELECT octet_length(answer) <= 1024 FROM submissions WHERE id = 'i3'"), "t");
  EXPECT_EQ(q("SELECT answer FROM submissions WHERE id = 'i4'"),
            "4\xEF\xBF\xBD"
            "2");
  EXPECT_EQ(verdict("i5", 1, "t1", "C", "3.1416", "2024-05-01T10:10:00Z"), "accepted");
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 10, 1, "2024-05-01 10:10:00"}));
}

TEST_F(Judge, WrongThenAcceptedCostsMinutesPlusPenaltyPerWrongAttempt) {
  EXPECT_EQ(verdict("w1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z"), "wrong_answer");
  EXPECT_EQ(standing(1, "t1"), (Standing{0, 0, 0, ""}));
  EXPECT_EQ(verdict("w2", 1, "t1", "A", "forty-two", "2024-05-01T10:20:00Z"), "wrong_answer");
  nlohmann::json r = submit("w3", 1, "t1", "A", " 42\n", "2024-05-01T10:47:59.5Z");
  EXPECT_EQ(r["verdict"], "accepted");
  EXPECT_EQ(r["score"], 1);
  EXPECT_EQ(r["redelivered"], false);
  EXPECT_EQ(r["standing"]["penalty"], 47 + 2 * 20);
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 87, 1, "2024-05-01 10:47:59.5"}));
  // Other checkers, other problems add up.
  EXPECT_EQ(verdict("w4", 1, "t1", "B", "hello world", "2024-05-01T11:00:00Z"), "accepted");
  EXPECT_EQ(verdict("w5", 1, "t1", "D", "1,2,x", "2024-05-01T11:10:00Z"), "wrong_answer");
  EXPECT_EQ(verdict("w6", 1, "t1", "D", "1,2,3", "2024-05-01T11:30:00Z"), "accepted");
  EXPECT_EQ(standing(1, "t1"), (Standing{3, 87 + 60 + (90 + 20), 3, "2024-05-01 11:30:00"}));
  EXPECT_EQ(q("SELECT count(*) FROM submissions WHERE judged_at IS NULL"), "0");
  EXPECT_FALSE(standing(1, "t2"));
}

TEST_F(Judge, SubmissionsAfterAcceptanceDoNotChangeTheStandings) {
  EXPECT_EQ(verdict("a1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z"), "wrong_answer");
  EXPECT_EQ(verdict("a2", 1, "t1", "A", "42", "2024-05-01T10:30:00Z"), "accepted");
  const Standing after_accept{1, 50, 1, "2024-05-01 10:30:00"};
  EXPECT_EQ(standing(1, "t1"), after_accept);
  EXPECT_EQ(verdict("a3", 1, "t1", "A", "41", "2024-05-01T10:40:00Z"), "wrong_answer");
  EXPECT_EQ(verdict("a4", 1, "t1", "A", "42", "2024-05-01T10:50:00Z"), "accepted");
  EXPECT_EQ(verdict("a5", 1, "t1", "A", "nope", "2024-05-01T11:50:00Z"), "wrong_answer");
  EXPECT_EQ(standing(1, "t1"), after_accept);
}

TEST_F(Judge, LateJudgedEarlierSubmissionsCountByTheirSubmissionTime) {
  // Judged out of order (e.g. a retry): the standings follow submission time, not judging order.
  EXPECT_EQ(verdict("o1", 1, "t1", "A", "42", "2024-05-01T10:30:00Z"), "accepted");
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 30, 1, "2024-05-01 10:30:00"}));
  EXPECT_EQ(verdict("o2", 1, "t1", "A", "7", "2024-05-01T10:10:00Z"), "wrong_answer");
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 50, 1, "2024-05-01 10:30:00"}));
  EXPECT_EQ(verdict("o3", 1, "t1", "A", "42", "2024-05-01T10:20:00Z"), "accepted");
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 40, 1, "2024-05-01 10:20:00"}));
}

TEST_F(Judge, RedeliveryReturnsTheStoredVerdictAndCountsOnce) {
  nlohmann::json first = submit("r1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z");
  nlohmann::json again = submit("r1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z");
  EXPECT_EQ(first["redelivered"], false);
  EXPECT_EQ(again["redelivered"], true);
  EXPECT_EQ(again["verdict"], "wrong_answer");
  EXPECT_FALSE(again.contains("conflict"));
  ASSERT_EQ(verdict("r2", 1, "t1", "A", "42", "2024-05-01T10:30:00Z"), "accepted");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(submit("r2", 1, "t1", "A", "42", "2024-05-01T10:30:00Z")["redelivered"], true);
    EXPECT_EQ(submit("r1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z")["redelivered"], true);
  }
  EXPECT_EQ(standing(1, "t1"), (Standing{1, 50, 1, "2024-05-01 10:30:00"}));
  EXPECT_EQ(q("SELECT count(*) FROM submissions"), "2");
}

TEST_F(Judge, RedeliveryWithDifferentContentKeepsTheStoredVerdict) {
  ASSERT_EQ(verdict("c1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z"), "wrong_answer");
  jrtest::JobOutcome o = run_raw(
      R"({"submission_id":"c1","contest_id":1,"team_id":"t1","problem_id":"A","answer":"42",)"
      R"("submitted_at":"2024-05-01T10:05:00Z"})");
  ASSERT_EQ(o.status, JR_OK) << o.error;
  nlohmann::json r = nlohmann::json::parse(o.result);
  EXPECT_EQ(r["verdict"], "wrong_answer");
  EXPECT_EQ(r["redelivered"], true);
  EXPECT_EQ(r["conflict"], true);
  EXPECT_EQ(q("SELECT answer FROM submissions WHERE id = 'c1'"), "41");
  EXPECT_EQ(standing(1, "t1"), (Standing{0, 0, 0, ""}));
}

TEST_F(Judge, PointsContestSumsProblemPoints) {
  EXPECT_EQ(verdict("p1", 2, "t1", "X", "alfa", "2024-06-01T12:10:00Z"), "wrong_answer");
  nlohmann::json r = submit("p2", 2, "t1", "X", "ALPHA", "2024-06-01T12:20:00Z");
  EXPECT_EQ(r["verdict"], "accepted");
  EXPECT_EQ(r["score"], 100);
  EXPECT_EQ(verdict("p3", 2, "t1", "Y", "2.5", "2024-06-01T12:30:00Z"), "accepted");
  EXPECT_EQ(verdict("p4", 2, "t1", "Y", "2.5", "2024-06-01T12:40:00Z"), "accepted");
  EXPECT_EQ(standing(2, "t1"), (Standing{2, 0, 350, "2024-06-01 12:30:00"}));
}

TEST_F(Judge, MalformedPayloadsArePermanentErrorsNamingTheField) {
  struct Case {
    std::string payload;
    std::string error;
  };
  const std::string rest =
      R"("team_id":"t1","problem_id":"A","answer":"42","submitted_at":"2024-05-01T10:05:00Z")";
  std::vector<Case> cases = {
      {R"({"contest_id":1,)" + rest + "}", "invalid submission: missing field 'submission_id'"},
      {R"({"submission_id":"m1",)" + rest + "}", "invalid submission: missing field 'contest_id'"},
      {R"({"submission_id":"m1","contest_id":"1",)" + rest + "}",
       "invalid submission: field 'contest_id' must be an integer, got string"},
      {R"({"submission_id":"m1","contest_id":1,"team_id":"t1","problem_id":"A","answer":42,)"
       R"("submitted_at":"2024-05-01T10:05:00Z"})",
       "invalid submission: field 'answer' must be a string, got integer"},
      {R"({"submission_id":"m1","contest_id":1,"team_id":"t1","problem_id":"A","answer":"42",)"
       R"("submitted_at":"yesterday"})",
       "invalid submission: field 'submitted_at' must be an RFC 3339 timestamp such as "
       "2024-05-01T10:15:00Z, got 'yesterday'"},
      {R"([1,2,3])", "invalid submission: payload must be a JSON object, got array"},
      {R"("just text")", "invalid submission: payload must be a JSON object, got string"},
  };
  for (const Case& c : cases) {
    jrtest::JobOutcome o = run_raw(c.payload);
    EXPECT_EQ(o.status, JR_ERR_PERMANENT) << c.payload;
    EXPECT_EQ(o.error, c.error) << c.payload;
  }
  jrtest::JobOutcome bad_json = run_raw("{not json");
  EXPECT_EQ(bad_json.status, JR_ERR_PERMANENT);
  EXPECT_NE(bad_json.error.find("payload is not valid JSON"), std::string::npos);
  EXPECT_EQ(q("SELECT count(*) FROM submissions"), "0");
}

TEST_F(Judge, MisconfiguredProblemIsAPermanentErrorAndWritesNothing) {
  jrtest::PgCluster::exec(url_,
                          "INSERT INTO problems (contest_id, id, checker, expected) VALUES "
                          "(1, 'E', 'numeric', 'many'), (1, 'F', 'regex', '([')");
  for (const char* problem : {"E", "F"}) {
    nlohmann::json p = {{"submission_id", std::string("bad-") + problem},
                        {"contest_id", 1},
                        {"team_id", "t1"},
                        {"problem_id", problem},
                        {"answer", "1"},
                        {"submitted_at", "2024-05-01T10:05:00Z"}};
    jrtest::JobOutcome o = run_raw(p.dump());
    EXPECT_EQ(o.status, JR_ERR_PERMANENT);
    EXPECT_NE(o.error.find(std::string("contest configuration error: problem '") + problem +
                           "' of contest 1"),
              std::string::npos)
        << o.error;
  }
  EXPECT_EQ(q("SELECT count(*) FROM submissions"), "0");
}

TEST_F(Judge, DatabaseTroubleIsRetryable) {
  // A real failure: the plugin's database disappears under it (connections terminated and the
  // database renamed away), so judging cannot reach its tables.
  ASSERT_EQ(verdict("d1", 1, "t1", "A", "41", "2024-05-01T10:05:00Z"), "wrong_answer");
  // Ending another role's sessions takes a superuser (the runner's role is not a member of the
  // plugin's).
  std::string admin = jrtest::PgCluster::get().superuser_url("postgres");
  std::string db = q("SELECT current_database()");
  auto rename = [&](const std::string& from, const std::string& to) {
    // Terminated backends take a moment to exit; the rename fails while they are listed.
    bool ok = jrtest::wait_until(
        [&] {
          try {
            jrtest::PgCluster::exec(admin,
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = '" +
                                        from + "' AND pid <> pg_backend_pid()");
            jrtest::PgCluster::exec(admin,
                                    "ALTER DATABASE \"" + from + "\" RENAME TO \"" + to + "\"");
            return true;
          } catch (const std::exception&) {
            return false;
          }
        },
        std::chrono::seconds(10));
    ASSERT_TRUE(ok) << "could not rename " << from;
  };
  rename(db, db + "_gone");
  jrtest::JobOutcome o = run_raw(
      R"({"submission_id":"d2","contest_id":1,"team_id":"t1","problem_id":"A","answer":"42",)"
      R"("submitted_at":"2024-05-01T10:06:00Z"})");
  EXPECT_EQ(o.status, JR_ERR_RETRYABLE) << o.error;
  rename(db + "_gone", db);
  // Back again: the retry judges the submission.
  EXPECT_EQ(verdict("d2", 1, "t1", "A", "42", "2024-05-01T10:06:00Z"), "accepted");
}

}  // namespace
