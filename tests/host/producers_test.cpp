// Producers in other languages (issue 23, docs/job-model.md "Producers in other languages"):
//   - the three examples under examples/producers (Python with Debian's psycopg2, Node with pg
//     from npm, plain psql) run against a real database as an application role that is a member
//     of jobrunner_producer, with a real runner serving the echo plugin: the jobs they enqueue
//     have the kind, payload and options they asked for, the rolled-back transaction left
//     neither its row nor its job, the runner completes every job and jr_job_status() says so,
//     with the result;
//   - the SQL API of migration 16: jr_enqueue_many() refuses what jr_enqueue() refuses, with the
//     same message, and inserts nothing then; an empty array inserts nothing; 10,000 payloads in
//     one call are inserted by one statement (jr_enqueue_ex() called once) and wake the runners
//     with one notification; options keyed by payload go job by job; the privileges follow
//     jr_enqueue().
// The Node example needs examples/producers/node/node_modules (scripts/install-producer-deps.sh,
// run by scripts/install-deps.sh): without it the test fails saying so, it does not skip.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <thread>

#include "db_auth.hpp"
#include "harness.hpp"
#include "runner_fixture.hpp"

namespace fs = std::filesystem;
using jrtest::PgCluster;
using nlohmann::json;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a program (argv[0] looked up in PATH) with extra environment `env`, stdout and stderr
// captured apart, killed after `limit`. The harness's run_runner does this for `runner` only.
jrtest::RunResult run_program(const std::vector<std::string>& args,
                              const std::map<std::string, std::string>& env,
                              std::chrono::seconds limit) {
  jrtest::TempDir dir;
  std::string out = dir.path() + "/out", err = dir.path() + "/err";
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o >= 0) dup2(o, 1);
    if (e >= 0) dup2(e, 2);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  jrtest::RunResult r;
  int status = 0;
  bool done = jrtest::wait_until([&] { return waitpid(pid, &status, WNOHANG) == pid; },
                                 std::chrono::duration_cast<std::chrono::milliseconds>(limit));
  if (!done) {
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    r.err = "[test: killed after time limit]\n";
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err += slurp(err);
  return r;
}

// The message of the error `sql` fails with on `url` ("" when it succeeds).
std::string error_of(const std::string& url, const std::string& sql) {
  try {
    PgCluster::exec(url, sql);
    return "";
  } catch (const pqxx::sql_error& e) {
    std::string m = e.what();
    auto nl = m.find('\n');
    return nl == std::string::npos ? m : m.substr(0, nl);
  }
}

std::string sql_literal(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string id_array(const std::vector<int64_t>& ids) {
  std::string s = "ARRAY[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]::bigint[]";
}

class Producers : public jrtest::RunnerFixture {
 protected:
  void SetUp() override {
    RunnerFixture::SetUp();
    db_ = q("SELECT current_database()");
  }
  // A login role of an application, with a schema of its own named like it (first in the
  // default search_path), and a member of jobrunner_producer when `producer`.
  std::string app_role(const std::string& name, bool producer) {
    PgCluster::exec(url_, "CREATE ROLE " + name + " LOGIN PASSWORD 'app-pw'");
    PgCluster::exec(url_, "GRANT CREATE ON DATABASE " + db_ + " TO " + name);
    std::string url = jr::dbauth::url_for_role(url_, name, "app-pw");
    PgCluster::exec(url, "CREATE SCHEMA " + name);
    if (producer) PgCluster::exec(url_, "GRANT jobrunner_producer TO " + name);
    return url;
  }
  std::vector<int64_t> ids_of(const std::string& url, const std::string& sql) {
    pqxx::connection c(url);
    pqxx::nontransaction tx(c);
    std::vector<int64_t> ids;
    for (const auto& row : tx.exec(sql)) ids.push_back(row[0].as<int64_t>());
    return ids;
  }
  int64_t jobs() { return count("SELECT count(*) FROM jr_jobs_all"); }

  std::string db_;
};

TEST_F(Producers, ExamplesEnqueueInTheApplicationsTransactionAndARunnerCompletesThem) {
  std::string examples = jrtest::source_dir() + "/examples/producers";
  ASSERT_TRUE(fs::exists(examples + "/node/node_modules/pg/package.json"))
      << "pg is not installed in examples/producers/node/node_modules: run "
         "scripts/install-producer-deps.sh (scripts/install-deps.sh runs it)";
  std::string app = "jr_shop_" + std::to_string(getpid());
  std::string app_url = app_role(app, true);

  jrtest::RunnerProcess runner({"--plugins", plugin_dir_with({jrtest::echo_so()})}, env_);
  const int kBulk = 100;
  struct Example {
    std::string source;
    std::vector<std::string> argv;
  };
  // Debian's interpreter, the one python3-psycopg2 is built for (a python3 earlier in PATH,
  // such as pyenv's, may not have it).
  std::vector<Example> all = {
      {"python", {"/usr/bin/python3", examples + "/python/enqueue.py"}},
      {"node", {"node", examples + "/node/enqueue.js"}},
      {"psql", {"sh", examples + "/psql/enqueue.sh"}},
  };
  std::vector<int64_t> every_job;
  std::map<std::string, std::vector<int64_t>> bulk_of;
  for (auto& ex : all) {
    SCOPED_TRACE(ex.source);
    ex.argv.insert(ex.argv.end(), {"--wait", "120", "--count", std::to_string(kBulk)});
    auto r = run_program(ex.argv, {{"DATABASE_URL", app_url}}, std::chrono::seconds(180));
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    json out;
    ASSERT_NO_THROW(out = json::parse(r.out)) << r.out << r.err;
    ASSERT_TRUE(out["job_id"].is_number_integer()) << out;
    int64_t job = out["job_id"], signup = out["signup_id"];

    // The job committed with the application's row, as asked.
    json payload = {{"signup_id", signup}, {"email", "ada@example.com"}, {"source", ex.source}};
    std::string id = std::to_string(job);
    EXPECT_EQ(q("SELECT kind FROM jr_jobs_all WHERE id = " + id), "echo");
    EXPECT_EQ(json::parse(q("SELECT payload FROM jr_jobs_all WHERE id = " + id)), payload);
    EXPECT_EQ(q("SELECT max_attempts || ' ' || timeout_ms FROM jr_jobs_all WHERE id = " + id),
              "5 30000");
    EXPECT_EQ(PgCluster::query_one(
                  app_url, "SELECT welcome_job FROM signups WHERE id = " + std::to_string(signup)),
              id);

    // The rolled-back transaction: it got an id, and neither its job nor its row exists.
    ASSERT_TRUE(out["rolled_back_job_id"].is_number_integer()) << out;
    EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE id = " +
                    std::to_string(out["rolled_back_job_id"].get<int64_t>())),
              0);
    EXPECT_EQ(PgCluster::query_one(app_url,
                                   "SELECT count(*) FROM signups WHERE email = "
                                   "'rolled-back@example.com' AND source = " +
                                       sql_literal(ex.source)),
              "0");

    // The bulk enqueue: one id per payload, in order, each job with its payload and the options.
    std::vector<int64_t> bulk = out["bulk_job_ids"].get<std::vector<int64_t>>();
    ASSERT_EQ(bulk.size(), static_cast<size_t>(kBulk));
    EXPECT_EQ(std::set<int64_t>(bulk.begin(), bulk.end()).size(), bulk.size());
    EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all a JOIN unnest(" + id_array(bulk) +
                    ") WITH ORDINALITY u(id, ord) ON a.id = u.id WHERE a.kind = 'echo' AND "
                    "a.payload = jsonb_build_object('n', u.ord - 1, 'source', " +
                    sql_literal(ex.source) + ") AND a.max_attempts = 3 AND a.priority >= 10"),
              kBulk);

    // The example's own status read, after waiting: completed, with the echo's result.
    const json& st = out["status"];
    ASSERT_TRUE(st.is_object()) << out;
    EXPECT_EQ(st["id"], job);
    EXPECT_EQ(st["kind"], "echo");
    EXPECT_EQ(st["state"], "completed") << st;
    EXPECT_EQ(st["result"], payload) << st;
    EXPECT_EQ(st["attempt"], 1);
    EXPECT_EQ(st["max_attempts"], 5);
    EXPECT_TRUE(st["last_error"].is_null()) << st;
    EXPECT_TRUE(st["finished_at"].is_string()) << st;
    EXPECT_TRUE(st["created_at"].is_string()) << st;

    every_job.push_back(job);
    every_job.insert(every_job.end(), bulk.begin(), bulk.end());
    bulk_of[ex.source] = bulk;
  }

  // The runner completes every job; jr_job_status(), called as the application, says so.
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND id = ANY(" +
                     id_array(every_job) + ")") == static_cast<int64_t>(every_job.size());
      },
      std::chrono::seconds(120)))
      << runner.log();
  EXPECT_EQ(jobs(), static_cast<int64_t>(every_job.size()));  // nothing else was enqueued
  for (const auto& [source, bulk] : bulk_of) {
    EXPECT_EQ(PgCluster::query_one(app_url,
                                   "SELECT count(*) FROM unnest(" + id_array(bulk) +
                                       ") WITH ORDINALITY u(id, ord), jr_job_status(u.id) s WHERE "
                                       "s->>'state' = 'completed' AND s->'result' = "
                                       "jsonb_build_object('n', u.ord - 1, 'source', " +
                                       sql_literal(source) + ") AND (s->>'attempt')::int = 1"),
              std::to_string(kBulk))
        << source;
  }
  EXPECT_EQ(PgCluster::query_one(app_url, "SELECT jr_job_status(999999999) IS NULL"), "t");
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0) << runner.log();
}

TEST_F(Producers, TheFunctionsAreGrantedLikeJrEnqueue) {
  std::string outsider = app_role("jr_outsider_" + std::to_string(getpid()), false);
  std::string app = app_role("jr_producer_" + std::to_string(getpid()), true);
  const char* many = "SELECT count(*) FROM jr_enqueue_many('echo', '[{\"a\": 1}, {\"a\": 2}]')";
  const char* status = "SELECT jr_job_status(1)";
  EXPECT_NE(error_of(outsider, many).find("permission denied for function jr_enqueue_many"),
            std::string::npos)
      << error_of(outsider, many);
  EXPECT_NE(error_of(outsider, status).find("permission denied for function jr_job_status"),
            std::string::npos);
  EXPECT_EQ(jobs(), 0);
  std::vector<int64_t> ids =
      ids_of(app, "SELECT * FROM jr_enqueue_many('echo', '[{\"a\": 1}, {\"a\": 2}]')");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(jobs(), 2);
  EXPECT_EQ(
      PgCluster::query_one(app, "SELECT jr_job_status(" + std::to_string(ids[1]) + ") ->> 'state'"),
      "available");
  // They run as their owner with a fixed search_path; the producer still cannot read the queue.
  EXPECT_EQ(q("SELECT string_agg(p.proname || ':' || p.prosecdef || ':' || "
              "array_to_string(p.proconfig, ','), ' ' ORDER BY p.proname) FROM pg_proc p WHERE "
              "p.proname IN ('jr_enqueue', 'jr_enqueue_many', 'jr_job_status')"),
            "jr_enqueue:true:search_path=public, pg_temp "
            "jr_enqueue_many:true:search_path=public, pg_temp "
            "jr_job_status:true:search_path=public, pg_temp");
  EXPECT_NE(error_of(app, "SELECT count(*) FROM jr_jobs").find("permission denied"),
            std::string::npos);
  EXPECT_NE(error_of(app, "SELECT jr_enqueue_ex('echo', '{}', '{}')").find("permission denied"),
            std::string::npos);
}

TEST_F(Producers, BadInputIsRefusedLikeJrEnqueueAndInsertsNothing) {
  // The same options document refused by jr_enqueue() and by jr_enqueue_many(), with the same
  // message: the rules live in one place.
  const std::vector<std::string> bad_options = {
      R"({"max_attempts": 0})",           R"({"bogus": 1})",
      R"({"priority": "high"})",          R"({"run_at": "tomorrow"})",
      R"({"retry_schedule": "60,soon"})", R"({"lock_limit": 3})",
      R"({"depends_on": [999999]})",      R"({"webhook": "ftp://x"})",
      R"({"rate_key": "queue:x"})",       R"({"debounce_seconds": 5, "delay_seconds": 1})",
      R"({"unique_states": ["done"]})",   R"([1])",
  };
  for (const auto& o : bad_options) {
    SCOPED_TRACE(o);
    std::string one = error_of(url_, "SELECT jr_enqueue('echo', '{}', " + sql_literal(o) + ")");
    ASSERT_NE(one, "");
    EXPECT_NE(one.find("jr_enqueue: "), std::string::npos) << one;
    for (const char* payloads : {R"([{"a": 1}, {"a": 2}, {"a": 3}])", "[]"}) {
      std::string many =
          error_of(url_, std::string("SELECT count(*) FROM jr_enqueue_many('echo', '") + payloads +
                             "', " + sql_literal(o) + ")");
      EXPECT_EQ(many, one) << payloads;
    }
  }
  EXPECT_NE(error_of(url_,
                     "SELECT count(*) FROM jr_enqueue_many('echo', "
                     "'[{}]', '{\"max_attempts\": 0}')")
                .find("'max_attempts' must be an integer between 1 and 1000000, got 0"),
            std::string::npos);
  EXPECT_NE(error_of(url_, "SELECT count(*) FROM jr_enqueue_many('bad kind', '[{}]')")
                .find("'kind' must be 1 to 128 characters"),
            std::string::npos);
  EXPECT_NE(error_of(url_, "SELECT count(*) FROM jr_enqueue_many('echo', '{\"a\": 1}')")
                .find("jr_enqueue_many: 'payloads' must be a JSON array of payload objects, got "
                      "object"),
            std::string::npos);
  EXPECT_NE(error_of(url_, "SELECT count(*) FROM jr_enqueue_many('echo', NULL)")
                .find("'payloads' must be a JSON array of payload objects, got NULL"),
            std::string::npos);
  EXPECT_NE(error_of(url_, "SELECT count(*) FROM jr_enqueue_many('echo', '[{}, {}, \"x\"]')")
                .find("jr_enqueue_many: payloads[2] must be a JSON object, got string"),
            std::string::npos);
  EXPECT_NE(error_of(url_,
                     "SELECT count(*) FROM jr_enqueue_many('echo', (SELECT jsonb_agg('{}'::jsonb) "
                     "FROM generate_series(1, 100001)))")
                .find("'payloads' has 100001 entries, at most 100000 per call"),
            std::string::npos);
  EXPECT_EQ(jobs(), 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_unique_locks"), 0);

  // An empty array with good options: no ids, no job.
  EXPECT_EQ(ids_of(url_, "SELECT * FROM jr_enqueue_many('echo', '[]', '{\"priority\": 3}')"),
            std::vector<int64_t>{});
  EXPECT_EQ(ids_of(url_, "SELECT * FROM jr_enqueue_many('echo', '[]')"), std::vector<int64_t>{});
  EXPECT_EQ(jobs(), 0);
}

TEST_F(Producers, TenThousandPayloadsAreOneInsertAndOneWakeUp) {
  const int n = 10000;
  // The runners' wake-up channel, listened to as a runner does.
  struct Wakeups : pqxx::notification_receiver {
    explicit Wakeups(pqxx::connection_base& c) : pqxx::notification_receiver(c, "jr_jobs") {}
    void operator()(const std::string&, int) override { ++count; }
    int count = 0;
  };
  pqxx::connection listener(url_);
  Wakeups wakeups(listener);

  // As the superuser: track_functions may only be set by one (it counts the calls of
  // jr_enqueue_ex in this transaction: once means the other 9,999 jobs were one INSERT).
  pqxx::connection c(PgCluster::get().superuser_url(db_));
  std::vector<int64_t> ids;
  std::string calls;
  auto start = std::chrono::steady_clock::now();
  {
    pqxx::work tx(c);
    tx.exec("SET LOCAL track_functions = 'all'");
    auto r = tx.exec(
        "SELECT id FROM jr_enqueue_many('echo', (SELECT jsonb_agg(jsonb_build_object('i', i) "
        "ORDER BY i) FROM generate_series(0, " +
        std::to_string(n - 1) +
        ") i), '{\"queue\": \"bulk\", \"priority\": 7, \"max_attempts\": 2, \"delay_seconds\": "
        "600, \"result_ttl_seconds\": 100, \"rate_key\": \"tenant:1\", \"lock_key\": \"l\"}') "
        "AS id");
    for (const auto& row : r) ids.push_back(row[0].as<int64_t>());
    calls = tx.exec(
                  "SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = "
                  "'jr_enqueue_ex'")[0][0]
                .as<std::string>();
    tx.commit();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("jr_enqueue_many: %d payloads in %.3f s\n", n, secs);
  EXPECT_EQ(calls, "1");
  ASSERT_EQ(ids.size(), static_cast<size_t>(n));
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), ids.size());
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs"), n);
  // Id k has payload k, and every job has the same row but for its id and payload.
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs j JOIN unnest(" + id_array(ids) +
                  ") WITH ORDINALITY u(id, ord) ON j.id = u.id WHERE j.payload = "
                  "jsonb_build_object('i', u.ord - 1)"),
            n);
  EXPECT_EQ(count("SELECT count(DISTINCT to_jsonb(j) - 'id' - 'payload') FROM jr_jobs j"), 1);
  EXPECT_EQ(q("SELECT queue || ' ' || state || ' ' || priority || ' ' || max_attempts || ' ' || "
              "lock_key || ' ' || options::text || ' ' || (run_at > now() + interval '590 s') "
              "FROM jr_jobs LIMIT 1"),
            "bulk scheduled 7 2 l {\"rate_key\": \"tenant:1\", \"result_ttl\": 100} true");
  // One notification for the 10,000 jobs: after the first, a round trip reads any other.
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        listener.get_notifs();
        return wakeups.count > 0;
      },
      std::chrono::seconds(10)));
  pqxx::nontransaction(listener).exec("SELECT 1");
  listener.get_notifs();
  EXPECT_EQ(wakeups.count, 1);
  // The same row as jr_enqueue() makes of the same options.
  std::string one =
      q("SELECT jr_enqueue('echo', '{\"i\": 0}', '{\"queue\": \"bulk\", \"priority\": 7, "
        "\"max_attempts\": 2, \"delay_seconds\": 600, \"result_ttl_seconds\": 100, \"rate_key\": "
        "\"tenant:1\", \"lock_key\": \"l\"}')");
  EXPECT_EQ(count("SELECT count(DISTINCT to_jsonb(j) - 'id' - 'payload' - 'created_at' - 'run_at' "
                  "- 'expires_at') FROM jr_jobs j"),
            1);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs WHERE id = " + one), 1);
}

TEST_F(Producers, OptionsKeyedByPayloadGoJobByJob) {
  // "unique": the key is derived from each payload: equal payloads get one job.
  std::vector<int64_t> ids =
      ids_of(url_,
             "SELECT * FROM jr_enqueue_many('echo', '[{\"a\": 1}, {\"a\": 1}, {\"a\": 2}]', "
             "'{\"unique\": true}')");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_NE(ids[0], ids[2]);
  EXPECT_EQ(jobs(), 2);
  // A key over a period: the first payload is enqueued, the others get its id.
  std::vector<int64_t> keyed =
      ids_of(url_,
             "SELECT * FROM jr_enqueue_many('echo', '[{\"b\": 1}, {\"b\": 2}]', '{\"unique_key\": "
             "\"k\", \"unique_for_seconds\": 3600}')");
  ASSERT_EQ(keyed.size(), 2u);
  EXPECT_EQ(keyed[0], keyed[1]);
  EXPECT_EQ(q("SELECT payload FROM jr_jobs WHERE id = " + std::to_string(keyed[0])), "{\"b\": 1}");
  // Replace: the last payload wins.
  std::vector<int64_t> replaced =
      ids_of(url_,
             "SELECT * FROM jr_enqueue_many('echo', '[{\"c\": 1}, {\"c\": 2}]', '{\"unique_key\": "
             "\"r\", \"replace\": true}')");
  ASSERT_EQ(replaced.size(), 2u);
  EXPECT_EQ(replaced[0], replaced[1]);
  EXPECT_EQ(q("SELECT payload FROM jr_jobs WHERE id = " + std::to_string(replaced[0])),
            "{\"c\": 2}");
  EXPECT_EQ(jobs(), 4);
}

}  // namespace
