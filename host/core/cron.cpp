#include "cron.hpp"

#include <cstdio>
#include <map>
#include <stdexcept>
#include <tuple>

#include "util.hpp"

namespace jr {
namespace {

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : d[m - 1];
}

// 0 = Sunday (Sakamoto's method).
int weekday(int y, int m, int d) {
  static const int t[] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
  if (m < 3) y -= 1;
  return (y + y / 4 - y / 100 + y / 400 + t[m - 1] + d) % 7;
}

int parse_value(const std::string& s, const std::map<std::string, int>& names,
                const std::string& field) {
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (auto it = names.find(lower); it != names.end()) return it->second;
  size_t pos = 0;
  int v = -1;
  try {
    v = std::stoi(s, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != s.size() || s.empty())
    throw std::invalid_argument("bad " + field + " value '" + s + "'");
  return v;
}

template <size_t N>
void parse_field(const std::string& text, int lo, int hi, std::bitset<N>& bits, bool& star,
                 const std::string& field, const std::map<std::string, int>& names = {}) {
  star = text == "*" || text == "?";
  for (const auto& part : split_list(text, ',')) {
    std::string range = part;
    int step = 1;
    if (auto slash = part.find('/'); slash != std::string::npos) {
      range = part.substr(0, slash);
      step = parse_value(part.substr(slash + 1), {}, field);
      if (step <= 0) throw std::invalid_argument("bad " + field + " step in '" + part + "'");
    }
    int a = lo, b = hi;
    if (range != "*" && range != "?") {
      if (auto dash = range.find('-'); dash != std::string::npos) {
        a = parse_value(range.substr(0, dash), names, field);
        b = parse_value(range.substr(dash + 1), names, field);
      } else {
        a = b = parse_value(range, names, field);
        if (part.find('/') != std::string::npos) b = hi;
      }
    }
    if (a < lo || b > (field == "day-of-week" ? 7 : hi) || a > b) {
      throw std::invalid_argument(field + " '" + part + "' is out of range " + std::to_string(lo) +
                                  "-" + std::to_string(hi));
    }
    for (int v = a; v <= b; v += step)
      bits.set(static_cast<size_t>(field == "day-of-week" ? v % 7 : v));
  }
}

}  // namespace

std::string LocalTime::str() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d", year, month, day, hour, minute,
                second);
  return buf;
}

LocalTime LocalTime::parse(const std::string& s) {
  LocalTime t;
  int n = std::sscanf(s.c_str(), "%d-%d-%d %d:%d:%d", &t.year, &t.month, &t.day, &t.hour, &t.minute,
                      &t.second);
  if (n < 5) throw std::invalid_argument("bad local time '" + s + "'");
  return t;
}

bool LocalTime::operator<(const LocalTime& o) const {
  return std::tie(year, month, day, hour, minute, second) <
         std::tie(o.year, o.month, o.day, o.hour, o.minute, o.second);
}

namespace {

// Days since 1970-01-01 of a civil date (proleptic Gregorian), and back.
int64_t days_from_civil(int y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

LocalTime from_epoch(int64_t secs) {
  int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
  int64_t rem = secs - days * 86400;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  LocalTime t;
  t.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  t.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  t.year = static_cast<int>(yoe + era * 400 + (t.month <= 2));
  t.hour = static_cast<int>(rem / 3600);
  t.minute = static_cast<int>(rem % 3600 / 60);
  t.second = static_cast<int>(rem % 60);
  return t;
}

}  // namespace

CronSchedule CronSchedule::parse(const std::string& text_in) {
  std::string text = text_in;
  if (text.rfind("@every ", 0) == 0) {
    CronSchedule c;
    double secs = parse_duration_seconds(text.substr(7));
    if (secs < 1) throw std::invalid_argument("@every needs an interval of at least 1s");
    c.every_seconds_ = static_cast<int64_t>(secs);
    return c;
  }
  static const std::map<std::string, std::string> macros = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
      {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  if (!text.empty() && text[0] == '@') {
    auto it = macros.find(text);
    if (it == macros.end()) throw std::invalid_argument("unknown cron macro '" + text + "'");
    text = it->second;
  }
  std::vector<std::string> f = split_list(text, ' ');
  if (f.size() != 5) {
    throw std::invalid_argument("cron schedule '" + text_in +
                                "' must have 5 fields (minute hour day-of-month month "
                                "day-of-week) or be one of @hourly, @daily, ...");
  }
  static const std::map<std::string, int> months = {
      {"jan", 1}, {"feb", 2}, {"mar", 3}, {"apr", 4},  {"may", 5},  {"jun", 6},
      {"jul", 7}, {"aug", 8}, {"sep", 9}, {"oct", 10}, {"nov", 11}, {"dec", 12}};
  static const std::map<std::string, int> days = {{"sun", 0}, {"mon", 1}, {"tue", 2}, {"wed", 3},
                                                  {"thu", 4}, {"fri", 5}, {"sat", 6}};
  CronSchedule c;
  bool star = false;
  parse_field(f[0], 0, 59, c.minute_, star, "minute");
  parse_field(f[1], 0, 23, c.hour_, star, "hour");
  parse_field(f[2], 1, 31, c.dom_, c.dom_star_, "day-of-month");
  parse_field(f[3], 1, 12, c.month_, star, "month", months);
  parse_field(f[4], 0, 6, c.dow_, c.dow_star_, "day-of-week", days);
  return c;
}

bool CronSchedule::matches(const LocalTime& t) const {
  if (every_seconds_ > 0) {
    int64_t e =
        days_from_civil(t.year, t.month, t.day) * 86400 + t.hour * 3600 + t.minute * 60 + t.second;
    return e % every_seconds_ == 0;
  }
  if (!minute_[t.minute] || !hour_[t.hour] || !month_[t.month]) return false;
  bool dom = dom_[t.day];
  bool dow = dow_[weekday(t.year, t.month, t.day)];
  if (dom_star_ || dow_star_) return dom && dow;
  return dom || dow;
}

std::optional<LocalTime> CronSchedule::next_after(const LocalTime& start) const {
  if (every_seconds_ > 0) {
    int64_t e = days_from_civil(start.year, start.month, start.day) * 86400 + start.hour * 3600 +
                start.minute * 60 + start.second;
    return from_epoch((e / every_seconds_ + 1) * every_seconds_);
  }
  LocalTime t = start;
  t.second = 0;
  // Step to the next minute.
  auto add_minute = [](LocalTime& x) {
    if (++x.minute < 60) return;
    x.minute = 0;
    if (++x.hour < 24) return;
    x.hour = 0;
    if (++x.day <= days_in_month(x.year, x.month)) return;
    x.day = 1;
    if (++x.month <= 12) return;
    x.month = 1;
    ++x.year;
  };
  add_minute(t);
  const int last_year = start.year + 5;
  while (t.year <= last_year) {
    if (!month_[t.month]) {  // skip to the next month
      t.minute = t.hour = 0;
      t.day = 1;
      if (++t.month > 12) {
        t.month = 1;
        ++t.year;
      }
      continue;
    }
    bool dom = dom_[t.day];
    bool dow = dow_[weekday(t.year, t.month, t.day)];
    bool day_ok = (dom_star_ || dow_star_) ? (dom && dow) : (dom || dow);
    if (!day_ok) {  // skip to the next day, 00:00
      t.hour = 23;
      t.minute = 59;
      add_minute(t);
      continue;
    }
    if (!hour_[t.hour]) {
      t.minute = 59;
      add_minute(t);
      continue;
    }
    if (minute_[t.minute]) return t;
    add_minute(t);
  }
  return std::nullopt;
}

CronEntry cron_entry_from_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw std::invalid_argument("cron entry must be an object");
  CronEntry e;
  e.source = source;
  auto str = [&](const char* k, bool required) -> std::string {
    if (!j.contains(k)) {
      if (required) throw std::invalid_argument(std::string("cron entry lacks '") + k + "'");
      return "";
    }
    if (!j[k].is_string())
      throw std::invalid_argument(std::string("cron '") + k + "' must be a string");
    return j[k].get<std::string>();
  };
  e.name = str("name", true);
  e.schedule = str("schedule", true);
  e.kind = str("kind", true);
  if (std::string tz = str("timezone", false); !tz.empty()) e.timezone = tz;
  if (std::string q = str("queue", false); !q.empty()) e.queue = q;
  if (j.contains("payload")) e.payload = j["payload"];
  if (j.contains("backfill")) e.backfill = j["backfill"].get<bool>();
  CronSchedule::parse(e.schedule);  // validate now
  return e;
}

}  // namespace jr
