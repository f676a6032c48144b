#include "contest_submit/src/config.hpp"

#include <stdexcept>

namespace contest {

Config parse_config(const nlohmann::json& config) {
  if (!config.contains("database_url") || !config["database_url"].is_string()) {
    throw std::runtime_error("contest_submit: config needs 'database_url' (a string)");
  }
  int64_t timeout_ms = config.value("statement_timeout_ms", int64_t{10000});
  int64_t max_idle = config.value("pool_max_idle", int64_t{32});
  if (timeout_ms < 0 || max_idle < 0) {
    throw std::runtime_error("contest_submit: statement_timeout_ms and pool_max_idle must be >= 0");
  }
  Config c;
  c.database_url = config["database_url"].get<std::string>();
  c.statement_timeout_ms = timeout_ms;
  c.pool_max_idle = static_cast<std::size_t>(max_idle);
  return c;
}

}  // namespace contest
