// Settings of the contest_submit plugin: its `[plugins.contest_submit]` section as JSON (with
// database_url from the host by default, and the manifest's env overrides already applied), read
// once in init(). Plain value; thread-safe once built. The keys are listed in README.md ("Config").
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace contest {

struct Config {
  std::string database_url;              // required
  int64_t statement_timeout_ms = 10000;  // per-statement limit, lock waits included; 0 = none
  std::size_t pool_max_idle = 32;        // idle connections kept for reuse
};

// Throws std::runtime_error naming the setting at fault (nlohmann::json's type_error for a
// value of the wrong JSON type).
Config parse_config(const nlohmann::json& config);

}  // namespace contest
