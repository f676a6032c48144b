// Finalizers (migration 10, docs/writing-a-plugin.md): a kind may name a finalizer kind; every
// job of it that ends discarded or cancelled, on any path the store has, gets exactly one
// finalizer job in the same transaction. Against a real PostgreSQL through the Store, one path
// per test; and the manifest rules (resolve_finalizers) on descriptors built here.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

namespace jr {
namespace {

using jrtest::PgCluster;
using nlohmann::json;

class FinalizerStore : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = PgCluster::get().create_database("fin");
    store_ = Store::open(url_);
    store_->SchemaMigrate();
    KindDefaults k{"k", "p", std::nullopt, std::nullopt, std::nullopt, std::nullopt};
    k.finalizer = "k_fin";
    KindDefaults fin{"k_fin", "p", std::string("fin_q"), std::nullopt, std::nullopt, std::nullopt};
    KindDefaults plain{"plain", "p", std::nullopt, std::nullopt, std::nullopt, std::nullopt};
    store_->KindDefaultsUpsert({k, fin, plain});
  }
  std::string q(const std::string& sql) { return PgCluster::query_one(url_, sql); }
  int64_t insert(const std::string& kind, const std::string& payload = R"({"n": 1})",
                 int max_attempts = 3) {
    JobInsertParams p;
    p.kind = kind;
    p.payload = payload;
    p.priority = 4;
    p.max_attempts = max_attempts;
    return store_->JobInsert(p);
  }
  ClaimedJob claim_one(const std::string& kind, double lease_seconds = 30) {
    JobClaimParams p;
    p.worker_id = "w";
    p.kinds = {kind};
    p.lease_seconds = lease_seconds;
    auto got = store_->JobClaim(p);
    EXPECT_EQ(got.size(), 1u);
    return got.empty() ? ClaimedJob{} : got[0];
  }
  void finish(const ClaimedJob& j, Outcome o, const std::string& kind, const std::string& msg) {
    auto r = store_->JobFinishMany("w", {{j.id, j.attempt, o, "", kind, msg, 0, j.kind}});
    EXPECT_TRUE(r.rejected.empty());
  }
  // The finalizer jobs for `job_id` (as JSON rows).
  std::vector<json> finalizers(int64_t job_id) {
    json rows = json::parse(
        q("SELECT coalesce(json_agg(row_to_json(j) ORDER BY j.id), '[]') FROM (SELECT id, kind, "
          "queue, payload, priority, unique_key, state FROM jr_jobs WHERE kind = 'k_fin' AND "
          "(payload->>'job_id')::bigint = " +
          std::to_string(job_id) + ") j"));
    return std::vector<json>(rows.begin(), rows.end());
  }
  // Asserts one finalizer for `job_id` and returns its payload.
  json the_finalizer(int64_t job_id) {
    auto f = finalizers(job_id);
    EXPECT_EQ(f.size(), 1u) << json(f).dump();
    if (f.empty()) return json::object();
    EXPECT_EQ(f[0]["kind"], "k_fin");
    EXPECT_EQ(f[0]["queue"], "fin_q");  // the finalizer kind's default queue
    EXPECT_EQ(f[0]["state"], "available");
    EXPECT_EQ(f[0]["unique_key"], "jr:finalize:" + std::to_string(job_id));
    return f[0]["payload"];
  }

  std::string url_;
  std::unique_ptr<Store> store_;
};

TEST_F(FinalizerStore, PermanentErrorDeadLetterGetsOneWithTheJobsPayloadAndError) {
  int64_t id = insert("k", R"({"scan_id": "s-1", "url": "http://a.example/"})");
  finish(claim_one("k"), Outcome::discard, "permanent", "ERROR_CRAWL: HTTP 404");
  json p = the_finalizer(id);
  EXPECT_EQ(p, json({{"job_id", id},
                     {"kind", "k"},
                     {"state", "discarded"},
                     {"error_kind", "permanent"},
                     {"error", "ERROR_CRAWL: HTTP 404"},
                     {"payload", {{"scan_id", "s-1"}, {"url", "http://a.example/"}}}}));
  EXPECT_EQ(q("SELECT priority FROM jr_jobs WHERE kind = 'k_fin'"), "4");
}

TEST_F(FinalizerStore, AttemptsExhaustedByHostErrorKindsGetOne) {
  // The engine turns a timeout, crash, seccomp kill or OOM on the last attempt into a discard
  // with that error kind; the store records it through the same path.
  for (const char* kind : {"timeout", "crash", "seccomp", "oom", "error"}) {
    SCOPED_TRACE(kind);
    int64_t id = insert("k", "{}", 1);
    finish(claim_one("k"), Outcome::discard, kind, std::string(kind) + " (attempt 1 of 1)");
    json p = the_finalizer(id);
    EXPECT_EQ(p["error_kind"], kind);
    EXPECT_EQ(p["state"], "discarded");
  }
}

TEST_F(FinalizerStore, CancelledWhileRunningGetsOne) {
  int64_t id = insert("k");
  finish(claim_one("k"), Outcome::cancelled, "cancelled", "cancelled on request");
  json p = the_finalizer(id);
  EXPECT_EQ(p["state"], "cancelled");
  EXPECT_EQ(p["error_kind"], "cancelled");
}

TEST_F(FinalizerStore, CancelledBeforeItRanGetsOne) {
  int64_t id = insert("k");
  EXPECT_EQ(store_->JobCancel(id), CancelResult::cancelled);
  json p = the_finalizer(id);
  EXPECT_EQ(p["state"], "cancelled");
  EXPECT_EQ(p["error"], "cancelled on request before it ran");
}

TEST_F(FinalizerStore, LostLeaseRescuedIntoTheDeadLetterQueueGetsOne) {
  int64_t id = insert("k", "{}", 1);
  claim_one("k", 0.2);
  int rescued = 0;
  ASSERT_TRUE(jrtest::wait_until(
      [&] { return (rescued += store_->JobRescueExpired(10, 25).discarded) == 1; },
      std::chrono::seconds(10)));
  json p = the_finalizer(id);
  EXPECT_EQ(p["state"], "discarded");
  EXPECT_EQ(p["error_kind"], "lease_lost");
}

TEST_F(FinalizerStore, ExpiredBeforeItStartedGetsOne) {
  JobInsertParams jp;
  jp.kind = "k";
  jp.ttl_seconds = 0.05;
  int64_t id = store_->JobInsert(jp);
  int expired = 0;
  ASSERT_TRUE(jrtest::wait_until([&] { return (expired += store_->JobExpireTtl(10)) == 1; },
                                 std::chrono::seconds(10)));
  json p = the_finalizer(id);
  EXPECT_EQ(p["state"], "cancelled");
  EXPECT_EQ(p["error_kind"], "expired");
}

TEST_F(FinalizerStore, CancelledBecauseAParentFailedGetsOne) {
  int64_t parent = insert("plain");
  JobInsertParams child;
  child.kind = "k";
  child.depends_on = {parent};
  int64_t id = store_->JobInsert(child);
  finish(claim_one("plain"), Outcome::discard, "permanent", "no");
  EXPECT_EQ(store_->JobResolveDependencies(100), (std::pair<int, int>{0, 1}));
  json p = the_finalizer(id);
  EXPECT_EQ(p["state"], "cancelled");
  EXPECT_EQ(p["error_kind"], "dependency");
  EXPECT_TRUE(finalizers(parent).empty());  // "plain" declares no finalizer
}

TEST_F(FinalizerStore, CompletedRetriedAndSnoozedJobsGetNone) {
  int64_t done = insert("k");
  finish(claim_one("k"), Outcome::completed, "", "");
  int64_t retried = insert("k");
  finish(claim_one("k"), Outcome::retry, "error", "again");
  EXPECT_TRUE(finalizers(done).empty());
  EXPECT_TRUE(finalizers(retried).empty());
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs WHERE kind = 'k_fin'"), "0");
}

TEST_F(FinalizerStore, ExactlyOncePerFinishEvenWhenARevivedJobFailsAgain) {
  int64_t id = insert("k", "{}", 1);
  finish(claim_one("k"), Outcome::discard, "permanent", "first");
  ASSERT_EQ(finalizers(id).size(), 1u);
  // Revived from the dead letter queue and failing again before its finalizer ran: still one.
  ASSERT_TRUE(store_->JobRetry(id));
  finish(claim_one("k"), Outcome::discard, "permanent", "second");
  auto f = finalizers(id);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["payload"]["error"], "first");
  // Once that finalizer has finished, a later failure of the revived job gets its own.
  ClaimedJob fin = claim_one("k_fin");
  finish(fin, Outcome::completed, "", "");
  ASSERT_TRUE(store_->JobRetry(id));
  finish(claim_one("k"), Outcome::discard, "permanent", "third");
  f = finalizers(id);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0]["payload"]["error"], "third");
}

TEST_F(FinalizerStore, ABatchOfOutcomesGetsOnePerFailedJobInTheSameTransaction) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(insert("k"));
  JobClaimParams cp;
  cp.worker_id = "w";
  cp.kinds = {"k"};
  cp.limit = 6;
  auto jobs = store_->JobClaim(cp);
  ASSERT_EQ(jobs.size(), 6u);
  std::vector<JobFinish> batch;
  for (size_t i = 0; i < jobs.size(); ++i) {
    Outcome o = i % 3 == 0   ? Outcome::completed
                : i % 3 == 1 ? Outcome::discard
                             : Outcome::cancelled;
    batch.push_back({jobs[i].id, jobs[i].attempt, o, "",
                     o == Outcome::discard ? "timeout" : "cancelled", "x", 0, "k"});
  }
  EXPECT_TRUE(store_->JobFinishMany("w", batch).rejected.empty());
  EXPECT_EQ(q("SELECT count(*) FROM jr_jobs WHERE kind = 'k_fin'"), "4");
  EXPECT_EQ(q("SELECT count(DISTINCT payload->>'job_id') FROM jr_jobs WHERE kind = 'k_fin'"), "4");
}

TEST_F(FinalizerStore, TheMappingIsPublishedWithTheKindDefaultsAndCanBeRemoved) {
  EXPECT_EQ(q("SELECT finalizer FROM jr_kinds WHERE kind = 'k'"), "k_fin");
  store_->KindDefaultsUpsert({{"k", "p", std::nullopt, std::nullopt, std::nullopt, std::nullopt}});
  EXPECT_EQ(q("SELECT finalizer IS NULL FROM jr_kinds WHERE kind = 'k'"), "t");
  int64_t id = insert("k");
  finish(claim_one("k"), Outcome::discard, "permanent", "no");
  EXPECT_TRUE(finalizers(id).empty());
}

LoadedPlugin plugin_with(const json& manifest) {
  LoadedPlugin p;
  p.path = "libscan.so";
  p.name = "scan";
  for (const char* k : {"scan", "scan_finalize", "cleanup"}) {
    KindInfo ki;
    ki.kind = k;
    p.kinds.push_back(ki);
  }
  p.manifest = manifest;
  return p;
}

TEST(FinalizerManifest, AKindNamesAFinalizerOfTheSamePlugin) {
  LoadedPlugin p = plugin_with({{"finalizers", {{"scan", "scan_finalize"}}}});
  resolve_finalizers(p);
  EXPECT_EQ(p.kinds[0].finalizer, "scan_finalize");
  EXPECT_EQ(p.kinds[1].finalizer, "");
  LoadedPlugin none = plugin_with(json::object());
  resolve_finalizers(none);
  EXPECT_EQ(none.kinds[0].finalizer, "");
}

TEST(FinalizerManifest, BadMappingsAreRefusedNamingTheProblem) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json::array({"scan"}), "must be an object"},
      {{{"mail", "scan_finalize"}}, "'mail' is not one of this plugin's kinds"},
      {{{"scan", 7}}, "the finalizer of 'scan' must be a kind name"},
      {{{"scan", "other_plugins_kind"}}, "'other_plugins_kind', is not one of this plugin's kinds"},
      {{{"scan", "scan"}}, "'scan' cannot be its own finalizer"},
      {{{"scan", "scan_finalize"}, {"scan_finalize", "cleanup"}},
       "the finalizer kind 'scan_finalize' has a finalizer of its own"},
  };
  for (const auto& [fin, why] : cases) {
    LoadedPlugin p = plugin_with({{"finalizers", fin}});
    try {
      resolve_finalizers(p);
      ADD_FAILURE() << "accepted " << fin.dump();
    } catch (const PluginError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find("plugin libscan.so: manifest \"finalizers\": "), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace jr
