// Unit tests of host/ops pieces that need no database: the metrics text format (checked by the
// strict parser the end-to-end tests use, which is itself tested here on bad input), HMAC
// signatures, address parsing, job options, and redaction of secrets.
#include <gtest/gtest.h>

#include <cmath>

#include "log.hpp"
#include "ops/job_options.hpp"
#include "ops/metrics.hpp"
#include "ops/server.hpp"
#include "ops/webhooks.hpp"
#include "prom_parse.hpp"

using jrtest::parse_prometheus;
using jrtest::PromParseError;

TEST(PromParser, RejectsMalformedExpositions) {
  EXPECT_NO_THROW(parse_prometheus("# HELP a x\n# TYPE a counter\na 1\n"));
  EXPECT_THROW(parse_prometheus("a 1\n"), PromParseError);                           // no TYPE
  EXPECT_THROW(parse_prometheus("# TYPE a counter\na{x=\"1} 1\n"), PromParseError);  // quote
  EXPECT_THROW(parse_prometheus("# TYPE a counter\na{x=\"\\t\"} 1\n"), PromParseError);
  EXPECT_THROW(parse_prometheus("# TYPE a counter\na one\n"), PromParseError);
  EXPECT_THROW(parse_prometheus("# TYPE a counter\na 1\na 2\n"), PromParseError);  // twice
  EXPECT_THROW(parse_prometheus("# TYPE a counter\na 1\n# TYPE a counter\n"), PromParseError);
  EXPECT_THROW(parse_prometheus("# TYPE 1a gauge\n"), PromParseError);
  EXPECT_THROW(parse_prometheus("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} "
                                "1\nh_count 1\nh_sum 0\n"),
               PromParseError);  // not cumulative
  EXPECT_THROW(parse_prometheus("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} "
                                "2\nh_count 3\nh_sum 0\n"),
               PromParseError);  // +Inf != count
  EXPECT_THROW(parse_prometheus("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n"),
               PromParseError);  // no +Inf
}

TEST(Metrics, RendersValidTextWithEscapedLabels) {
  jr::ops::Registry r;
  auto& c = r.counter("t_jobs_total", "Jobs.\nSecond line \\ with backslash", {"kind", "queue"});
  c.inc({"echo", "default"});
  c.inc({"echo", "default"}, 2);
  c.inc({"we\"ird\\kind\nx", "q"});
  auto& h = r.histogram("t_duration_seconds", "Durations.", {"kind"}, {0.1, 1, 10});
  for (double v : {0.05, 0.5, 0.5, 5.0, 50.0}) h.observe({"echo"}, v);
  r.collector([](jr::ops::TextWriter& w) {
    w.family("t_gauge", "gauge", "A gauge.");
    w.sample("t_gauge", {{"queue", "a,b=c"}}, 2.5);
  });
  std::string text = r.render();
  auto m = parse_prometheus(text);
  EXPECT_EQ(m.at("t_jobs_total{kind=\"echo\",queue=\"default\"}"), 3);
  EXPECT_EQ(m.at("t_jobs_total{kind=\"we\"ird\\kind\nx\",queue=\"q\"}"), 1);
  EXPECT_NE(text.find("kind=\"we\\\"ird\\\\kind\\nx\""), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP t_jobs_total Jobs.\\nSecond line \\\\ with backslash\n"),
            std::string::npos);
  EXPECT_EQ(m.at("t_duration_seconds_bucket{kind=\"echo\",le=\"0.1\"}"), 1);
  EXPECT_EQ(m.at("t_duration_seconds_bucket{kind=\"echo\",le=\"1\"}"), 3);
  EXPECT_EQ(m.at("t_duration_seconds_bucket{kind=\"echo\",le=\"10\"}"), 4);
  EXPECT_EQ(m.at("t_duration_seconds_bucket{kind=\"echo\",le=\"+Inf\"}"), 5);
  EXPECT_EQ(m.at("t_duration_seconds_count{kind=\"echo\"}"), 5);
  EXPECT_DOUBLE_EQ(m.at("t_duration_seconds_sum{kind=\"echo\"}"), 56.05);
  EXPECT_EQ(m.at("t_gauge{queue=\"a,b=c\"}"), 2.5);
}

TEST(Metrics, SandboxProviderHook) {
  EXPECT_FALSE(jr::ops::has_sandbox_stats_provider());
  jr::ops::set_sandbox_stats_provider([] {
    return std::vector<jr::ops::SandboxPluginStats>{{"echo", 3, {{"crash", 2}}}};
  });
  auto s = jr::ops::sandbox_stats();
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].restarts.at("crash"), 2);
  jr::ops::set_sandbox_stats_provider({});
  EXPECT_TRUE(jr::ops::sandbox_stats().empty());
}

TEST(Webhooks, HmacSha256MatchesRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(jr::ops::hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Http, ListenAddressDefaultsToLoopback) {
  using jr::ops::parse_listen_address;
  EXPECT_EQ(parse_listen_address("9090"), std::make_pair(std::string("127.0.0.1"), 9090));
  EXPECT_EQ(parse_listen_address(":9090"), std::make_pair(std::string("127.0.0.1"), 9090));
  EXPECT_EQ(parse_listen_address("0.0.0.0:80"), std::make_pair(std::string("0.0.0.0"), 80));
  EXPECT_EQ(parse_listen_address("[::1]:9090"), std::make_pair(std::string("::1"), 9090));
  EXPECT_THROW(parse_listen_address("localhost"), std::invalid_argument);
  EXPECT_THROW(parse_listen_address("1:99999"), std::invalid_argument);
  EXPECT_THROW(parse_listen_address("[::1]9090"), std::invalid_argument);
}

TEST(JobOptions, ParsesEveryOptionAndNamesBadOnes) {
  auto p = jr::ops::job_from_json(nlohmann::json::parse(R"({
    "kind": "echo", "payload": {"a": 1}, "queue": "q", "priority": 5, "delay_seconds": 2,
    "max_attempts": 3, "timeout_seconds": 1.5, "retry_schedule": [1, 2], "ttl_seconds": 60,
    "result_ttl_seconds": 10, "failure_ttl_seconds": 20, "unique_key": "u", "lock_key": "l",
    "lock_limit": 2, "depends_on": [1, 2], "webhook": "http://127.0.0.1:1/x"})"));
  EXPECT_EQ(p.kind, "echo");
  EXPECT_EQ(p.payload, R"({"a":1})");
  EXPECT_EQ(*p.queue, "q");
  EXPECT_EQ(p.priority, 5);
  EXPECT_EQ(*p.timeout_ms, 1500);
  EXPECT_EQ(*p.retry_schedule, "1,2");
  EXPECT_EQ(*p.lock_limit, 2);
  EXPECT_EQ(p.depends_on, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(*p.webhook, "http://127.0.0.1:1/x");
  auto err = [](const char* body) {
    try {
      jr::ops::job_from_json(nlohmann::json::parse(body));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(err(R"({"payload": {}})"), "'kind' is required");
  EXPECT_EQ(err(R"({"kind": "e", "colour": 1})"), "'colour' is not a known job option");
  EXPECT_EQ(err(R"({"kind": "e", "priority": "high"})"), "'priority' must be an integer");
  EXPECT_EQ(err(R"({"kind": "e", "max_attempts": 0})"),
            "'max_attempts' must be between 1 and 1000000");
  EXPECT_EQ(err(R"({"kind": "e", "webhook": "ftp://x"})"),
            "'webhook' webhook URL must start with http:// or https://");
  EXPECT_EQ(err(R"({"kind": "e", "lock_limit": 2})"), "'lock_limit' needs lock_key");
  EXPECT_EQ(err("[1]"), "the request body must be a JSON object");
}

TEST(Redact, SecretsAnywhereInText) {
  using jr::log::redact;
  EXPECT_EQ(redact("cannot connect to postgresql://app:pw1@db:5432/x: refused"),
            "cannot connect to postgresql://app:***@db:5432/x: refused");
  EXPECT_EQ(redact("GET http://h/hook?token=abc123&x=1"), "GET http://h/hook?token=***&x=1");
  EXPECT_EQ(redact("Authorization: Bearer abc.def-123"), "Authorization: Bearer ***");
  EXPECT_EQ(redact("{\"url\":\"postgresql:///x?host=/tmp&password=pw2\"}"),
            "{\"url\":\"postgresql:///x?host=/tmp&password=***\"}");
  EXPECT_EQ(redact("no secrets in 30 tokens here"), "no secrets in 30 tokens here");
}
