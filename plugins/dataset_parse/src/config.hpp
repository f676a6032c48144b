// Configuration of the dataset_parse plugin: the plugin's [plugins.dataset_parse] section (a JSON
// object handed to init(), with env overrides already applied by the host). Parsed once in init;
// immutable afterwards, so any thread may read it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace dataset_parse {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  // Directory holding the dataset files; datasets.storage_path is relative to it.
  // Env WORKER_STORAGE_ROOT. Default: unset (jobs fail permanently with "not configured").
  std::string storage_root;
  // PostgreSQL URL of the datasets/names tables. Default: the runner's own database (the host
  // fills it in). Env DATASET_DATABASE_URL.
  std::string database_url;
  // Rows per COPY statement (all batches of a dataset share one transaction).
  // Env DATASET_BATCH_SIZE. Default 50000, range 1..10000000.
  int64_t batch_size = 50000;
  // Largest share of malformed lines (rejected / read) a file may have and still load.
  // Env DATASET_MAX_BAD_LINE_RATIO. Default 0.01, range 0..1.
  double max_bad_line_ratio = 0.01;
  // Read buffer in bytes. Default 1 MiB, range 4096..64 MiB.
  int64_t read_buffer_bytes = 1 << 20;
  // TEST ONLY: after this many rows have been streamed, write one row the database rejects
  // (count = -1 violates CHECK (count > 0)), to prove a mid-insert failure keeps no rows.
  // 0 (the default) = off. Never set it in production.
  int64_t test_fail_after_rows = 0;
};

// Reads and validates `j`; throws ConfigError naming the key. Unknown keys are ignored: the
// host may keep its own per-plugin settings (sandbox overrides) in the same section.
Config parse_config(const nlohmann::json& j);

}  // namespace dataset_parse
