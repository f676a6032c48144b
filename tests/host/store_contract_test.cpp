// The Store contract: one suite, run on both stores. Every case runs against the PostgreSQL
// store (a throwaway cluster, a fresh database per case) and against the in-memory store
// (memory://, host/store/mem_store.hpp) with the same expectations, so the fake the engine's
// unit tests run on cannot drift from the real thing: a behaviour changed in one store and not
// the other fails here. ctest runs the two halves as test_store_contract (the in-memory store,
// label unit, no database) and test_store_contract_pg.
//
// Time: PostgreSQL's now() cannot be moved, so the few cases about time use short real delays
// (a lease of 0.2 s, a retry in 0.3 s) on both stores alike.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"
#include "mem_store.hpp"
#include "store.hpp"

namespace jr {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

enum class Backend { memory, postgres };

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::postgres) {
      url_ = jrtest::PgCluster::get().create_database("contract");
    } else {
      static int n = 0;
      url_ = "memory://contract-" + std::to_string(++n);
      memory_store_drop(url_);
    }
    s_ = Store::open(url_);
    s_->SchemaMigrate();
  }
  void TearDown() override {
    if (GetParam() == Backend::memory) memory_store_drop(url_);
  }

  int64_t insert(JobInsertParams p) {
    if (p.kind.empty()) p.kind = "k";
    return s_->JobInsert(p);
  }
  int64_t insert(int priority = 0, const std::string& queue = "default") {
    JobInsertParams p;
    p.priority = priority;
    p.queue = queue;
    return insert(p);
  }
  std::vector<ClaimedJob> claim(int limit, const std::string& worker = "w",
                                std::vector<std::string> kinds = {"k"},
                                std::vector<std::string> queues = {}, double lease = 30) {
    JobClaimParams p;
    p.worker_id = worker;
    p.kinds = std::move(kinds);
    p.queues = std::move(queues);
    p.limit = limit;
    p.lease_seconds = lease;
    return s_->JobClaim(p);
  }
  static std::vector<int64_t> ids(const std::vector<ClaimedJob>& v) {
    std::vector<int64_t> out;
    for (const auto& j : v) out.push_back(j.id);
    return out;
  }
  JobFinishResult finish(const ClaimedJob& j, Outcome o, const std::string& worker = "w",
                         double delay = 0, const std::string& result = "") {
    JobFinish f;
    f.id = j.id;
    f.attempt = j.attempt;
    f.outcome = o;
    f.result = result;
    f.delay_seconds = delay;
    if (o != Outcome::completed) {
      f.error_kind = o == Outcome::discard ? "permanent" : "error";
      f.error = "failed on purpose";
    }
    return s_->JobFinishMany(worker, {f});
  }
  json get(int64_t id) {
    auto v = s_->JobGet(id);
    return v ? json::parse(v->json) : json();
  }
  std::string state(int64_t id) { return get(id).value("state", "(none)"); }

  std::string url_;
  std::unique_ptr<Store> s_;
};

TEST_P(StoreContract, ClaimTakesHigherPriorityFirstThenOldestAndStartsAnAttempt) {
  int64_t a = insert(0), b = insert(5), c = insert(0);
  auto got = claim(3);
  EXPECT_EQ(ids(got), (std::vector<int64_t>{b, a, c}));
  for (const auto& j : got) {
    EXPECT_EQ(j.attempt, 1);
    EXPECT_EQ(j.kind, "k");
    EXPECT_EQ(j.queue, "default");
    EXPECT_EQ(json::parse(j.payload), json::object());
  }
  json row = get(a);
  EXPECT_EQ(row["state"], "running");
  EXPECT_EQ(row["lease_owner"], "w");
  EXPECT_EQ(row["attempt"], 1);
  EXPECT_TRUE(claim(3).empty()) << "a running job is not handed out again";
}

TEST_P(StoreContract, ClaimSharesOneBatchAcrossQueues) {
  for (int i = 0; i < 4; ++i) insert(0, "busy");
  int64_t quiet = insert(0, "quiet");
  auto got = claim(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].id == quiet || got[1].id == quiet) << "a flood in one queue starves another";
}

TEST_P(StoreContract, ClaimHonoursKindsQueueGlobsAndPausedQueues) {
  JobInsertParams other;
  other.kind = "other";
  int64_t o = insert(other);
  int64_t sub = insert(0, "contest:submissions:7");
  int64_t plain = insert(0, "plain");
  EXPECT_EQ(ids(claim(5, "w", {"k"}, {"contest:*"})), (std::vector<int64_t>{sub}));
  s_->QueuePause("plain");
  EXPECT_EQ(s_->QueuePaused(), (std::vector<std::string>{"plain"}));
  EXPECT_TRUE(claim(5).empty());
  EXPECT_TRUE(s_->QueueResume("plain"));
  EXPECT_FALSE(s_->QueueResume("plain"));
  EXPECT_EQ(ids(claim(5)), (std::vector<int64_t>{plain}));
  EXPECT_EQ(ids(claim(5, "w", {"other"})), (std::vector<int64_t>{o}));
}

TEST_P(StoreContract, AFinishIsFencedByAttemptAndOwner) {
  insert();
  auto j = claim(1).at(0);
  ClaimedJob stale = j;
  stale.attempt = 7;
  EXPECT_EQ(finish(stale, Outcome::completed).rejected, (std::vector<int64_t>{j.id}));
  EXPECT_EQ(finish(j, Outcome::completed, "someone-else").rejected, (std::vector<int64_t>{j.id}));
  EXPECT_EQ(state(j.id), "running");
  EXPECT_TRUE(finish(j, Outcome::completed, "w", 0, R"({"n":1})").rejected.empty());
  json row = get(j.id);
  EXPECT_EQ(row["state"], "completed");
  EXPECT_EQ(row["result"], json({{"n", 1}}));
  EXPECT_EQ(row["worker_id"], "w");
  EXPECT_EQ(finish(j, Outcome::completed).rejected, (std::vector<int64_t>{j.id}))
      << "a finished job cannot be finished again";
}

TEST_P(StoreContract, ARetryWaitsItsDelayThenRunsAsTheNextAttempt) {
  insert();
  auto j = claim(1).at(0);
  EXPECT_TRUE(finish(j, Outcome::retry, "w", 0.3).rejected.empty());
  json row = get(j.id);
  EXPECT_EQ(row["state"], "retryable");
  ASSERT_EQ(row["errors"].size(), 1u);
  EXPECT_EQ(row["errors"][0]["kind"], "error");
  EXPECT_EQ(row["errors"][0]["message"], "failed on purpose");
  EXPECT_EQ(row["errors"][0]["attempt"], 1);
  EXPECT_EQ(row["errors"][0]["worker_id"], "w");
  EXPECT_EQ(row["lease_owner"], nullptr);
  EXPECT_EQ(s_->JobPromoteDue(100), 0) << "not due yet";
  EXPECT_TRUE(claim(1).empty());
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(s_->JobPromoteDue(100), 1);
  auto again = claim(1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempt, 2);
}

TEST_P(StoreContract, SnoozeAndReleaseGiveTheAttemptBack) {
  int64_t a = insert(), b = insert();
  auto got = claim(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(finish(got[0].id == a ? got[0] : got[1], Outcome::snooze, "w", 60).rejected.empty());
  EXPECT_TRUE(finish(got[0].id == b ? got[0] : got[1], Outcome::release).rejected.empty());
  EXPECT_EQ(state(a), "scheduled");
  EXPECT_EQ(get(a)["attempt"], 0);
  EXPECT_EQ(state(b), "available");
  EXPECT_EQ(get(b)["attempt"], 0);
  EXPECT_EQ(ids(claim(5)), (std::vector<int64_t>{b}));
}

TEST_P(StoreContract, ADiscardIsADeadLetterThatRetryRevives) {
  JobInsertParams p;
  p.max_attempts = 1;
  int64_t id = insert(p);
  EXPECT_TRUE(finish(claim(1).at(0), Outcome::discard).rejected.empty());
  json row = get(id);
  EXPECT_EQ(row["state"], "discarded");
  EXPECT_EQ(row["errors"][0]["kind"], "permanent");
  DeadLetterFilter all;
  auto dlq = s_->DeadLetterList(all);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(json::parse(dlq[0].json)["id"], id);
  EXPECT_TRUE(s_->JobRetry(id));
  EXPECT_EQ(state(id), "available");
  EXPECT_GE(get(id)["max_attempts"].get<int>(), 2) << "a revived job has an attempt left";
  EXPECT_TRUE(s_->DeadLetterList(all).empty());
  EXPECT_FALSE(s_->JobRetry(id)) << "an available job is not retried";
  EXPECT_FALSE(s_->JobRetry(id + 1000));
}

TEST_P(StoreContract, AnExpiredLeaseIsRetriedThenDeadLetteredWhenAttemptsRunOut) {
  JobInsertParams p;
  p.max_attempts = 2;
  int64_t id = insert(p);
  claim(1, "w", {"k"}, {}, 0.2);
  EXPECT_EQ(s_->JobRescueExpired(100, 25).retried, 0) << "the lease has not expired";
  std::this_thread::sleep_for(milliseconds(350));
  RescueResult r = s_->JobRescueExpired(100, 25);
  EXPECT_EQ(r.retried, 1);
  EXPECT_EQ(r.discarded, 0);
  json row = get(id);
  EXPECT_EQ(row["state"], "retryable");
  EXPECT_EQ(row["errors"][0]["kind"], "lease_lost");
  EXPECT_EQ(row["errors"][0]["worker_id"], "w");
  ASSERT_TRUE(s_->JobRetry(id));  // due now
  EXPECT_EQ(claim(1, "w2", {"k"}, {}, 0.2).at(0).attempt, 2);
  std::this_thread::sleep_for(milliseconds(350));
  r = s_->JobRescueExpired(100, 25);
  EXPECT_EQ(r.discarded, 1);
  EXPECT_EQ(state(id), "discarded");
}

TEST_P(StoreContract, HeartbeatsRenewHeldLeasesAndCarryCancellation) {
  int64_t a = insert(), b = insert();
  claim(2, "w", {"k"}, {}, 0.3);
  size_t renewed = 0;
  EXPECT_TRUE(s_->JobHeartbeatHeld("w", 30, {a}, &renewed).empty());
  EXPECT_EQ(renewed, 1u);
  EXPECT_EQ(s_->JobHeartbeatHeld("intruder", 30, {b}, &renewed).size(), 0u);
  EXPECT_EQ(renewed, 0u) << "only the owner renews";
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(s_->JobRescueExpired(100, 25).retried, 1) << "b expired, a was renewed";
  EXPECT_EQ(state(a), "running");
  EXPECT_EQ(state(b), "retryable");
  EXPECT_EQ(s_->JobCancel(a), CancelResult::requested);
  EXPECT_EQ(s_->JobHeartbeatHeld("w", 30, {a}), (std::vector<int64_t>{a}));
  EXPECT_EQ(s_->JobCancelRequested("w"), (std::vector<int64_t>{a}));
  EXPECT_EQ(s_->JobHeartbeat("w", 30), (std::vector<int64_t>{a}));
}

TEST_P(StoreContract, CancelEndsAWaitingJobAndNamesWhatItCouldNotCancel) {
  int64_t id = insert();
  EXPECT_EQ(s_->JobCancel(id), CancelResult::cancelled);
  json row = get(id);
  EXPECT_EQ(row["state"], "cancelled");
  EXPECT_EQ(row["errors"][0]["kind"], "cancelled");
  EXPECT_EQ(s_->JobCancel(id), CancelResult::already_finished);
  EXPECT_EQ(s_->JobCancel(id + 1000), CancelResult::not_found);
  insert(0, "q");
  insert(0, "q");
  JobCancelFilter f;
  f.queue = "q";
  EXPECT_EQ(s_->JobCancelMany(f, true), 2);
  EXPECT_EQ(s_->JobCancelMany(f, false), 2);
  EXPECT_EQ(s_->JobCancelMany(f, true), 0);
}

TEST_P(StoreContract, AUniqueKeyReturnsTheLiveJobUntilItFinishes) {
  JobInsertParams p;
  p.kind = "k";
  p.unique_key = "report:7";
  JobInsertResult first = s_->JobInsertEx(p);
  JobInsertResult second = s_->JobInsertEx(p);
  EXPECT_TRUE(first.inserted);
  EXPECT_FALSE(second.inserted);
  EXPECT_EQ(second.id, first.id);
  EXPECT_TRUE(finish(claim(1).at(0), Outcome::completed).rejected.empty());
  JobInsertResult third = s_->JobInsertEx(p);
  EXPECT_TRUE(third.inserted);
  EXPECT_NE(third.id, first.id);
}

TEST_P(StoreContract, ChildrenWaitForTheirParentsAndFollowTheirFate) {
  int64_t ok_parent = insert();
  JobInsertParams other;
  other.kind = "other";
  int64_t bad_parent = insert(other);
  JobInsertParams child;
  child.depends_on = {ok_parent};
  int64_t good = insert(child);
  child.depends_on = {ok_parent, bad_parent};
  int64_t doomed = insert(child);
  EXPECT_EQ(state(good), "waiting");
  EXPECT_EQ(state(doomed), "waiting");
  EXPECT_TRUE(finish(claim(1).at(0), Outcome::completed)
                  .rejected.empty());  // ok_parent (children are not available yet)
  EXPECT_EQ(state(good), "available") << "the completion promotes its waiting children";
  EXPECT_TRUE(finish(claim(1, "w", {"other"}).at(0), Outcome::discard).rejected.empty());
  s_->JobResolveDependencies(100);
  json row = get(doomed);
  EXPECT_EQ(row["state"], "cancelled");
  EXPECT_EQ(row["errors"].back()["kind"], "dependency");
  child.depends_on = {ok_parent + 100000};
  EXPECT_THROW(insert(child), StoreError) << "a parent that does not exist";
}

TEST_P(StoreContract, ALockKeyLimitsHowManyRunAtOnce) {
  JobInsertParams p;
  p.lock_key = "account:1";
  insert(p);
  insert(p);
  p.lock_limit = 2;
  p.lock_key = "account:2";
  insert(p);
  insert(p);
  insert(p);
  auto got = claim(10);
  EXPECT_EQ(got.size(), 3u) << "one of account:1, two of account:2";
  EXPECT_TRUE(finish(got[0], Outcome::completed).rejected.empty());
  EXPECT_EQ(claim(10).size(), 1u) << "the finished job's slot is free again";
}

TEST_P(StoreContract, ClaimsWhoseAnswerWasLostAreReleasedWithTheirAttempt) {
  s_->WorkerRegister({"w", {"k"}, {}});
  int64_t a = insert(), b = insert();
  ASSERT_EQ(claim(2).size(), 2u);
  EXPECT_EQ(s_->JobReleaseOrphanedClaims("w", {a}), (std::vector<int64_t>{b}));
  EXPECT_EQ(state(a), "running");
  EXPECT_EQ(state(b), "available");
  EXPECT_EQ(get(b)["attempt"], 0) << "no attempt is charged for a lost answer";
}

TEST_P(StoreContract, OneLeaderAtATime) {
  EXPECT_TRUE(s_->LeaderTryAcquire("maintenance", "a", 30));
  EXPECT_FALSE(s_->LeaderTryAcquire("maintenance", "b", 30));
  EXPECT_TRUE(s_->LeaderTryAcquire("maintenance", "a", 30)) << "the leader renews";
  s_->LeaderResign("maintenance", "b");  // not b's to resign
  EXPECT_FALSE(s_->LeaderTryAcquire("maintenance", "b", 30));
  s_->LeaderResign("maintenance", "a");
  EXPECT_TRUE(s_->LeaderTryAcquire("maintenance", "b", 0.2));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(s_->LeaderTryAcquire("maintenance", "a", 30)) << "an expired lease is free";
}

TEST_P(StoreContract, KindDefaultsGiveTheQueueAndAFinalizer) {
  KindDefaults k;
  k.kind = "k";
  k.plugin = "p";
  k.default_queue = "k-queue";
  k.finalizer = "cleanup";
  s_->KindDefaultsUpsert({k});
  int64_t id = insert(JobInsertParams{});  // no queue given: the kind's
  EXPECT_EQ(get(id)["queue"], "k-queue");
  EXPECT_TRUE(finish(claim(1).at(0), Outcome::discard).rejected.empty());
  JobListParams lp;
  lp.kind = "cleanup";
  auto fin = s_->JobList(lp);
  ASSERT_EQ(fin.size(), 1u) << "a discarded job of a kind with a finalizer enqueues it";
  json f = json::parse(fin[0].json);
  EXPECT_EQ(f["payload"]["job_id"], id);
  EXPECT_EQ(f["payload"]["state"], "discarded");
  EXPECT_EQ(f["payload"]["error_kind"], "permanent");
  EXPECT_EQ(f["queue"], "k-queue") << "the finalizer kind has no queue: the job's";
}

TEST_P(StoreContract, ATtlCancelsAJobThatDidNotStartInTime) {
  JobInsertParams p;
  p.ttl_seconds = 0.2;
  int64_t id = insert(p);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(claim(1).empty()) << "an expired job is not claimed";
  EXPECT_EQ(s_->JobExpireTtl(100), 1);
  json row = get(id);
  EXPECT_EQ(row["state"], "cancelled");
  EXPECT_EQ(row["errors"][0]["kind"], "expired");
}

TEST_P(StoreContract, PruningDropsFinishedJobsPastTheirRetention) {
  JobInsertParams p;
  p.result_ttl_seconds = 0.1;
  int64_t shortlived = insert(p);
  int64_t kept = insert();
  for (const auto& j : claim(2)) EXPECT_TRUE(finish(j, Outcome::completed).rejected.empty());
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(s_->JobPrune(PruneParams{}), 1);
  EXPECT_FALSE(s_->JobGet(shortlived).has_value());
  EXPECT_EQ(state(kept), "completed");
}

TEST_P(StoreContract, AnInsertWakesAListener) {
  auto listener = Store::open(url_);
  listener->Listen();
  EXPECT_FALSE(listener->WaitForJobs(50)) << "nothing inserted yet";
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(100));
    auto other = Store::open(url_);
    JobInsertParams p;
    p.kind = "k";
    EXPECT_GT(other->JobInsert(p), 0);
  });
  auto start = std::chrono::steady_clock::now();
  bool woke = listener->WaitForJobs(10000);
  auto waited = std::chrono::steady_clock::now() - start;
  t.join();
  EXPECT_TRUE(woke);
  EXPECT_LT(waited, std::chrono::seconds(5)) << "woken by the insert, not by the timeout";
}

TEST_P(StoreContract, KindsIdleAndQueueDepthsSeeLiveJobs) {
  EXPECT_TRUE(s_->KindsIdle({"k"}));
  insert(0, "a");
  insert(0, "a");
  EXPECT_FALSE(s_->KindsIdle({"k"}));
  EXPECT_TRUE(s_->KindsIdle({"other"}));
  claim(1);
  json d = json::parse(s_->QueueDepths());
  EXPECT_EQ(d["a"]["available"], 1);
  EXPECT_EQ(d["a"]["running"], 1);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreContract,
                         ::testing::Values(Backend::memory, Backend::postgres),
                         [](const ::testing::TestParamInfo<Backend>& i) {
                           return i.param == Backend::memory ? "Memory" : "Postgres";
                         });

}  // namespace
}  // namespace jr
