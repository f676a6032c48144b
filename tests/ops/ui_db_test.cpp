// The dashboard's queries and endpoints against a real PostgreSQL (tests/support/harness.hpp):
// every statement EXPLAINed on a modest table must not scan jr_jobs_done sequentially; keyset
// pages cover every row once; a filter no index serves stops at the scan budget and continues;
// counts are exact up to the cap and estimated above; dependency edges, cron runs and what
// runners publish; the HTTP layer's security headers, CSRF check and token rules.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <set>

#include "db_auth.hpp"
#include "harness.hpp"
#include "metrics.hpp"
#include "server.hpp"
#include "store.hpp"
#include "ui_publish.hpp"
#include "ui_store.hpp"
#include "util.hpp"

namespace jrtest {
namespace {

using jr::ops::ui::DashboardDb;
using jr::ops::ui::JobFilter;

TEST(UiUnit, ValidUtf8ReplacesEveryIllFormedSequence) {
  EXPECT_EQ(jr::valid_utf8("plain é € 😀"), "plain é € 😀");
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(jr::valid_utf8("a\xff"
                           "b"),
            "a" + r + "b");
  EXPECT_EQ(jr::valid_utf8("\xc0\xaf"), r + r);                  // overlong '/'
  EXPECT_EQ(jr::valid_utf8("\xed\xa0\x80"), r + r + r);          // a surrogate
  EXPECT_EQ(jr::valid_utf8("\xf4\x90\x80\x80"), r + r + r + r);  // beyond U+10FFFF
  EXPECT_EQ(jr::valid_utf8("x\xe2\x82"), "x" + r);               // truncated at the end
  EXPECT_EQ(jr::valid_utf8(std::string("a\0b", 3)), "a" + r + "b");
}

TEST(UiUnit, CursorsRoundTripAndRejectGarbage) {
  nlohmann::json k = {"q\"ueue/é", 5, 123};
  EXPECT_EQ(jr::ops::ui::decode_cursor(jr::ops::ui::encode_cursor(k)), k);
  EXPECT_THROW(jr::ops::ui::decode_cursor("not a cursor!"), std::invalid_argument);
  EXPECT_THROW(jr::ops::ui::decode_cursor(jr::ops::ui::encode_cursor({{"a", 1}})),
               std::invalid_argument);
}

// A database with a modest mix of jobs in every state, filled with generate_series.
class UiDb : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    url_ = PgCluster::get().create_database("ui");
    jr::Store::open(url_)->SchemaMigrate();
    PgCluster::exec(url_, R"SQL(
      INSERT INTO jr_jobs (queue, kind, payload, state, priority, run_at, created_at)
      SELECT 'q' || (g % 5), 'k' || (g % 4), jsonb_build_object('n', g), 'available', g % 3,
             now() - make_interval(secs => g), now() - make_interval(secs => g)
        FROM generate_series(1, 20000) g;
      INSERT INTO jr_jobs (queue, kind, payload, state, run_at)
      SELECT 'q' || (g % 5), 'k' || (g % 4), jsonb_build_object('n', g),
             CASE WHEN g % 7 = 0 THEN 'retryable' ELSE 'scheduled' END,
             now() + make_interval(secs => g)
        FROM generate_series(1, 3000) g;
      INSERT INTO jr_jobs (queue, kind, payload, state, started_at, lease_owner, lease_expires_at,
                           lock_key, attempt)
      SELECT 'q' || (g % 5), 'k1', '{}', 'running', now(), 'w1', now() + interval '30 s',
             CASE WHEN g % 2 = 0 THEN 'lock' || (g % 3) END, 1
        FROM generate_series(1, 50) g;
      INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, attempt, created_at,
                                finished_at, errors)
      SELECT 1000000 + g, 'q' || (g % 5), 'k' || (g % 4),
             jsonb_build_object('n', g, 'needle', CASE WHEN g <= 3 THEN 'findme' END),
             CASE WHEN g % 20 = 0 THEN 'discarded' WHEN g % 50 = 1 THEN 'cancelled'
                  ELSE 'completed' END, 0, 1,
             now() - make_interval(secs => 200000 - g), now() - make_interval(secs => 100000 - g),
             CASE WHEN g % 20 = 0 THEN '[{"attempt": 1, "kind": "error", "message": "boom"}]'::jsonb
                  ELSE '[]'::jsonb END
        FROM generate_series(1, 60000) g;
      ANALYZE;
    )SQL");
  }
  std::string q1(const std::string& sql) { return PgCluster::query_one(url_, sql); }
  int64_t n(const std::string& sql) { return std::stoll(q1(sql)); }

  // Every page of a list, following next_cursor (and partial continuations) to the end.
  static std::vector<int64_t> walk(DashboardDb& db, JobFilter f, int* pages = nullptr) {
    std::vector<int64_t> ids;
    for (int i = 0; i < 10000; ++i) {
      auto r = db.jobs(f);
      for (const auto& j : r["jobs"]) ids.push_back(j["id"].get<int64_t>());
      if (pages) ++*pages;
      if (r["next_cursor"].is_null()) break;
      f.cursor = r["next_cursor"].get<std::string>();
    }
    return ids;
  }
  std::vector<int64_t> ids_of(const std::string& sql) {
    std::vector<int64_t> out;
    std::string csv = q1("SELECT string_agg(id::text, ',' ORDER BY o) FROM (" + sql + ") s");
    for (const auto& t : jr::split_list(csv)) out.push_back(std::stoll(t));
    return out;
  }
  static std::string url_;
};
std::string UiDb::url_;

// Seq Scan nodes of a plan (JSON), by relation.
void seq_scans(const nlohmann::json& node, std::vector<std::string>& out) {
  if (node.is_object()) {
    if (node.value("Node Type", "") == "Seq Scan") out.push_back(node.value("Relation Name", ""));
    for (auto& [k, v] : node.items()) seq_scans(v, out);
  } else if (node.is_array()) {
    for (const auto& v : node) seq_scans(v, out);
  }
}

TEST_F(UiDb, EveryDashboardQueryUsesIndexesNotASeqScanOfFinishedJobs) {
  {  // the detector sees a sequential scan when there is one
    std::vector<std::string> scans;
    seq_scans(nlohmann::json::parse(q1("EXPLAIN (FORMAT JSON) SELECT * FROM jr_jobs_done WHERE "
                                       "payload->>'n' = '7'")),
              scans);
    EXPECT_EQ(scans, std::vector<std::string>{"jr_jobs_done"});
  }
  DashboardDb db(url_);
  int statements = 0;
  std::vector<std::string> bad;
  db.set_explain([&](const std::string& sql, const std::string& plan) {
    ++statements;
    std::vector<std::string> scans;
    seq_scans(nlohmann::json::parse(plan), scans);
    for (const auto& rel : scans) {
      if (rel == "jr_jobs_done" || rel == "jr_jobs")
        bad.push_back(rel + " in:\n" + sql + "\n" + plan);
    }
  });
  db.overview(30);
  for (const auto& st : jr::ops::ui::job_states()) {
    std::vector<JobFilter> filters(7);
    for (auto& f : filters) f.state = st;
    filters[1].kind = "k1";
    filters[2].queue = "q2";
    filters[3].since = "2020-01-01T00:00:00Z";
    filters[3].before = "2100-01-01T00:00:00Z";
    filters[4].search = "findme";
    filters[5].kind = "k2";
    filters[5].queue = "q3";
    filters[5].search = "nothing-matches-this";
    for (auto& f : filters) {
      auto r = db.jobs(f);
      if (!r["next_cursor"].is_null()) {  // the second page too (cursor conditions)
        f.cursor = r["next_cursor"].get<std::string>();
        db.jobs(f);
      }
    }
  }
  db.dependencies(1000020);
  db.dead_letter_count({});
  db.dead_letter_count({"k0", "q0", "2020-01-01", "2100-01-01"});
  db.locks();
  db.cron();
  db.kinds();
  db.runners(30);
  EXPECT_GT(statements, 60);
  for (const auto& b : bad) ADD_FAILURE() << "sequential scan of " << b;
}

TEST_F(UiDb, KeysetPagesReturnEveryMatchingRowOnceInOrder) {
  DashboardDb db(url_);
  JobFilter f;
  f.limit = 497;
  f.state = "available";  // three index ranges after a cursor (queue, priority DESC, id)
  EXPECT_EQ(walk(db, f), ids_of("SELECT id, row_number() OVER (ORDER BY queue, priority DESC, id) "
                                "o FROM jr_jobs WHERE state = 'available'"));
  f.queue = "q3";
  EXPECT_EQ(walk(db, f), ids_of("SELECT id, row_number() OVER (ORDER BY priority DESC, id) o FROM "
                                "jr_jobs WHERE state = 'available' AND queue = 'q3'"));
  f = {};
  f.state = "scheduled";
  f.limit = 113;
  EXPECT_EQ(walk(db, f), ids_of("SELECT id, row_number() OVER (ORDER BY queue, run_at, id) o FROM "
                                "jr_jobs WHERE state = 'scheduled'"));
  f = {};
  f.state = "completed";
  f.limit = 500;
  f.kind = "k2";
  f.since = "2000-01-01";
  auto got = walk(db, f);
  EXPECT_EQ(got, ids_of("SELECT id, row_number() OVER (ORDER BY finished_at DESC, id DESC) o FROM "
                        "jr_jobs_done WHERE state = 'completed' AND kind = 'k2'"));
  EXPECT_GT(got.size(), 10000u);
  f = {};
  f.state = "discarded";
  f.queue = "q0";
  f.limit = 50;
  EXPECT_EQ(walk(db, f), ids_of("SELECT id, row_number() OVER (ORDER BY finished_at DESC, id DESC) "
                                "o FROM jr_jobs_done WHERE state = 'discarded' AND queue = 'q0'"));
  f.cursor = "garbage!";
  EXPECT_THROW(db.jobs(f), std::invalid_argument);
  f.cursor = jr::ops::ui::encode_cursor({"q0", 1, 2});  // a cursor of another state's order
  EXPECT_THROW(db.jobs(f), std::invalid_argument);
  f = {};
  f.state = "nope";
  EXPECT_THROW(db.jobs(f), std::invalid_argument);
}

TEST_F(UiDb, APayloadSearchStopsAtTheScanBudgetAndContinuesWhereItStopped) {
  DashboardDb db(url_);
  JobFilter f;
  f.state = "completed";
  f.search = "FINDME";  // case-insensitive; only the three oldest completed jobs hold it
  auto first = db.jobs(f);
  EXPECT_TRUE(first["jobs"].empty());
  EXPECT_TRUE(first["partial"].get<bool>());
  ASSERT_TRUE(first["next_cursor"].is_string());
  int pages = 0;
  auto ids = walk(db, f, &pages);
  EXPECT_EQ(ids,
            ids_of("SELECT id, row_number() OVER (ORDER BY finished_at DESC, id DESC) o FROM "
                   "jr_jobs_done WHERE state = 'completed' AND payload->>'needle' = 'findme'"));
  // ~54,000 completed rows at 10,000 per request.
  EXPECT_GE(pages, 5);
  EXPECT_LE(pages, 7);
}

TEST_F(UiDb, CountsAreExactUpToTheCapThenEstimated) {
  DashboardDb db(url_);
  auto o = db.overview(30);
  std::map<std::string, nlohmann::json> by;
  for (const auto& qu : o["queues"]) by[qu["queue"].get<std::string>()] = qu;
  ASSERT_EQ(by.size(), 5u);
  for (const auto& [name, qu] : by) {
    // Exact below the cap (2,000); above it the planner's estimate, flagged.
    for (const char* st : {"available", "scheduled", "retryable", "running", "discarded",
                           "cancelled", "completed"}) {
      std::string table = jr::ops::ui::finished_state(st) ? "jr_jobs_done" : "jr_jobs";
      int64_t truth = n("SELECT count(*) FROM " + table + " WHERE queue = '" + name +
                        "' AND state = '" + st + "'");
      bool estimated =
          std::find(qu["estimated"].begin(), qu["estimated"].end(), st) != qu["estimated"].end();
      EXPECT_EQ(estimated, truth >= jr::ops::ui::kCountCap) << name << " " << st;
      if (estimated) {
        EXPECT_NEAR(qu["counts"][st].get<double>(), truth, truth / 4.0) << name << " " << st;
      } else {
        EXPECT_EQ(qu["counts"][st].get<int64_t>(), truth) << name << " " << st;
      }
    }
    EXPECT_TRUE(qu.contains("oldest_available"));
  }
  // Completed jobs (about 11,000 per queue, 55,000 in all: more than one capped scan reads) are
  // the statistics' estimate per queue; q1's 1,200 cancelled jobs are counted exactly.
  EXPECT_EQ(by["q0"]["estimated"], nlohmann::json::array({"available", "discarded", "completed"}));
  EXPECT_EQ(by["q1"]["estimated"], nlohmann::json::array({"available", "completed"}));
  EXPECT_EQ(by["q1"]["counts"]["cancelled"], 1200);
  EXPECT_EQ(o["totals"]["cancelled"], 1200);
  EXPECT_NEAR(o["totals"]["completed"].get<double>(),
              n("SELECT count(*) FROM jr_jobs_done WHERE state = 'completed'"), 55800 / 4.0);
  // The oldest available job of q1 (lowest id among its priority levels).
  EXPECT_EQ(by["q1"]["oldest_available"]["id"].get<int64_t>(),
            n("SELECT min(id) FROM jr_jobs WHERE state = 'available' AND queue = 'q1'"));
  // Above the cap: the planner's estimate, flagged.
  std::string url = PgCluster::get().create_database("uicap");
  jr::Store::open(url)->SchemaMigrate();
  PgCluster::exec(url,
                  "INSERT INTO jr_jobs (queue, kind, state) SELECT 'big', 'k', 'available' FROM "
                  "generate_series(1, 30000); INSERT INTO jr_jobs (queue, kind, state) SELECT "
                  "'small', 'k', 'available' FROM generate_series(1, 7); ANALYZE jr_jobs");
  DashboardDb big(url);
  auto b = big.overview(30);
  ASSERT_EQ(b["queues"].size(), 2u);
  const auto& qb = b["queues"][0];
  EXPECT_EQ(qb["queue"], "big");
  EXPECT_EQ(qb["estimated"], nlohmann::json::array({"available"}));
  EXPECT_NEAR(qb["counts"]["available"].get<double>(), 30000, 3000);
  EXPECT_EQ(b["queues"][1]["counts"]["available"], 7);
  EXPECT_TRUE(b["totals_estimated"].get<bool>());

  // A (queue, state) the statistics put at kEstimateFrom (10,000) or more is not counted: with
  // 27,000 of the 30,000 deleted and no ANALYZE since, the overview still shows about 30,000
  // (what it would not if it had counted); queues below it are counted, completed and cancelled
  // ones too while there are few (one capped scan of completed jobs; the dead-letter index).
  PgCluster::exec(url,
                  "ALTER TABLE jr_jobs SET (autovacuum_enabled = false); DELETE FROM jr_jobs "
                  "WHERE queue = 'big' AND id > (SELECT min(id) + 2999 FROM jr_jobs WHERE queue "
                  "= 'big'); INSERT INTO jr_jobs_done (id, queue, kind, payload, state, priority, "
                  "attempt, created_at, finished_at) SELECT 900000 + g, CASE WHEN g <= 5 THEN "
                  "'small' ELSE 'gone' END, 'k', '{}', CASE WHEN g % 4 = 0 THEN 'cancelled' ELSE "
                  "'completed' END, 0, 1, now(), now() FROM "
                  "generate_series(1, 9) g");
  b = big.overview(30);
  ASSERT_EQ(b["queues"].size(), 3u);  // a queue with finished jobs only is listed too
  EXPECT_EQ(b["queues"][0]["estimated"], nlohmann::json::array({"available"}));
  EXPECT_NEAR(b["queues"][0]["counts"]["available"].get<double>(), 30000, 3000);
  EXPECT_EQ(b["queues"][1]["queue"], "gone");
  EXPECT_EQ(b["queues"][1]["counts"]["completed"], 3);
  EXPECT_EQ(b["queues"][1]["counts"]["cancelled"], 1);
  EXPECT_EQ(b["queues"][2]["counts"]["completed"], 4);
  EXPECT_EQ(b["queues"][2]["counts"]["cancelled"], 1);
  EXPECT_EQ(b["totals"]["completed"], 7);
  // After ANALYZE the statistics say 3,000: counted again, up to the cap.
  PgCluster::exec(url, "ANALYZE jr_jobs");
  b = big.overview(30);
  EXPECT_EQ(b["queues"][0]["estimated"], nlohmann::json::array({"available"}));
  EXPECT_NEAR(b["queues"][0]["counts"]["available"].get<double>(), 3000, 300);
  PgCluster::exec(url,
                  "DELETE FROM jr_jobs WHERE queue = 'big' AND id > (SELECT min(id) + 1499 "
                  "FROM jr_jobs WHERE queue = 'big')");
  b = big.overview(30);
  EXPECT_EQ(b["queues"][0]["estimated"], nlohmann::json::array());
  EXPECT_EQ(b["queues"][0]["counts"]["available"], 1500);
  // One prepared statement, planned once: every execution used its generic plan.
  auto ps = big.prepared_statements();
  ASSERT_EQ(ps.size(), 1u) << ps.dump();
  EXPECT_EQ(ps[0]["generic_plans"], 4) << ps.dump();
  EXPECT_EQ(ps[0]["custom_plans"], 0) << ps.dump();
}

TEST_F(UiDb, DependencyEdgesOutliveTheJobsAndGoWithAPurgedChild) {
  std::string url = PgCluster::get().create_database("uideps");
  auto st = jr::Store::open(url);
  st->SchemaMigrate();
  jr::JobInsertParams p;
  p.kind = "k";
  int64_t a = st->JobInsert(p), b = st->JobInsert(p);
  p.depends_on = {a, b};
  int64_t c = st->JobInsert(p);
  DashboardDb db(url);
  auto d = db.dependencies(c);
  EXPECT_EQ(d["parents"].size(), 2u);
  EXPECT_EQ(d["parents"][0]["id"], a);
  EXPECT_EQ(d["parents"][0]["state"], "available");
  EXPECT_EQ(db.dependencies(a)["children"][0]["id"], c);
  // The parents finish (a completes, b is dead-lettered): c is cancelled, the edges stay.
  jr::JobClaimParams cp;
  cp.worker_id = "w";
  cp.kinds = {"k"};
  cp.limit = 10;
  auto claimed = st->JobClaim(cp);
  ASSERT_EQ(claimed.size(), 2u);
  EXPECT_TRUE(st->JobFinishMany("w", {{a, 1, jr::Outcome::completed, "{}", "", "", 0, "k"},
                                      {b, 1, jr::Outcome::discard, "", "permanent", "no", 0, "k"}})
                  .rejected.empty());
  st->JobResolveDependencies(100);
  d = db.dependencies(c);
  EXPECT_EQ(d["parents"][0]["state"], "completed");
  EXPECT_EQ(d["parents"][1]["state"], "discarded");
  EXPECT_EQ(
      PgCluster::query_one(url, "SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(c)),
      "cancelled");
  // Replaying b moves it back to jr_jobs in one statement: its edges (as a parent) stay; purging
  // the cancelled child c forgets c's edges.
  jr::DeadLetterFilter f;
  f.ids = {b};
  EXPECT_EQ(st->DeadLetterReplay(f), std::vector<int64_t>{b});
  EXPECT_EQ(db.dependencies(b)["children"][0]["id"], c);
  PgCluster::exec(url, "DELETE FROM jr_jobs_done WHERE id = " + std::to_string(c));
  EXPECT_EQ(PgCluster::query_one(url, "SELECT count(*) FROM jr_job_deps"), "0");
}

TEST_F(UiDb, CronTicksRecordTheJobTheyMade) {
  std::string url = PgCluster::get().create_database("uicron");
  auto st = jr::Store::open(url);
  st->SchemaMigrate();
  jr::CronEntry e;
  e.name = "nightly";
  e.schedule = "@every 1s";
  e.kind = "k";
  e.source = "config";
  st->CronUpsert({e});
  // `next` returns the time it is given; each run's tick is set a distinct second in the past.
  auto next = [](const std::string&, const std::string& after) -> std::optional<std::string> {
    return after;
  };
  st->CronRun(next);  // first run: schedules only
  // Ticks a distinct second apart from one fixed instant (from now() of each run they could
  // coincide when the runs are a second apart, and a tick is enqueued once), recent enough not
  // to be skipped as stale (5 minutes).
  const std::string base = PgCluster::query_one(url, "SELECT now()");
  for (int i = 0; i < 3; ++i) {
    PgCluster::exec(url, "UPDATE jr_cron SET next_run_at = '" + base +
                             "'::timestamptz - make_interval(secs => " + std::to_string(10 + i) +
                             ")");
    EXPECT_EQ(st->CronRun(next), 1);
  }
  DashboardDb db(url);
  auto c = db.cron();
  ASSERT_EQ(c["entries"].size(), 1u);
  const auto& runs = c["entries"][0]["runs"];
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0]["state"], "available");
  EXPECT_EQ(
      PgCluster::query_one(url, "SELECT kind FROM jr_jobs WHERE id = " + runs[0]["job_id"].dump()),
      "k");
}

TEST_F(UiDb, ARunnerPublishesItsDetailsAndFinishedAttempts) {
  std::string url = PgCluster::get().create_database("uipub");
  auto st = jr::Store::open(url);
  st->SchemaMigrate();
  st->WorkerRegister({"w-pub", {"k"}, {}});
  jr::ops::RunnerPublisher pub({url, "w-pub", 60}, [] {
    return nlohmann::json{{"plugins", {{{"name", "p"}}}}};
  });
  pub.count("completed", 3);
  pub.count("discarded");
  ASSERT_TRUE(pub.publish_once());
  DashboardDb db(url);
  auto r = db.runners(30);
  ASSERT_EQ(r["runners"].size(), 1u);
  EXPECT_EQ(r["runners"][0]["details"]["plugins"][0]["name"], "p");
  auto o = db.overview(30);
  int64_t completed = 0;
  for (auto& [minute, v] : o["throughput"]["outcomes"]["completed"].items()) {
    completed += v.get<int64_t>();
  }
  EXPECT_EQ(completed, 3);
  pub.count("completed", 2);
  ASSERT_TRUE(pub.publish_once());
  EXPECT_EQ(PgCluster::query_one(
                url, "SELECT sum(count) FROM jr_stats_minute WHERE outcome = 'completed'"),
            "5");
}

// Least privilege (migration v7) covers the dashboard's objects: a producer enqueueing a child
// through jr_enqueue (SECURITY DEFINER) records its dependency edge through the trigger, yet
// neither the producer nor any other role reads the edges, the throughput counts, the cron runs
// or what runners publish, nor calls the estimate function; the runner's role (not a superuser)
// owns all of them.
TEST_F(UiDb, OnlyTheRunnersRoleReachesTheDashboardsObjects) {
  std::string url = PgCluster::get().create_database("uipriv");
  jr::Store::open(url)->SchemaMigrate();
  const std::string app = "jr_ui_app_" + std::to_string(getpid());
  PgCluster::exec(url, "CREATE ROLE " + app + " LOGIN PASSWORD 'app-pw'");
  PgCluster::exec(url, "GRANT jobrunner_producer TO " + app);
  const std::string app_url = jr::dbauth::url_for_role(url, app, "app-pw");
  auto refused = [&](const std::string& sql) {
    try {
      PgCluster::exec(app_url, sql);
      return false;
    } catch (const pqxx::insufficient_privilege&) {
      return true;
    }
  };
  const std::string parent = PgCluster::query_one(app_url, "SELECT jr_enqueue('k', '{}')");
  const std::string child = PgCluster::query_one(
      app_url, "SELECT jr_enqueue('k', '{}', '{\"depends_on\": [" + parent + "]}')");
  EXPECT_EQ(PgCluster::query_one(url, "SELECT parent || '>' || child FROM jr_job_deps"),
            parent + ">" + child);
  for (const char* sql :
       {"SELECT * FROM jr_job_deps", "SELECT * FROM jr_stats_minute", "SELECT * FROM jr_cron_runs",
        "SELECT details FROM jr_workers", "SELECT jr_ui_estimate(false, 'q', 'available')",
        "INSERT INTO jr_stats_minute VALUES (now(), 'completed', 1)"}) {
    EXPECT_TRUE(refused(sql)) << sql;
  }
  EXPECT_EQ(PgCluster::query_one(url,
                                 "SELECT count(*) FROM pg_class c WHERE c.relname IN "
                                 "('jr_job_deps', 'jr_stats_minute', 'jr_cron_runs') AND "
                                 "c.relowner = current_user::regrole"),
            "3");
  EXPECT_EQ(PgCluster::query_one(url, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"),
            "f");
}

// The HTTP layer in-process: security headers, the page, the CSRF header and the token.
class UiHttp : public UiDb {
 protected:
  std::unique_ptr<jr::ops::Server> serve(const std::string& token) {
    pool_ = std::make_unique<jr::ops::StorePool>(url_);
    jr::ops::ServerOptions so;
    so.listen = "127.0.0.1:0";
    so.api_token = token;
    auto s = std::make_unique<jr::ops::Server>(so, *pool_, registry_,
                                               [] { return jr::ops::Readiness{}; });
    s->start();
    return s;
  }
  std::unique_ptr<jr::ops::StorePool> pool_;
  jr::ops::Registry registry_;
};

TEST_F(UiHttp, EveryResponseCarriesAStrictPolicyAndChangesNeedTokenAndCsrfHeader) {
  auto s = serve("sekret");
  httplib::Client c("127.0.0.1", s->port());
  for (const char* path : {"/ui/", "/ui/core.js", "/api/v1/overview", "/api/v1/jobs/1"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    std::string csp = r->get_header_value("Content-Security-Policy");
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << path;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << path;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << path;
    EXPECT_EQ(r->get_header_value("X-Content-Type-Options"), "nosniff") << path;
  }
  // The overview on the server pool's connections (its statement prepared on the first request,
  // reused by the second), with every state per queue.
  for (int i = 0; i < 2; ++i) {
    auto ov = c.Get("/api/v1/overview");
    ASSERT_EQ(ov->status, 200) << ov->body;
    auto totals = nlohmann::json::parse(ov->body)["totals"];
    for (const auto& st : jr::ops::ui::job_states()) EXPECT_TRUE(totals.contains(st)) << st;
  }
  auto page = c.Get("/ui/");
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(page->body.find("<script>"), std::string::npos);  // no inline script
  EXPECT_EQ(page->body.find("style="), std::string::npos);    // no inline style
  EXPECT_EQ(c.Get("/ui/core.js")->get_header_value("Content-Type"),
            "text/javascript; charset=utf-8");
  EXPECT_EQ(c.Get("/ui/../migrations.cpp")->status, 404);
  EXPECT_EQ(c.Get("/ui")->status, 302);

  const std::string body = R"({"queue": "q4"})";
  auto r = c.Post("/api/v1/queues/pause", body, "application/json");
  EXPECT_EQ(r->status, 401);
  r = c.Post("/api/v1/queues/pause", {{"Authorization", "Bearer sekret"}}, body,
             "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("X-Jobrunner-CSRF"), std::string::npos);
  EXPECT_EQ(q1("SELECT count(*) FROM jr_queue_pauses"), "0");
  httplib::Headers ok = {{"Authorization", "Bearer sekret"}, {"X-Jobrunner-CSRF", "1"}};
  r = c.Post("/api/v1/queues/pause", ok, body, "application/json");
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(q1("SELECT queue FROM jr_queue_pauses"), "q4");
  r = c.Post("/api/v1/queues/resume", ok, body, "application/json");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(q1("SELECT count(*) FROM jr_queue_pauses"), "0");
  r = c.Post("/api/v1/limits", ok, R"({"key": "queue:q4", "rate": 0})", "application/json");
  EXPECT_EQ(r->status, 400);
  r = c.Post("/api/v1/limits", ok, R"({"key": "queue:q4", "rate": 2.5})", "application/json");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(c.Get("/api/v1/limits")->body.find("queue:q4") != std::string::npos, true);
  r = c.Post("/api/v1/limits/remove", ok, R"({"key": "queue:q4"})", "application/json");
  EXPECT_EQ(r->status, 200);
  // Bulk dead-letter actions act on at most the confirmed count.
  int64_t before =
      n("SELECT count(*) FROM jr_jobs_done WHERE state = 'discarded' AND queue = "
        "'q0'");
  ASSERT_GT(before, 7);
  r = c.Post("/api/v1/dlq/purge", ok, R"({"filter": {"queue": "q0"}})", "application/json");
  EXPECT_EQ(r->status, 400);  // no limit: the count the user confirmed
  r = c.Post("/api/v1/dlq/purge", ok, R"({"filter": {"queue": "q0"}, "limit": 7})",
             "application/json");
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(nlohmann::json::parse(r->body)["purged"], 7);
  EXPECT_EQ(n("SELECT count(*) FROM jr_jobs_done WHERE state = 'discarded' AND queue = 'q0'"),
            before - 7);
  auto cnt = nlohmann::json::parse(c.Get("/api/v1/dlq/count?queue=q0")->body);
  EXPECT_EQ(cnt["count"], before - 7);
  EXPECT_EQ(c.Get("/api/v1/jobs?state=completed&since=yesterday")->status, 400);
  EXPECT_EQ(c.Get("/api/v1/jobs")->status, 400);
  s->stop();
  // Without a configured token every change is refused with 403 and says why.
  auto ro = serve("");
  httplib::Client c2("127.0.0.1", ro->port());
  r = c2.Post("/api/v1/queues/pause", {{"X-Jobrunner-CSRF", "1"}}, body, "application/json");
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("no API token is configured"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(c2.Get("/api/v1/meta")->body)["writes_enabled"], false);
}

}  // namespace
}  // namespace jrtest
