// End-to-end tests against real PostgreSQL and the real runner binary: jr_enqueue() inside the
// caller's transaction (and identical to the Store's insert), `runner info` with live and killed
// runners, signed webhook deliveries with retries, and no secret in any log line.
#include <gmock/gmock.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <thread>

#include "db_auth.hpp"
#include "engine.hpp"
#include "job_options.hpp"
#include "ops_fixture.hpp"
#include "store.hpp"
#include "webhooks.hpp"

namespace jrtest {
namespace {

class OpsDb : public RunnerFixture {};

jr::JobInsertParams mk(const std::string& kind, const std::string& payload = "{}") {
  jr::JobInsertParams p;
  p.kind = kind;
  p.payload = payload;
  return p;
}

TEST_F(OpsDb, SqlEnqueueFollowsTheCallersTransaction) {
  {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    auto id = tx.exec("SELECT jr_enqueue('echo', '{\"n\": 1}')")[0][0].as<int64_t>();
    EXPECT_GT(id, 0);
    EXPECT_EQ(tx.exec("SELECT count(*) FROM jr_jobs")[0][0].as<int>(), 1);  // visible inside
    tx.abort();
  }
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), 0);
  int64_t id = 0;
  {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    tx.exec("CREATE TABLE orders (id int)");  // the application's own write, same transaction
    tx.exec("INSERT INTO orders VALUES (7)");
    id = tx.exec("SELECT jr_enqueue('echo', '{\"order\": 7}', '{\"queue\": \"orders\"}')")[0][0]
             .as<int64_t>();
    tx.commit();
  }
  auto plugins = plugin_dir_with({echo_so()});
  RunnerProcess runner({"--plugins", plugins}, env_);
  ASSERT_TRUE(wait_state(id, "completed", std::chrono::seconds(20))) << runner.log();
  auto s = status(id);
  EXPECT_EQ(s["queue"], "orders");
  EXPECT_EQ(s["result"], nlohmann::json::parse(R"({"order": 7})"));
}

TEST_F(OpsDb, SqlEnqueueInsertsExactlyLikeTheStore) {
  auto store = jr::Store::open(url_);
  PgCluster::exec(url_,
                  "INSERT INTO jr_kinds (kind, plugin, default_queue) VALUES ('k', 'p', 'kq')");
  int64_t parent = store->JobInsert(mk("k"));
  const std::string cols =
      "queue, kind, payload, state, priority, base_priority, max_attempts, timeout_ms, "
      "retry_schedule, options, unique_key IS NULL, lock_key, lock_limit, depends_on, "
      "expires_at IS NULL, run_at > now() + interval '50 seconds'";
  auto row = [&](int64_t id) {
    return q("SELECT row(" + cols + ")::text FROM jr_jobs WHERE id = " + std::to_string(id));
  };
  struct Case {
    std::string options;
    jr::JobInsertParams p;
  };
  std::vector<Case> cases;
  cases.push_back({"{}", mk("k", R"({"a": [1, 2]})")});
  {
    jr::JobInsertParams p = mk("k", R"({"b": 1})");
    p.queue = "custom";
    p.priority = 7;
    p.delay_seconds = 60;
    p.max_attempts = 4;
    p.timeout_ms = 1500;
    p.retry_schedule = "5,10";
    p.ttl_seconds = 600;
    p.result_ttl_seconds = 30;
    p.failure_ttl_seconds = 90;
    p.lock_key = "L";
    p.lock_limit = 2;
    p.webhook = "http://127.0.0.1:9/h";
    cases.push_back({R"({"queue": "custom", "priority": 7, "delay_seconds": 60,
      "max_attempts": 4, "timeout_seconds": 1.5, "retry_schedule": "5,10", "ttl_seconds": 600,
      "result_ttl_seconds": 30, "failure_ttl_seconds": 90, "lock_key": "L", "lock_limit": 2,
      "webhook": "http://127.0.0.1:9/h"})",
                     p});
  }
  {
    jr::JobInsertParams p = mk("k", R"({"c": 1})");
    p.depends_on = {parent};
    cases.push_back({R"({"depends_on": [)" + std::to_string(parent) + "]}", p});
  }
  for (const auto& c : cases) {
    int64_t via_store = store->JobInsert(c.p);
    int64_t via_sql =
        std::stoll(q("SELECT jr_enqueue('k', '" + c.p.payload + "', '" + c.options + "')"));
    EXPECT_NE(via_store, via_sql);
    // Compared as values (jsonb 30 equals 30.0), shown as text when they differ.
    EXPECT_EQ(q("SELECT row(" + cols + ") IS NOT DISTINCT FROM (SELECT row(" + cols +
                ") FROM jr_jobs WHERE id = " + std::to_string(via_store) +
                ") FROM jr_jobs WHERE id = " + std::to_string(via_sql)),
              "t")
        << c.options << "\n"
        << row(via_sql) << "\n"
        << row(via_store);
  }
  // Unique: the same key from either side names the same live job.
  jr::JobInsertParams u = mk("k", R"({"u": 1})");
  u.unique = true;
  int64_t first = store->JobInsert(u);
  EXPECT_EQ(std::stoll(q("SELECT jr_enqueue('k', '{\"u\": 1}', '{\"unique\": true}')")), first);
  EXPECT_EQ(std::stoll(q("SELECT jr_enqueue('k', '{\"u\":1}', '{\"unique\": true}')")), first);
  // Bad options are errors, not silent defaults.
  EXPECT_THAT(jrtest::sql_error([&] { q("SELECT jr_enqueue('k', '{}', '{\"colour\": 1}')"); }),
              testing::HasSubstr("22023: ERROR:  jr_enqueue: 'colour' is not a known job option"));
  EXPECT_THAT(
      jrtest::sql_error([&] { q("SELECT jr_enqueue('k', '{}', '{\"depends_on\": [424242]}')"); }),
      testing::HasSubstr("jr_enqueue: depends_on names jobs that do not exist: 424242"));
}

// One set of job options (issue 17): jr_enqueue() accepts exactly the keys of the C++ parser
// used by the CLI, the API and plugins, refuses an unknown key the same way, and refuses the
// same bad values, naming the option.
TEST_F(OpsDb, SqlEnqueueAcceptsExactlyTheKeysOfTheOneParser) {
  const std::string kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string keys = q("SELECT array_to_json(jr_enqueue_option_keys())::text");
  std::vector<std::string> sql_keys = nlohmann::json::parse(keys).get<std::vector<std::string>>();
  EXPECT_EQ(
      std::set<std::string>(sql_keys.begin(), sql_keys.end()),
      std::set<std::string>(jr::ops::job_option_keys().begin(), jr::ops::job_option_keys().end()));
  EXPECT_EQ(sql_keys.size(), jr::ops::job_option_keys().size());
  int64_t parent = jr::Store::open(url_)->JobInsert(mk("k"));
  // Every key, with a valid value: both accept.
  std::map<std::string, nlohmann::json> sample = {{"queue", "q"},
                                                  {"priority", -5},
                                                  {"delay_seconds", 1.5},
                                                  {"run_at", "2030-01-01T00:00:00Z"},
                                                  {"max_attempts", 3},
                                                  {"timeout_seconds", 0.5},
                                                  {"retry_schedule", nlohmann::json::array({1, 2})},
                                                  {"ttl_seconds", 60},
                                                  {"result_ttl_seconds", 60},
                                                  {"failure_ttl_seconds", 60},
                                                  {"unique", true},
                                                  {"unique_key", "uk"},
                                                  {"lock_key", "lk"},
                                                  {"lock_limit", 2},
                                                  {"depends_on", nlohmann::json::array({parent})},
                                                  {"webhook", "http://127.0.0.1:9/h"},
                                                  {"unique_for_seconds", 3600},
                                                  {"unique_states", {"available", "completed"}},
                                                  {"replace", true},
                                                  {"debounce_seconds", 5},
                                                  {"debounce_max_seconds", 60},
                                                  {"rate_key", "tenant:42"},
                                                  {"traceparent", kTraceparent}};
  auto sql = [&](const nlohmann::json& options, const std::string& payload = "{}",
                 const std::string& kind = "k") {
    pqxx::connection c(url_);
    pqxx::work tx(c);
    try {
      tx.exec("SELECT jr_enqueue(" + tx.quote(kind) + ", " + tx.quote(payload) + ", " +
              tx.quote(options.dump()) + ")");
      return std::string();
    } catch (const pqxx::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "22023") << e.what();
      std::string m = e.what();
      m = m.substr(m.find("jr_enqueue: ") + 12);
      return m.substr(0, m.find('\n'));
    }
  };
  auto cpp = [&](const nlohmann::json& options, const std::string& payload = "{}",
                 const std::string& kind = "k") {
    try {
      jr::ops::job_from_parts(kind, nlohmann::json::parse(payload), options);
      return std::string();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
  };
  ASSERT_EQ(sample.size(), jr::ops::job_option_keys().size());
  for (const auto& [k, v] : sample) {
    nlohmann::json o = {{k, v}};
    if (k == "lock_limit") o["lock_key"] = "lk";
    if (k == "debounce_max_seconds") o["debounce_seconds"] = 5;
    EXPECT_EQ(sql(o), "") << k;
    EXPECT_EQ(cpp(o), "") << k;
  }
  // An unknown key: the same message from both.
  EXPECT_EQ(sql({{"colour", 1}}), "'colour' is not a known job option");
  EXPECT_EQ(cpp({{"colour", 1}}), "'colour' is not a known job option");
  // Bad values: both refuse, naming the option (the same message where the value prints alike).
  struct Bad {
    nlohmann::json options;
    std::string field;
    bool same_text;
  };
  std::vector<Bad> bad = {
      {{{"priority", 18446744073709551615ull}}, "priority", true},
      {{{"priority", 1.5}}, "priority", true},
      {{{"priority", "high"}}, "priority", false},
      {{{"max_attempts", 0}}, "max_attempts", true},
      {{{"lock_key", "l"}, {"lock_limit", 4294967297ll}}, "lock_limit", true},
      {{{"lock_limit", 2}}, "lock_limit", true},
      {{{"depends_on", {0}}}, "depends_on", true},
      {{{"depends_on", {9223372036854775808ull}}}, "depends_on", true},
      {{{"depends_on", "1"}}, "depends_on", false},
      {{{"delay_seconds", 1e300}}, "delay_seconds", true},
      {{{"timeout_seconds", 0}}, "timeout_seconds", true},
      {{{"ttl_seconds", -1}}, "ttl_seconds", true},
      {{{"run_at", "garbage"}}, "run_at", true},
      {{{"run_at", 5}}, "run_at", false},
      {{{"queue", ""}}, "queue", true},
      {{{"queue", "a\tb"}}, "queue", false},
      {{{"queue", std::string(1025, 'q')}}, "queue", true},
      {{{"unique", "yes"}}, "unique", false},
      {{{"unique", true}, {"unique_key", "u"}}, "unique_key", true},
      {{{"retry_schedule", {-1}}}, "retry_schedule", true},
      {{{"retry_schedule", "1,x"}}, "retry_schedule", false},
      {{{"webhook", "ftp://x"}}, "webhook", false},
      {{{"unique_for_seconds", 0}}, "unique_for_seconds", true},
      {{{"unique_for_seconds", "1h"}}, "unique_for_seconds", false},
      {{{"unique_states", {"running", "sleeping"}}}, "unique_states", false},
      {{{"unique_states", nlohmann::json::array()}}, "unique_states", true},
      {{{"unique_states", "running"}}, "unique_states", true},
      {{{"replace", 1}}, "replace", false},
      {{{"debounce_seconds", 5}, {"delay_seconds", 1}}, "debounce_seconds", true},
      {{{"debounce_max_seconds", 5}}, "debounce_max_seconds", true},
      {{{"debounce_seconds", 5}, {"debounce_max_seconds", 1}}, "debounce_max_seconds", true},
      {{{"rate_key", "kind:x"}}, "rate_key", true},
      {{{"rate_key", "t:*"}}, "rate_key", true},
      {{{"traceparent", 1}}, "traceparent", false},
      {{{"traceparent", kTraceparent.substr(1)}}, "traceparent", true},
      {{{"traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}},
       "traceparent",
       true},
      {{{"traceparent", "ff" + kTraceparent.substr(2)}}, "traceparent", true},
      {{{"traceparent", "00-" + std::string(32, '0') + kTraceparent.substr(35)}},
       "traceparent",
       true},
      {{{"traceparent", kTraceparent.substr(0, 36) + std::string(16, '0') + "-01"}},
       "traceparent",
       true},
  };
  for (const auto& b : bad) {
    std::string from_sql = sql(b.options), from_cpp = cpp(b.options);
    std::string name = "'" + b.field + "'";
    EXPECT_EQ(from_sql.rfind(name, 0), 0u) << b.options.dump() << ": " << from_sql;
    EXPECT_EQ(from_cpp.rfind(name, 0), 0u) << b.options.dump() << ": " << from_cpp;
    if (b.same_text) {
      EXPECT_EQ(from_sql, from_cpp) << b.options.dump();
    }
  }
  // The traceparent is kept with the job by every way in (migration 19): jr_enqueue_many()
  // (its copies of the first row included), and jr_enqueue_ex() from the C++ store, which a
  // period-unique insert goes through; a second enqueue finding the first keeps the first's.
  q("SELECT count(*) FROM jr_enqueue_many('k', '[{\"m\": 1}, {\"m\": 2}, {\"m\": 3}]', "
    "'{\"traceparent\": \"" +
    kTraceparent + "\"}')");
  EXPECT_EQ(
      count("SELECT count(*) FROM jr_jobs WHERE payload ? 'm' AND options->>'traceparent' = '" +
            kTraceparent + "'"),
      3);
  auto period = jr::ops::job_from_parts(
      "k", {{"p", 1}}, {{"unique_for_seconds", 3600}, {"traceparent", kTraceparent}});
  int64_t held = jr::Store::open(url_)->JobInsertEx(period).id;
  EXPECT_EQ(q("SELECT options->>'traceparent' FROM jr_jobs WHERE id = " + std::to_string(held)),
            kTraceparent);
  period.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba90000-01";
  auto again = jr::Store::open(url_)->JobInsertEx(period);
  EXPECT_FALSE(again.inserted);
  EXPECT_EQ(q("SELECT options->>'traceparent' FROM jr_jobs WHERE id = " + std::to_string(held)),
            kTraceparent);
  // A number beyond float8 (C++ refuses it while parsing): exact numeric in SQL, out of range.
  EXPECT_THROW(q(R"(SELECT jr_enqueue('k', '{}', '{"ttl_seconds": 1e400}'))"), pqxx::sql_error);
  // Kind and payload follow the same rules too.
  EXPECT_EQ(sql({}, "[1]").rfind("'payload' must be a JSON object", 0), 0u);
  EXPECT_EQ(cpp({}, "[1]").rfind("'payload' must be a JSON object", 0), 0u);
  EXPECT_EQ(sql({}, "{}", "echo evil").rfind("'kind' must be 1 to 128 characters", 0), 0u);
  EXPECT_EQ(cpp({}, "{}", "echo evil").rfind("'kind' must be 1 to 128 characters", 0), 0u);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs WHERE priority < -1000000 OR priority > 1000000"),
            0);
}

// The plugin host function (jr_host_api::enqueue -> Engine::job_enqueue) takes every option of
// `runner enqueue` through the same parser: "unique": true used to be dropped silently, and
// an unknown key or a wrapped integer accepted.
TEST_F(OpsDb, PluginEnqueueTakesEveryOptionOfRunnerEnqueue) {
  jr::EngineOptions eo;
  eo.database_url = url_;
  eo.worker_id = "engine-under-test";
  jr::Engine engine(eo, {}, {});
  int64_t a = engine.job_enqueue(nullptr, "k", R"({"u": 1})", R"({"unique": true})");
  int64_t b = engine.job_enqueue(nullptr, "k", R"({"u":1})", R"({"unique": true})");
  ASSERT_GT(a, 0);
  EXPECT_EQ(a, b) << "a second unique job while the first waits returns the first";
  int64_t c = engine.job_enqueue(
      nullptr, "k", "{}",
      R"({"lock_key": "L", "lock_limit": 2, "depends_on": [)" + std::to_string(a) +
          R"(], "ttl_seconds": 60, "result_ttl_seconds": 5, "retry_schedule": [1, 2],
             "unique_key": "key-1", "webhook": "http://127.0.0.1:9/h"})");
  ASSERT_GT(c, 0);
  EXPECT_EQ(q("SELECT row(state, lock_key, lock_limit, depends_on, expires_at IS NOT NULL, "
              "options->>'result_ttl', retry_schedule, unique_key, options->>'webhook')::text "
              "FROM jr_jobs WHERE id = " +
              std::to_string(c)),
            "(waiting,L,2,{" + std::to_string(a) + "},t,5.0,\"{1,2}\",key-1,http://127.0.0.1:9/h)");
  int64_t before = count("SELECT count(*) FROM jr_jobs_all");
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", "{}", R"({"colour": "red"})"), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", "{}", R"({"priority": 18446744073709551615})"), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", "{}", R"({"depends_on": [424242]})"), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, std::string_view("echo\0evil", 9), "{}", ""), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", "[1]", ""), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", R"({"a": "\u0000"})", ""), -1);
  EXPECT_EQ(engine.job_enqueue(nullptr, "k", "{}", "[1]"), -1);
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), before);
}

TEST_F(OpsDb, InfoShowsLiveRunnersAndForgetsKilledOnes) {
  auto plugins = plugin_dir_with({echo_so()});
  std::vector<std::string> common = {"--plugins", plugins, "--lease-seconds", "3"};
  auto a_args = common, b_args = common;
  a_args.insert(a_args.end(), {"--worker-id", "runner-a", "--queues", "default,mail"});
  b_args.insert(b_args.end(), {"--worker-id", "runner-b"});
  RunnerProcess a(a_args, env_);
  RunnerProcess b(b_args, env_);
  enqueue_many("echo", 4, R"({"x": 1})");
  ASSERT_TRUE(wait_until([&] { return count("SELECT count(*) FROM jr_jobs_done") == 4; },
                         std::chrono::seconds(20)));
  auto info = [&] {
    auto r = run_runner({"info", "--json", "--lease-seconds", "3"}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  };
  ASSERT_TRUE(wait_until([&] { return info()["workers"].size() == 2; }, std::chrono::seconds(10)));
  auto j = info();
  std::set<std::string> ids;
  for (const auto& w : j["workers"]) {
    ids.insert(w["id"].get<std::string>());
    EXPECT_EQ(w["kinds"], nlohmann::json::parse(R"(["echo"])"));
    EXPECT_GT(w["pid"].get<int>(), 0);
    EXPECT_FALSE(w["host"].get<std::string>().empty());
    EXPECT_TRUE(w.contains("started_at") && w.contains("heartbeat_at") && w.contains("jobs_done"));
  }
  EXPECT_EQ(ids, (std::set<std::string>{"runner-a", "runner-b"}));
  ASSERT_EQ(j["queues"].size(), 1u);
  EXPECT_EQ(j["queues"][0]["queue"], "default");
  EXPECT_EQ(j["queues"][0]["finished_last_minute"], 4);
  EXPECT_EQ(j["throughput"]["finished"], 4);
  // The human form names both runners and the queue.
  auto text = run_runner({"info", "--lease-seconds", "3"}, env_);
  EXPECT_NE(text.out.find("runner-a"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("runner-b"), std::string::npos);
  EXPECT_NE(text.out.find("default,mail"), std::string::npos);
  EXPECT_NE(text.out.find("2 worker(s)"), std::string::npos);

  // kill -9: no unregister; the row stops heartbeating and info stops showing it.
  b.signal(SIGKILL);
  b.wait(std::chrono::seconds(5));
  ASSERT_TRUE(wait_until([&] { return info()["workers"].size() == 1; }, std::chrono::seconds(10)));
  EXPECT_EQ(info()["workers"][0]["id"], "runner-a");
  EXPECT_EQ(count("SELECT count(*) FROM jr_workers WHERE id = 'runner-b'"), 1);  // still a row
  // The leader deletes rows silent for longer than max(60 s, 2 leases): age it past that.
  PgCluster::exec(url_,
                  "UPDATE jr_workers SET heartbeat_at = now() - interval '61 seconds' "
                  "WHERE id = 'runner-b'");
  ASSERT_TRUE(wait_until(
      [&] { return count("SELECT count(*) FROM jr_workers WHERE id = 'runner-b'") == 0; },
      std::chrono::seconds(15)))
      << a.log();
  EXPECT_EQ(count("SELECT count(*) FROM jr_workers WHERE id = 'runner-a'"), 1);
}

// A webhook receiver on loopback: records every request; answers 500 to the first
// `fail_first` requests on /flaky.
class Receiver {
 public:
  struct Hit {
    std::string path, body, signature, event;
  };
  explicit Receiver(int fail_first) : fail_first_(fail_first) {
    server_.Post(R"(/.*)", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      hits_.push_back({req.path, req.body, req.get_header_value("X-Jobrunner-Signature"),
                       req.get_header_value("X-Jobrunner-Event")});
      bool fail = req.path == "/flaky" && flaky_seen_++ < fail_first_;
      res.status = fail ? 500 : 200;
      res.set_content(fail ? "boom" : "ok", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib ignores a stop() that comes before its accept loop runs.
    wait_until([this] { return server_.is_running(); }, std::chrono::seconds(5));
  }
  ~Receiver() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<Hit> hits() {
    std::lock_guard<std::mutex> lock(mu_);
    return hits_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  int fail_first_;
  int flaky_seen_ = 0;
  std::mutex mu_;
  std::vector<Hit> hits_;
};

TEST_F(OpsDb, WebhooksAreSignedDeliveredOncePerJobAndRetried) {
  Receiver rx(2);
  ASSERT_GT(rx.port(), 0);
  std::string base = "http://127.0.0.1:" + std::to_string(rx.port());
  std::string cfg = dir_.path() + "/hooks.toml";
  std::ofstream(cfg) << "webhook_secret = \"whsec-test\"\n[webhooks]\necho = \"" << base
                     << "/kind\"\n";
  auto plugins = plugin_dir_with({echo_so()});
  RunnerProcess runner({"--config", cfg, "--plugins", plugins}, env_);
  auto ok = enqueue_many("echo", 3, R"({"ok": 1})");
  int64_t dead = enqueue({"enqueue", "echo", "--payload", R"({"fail": "permanent"})"});
  int64_t flaky =
      enqueue({"enqueue", "echo", "--payload", R"({"f": 1})", "--webhook", base + "/flaky"});
  int64_t waiting = enqueue({"enqueue", "echo", "--payload", "{}", "--delay", "1h"});
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_webhook_deliveries WHERE state = 'delivered'") == 5;
      },
      std::chrono::seconds(30)))
      << runner.log();
  std::map<int64_t, int> accepted;
  int flaky_hits = 0;
  for (const auto& h : rx.hits()) {
    EXPECT_EQ(h.signature, "sha256=" + jr::ops::hmac_sha256_hex("whsec-test", h.body));
    auto body = nlohmann::json::parse(h.body);
    int64_t id = body["job"]["id"].get<int64_t>();
    EXPECT_EQ(body["event"], h.event);
    if (h.path == "/flaky") {
      EXPECT_EQ(id, flaky);
      if (++flaky_hits <= 2) continue;  // answered 500
    }
    ++accepted[id];
    EXPECT_EQ(h.path, id == flaky ? "/flaky" : "/kind");
    EXPECT_EQ(h.event, id == dead ? "job.dead_lettered" : "job.completed");
    if (id == dead) {
      EXPECT_EQ(body["job"]["state"], "discarded");
    }
    if (id == ok[0]) {
      EXPECT_EQ(body["job"]["result"], nlohmann::json::parse(R"({"ok": 1})"));
    }
  }
  EXPECT_EQ(flaky_hits, 3);
  std::map<int64_t, int> expected = {{ok[0], 1}, {ok[1], 1}, {ok[2], 1}, {dead, 1}, {flaky, 1}};
  EXPECT_EQ(accepted, expected);
  EXPECT_EQ(accepted.count(waiting), 0u);
  // The delivery state is part of `runner status`.
  auto s = status(flaky);
  ASSERT_TRUE(s.contains("webhook")) << s.dump();
  EXPECT_EQ(s["webhook"][0]["state"], "delivered");
  EXPECT_EQ(s["webhook"][0]["attempts"], 3);
  EXPECT_EQ(s["webhook"][0]["last_status"], 200);
  // No extra deliveries trickle in later.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(rx.hits().size(), 7u);
}

// With no webhook_secret, notifications are delivered unsigned and the runner says so (they
// used to wait for ever, with no log line).
TEST_F(OpsDb, WebhooksWithoutASecretAreDeliveredUnsigned) {
  Receiver rx(0);
  ASSERT_GT(rx.port(), 0);
  std::string url = "http://127.0.0.1:" + std::to_string(rx.port()) + "/plain";
  auto env = env_;
  env["RUNNER_WEBHOOK_SECRET"] = "";
  RunnerProcess runner({"--plugins", plugin_dir_with({echo_so()})}, env);
  int64_t id = enqueue({"enqueue", "echo", "--payload", R"({"n": 1})", "--webhook", url});
  ASSERT_TRUE(wait_until(
      [&] {
        return count("SELECT count(*) FROM jr_webhook_deliveries WHERE state = 'delivered'") == 1;
      },
      std::chrono::seconds(20)))
      << runner.log();
  auto hits = rx.hits();
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].path, "/plain");
  EXPECT_EQ(hits[0].signature, "");
  EXPECT_EQ(hits[0].event, "job.completed");
  EXPECT_EQ(nlohmann::json::parse(hits[0].body)["job"]["id"], id);
  std::string log = runner.log();
  EXPECT_NE(log.find("no webhook_secret is set: webhook notifications are delivered unsigned"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("delivering webhook notifications unsigned"), std::string::npos) << log;
}

TEST_F(OpsDb, NoPasswordOrTokenInAnyLogLine) {
  // The runner's role's real password, in its URL (the test cluster asks for it).
  const std::string pw = jr::dbauth::parse_conninfo(url_)["password"];
  ASSERT_GE(pw.size(), 16u);
  const std::string token = "api-t0ken-5512";
  const std::string hook_token = "h00k-t0ken-7781";
  std::string secret_url = url_;
  std::map<std::string, std::string> env = {{"DATABASE_URL", secret_url},
                                            {"RUNNER_API_TOKEN", token},
                                            {"RUNNER_WEBHOOK_SECRET", "whsec-x"}};
  auto plugins = plugin_dir_with({echo_so()});
  std::string all;
  {
    auto r = start_http_runner(plugins, env, {"--log-level", "debug"});
    ASSERT_GT(r.port, 0);
    auto c = r.client();
    std::string hook = "http://127.0.0.1:1/hook?token=" + hook_token;  // nothing listens: fails
    auto res = c->Post(
        "/api/v1/jobs", {{"Authorization", "Bearer " + token}, {"X-Jobrunner-CSRF", "1"}},
        R"({"kind": "echo", "payload": {"x": 1}, "webhook": ")" + hook + "\"}", "application/json");
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201) << res->body;
    int64_t id = nlohmann::json::parse(res->body)["id"].get<int64_t>();
    c->Post("/api/v1/jobs", {{"Authorization", "Bearer wrong-" + token}}, "{}", "application/json");
    ASSERT_TRUE(wait_until(
        [&] {
          return count("SELECT count(*) FROM jr_webhook_deliveries WHERE attempts >= 2") == 1;
        },
        std::chrono::seconds(20)));
    auto metrics = c->Get("/metrics");
    all += metrics ? metrics->body : "";
    auto job = c->Get("/api/v1/jobs/" + std::to_string(id));
    all += job ? job->body : "";
    auto st = run_runner({"status", std::to_string(id), "--json"}, env);
    all += st.out + st.err;
    auto info = run_runner({"info"}, env);
    all += info.out + info.err;
    r.proc->signal(SIGTERM);
    r.proc->wait(std::chrono::seconds(30));
    all += r.proc->log();
  }
  // Failures print the database URL: an unreachable server, in both URL forms.
  std::string bad_url = "postgresql://jobs:" + pw + "@127.0.0.1:1/jobs";
  auto r1 = run_runner({"status", "1"}, {{"DATABASE_URL", bad_url}});
  EXPECT_NE(r1.exit_code, 0);
  all += r1.out + r1.err;
  {
    RunnerProcess w({"--plugins", plugins}, {{"DATABASE_URL", bad_url + "?password=" + pw}});
    ASSERT_TRUE(wait_until([&] { return w.log().find("unreachable") != std::string::npos; },
                           std::chrono::seconds(10)));
    w.signal(SIGTERM);
    w.wait(std::chrono::seconds(10));
    all += w.log();
  }
  EXPECT_NE(all.find("jobs:***@127.0.0.1"), std::string::npos) << all;  // the URL is there...
  EXPECT_NE(all.find("token=***"), std::string::npos) << all;
  EXPECT_EQ(all.find(pw), std::string::npos) << all;  // ...its secrets are not
  EXPECT_EQ(all.find(token), std::string::npos) << all;
  EXPECT_EQ(all.find(hook_token), std::string::npos) << all;
  EXPECT_EQ(all.find("whsec-x"), std::string::npos) << all;
}

}  // namespace
}  // namespace jrtest
