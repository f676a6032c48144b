#include "util.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <stdexcept>

namespace jr {

double parse_duration_seconds(std::string_view text) {
  std::string s(text);
  auto bad = [&] {
    return std::invalid_argument("invalid duration '" + s +
                                 "' (expected e.g. 250ms, 30s, 5m, 2h, 1d or seconds)");
  };
  if (s.empty()) throw bad();
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit = s.substr(pos);
  double mult = 1;
  if (unit.empty() || unit == "s") {
    mult = 1;
  } else if (unit == "ms") {
    mult = 0.001;
  } else if (unit == "m" || unit == "min") {
    mult = 60;
  } else if (unit == "h") {
    mult = 3600;
  } else if (unit == "d") {
    mult = 86400;
  } else {
    throw bad();
  }
  if (!std::isfinite(v) || v < 0) throw bad();
  return v * mult;
}

std::vector<std::string> split_list(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view item = text.substr(start, end - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = end + 1;
  }
  return out;
}

std::string pg_text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string pg_int_array(const std::vector<int64_t>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(items[i]);
  }
  out += '}';
  return out;
}

std::vector<int> parse_retry_schedule(std::string_view text) {
  std::vector<int> out;
  for (const auto& item : split_list(text)) {
    size_t pos = 0;
    int v = -1;
    try {
      v = std::stoi(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    if (pos != item.size() || v < 0) {
      throw std::invalid_argument("invalid retry schedule '" + std::string(text) +
                                  "' (expected seconds separated by commas, e.g. 60,300,900)");
    }
    out.push_back(v);
  }
  return out;
}

double retry_delay_seconds(const std::vector<int>& schedule, int attempt, double jitter01) {
  if (attempt < 1) attempt = 1;
  if (!schedule.empty()) {
    size_t i = std::min(static_cast<size_t>(attempt - 1), schedule.size() - 1);
    return schedule[i];
  }
  constexpr double kBase = 1.0;
  constexpr double kCap = 3600.0;
  double d = std::min(kCap, kBase * std::pow(2.0, std::min(attempt - 1, 30)));
  return d * (0.5 + 0.5 * std::clamp(jitter01, 0.0, 1.0));
}

std::string utc_timestamp(double epoch_seconds) {
  auto secs = static_cast<time_t>(std::floor(epoch_seconds));
  auto micros = static_cast<int>(std::lround((epoch_seconds - static_cast<double>(secs)) * 1e6));
  if (micros >= 1000000) ++secs, micros -= 1000000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
  return buf;
}

std::string errno_message(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string make_worker_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "unknown");
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof suffix, "%04x", rd() & 0xffff);
  return std::string(host) + "-" + std::to_string(getpid()) + "-" + suffix;
}

std::string valid_utf8(std::string_view s) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x01 && c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = c >= 0xC2 && c <= 0xDF   ? 2
                 : c >= 0xE0 && c <= 0xEF ? 3
                 : c >= 0xF0 && c <= 0xF4 ? 4
                                          : 0;
    // The second byte's range excludes overlong forms, surrogates and code points > U+10FFFF.
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
    size_t n = 1;  // bytes of a well-formed prefix (the maximal subpart replaced by one U+FFFD)
    if (len > 0) {
      while (n < len && i + n < s.size()) {
        unsigned char b = static_cast<unsigned char>(s[i + n]);
        if (n == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
        ++n;
      }
    }
    if (len > 0 && n == len) {
      out.append(s.substr(i, len));
    } else {
      out += kReplacement;
    }
    i += n;
  }
  return out;
}

std::string runner_state_dir() {
  if (const char* d = std::getenv("RUNNER_DATA_DIR"); d && *d) return d;
  if (geteuid() == 0) return "/var/lib/jobrunner";
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x) return std::string(x) + "/jobrunner";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/tmp") + "/.local/share/jobrunner";
}

}  // namespace jr
