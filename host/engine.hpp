// The engine: claims jobs in batches, runs them on N slots, records outcomes in batches, keeps
// leases alive, and shuts down gracefully.
//
// Threads (each with its own database connection where it needs one):
//   fetcher     claims jobs when slots are free; sleeps on LISTEN/NOTIFY (poll as fallback)
//   slots x N   run one job at a time through the plugin
//   completer   writes outcomes (batched, one transaction per batch), retrying through outages
//   maintainer  heartbeats leases and the worker registry, promotes due jobs, enforces timeouts
// Every database failure is logged and retried with backoff; a lost connection never kills the
// runner and never drops an outcome.
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
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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
  // Connections writing outcomes. With two, one batch is written while the next accumulates
  // and the other's commit (fsync) is in flight, and group commit can merge their flushes.
  int completers = 2;
  std::vector<std::string> queues;  // empty = every queue
  double lease_seconds = 30;
  double poll_interval_seconds = 1.0;
  double shutdown_grace_seconds = 30;
  int default_max_attempts = 25;
  double rescue_interval_seconds = 5;
  double prune_interval_seconds = 60;
  PruneParams prune;
  bool maintenance = true;  // take part in the leader election for maintenance services
  double priority_aging_seconds = 60;
  std::vector<CronEntry> cron;  // from the config and the plugins' manifests
  // Plugin config sections (after env overrides), for idle-hook settings named in manifests.
  std::map<std::string, nlohmann::json> plugin_configs;
  EngineObserver* observer = nullptr;  // metrics hooks (host/ops); must outlive the engine
};

struct EngineStats {
  std::atomic<int64_t> claimed{0};
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
  // Jobs executing in a slot right now. Thread-safe.
  int running_jobs() {
    std::lock_guard<std::mutex> lock(running_mu_);
    return static_cast<int>(running_.size());
  }

  // HostServices
  void job_log(jr_job_ctx* ctx, int level, std::string_view msg) override;
  void job_progress(jr_job_ctx* ctx, double percent, std::string_view step) override;
  int64_t job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                      std::string_view options_json) override;

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

  void fetch_loop();
  void slot_loop();
  void complete_loop();
  void maintain_loop();
  void run_idle_hooks(Store& store, int64_t now);

  void execute(ClaimedJob& job);
  JobFinish classify(const ClaimedJob& job, const KindEntry& k, const ExecOutcome& exec,
                     jr_job_ctx& ctx);
  void push_finish(JobFinish f);
  std::unique_ptr<Store> connect_with_backoff(const char* role);
  void backoff_sleep(int& delay_ms);
  void cancel_running(int64_t id, int reason);
  void release_ready_jobs();

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
  // Moving average of job execution time (µs), for the automatic prefetch.
  std::atomic<int64_t> avg_job_us_{100000};
  int max_inflight() const;

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

  std::mutex aux_mu_;  // guards aux_store_ (plugin enqueue and progress)
  std::unique_ptr<Store> aux_store_;

  std::unique_ptr<Maintenance> maintenance_;
  // Idle hooks: per plugin with one, its settings and when its jobs last ran here.
  struct IdleHook {
    LoadedPlugin* plugin = nullptr;
    Executor* executor = nullptr;
    std::vector<std::string> kinds;
    int64_t threshold_ms = 60000;
    int64_t poll_ms = 30000;
    int64_t next_poll = 0;
    std::atomic<int64_t> last_active{0};
  };
  std::vector<std::unique_ptr<IdleHook>> idle_hooks_;
  std::unordered_map<std::string, IdleHook*> idle_by_kind_;
  std::thread fetcher_;
  std::vector<std::thread> completers_;
  std::thread maintainer_;
  std::vector<std::thread> slots_;
};

}  // namespace jr
