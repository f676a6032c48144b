// The engine: claims jobs in batches, runs them on N slots, records outcomes in batches, keeps
// leases alive, and shuts down gracefully.
//
// Threads:
//   fetcher     claims jobs of ready plugins when slots are free; sleeps on LISTEN/NOTIFY
//   slots x N   run one job at a time through the plugin
//   completer   writes outcomes (batched, one transaction per batch), retrying through outages
//   heartbeat   renews the leases of the jobs held here, on its own connection (asynchronous
//               commit) so nothing else delays it; never calls plugin code
//   maintainer  heartbeats the worker registry, enforces timeouts, polls cancels; it never
//               calls plugin code
//   starter x P one per plugin: brings it up (init) and retries with backoff while it fails
//   idle x H    one per plugin with an idle hook: calls it when its kinds are idle, with a
//               deadline (a sandboxed hook is killed at it)
//   progress    writes coalesced progress updates (a plugin's progress call never waits on
//               the database)
// Connections (EngineOptions::connections, db_budget.hpp): lease renewal always has its own;
// LISTEN has its own (none when polling); claims and completions share one unless the budget
// gives completers their own; every other service (registry, cancel polls, maintenance, cron,
// progress, enqueues, idle hooks, and the host/ops services through services_store()) shares
// one, used in turn, never while plugin code runs.
// Every database failure is logged and retried with backoff; a lost connection never kills the
// runner and never drops an outcome. Shutdown waits a bounded time for plugin code: threads
// still inside an in-process plugin after that are abandoned (abandoned_handlers()).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "attempt_span.hpp"
#include "db_budget.hpp"
#include "executor.hpp"
#include "host_api.hpp"
#include "maintenance.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

namespace jr {

// Optional hooks for metrics (host/ops). Called from engine threads: must be thread-safe, fast
// and must not throw.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // One attempt ended with `outcome` after `run_seconds` (before the outcome is written).
  virtual void job_finished(const ClaimedJob& job, Outcome outcome, double run_seconds) = 0;
  // The leader-elected maintenance services started; `m` lives until run() returns.
  virtual void maintenance_started(const Maintenance* m) = 0;
};

struct EngineOptions {
  std::string database_url;
  std::string worker_id;
  int concurrency = 10;
  int prefetch = 0;     // jobs claimed ahead of free slots
  int fetch_batch = 0;  // max jobs per claim; 0 = room, at most completion_batch (a claim
                        // larger than a completion batch only builds a backlog of running rows)
  int completion_batch = 500;  // max outcomes per write
  // Which services share which connection (db_budget.hpp). The default is the default budget
  // without HTTP: lease renewal, LISTEN, claims+completions, services. With completers of their
  // own (a larger budget), one batch is written while the next accumulates and the other's
  // commit (fsync) is in flight, and group commit can merge their flushes.
  ConnectionPlan connections;
  // LISTEN on this URL instead of database_url (a direct one when database_url is PgBouncer).
  std::string listen_database_url;
  std::vector<std::string> queues;  // empty = every queue
  double lease_seconds = 30;
  double poll_interval_seconds = 1.0;
  double shutdown_grace_seconds = 30;
  int default_max_attempts = 25;
  double rescue_interval_seconds = 5;
  double heartbeat_seconds = 0;  // lease renewal interval; 0 = lease_seconds / 4
  double prune_interval_seconds = 60;
  PruneParams prune;
  bool maintenance = true;  // take part in the leader election for maintenance services
  double priority_aging_seconds = 60;
  int64_t vacuum_dead_rows = 50000;  // the vacuum service's threshold; 0 = off
  std::vector<CronEntry> cron;       // from the config and the plugins' manifests
  // Plugin config sections (after env overrides), for idle-hook settings named in manifests.
  std::map<std::string, nlohmann::json> plugin_configs;
  EngineObserver* observer = nullptr;  // metrics hooks (host/ops); must outlive the engine
  // OpenTelemetry traces (attempt_span.hpp): a span per sampled attempt goes here; null = no
  // exporter (the plugin then gets the job's stored traceparent as it is). Must outlive the
  // engine.
  SpanSink* spans = nullptr;

  // Limits on the host services a plugin uses, per job attempt (or idle call); [worker] keys
  // of the same names. See docs/sandbox.md, "Limits on host services".
  int64_t enqueues_per_job = 1000;
  int64_t log_lines_per_job = 10000;
  int64_t log_bytes_per_job = 1 << 20;
  double progress_interval_seconds = 0.25;  // at most one progress write per job this often
  double idle_timeout_seconds = 60;         // deadline of one idle-hook call
  double init_retry_max_seconds = 60;       // longest pause between a plugin's start attempts
  // More fields for a plugin's "plugin loaded ..." line (sha256, policy, grants), by name.
  std::map<std::string, nlohmann::json> plugin_log_fields;
};

struct EngineStats {
  std::atomic<int64_t> claimed{0};
  std::atomic<int64_t> claims{0};  // claim statements that returned at least one job
  std::atomic<int64_t> completed{0};
  std::atomic<int64_t> retried{0};
  std::atomic<int64_t> discarded{0};
  std::atomic<int64_t> snoozed{0};
  std::atomic<int64_t> cancelled{0};
  std::atomic<int64_t> released{0};
  std::atomic<int64_t> rejected{0};  // fenced completions
  std::atomic<int64_t> db_errors{0};
};

class Engine : public HostServices {
 public:
  // Every plugin must outlive the engine. `executors` maps a plugin name to how its jobs run;
  // a plugin without an entry runs in-process (it must then be initialised). `kinds` limits
  // the kinds served (empty = all kinds of all plugins).
  Engine(EngineOptions opts, std::vector<LoadedPlugin*> plugins, std::vector<std::string> kinds,
         std::map<std::string, std::unique_ptr<Executor>> executors = {});
  ~Engine() override;

  // Runs until stop() and the graceful shutdown finish. Returns the process exit code.
  int run();
  // Asks the engine to stop claiming and shut down gracefully. Thread-safe.
  void stop();
  bool stopping() const { return stopping_.load(); }
  // True when run() returned while handlers that ignored the shutdown were still inside plugin
  // code: the caller must then exit without unloading or shutting down plugins.
  bool abandoned_handlers() const { return abandoned_handlers_; }

  const EngineStats& stats() const { return stats_; }
  const Maintenance* maintenance() const { return maintenance_.get(); }
  const std::vector<std::string>& kinds() const { return kinds_; }
  const std::string& worker_id() const { return opts_.worker_id; }
  // The shared services connection (registry, maintenance, progress, enqueues, idle hooks), for
  // the host/ops services that share it too (webhooks, the dashboard publisher).
  SharedStore& services_store() { return *services_; }
  // Jobs executing in a slot right now. Thread-safe.
  int running_jobs() {
    std::lock_guard<std::mutex> lock(running_mu_);
    return static_cast<int>(running_.size());
  }

  // Starts bringing the plugins up in the background (run() does it too); call early so their
  // init overlaps the wait for the database. Idempotent.
  void start_plugins();
  struct PluginStatus {
    std::string name;
    std::string file;
    bool ready = false;
    std::string reason;  // why not ready
  };
  // The plugins serving at least one kind here, and whether each is ready. Thread-safe.
  std::vector<PluginStatus> plugin_status() const;

  // HostServices
  void job_log(jr_job_ctx* ctx, int level, std::string_view msg) override;
  void job_progress(jr_job_ctx* ctx, double percent, std::string_view step) override;
  int64_t job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                      std::string_view options_json) override;
  // jr.parent_results.v1 (docs/job-model.md "Workflows"): a page of at most
  // ops::kParentResultsPageCount parents and `max_bytes` (at most ops::kParentResultsPageBytes)
  // of JSON; at most kParentResultsCallsPerJob calls per attempt.
  int job_parent_results(jr_job_ctx* ctx, uint32_t offset, uint32_t max_bytes,
                         std::string* page) override;
  static constexpr int64_t kParentResultsCallsPerJob = 10000;

 private:
  struct KindEntry {
    LoadedPlugin* plugin = nullptr;
    const KindInfo* info = nullptr;
    Executor* executor = nullptr;
  };
  struct Running {
    jr_job_ctx* ctx = nullptr;
    int64_t deadline_ms = 0;  // steady clock; 0 = none
  };

  struct IdleHook;
  struct PluginRuntime;
  void fetch_loop();
  void slot_loop();
  void note_finished(const std::vector<JobFinish>& batch, const JobFinishResult& r);
  void complete_loop();
  void maintain_loop();
  void heartbeat_loop();
  void idle_loop(IdleHook* h);
  void run_idle_hook(IdleHook& h);
  void supervise(PluginRuntime* r);
  void set_ready(PluginRuntime* r, bool ready, const std::string& why);
  std::vector<std::string> claimable_kinds();
  // Waits until `done` or the deadline for the background threads (starters, idle hooks);
  // the ones still inside plugin code are detached and the engine marked abandoned.
  void finish_background(int64_t deadline_ms);
  bool enqueue_permitted(jr_job_ctx* ctx, std::string_view kind);
  void progress_loop();
  void flush_progress(jr_job_ctx& ctx);
  void end_call(jr_job_ctx& ctx);

  struct Attempt;
  // Returns how long the job waited for its executor (ExecOutcome::waited_us).
  int64_t execute(ClaimedJob& job);
  // Several short jobs of one executor on one slot (Executor::run_batch).
  void execute_group(std::vector<ClaimedJob>& jobs, Executor* executor);
  size_t group_size_locked(const ClaimedJob& first, Executor** executor) const;
  bool begin_attempt(ClaimedJob& job, Attempt& a, bool start_now);
  void attempt_started(Attempt& a, int64_t now_steady);
  void end_attempt(Attempt& a, const ExecOutcome& exec);
  void job_left_slot(int64_t run_us);  // a claimed job is done with its slot (-1: did not run)
  JobFinish classify(const ClaimedJob& job, const KindEntry& k, const ExecOutcome& exec,
                     jr_job_ctx& ctx);
  void push_finish(JobFinish f);
  void backoff_sleep(int& delay_ms);
  void cancel_running(int64_t id, int reason);
  // Gives claimed jobs that no slot took back without charging an attempt; with `keep_for_idle`
  // the ones an idle slot is about to take stay (they run: see run()). Returns how many left.
  size_t release_ready_jobs(bool keep_for_idle);

  EngineOptions opts_;
  std::vector<LoadedPlugin*> plugins_;
  std::vector<std::string> kinds_;
  std::unordered_map<std::string, KindEntry> kind_map_;
  std::map<std::string, std::unique_ptr<Executor>> executors_;
  EngineStats stats_;

  std::atomic<bool> stopping_{false};
  bool abandoned_handlers_ = false;
  std::atomic<bool> fetcher_done_{false};
  std::atomic<bool> slots_done_{false};
  std::atomic<bool> completer_done_{false};

  // Claimed jobs waiting for a slot, and the number of claimed-but-unfinished jobs.
  std::mutex ready_mu_;
  std::condition_variable ready_cv_;  // slots wait for work
  std::condition_variable room_cv_;   // fetcher waits for room
  std::deque<ClaimedJob> ready_;
  int inflight_ = 0;
  int busy_slots_ = 0;  // slots running a job (the others take one of ready_ when they run)
  // Moving average of job execution time (µs), for the automatic prefetch.
  std::atomic<int64_t> avg_job_us_{100000};
  // The last claim got every job it asked for: the queue holds more than this runner takes, so
  // the automatic prefetch may hold more (max_inflight) without idling other runners.
  std::atomic<bool> backlog_{false};
  int max_inflight() const;
  // The fetcher's reason to claim (ready_mu_ held): room for jobs, and either the slots are about
  // to starve or there is room for a good batch. Who frees room wakes the fetcher only when this
  // holds: a wake-up per finished job that finds no reason would be a context switch per job.
  bool claim_due_locked() const;

  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::vector<JobFinish> done_;
  // Outcomes pushed but not yet written. The fetcher counts them as in flight, so a slow
  // database cannot build an unbounded backlog of finished-but-unrecorded jobs.
  std::atomic<int64_t> unflushed_{0};

  // Ids of the jobs this runner holds (claimed, until their outcome is written): the only
  // leases the heartbeat extends. Counted: a job can be claimed again (next attempt) before
  // the outcome of its previous attempt was written, and that write must not drop the claim.
  std::mutex held_mu_;
  std::unordered_map<int64_t, int> held_;

  std::mutex running_mu_;
  std::unordered_map<int64_t, Running> running_;

  // Connections (db_budget.hpp): claims (and completions unless completers have their own),
  // completers of their own, and the services connection (services_ points to claims_ when the
  // budget has no room for one apart).
  std::unique_ptr<SharedStore> claims_;
  std::vector<std::unique_ptr<SharedStore>> completer_stores_;
  std::unique_ptr<SharedStore> services_own_;
  SharedStore* services_ = nullptr;
  std::atomic<int> next_completer_{0};

  // Progress: calls that reported progress (registered on the first report, until the call
  // ends); the progress thread writes their latest values, a job's last one is written before
  // its outcome (flush_progress, under progress_write_mu_).
  std::mutex progress_mu_;
  std::condition_variable progress_cv_;
  std::unordered_set<jr_job_ctx*> progress_calls_;
  std::mutex progress_write_mu_;  // held while writing (on the services connection)
  std::thread progress_thread_;
  std::atomic<bool> progress_done_{false};

  // Plugins: readiness, and the kinds of the ready ones (the only kinds claimed).
  struct PluginRuntime {
    LoadedPlugin* plugin = nullptr;
    Executor* executor = nullptr;
    std::set<std::string> may_enqueue;  // the kinds it serves here and the granted ones
    std::vector<std::string> kinds;     // served here
    bool ready = false;                 // guarded by plugins_mu_
    std::string reason = "starting";    // guarded by plugins_mu_
    bool attempted = false;             // its first start attempt is over (plugins_mu_)
    std::thread thread;
    std::atomic<bool> in_plugin{false};  // inside start_plugin()
    std::atomic<bool> finished{false};   // supervise() returned
  };
  std::vector<std::unique_ptr<PluginRuntime>> runtimes_;
  std::unordered_map<std::string, PluginRuntime*> runtime_by_name_;
  mutable std::mutex plugins_mu_;
  std::condition_variable plugins_cv_;    // readiness changes and stop
  std::vector<std::string> ready_kinds_;  // guarded by plugins_mu_
  bool plugins_started_ = false;          // guarded by plugins_mu_

  std::unique_ptr<Maintenance> maintenance_;
  // Idle hooks: per plugin with one, its settings and when its jobs last ran here.
  struct IdleHook {
    LoadedPlugin* plugin = nullptr;
    Executor* executor = nullptr;
    PluginRuntime* runtime = nullptr;
    std::vector<std::string> kinds;
    int64_t threshold_ms = 60000;
    int64_t poll_ms = 30000;
    int64_t timeout_ms = 60000;
    std::atomic<int64_t> last_active{0};
    std::thread thread;
    std::mutex mu;                  // guards current
    jr_job_ctx* current = nullptr;  // the call in progress, to cancel it at shutdown
    std::atomic<bool> finished{false};
  };
  std::vector<std::unique_ptr<IdleHook>> idle_hooks_;
  std::unordered_map<std::string, IdleHook*> idle_by_kind_;
  std::thread fetcher_;
  std::vector<std::thread> completers_;
  std::thread maintainer_;
  std::thread heartbeater_;
  std::mutex heartbeat_mu_;
  std::condition_variable heartbeat_cv_;  // wakes the heartbeat thread at shutdown
  std::vector<std::thread> slots_;
};

}  // namespace jr
