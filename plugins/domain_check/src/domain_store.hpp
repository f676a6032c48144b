// The `domains` table in the application database: schema (created once, under an advisory
// lock), result upserts, and the idle recheck's pick-and-mark of stale domains. Holds a small
// mutex-protected pool of pqxx connections (one per concurrent caller); every method may be
// called from any thread. Database failures surface as pqxx exceptions / std::runtime_error.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "domain_check/src/checker.hpp"

namespace domain_check {

struct RecheckParams {
  int interval_days = 7;  // stale when checked_at is older than this
  int batch_size = 50;    // domains per enqueued job
  int max_batches = 10;   // jobs per call at most
};

struct RecheckOutcome {
  int jobs = 0;       // jobs enqueued
  int domains = 0;    // domains in them
  std::string error;  // why enqueuing stopped early ("" when it did not)
};

struct UpsertReport {
  size_t written = 0;  // rows written, the stand-in rows of failed names included
  // Names whose result the database refused (name -> why). Each got a stand-in row (status
  // unknown, reason "not stored") when even that could be written; the other names of the
  // batch are stored normally.
  std::map<std::string, std::string> failed;
};

class DomainStore {
 public:
  DomainStore(std::string url, size_t pool_size);
  ~DomainStore();

  // Creates the table and indexes if missing (idempotent; concurrent callers serialise on an
  // advisory lock). Called lazily by the other methods; public for tests.
  void ensure_schema();

  // Upserts the results for valid names (invalid ones are not stored), in one transaction.
  // An older result never overwrites a newer one. Text is made valid UTF-8 first. A row the
  // database refuses (a data or constraint error) costs only its own name: that chunk is
  // written again row by row and the refused names are reported. Connection trouble, deadlocks
  // and the like still throw (the job retries as a whole).
  UpsertReport upsert(const std::vector<DomainResult>& results);

  // Selects stale domains with FOR UPDATE SKIP LOCKED, hands them to `enqueue` in batches, and
  // marks those enqueued (recheck_enqueued_at = now()) in the same transaction, so a concurrent
  // caller (another runner) neither sees them now nor re-enqueues them later. `enqueue` throws
  // to stop; batches already enqueued stay marked.
  RecheckOutcome recheck_stale(const RecheckParams& p,
                               const std::function<void(const std::vector<std::string>&)>& enqueue);

 private:
  class Lease;
  std::unique_ptr<pqxx::connection> acquire();
  void release(std::unique_ptr<pqxx::connection> c);

  std::string url_;
  size_t pool_size_;
  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  bool schema_ready_ = false;
  std::mutex schema_mu_;
};

}  // namespace domain_check
