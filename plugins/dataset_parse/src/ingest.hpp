// The hot loop: reads a dataset file from an InputStream, splits it into lines, parses each line
// with the country's FileParser and streams the rows into `names` with COPY (pqxx::stream_to),
// `batch_size` rows per COPY statement, all inside the caller's transaction. Counts what it saw
// in Metrics (kept up to date as it goes, so the caller can store partial counts on failure).
//
// Threading: one call runs on one thread with that thread's transaction.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "dataset_parse/src/parsers.hpp"
#include "dataset_parse/src/storage.hpp"

namespace dataset_parse {

struct IngestOptions {
  int64_t batch_size = 50000;        // rows per COPY statement
  double max_bad_line_ratio = 0.01;  // rejected / read above this fails the file
  size_t read_buffer_bytes = 1 << 20;
  int64_t test_fail_after_rows = 0;  // TEST ONLY, see Config
};

struct Metrics {
  std::string parser;         // format id
  std::string file;           // storage path
  int64_t rows_read = 0;      // data lines seen (rows + rejected + skipped); no header/blank
  int64_t rows_inserted = 0;  // rows written to names (visible only if the transaction commits)
  int64_t rows_rejected = 0;  // malformed lines
  int64_t rows_skipped = 0;   // well-formed lines without a name row (aggregates, ...)
  int64_t rows_deleted = 0;   // earlier rows of the dataset removed first (reprocess)
  int64_t batches = 0;        // COPY statements completed
  uint64_t bytes_read = 0;
  uint64_t bytes_total = 0;  // file size when the storage knows it
  double duration_ms = 0;
  std::vector<std::string> first_rejections;    // "line 12: why", at most kMaxReasons
  std::map<std::string, int64_t> skip_reasons;  // reason -> lines

  static constexpr size_t kMaxReasons = 10;
  nlohmann::json to_json() const;
};

// Called as bytes are consumed; also polled for cancellation.
class IngestObserver {
 public:
  virtual ~IngestObserver() = default;
  virtual void on_progress(const Metrics& m) = 0;  // at most ~every 5% of the file
  virtual bool cancelled() = 0;                    // checked once per read buffer
};

// Parses `in` with `fp` and COPYs the rows of `dataset_id` into names within `tx`.
// Throws FormatError (no data lines, too many malformed lines, a bad header), StorageError (read
// failures), pqxx errors (database), jobrunner::Cancelled (observer said so). On a throw the
// caller must abort `tx` and drop its connection (a COPY may still be open on it).
void ingest(pqxx::transaction_base& tx, const std::string& dataset_id, InputStream& in,
            FileParser& fp, const IngestOptions& opts, IngestObserver& obs, Metrics& m);

}  // namespace dataset_parse
