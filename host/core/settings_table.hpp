// Every runner setting that is one value, declared once: its place in the TOML file (section
// and key), its environment variable, its flag, the bounds of a number, the default the
// reference shows, and one line of documentation. Everything that reads or shows a setting
// reads this table:
//
//   the TOML reader (config.cpp)       known keys, types and bounds, errors at FILE:LINE:COLUMN
//   the environment (config.cpp)       the same parsers and bounds, errors naming the variable
//   the worker's flags (cli/main.cpp)  registered from here, with their help lines and ranges
//   `runner config reference`          the README's reference block, which test_host_unit
//                                      (settings_test.cpp) holds equal to the command's output
//
// What is not one value ([[cron]], [webhooks], [plugins.<name>]) is read by hand in config.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "config.hpp"

namespace jr {

// Where a setting's value lives in Config; the member's type is the setting's type: text,
// optional text (unset unless given), an integer, a duration in seconds (a number, or a string
// such as "30s" or "5m"), true/false, or a list (a TOML array, or "a,b" in a variable or flag).
using SettingField = std::variant<std::string Config::*, std::optional<std::string> Config::*,
                                  int Config::*, int64_t Config::*, double Config::*,
                                  bool Config::*, std::vector<std::string> Config::*>;

struct Setting {
  const char* section;  // "" (top level), "worker", "otel"
  const char* key;
  const char* env;   // "" = none
  const char* flag;  // "" = none; a true/false setting's flag sets the opposite of its default
  SettingField field;
  const char* shown;  // the value the reference shows, in TOML (usually the default)
  const char* doc;    // one line: what it is, and what the default means
  int64_t min = 0;    // integers: the accepted range, inclusive
  int64_t max = 0;
  // Read before `env` (so that one wins): another name for the same setting.
  const char* env_alias = "";
  // The flag is one of every command's (--database, --data-dir, --log-level), registered with
  // the others in cli/main.cpp; the rest are the worker's, registered from this table.
  bool global_flag = false;
};

// The table, in the reference's order.
const std::vector<Setting>& settings();

// "worker.lease_seconds"; a top-level key alone.
std::string setting_name(const Setting& s);

// Parses a variable's or a flag's text into the setting's field, with the TOML reader's
// bounds. Throws std::invalid_argument with the reason ("'x' is not an integer").
void set_from_text(Config& cfg, const Setting& s, const std::string& text);

// For a true/false setting's flag: the value giving the flag sets.
bool flag_sets(const Config& defaults, const Setting& s);

// `runner config reference`: the settings as a commented TOML file, each with its default,
// its variable and flag, and its line of documentation.
std::string config_reference();

}  // namespace jr
