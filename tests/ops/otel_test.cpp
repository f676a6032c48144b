// OpenTelemetry traces (issue 23, docs/job-model.md "OpenTelemetry traces"): the real runner
// exports a span per job attempt over OTLP/HTTP JSON to a small OTLP receiver written here
// (cpp-httplib on 127.0.0.1), and hands the attempt's traceparent to the plugin
// (tests/testplugins/trace_probe.c returns what it read through jr.trace.v1 as its result).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "ops_fixture.hpp"

namespace jrtest {
namespace {

using nlohmann::json;

// A minimal OTLP/HTTP receiver: POST /v1/traces with the JSON encoding. Every span received is
// kept with its resource attributes. In `stall` mode each request is held until release() (a
// collector that accepts connections and never answers).
class OtlpReceiver {
 public:
  explicit OtlpReceiver(bool stall = false) : stall_(stall) {
    srv_.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      ++requests_;
      if (stall_) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return released_; });
        res.status = 503;
        return;
      }
      json body = json::parse(req.body, nullptr, false);
      std::lock_guard<std::mutex> lock(mu_);
      if (req.get_header_value("Content-Type") != "application/json" || body.is_discarded() ||
          !body.contains("resourceSpans")) {
        bad_requests_.push_back(req.body.substr(0, 200));
        res.status = 400;
        return;
      }
      for (const auto& rs : body["resourceSpans"]) {
        for (const auto& ss : rs.at("scopeSpans")) {
          for (const auto& sp : ss.at("spans")) {
            json s = sp;
            s["_resource"] = rs.at("resource");
            s["_scope"] = ss.at("scope");
            spans_.push_back(std::move(s));
          }
        }
      }
      res.status = 200;
      res.set_content("{}", "application/json");
    });
    port_ = srv_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { srv_.listen_after_bind(); });
  }
  ~OtlpReceiver() {
    release();
    srv_.stop();
    thread_.join();
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<json> spans() {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }
  std::vector<std::string> bad_requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_requests_;
  }
  int requests() const { return requests_.load(); }

 private:
  bool stall_;
  httplib::Server srv_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  std::vector<json> spans_;
  std::vector<std::string> bad_requests_;
  std::atomic<int> requests_{0};
};

// An attribute's value as text ("" when absent): stringValue, intValue (a string in OTLP/JSON)
// or doubleValue.
std::string attr(const json& span, const std::string& key) {
  for (const auto& a : span.value("attributes", json::array())) {
    if (a.value("key", "") != key) continue;
    const json& v = a.at("value");
    if (v.contains("stringValue")) return v["stringValue"].get<std::string>();
    if (v.contains("intValue")) return v["intValue"].get<std::string>();
    if (v.contains("doubleValue")) return std::to_string(v["doubleValue"].get<double>());
  }
  return "";
}

std::vector<json> spans_of(const std::vector<json>& all, int64_t job) {
  std::vector<json> out;
  for (const auto& s : all) {
    if (attr(s, "jobrunner.job.id") == std::to_string(job)) out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const json& a, const json& b) {
    return std::stoi(attr(a, "jobrunner.job.attempt")) <
           std::stoi(attr(b, "jobrunner.job.attempt"));
  });
  return out;
}

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos &&
         s.find_first_not_of('0') != std::string::npos;
}

// A producer's span context, as a tracing SDK would make it.
struct Producer {
  std::string trace_id, span_id;
  std::string traceparent() const { return "00-" + trace_id + "-" + span_id + "-01"; }
};
Producer producer(int n) {
  char t[33], s[17];
  std::snprintf(t, sizeof t, "4bf92f3577b34da6a3ce929d0e0e%04x", n);
  std::snprintf(s, sizeof s, "00f067aa0ba9%04x", n);
  return {t, s};
}

// A loopback port nothing listens on (bound, then closed): connections are refused.
int dead_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class Otel : public RunnerFixture {
 protected:
  void SetUp() override {
    RunnerFixture::SetUp();
    env_["RUNNER_API_TOKEN"] = "t0ken-for-tests";
  }
  // POST /api/v1/jobs with a traceparent header.
  httplib::Result post_job(const HttpRunner& r, const std::string& traceparent,
                           const std::string& body) {
    httplib::Headers h = {{"Authorization", "Bearer t0ken-for-tests"},
                          {"X-Jobrunner-CSRF", "1"},
                          {"traceparent", traceparent}};
    return r.client()->Post("/api/v1/jobs", h, body, "application/json");
  }
  std::string plugins() { return plugin_dir_with({test_so("trace_probe", "trace_probe")}); }
  // A config file with an [otel] section (the endpoint comes from --otel-endpoint).
  std::string otel_config(const std::string& body) {
    std::string path = dir_.path() + "/otel" + std::to_string(++dirs_) + ".toml";
    std::ofstream(path) << "[otel]\n" << body;
    return path;
  }
  json result(int64_t id) {
    std::string r = q("SELECT result::text FROM jr_jobs_all WHERE id = " + std::to_string(id));
    return r.empty() ? json() : json::parse(r);
  }
  bool all_completed(const std::vector<int64_t>& ids, std::chrono::milliseconds limit) {
    std::string list;
    for (auto id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
    return wait_until(
        [&] {
          return count("SELECT count(*) FROM jr_jobs_all WHERE state = 'completed' AND id IN (" +
                       list + ")") == static_cast<int64_t>(ids.size());
        },
        limit);
  }
};

// The must-show: one trace per job, the producer's span the parent of the attempt span, the
// handler given the attempt span's context (so its spans are children of the runner's), in a
// sandboxed worker. The traceparent arrives by each way a producer has: the CLI flag, the HTTP
// API's header, jr_enqueue() in SQL; a job without one gets a trace of its own.
TEST_F(Otel, OneTracePerJobWithProducerAndHandlerLinked) {
  OtlpReceiver recv;
  std::string cfg = otel_config("interval = \"50ms\"\nbatch_size = 2\n");
  HttpRunner r = start_http_runner(
      plugins(), env_,
      {"--config", cfg, "--otel-endpoint", recv.endpoint(), "--isolation", "sandbox"});
  ASSERT_GT(r.port, 0);

  Producer cli = producer(1), http = producer(2), sql = producer(3);
  int64_t by_cli =
      enqueue({"enqueue", "trace_probe", "--payload", "{}", "--traceparent", cli.traceparent()});
  auto res = post_job(r, http.traceparent(), R"({"kind": "trace_probe"})");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  int64_t by_http = json::parse(res->body)["id"].get<int64_t>();
  int64_t by_sql = std::stoll(q("SELECT jr_enqueue('trace_probe', '{}', '{\"traceparent\": \"" +
                                sql.traceparent() + "\"}')"));
  int64_t untraced = enqueue({"enqueue", "trace_probe", "--payload", "{}"});
  std::vector<int64_t> ids = {by_cli, by_http, by_sql, untraced};
  ASSERT_TRUE(all_completed(ids, std::chrono::seconds(60))) << r.proc->log();
  ASSERT_TRUE(
      wait_until([&] { return recv.spans().size() >= ids.size(); }, std::chrono::seconds(30)))
      << recv.spans().size() << " spans\n"
      << r.proc->log();
  r.proc->signal(SIGTERM);
  ASSERT_EQ(r.proc->wait(std::chrono::seconds(60)), 0) << r.proc->log();
  EXPECT_TRUE(recv.bad_requests().empty()) << recv.bad_requests()[0];

  std::vector<json> all = recv.spans();
  EXPECT_EQ(all.size(), ids.size());  // exactly one span per (single-attempt) job, nothing else
  std::set<std::string> traces;
  for (auto [id, p] :
       std::vector<std::pair<int64_t, Producer>>{{by_cli, cli}, {by_http, http}, {by_sql, sql}}) {
    SCOPED_TRACE("job " + std::to_string(id));
    std::vector<json> s = spans_of(all, id);
    ASSERT_EQ(s.size(), 1u);
    const json& sp = s[0];
    EXPECT_EQ(sp["traceId"], p.trace_id);
    EXPECT_EQ(sp["parentSpanId"], p.span_id);  // the producer's span is the parent
    std::string span_id = sp["spanId"].get<std::string>();
    EXPECT_TRUE(is_hex(span_id, 16)) << span_id;
    EXPECT_NE(span_id, p.span_id);
    traces.insert(sp["traceId"].get<std::string>());
    // The handler was handed the attempt span's context: a span it makes with it is a child of
    // the runner's span, in the producer's trace.
    EXPECT_EQ(result(id)["traceparent"], "00-" + p.trace_id + "-" + span_id + "-01");
    EXPECT_EQ(sp["name"], "process trace_probe");
    EXPECT_EQ(sp["kind"], 5);  // SPAN_KIND_CONSUMER
    EXPECT_EQ(attr(sp, "jobrunner.job.kind"), "trace_probe");
    EXPECT_EQ(attr(sp, "jobrunner.job.queue"), "traced");
    EXPECT_EQ(attr(sp, "jobrunner.job.attempt"), "1");
    EXPECT_EQ(attr(sp, "jobrunner.job.outcome"), "completed");
    EXPECT_EQ(attr(sp, "jobrunner.job.error_kind"), "");
    EXPECT_FALSE(attr(sp, "jobrunner.job.wait_seconds").empty());
    EXPECT_GE(std::stod(attr(sp, "jobrunner.job.wait_seconds")), 0.0);
    EXPECT_EQ(sp["status"]["code"], 1);
    uint64_t start = std::stoull(sp["startTimeUnixNano"].get<std::string>());
    uint64_t end = std::stoull(sp["endTimeUnixNano"].get<std::string>());
    EXPECT_GT(start, 1700000000ull * 1000000000ull);
    EXPECT_LE(start, end);
    json svc = sp["_resource"]["attributes"];
    EXPECT_NE(std::find(svc.begin(), svc.end(),
                        json{{"key", "service.name"}, {"value", {{"stringValue", "jobrunner"}}}}),
              svc.end())
        << svc.dump();
  }
  // The job enqueued without a traceparent: the root of a fresh trace, handed to the handler.
  std::vector<json> s = spans_of(all, untraced);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_FALSE(s[0].contains("parentSpanId")) << s[0].dump();
  std::string trace = s[0]["traceId"].get<std::string>();
  EXPECT_TRUE(is_hex(trace, 32)) << trace;
  traces.insert(trace);
  EXPECT_EQ(result(untraced)["traceparent"],
            "00-" + trace + "-" + s[0]["spanId"].get<std::string>() + "-01");
  EXPECT_EQ(traces.size(), ids.size());  // one trace per job
  // The producer's traceparent is kept with the job.
  EXPECT_EQ(
      q("SELECT options->>'traceparent' FROM jr_jobs_all WHERE id = " + std::to_string(by_http)),
      http.traceparent());
}

// A retried job: one span per attempt, all in the producer's trace under the producer's span,
// each with its outcome and error kind; the handler of each attempt got that attempt's span.
// In-process this time (the extension served by host_api.cpp instead of the worker). A job
// without a traceparent keeps one trace across its attempts too.
TEST_F(Otel, RetriedJobHasOneSpanPerAttemptInOneTrace) {
  OtlpReceiver recv;
  std::string cfg = otel_config("interval = \"50ms\"\n");
  HttpRunner r = start_http_runner(
      plugins(), env_,
      {"--config", cfg, "--otel-endpoint", recv.endpoint(), "--isolation", "none"});
  ASSERT_GT(r.port, 0);
  Producer p = producer(7);
  int64_t traced = enqueue({"enqueue", "trace_probe", "--payload", R"({"fail_until": 2})",
                            "--traceparent", p.traceparent(), "--retry-schedule", "0,0,0"});
  int64_t untraced = enqueue(
      {"enqueue", "trace_probe", "--payload", R"({"fail_until": 1})", "--retry-schedule", "0,0"});
  ASSERT_TRUE(all_completed({traced, untraced}, std::chrono::seconds(60))) << r.proc->log();
  ASSERT_TRUE(wait_until([&] { return recv.spans().size() >= 5; }, std::chrono::seconds(30)))
      << r.proc->log();
  r.proc->signal(SIGTERM);
  ASSERT_EQ(r.proc->wait(std::chrono::seconds(60)), 0) << r.proc->log();

  std::vector<json> all = recv.spans();
  EXPECT_EQ(all.size(), 5u);
  std::vector<json> s = spans_of(all, traced);
  ASSERT_EQ(s.size(), 3u);
  std::set<std::string> span_ids;
  const char* outcomes[] = {"retried", "retried", "completed"};
  for (size_t i = 0; i < s.size(); ++i) {
    SCOPED_TRACE("attempt " + std::to_string(i + 1));
    EXPECT_EQ(s[i]["traceId"], p.trace_id);
    EXPECT_EQ(s[i]["parentSpanId"], p.span_id);
    EXPECT_EQ(attr(s[i], "jobrunner.job.attempt"), std::to_string(i + 1));
    EXPECT_EQ(attr(s[i], "jobrunner.job.outcome"), outcomes[i]);
    EXPECT_EQ(attr(s[i], "jobrunner.job.error_kind"), i < 2 ? "probe_failed" : "");
    EXPECT_EQ(s[i]["status"]["code"], i < 2 ? 2 : 1);
    if (i < 2) {
      EXPECT_EQ(s[i]["status"]["message"], "trace_probe fails this attempt on purpose");
    }
    span_ids.insert(s[i]["spanId"].get<std::string>());
  }
  EXPECT_EQ(span_ids.size(), 3u);
  EXPECT_EQ(result(traced)["traceparent"],
            "00-" + p.trace_id + "-" + s[2]["spanId"].get<std::string>() + "-01");
  std::vector<json> u = spans_of(all, untraced);
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0]["traceId"], u[1]["traceId"]);
  EXPECT_NE(u[0]["spanId"], u[1]["spanId"]);
  EXPECT_FALSE(u[0].contains("parentSpanId"));
  EXPECT_FALSE(u[1].contains("parentSpanId"));
}

// Without an endpoint there is no exporter: nothing is sent, and the handler gets the stored
// traceparent as it is (the runner passes the context through), none for a job without one.
// A traceparent that is not strictly W3C version 00 is refused by the CLI (exit 2, naming the
// flag) and the HTTP API (400 naming it), and nothing is enqueued.
TEST_F(Otel, NoEndpointPassesTheContextThroughAndBadTraceparentsAreRefused) {
  HttpRunner r = start_http_runner(plugins(), env_);
  ASSERT_GT(r.port, 0);
  Producer p = producer(9);
  int64_t traced =
      enqueue({"enqueue", "trace_probe", "--payload", "{}", "--traceparent", p.traceparent()});
  int64_t untraced = enqueue({"enqueue", "trace_probe", "--payload", "{}"});
  ASSERT_TRUE(all_completed({traced, untraced}, std::chrono::seconds(60))) << r.proc->log();
  EXPECT_EQ(result(traced)["traceparent"], p.traceparent());
  EXPECT_TRUE(result(untraced)["traceparent"].is_null()) << result(untraced).dump();
  EXPECT_EQ(result(untraced)["rc"], 0);
  EXPECT_EQ(r.proc->log().find("OpenTelemetry"), std::string::npos);

  int64_t before = count("SELECT count(*) FROM jr_jobs_all");
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"00-" + p.trace_id + "-" + p.span_id + "-1", "must be 55 characters"},
      {"00-" + std::string(32, 'A') + "-" + p.span_id + "-01", "must be 00-<32 hex trace id>"},
      {"01-" + p.trace_id + "-" + p.span_id + "-01", "has version 01, not 00"},
      {"ff-" + p.trace_id + "-" + p.span_id + "-01", "has version ff, not 00"},
      {"00-" + std::string(32, '0') + "-" + p.span_id + "-01", "has an all-zero trace id"},
      {"00-" + p.trace_id + "-" + std::string(16, '0') + "-01", "has an all-zero parent id"},
  };
  for (const auto& [tp, why] : bad) {
    SCOPED_TRACE(tp);
    auto c = run_runner({"enqueue", "trace_probe", "--payload", "{}", "--traceparent", tp}, env_);
    EXPECT_EQ(c.exit_code, 2);
    EXPECT_NE(c.err.find("--traceparent \"" + tp + "\": " + why), std::string::npos) << c.err;
    auto res = post_job(r, tp, R"({"kind": "trace_probe"})");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400);
    EXPECT_NE(res->body.find("'traceparent' " + why), std::string::npos) << res->body;
  }
  // The header and the body disagreeing is refused too; agreeing is fine.
  auto res =
      post_job(r, p.traceparent(),
               R"({"kind": "trace_probe", "traceparent": ")" + producer(10).traceparent() + "\"}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("traceparent"), std::string::npos) << res->body;
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all"), before);
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(60)), 0) << r.proc->log();
}

// A collector that accepts connections and never answers holds every export request; jobs go
// on completing all the same (none waits for the exporter: they all complete before the
// collector has answered a single request), the bounded queue drops what does not fit (counted
// in /metrics, logged once), and a SIGTERM still exits promptly: the flush at shutdown is bound
// by shutdown_timeout even with a request in flight.
TEST_F(Otel, StalledCollectorNeverDelaysJobs) {
  OtlpReceiver recv(/*stall=*/true);
  std::string cfg = otel_config(
      "interval = \"20ms\"\nbatch_size = 4\nqueue_size = 8\ntimeout = \"60s\"\n"
      "shutdown_timeout = \"1s\"\n");
  HttpRunner r = start_http_runner(plugins(), env_,
                                   {"--config", cfg, "--otel-endpoint", recv.endpoint(),
                                    "--concurrency", "8", "--shutdown-grace", "5s"});
  ASSERT_GT(r.port, 0);
  std::vector<int64_t> ids =
      enqueue_many("trace_probe", 200, "{}", {"--traceparent", producer(20).traceparent()});
  ASSERT_EQ(ids.size(), 200u);
  ASSERT_TRUE(all_completed(ids, std::chrono::seconds(120))) << r.proc->log();
  // (--payload-file inserts with COPY: each job keeps the traceparent.)
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE options->>'traceparent' = '" +
                  producer(20).traceparent() + "'"),
            200);
  EXPECT_GE(recv.requests(), 1);      // the exporter is stuck in a request...
  EXPECT_TRUE(recv.spans().empty());  // ...that was never answered, while every job completed
  auto m = scrape(r);
  EXPECT_EQ(prom_value(m, "jobrunner_otel_spans_exported_total"), 0);
  // 200 spans, at most 8 queued and 4 in the stuck request: the rest were dropped.
  EXPECT_GE(prom_value(m, "jobrunner_otel_spans_dropped_total{reason=\"queue_full\"}"), 188);
  std::string log = r.proc->log();
  size_t first = log.find("OpenTelemetry span queue is full");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("OpenTelemetry span queue is full", first + 1), std::string::npos);
  auto t0 = std::chrono::steady_clock::now();
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(30)), 0) << r.proc->log();
  // The 60 s request is cut at the 1 s shutdown bound (libcurl checks about once a second).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

// A collector that is not there at all (connection refused): every request fails and is retried
// a bounded number of times, the spans are dropped and counted, and jobs complete as before.
TEST_F(Otel, DeadCollectorNeverDelaysJobs) {
  std::string cfg = otel_config("interval = \"20ms\"\nbatch_size = 4\nqueue_size = 8\n");
  HttpRunner r =
      start_http_runner(plugins(), env_,
                        {"--config", cfg, "--otel-endpoint",
                         "http://127.0.0.1:" + std::to_string(dead_port()), "--concurrency", "8"});
  ASSERT_GT(r.port, 0);
  std::vector<int64_t> ids =
      enqueue_many("trace_probe", 200, "{}", {"--traceparent", producer(30).traceparent()});
  ASSERT_TRUE(all_completed(ids, std::chrono::seconds(120))) << r.proc->log();
  auto m = scrape(r);
  EXPECT_EQ(prom_value(m, "jobrunner_otel_spans_exported_total"), 0);
  double dropped = prom_value(m, "jobrunner_otel_spans_dropped_total{reason=\"queue_full\"}") +
                   prom_value(m, "jobrunner_otel_spans_dropped_total{reason=\"export_failed\"}");
  EXPECT_GT(dropped, 0);
  EXPECT_GT(prom_value(m, "jobrunner_otel_export_errors_total"), 0);
  // The first batch fails after its retries (100 + 200 + 400 ms of backoff), logged.
  EXPECT_TRUE(wait_until(
      [&] { return r.proc->log().find("OpenTelemetry export failed") != std::string::npos; },
      std::chrono::seconds(30)))
      << r.proc->log();
  r.proc->signal(SIGTERM);
  EXPECT_EQ(r.proc->wait(std::chrono::seconds(60)), 0) << r.proc->log();
}

}  // namespace
}  // namespace jrtest
