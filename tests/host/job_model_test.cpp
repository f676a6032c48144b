// The job model for real applications (issue 23, docs/job-model.md), end to end against real
// PostgreSQL and the real runner binary: uniqueness over a period and states, replace and
// debounce, each under concurrent enqueues from the three ways in (the Store the CLI, API and
// plugins use, SQL jr_enqueue(), and `runner enqueue`).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "job_options.hpp"
#include "runner_fixture.hpp"
#include "store.hpp"

namespace {

using jrtest::echo_so;
using jrtest::RunnerProcess;
using jrtest::wait_until;
using namespace std::chrono_literals;

class JobModel : public jrtest::RunnerFixture {
 protected:
  // One enqueue through the Store (the path of the CLI, the HTTP API and the plugin host
  // function: options parsed by ops::job_from_parts).
  static jr::JobInsertResult via_store(jr::Store& st, const std::string& payload,
                                       const nlohmann::json& options) {
    return st.JobInsertEx(jr::ops::job_from_parts("echo", nlohmann::json::parse(payload), options));
  }
  // One enqueue through SQL, in its own transaction.
  static int64_t via_sql(pqxx::connection& c, const std::string& payload,
                         const nlohmann::json& options) {
    pqxx::work tx(c);
    auto id = tx.exec("SELECT jr_enqueue('echo', " + tx.quote(payload) + ", " +
                      tx.quote(options.dump()) + ")")[0][0]
                  .as<int64_t>();
    tx.commit();
    return id;
  }
  int64_t jobs_with_key(const std::string& key) {
    return count("SELECT count(*) FROM jr_jobs_all WHERE options->>'unique_key' = '" + key + "'");
  }
  double db_now() { return std::stod(q("SELECT extract(epoch FROM clock_timestamp())")); }
  double epoch_of(int64_t id, const std::string& col) {
    return std::stod(q("SELECT extract(epoch FROM " + col +
                       ") FROM jr_jobs_all WHERE id = " + std::to_string(id)));
  }
};

// 1,000 enqueues of one key with unique_for_seconds = 1 h from 10 threads (Store and SQL
// alternating), half of them after the first job completed: one job. A plain `unique` key
// (live jobs only) gets a second job after completion, so the period is what holds it.
TEST_F(JobModel, UniqueForOneHourGivesOneJobAcrossAThousandConcurrentEnqueues) {
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "100ms"},
                       env_);
  const nlohmann::json opts = {{"unique_key", "report:42"}, {"unique_for_seconds", 3600}};
  std::mutex mu;
  std::set<int64_t> ids;
  std::atomic<int> inserted{0}, failures{0};
  auto phase = [&](int per_thread) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 10; ++t) {
      threads.emplace_back([&, t] {
        try {
          auto st = jr::Store::open(url_);
          pqxx::connection c(url_);
          for (int i = 0; i < per_thread; ++i) {
            int64_t id;
            if ((t + i) % 2 == 0) {
              auto r = via_store(*st, R"({"n": 1})", opts);
              id = r.id;
              if (r.inserted) ++inserted;
            } else {
              id = via_sql(c, R"({"n": 1})", opts);
            }
            std::lock_guard<std::mutex> lock(mu);
            ids.insert(id);
          }
        } catch (const std::exception& e) {
          ++failures;
          ADD_FAILURE() << e.what();
        }
      });
    }
    for (auto& th : threads) th.join();
  };
  phase(50);
  ASSERT_EQ(ids.size(), 1u);
  int64_t id = *ids.begin();
  ASSERT_TRUE(wait_state(id, "completed", 30s)) << runner.log();
  phase(50);  // the other 500, all after the first completed
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(jobs_with_key("report:42"), 1);
  // The CLI says the same.
  EXPECT_EQ(enqueue({"enqueue", "echo", "--payload", R"({"n": 2})", "--unique-key", "report:42",
                     "--unique-for", "1h"}),
            id);
  // SQL counted too: exactly one insert among the Store's 500 or SQL's 500.
  EXPECT_LE(inserted.load(), 1);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 1);
  // Control: the live-only key gets a new job once its first one completed.
  int64_t live = enqueue({"enqueue", "echo", "--payload", "{}", "--unique-key", "live:1"});
  ASSERT_TRUE(wait_state(live, "completed", 30s)) << runner.log();
  EXPECT_NE(enqueue({"enqueue", "echo", "--payload", "{}", "--unique-key", "live:1"}), live);
}

// The period ends: after it a new job is enqueued. unique_states decides which states block:
// without "completed", a completed job does not; a discarded job never does by default.
TEST_F(JobModel, UniqueForPeriodEndsAndStatesChooseWhatBlocks) {
  auto st = jr::Store::open(url_);
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "100ms"},
                       env_);
  auto a = via_store(*st, "{}", {{"unique_key", "p"}, {"unique_for_seconds", 1}});
  ASSERT_TRUE(a.inserted);
  EXPECT_EQ(via_store(*st, "{}", {{"unique_key", "p"}, {"unique_for_seconds", 1}}).id, a.id);
  ASSERT_TRUE(wait_until([&] { return db_now() > epoch_of(a.id, "created_at") + 1.05; }, 5s));
  auto b = via_store(*st, "{}", {{"unique_key", "p"}, {"unique_for_seconds", 1}});
  EXPECT_TRUE(b.inserted);
  EXPECT_NE(b.id, a.id);

  // States: only pending ones block; a completed job lets the next one in.
  nlohmann::json pending = {{"unique_key", "s"},
                            {"unique_for_seconds", 3600},
                            {"unique_states", {"available", "scheduled"}}};
  auto c = via_store(*st, "{}", pending);
  ASSERT_TRUE(wait_state(c.id, "completed", 30s)) << runner.log();
  auto d = via_store(*st, "{}", pending);
  EXPECT_TRUE(d.inserted);
  // Default states (with a period): a discarded job does not block, a completed one does.
  auto e = via_store(*st, R"({"fail": "permanent"})", {{"unique_for_seconds", 3600}});
  ASSERT_TRUE(wait_state(e.id, "discarded", 30s)) << runner.log();
  auto f = via_store(*st, R"({"fail": "permanent"})", {{"unique_for_seconds", 3600}});
  EXPECT_TRUE(f.inserted) << "a discarded job blocks only when unique_states names it";
  ASSERT_TRUE(wait_state(f.id, "discarded", 30s));
  auto g = via_store(*st, R"({"fail": "permanent"})",
                     {{"unique_for_seconds", 3600}, {"unique_states", {"discarded"}}});
  EXPECT_FALSE(g.inserted);
  EXPECT_EQ(g.id, f.id) << "the newest holder is the answer";
}

// --replace from 8 threads: one job, 1 insert and 199 replacements, and the payload of the last
// enqueue wins. A running holder is left alone: the next enqueue makes a successor, which the
// one after replaces.
TEST_F(JobModel, ReplaceUpdatesThePendingJobUnderConcurrency) {
  std::atomic<int> inserted{0}, replaced{0};
  std::vector<std::thread> threads;
  const nlohmann::json opts = {
      {"unique_key", "sync:7"}, {"replace", true}, {"delay_seconds", 3600}};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto st = jr::Store::open(url_);
      pqxx::connection c(url_);
      for (int i = 0; i < 25; ++i) {
        std::string payload =
            R"({"t": )" + std::to_string(t) + R"(, "i": )" + std::to_string(i) + "}";
        if (i % 2 == 0) {
          auto r = via_store(*st, payload, opts);
          if (r.inserted) ++inserted;
          if (r.replaced) ++replaced;
        } else {
          via_sql(c, payload, opts);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(jobs_with_key("sync:7"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs"), 1);
  EXPECT_LE(inserted.load(), 1);
  EXPECT_GE(replaced.load(), 8 * 13 - 1);  // every Store enqueue but maybe the first
  auto st = jr::Store::open(url_);
  auto last = via_store(*st, R"({"final": true})",
                        {{"unique_key", "sync:7"}, {"replace", true}, {"delay_seconds", 60}});
  EXPECT_TRUE(last.replaced);
  EXPECT_EQ(q("SELECT payload::text FROM jr_jobs WHERE id = " + std::to_string(last.id)),
            R"({"final": true})");
  double run_at = epoch_of(last.id, "run_at");
  EXPECT_NEAR(run_at - db_now(), 60, 5) << "the run time follows the last enqueue too";
  EXPECT_EQ(q("SELECT state FROM jr_jobs WHERE id = " + std::to_string(last.id)), "scheduled");

  // A running holder: the next enqueue makes a successor, the one after replaces it.
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "100ms"},
                       env_);
  const nlohmann::json now_opts = {{"unique_key", "sync:8"}, {"replace", true}};
  auto first = via_store(*st, R"({"sleep_ms": 1500, "n": 1})", now_opts);
  ASSERT_TRUE(wait_state(first.id, "running", 30s)) << runner.log();
  auto second = via_store(*st, R"({"n": 2})", now_opts);
  EXPECT_TRUE(second.inserted);
  EXPECT_NE(second.id, first.id);
  // (It may already be running: then the third is a successor again, never lost.)
  auto third = via_store(*st, R"({"n": 3})", now_opts);
  for (int64_t id : {first.id, second.id, third.id}) {
    ASSERT_TRUE(wait_state(id, "completed", 30s)) << runner.log();
  }
  EXPECT_EQ(q("SELECT result->>'n' FROM jr_jobs_done ORDER BY id DESC LIMIT 1"), "3");
}

// --debounce 1s from 4 threads enqueueing every 50 ms for 3 s: one job, which starts no sooner
// than 1 s after the last enqueue. With --debounce-max 2s and enqueues that never stop, the job
// starts 2 s after the first enqueue anyway.
TEST_F(JobModel, DebouncePushesTheRunTimeBackUpToTheMaximum) {
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "100ms"},
                       env_);
  // The start of the latest enqueue call (Unix seconds; the database runs on this machine's
  // clock): that enqueue reached the database no earlier, so a debounced job may start no
  // sooner than this plus the debounce.
  double last_call_start = 0;
  auto burst = [&](const nlohmann::json& opts, std::chrono::milliseconds length,
                   std::set<int64_t>& ids) {
    std::mutex mu;
    std::vector<std::thread> threads;
    auto until = std::chrono::steady_clock::now() + length;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        auto st = jr::Store::open(url_);
        pqxx::connection c(url_);
        for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
          double t0 =
              std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                  .count();
          int64_t id = (t % 2 == 0) ? via_store(*st, R"({"k": 1})", opts).id
                                    : via_sql(c, R"({"k": 1})", opts);
          {
            std::lock_guard<std::mutex> lock(mu);
            ids.insert(id);
            last_call_start = std::max(last_call_start, t0);
          }
          std::this_thread::sleep_for(50ms);
        }
      });
    }
    for (auto& th : threads) th.join();
  };
  std::set<int64_t> ids;
  burst({{"debounce_seconds", 1}, {"debounce_max_seconds", 30}}, 3s, ids);
  double last_enqueue = db_now();
  ASSERT_EQ(ids.size(), 1u);
  int64_t id = *ids.begin();
  {
    // Still waiting right after the burst, unless this machine took longer than the debounce
    // to get here (a loaded sanitizer run did): then the debounce must have elapsed by now.
    std::string st =
        q("SELECT coalesce((SELECT state FROM jr_jobs WHERE id = " + std::to_string(id) +
          "), 'moved') || ' ' || extract(epoch FROM now())");
    std::string state = st.substr(0, st.find(' '));
    double at = std::stod(st.substr(st.find(' ') + 1));
    if (state != "scheduled") {
      EXPECT_GE(at, last_call_start + 0.9) << st;
    }
  }
  ASSERT_TRUE(wait_state(id, "completed", 30s)) << runner.log();
  double started = epoch_of(id, "started_at");
  EXPECT_GE(started, last_call_start + 0.9);
  EXPECT_LT(started, last_enqueue + 3.0);

  std::set<int64_t> capped;
  const nlohmann::json cap = {
      {"unique_key", "cap"}, {"debounce_seconds", 1}, {"debounce_max_seconds", 2}};
  burst(cap, 4500ms, capped);
  ASSERT_GE(capped.size(), 2u) << "enqueues after the capped job started make a successor";
  int64_t first = *capped.begin();
  ASSERT_TRUE(wait_state(first, "completed", 30s)) << runner.log();
  double waited = epoch_of(first, "started_at") - epoch_of(first, "created_at");
  EXPECT_GE(waited, 1.9);
  EXPECT_LT(waited, 3.0);
  for (int64_t c : capped) EXPECT_TRUE(wait_state(c, "completed", 30s));
}

// Per-tenant rate limits: `runner limit set --key 'tenant:*' --rate 10` and two tenants
// flooding one queue (--rate-key): each gets its own 10 jobs/s (within 10 % over 10 s), though
// all of one tenant's jobs were enqueued first, and jobs without a rate key are not held back.
TEST_F(JobModel, TwoTenantsOnOneQueueEachGetTheirOwnRate) {
  auto set = jrtest::run_runner({"limit", "set", "--key", "tenant:*", "--rate", "10"}, env_);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto a = enqueue_many("echo", 400, "{}", {"--rate-key", "tenant:a"});
  auto b = enqueue_many("echo", 400, "{}", {"--rate-key", "tenant:b"});
  auto plain = enqueue_many("echo", 100, R"({"plain": 1})");
  ASSERT_EQ(a.size() + b.size() + plain.size(), 900u);
  RunnerProcess runner(
      {"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "50ms", "--concurrency", "8"},
      env_);
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM jr_jobs_done WHERE payload ? 'plain'") == 100; },
      20s))
      << runner.log();
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs_done") >= 100; }, 20s));
  double t0 = std::stod(
      q("SELECT extract(epoch FROM min(started_at)) FROM jr_jobs_all WHERE options ? 'rate_key'"));
  ASSERT_TRUE(wait_until([&] { return db_now() > t0 + 11.5; }, 30s));
  auto started = [&](const std::string& key) {
    return count("SELECT count(*) FROM jr_jobs_all WHERE options->>'rate_key' = '" + key +
                 "' AND started_at >= to_timestamp(" + std::to_string(t0 + 1) +
                 ") AND started_at < to_timestamp(" + std::to_string(t0 + 11) + ")");
  };
  int64_t na = started("tenant:a"), nb = started("tenant:b");
  std::printf("per-tenant rate over 10 s: tenant:a %lld jobs, tenant:b %lld jobs (limit 10/s)\n",
              static_cast<long long>(na), static_cast<long long>(nb));
  EXPECT_GE(na, 90);
  EXPECT_LE(na, 110);
  EXPECT_GE(nb, 90);
  EXPECT_LE(nb, 110);
  // Each key got its own bucket, made from the pattern.
  EXPECT_EQ(q("SELECT string_agg(key || '<' || pattern, ',' ORDER BY key) FROM jr_rate_limits "
              "WHERE pattern IS NOT NULL"),
            "tenant:a<tenant:*,tenant:b<tenant:*");
  // Changing the pattern changes the buckets made from it; removing it removes them.
  ASSERT_EQ(
      jrtest::run_runner({"limit", "set", "--key", "tenant:*", "--rate", "1000"}, env_).exit_code,
      0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_rate_limits WHERE rate = 1000"), 3);
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs") == 0; }, 20s))
      << "the rest runs at the new rate";
  ASSERT_EQ(jrtest::run_runner({"limit", "rm", "--key", "tenant:*"}, env_).exit_code, 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_rate_limits"), 0);
}

// Issue 23: the rate key taken from a payload field named for the kind, by every way in (CLI,
// SQL), an explicit key winning, bad values refused with the field named, and the buckets
// per key made from the pattern as for --rate-key.
TEST_F(JobModel, RateKeyFromAPayloadFieldNamedForTheKind) {
  auto run = [&](std::vector<std::string> args) { return jrtest::run_runner(args, env_); };
  auto key_of = [&](int64_t id) {
    return q("SELECT coalesce(options->>'rate_key', '-') FROM jr_jobs_all WHERE id = " +
             std::to_string(id));
  };
  auto trigger = [&] {
    return count("SELECT count(*) FROM pg_trigger WHERE tgname = 'jr_jobs_rate_key_field'");
  };
  EXPECT_EQ(trigger(), 0) << "no field set: inserts pay for no trigger";
  // Jobs accepted before any field was set, cancelled, to be retried afterwards.
  int64_t old_bad = enqueue({"enqueue", "echo", "--payload", R"({"tenant":{"x":1}})"});
  int64_t old_good = enqueue({"enqueue", "echo", "--payload", R"({"tenant":"g"})"});
  for (int64_t id : {old_bad, old_good}) {
    ASSERT_EQ(run({"cancel", std::to_string(id)}).exit_code, 0);
  }
  // Bad settings: exit 2, with the flag named.
  auto r = run({"limit", "set-field", "--kind", "echo", "--field", "a..b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--field"), std::string::npos) << r.err;
  r = run({"limit", "set-field", "--kind", "echo", "--field", "queue"});
  EXPECT_EQ(r.exit_code, 2) << "the prefix would be queue:";
  EXPECT_NE(r.err.find("--prefix"), std::string::npos) << r.err;
  r = run({"limit", "set-field", "--kind", "echo", "--field", "t", "--prefix", "a b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(count("SELECT count(*) FROM jr_rate_key_fields"), 0);

  r = run({"limit", "set-field", "--kind", "echo", "--field", "tenant"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(trigger(), 1);
  r = run({"limit", "fields", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out),
            nlohmann::json::parse(R"([{"kind":"echo","field":"tenant","prefix":"tenant"}])"));
  EXPECT_EQ(key_of(enqueue({"enqueue", "echo", "--payload", R"({"tenant":42})"})), "tenant:42");
  EXPECT_EQ(key_of(enqueue({"enqueue", "echo", "--payload", R"({"tenant":"acme"})"})),
            "tenant:acme");
  EXPECT_EQ(key_of(enqueue({"enqueue", "echo", "--payload", R"({"other":1})"})), "-")
      << "no such field: no rate key";
  EXPECT_EQ(
      key_of(enqueue({"enqueue", "echo", "--payload", R"({"tenant":7})", "--rate-key", "vip:7"})),
      "vip:7")
      << "an explicit key wins";
  EXPECT_EQ(key_of(std::stoll(q(R"(SELECT jr_enqueue('echo', '{"tenant": "sql"}'))"))),
            "tenant:sql");
  EXPECT_EQ(key_of(std::stoll(q(R"(SELECT jr_enqueue('other', '{"tenant": "x"}'))"))), "-")
      << "only the kinds named";
  // Retried jobs enqueued before the field was set: a usable value makes a key, a bad one none
  // (the retry is not refused).
  ASSERT_EQ(run({"retry", std::to_string(old_bad)}).exit_code, 0);
  ASSERT_EQ(run({"retry", std::to_string(old_good)}).exit_code, 0);
  EXPECT_EQ(key_of(old_bad), "-");
  EXPECT_EQ(key_of(old_good), "tenant:g");
  // jr_enqueue_many() copies its first job's row: each copy still gets its own payload's key.
  std::string many = q(
      R"(SELECT string_agg(m::text, ',') FROM jr_enqueue_many('echo',
           '[{"tenant":"m1"},{"tenant":"m2"},{"x":1}]') m)");
  EXPECT_EQ(q("SELECT string_agg(coalesce(options->>'rate_key', '-'), ',' ORDER BY id) FROM "
              "jr_jobs WHERE id IN (" +
              many + ")"),
            "tenant:m1,tenant:m2,-");
  // A bulk file: every line gets its own key.
  {
    std::string file = dir_.path() + "/tenants.jsonl";
    std::ofstream(file) << R"({"tenant":"a"})"
                        << "\n"
                        << R"({"tenant":"b"})"
                        << "\n";
    r = run({"enqueue", "echo", "--payload-file", file});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::istringstream ids(r.out);
    std::string a, b;
    ids >> a >> b;
    EXPECT_EQ(key_of(std::stoll(a)), "tenant:a");
    EXPECT_EQ(key_of(std::stoll(b)), "tenant:b");
  }
  // Values that cannot make a key: refused (exit 2) with the field named, nothing inserted.
  int64_t before = count("SELECT count(*) FROM jr_jobs_all");
  for (const char* bad : {R"({"tenant":{"id":1}})", R"({"tenant":"a*b"})", R"({"tenant":""})"}) {
    r = run({"enqueue", "echo", "--payload", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << "\n" << r.err;
    EXPECT_NE(r.err.find("rate key field 'tenant' of kind echo"), std::string::npos) << r.err;
  }
  EXPECT_THAT(jrtest::sql_error([&] { q(R"(SELECT jr_enqueue('echo', '{"tenant": [1]}'))"); }),
              testing::HasSubstr("rate key field 'tenant' of kind echo"));
  {
    // In a bulk file, the refused payload's position (blank lines are not payloads).
    std::string file = dir_.path() + "/bad.jsonl";
    std::ofstream(file) << R"({"tenant":"ok"})"
                        << "\n\n"
                        << R"({"tenant":[1]})"
                        << "\n";
    r = run({"enqueue", "echo", "--payload-file", file});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("payload 2 of the bulk enqueue"), std::string::npos) << r.err;
  }
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), before);
  // A path, and a prefix of the operator's choice.
  ASSERT_EQ(
      run({"limit", "set-field", "--kind", "echo", "--field", "customer.id", "--prefix", "tenant"})
          .exit_code,
      0);
  EXPECT_EQ(key_of(enqueue({"enqueue", "echo", "--payload", R"({"customer":{"id":5}})"})),
            "tenant:5");

  // The keys are limited like --rate-key's: one bucket per key, made from the pattern; each
  // tenant at 2 jobs/s (burst 2), so 8 jobs of one tenant take at least 3 s from first to last.
  ASSERT_EQ(run({"limit", "set", "--key", "tenant:*", "--rate", "2", "--burst", "2"}).exit_code, 0);
  jrtest::PgCluster::exec(url_, "DELETE FROM jr_jobs");
  {
    std::string file = dir_.path() + "/two.jsonl";
    std::ofstream out(file);
    for (int i = 0; i < 8; ++i) {
      out << R"({"customer":{"id":"p"}})"
          << "\n"
          << R"({"customer":{"id":"q"}})"
          << "\n";
    }
    out.close();
    r = run({"enqueue", "echo", "--payload-file", file});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(count("SELECT count(*) FROM jr_jobs WHERE options->>'rate_key' LIKE 'tenant:_'"), 16);
  }
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--poll-interval", "50ms"},
                       env_);
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs") == 0; }, 60s))
      << runner.log();
  for (const char* key : {"tenant:p", "tenant:q"}) {
    std::string span =
        q("SELECT extract(epoch FROM max(started_at) - min(started_at)) FROM jr_jobs_done "
          "WHERE options->>'rate_key' = '" +
          std::string(key) + "'");
    ASSERT_FALSE(span.empty()) << key << "\n"
                               << q("SELECT string_agg(id || ' ' || state || ' ' || "
                                    "coalesce(options->>'rate_key', '-'), ', ') FROM jr_jobs_all")
                               << "\n"
                               << runner.log();
    EXPECT_GE(std::stod(span), 2.9) << key << ": 8 jobs at 2/s with a burst of 2";
  }
  EXPECT_EQ(q("SELECT string_agg(key || '<' || pattern, ',' ORDER BY key) FROM jr_rate_limits "
              "WHERE pattern IS NOT NULL"),
            "tenant:p<tenant:*,tenant:q<tenant:*");

  // Removed: the trigger goes with the last field; enqueues get no key.
  ASSERT_EQ(run({"limit", "rm-field", "--kind", "echo"}).exit_code, 0);
  EXPECT_EQ(trigger(), 0);
  EXPECT_EQ(key_of(enqueue({"enqueue", "echo", "--payload", R"({"tenant":1})"})), "-");
  EXPECT_EQ(run({"limit", "rm-field", "--kind", "echo"}).exit_code, 3) << "nothing to remove";
}

// A cron entry whose payload cannot make a key for its kind: its ticks are logged and skipped,
// and the other entries and the leader's maintenance go on; a batch callback made inside a
// completion is not refused (it gets no key).
TEST_F(JobModel, CronTickRefusedByTheRateKeyFieldIsSkippedNotFatal) {
  // A batch whose callback's payload cannot make a key once the field is set (after the batch:
  // jr_batch_enqueue() checks its callbacks as they are then): the callback is made inside the
  // completion of the last member, which must not fail for it.
  auto batch = jrtest::run_runner({"enqueue", "echo", "--payload", "{}", "--batch-on-complete",
                                   "echo", "--batch-payload", R"({"tenant":{"x":2}})"},
                                  env_);
  ASSERT_EQ(batch.exit_code, 0) << batch.err;
  ASSERT_EQ(jrtest::run_runner({"limit", "set-field", "--kind", "echo", "--field", "tenant"}, env_)
                .exit_code,
            0);
  std::string cfg = dir_.path() + "/cron.toml";
  std::ofstream(cfg) << "[worker]\npoll_interval = 0.1\n"
                     << "[[cron]]\nname = \"bad\"\nschedule = \"@every 1s\"\nkind = \"echo\"\n"
                     << "payload = { tenant = { x = 1 } }\n"
                     << "[[cron]]\nname = \"good\"\nschedule = \"@every 1s\"\nkind = \"echo\"\n"
                     << "payload = { tenant = \"c\" }\n";
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()}), "--config", cfg}, env_);
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_jobs_done WHERE options->>'rate_key' = 'tenant:c'") >=
               3;
      },
      60s))
      << runner.log();
  ASSERT_TRUE(wait_until(
      [&] {
        return count(
                   "SELECT count(*) FROM jr_jobs_done WHERE state = 'completed' AND "
                   "payload->'tenant' ? 'x'") == 1;
      },
      30s))
      << "the batch's callback ran (without a rate key)\n"
      << q("SELECT string_agg(id || ' ' || state || ' ' || payload::text, '; ') FROM jr_jobs_all")
      << runner.log();
  std::string log = runner.log();
  EXPECT_NE(log.find("cron: the job of this tick was refused"), std::string::npos) << log;
  EXPECT_NE(log.find("\"cron\":\"bad\""), std::string::npos) << log;
  EXPECT_EQ(log.find("lost maintenance leadership"), std::string::npos) << log;
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE payload->'tenant' ? 'x' AND "
                  "options ? 'rate_key'"),
            0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE payload->'tenant' = '{\"x\": 1}'"), 0)
      << "no job of the refused cron entry";
}

TEST_F(JobModel, RateKeysAreCheckedLikeEveryOption) {
  auto r =
      jrtest::run_runner({"enqueue", "echo", "--payload", "{}", "--rate-key", "queue:x"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--rate-key"), std::string::npos) << r.err;
  r = jrtest::run_runner({"limit", "set", "--key", "ten*ant", "--rate", "1"}, env_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(
      jrtest::sql_error([&] { q(R"(SELECT jr_enqueue('echo', '{}', '{"rate_key": "a*"}'))"); }),
      testing::HasSubstr("'rate_key' must not start with queue: or kind: nor contain *"));
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
}

// Bad values of the new options are refused by the CLI with the flag's name.
TEST_F(JobModel, CliRefusesBadUniquenessOptions) {
  auto bad = [&](std::vector<std::string> args, const std::string& says) {
    std::vector<std::string> a = {"enqueue", "echo", "--payload", "{}"};
    a.insert(a.end(), args.begin(), args.end());
    auto r = jrtest::run_runner(a, env_);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  };
  bad({"--unique-states", "available,sleeping"}, "--unique-states");
  bad({"--debounce", "5s", "--delay", "1m"}, "cannot be combined with delay_seconds");
  bad({"--debounce-max", "5s"}, "needs debounce_seconds");
  bad({"--debounce", "10s", "--debounce-max", "5s"}, "must be at least debounce_seconds");
  bad({"--unique-for", "0s"}, "--unique-for");
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
}

}  // namespace
