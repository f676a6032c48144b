// Cron schedules: the 5-field syntax (minute hour day-of-month month day-of-week, with *,
// lists, ranges, steps and month/day names) plus @yearly, @annually, @monthly, @weekly,
// @daily, @midnight and @hourly, and "@every <duration>" (e.g. "@every 2s": ticks at the
// multiples of the interval since the epoch, in the entry's wall-clock time). Times are naive
// wall-clock times in the entry's time zone; PostgreSQL converts them to and from UTC (so daylight
// saving follows the tz database). As in Vixie cron, when both day fields are restricted a day
// matching either one runs. Pure and thread-safe.
#pragma once

#include <bitset>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace jr {

struct LocalTime {  // a naive wall-clock time, to the second
  int year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  std::string str() const;                       // "YYYY-MM-DD HH:MM:SS"
  static LocalTime parse(const std::string& s);  // accepts "YYYY-MM-DD HH:MM[:SS[.ffff]]"
  bool operator<(const LocalTime& o) const;
};

class CronSchedule {
 public:
  // Throws std::invalid_argument naming the bad field.
  static CronSchedule parse(const std::string& text);
  // The first matching minute strictly after `t`; nullopt if none within 5 years.
  std::optional<LocalTime> next_after(const LocalTime& t) const;
  bool matches(const LocalTime& t) const;

 private:
  std::bitset<60> minute_;
  std::bitset<24> hour_;
  std::bitset<32> dom_;
  std::bitset<13> month_;
  std::bitset<7> dow_;
  bool dom_star_ = true, dow_star_ = true;
  int64_t every_seconds_ = 0;  // "@every": fixed interval instead of the fields
};

// One periodic job, from the config ([[cron]]) or a plugin manifest ("cron": [...]).
struct CronEntry {
  std::string name;
  std::string schedule;
  std::string timezone = "UTC";
  std::string kind;
  std::optional<std::string> queue;
  nlohmann::json payload = nlohmann::json::object();
  bool backfill = false;  // enqueue missed ticks after downtime (default: skip them)
  std::string source;     // "config" or "plugin:<name>"
};

// Parses one entry from JSON (config or manifest); throws std::invalid_argument.
CronEntry cron_entry_from_json(const nlohmann::json& j, const std::string& source);

}  // namespace jr
