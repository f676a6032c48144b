// W3C trace context for jobs (host/core/trace_context.hpp) and the OTLP/JSON encoding of attempt
// spans (host/ops/otel_exporter.hpp): pure functions, no database, no network.
#include "trace_context.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "attempt_span.hpp"
#include "otel_exporter.hpp"

namespace {

using jr::trace::attempt_trace;
using jr::trace::parse_traceparent;
using jr::trace::traceparent_refusal;

const std::string kTp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceContext, AcceptsVersion00InLowercaseHexOnly) {
  EXPECT_EQ(traceparent_refusal(kTp), "");
  auto p = parse_traceparent(kTp);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(p->span_id, "00f067aa0ba902b7");
  EXPECT_TRUE(p->sampled());
  EXPECT_FALSE(parse_traceparent(kTp.substr(0, 53) + "00")->sampled());
  EXPECT_EQ(traceparent_refusal("").rfind("must be 55 characters", 0), 0u);
  EXPECT_EQ(traceparent_refusal(kTp + "-00").rfind("must be 55 characters", 0), 0u);
  EXPECT_EQ(traceparent_refusal(kTp.substr(1)).rfind("must be 55 characters", 0), 0u);
  std::string upper = kTp;
  upper[5] = 'F';
  EXPECT_NE(traceparent_refusal(upper).find("lowercase hex"), std::string::npos);
  std::string dash = kTp;
  dash[35] = '_';
  EXPECT_NE(traceparent_refusal(dash).find("lowercase hex"), std::string::npos);
  EXPECT_EQ(traceparent_refusal("ff" + kTp.substr(2)), "has version ff, not 00");
  EXPECT_EQ(traceparent_refusal("01" + kTp.substr(2)), "has version 01, not 00");
  EXPECT_EQ(traceparent_refusal("00-" + std::string(32, '0') + kTp.substr(35)),
            "has an all-zero trace id");
  EXPECT_EQ(traceparent_refusal(kTp.substr(0, 36) + std::string(16, '0') + "-01"),
            "has an all-zero parent id");
  EXPECT_FALSE(parse_traceparent(std::string(55, '0')));
}

TEST(TraceContext, RandomIdsAreHexAndNotZero) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string t = jr::trace::random_trace_id(), s = jr::trace::random_span_id();
    EXPECT_EQ(traceparent_refusal(jr::trace::format_traceparent(t, s, 1)), "") << t << " " << s;
    seen.insert(s);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(TraceContext, AttemptTrace) {
  // With an exporter: a child of the producer's span, in its trace, handed to the plugin.
  auto a = attempt_trace(kTp, 42, 1764770000.123456, true);
  EXPECT_EQ(a.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(a.parent_span_id, "00f067aa0ba902b7");
  EXPECT_TRUE(a.record);
  EXPECT_EQ(a.handed, "00-" + a.trace_id + "-" + a.span_id + "-01");
  EXPECT_NE(a.span_id, a.parent_span_id);
  EXPECT_NE(attempt_trace(kTp, 42, 1764770000.123456, true).span_id, a.span_id);
  // An unsampled producer: no span exported, but the handler still gets the attempt's context.
  auto u = attempt_trace(kTp.substr(0, 53) + "00", 42, 1, true);
  EXPECT_FALSE(u.record);
  EXPECT_EQ(u.handed, "00-" + u.trace_id + "-" + u.span_id + "-00");
  // No traceparent: the job's own trace, the same for every attempt, a root span.
  auto r1 = attempt_trace("", 42, 1764770000.123456, true);
  auto r2 = attempt_trace("", 42, 1764770000.123456, true);
  EXPECT_EQ(r1.trace_id, r2.trace_id);
  EXPECT_NE(r1.span_id, r2.span_id);
  EXPECT_EQ(r1.parent_span_id, "");
  EXPECT_TRUE(r1.record);
  EXPECT_NE(attempt_trace("", 43, 1764770000.123456, true).trace_id, r1.trace_id);
  EXPECT_NE(attempt_trace("", 42, 1764770000.123457, true).trace_id, r1.trace_id);
  // Without an exporter: the stored context passes through; nothing is recorded.
  auto p = attempt_trace(kTp, 42, 1, false);
  EXPECT_FALSE(p.record);
  EXPECT_EQ(p.handed, kTp);
  EXPECT_EQ(attempt_trace("", 42, 1, false).handed, "");
}

TEST(OtlpEncoding, ExportTraceServiceRequestAsJson) {
  jr::ops::OtelOptions o;
  o.endpoint = "http://127.0.0.1:4318/";
  o.service_name = "svc";
  jr::ops::OtlpExporter e(o);  // not started: no thread, no request
  jr::AttemptSpan s;
  s.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
  s.span_id = "1111111111111111";
  s.parent_span_id = "00f067aa0ba902b7";
  s.start_unix_ns = 1764770000123456789;
  s.end_unix_ns = 1764770000223456789;
  s.job_id = 9007199254740993;  // beyond a double's integers: intValue is a string
  s.kind = "k";
  s.queue = "q";
  s.attempt = 2;
  s.outcome = "retried";
  s.error_kind = "timeout";
  s.error = std::string("bad \xff byte");
  s.wait_seconds = 0.25;
  jr::AttemptSpan root = s;
  root.parent_span_id.clear();
  root.outcome = "completed";
  root.error_kind.clear();
  root.error.clear();
  auto j = nlohmann::json::parse(e.encode({s, root}));
  const auto& rs = j.at("resourceSpans").at(0);
  EXPECT_EQ(rs["resource"]["attributes"][0],
            (nlohmann::json{{"key", "service.name"}, {"value", {{"stringValue", "svc"}}}}));
  const auto& spans = rs.at("scopeSpans").at(0).at("spans");
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0]["traceId"], s.trace_id);
  EXPECT_EQ(spans[0]["spanId"], s.span_id);
  EXPECT_EQ(spans[0]["parentSpanId"], s.parent_span_id);
  EXPECT_EQ(spans[0]["startTimeUnixNano"], "1764770000123456789");
  EXPECT_EQ(spans[0]["endTimeUnixNano"], "1764770000223456789");
  EXPECT_EQ(spans[0]["kind"], 5);
  EXPECT_EQ(spans[0]["status"]["code"], 2);
  EXPECT_EQ(spans[0]["status"]["message"], "bad \xef\xbf\xbd byte");
  bool id = false, wait = false, error_kind = false;
  for (const auto& a : spans[0]["attributes"]) {
    if (a["key"] == "jobrunner.job.id") id = a["value"]["intValue"] == "9007199254740993";
    if (a["key"] == "jobrunner.job.wait_seconds") wait = a["value"]["doubleValue"] == 0.25;
    if (a["key"] == "jobrunner.job.error_kind") error_kind = a["value"]["stringValue"] == "timeout";
  }
  EXPECT_TRUE(id && wait && error_kind) << spans[0].dump();
  EXPECT_FALSE(spans[1].contains("parentSpanId"));
  EXPECT_EQ(spans[1]["status"]["code"], 1);
  EXPECT_THROW(jr::ops::check_otel_endpoint("collector:4318"), std::invalid_argument);
  EXPECT_THROW(jr::ops::check_otel_endpoint("http:///v1"), std::invalid_argument);
  EXPECT_NO_THROW(jr::ops::check_otel_endpoint("https://collector.example:4318"));
}

}  // namespace
