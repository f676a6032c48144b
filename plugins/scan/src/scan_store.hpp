// The scan plugin's table, scan_jobs, in PostgreSQL (libpqxx): schema creation under an advisory
// lock, a small connection pool, and one function per row change. Every write commits at once so
// a producer polling the row sees each status, step and progress as it happens.
//
// Threading: ScanStore (the pool) is thread-safe; a Lease and its connection belong to one thread
// at a time. The free functions take the leased connection.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <pqxx/connection>
#include <string>
#include <vector>

namespace scan {

class ScanStore {
 public:
  class Lease {
   public:
    Lease(ScanStore* store, std::unique_ptr<pqxx::connection> c);
    Lease(Lease&&) noexcept;
    ~Lease();  // returns the connection to the pool unless it is broken
    pqxx::connection& conn() { return *conn_; }

   private:
    ScanStore* store_;
    std::unique_ptr<pqxx::connection> conn_;
  };

  // `max_idle`: connections kept open between jobs.
  explicit ScanStore(std::string url, size_t max_idle = 8);
  ~ScanStore();

  // A connection from the pool, opened when none is idle. Throws pqxx::broken_connection.
  Lease acquire();
  // Creates scan_jobs if missing (once per process; concurrent runners serialise on an advisory
  // lock). Throws on database errors.
  void ensure_schema(pqxx::connection& c);

  const std::string& url() const { return url_; }

 private:
  void release(std::unique_ptr<pqxx::connection> c);
  std::string url_;
  size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  bool schema_ready_ = false;
};

// The DDL, for the README and the tests.
extern const char* const kScanJobsDdl;

struct ScanRow {
  std::string id;
  std::string url;
  std::string user_id;  // "" when NULL
  std::string status;
  std::string step;
  int progress = 0;
  nlohmann::json teaser;  // null when NULL
  nlohmann::json result;
  nlohmann::json state;
  std::string error_state;
  std::string error_message;
};

// Inserts the row (status QUEUED) when the producer did not, then reads it.
ScanRow scan_load_or_create(pqxx::connection& c, const std::string& id, const std::string& url,
                            const std::string& user_id, int64_t ttl_seconds);
// Session-level advisory lock on the scan id, so one scan runs in one place at a time.
bool scan_try_lock(pqxx::connection& c, const std::string& id);
void scan_unlock(pqxx::connection& c, const std::string& id);

// job_id > 0 records the job writing (scan_jobs.job_id): every run of the pipeline that changes
// the row writes a status before anything else, so the row always names its latest job.
void scan_write_status(pqxx::connection& c, const std::string& id, const std::string& status,
                       const std::string& step, int progress, int64_t job_id = 0);
void scan_write_state(pqxx::connection& c, const std::string& id, const nlohmann::json& state,
                      int progress);
void scan_write_teaser(pqxx::connection& c, const std::string& id, const nlohmann::json& teaser,
                       const nlohmann::json& state, int progress);
void scan_write_result(pqxx::connection& c, const std::string& id, const nlohmann::json& result);
void scan_write_error(pqxx::connection& c, const std::string& id, const std::string& error_state,
                      const std::string& message);
// A failed attempt that will be retried: the row stays RUNNING (step and progress kept) and
// error_message says why the scan is taking longer; error_state stays NULL (not terminal).
void scan_write_retry(pqxx::connection& c, const std::string& id, const std::string& message);
// A finalizer's write: sets status = error_state = `status` and error_message = `message` if the
// row exists for `url`, is not terminal (FULL_READY, ERROR_*), and no other job than `job_id`
// has taken it (job_id NULL: no job ran it yet). Returns the row's status afterwards, nullopt
// when there is no row for that id and URL; *written says whether this call changed it.
std::optional<std::string> scan_write_final(pqxx::connection& c, const std::string& id,
                                            const std::string& url, int64_t job_id,
                                            const std::string& status, const std::string& message,
                                            bool* written);
// Deletes scans created more than ttl_seconds ago or past their expires_at; returns the count.
int64_t scan_delete_expired(pqxx::connection& c, int64_t ttl_seconds);

// JSON text safe for jsonb: invalid UTF-8 replaced, NUL characters removed.
std::string jsonb_text(const nlohmann::json& j);

}  // namespace scan
