// The scan pipeline: QUEUED -> RUNNING (CRAWL -> PARSE -> ANALYZE -> GENERATE) -> TEASER_READY ->
// FULL_READY, or ERROR_VALIDATION / ERROR_CRAWL / ERROR_ANALYZE. Each transition is written to
// scan_jobs and reported to the observer (the job's progress and log). Every completed step
// stores its output in scan_jobs.state, so a retried scan resumes after its last completed step
// and a finished scan returns its stored result without fetching again.
//
// A Scanner is shared by every job of the plugin: run() may be called concurrently from several
// threads (different scans; the same scan id is serialised by an advisory lock).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "scan/src/config.hpp"
#include "scan/src/fetcher.hpp"
#include "scan/src/scan_store.hpp"

namespace scan {

struct ScanRequest {
  std::string scan_id;
  std::string url;
  std::string user_id;  // "" when anonymous
  // The job's attempt and its limit: a transient crawl failure before the last attempt is
  // retried (ScanRetry) instead of ending the scan in ERROR_CRAWL.
  int attempt = 1;
  int max_attempts = 1;
  int64_t job_id = 0;  // recorded in scan_jobs.job_id with each status (0: not a job, e.g. a test)
};

// The host's finalizer job for a scan job that ended discarded or cancelled (plugin.cpp maps the
// finalizer payload onto this): the pipeline may never have seen that end (a timeout, a kill, a
// lost lease, a cancel before it ran).
struct FinalizeRequest {
  std::string scan_id;
  std::string url;
  int64_t job_id = 0;      // the finished scan job
  std::string state;       // "discarded" | "cancelled"
  std::string error_kind;  // "timeout", "crash", "oom", "lease_lost", "cancelled", ...
  std::string error;       // the host's message: the reason shown to the user
};

// The job as the pipeline sees it.
class ScanObserver {
 public:
  virtual ~ScanObserver() = default;
  virtual void progress(double percent, const std::string& step) = 0;
  virtual void log(const std::string& msg) = 0;
  virtual bool cancelled() = 0;
};

// The scan ended in an error state (written to scan_jobs before this is thrown).
class ScanFailed : public std::runtime_error {
 public:
  ScanFailed(std::string state, const std::string& msg)
      : std::runtime_error(state + ": " + msg), state_(std::move(state)) {}
  const std::string& state() const { return state_; }

 private:
  std::string state_;
};
// A transient crawl failure (timeout, connection refused or reset, HTTP 5xx) with attempts
// left: the row says RUNNING/CRAWL with the failure in error_message; the job should be retried.
class ScanRetry : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Another worker holds this scan right now; try again later.
class ScanBusy : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// The job cannot refer to this row (another URL under the same id); the row is left alone.
class ScanConflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ScanCancelled : public std::runtime_error {
 public:
  ScanCancelled() : std::runtime_error("cancelled") {}
};

// Where run() may stop early (a worker dying after that step); kFull runs everything.
enum class StopAfter { kCrawl, kParse, kAnalyze, kTeaser, kFull };

class Scanner {
 public:
  explicit Scanner(ScanConfig cfg, std::shared_ptr<Resolver> resolver = nullptr);

  // Runs (or resumes, or returns the stored result of) one scan. Returns the full report, or
  // null when stopped early. Throws ScanFailed, ScanRetry, ScanBusy, ScanConflict, ScanCancelled,
  // or pqxx / std errors for infrastructure trouble.
  nlohmann::json run(const ScanRequest& req, ScanObserver& obs, StopAfter stop = StopAfter::kFull);

  // Writes ERROR_<KIND> (finalize_status) and the reason to the scan's row, unless the row is
  // terminal already (FULL_READY, ERROR_*), belongs to another URL, or another job has taken the
  // scan over since. Returns {"scan_id", "status", "updated"}. Throws ScanBusy while a job holds
  // the scan (a stopped handler still unwinding, or a newer job): the finalizer snoozes.
  nlohmann::json finalize(const FinalizeRequest& f);
  // "ERROR_" + the error kind in capitals ("timeout" -> ERROR_TIMEOUT, "lease_lost" ->
  // ERROR_LEASE_LOST); "error" (the handler's own retryable failure) -> ERROR_INTERNAL; none or
  // not a plain word -> ERROR_CANCELLED for a cancelled job, else ERROR_UNKNOWN.
  static std::string finalize_status(const std::string& error_kind, const std::string& state);

  // Deletes expired scans; returns how many.
  int64_t cleanup_expired();

  Fetcher& fetcher() { return fetcher_; }
  ScanStore& store() { return store_; }
  const ScanConfig& config() const { return cfg_; }

 private:
  nlohmann::json crawl(const ScanRequest& req, ScanObserver& obs);
  std::vector<struct LinkCheck> check_links(const std::vector<std::string>& urls, ScanObserver& obs,
                                            pqxx::connection& c, const std::string& id,
                                            int64_t job_id);

  ScanConfig cfg_;
  Fetcher fetcher_;
  Fetcher link_fetcher_;  // same guard, shorter timeout
  ScanStore store_;
};

}  // namespace scan
