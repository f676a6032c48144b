#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <stdexcept>

namespace jr::log {
namespace {

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto lg = spdlog::stderr_logger_mt("jobrunner");
    lg->set_pattern("%v");
    lg->set_level(spdlog::level::info);
    lg->flush_on(spdlog::level::debug);
    return lg;
  }();
  return l;
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

const char* name(Level l) {
  switch (l) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

std::string timestamp() {
  using namespace std::chrono;
  auto now = system_clock::now();
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::time_t t = system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

}  // namespace

void init(Level min_level) { set_level(min_level); }

void set_level(Level min_level) { logger()->set_level(to_spd(min_level)); }

Level parse_level(std::string_view n) {
  if (n == "debug") return Level::debug;
  if (n == "info") return Level::info;
  if (n == "warn" || n == "warning") return Level::warn;
  if (n == "error") return Level::error;
  throw std::invalid_argument("unknown log level '" + std::string(n) +
                              "' (expected debug, info, warn or error)");
}

void write(Level level, std::string_view msg, nlohmann::json fields) {
  auto& lg = logger();
  if (!lg->should_log(to_spd(level))) return;
  nlohmann::json line = nlohmann::json::object();
  line["ts"] = timestamp();
  line["level"] = name(level);
  line["msg"] = msg;
  if (fields.is_object()) {
    for (auto& [k, v] : fields.items()) line[k] = std::move(v);
  }
  // Last line of defence: whatever a message or a plugin passes in, no secret is written.
  std::string text = redact(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  lg->log(to_spd(level), "{}", text);
}

// Redaction is a hand-written scan, linear in the text (three passes, each looking at every byte
// a bounded number of times): it runs on every log line, and log lines carry plugin text.
// (std::regex recursed per character and crashed the runner on one long line.)
namespace {

bool space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool digit(char c) { return c >= '0' && c <= '9'; }
bool quote(char c) { return c == '"' || c == '\''; }
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// scheme://user:PASSWORD@ -> scheme://user:***@, anywhere in the text (messages quote URLs).
std::string redact_url_passwords(std::string_view s) {
  std::string out;
  size_t copied = 0;  // s[0, copied) is in `out`
  const size_t n = s.size();
  for (size_t pos = s.find("://"); pos != std::string_view::npos; pos = s.find("://", pos + 1)) {
    // A scheme (a letter, then letters, digits, + . -) must end right before "://".
    bool has_letter = false;
    for (size_t b = pos; b > 0; --b) {
      char c = s[b - 1];
      if (!(letter(c) || digit(c) || c == '+' || c == '.' || c == '-')) break;
      has_letter = has_letter || letter(c);
    }
    if (!has_letter) continue;
    size_t j = pos + 3;  // user: up to ':'
    while (j < n && s[j] != ':' && s[j] != '/' && s[j] != '@' && !space(s[j]) && !quote(s[j])) ++j;
    if (j >= n || s[j] != ':') continue;
    size_t k = j + 1;  // password: up to '@'
    while (k < n && s[k] != '@' && s[k] != '/' && !space(s[k]) && !quote(s[k])) ++k;
    if (k >= n || s[k] != '@') continue;
    out.append(s.data() + copied, j + 1 - copied);
    out += "***";
    copied = k;  // the '@' and what follows are kept
    pos = k;
  }
  if (copied == 0) return std::string(s);
  out.append(s.data() + copied, n - copied);
  return out;
}

// KEY=VALUE and KEY = 'quoted value' for secret-looking keys (any case, also as the end of a
// longer name: db_password=...). The value ends at white space, '&', a quote, or a JSON escape
// that stands for one of those (the text is usually a JSON log line, which must stay valid).
std::string redact_key_values(std::string_view s) {
  static constexpr std::string_view kKeys[] = {"password", "passwd", "token",
                                               "api_key",  "apikey", "secret"};
  std::string out;
  size_t copied = 0;
  const size_t n = s.size();
  size_t no_quote_after = std::string_view::npos;  // no "'" at or after this position
  for (size_t e = s.find('='); e != std::string_view::npos; e = s.find('=', e + 1)) {
    if (e < copied) continue;
    size_t b = e;
    while (b > copied && space(s[b - 1])) --b;
    bool key = false;
    for (std::string_view k : kKeys) {
      if (b - copied < k.size()) continue;
      bool same = true;
      for (size_t i = 0; i < k.size() && same; ++i) same = lower(s[b - k.size() + i]) == k[i];
      if (same) {
        key = true;
        break;
      }
    }
    if (!key) continue;
    size_t v = e + 1;
    while (v < n && space(s[v])) ++v;
    size_t end = v;
    if (v < n && s[v] == '\'') {
      size_t close = std::string_view::npos;
      if (no_quote_after == std::string_view::npos || v + 1 < no_quote_after) {
        close = s.find('\'', v + 1);
        if (close == std::string_view::npos) no_quote_after = v + 1;
      }
      if (close == std::string_view::npos) continue;
      end = close + 1;
    } else {
      while (end < n) {
        char c = s[end];
        if (space(c) || c == '&' || quote(c)) break;
        if (c == '\\' && end + 1 < n) {
          char x = s[end + 1];
          if (x == '"' || x == 'n' || x == 'r' || x == 't' || x == 'f' || x == 'b') break;
          end += 2;
          continue;
        }
        ++end;
      }
      if (end == v) continue;
    }
    out.append(s.data() + copied, v - copied);
    out += "***";
    copied = end;
    e = end > 0 ? end - 1 : 0;
  }
  if (copied == 0) return std::string(s);
  out.append(s.data() + copied, n - copied);
  return out;
}

// "Bearer TOKEN" -> "Bearer ***".
std::string redact_bearer(std::string_view s) {
  std::string out;
  size_t copied = 0;
  const size_t n = s.size();
  auto token_char = [](char c) {
    return letter(c) || digit(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
           c == '=' || c == '-';
  };
  for (size_t pos = s.find("Bearer"); pos != std::string_view::npos;
       pos = s.find("Bearer", pos + 1)) {
    if (pos < copied) continue;
    size_t v = pos + 6;
    while (v < n && space(s[v])) ++v;
    if (v == pos + 6) continue;  // at least one space
    size_t end = v;
    while (end < n && token_char(s[end])) ++end;
    if (end == v) continue;
    out.append(s.data() + copied, v - copied);
    out += "***";
    copied = end;
    pos = end - 1;
  }
  if (copied == 0) return std::string(s);
  out.append(s.data() + copied, n - copied);
  return out;
}

}  // namespace

std::string redact(std::string_view text) {
  return redact_bearer(redact_key_values(redact_url_passwords(text)));
}

}  // namespace jr::log
