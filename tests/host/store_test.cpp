// Store tests against a real PostgreSQL (throwaway cluster, a fresh database per test).
#include "store.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "db_budget.hpp"
#include "harness.hpp"
#include "maintenance/service.hpp"
#include "migrations.hpp"
#include "pg_statement.hpp"

namespace jr {
namespace {

using jrtest::PgCluster;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = PgCluster::get().create_database("store");
    store_ = Store::open(url_);
    store_->SchemaMigrate();
  }
  std::string q(const std::string& sql) { return PgCluster::query_one(url_, sql); }
  int64_t insert(const std::string& kind, int priority = 0, const std::string& queue = "default") {
    JobInsertParams p;
    p.kind = kind;
    p.priority = priority;
    p.queue = queue;
    return store_->JobInsert(p);
  }
  std::vector<ClaimedJob> claim(const std::string& worker, int limit,
                                std::vector<std::string> kinds = {"k"},
                                std::vector<std::string> queues = {}) {
    JobClaimParams p;
    p.worker_id = worker;
    p.kinds = std::move(kinds);
    p.queues = std::move(queues);
    p.limit = limit;
    return store_->JobClaim(p);
  }
  std::string url_;
  std::unique_ptr<Store> store_;
};

// Every named statement of host/store/sql parses and binds against the migrated schema
// (PostgreSQL checks tables, columns, functions and parameter types when it prepares), so a
// statement no other test happens to run still cannot name a column that is not there. And the
// set is what the store's files say: :prepared marks the hot path only.
TEST_F(StoreTest, EveryNamedStatementPreparesOnTheMigratedSchema) {
  auto all = named_statements();
  ASSERT_GE(all.size(), 100u);
  pqxx::connection c(url_);
  std::set<std::string> names, prepared;
  std::vector<std::string> failed;
  for (const auto& s : all) {
    EXPECT_TRUE(names.insert(s.name).second) << s.name;
    if (s.prepared) prepared.insert(s.name);
    EXPECT_EQ(std::string(s.text).find("{{"), std::string::npos) << s.name;
    EXPECT_EQ(std::string(s.text).find("\n--"), std::string::npos) << s.name << ": a comment";
    try {
      c.prepare(std::string("check_") + s.name, s.text);
      c.prepare_now(std::string("check_") + s.name);  // libpqxx prepares lazily otherwise
    } catch (const pqxx::sql_error& e) {
      std::string what = e.what();
      failed.push_back(std::string(s.name) + ": " + what.substr(0, what.find('\n')));
    }
  }
  EXPECT_TRUE(failed.empty()) << ::testing::PrintToString(failed);
  EXPECT_TRUE(prepared.count("job_claim_fast") && prepared.count("job_complete_many") &&
              prepared.count("job_heartbeat_held"));
  EXPECT_FALSE(prepared.count("job_prune"));
}

TEST_F(StoreTest, ConcurrentMigrationsAreSafe) {
  std::string url = PgCluster::get().create_database("migrate");
  std::vector<std::thread> threads;
  std::atomic<int> applied{0}, errors{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        applied += Store::open(url)->SchemaMigrate();
      } catch (const std::exception&) {
        ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  // Every migration applied exactly once, by whichever runner got the lock first.
  EXPECT_EQ(applied, static_cast<int>(migrations().size()));
  EXPECT_EQ(PgCluster::query_one(url, "SELECT count(*) FROM jr_migrations"),
            std::to_string(migrations().size()));
  EXPECT_EQ(Store::open(url)->SchemaMigrate(), 0);
}

TEST_F(StoreTest, ConcurrentClaimsNeverHandOutAJobTwice) {
  std::vector<JobInsertParams> jobs(500);
  for (auto& j : jobs) j.kind = "k";
  auto ids = store_->JobInsertMany(jobs);
  ASSERT_EQ(ids.size(), 500u);
  std::mutex mu;
  std::vector<int64_t> seen;
  std::vector<std::thread> threads;
  for (int w = 0; w < 6; ++w) {
    threads.emplace_back([&, w] {
      auto s = Store::open(url_);
      for (;;) {
        JobClaimParams p;
        p.worker_id = "w" + std::to_string(w);
        p.kinds = {"k"};
        p.limit = 7;
        auto got = s->JobClaim(p);
        if (got.empty()) break;
        std::lock_guard<std::mutex> lock(mu);
        for (auto& j : got) seen.push_back(j.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a job was claimed twice";
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(seen, ids);
}

TEST_F(StoreTest, ClaimOrdersByPriorityThenFifoAndFiltersKindAndQueue) {
  int64_t a = insert("k", 0);
  int64_t b = insert("k", 5);
  int64_t c = insert("k", 5);
  insert("other_kind", 100);
  insert("k", 100, "elsewhere");
  auto got = claim("w", 10, {"k"}, {"default"});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, b);
  EXPECT_EQ(got[1].id, c);
  EXPECT_EQ(got[2].id, a);
  EXPECT_EQ(got[0].attempt, 1);
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs WHERE state = 'available'"), "2");
}

TEST_F(StoreTest, BulkInsertKeepsOrderAndUsesTheKindsDefaultQueue) {
  store_->KindDefaultsUpsert({{"mail", "mailer", std::string("outbox"), {}, {}, {}}});
  std::vector<JobInsertParams> jobs(3);
  for (int i = 0; i < 3; ++i) {
    jobs[i].kind = "mail";
    jobs[i].payload = "{\"n\":" + std::to_string(i) + "}";
  }
  jobs[2].queue = "explicit";
  jobs[1].delay_seconds = 3600;
  auto ids = store_->JobInsertMany(jobs);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_LT(ids[0], ids[1]);
  for (int i = 0; i < 3; ++i) {
    auto v = nlohmann::json::parse(store_->JobGet(ids[i])->json);
    EXPECT_EQ(v["payload"]["n"], i);
  }
  EXPECT_EQ(nlohmann::json::parse(store_->JobGet(ids[0])->json)["queue"], "outbox");
  EXPECT_EQ(nlohmann::json::parse(store_->JobGet(ids[1])->json)["state"], "scheduled");
  EXPECT_EQ(nlohmann::json::parse(store_->JobGet(ids[2])->json)["queue"], "explicit");
  // A single insert resolves the default queue the same way.
  JobInsertParams one;
  one.kind = "mail";
  EXPECT_EQ(nlohmann::json::parse(store_->JobGet(store_->JobInsert(one))->json)["queue"], "outbox");
}

TEST_F(StoreTest, CompletionMovesTheJobToDoneWithItsResult) {
  int64_t id = insert("k");
  auto got = claim("w", 1);
  ASSERT_EQ(got.size(), 1u);
  auto r =
      store_->JobFinishMany("w", {{id, 1, Outcome::completed, R"({"ok":true})", "", "", 0, ""}});
  EXPECT_TRUE(r.rejected.empty());
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs"), "0");
  auto v = nlohmann::json::parse(store_->JobGet(id)->json);
  EXPECT_EQ(v["state"], "completed");
  EXPECT_EQ(v["result"]["ok"], true);
}

TEST_F(StoreTest, LateCompletionAfterTheLeaseMovedIsRejected) {
  int64_t id = insert("k");
  ASSERT_EQ(claim("old", 1).size(), 1u);
  // The lease expires and the job is handed to another worker (attempt 2).
  q("UPDATE jr_jobs SET state = 'available', lease_owner = NULL WHERE id = " + std::to_string(id));
  auto second = claim("new", 1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].attempt, 2);
  auto r = store_->JobFinishMany("old", {{id, 1, Outcome::completed, "", "", "", 0, ""}});
  ASSERT_EQ(r.rejected.size(), 1u);
  EXPECT_EQ(r.rejected[0], id);
  EXPECT_EQ(q("SELECT state FROM jr_jobs WHERE id = " + std::to_string(id)), "running");
  EXPECT_TRUE(store_->JobFinishMany("new", {{id, 2, Outcome::completed, "", "", "", 0, ""}})
                  .rejected.empty());
}

TEST_F(StoreTest, RetryRecordsTheErrorAndWaitsUntilDue) {
  int64_t id = insert("k");
  claim("w", 1);
  EXPECT_TRUE(
      store_->JobFinishMany("w", {{id, 1, Outcome::retry, "", "error", "disk on fire", 0.2, ""}})
          .rejected.empty());
  auto v = nlohmann::json::parse(store_->JobGet(id)->json);
  EXPECT_EQ(v["state"], "retryable");
  ASSERT_EQ(v["errors"].size(), 1u);
  EXPECT_EQ(v["errors"][0]["message"], "disk on fire");
  EXPECT_EQ(v["errors"][0]["attempt"], 1);
  EXPECT_TRUE(claim("w", 1).empty());
  EXPECT_TRUE(
      jrtest::wait_until([&] { return store_->JobPromoteDue(100) == 1; }, std::chrono::seconds(5)));
  auto again = claim("w", 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempt, 2);
}

TEST_F(StoreTest, SnoozeAndReleaseDoNotUseAnAttempt) {
  int64_t id = insert("k");
  claim("w", 1);
  EXPECT_TRUE(
      store_->JobFinishMany("w", {{id, 1, Outcome::release, "", "", "", 0, ""}}).rejected.empty());
  auto c = claim("w", 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].attempt, 1);
  EXPECT_TRUE(
      store_->JobFinishMany("w", {{id, 1, Outcome::snooze, "", "", "", 0, ""}}).rejected.empty());
  EXPECT_EQ(q("SELECT state || ':' || attempt FROM jr_jobs WHERE id = " + std::to_string(id)),
            "scheduled:0");
}

TEST_F(StoreTest, DiscardKeepsPayloadAndErrorHistory) {
  JobInsertParams p;
  p.kind = "k";
  p.payload = R"({"important":"data"})";
  int64_t id = store_->JobInsert(p);
  claim("w", 1);
  EXPECT_TRUE(store_->JobFinishMany("w", {{id, 1, Outcome::retry, "", "error", "first", 0, ""}})
                  .rejected.empty());
  store_->JobPromoteDue(10);
  claim("w", 1);
  EXPECT_TRUE(
      store_->JobFinishMany("w", {{id, 2, Outcome::discard, "", "permanent", "bad input", 0, ""}})
          .rejected.empty());
  auto v = nlohmann::json::parse(store_->JobGet(id)->json);
  EXPECT_EQ(v["state"], "discarded");
  EXPECT_EQ(v["payload"]["important"], "data");
  ASSERT_EQ(v["errors"].size(), 2u);
  EXPECT_EQ(v["errors"][1]["kind"], "permanent");
  EXPECT_EQ(v["errors"][1]["message"], "bad input");
}

TEST_F(StoreTest, HeartbeatExtendsLeasesAndReportsCancelRequests) {
  int64_t a = insert("k");
  int64_t b = insert("k");
  claim("w", 2);
  q("UPDATE jr_jobs SET lease_expires_at = now() WHERE true");
  q("UPDATE jr_jobs SET cancel_requested = true WHERE id = " + std::to_string(b));
  auto cancel = store_->JobHeartbeat("w", 60);
  EXPECT_EQ(cancel, std::vector<int64_t>{b});
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs WHERE lease_expires_at > now() + interval '50 s'"),
            "2");
  (void)a;
}

// The vacuum service (issue 18: a long drain slows on its own dead rows): it vacuums jr_jobs
// once `dead_rows` more have piled up than its last vacuum left, and not again while what is
// left cannot be removed (an open snapshot still sees it).
TEST_F(StoreTest, TheVacuumServiceVacuumsOnceDeadRowsPileUpAndNotWhileASnapshotHoldsThem) {
  for (int i = 0; i < 3000; ++i) insert("k");
  // Deletes n jobs on a connection of its own and has its statistics sent at once.
  auto delete_jobs = [&](int n) {
    pqxx::connection c(url_);
    pqxx::nontransaction(c).exec(
        "DELETE FROM jr_jobs WHERE id IN (SELECT id FROM jr_jobs ORDER BY "
        "id LIMIT " +
        std::to_string(n) + ")");
    pqxx::nontransaction(c).exec("SELECT pg_stat_force_next_flush()");
    pqxx::nontransaction(c).exec("SELECT 1");
  };
  auto vacuums = [&] {
    return std::stoll(q("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'jr_jobs'"));
  };
  delete_jobs(1000);
  ASSERT_TRUE(
      jrtest::wait_until([&] { return store_->JobsDeadRows() >= 1000; }, std::chrono::seconds(15)))
      << store_->JobsDeadRows();

  MaintenanceCounts counts;
  auto patient = make_vacuum({1.0, 5000}, counts);
  EXPECT_EQ(patient->run_once(*store_).done, 0) << "fewer dead rows than the threshold";
  EXPECT_EQ(vacuums(), 0);

  auto service = make_vacuum({1.0, 500}, counts);
  EXPECT_EQ(service->run_once(*store_).done, 1);
  EXPECT_EQ(vacuums(), 1);
  EXPECT_EQ(counts.vacuums.load(), 1);
  EXPECT_LT(store_->JobsDeadRows(), 500) << "the vacuum removed them";
  EXPECT_EQ(service->run_once(*store_).done, 0) << "nothing new since";

  // A repeatable-read transaction's snapshot keeps the next deleted rows from being removed.
  pqxx::connection reader(url_);
  pqxx::work old(reader, "old_snapshot");
  old.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  old.exec("SELECT count(*) FROM jr_jobs");
  delete_jobs(1000);
  ASSERT_TRUE(
      jrtest::wait_until([&] { return store_->JobsDeadRows() >= 1000; }, std::chrono::seconds(15)))
      << store_->JobsDeadRows();
  EXPECT_EQ(service->run_once(*store_).done, 1) << "new dead rows: it tries";
  EXPECT_GE(store_->JobsDeadRows(), 1000) << "the snapshot still sees them";
  EXPECT_EQ(service->run_once(*store_).done, 0) << "and does not try again for the same rows";
  EXPECT_EQ(counts.vacuums.load(), 2);
  old.commit();
}

// The runner's sessions never JIT-compile (sql/schema.sql, session_no_jit): with statistics on
// the small tables the claim's estimate crossed jit_above_cost and each claim spent ~22 ms
// compiling. The database here says JIT for everything (jit_above_cost 0); the store's session
// says no, from its first connection and again after a reconnect, and the claim still works.
TEST_F(StoreTest, TheStoresSessionsDoNotJitCompileWhateverTheDatabaseSays) {
  std::string db = q("SELECT current_database()");
  q("ALTER DATABASE \"" + db + "\" SET jit = on");
  q("ALTER DATABASE \"" + db + "\" SET jit_above_cost = 0");
  q("VACUUM ANALYZE");  // every table, the empty ones included: what made the estimate cross
  EXPECT_EQ(q("SELECT current_setting('jit')"), "on") << "another session keeps the default";
  auto opened = Store::open(url_);
  Store& store = *opened;
  EXPECT_EQ(store.SessionSetting("jit"), "off");
  EXPECT_EQ(store.SessionSetting("no_such_setting"), "");
  insert("k");
  q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()");
  try {
    store.Ping();
  } catch (const StoreError& e) {
    EXPECT_TRUE(e.transient()) << e.what();
  }
  EXPECT_EQ(store.SessionSetting("jit"), "off") << "after the reconnect too";
  JobClaimParams p;
  p.worker_id = "w";
  p.kinds = {"k"};
  p.limit = 10;
  EXPECT_EQ(store.JobClaim(p).size(), 1u);
}

TEST_F(StoreTest, SurvivesAKilledBackend) {
  insert("k");
  q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()");
  try {
    claim("w", 1);
  } catch (const StoreError& e) {
    EXPECT_TRUE(e.transient()) << e.what();
  }
  // The next call reconnects by itself.
  EXPECT_TRUE(store_->Ping());
  EXPECT_EQ(insert("k") > 0, true);
}

// A LISTENing connection is readable for a notification as well as for its backend's death
// (the fetcher's claims connection LISTENs): the first is no reason to reconnect, and still wakes
// the next wait; the second is seen before the next use.
TEST_F(StoreTest, AListeningConnectionTellsANotificationFromItsBackendsDeath) {
  store_->Listen();
  EXPECT_FALSE(store_->LostWhileIdle());
  q("SELECT pg_notify('jr_jobs', '')");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let it arrive
  EXPECT_FALSE(store_->LostWhileIdle()) << "a notification is not a lost connection";
  EXPECT_TRUE(store_->WaitForJobs(0)) << "the notification read by the check still wakes";
  EXPECT_FALSE(store_->WaitForJobs(0)) << "once";
  q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()");
  EXPECT_TRUE(
      jrtest::wait_until([&] { return store_->LostWhileIdle(); }, std::chrono::seconds(10)));
}

// A backend killed while its connection sits idle is seen without a round trip, and a shared
// connection is replaced before its next use: the caller gets no error at all.
TEST_F(StoreTest, AConnectionKilledWhileIdleIsReplacedBeforeUse) {
  insert("k");
  SharedStore shared(url_, "test");
  EXPECT_TRUE(shared.with([](Store& s) { return s.Ping(); }));  // opens its connection
  EXPECT_FALSE(store_->LostWhileIdle());
  // Kill every other backend (the shared store's among them), then wait until it is gone.
  q("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()");
  for (int i = 0; i < 200 && q("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND pid <> pg_backend_pid() AND "
                               "backend_type = 'client backend'") != "0";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(store_->LostWhileIdle());
  std::vector<ClaimedJob> got;
  EXPECT_NO_THROW(got = shared.with([&](Store& s) {
    JobClaimParams p;
    p.worker_id = "w";
    p.kinds = {"k"};
    p.limit = 1;
    return s.JobClaim(p);
  }));
  EXPECT_EQ(got.size(), 1u);
  // A live idle connection is not mistaken for a lost one.
  shared.with([&](Store& s) {
    EXPECT_FALSE(s.LostWhileIdle());
    return 0;
  });
}

TEST_F(StoreTest, UnreachableDatabaseIsATransientErrorNamingTheServer) {
  try {
    Store::open("postgresql://app:hunter2@127.0.0.1:1/nothing?connect_timeout=2");
    FAIL();
  } catch (const StoreError& e) {
    std::string m = e.what();
    EXPECT_TRUE(e.transient());
    EXPECT_NE(m.find("127.0.0.1:1"), std::string::npos) << m;
    EXPECT_EQ(m.find("hunter2"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace jr
