// The Store: every read and write of job state goes through this interface, and all SQL lives
// in its PostgreSQL implementation (pg_store.cpp). Methods are Noun+Verb and take params
// structs, so adding a field breaks no caller.
//
// Threading: a Store object owns one database connection and is NOT thread-safe; give each
// thread its own (Store::open). Methods throw StoreError; StoreError::transient() tells whether
// the failure was the connection (retry after reconnecting) or the request (do not retry).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cron.hpp"

namespace jr {

class StoreError : public std::runtime_error {
 public:
  StoreError(const std::string& msg, bool transient, bool invalid_input = false)
      : std::runtime_error(msg), transient_(transient), invalid_input_(invalid_input) {}
  bool transient() const { return transient_; }
  // The database refused a value as invalid (SQLSTATE 22023 raised by the schema's own jr_
  // functions, such as a rate key made from a payload field): the caller's input, not the
  // database, is at fault (the CLI exits 2).
  bool invalid_input() const { return invalid_input_; }

 private:
  bool transient_;
  bool invalid_input_;
};

// A job to insert. Unset optionals mean "the kind's default" (resolved at run time).
struct JobInsertParams {
  std::string kind;
  std::string payload = "{}";        // JSON text, already validated by the caller
  std::optional<std::string> queue;  // default: the kind's default queue, else "default"
  int priority = 0;
  double delay_seconds = 0;           // > 0: state scheduled
  std::optional<std::string> run_at;  // timestamptz text; wins over delay_seconds
  std::optional<int> max_attempts;
  std::optional<int64_t> timeout_ms;
  std::optional<std::string> retry_schedule;  // "60,300,900"
  std::optional<double> ttl_seconds;          // expire if not started within this time
  std::optional<double> result_ttl_seconds;   // keep a completed job this long
  std::optional<double> failure_ttl_seconds;  // keep a dead letter this long
  // Unique jobs: while a job with this key is waiting, queued or running, inserting another
  // returns the existing job's id instead. `unique` derives the key from kind and payload.
  std::optional<std::string> unique_key;
  bool unique = false;
  // Uniqueness over a period and chosen states, replace and debounce (migration 14,
  // docs/job-model.md). Any of these makes the insert go through jr_enqueue_ex(), which
  // serialises the enqueues of one key; the key is unique_key, else derived from kind and
  // payload as with `unique`, and is kept in options.unique_key (not in the live-unique column).
  std::optional<double> unique_for_seconds;    // a job enqueued within this period blocks
  std::vector<std::string> unique_states;      // states in which a job blocks (empty: default)
  bool replace = false;                        // update a pending holder's payload and run time
  std::optional<double> debounce_seconds;      // run this long after the last enqueue...
  std::optional<double> debounce_max_seconds;  // ...but no later than this after the first
  bool unique_period() const {
    return unique_for_seconds || !unique_states.empty() || replace || debounce_seconds;
  }
  // Per-tenant rate limits (migration 15): the job is claimed under the token bucket of this
  // key ("tenant:42"; a bucket set for it, else one made from the longest matching pattern
  // such as "tenant:*"; none: unlimited) instead of its queue's or kind's. Kept in
  // options.rate_key.
  std::optional<std::string> rate_key;
  // Lock keys: at most lock_limit (default 1) jobs with this key run at once, anywhere.
  std::optional<std::string> lock_key;
  std::optional<int> lock_limit;
  // Parents that must complete first; a parent that is dead-lettered or cancelled cancels it.
  std::vector<int64_t> depends_on;
  // Callback URL notified (signed POST) when the job completes or is dead-lettered (host/ops).
  std::optional<std::string> webhook;
  // W3C traceparent of the producer's span (migration 19, docs/job-model.md "OpenTelemetry
  // traces"), checked by trace::traceparent_refusal. Kept in options.traceparent.
  std::optional<std::string> traceparent;
};

struct [[nodiscard]] JobInsertResult {
  int64_t id = 0;
  bool inserted = true;   // false: a unique job with the same key already existed
  bool replaced = false;  // (not inserted) that job's payload and run time were updated
};

struct ClaimedJob {
  int64_t id = 0;
  std::string kind;
  std::string queue;
  std::string payload;
  int priority = 0;
  int attempt = 0;
  std::optional<int> max_attempts;
  std::optional<int64_t> timeout_ms;
  std::vector<int> retry_schedule;
  double created_at = 0;    // Unix seconds
  double started_at = 0;    // Unix seconds (database clock)
  std::string traceparent;  // options.traceparent ("" = none): the producer's span
  double run_at = 0;        // Unix seconds: when this attempt was due (0 = unknown)
};

struct JobClaimParams {
  std::string worker_id;
  std::vector<std::string> kinds;   // only these kinds (never empty)
  std::vector<std::string> queues;  // empty: any queue
  int limit = 1;
  double lease_seconds = 30;
  // Set by JobClaim when rate limits held jobs back: try again after this long.
  double* throttled_retry_seconds = nullptr;
};

// Outcome of one attempt as the engine records it.
enum class Outcome { completed, retry, discard, snooze, cancelled, release };

struct JobFinish {
  int64_t id = 0;
  int attempt = 0;  // fencing: must match the row's attempt
  Outcome outcome = Outcome::completed;
  std::string result;        // JSON text or empty (completed)
  std::string error_kind;    // "error", "permanent", "timeout", "crash", "lease_lost", ...
  std::string error;         // message (retry, discard, cancelled)
  double delay_seconds = 0;  // retry / snooze
  std::string kind;          // for logs (set on failures only, to keep completions cheap)
};

struct [[nodiscard]] JobFinishResult {
  std::vector<int64_t> rejected;  // ids whose lease was no longer ours (fencing)
};

struct JobListParams {
  std::optional<std::string> state;
  std::optional<std::string> kind;
  std::optional<std::string> queue;
  int limit = 100;
};

// A job as shown by `status` and `jobs ls`: the whole row as a JSON object.
struct JobView {
  std::string json;
};

struct RescueResult {
  int retried = 0;    // back to retryable, the lost attempt counted
  int discarded = 0;  // attempts used up: dead letter queue
};

struct PruneParams {
  double result_ttl_seconds = 86400;         // completed jobs without their own result_ttl
  double failure_ttl_seconds = 30 * 86400;   // dead letters without their own failure_ttl
  double cancelled_ttl_seconds = 7 * 86400;  // cancelled jobs
  int limit = 5000;
};

enum class [[nodiscard]] CancelResult{cancelled, requested, not_found, already_finished};

// `runner jobs cancel`: the jobs of one queue that are not running, optionally of one kind and
// in one state (waiting, scheduled, available or retryable; unset: all four).
struct JobCancelFilter {
  std::string queue;
  std::optional<std::string> kind;
  std::optional<std::string> state;
};

struct DeadLetterFilter {
  std::optional<std::string> kind;
  std::optional<std::string> queue;
  std::optional<std::string> since;   // timestamptz text: finished at or after
  std::optional<std::string> before;  // timestamptz text: finished before
  int limit = 100;
  std::vector<int64_t> ids;  // non-empty: only these jobs (the dashboard's selection)
};

struct WorkerRegisterParams {
  std::string worker_id;
  std::vector<std::string> kinds;
  std::vector<std::string> queues;
};

struct KindDefaults {
  std::string kind;
  std::string plugin;
  std::optional<std::string> default_queue;
  std::optional<int64_t> timeout_ms;
  std::optional<int> max_attempts;
  std::optional<std::string> retry_schedule;
  // Kind enqueued (in the same transaction) when a job of this kind ends discarded or
  // cancelled, whatever the path: see migration 10 in migrations.cpp.
  std::optional<std::string> finalizer{};
};

// A webhook notification waiting in the outbox (jr_webhook_deliveries), claimed for delivery.
struct WebhookDelivery {
  int64_t id = 0;
  int64_t job_id = 0;
  std::string event;  // "job.completed" or "job.dead_lettered"
  std::string url;
  std::string body;  // JSON text, signed byte for byte
  int attempts = 0;  // deliveries tried before this one
};

class Store {
 public:
  virtual ~Store() = default;

  // Connects (throws StoreError on failure).
  static std::unique_ptr<Store> open(const std::string& url);
  // PgBouncer in transaction pooling mode between the process and PostgreSQL ([worker]
  // pgbouncer): no named prepared statements and no session settings, for every Store of the
  // process. Set once at start, before any Store is opened.
  static void set_pgbouncer(bool on);
  static bool pgbouncer();

  // Applies pending migrations under an advisory lock; returns how many were applied.
  virtual int SchemaMigrate() = 0;
  virtual int SchemaVersion() = 0;

  [[nodiscard]] virtual int64_t JobInsert(const JobInsertParams& p) { return JobInsertEx(p).id; }
  virtual JobInsertResult JobInsertEx(const JobInsertParams& p) = 0;
  // Bulk insert in one transaction (COPY); returns the new ids in input order.
  virtual std::vector<int64_t> JobInsertMany(const std::vector<JobInsertParams>& jobs) = 0;
  // Bulk insert of jobs that share everything but the payload (`runner enqueue
  // --payload-file`): `payloads` are JSON texts, already validated. Same result as
  // JobInsertMany with `base` copied once per payload, without building those copies.
  virtual std::vector<int64_t> JobInsertBulk(const JobInsertParams& base,
                                             const std::vector<std::string>& payloads) = 0;
  [[nodiscard]] virtual std::vector<ClaimedJob> JobClaim(const JobClaimParams& p) = 0;
  // Records outcomes of several attempts in one transaction.
  [[nodiscard]] virtual JobFinishResult JobFinishMany(const std::string& worker_id,
                                                      const std::vector<JobFinish>& jobs) = 0;
  // Extends the lease of every running job of this worker; returns ids whose cancellation was
  // requested.
  [[nodiscard]] virtual std::vector<int64_t> JobHeartbeat(const std::string& worker_id,
                                                          double lease_seconds) = 0;
  // Same for the running jobs of this worker among `ids` only (the jobs the runner knows it
  // holds). A claim whose answer was lost (connection killed after the commit) leaves rows that
  // carry the worker's id but that no slot will run: they must expire and be rescued, not be
  // kept alive by every heartbeat. Rows another transaction has locked are skipped; `renewed`
  // (if given) receives how many rows were renewed.
  [[nodiscard]] virtual std::vector<int64_t> JobHeartbeatHeld(const std::string& worker_id,
                                                              double lease_seconds,
                                                              const std::vector<int64_t>& ids,
                                                              size_t* renewed = nullptr) = 0;
  // This connection's commits stop waiting for the WAL flush (synchronous_commit off, kept
  // across reconnects). For lease renewals only: one lost in a database crash costs nothing
  // (the lease is renewed again, or expires as if the runner had stopped), while a renewal
  // queued behind other sessions' fsyncs on a loaded machine could let a live lease expire.
  virtual void SessionAsyncCommit() = 0;
  // Claims of this runner whose answer never arrived (the connection died after the claim had
  // committed): running jobs leased to `worker_id`, claimed since this process registered
  // (WorkerRegister), that are not among `held`. Puts them back available with the attempt the
  // claim took restored (no runner died, no attempt is charged). Returns their ids.
  virtual std::vector<int64_t> JobReleaseOrphanedClaims(const std::string& worker_id,
                                                        const std::vector<int64_t>& held) = 0;
  // Moves due scheduled/retryable jobs to available; returns how many.
  virtual int JobPromoteDue(int limit) = 0;
  [[nodiscard]] virtual std::optional<JobView> JobGet(int64_t id) = 0;
  virtual std::vector<JobView> JobList(const JobListParams& p) = 0;
  virtual void JobProgress(int64_t id, int attempt, double percent, const std::string& step) = 0;

  // Lifecycle maintenance (run by the elected leader).
  // Running jobs whose lease expired: retryable (attempt counted) or dead letter when attempts
  // are used up. `default_max_attempts` applies when neither the job nor its kind says.
  virtual RescueResult JobRescueExpired(int limit, int default_max_attempts) = 0;
  // Jobs whose ttl passed before they started: cancelled with error kind "expired".
  virtual int JobExpireTtl(int limit) = 0;
  // Deletes finished jobs past their retention; returns how many.
  virtual int JobPrune(const PruneParams& p) = 0;
  // The hot table's dead row versions as the database's statistics last reported them, and a
  // VACUUM of it (the vacuum service). A store without dead rows (in memory) has none to report
  // and nothing to vacuum. PostgreSQL skips the VACUUM, with a warning, for a role that does not
  // own the table; the count then stays, and the service waits for as many more.
  virtual int64_t JobsDeadRows() { return 0; }
  virtual void JobsVacuum() {}
  // Cancels a waiting job, or flags a running one (its runner asks the handler to stop).
  [[nodiscard]] virtual CancelResult JobCancel(int64_t id) = 0;
  // Cancels every job matching `f` in one transaction (error kind "cancelled"), or with
  // `dry_run` only counts them; returns how many.
  virtual int64_t JobCancelMany(const JobCancelFilter& f, bool dry_run) = 0;
  // Running jobs of this worker whose cancellation was requested.
  [[nodiscard]] virtual std::vector<int64_t> JobCancelRequested(const std::string& worker_id) = 0;
  // Makes a dead-lettered, cancelled or waiting job available now, with at least one attempt
  // left. Returns false when there is no such job (or it is running or completed).
  [[nodiscard]] virtual bool JobRetry(int64_t id) = 0;
  // `runner replay` (Reproq's replay): a new job with the kind, queue, payload, priority,
  // attempts, timeout, retry schedule, lock key, rate key, webhook and retention of job `id`
  // (waiting, running or finished, completed included), inserted through JobInsertEx.
  // Dependencies and uniqueness are not copied: the replay is asked for explicitly. Returns
  // the new id, or nothing when no job has that id.
  [[nodiscard]] virtual std::optional<int64_t> JobReplay(int64_t id) = 0;
  // Batches (migration 17, docs/job-model.md "Batches"): jr_batch_enqueue() with its
  // arguments as JSON texts (`on_complete` / `on_failure`: "null" for none); returns its
  // {"batch_id", "job_ids"} document. Input the SQL function refuses (SQLSTATE 22023) throws
  // std::invalid_argument with its message; nothing is inserted.
  virtual std::string BatchEnqueue(const std::string& kind, const std::string& payloads,
                                   const std::string& options, const std::string& on_complete,
                                   const std::string& on_failure) = 0;
  // jr_batch_status(id) as JSON text, or nothing when no batch has that id.
  virtual std::optional<std::string> BatchStatus(int64_t id) = 0;
  // Retries every dead letter matching the filter; returns the ids.
  virtual std::vector<int64_t> DeadLetterReplay(const DeadLetterFilter& f) = 0;
  // Workflows (migration 18, docs/job-model.md "Workflows"). WorkflowEnqueue: jr_workflow_enqueue
  // (doc) in one transaction, {"workflow_id", "steps": [{"step", "job_id"}]}; a refused document
  // throws a StoreError (not transient) with the function's message. WorkflowStatus:
  // jr_workflow_status(id), nothing for an unknown id. JobParentResults: jr_parent_results(job,
  // offset, max_bytes, max_count), a page of the results of the job's parents; nothing for an
  // unknown job.
  virtual std::string WorkflowEnqueue(const std::string& doc_json) = 0;
  virtual std::optional<std::string> WorkflowStatus(int64_t id) = 0;
  virtual std::optional<std::string> JobParentResults(int64_t job_id, int64_t offset,
                                                      int64_t max_bytes, int64_t max_count) = 0;
  virtual std::vector<JobView> DeadLetterList(const DeadLetterFilter& f) = 0;
  virtual int DeadLetterPurge(const DeadLetterFilter& f) = 0;

  // Takes or renews the leadership lease `name` for `owner` (ttl seconds). True while `owner`
  // leads; a leader that stops renewing loses it when the ttl passes.
  [[nodiscard]] virtual bool LeaderTryAcquire(const std::string& name, const std::string& owner,
                                              double ttl_seconds) = 0;
  virtual void LeaderResign(const std::string& name, const std::string& owner) = 0;

  // Flow control.
  // Waiting jobs whose parents all completed become available; those with a dead-lettered or
  // cancelled parent are cancelled. Returns {promoted, cancelled}.
  virtual std::pair<int, int> JobResolveDependencies(int limit) = 0;
  // Ages priorities: available jobs waiting longer than `seconds_per_point` per point gain
  // priority (never beyond the highest waiting priority). Returns rows changed.
  virtual int JobAgePriorities(double seconds_per_point, int limit) = 0;
  virtual void QueuePause(const std::string& queue) = 0;
  virtual bool QueueResume(const std::string& queue) = 0;
  virtual std::vector<std::string> QueuePaused() = 0;
  virtual void RateLimitSet(const std::string& key, double rate, double burst) = 0;
  virtual bool RateLimitRemove(const std::string& key) = 0;
  // [{key, rate, burst, tokens}] as JSON text.
  virtual std::string RateLimitList() = 0;
  // Rate keys from a payload field, per kind (migration 20): a job of `kind` enqueued without a
  // rate key gets "prefix:<the payload's field>". Remove returns false when none was set.
  virtual void RateKeyFieldSet(const std::string& kind, const std::string& field,
                               const std::string& prefix) = 0;
  virtual bool RateKeyFieldRemove(const std::string& kind) = 0;
  // [{kind, field, prefix}] as JSON text.
  virtual std::string RateKeyFieldList() = 0;
  // True when no job of these kinds is available or running anywhere.
  [[nodiscard]] virtual bool KindsIdle(const std::vector<std::string>& kinds) = 0;

  // Cron. Upsert keeps an entry's next run unless its schedule or time zone changed.
  virtual void CronUpsert(const std::vector<CronEntry>& entries) = 0;
  virtual std::string CronList() = 0;  // JSON array
  // Enqueues one job for every due entry (once per tick, whatever the number of runners) and
  // advances it. `next(schedule, after_local)` returns the next naive local time after
  // `after_local`. Returns how many jobs were enqueued.
  using CronNext =
      std::function<std::optional<std::string>(const std::string&, const std::string&)>;
  virtual int CronRun(const CronNext& next) = 0;

  virtual void WorkerRegister(const WorkerRegisterParams& p) = 0;
  virtual void WorkerHeartbeat(const std::string& worker_id, int64_t jobs_done) = 0;
  virtual void WorkerUnregister(const std::string& worker_id) = 0;
  // True when a live runner (heartbeat within `live_seconds`) serves `kind`.
  [[nodiscard]] virtual bool WorkerServesKind(const std::string& kind, double live_seconds) = 0;

  virtual void KindDefaultsUpsert(const std::vector<KindDefaults>& kinds) = 0;

  // Blocks up to `timeout_ms` for a new-job notification; returns true when one arrived.
  virtual bool WaitForJobs(int timeout_ms) = 0;
  virtual void Listen() = 0;
  virtual bool Ping() = 0;
  // A setting of this store's own session as the server sees it (current_setting; "" when the
  // server has no such setting, or the store has no server): what the connection set up.
  virtual std::string SessionSetting(const std::string&) { return {}; }
  // True when the connection is known dead without a round trip: while idle (no statement in
  // flight) the server sent something or closed the socket. On a connection that does not
  // LISTEN that is the termination of its backend (pg_terminate_backend, a server restart, an
  // idle timeout): the FATAL message and the end of the stream. One poll(2), no I/O.
  virtual bool LostWhileIdle() { return false; }
  // The libpqxx connection (pqxx::connection*) under a PostgreSQL store, connected, for code
  // that runs its own read-only SQL on a pooled Store (the dashboard, ops/ui_store.cpp); valid
  // until the next call on this Store. nullptr for other stores.
  virtual void* NativeHandle() { return nullptr; }

  // ---- Operations (host/ops): info, metrics, worker registry cleanup, webhooks ----
  // Live jobs per queue and state: JSON {"queue": {"available": n, ...}, ...}.
  virtual std::string QueueDepths() = 0;
  // Jobs finished within the last `seconds`, per queue and final state: JSON like QueueDepths.
  virtual std::string QueueThroughput(double seconds) = 0;
  // Runners whose heartbeat is within `live_seconds`: JSON array of jr_workers rows.
  virtual std::string WorkerList(double live_seconds) = 0;
  // Deletes registry rows whose heartbeat is older than `older_than_seconds`; returns how many.
  virtual int WorkerPruneDead(double older_than_seconds) = 0;
  // The dashboard publisher (ops/ui_publish.hpp), in one transaction: this runner's details
  // (JSON text), the attempts finished per minute (unix seconds of the minute, outcome, count)
  // added to jr_stats_minute, and with `prune_stats` the counts older than a day deleted.
  virtual void WorkerPublish(const std::string& worker_id, const std::string& details_json,
                             const std::vector<int64_t>& minute_starts,
                             const std::vector<std::string>& outcomes,
                             const std::vector<int64_t>& counts, bool prune_stats) = 0;
  // Per-kind webhook URLs: sets `urls` and removes the URL of every other kind in `served`.
  virtual void WebhookUrlsSet(const std::vector<std::string>& served,
                              const std::vector<std::pair<std::string, std::string>>& urls) = 0;
  // Claims due deliveries for `owner` for `lease_seconds` (others skip them meanwhile).
  [[nodiscard]] virtual std::vector<WebhookDelivery> WebhookClaim(const std::string& owner,
                                                                  int limit,
                                                                  double lease_seconds) = 0;
  virtual void WebhookDelivered(int64_t id, int http_status) = 0;
  // A failed try: pending again after `retry_in_seconds`, or failed when attempts reach `max`.
  virtual void WebhookFailed(int64_t id, int http_status, const std::string& error,
                             double retry_in_seconds, int max_attempts) = 0;
  // The deliveries of one job as a JSON array ("[]" when none).
  virtual std::string WebhookForJob(int64_t job_id) = 0;
};

}  // namespace jr
