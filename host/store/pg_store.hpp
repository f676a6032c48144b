// Internal to the PostgreSQL store: the PgStore class, whose methods are split by concern
//   pg_store.cpp        connection, error mapping, schema migration, notifications
//   pg_jobs.cpp         enqueue (one, COPY, unique over a period), batches, workflows, reads
//   pg_claim.cpp        claiming: the fast statement and the slow path (lock keys, rate limits)
//   pg_outcomes.cpp     outcomes and leases of the jobs a runner holds
//   pg_maintenance.cpp  the leader's passes: promote, rescue, expire, prune, dependencies,
//                       aging, cron, and the leader lease
//   pg_admin.cpp        operators' actions: cancel, retry, dead letters, pauses, rate limits;
//                       the runners' registry and kind defaults
//   pg_ops.cpp          queue depths, throughput, the dashboard's statistics, webhooks
// and its SQL in host/store/sql/*.sql, one named statement each (jr_sql.hpp, generated).
#pragma once

#include <chrono>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "jr_sql.hpp"
#include "log.hpp"
#include "store.hpp"

namespace jr {

namespace pg {

// Statements marked :prepared are prepared once per connection (PgStore::prepare_all) and run
// with exec_prepared. With PgBouncer in transaction pooling mode (Store::set_pgbouncer) a named
// prepared statement would live in whichever server session happened to serve the PREPARE, so
// every statement is sent with its text instead (an unnamed statement, parsed in the same round
// trip). Every other statement is always sent with its text.
bool pgbouncer();

template <class... Args>
pqxx::result exec(pqxx::transaction_base& tx, const Statement& s, Args&&... args) {
  if (s.prepared && !pgbouncer()) return tx.exec_prepared(s.name, std::forward<Args>(args)...);
  return tx.exec_params(s.text, std::forward<Args>(args)...);
}

inline const char* opt(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

// The first column of every row, as ids.
inline std::vector<int64_t> ids_of(const pqxx::result& r) {
  std::vector<int64_t> ids;
  ids.reserve(r.size());
  for (const auto& row : r) ids.push_back(row[0].as<int64_t>());
  return ids;
}

inline std::vector<int64_t> to_i64(const std::vector<int>& v) {
  return std::vector<int64_t>(v.begin(), v.end());
}

// A libpqxx error as a StoreError (transient for connection-level failures and the SQLSTATEs
// worth a retry; "bad input" for a value the schema's own jr_ functions refused).
StoreError store_error(const pqxx::sql_error& e);
std::string trim(std::string s);

}  // namespace pg

class PgStore final : public Store {
 public:
  explicit PgStore(std::string url);
  ~PgStore() override;

  // pg_store.cpp
  int SchemaMigrate() override;
  int SchemaVersion() override;
  void SessionAsyncCommit() override;
  void Listen() override;
  bool WaitForJobs(int timeout_ms) override;
  bool LostWhileIdle() override;
  void* NativeHandle() override;
  bool Ping() override;
  std::string SessionSetting(const std::string& name) override;

  // pg_jobs.cpp
  JobInsertResult JobInsertEx(const JobInsertParams& p) override;
  std::vector<int64_t> JobInsertMany(const std::vector<JobInsertParams>& jobs) override;
  std::vector<int64_t> JobInsertBulk(const JobInsertParams& base,
                                     const std::vector<std::string>& payloads) override;
  std::optional<int64_t> JobReplay(int64_t id) override;
  std::optional<JobView> JobGet(int64_t id) override;
  std::vector<JobView> JobList(const JobListParams& p) override;
  void JobProgress(int64_t id, int attempt, double percent, const std::string& step) override;
  std::string BatchEnqueue(const std::string& kind, const std::string& payloads,
                           const std::string& options, const std::string& on_complete,
                           const std::string& on_failure) override;
  std::optional<std::string> BatchStatus(int64_t id) override;
  std::string WorkflowEnqueue(const std::string& doc_json) override;
  std::optional<std::string> WorkflowStatus(int64_t id) override;
  std::optional<std::string> JobParentResults(int64_t job_id, int64_t offset, int64_t max_bytes,
                                              int64_t max_count) override;

  // pg_claim.cpp
  std::vector<ClaimedJob> JobClaim(const JobClaimParams& p) override;

  // pg_outcomes.cpp
  JobFinishResult JobFinishMany(const std::string& worker_id,
                                const std::vector<JobFinish>& jobs) override;
  std::vector<int64_t> JobHeartbeat(const std::string& worker_id, double lease_seconds) override;
  std::vector<int64_t> JobHeartbeatHeld(const std::string& worker_id, double lease_seconds,
                                        const std::vector<int64_t>& ids, size_t* renewed) override;
  std::vector<int64_t> JobReleaseOrphanedClaims(const std::string& worker_id,
                                                const std::vector<int64_t>& held) override;
  std::vector<int64_t> JobCancelRequested(const std::string& worker_id) override;

  // pg_maintenance.cpp
  int JobPromoteDue(int limit) override;
  RescueResult JobRescueExpired(int limit, int default_max_attempts) override;
  int JobExpireTtl(int limit) override;
  int JobPrune(const PruneParams& p) override;
  int64_t JobsDeadRows() override;
  void JobsVacuum() override;
  std::pair<int, int> JobResolveDependencies(int limit) override;
  int JobAgePriorities(double seconds_per_point, int limit) override;
  bool LeaderTryAcquire(const std::string& name, const std::string& owner,
                        double ttl_seconds) override;
  void LeaderResign(const std::string& name, const std::string& owner) override;
  void CronUpsert(const std::vector<CronEntry>& entries) override;
  std::string CronList() override;
  int CronRun(const CronNext& next) override;

  // pg_admin.cpp
  CancelResult JobCancel(int64_t id) override;
  int64_t JobCancelMany(const JobCancelFilter& f, bool dry_run) override;
  bool JobRetry(int64_t id) override;
  std::vector<int64_t> DeadLetterReplay(const DeadLetterFilter& f) override;
  std::vector<JobView> DeadLetterList(const DeadLetterFilter& f) override;
  int DeadLetterPurge(const DeadLetterFilter& f) override;
  void QueuePause(const std::string& queue) override;
  bool QueueResume(const std::string& queue) override;
  std::vector<std::string> QueuePaused() override;
  void RateLimitSet(const std::string& key, double rate, double burst) override;
  bool RateLimitRemove(const std::string& key) override;
  std::string RateLimitList() override;
  void RateKeyFieldSet(const std::string& kind, const std::string& field,
                       const std::string& prefix) override;
  bool RateKeyFieldRemove(const std::string& kind) override;
  std::string RateKeyFieldList() override;
  bool KindsIdle(const std::vector<std::string>& kinds) override;
  void WorkerRegister(const WorkerRegisterParams& p) override;
  void WorkerHeartbeat(const std::string& worker_id, int64_t jobs_done) override;
  void WorkerUnregister(const std::string& worker_id) override;
  bool WorkerServesKind(const std::string& kind, double live_seconds) override;
  void KindDefaultsUpsert(const std::vector<KindDefaults>& kinds) override;

  // pg_ops.cpp
  std::string QueueDepths() override;
  std::string QueueThroughput(double seconds) override;
  std::string WorkerList(double live_seconds) override;
  int WorkerPruneDead(double older_than_seconds) override;
  void WorkerPublish(const std::string& worker_id, const std::string& details_json,
                     const std::vector<int64_t>& minute_starts,
                     const std::vector<std::string>& outcomes, const std::vector<int64_t>& counts,
                     bool prune_stats) override;
  void WebhookUrlsSet(const std::vector<std::string>& served,
                      const std::vector<std::pair<std::string, std::string>>& urls) override;
  std::vector<WebhookDelivery> WebhookClaim(const std::string& owner, int limit,
                                            double lease_seconds) override;
  void WebhookDelivered(int64_t id, int http_status) override;
  void WebhookFailed(int64_t id, int http_status, const std::string& error, double retry_in_seconds,
                     int max_attempts) override;
  std::string WebhookForJob(int64_t job_id) override;

 private:
  class NotifyReceiver;

  // Runs `fn`, reconnecting first if the previous call lost the connection, and turns libpqxx
  // errors into StoreError with the transient flag set for connection-level failures.
  template <class F>
  auto guard(F&& fn) -> decltype(fn()) {
    if (!conn_ || !conn_->is_open()) {
      drop();
      connect();
    }
    try {
      return fn();
    } catch (const pqxx::broken_connection& e) {
      drop();
      throw StoreError(std::string("database connection lost: ") + pg::trim(e.what()), true);
    } catch (const pqxx::in_doubt_error& e) {
      drop();
      throw StoreError(std::string("database connection lost during commit: ") + pg::trim(e.what()),
                       true);
    } catch (const pqxx::sql_error& e) {
      StoreError err = pg::store_error(e);
      if (err.transient()) drop();
      throw err;
    } catch (const StoreError&) {
      throw;
    } catch (const std::exception& e) {
      throw StoreError(std::string("database error: ") + pg::trim(e.what()), false);
    }
  }

  // `fn(tx)` in a transaction of its own, committed.
  template <class F>
  auto in_tx(F&& fn) -> decltype(fn(std::declval<pqxx::work&>())) {
    return guard([&] {
      pqxx::work tx(*conn_);
      auto r = fn(tx);
      tx.commit();
      return r;
    });
  }

  // Inserts n jobs with one COPY (pg_jobs.cpp).
  template <class JobAt, class PayloadAt>
  std::vector<int64_t> copy_jobs(size_t n, JobAt job, PayloadAt payload);

  void connect();
  void warn_jit_behind_pgbouncer(pqxx::nontransaction& tx);
  void drop();
  void ensure_prepared() {
    if (!prepared_) prepare_all();
  }
  // Prepares every :prepared statement on this connection (after a reconnect, and after a
  // migration: a statement cannot be prepared before the columns it names exist).
  void prepare_all();

  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unique_ptr<NotifyReceiver> receiver_;
  int seen_ = 0;  // receiver_->count when a wait last reported (WaitForJobs)
  bool prepared_ = false;
  bool async_commit_ = false;  // SessionAsyncCommit(): re-applied on every reconnect
  // JobClaim: until then, claims go straight to the transaction path (see JobClaim).
  std::chrono::steady_clock::time_point slow_claims_until_{};
};

}  // namespace jr
