#include "log.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <regex>
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

namespace {
// Cheap test before the regexes: could this line hold a secret at all?
bool may_hold_secret(const std::string& line) {
  if (line.find("://") != std::string::npos && line.find('@') != std::string::npos) return true;
  for (const char* k : {"assword", "ASSWORD", "token", "TOKEN", "secret", "SECRET", "api_key",
                        "apikey", "Bearer", "asswd"}) {
    if (line.find(k) != std::string::npos) return true;
  }
  return false;
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
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  // Last line of defence: whatever a message or a plugin passes in, no secret is written.
  if (may_hold_secret(text)) text = redact(text);
  lg->log(to_spd(level), "{}", text);
}

std::string redact(std::string_view conninfo) {
  std::string s(conninfo);
  // postgresql://user:secret@host/db (anywhere in the text: messages quote URLs)
  static const std::regex url_pw(R"(([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s"']*):[^@\s"'/]*@)");
  s = std::regex_replace(s, url_pw, "$1:***@");
  // password=secret in key/value strings or URL query parameters; tokens and secrets likewise
  static const std::regex kv_pw(
      R"(((?:password|passwd|token|api_key|apikey|access_token|secret)\s*=\s*)('[^']*'|[^\s&"']+))",
      std::regex::icase);
  s = std::regex_replace(s, kv_pw, "$1***");
  static const std::regex bearer(R"((Bearer\s+)[A-Za-z0-9._~+/=-]+)");
  s = std::regex_replace(s, bearer, "$1***");
  return s;
}

}  // namespace jr::log
