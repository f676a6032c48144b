// Configuration of the scan plugin: the `[plugins.scan]` TOML section as JSON (plus
// database_url from the host, and the env overrides declared in the manifest). Every key, its
// unit and default is listed in plugins/scan/README.md. Plain value; thread-safe once built.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "scan/src/fetcher.hpp"
#include "scan/src/report.hpp"

namespace scan {

struct ScanConfig {
  std::string database_url;              // required
  FetchConfig fetch;                     // page fetch: timeouts, redirects, size, UA, allowlist
  int64_t link_check_timeout_ms = 5000;  // each HEAD of a sampled internal link
  int64_t scan_job_ttl_seconds = 86400;  // SCAN_JOB_TTL_SECONDS; cleanup deletes older scans
  ReportConfig report;
  int db_pool_size = 8;  // idle PostgreSQL connections kept
};

// Unknown keys are ignored (the host may add its own); wrong types or ranges throw
// std::invalid_argument naming the key.
ScanConfig parse_config(const nlohmann::json& cfg);

}  // namespace scan
