// Structured logging: one JSON object per line on stderr, through spdlog.
// Thread-safe; call from any thread. Fields are attached as a JSON object so the job id, kind and
// attempt are machine-readable. Secrets (passwords in URLs) must be passed through redact().
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace jr::log {

enum class Level { debug, info, warn, error };

void init(Level min_level);
void set_level(Level min_level);
Level parse_level(std::string_view name);  // throws std::invalid_argument

void write(Level level, std::string_view msg, nlohmann::json fields = nlohmann::json::object());
inline void debug(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::debug, m, std::move(f));
}
inline void info(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::info, m, std::move(f));
}
inline void warn(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::warn, m, std::move(f));
}
inline void error(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  write(Level::error, m, std::move(f));
}

// Replaces secrets with "***": the password of a URL (scheme://user:PASSWORD@), the value of
// password=, passwd=, token=, api_key=, apikey=, secret= (any case, also as the end of a longer
// key), and a "Bearer TOKEN". Linear in the length of the text (every log line goes through it).
std::string redact(std::string_view text);

}  // namespace jr::log
