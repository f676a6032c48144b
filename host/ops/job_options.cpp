#include "ops/job_options.hpp"

#include <set>
#include <stdexcept>

#include "util.hpp"

namespace jr::ops {
namespace {

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw std::invalid_argument("'" + field + "' " + what);
}

double number(const nlohmann::json& body, const char* key, double min) {
  const auto& v = body[key];
  if (!v.is_number()) bad(key, "must be a number");
  double d = v.get<double>();
  if (d < min) bad(key, "must be at least " + std::to_string(static_cast<int64_t>(min)));
  return d;
}

int integer(const nlohmann::json& body, const char* key, int64_t min, int64_t max) {
  const auto& v = body[key];
  if (!v.is_number_integer()) bad(key, "must be an integer");
  int64_t i = v.get<int64_t>();
  if (i < min || i > max) {
    bad(key, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return static_cast<int>(i);
}

std::string text(const nlohmann::json& body, const char* key) {
  const auto& v = body[key];
  if (!v.is_string() || v.get<std::string>().empty()) bad(key, "must be a non-empty string");
  return v.get<std::string>();
}

}  // namespace

void check_webhook_url(const std::string& url) {
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    throw std::invalid_argument("webhook URL must start with http:// or https://");
  }
  if (url.size() <= scheme_end + 3 || url[scheme_end + 3] == '/') {
    throw std::invalid_argument("webhook URL has no host");
  }
}

JobInsertParams job_from_json(const nlohmann::json& body) {
  if (!body.is_object()) throw std::invalid_argument("the request body must be a JSON object");
  static const std::set<std::string> known = {"kind",
                                              "payload",
                                              "queue",
                                              "priority",
                                              "delay_seconds",
                                              "run_at",
                                              "max_attempts",
                                              "timeout_seconds",
                                              "retry_schedule",
                                              "ttl_seconds",
                                              "result_ttl_seconds",
                                              "failure_ttl_seconds",
                                              "unique",
                                              "unique_key",
                                              "lock_key",
                                              "lock_limit",
                                              "depends_on",
                                              "webhook"};
  for (const auto& [k, v] : body.items()) {
    if (!known.count(k)) bad(k, "is not a known job option");
  }
  JobInsertParams p;
  if (!body.contains("kind")) throw std::invalid_argument("'kind' is required");
  p.kind = text(body, "kind");
  if (body.contains("payload")) {
    if (!body["payload"].is_object() && !body["payload"].is_array()) {
      bad("payload", "must be a JSON object or array");
    }
    p.payload = body["payload"].dump();
  }
  if (body.contains("queue")) p.queue = text(body, "queue");
  if (body.contains("priority")) p.priority = integer(body, "priority", -1000000, 1000000);
  if (body.contains("delay_seconds")) p.delay_seconds = number(body, "delay_seconds", 0);
  if (body.contains("run_at")) p.run_at = text(body, "run_at");
  if (body.contains("max_attempts")) p.max_attempts = integer(body, "max_attempts", 1, 1000000);
  if (body.contains("timeout_seconds")) {
    double t = number(body, "timeout_seconds", 0);
    if (t * 1000 < 1) bad("timeout_seconds", "must be at least 0.001");
    p.timeout_ms = static_cast<int64_t>(t * 1000);
  }
  if (body.contains("retry_schedule")) {
    const auto& v = body["retry_schedule"];
    std::string s;
    if (v.is_string()) {
      s = v.get<std::string>();
    } else if (v.is_array()) {
      for (const auto& e : v) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0) {
          bad("retry_schedule", "must hold whole seconds >= 0");
        }
        s += (s.empty() ? "" : ",") + std::to_string(e.get<int64_t>());
      }
    } else {
      bad("retry_schedule", "must be \"60,300,900\" or [60, 300, 900]");
    }
    try {
      parse_retry_schedule(s);
    } catch (const std::invalid_argument& e) {
      bad("retry_schedule", e.what());
    }
    p.retry_schedule = s;
  }
  if (body.contains("ttl_seconds")) p.ttl_seconds = number(body, "ttl_seconds", 0);
  if (body.contains("result_ttl_seconds")) {
    p.result_ttl_seconds = number(body, "result_ttl_seconds", 0);
  }
  if (body.contains("failure_ttl_seconds")) {
    p.failure_ttl_seconds = number(body, "failure_ttl_seconds", 0);
  }
  if (body.contains("unique")) {
    if (!body["unique"].is_boolean()) bad("unique", "must be true or false");
    p.unique = body["unique"].get<bool>();
  }
  if (body.contains("unique_key")) {
    if (p.unique) bad("unique_key", "cannot be combined with \"unique\": true");
    p.unique_key = text(body, "unique_key");
  }
  if (body.contains("lock_key")) p.lock_key = text(body, "lock_key");
  if (body.contains("lock_limit")) {
    if (!p.lock_key) bad("lock_limit", "needs lock_key");
    p.lock_limit = integer(body, "lock_limit", 1, 1000000);
  }
  if (body.contains("depends_on")) {
    const auto& v = body["depends_on"];
    if (!v.is_array()) bad("depends_on", "must be an array of job ids");
    for (const auto& e : v) {
      if (!e.is_number_integer()) bad("depends_on", "must be an array of job ids");
      p.depends_on.push_back(e.get<int64_t>());
    }
  }
  if (body.contains("webhook")) {
    std::string url = text(body, "webhook");
    try {
      check_webhook_url(url);
    } catch (const std::invalid_argument& e) {
      bad("webhook", e.what());
    }
    p.webhook = url;
  }
  return p;
}

}  // namespace jr::ops
