#include "job_options.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <stdexcept>

#include "trace_context.hpp"
#include "util.hpp"

namespace jr::ops {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& field, const std::string& detail) {
  throw JobOptionError(field, detail);
}

// A JSON value shown in a message, shortened.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string type_of(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_null()) return "null";
  if (v.is_array()) return "an array";
  return "an object";
}

// An integer in [min, max]. Unsigned values above 2^63-1 and integral floats (1e2) are read
// exactly, so nothing wraps: 18446744073709551615 is out of range, not -1.
int64_t integer(const json& v, const std::string& field, int64_t min, int64_t max) {
  auto range = [&] {
    bad(field, "must be an integer between " + std::to_string(min) + " and " + std::to_string(max) +
                   ", got " + shown(v));
  };
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) range();
    int64_t i = static_cast<int64_t>(u);
    if (i < min) range();
    return i;
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < min || i > max) range();
    return i;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    // Exactly representable integers only (|d| <= 2^53), so the comparison below is exact.
    if (!std::isfinite(d) || std::trunc(d) != d || std::fabs(d) > 9007199254740992.0) range();
    auto i = static_cast<int64_t>(d);
    if (i < min || i > max) range();
    return i;
  }
  bad(field, "must be an integer between " + std::to_string(min) + " and " + std::to_string(max) +
                 ", got " + type_of(v));
}

// Seconds in [min, 100 years].
double seconds(const json& v, const std::string& field, double min) {
  if (!v.is_number()) bad(field, "must be a number of seconds, got " + type_of(v));
  double d = v.get<double>();
  if (!std::isfinite(d) || d < min || d > kMaxDurationSeconds) {
    char lo[32];
    std::snprintf(lo, sizeof lo, "%g", min);
    bad(field, std::string("must be between ") + lo + " and " +
                   std::to_string(static_cast<int64_t>(kMaxDurationSeconds)) +
                   " seconds (100 years), got " + shown(v));
  }
  return d;
}

// Valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). Returns the offset of the
// first bad byte, or npos.
size_t utf8_error_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return i;
    }
    if (i + static_cast<size_t>(n) >= s.size()) return i;  // cut short
    for (int k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n + 1;
  }
  return std::string_view::npos;
}

// A name-like text option: non-empty, at most `max` bytes, valid UTF-8, no control characters
// (NUL included: libpq would cut the text there).
void check_text(const std::string& field, std::string_view s, size_t max) {
  if (s.empty()) bad(field, "must not be empty");
  if (s.size() > max) {
    bad(field,
        "is longer than " + std::to_string(max) + " bytes (" + std::to_string(s.size()) + ")");
  }
  if (size_t at = utf8_error_at(s); at != std::string_view::npos) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", static_cast<unsigned char>(s[at]));
    bad(field,
        "is not valid UTF-8 (byte " + std::string(hex) + " at offset " + std::to_string(at) + ")");
  }
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      char code[8];
      std::snprintf(code, sizeof code, "U+%04X", c);
      bad(field, std::string(c == 0 ? "contains a NUL character" : "contains a control character") +
                     " (" + code + " at offset " + std::to_string(i) + ")");
    }
  }
}

std::string text(const json& body, const std::string& field, size_t max) {
  const auto& v = body[field];
  if (!v.is_string()) bad(field, "must be a string, got " + type_of(v));
  const auto& s = v.get_ref<const std::string&>();
  check_text(field, s, max);
  return s;
}

// Finds a NUL in any string or key of a JSON document; returns the path to it or "".
bool find_nul(const json& v, std::string& path) {
  if (v.is_string()) return v.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (v.is_object()) {
    for (const auto& [k, e] : v.items()) {
      if (k.find('\0') != std::string::npos || find_nul(e, path)) {
        path = "." + json(k).dump(-1, ' ', false, json::error_handler_t::replace) + path;
        return true;
      }
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (find_nul(v[i], path)) {
        path = "[" + std::to_string(i) + "]" + path;
        return true;
      }
    }
  }
  return false;
}

// The SAX side of check_payload_text: an object at the top, no NUL anywhere.
class PayloadSax : public nlohmann::json_sax<json> {
 public:
  std::string error;
  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a boolean"); }
  bool number_integer(number_integer_t) override { return scalar("an integer"); }
  bool number_unsigned(number_unsigned_t) override { return scalar("an integer"); }
  bool number_float(number_float_t, const string_t&) override { return scalar("a number"); }
  bool string(string_t& s) override { return scalar("a string") && no_nul(s, "a string"); }
  bool binary(binary_t&) override { return scalar("binary data"); }
  bool start_object(std::size_t) override {
    ++depth_;
    return true;
  }
  bool key(string_t& k) override { return no_nul(k, "a key"); }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 0) return top("an array");
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error = std::string("is not valid JSON: ") + e.what();
    return false;
  }

 private:
  bool scalar(const char* what) { return depth_ > 0 || top(what); }
  bool top(const char* what) {
    error = std::string("must be a JSON object, got ") + what;
    return false;
  }
  bool no_nul(const string_t& s, const char* where) {
    if (s.find('\0') == std::string::npos) return true;
    error = std::string("contains a NUL character (\\u0000) in ") + where +
            " (PostgreSQL cannot store it)";
    return false;
  }
  int depth_ = 0;
};

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

const std::vector<std::string>& job_option_keys() {
  static const std::vector<std::string> keys = {"queue",
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
                                                "webhook",
                                                "unique_for_seconds",
                                                "unique_states",
                                                "replace",
                                                "debounce_seconds",
                                                "debounce_max_seconds",
                                                "rate_key",
                                                "traceparent"};
  return keys;
}

void check_kind(std::string_view kind) {
  if (kind.empty() || kind.size() > 128) {
    bad("kind", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : -, got " +
                    std::to_string(kind.size()) + " bytes");
  }
  for (size_t i = 0; i < kind.size(); ++i) {
    char c = kind[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) {
      char code[8];
      std::snprintf(code, sizeof code, "0x%02x", static_cast<unsigned char>(c));
      bad("kind", "must be 1 to 128 characters of A-Z a-z 0-9 _ . : - (as a plugin declares it); " +
                      std::string(c == '\0' ? "NUL" : "byte ") + (c == '\0' ? "" : code) +
                      " at offset " + std::to_string(i) + " of " +
                      json(std::string(kind)).dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
}

void check_payload(const json& payload) {
  if (!payload.is_object()) bad("payload", "must be a JSON object, got " + type_of(payload));
  std::string path;
  if (find_nul(payload, path)) {
    bad("payload", "contains a NUL character (\\u0000) at " + path.substr(path[0] == '.' ? 1 : 0) +
                       " (PostgreSQL cannot store it)");
  }
}

void check_payload_text(std::string_view text) {
  PayloadSax sax;
  if (!json::sax_parse(text, &sax)) {
    bad("payload", sax.error.empty() ? "is not valid JSON" : sax.error);
  }
}

bool is_iso8601_time(std::string_view s) {
  int y, mo, d;
  if (!digits(s, 0, 4, y) || s.size() < 10 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d)) {
    return false;
  }
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap ? 1 : 0)) {
    return false;
  }
  if (s.size() == 10) return true;
  if (s[10] != 'T' && s[10] != 't' && s[10] != ' ') return false;
  int h, mi, sec = 0;
  if (!digits(s, 11, 2, h) || s.size() < 16 || s[13] != ':' || !digits(s, 14, 2, mi) || h > 23 ||
      mi > 59) {
    return false;
  }
  size_t i = 16;
  if (i < s.size() && s[i] == ':') {
    if (!digits(s, i + 1, 2, sec) || sec > 60) return false;
    i += 3;
    if (i < s.size() && s[i] == '.') {
      size_t n = 0;
      while (i + 1 + n < s.size() && s[i + 1 + n] >= '0' && s[i + 1 + n] <= '9') ++n;
      if (n == 0 || n > 9) return false;
      i += 1 + n;
    }
  }
  if (i == s.size()) return true;  // no zone: the database session's time zone
  if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) return true;
  if (s[i] != '+' && s[i] != '-') return false;
  int oh, om = 0;
  if (!digits(s, i + 1, 2, oh) || oh > 15) return false;
  i += 3;
  if (i == s.size()) return true;
  if (s[i] == ':') ++i;
  if (!digits(s, i, 2, om) || om > 59) return false;
  return i + 2 == s.size();
}

void check_webhook_url(const std::string& url) {
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    throw std::invalid_argument("webhook URL must start with http:// or https://");
  }
  if (url.size() <= scheme_end + 3 || url[scheme_end + 3] == '/') {
    throw std::invalid_argument("webhook URL has no host");
  }
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      throw std::invalid_argument("webhook URL contains a space or a control character");
    }
  }
}

int64_t parse_job_id(std::string_view text) {
  int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || id < 1 ||
      text[0] == '+' || text[0] == '-') {
    throw std::invalid_argument("'" + std::string(text.substr(0, 40)) +
                                "' is not a job id (a whole number from 1 to " +
                                std::to_string(std::numeric_limits<int64_t>::max()) + ")");
  }
  return id;
}

JobInsertParams job_from_parts(std::string_view kind, const json& payload, const json& options) {
  check_kind(kind);
  check_payload(payload);
  if (!options.is_null() && !options.is_object()) {
    bad("options", "must be a JSON object, got " + type_of(options));
  }
  static const std::set<std::string> known(job_option_keys().begin(), job_option_keys().end());
  JobInsertParams p;
  p.kind = std::string(kind);
  p.payload = payload.dump();
  if (options.is_null()) return p;
  for (const auto& [k, v] : options.items()) {
    if (!known.count(k)) {
      // Shown escaped (without the quotes) when it holds control bytes or invalid UTF-8.
      std::string name = json(k).dump(-1, ' ', false, json::error_handler_t::replace);
      bad(name.substr(1, std::min<size_t>(name.size() - 2, 80)), "is not a known job option");
    }
  }
  const json& o = options;
  if (o.contains("queue")) p.queue = text(o, "queue", kMaxNameBytes);
  if (o.contains("priority")) {
    p.priority =
        static_cast<int>(integer(o["priority"], "priority", -kPriorityLimit, kPriorityLimit));
  }
  if (o.contains("delay_seconds"))
    p.delay_seconds = seconds(o["delay_seconds"], "delay_seconds", 0);
  if (o.contains("run_at")) {
    const auto& v = o["run_at"];
    if (!v.is_string()) bad("run_at", "must be an ISO 8601 time string, got " + type_of(v));
    const auto& s = v.get_ref<const std::string&>();
    if (!is_iso8601_time(s)) {
      bad("run_at", "must be an ISO 8601 time such as 2026-11-24T09:00:00Z, got " + shown(v));
    }
    p.run_at = s;
  }
  if (o.contains("max_attempts")) {
    p.max_attempts =
        static_cast<int>(integer(o["max_attempts"], "max_attempts", 1, kAttemptsLimit));
  }
  if (o.contains("timeout_seconds")) {
    double t = seconds(o["timeout_seconds"], "timeout_seconds", 0.001);
    p.timeout_ms = static_cast<int64_t>(std::floor(t * 1000));
  }
  if (o.contains("retry_schedule")) {
    const auto& v = o["retry_schedule"];
    std::string s;
    if (v.is_string()) {
      s = v.get<std::string>();
      if (s.size() > 4096) bad("retry_schedule", "is longer than 4096 bytes");
    } else if (v.is_array()) {
      if (v.size() > 1000) bad("retry_schedule", "has more than 1000 entries");
      for (const auto& e : v) {
        int64_t secs = integer(e, "retry_schedule", 0, std::numeric_limits<int32_t>::max());
        s += (s.empty() ? "" : ",") + std::to_string(secs);
      }
    } else {
      bad("retry_schedule", "must be \"60,300,900\" or [60, 300, 900], got " + type_of(v));
    }
    try {
      parse_retry_schedule(s);
    } catch (const std::invalid_argument& e) {
      bad("retry_schedule", e.what());
    }
    p.retry_schedule = s;
  }
  if (o.contains("ttl_seconds")) p.ttl_seconds = seconds(o["ttl_seconds"], "ttl_seconds", 0);
  if (o.contains("result_ttl_seconds")) {
    p.result_ttl_seconds = seconds(o["result_ttl_seconds"], "result_ttl_seconds", 0);
  }
  if (o.contains("failure_ttl_seconds")) {
    p.failure_ttl_seconds = seconds(o["failure_ttl_seconds"], "failure_ttl_seconds", 0);
  }
  if (o.contains("unique")) {
    if (!o["unique"].is_boolean())
      bad("unique", "must be true or false, got " + type_of(o["unique"]));
    p.unique = o["unique"].get<bool>();
  }
  if (o.contains("unique_key")) {
    if (p.unique) bad("unique_key", "cannot be combined with \"unique\": true");
    p.unique_key = text(o, "unique_key", kMaxNameBytes);
  }
  if (o.contains("lock_key")) p.lock_key = text(o, "lock_key", kMaxNameBytes);
  if (o.contains("lock_limit")) {
    if (!p.lock_key) bad("lock_limit", "needs lock_key");
    p.lock_limit = static_cast<int>(integer(o["lock_limit"], "lock_limit", 1, kAttemptsLimit));
  }
  if (o.contains("depends_on")) {
    const auto& v = o["depends_on"];
    if (!v.is_array()) bad("depends_on", "must be an array of job ids, got " + type_of(v));
    if (v.size() > kMaxDependencies) {
      bad("depends_on", "has more than " + std::to_string(kMaxDependencies) + " job ids");
    }
    for (const auto& e : v) {
      p.depends_on.push_back(integer(e, "depends_on", 1, std::numeric_limits<int64_t>::max()));
    }
  }
  // Uniqueness over a period and states, replace, debounce (migration 14: jr_enqueue_ex).
  if (o.contains("unique_for_seconds")) {
    p.unique_for_seconds = seconds(o["unique_for_seconds"], "unique_for_seconds", 0.001);
  }
  if (o.contains("unique_states")) {
    const auto& v = o["unique_states"];
    static const std::set<std::string> states = {"waiting",   "scheduled", "available",
                                                 "running",   "retryable", "completed",
                                                 "discarded", "cancelled"};
    bool ok = v.is_array() && !v.empty() && v.size() <= 64;
    for (size_t i = 0; ok && i < v.size(); ++i) {
      ok = v[i].is_string() && states.count(v[i].get_ref<const std::string&>()) > 0;
    }
    if (!ok) {
      bad("unique_states",
          "must be a non-empty array of job states (waiting, scheduled, available, running, "
          "retryable, completed, discarded, cancelled), got " +
              shown(v));
    }
    std::set<std::string> seen;
    for (const auto& e : v) {
      if (seen.insert(e.get<std::string>()).second) p.unique_states.push_back(e.get<std::string>());
    }
  }
  if (o.contains("replace")) {
    if (!o["replace"].is_boolean()) {
      bad("replace", "must be true or false, got " + type_of(o["replace"]));
    }
    p.replace = o["replace"].get<bool>();
  }
  if (o.contains("debounce_seconds")) {
    p.debounce_seconds = seconds(o["debounce_seconds"], "debounce_seconds", 0.001);
    if (o.contains("delay_seconds") || o.contains("run_at")) {
      bad("debounce_seconds", "cannot be combined with delay_seconds or run_at");
    }
  }
  if (o.contains("debounce_max_seconds")) {
    if (!p.debounce_seconds) bad("debounce_max_seconds", "needs debounce_seconds");
    p.debounce_max_seconds = seconds(o["debounce_max_seconds"], "debounce_max_seconds", 0.001);
    if (*p.debounce_max_seconds < *p.debounce_seconds) {
      bad("debounce_max_seconds", "must be at least debounce_seconds");
    }
  }
  if (o.contains("rate_key")) {
    std::string key = text(o, "rate_key", kMaxNameBytes);
    if (key.rfind("queue:", 0) == 0 || key.rfind("kind:", 0) == 0 ||
        key.find('*') != std::string::npos) {
      bad("rate_key",
          "must not start with queue: or kind: nor contain *, got " + shown(o["rate_key"]));
    }
    p.rate_key = key;
  }
  if (o.contains("traceparent")) {
    // W3C Trace Context, strictly (migration 19 restates it as jr_traceparent_check()).
    const auto& v = o["traceparent"];
    if (!v.is_string()) bad("traceparent", "must be a string, got " + type_of(v));
    const auto& s = v.get_ref<const std::string&>();
    if (std::string why = trace::traceparent_refusal(s); !why.empty()) {
      bad("traceparent", why + ", got " + shown(v));
    }
    p.traceparent = s;
  }
  if (o.contains("webhook")) {
    std::string url = text(o, "webhook", kMaxUrlBytes);
    try {
      check_webhook_url(url);
    } catch (const std::invalid_argument& e) {
      bad("webhook", e.what());
    }
    p.webhook = url;
  }
  return p;
}

void check_batch_request(const json& body) {
  if (!body.is_object()) throw std::invalid_argument("the request body must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    if (k != "kind" && k != "payloads" && k != "options" && k != "on_complete" &&
        k != "on_failure") {
      bad(shown(json(k)),
          "is not a batch key (known: kind, payloads, options, on_complete, "
          "on_failure)");
    }
  }
  if (!body.contains("kind")) bad("kind", "is required");
  if (!body["kind"].is_string()) bad("kind", "must be a string, got " + type_of(body["kind"]));
  if (!body.contains("payloads") || !body["payloads"].is_array()) {
    bad("payloads", "is required: an array of JSON objects, one per member");
  }
  job_from_parts(body["kind"].get_ref<const std::string&>(), json::object(),
                 body.contains("options") ? body["options"] : json());
  const json& payloads = body["payloads"];
  for (size_t i = 0; i < payloads.size(); ++i) {
    try {
      check_payload(payloads[i]);
    } catch (const JobOptionError& e) {
      bad("payloads[" + std::to_string(i) + "]", e.detail());
    }
  }
  for (const char* name : {"on_complete", "on_failure"}) {
    if (!body.contains(name) || body[name].is_null()) continue;
    const json& cb = body[name];
    if (!cb.is_object()) {
      bad(name, "must be null or {\"kind\", \"payload\", \"options\"}, got " + type_of(cb));
    }
    for (const auto& [k, v] : cb.items()) {
      if (k != "kind" && k != "payload" && k != "options") {
        bad(std::string(name) + "." + shown(json(k)),
            "is not a callback key (known: kind, "
            "payload, options)");
      }
    }
    try {
      if (!cb.contains("kind") || !cb["kind"].is_string()) bad("kind", "is required, a string");
      job_from_parts(cb["kind"].get_ref<const std::string&>(),
                     cb.contains("payload") ? cb["payload"] : json::object(),
                     cb.contains("options") ? cb["options"] : json());
    } catch (const JobOptionError& e) {
      bad(std::string(name) + "." + e.field(), e.detail());
    }
  }
}

JobInsertParams job_from_json(const json& body) {
  if (!body.is_object()) throw std::invalid_argument("the request body must be a JSON object");
  if (!body.contains("kind")) throw JobOptionError("kind", "is required");
  const auto& kind = body["kind"];
  if (!kind.is_string()) bad("kind", "must be a string, got " + type_of(kind));
  json options = json::object();
  for (const auto& [k, v] : body.items()) {
    if (k != "kind" && k != "payload") options[k] = v;
  }
  return job_from_parts(kind.get_ref<const std::string&>(),
                        body.contains("payload") ? body["payload"] : json::object(), options);
}

}  // namespace jr::ops
