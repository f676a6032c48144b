// Unit tests of host/ops pieces that need no database: the metrics text format (checked by the
// strict parser the end-to-end tests use, which is itself tested here on bad input), HMAC
// signatures, address parsing, job options, and redaction of secrets.
#include <gtest/gtest.h>

#include <cmath>

#include "job_options.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "prom_parse.hpp"
#include "server.hpp"
#include "webhooks.hpp"

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
  EXPECT_EQ(err(R"({"kind": "e", "priority": "high"})"),
            "'priority' must be an integer between -1000000 and 1000000, got a string");
  EXPECT_EQ(err(R"({"kind": "e", "max_attempts": 0})"),
            "'max_attempts' must be an integer between 1 and 1000000, got 0");
  EXPECT_EQ(err(R"({"kind": "e", "webhook": "ftp://x"})"),
            "'webhook' webhook URL must start with http:// or https://");
  EXPECT_EQ(err(R"({"kind": "e", "lock_limit": 2})"), "'lock_limit' needs lock_key");
  EXPECT_EQ(err("[1]"), "the request body must be a JSON object");
}

// Issue 17: every integer is range-checked (no wrap-around), NUL and invalid UTF-8 are refused
// wherever libpq or jsonb would cut or refuse them, and payloads are objects, for every entry
// point (the API body here; the CLI and plugins go through job_from_parts).
TEST(JobOptions, RangesNulsAndPayloadsAreCheckedBeforeTheDatabase) {
  auto err = [](const std::string& body) {
    try {
      jr::ops::job_from_json(nlohmann::json::parse(body));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // 2^64-1 used to be stored as -1, and 2^63 as a negative parent id.
  EXPECT_EQ(err(R"({"kind": "e", "priority": 18446744073709551615})"),
            "'priority' must be an integer between -1000000 and 1000000, got "
            "18446744073709551615");
  EXPECT_EQ(err(R"({"kind": "e", "depends_on": [9223372036854775808]})"),
            "'depends_on' must be an integer between 1 and 9223372036854775807, got "
            "9223372036854775808");
  EXPECT_EQ(err(R"({"kind": "e", "depends_on": [0]})"),
            "'depends_on' must be an integer between 1 and 9223372036854775807, got 0");
  EXPECT_EQ(err(R"({"kind": "e", "lock_key": "k", "lock_limit": 4294967297})"),
            "'lock_limit' must be an integer between 1 and 1000000, got 4294967297");
  EXPECT_EQ(err(R"({"kind": "e", "max_attempts": 1e30})"),
            "'max_attempts' must be an integer between 1 and 1000000, got 1e+30");
  EXPECT_EQ(err(R"({"kind": "e", "retry_schedule": [1, 4294967296]})"),
            "'retry_schedule' must be an integer between 0 and 2147483647, got 4294967296");
  EXPECT_EQ(err(R"({"kind": "e", "priority": 7.0})"), "no error");  // an integer, written 7.0
  EXPECT_EQ(err(R"({"kind": "e", "priority": 7.5})"),
            "'priority' must be an integer between -1000000 and 1000000, got 7.5");
  EXPECT_EQ(err(R"({"kind": "e", "delay_seconds": 1e300})"),
            "'delay_seconds' must be between 0 and 3155760000 seconds (100 years), got 1e+300");
  EXPECT_EQ(err(R"({"kind": "e", "timeout_seconds": 0})"),
            "'timeout_seconds' must be between 0.001 and 3155760000 seconds (100 years), got 0");
  // A NUL in kind or queue was cut by libpq: "echo\u0000evil" ran as echo.
  EXPECT_EQ(err(R"({"kind": "echo\u0000evil"})"),
            "'kind' must be 1 to 128 characters of A-Z a-z 0-9 _ . : - (as a plugin declares "
            "it); NUL at offset 4 of \"echo\\u0000evil\"");
  EXPECT_EQ(err(R"({"kind": "e", "queue": "q\u0000x"})"),
            "'queue' contains a NUL character (U+0000 at offset 1)");
  EXPECT_EQ(err(R"({"kind": "e", "unique_key": "a\u0000"})"),
            "'unique_key' contains a NUL character (U+0000 at offset 1)");
  EXPECT_EQ(err(R"({"kind": "e", "lock_key": "\tk"})"),
            "'lock_key' contains a control character (U+0009 at offset 0)");
  EXPECT_EQ(err(R"({"kind": "e", "webhook": "http://h/\u0000"})"),
            "'webhook' contains a NUL character (U+0000 at offset 9)");
  EXPECT_EQ(err(R"({"kind": "e", "queue": ")" + std::string(1025, 'q') + "\"}"),
            "'queue' is longer than 1024 bytes (1025)");
  EXPECT_EQ(err(R"({"kind": "e", "run_at": "garbage"})"),
            "'run_at' must be an ISO 8601 time such as 2026-11-24T09:00:00Z, got \"garbage\"");
  // Payloads: an object, without NUL anywhere (jsonb refuses \u0000).
  EXPECT_EQ(err(R"({"kind": "e", "payload": [1]})"),
            "'payload' must be a JSON object, got an array");
  EXPECT_EQ(err(R"({"kind": "e", "payload": {"a": {"b": ["x\u0000"]}}})"),
            "'payload' contains a NUL character (\\u0000) at \"a\".\"b\"[0] (PostgreSQL cannot "
            "store it)");
  EXPECT_EQ(err(R"({"kind": "e", "payload": {"k\u0000": 1}})"),
            "'payload' contains a NUL character (\\u0000) at \"k\\u0000\" (PostgreSQL cannot "
            "store it)");
  // The unknown-key message names the key as given (escaped when it holds control bytes).
  EXPECT_EQ(err(R"({"kind": "e", "uniq\u0001": true})"), "'uniq\\u0001' is not a known job option");

  // Invalid UTF-8 cannot come through JSON text, but does through the CLI and plugins.
  auto parts_err = [](const std::string& kind, const nlohmann::json& options) {
    try {
      jr::ops::job_from_parts(kind, nlohmann::json::object(), options);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(parts_err("e", {{"queue", std::string("q\xff")}}),
            "'queue' is not valid UTF-8 (byte 0xff at offset 1)");
  EXPECT_EQ(parts_err("e", {{"queue", std::string("\xc3\xa9t\xc3\xa9")}}), "no error");
  EXPECT_EQ(parts_err("e", {{"queue", std::string("\xc0\xafx")}}),  // overlong '/'
            "'queue' is not valid UTF-8 (byte 0xc0 at offset 0)");
  EXPECT_EQ(parts_err("e", {{"lock_key", std::string("\xe2\x82")}}),  // cut mid-character
            "'lock_key' is not valid UTF-8 (byte 0xe2 at offset 0)");
  EXPECT_EQ(parts_err("e", nlohmann::json::array()),
            "'options' must be a JSON object, got an array");

  // JSON-lines payloads are checked without building them.
  auto text_err = [](std::string_view t) {
    try {
      jr::ops::check_payload_text(t);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(text_err(R"({"a": [1, {"b": "ok"}]})"), "no error");
  EXPECT_EQ(
      text_err(R"({"a": "\u0000"})"),
      "'payload' contains a NUL character (\\u0000) in a string (PostgreSQL cannot store it)");
  EXPECT_EQ(text_err(R"({"a": "\\u0000"})"), "no error");  // a backslash, then "u0000"
  EXPECT_EQ(text_err("[1]"), "'payload' must be a JSON object, got an array");
  EXPECT_EQ(text_err("\"s\""), "'payload' must be a JSON object, got a string");
  EXPECT_EQ(text_err("{\"a\": \"\xff\"}").rfind("'payload' is not valid JSON", 0), 0u);
}

TEST(JobOptions, Iso8601TimesAndJobIds) {
  using jr::ops::is_iso8601_time;
  for (const char* ok :
       {"2026-11-24", "2026-11-24T09:00", "2026-11-24t09:00:00z", "2026-11-24 09:00:00+0530",
        "2026-11-24T09:00:00.123456789+05:30", "2024-02-29", "2026-12-03T10:23:20.300123+00:00",
        "0001-01-01T00:00Z", "2026-11-24T09:00:60Z", "9999-12-31T23:59:59-15"}) {
    EXPECT_TRUE(is_iso8601_time(ok)) << ok;
  }
  for (const char* bad :
       {"garbage", "", "2026-13-01", "2025-02-29", "2026-11-31", "0000-01-01", "2026-11-24T24:00",
        "2026-11-24T09:60", "2026-11-24T09:00:00,5Z", "2026-11-24T09:00:00+16:00",
        "2026-11-24T09:00:00Z ", "now", "26-11-24", "2026-11-24T09"}) {
    EXPECT_FALSE(is_iso8601_time(bad)) << bad;
  }
  using jr::ops::parse_job_id;
  EXPECT_EQ(parse_job_id("1"), 1);
  EXPECT_EQ(parse_job_id("9223372036854775807"), INT64_MAX);
  for (const char* bad :
       {"0", "-1", "+1", "99999999999999999999", "9223372036854775808", "1x", "", " 1", "abc"}) {
    EXPECT_THROW(parse_job_id(bad), std::invalid_argument) << bad;
  }
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
