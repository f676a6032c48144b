// The log lines seed 004's operators read, through two real `runner` processes serving
// 'contest:submissions:*' (in-process or sandboxed, as the ctest variant says): one info line per
// judged submission (job id, contest, queue, verdict) and one info line per discovered queue for
// the whole fleet, however many runners and sandbox workers judged from it.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "contest_fixture.hpp"
#include "contest_submit/src/store.hpp"
#include "harness.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The JSON log lines of a runner's output whose message starts with `prefix`.
std::vector<json> lines_starting(const std::string& log, const std::string& prefix) {
  std::vector<json> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.value("msg", "").rfind(prefix, 0) == 0) out.push_back(j);
  }
  return out;
}

TEST(ContestLogging, JudgedSubmissionsAndDiscoveredQueuesAreLoggedAtInfoOnce) {
  std::string url = jrtest::PgCluster::get().create_database("cslog");
  std::map<std::string, std::string> env = {{"DATABASE_URL", url}};
  ASSERT_EQ(jrtest::run_runner({"migrate"}, env).exit_code, 0);
  // The plugin's own role and schema (the runners reuse them): contests are seeded and the
  // contest tables read through it, the queue through the runner's role.
  std::string plugin_url = jrtest::plugin_database(url, "contest_submit").url;
  jrtest::TempDir dir;
  fs::copy_file(cstest::plugin_so(), dir.path() + "/libjr_contest_submit.so");

  struct Sub {
    std::string queue, id;
    int64_t contest;
    std::string problem, answer, at, verdict;
  };
  const std::vector<Sub> subs = {
      {"contest:submissions:1", "l1", 1, "A", "41", "2024-05-01T10:05:00Z", "wrong_answer"},
      {"contest:submissions:1", "l2", 1, "A", "42", "2024-05-01T10:06:00Z", "accepted"},
      {"contest:submissions:1", "l3", 1, "B", "", "2024-05-01T10:07:00Z", "invalid"},
      {"contest:submissions:1", "l4", 1, "Z", "1", "2024-05-01T10:08:00Z", "unknown_problem"},
      {"contest:submissions:1", "l5", 1, "C", "3.1416", "2024-05-01T10:09:00Z", "accepted"},
      {"contest:submissions:2", "l6", 2, "X", "Alpha", "2024-06-01T12:01:00Z", "accepted"},
      {"contest:submissions:2", "l7", 2, "Y", "2.4", "2024-06-01T12:02:00Z", "wrong_answer"},
      {"contest:submissions:2", "l8", 2, "Y", "2.5", "2024-06-01T12:03:00Z", "accepted"}};
  auto q = [&](const std::string& sql) { return jrtest::PgCluster::query_one(url, sql); };
  auto pq = [&](const std::string& sql) { return jrtest::PgCluster::query_one(plugin_url, sql); };
  {
    pqxx::connection c(plugin_url);
    contest::ensure_schema(c);
  }
  cstest::create_demo_contests(plugin_url);
  std::map<int64_t, const Sub*> by_job;
  for (const auto& s : subs) {
    json p = {{"submission_id", s.id},   {"contest_id", s.contest}, {"team_id", "t1"},
              {"problem_id", s.problem}, {"answer", s.answer},      {"submitted_at", s.at}};
    auto r = jrtest::run_runner(
        {"enqueue", "contest_submit", "--queue", s.queue, "--payload", p.dump()}, env);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    by_job[std::stoll(r.out)] = &s;
  }
  std::vector<std::string> args = {"--plugins",     dir.path(), "--queues", "contest:submissions:*",
                                   "--concurrency", "4"};
  jrtest::RunnerProcess a(args, env);
  jrtest::RunnerProcess b(args, env);
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return q("SELECT count(*) FROM jr_jobs_done") == std::to_string(subs.size()); },
      std::chrono::seconds(60)))
      << a.log() << b.log();
  std::string logs = a.log() + b.log();

  // One line per judged submission, at info, naming job, contest, queue and verdict.
  std::vector<json> judged = lines_starting(logs, "judged submission ");
  ASSERT_EQ(judged.size(), subs.size()) << logs;
  std::set<int64_t> seen;
  for (const json& line : judged) {
    EXPECT_EQ(line["level"], "info") << line.dump();
    int64_t job = line.value("job_id", int64_t{0});
    ASSERT_TRUE(by_job.count(job)) << line.dump();
    seen.insert(job);
    const Sub& s = *by_job[job];
    EXPECT_EQ(line["msg"], "judged submission " + s.id + ": job " + std::to_string(job) +
                               ", contest " + std::to_string(s.contest) + ", team t1, problem " +
                               s.problem + ", queue " + s.queue + ", verdict " + s.verdict +
                               ", score " +
                               pq("SELECT score FROM submissions WHERE id = '" + s.id + "'"));
  }
  EXPECT_EQ(seen.size(), subs.size());

  // One line per discovered queue for both runners together (and their sandbox workers).
  std::vector<json> discovered = lines_starting(logs, "discovered queue ");
  ASSERT_EQ(discovered.size(), 2u) << logs;
  std::set<std::string> queues;
  for (const json& line : discovered) {
    EXPECT_EQ(line["level"], "info") << line.dump();
    int64_t job = line.value("job_id", int64_t{0});
    ASSERT_TRUE(by_job.count(job)) << line.dump();
    const Sub& s = *by_job[job];
    queues.insert(s.queue);
    EXPECT_EQ(line["msg"], "discovered queue " + s.queue + ": first submission " + s.id +
                               " of contest " + std::to_string(s.contest) + " (job " +
                               std::to_string(job) + ")");
    EXPECT_EQ(pq("SELECT first_job_id FROM contest_queues WHERE queue = '" + s.queue + "'"),
              std::to_string(job));
  }
  EXPECT_EQ(queues, (std::set<std::string>{"contest:submissions:1", "contest:submissions:2"}));

  // A redelivery is judged again from the stored verdict: still one line, saying so.
  json again = {{"submission_id", "l2"}, {"contest_id", 1}, {"team_id", "t1"},
                {"problem_id", "A"},     {"answer", "42"},  {"submitted_at", subs[1].at}};
  auto r = jrtest::run_runner(
      {"enqueue", "contest_submit", "--queue", "contest:submissions:1", "--payload", again.dump()},
      env);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string id = std::to_string(std::stoll(r.out));
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return lines_starting(a.log() + b.log(), "submission l2 already judged").size() == 1; },
      std::chrono::seconds(30)))
      << a.log() << b.log();
  json line = lines_starting(a.log() + b.log(), "submission l2 already judged")[0];
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["msg"], "submission l2 already judged (redelivered): job " + id +
                             ", contest 1, team t1, problem A, queue contest:submissions:1, "
                             "verdict accepted, score 1");
  EXPECT_EQ(lines_starting(a.log() + b.log(), "discovered queue ").size(), 2u);
  for (auto* runner : {&a, &b}) {
    runner->signal(SIGTERM);
    EXPECT_EQ(runner->wait(std::chrono::seconds(30)), 0) << runner->log();
  }
}

}  // namespace
