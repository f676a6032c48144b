// The maintenance services (host/engine/maintenance/), each through its own run_once on the
// in-memory store, with time moved by a ManualClock: what each one changes, what it counts, that
// a full batch asks to be called again, and that bad settings are refused by name. Then the
// leader loop: two Maintenance instances on one store, one leader, which runs the services.
// The stores themselves are pinned to each other by the contract suite
// (store_contract_test.cpp), so these decisions hold on PostgreSQL too.
#include "maintenance.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "clock.hpp"
#include "harness.hpp"
#include "mem_store.hpp"
#include "store.hpp"

namespace jr {
namespace {

using nlohmann::json;
constexpr std::chrono::seconds kWait{10};

class Services : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    url_ = "memory://maintenance-" + std::to_string(++n);
    memory_store_drop(url_);
    memory_store_use_clock(url_, clock_);
    s_ = Store::open(url_);
  }
  void TearDown() override { memory_store_drop(url_); }

  int64_t insert(const std::function<void(JobInsertParams&)>& tune = {}) {
    JobInsertParams p;
    p.kind = "k";
    if (tune) tune(p);
    return s_->JobInsert(p);
  }
  std::vector<ClaimedJob> claim(int limit, double lease = 30) {
    JobClaimParams p;
    p.worker_id = "w";
    p.kinds = {"k"};
    p.limit = limit;
    p.lease_seconds = lease;
    return s_->JobClaim(p);
  }
  void finish(const ClaimedJob& j, Outcome o) {
    JobFinish f;
    f.id = j.id;
    f.attempt = j.attempt;
    f.outcome = o;
    if (o != Outcome::completed) {
      f.error_kind = "permanent";
      f.error = "failed on purpose";
    }
    EXPECT_TRUE(s_->JobFinishMany("w", {f}).rejected.empty());
  }
  json row(int64_t id) {
    auto v = s_->JobGet(id);
    return v ? json::parse(v->json) : json();
  }
  std::string state(int64_t id) {
    json r = row(id);
    return r.is_object() ? r.value("state", "(none)") : "(gone)";
  }

  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::string url_;
  std::unique_ptr<Store> s_;
  MaintenanceCounts counts_;
};

TEST_F(Services, SchedulerMakesDueJobsAvailableInBatches) {
  for (int i = 0; i < 5; ++i) insert([](JobInsertParams& p) { p.delay_seconds = 60; });
  auto svc = make_scheduler({1.0, 2}, counts_);
  EXPECT_EQ(svc->name(), "scheduler");
  Pass p = svc->run_once(*s_);
  EXPECT_EQ(p.done, 0) << "nothing is due yet";
  EXPECT_FALSE(p.more);
  clock_->advance(61);
  p = svc->run_once(*s_);
  EXPECT_EQ(p.done, 2);
  EXPECT_TRUE(p.more) << "a full batch: the leader calls again at once";
  p = svc->run_once(*s_);
  EXPECT_EQ(p.done, 2);
  p = svc->run_once(*s_);
  EXPECT_EQ(p.done, 1);
  EXPECT_FALSE(p.more);
  EXPECT_EQ(counts_.promoted.load(), 5);
  EXPECT_EQ(claim(10).size(), 5u);
}

TEST_F(Services, RescuerRetriesAnExpiredLeaseThenDeadLettersTheLastAttempt) {
  int64_t id = insert([](JobInsertParams& p) { p.max_attempts = 2; });
  ASSERT_EQ(claim(1, 30).size(), 1u);
  RescuerOptions o;
  o.interval_seconds = 5;
  auto svc = make_rescuer(o, counts_);
  EXPECT_EQ(svc->run_once(*s_).done, 0) << "the lease has 30 s left";
  clock_->advance(31);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(id), "retryable");
  EXPECT_EQ(row(id)["errors"][0]["kind"], "lease_lost");
  ASSERT_TRUE(s_->JobRetry(id));
  ASSERT_EQ(claim(1, 30).size(), 1u);
  clock_->advance(31);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(id), "discarded") << "no attempts left: a dead letter";
  EXPECT_EQ(counts_.rescued.load(), 1);
  EXPECT_EQ(counts_.rescued_to_dlq.load(), 1);
}

TEST_F(Services, RescuerUsesTheDefaultMaxAttemptsForJobsWithoutTheirOwn) {
  int64_t id = insert();
  RescuerOptions o;
  o.default_max_attempts = 1;
  auto svc = make_rescuer(o, counts_);
  ASSERT_EQ(claim(1, 10).size(), 1u);
  clock_->advance(11);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(id), "discarded");
}

TEST_F(Services, ExpirerCancelsJobsThatDidNotStartWithinTheirTtl) {
  int64_t expiring = insert([](JobInsertParams& p) { p.ttl_seconds = 10; });
  int64_t lasting = insert();
  auto svc = make_expirer({5.0}, counts_);
  EXPECT_EQ(svc->run_once(*s_).done, 0);
  clock_->advance(11);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(expiring), "cancelled");
  EXPECT_EQ(row(expiring)["errors"][0]["kind"], "expired");
  EXPECT_EQ(state(lasting), "available");
  EXPECT_EQ(counts_.expired.load(), 1);
}

TEST_F(Services, PrunerDeletesFinishedJobsPastTheirRetentionOnly) {
  int64_t shortlived = insert([](JobInsertParams& p) { p.result_ttl_seconds = 10; });
  int64_t kept = insert();
  int64_t waiting = insert([](JobInsertParams& p) { p.delay_seconds = 5; });
  for (const auto& j : claim(2)) finish(j, Outcome::completed);
  PrunerOptions o;
  o.prune.result_ttl_seconds = 3600;
  auto svc = make_pruner(o, counts_);
  EXPECT_EQ(svc->run_once(*s_).done, 0);
  clock_->advance(11);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(shortlived), "(gone)");
  EXPECT_EQ(state(kept), "completed") << "the runner's result_ttl (1 h) has not passed";
  EXPECT_EQ(state(waiting), "scheduled") << "an unfinished job is never pruned";
  clock_->advance(3600);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(state(kept), "(gone)");
  EXPECT_EQ(counts_.pruned.load(), 2);
}

TEST_F(Services, DependenciesCancelTheChildrenOfADeadParent) {
  int64_t good = insert();
  int64_t bad = insert();
  int64_t child_of_good = insert([&](JobInsertParams& p) { p.depends_on = {good}; });
  int64_t child_of_bad = insert([&](JobInsertParams& p) { p.depends_on = {good, bad}; });
  ASSERT_EQ(state(child_of_good), "waiting");
  auto svc = make_dependencies({1.0}, counts_);
  EXPECT_EQ(svc->run_once(*s_).done, 0) << "no parent has finished";
  for (const auto& j : claim(2)) finish(j, j.id == good ? Outcome::completed : Outcome::discard);
  // A completion releases its children itself (the same statement); the service is the sweep
  // for the rest: a child whose parent was dead-lettered follows it.
  EXPECT_EQ(state(child_of_good), "available");
  EXPECT_EQ(state(child_of_bad), "waiting");
  Pass p = svc->run_once(*s_);
  EXPECT_EQ(p.done, 1);
  EXPECT_FALSE(p.more);
  EXPECT_EQ(state(child_of_bad), "cancelled");
  EXPECT_EQ(row(child_of_bad)["errors"][0]["kind"], "dependency");
  EXPECT_EQ(counts_.deps_cancelled.load(), 1);
  EXPECT_EQ(svc->run_once(*s_).done, 0) << "nothing left to resolve";
}

TEST_F(Services, AgingRaisesTheLongWaitingTowardsTheTopPriority) {
  int64_t low = insert([](JobInsertParams& p) { p.priority = 0; });
  insert([](JobInsertParams& p) { p.priority = 10; });
  AgingOptions o;
  o.seconds_per_point = 60;
  auto svc = make_aging(o, counts_);
  EXPECT_EQ(svc->run_once(*s_).done, 0) << "it has not waited a minute";
  clock_->advance(3 * 60 + 1);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  EXPECT_EQ(row(low)["priority"], 3) << "one point per minute waited";
  clock_->advance(60 * 60);
  svc->run_once(*s_);
  EXPECT_EQ(row(low)["priority"], 10) << "never above the top priority waiting";
  EXPECT_EQ(counts_.aged.load(), 2);
}

TEST_F(Services, RegistryForgetsRunnersThatStoppedHeartbeating) {
  s_->WorkerRegister({"alive", {"k"}, {}});
  s_->WorkerRegister({"dead", {"k"}, {}});
  auto svc = make_registry({5.0, 60}, counts_);
  clock_->advance(40);
  s_->WorkerHeartbeat("alive", 0);
  EXPECT_EQ(svc->run_once(*s_).done, 0);
  clock_->advance(30);
  EXPECT_EQ(svc->run_once(*s_).done, 1);
  json live = json::parse(s_->WorkerList(3600));
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0]["id"], "alive");
  EXPECT_EQ(counts_.workers_pruned.load(), 1);
}

TEST(MaintenanceSettings, EveryServiceRefusesABadSettingByName) {
  MaintenanceCounts c;
  auto refused = [](auto make, const std::string& words) {
    try {
      make();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "accepted; expected: " << words;
  };
  refused([&] { make_scheduler({0, 1000}, c); }, "scheduler: interval_seconds must be > 0");
  refused([&] { make_scheduler({1, 0}, c); }, "scheduler: batch must be > 0");
  refused([&] { make_dependencies({-1, 10}, c); }, "dependencies: interval_seconds");
  refused([&] { make_cron({std::nan("")}, c); }, "cron: interval_seconds must be > 0 (got nan)");
  refused([&] { make_aging({5, 0, 10}, c); }, "aging: seconds_per_point must be > 0");
  refused([&] { make_rescuer({5, 500, 0}, c); }, "rescuer: default_max_attempts");
  refused([&] { make_expirer({5, -3}, c); }, "expirer: batch");
  refused([&] { make_registry({5, 0}, c); }, "registry: dead_after_seconds");
  refused([&] { make_vacuum({1, 0}, c); }, "vacuum: dead_rows must be > 0");
  PrunerOptions p;
  p.prune.failure_ttl_seconds = -1;
  refused([&] { make_pruner(p, c); }, "pruner: failure_ttl_seconds must be >= 0");
  MaintenanceOptions m;
  m.rescue_interval_seconds = 0;
  refused([&] { Maintenance refused_here(m); }, "interval_seconds must be > 0");
}

TEST(MaintenanceSettings, AgingAndVacuumAreServicesOnlyWhenTheyAreOn) {
  MaintenanceCounts c;
  MaintenanceOptions m;
  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& s : maintenance_services(m, c)) out.emplace_back(s->name());
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(), (V{"scheduler", "dependencies", "cron", "aging", "rescuer", "expirer",
                        "registry", "pruner", "vacuum"}));
  m.priority_aging_seconds = 0;
  m.vacuum_dead_rows = 0;
  EXPECT_EQ(names(),
            (V{"scheduler", "dependencies", "cron", "rescuer", "expirer", "registry", "pruner"}));
}

TEST_F(Services, OneLeaderRunsTheServicesAndASuccessorTakesOverWhenItStops) {
  // Real time here: the leader loop runs on the steady clock. Short intervals keep it quick.
  memory_store_use_clock(url_, std::shared_ptr<const Clock>(&Clock::system(), [](const Clock*) {}));
  auto options = [&](const std::string& id) {
    MaintenanceOptions o;
    o.database_url = url_;
    o.worker_id = id;
    o.poll_interval_seconds = 0.05;
    o.rescue_interval_seconds = 0.05;
    o.election_interval_seconds = 0.1;
    return o;
  };
  auto a = std::make_unique<Maintenance>(options("a"));
  Maintenance b(options("b"));
  a->start();
  ASSERT_TRUE(jrtest::wait_until([&] { return a->counts().leader.load(); }, kWait))
      << "the first runner is elected";
  b.start();
  int64_t id = insert([](JobInsertParams& p) { p.delay_seconds = 0.2; });
  ASSERT_TRUE(jrtest::wait_until([&] { return state(id) == "available"; }, kWait))
      << "the leader's scheduler promotes the due job";
  EXPECT_EQ(a->counts().promoted.load(), 1);
  EXPECT_FALSE(b.counts().leader.load()) << "one leader at a time";
  a->stop();  // resigns
  ASSERT_TRUE(jrtest::wait_until([&] { return b.counts().leader.load(); }, kWait))
      << "the other runner takes over";
  int64_t next = insert([](JobInsertParams& p) { p.delay_seconds = 0.2; });
  ASSERT_TRUE(jrtest::wait_until([&] { return state(next) == "available"; }, kWait));
  EXPECT_EQ(b.counts().promoted.load(), 1);
  b.stop();
}

}  // namespace
}  // namespace jr
