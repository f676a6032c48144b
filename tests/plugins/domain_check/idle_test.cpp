// The idle recheck: stale domains are re-enqueued in batches, exactly once, even when two
// runners (two PluginHost instances on one database) call idle() at the same time.
#include <jobrunner/abi.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <map>
#include <set>

#include "test_env.hpp"

namespace {

using jrtest::PgCluster;
using nlohmann::json;

// Two hosts meet inside their first enqueue of a round: each waits there (holding its row locks)
// until the other is inside enqueue too, or has finished its idle call without enqueuing.
struct Rendezvous {
  std::mutex mu;
  std::condition_variable cv;
  int state[2] = {0, 0};  // 0 running, 1 inside enqueue, 2 idle() returned
  bool overlapped = false;

  void reset() {
    std::lock_guard<std::mutex> lock(mu);
    state[0] = state[1] = 0;
  }
  void set(int who, int s) {
    std::lock_guard<std::mutex> lock(mu);
    state[who] = s;
    cv.notify_all();
  }
  void meet(int who) {
    std::unique_lock<std::mutex> lock(mu);
    if (state[who] != 0) return;  // only the first enqueue of the round waits
    state[who] = 1;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(5), [&] { return state[1 - who] != 0; });
    if (state[1 - who] == 1) overlapped = true;
  }
};

class MeetingHost : public jrtest::PluginHost {
 public:
  MeetingHost(const json& cfg, Rendezvous& r, int who)
      : PluginHost(dctest::so_path(), cfg), r_(r), who_(who) {}
  int64_t job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                      std::string_view options) override {
    r_.meet(who_);
    return PluginHost::job_enqueue(ctx, kind, payload, options);
  }

 private:
  Rendezvous& r_;
  int who_;
};

void seed(const std::string& db, const std::string& prefix, int n, const std::string& age,
          const std::string& enqueued_age = "") {
  PgCluster::exec(
      db,
      "INSERT INTO domains (name, status, method, checked_at, recheck_enqueued_at) "
      "SELECT '" +
          prefix + "' || i || '.test', 'available', 'whois', now() - interval '" + age + "', " +
          (enqueued_age.empty() ? std::string("NULL") : "now() - interval '" + enqueued_age + "'") +
          " FROM generate_series(1, " + std::to_string(n) + ") i");
}

std::vector<std::string> names_of(const std::vector<jrtest::Enqueued>& jobs) {
  std::vector<std::string> out;
  for (const auto& j : jobs) {
    EXPECT_EQ(j.kind, "domain_check");
    EXPECT_LE(j.payload["domains"].size(), 50u);
    for (const auto& n : j.payload["domains"]) out.push_back(n.get<std::string>());
  }
  return out;
}

TEST(DomainCheckIdle, TwoRunnersEnqueueExactlyTheStaleDomainsOnce) {
  std::string db = dctest::plugin_db("dcidle");
  json cfg = dctest::config(db);
  cfg["recheck_max_batches"] = 1;  // 50 per call: both runners get a share of each round
  Rendezvous r;
  MeetingHost a(cfg, r, 0);
  MeetingHost b(cfg, r, 1);
  EXPECT_EQ(a.idle(), 0);  // creates the table; nothing stale yet
  seed(db, "stale", 120, "10 days");
  seed(db, "fresh", 30, "1 day");
  seed(db, "pending", 10, "10 days", "1 hour");  // a recheck job is already queued
  seed(db, "lost", 5, "20 days", "8 days");      // its recheck job never ran: eligible again
  std::set<std::string> expected;
  for (int i = 1; i <= 120; ++i) expected.insert("stale" + std::to_string(i) + ".test");
  for (int i = 1; i <= 5; ++i) expected.insert("lost" + std::to_string(i) + ".test");

  int jobs = 0;
  for (int round = 0; round < 10; ++round) {
    r.reset();
    auto run = [&r](MeetingHost& h, int who) {
      int n = h.idle();
      r.set(who, 2);
      return n;
    };
    auto fa = std::async(std::launch::async, run, std::ref(a), 0);
    auto fb = std::async(std::launch::async, run, std::ref(b), 1);
    int na = fa.get(), nb = fb.get();
    ASSERT_GE(na, 0);
    ASSERT_GE(nb, 0);
    jobs += na + nb;
    if (na + nb == 0) break;
  }
  EXPECT_TRUE(r.overlapped) << "the two idle calls never held their rows at the same time";
  std::vector<std::string> all = names_of(a.enqueued());
  std::vector<std::string> from_b = names_of(b.enqueued());
  EXPECT_FALSE(all.empty());
  EXPECT_FALSE(from_b.empty());
  all.insert(all.end(), from_b.begin(), from_b.end());
  EXPECT_EQ(all.size(), expected.size()) << "a domain was enqueued twice or missed";
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()), expected);
  EXPECT_EQ(jobs, static_cast<int>(a.enqueued().size() + b.enqueued().size()));
  // 50 + 50 + 25, unless both runners' selects interleave on the last 25 and split them.
  EXPECT_GE(jobs, 3);
  EXPECT_LE(jobs, 4);

  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT count(*) FROM domains WHERE recheck_enqueued_at > "
                                 "now() - interval '1 minute'"),
            "125");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT count(*) FROM domains WHERE name LIKE 'fresh%' "
                                 "AND recheck_enqueued_at IS NULL"),
            "30");

  // Running an enqueued recheck job refreshes its domains and clears their mark.
  jrtest::Enqueued job = a.enqueued().front();
  jrtest::JobOutcome out = a.run("domain_check", job.payload.dump());
  ASSERT_EQ(out.status, JR_OK) << out.error;
  std::string first = job.payload["domains"][0].get<std::string>();
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT (checked_at > now() - interval '1 minute')::text || "
                                 "(recheck_enqueued_at IS NULL)::text FROM domains WHERE "
                                 "name = '" +
                                     first + "'"),
            "truetrue");
}

TEST(DomainCheckIdle, DefaultBatchingAndDisabledRecheck) {
  std::string db = dctest::plugin_db("dcidle");
  jrtest::PluginHost host(dctest::so_path(), dctest::config(db));
  EXPECT_EQ(host.idle(), 0);
  seed(db, "old", 120, "8 days");
  seed(db, "new", 10, "6 days");

  json off_cfg = dctest::config(db);
  off_cfg["enable_idle_recheck"] = false;
  jrtest::PluginHost off(dctest::so_path(), off_cfg);
  EXPECT_EQ(off.idle(), 0);
  EXPECT_TRUE(off.enqueued().empty());

  EXPECT_EQ(host.idle(), 3);
  auto jobs = host.enqueued();
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].payload["domains"].size(), 50u);
  EXPECT_EQ(jobs[1].payload["domains"].size(), 50u);
  EXPECT_EQ(jobs[2].payload["domains"].size(), 20u);
  EXPECT_EQ(host.idle(), 0);  // marked: not enqueued again

  // A shorter interval makes the 6-day-old ones stale too.
  json short_cfg = dctest::config(db);
  short_cfg["recheck_interval_days"] = 5;
  jrtest::PluginHost eager(dctest::so_path(), short_cfg);
  EXPECT_EQ(eager.idle(), 1);
  EXPECT_EQ(eager.enqueued().at(0).payload["domains"].size(), 10u);
}

}  // namespace
