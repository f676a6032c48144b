#include "engine.hpp"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "clock.hpp"
#include "job_options.hpp"
#include "log.hpp"
#include "outcome.hpp"
#include "util.hpp"
#include "workflow.hpp"

namespace jr {
namespace {

int64_t unix_ms() { return static_cast<int64_t>(unix_seconds() * 1000); }

}  // namespace

Engine::Engine(EngineOptions opts, std::vector<LoadedPlugin*> plugins,
               std::vector<std::string> kinds,
               std::map<std::string, std::unique_ptr<Executor>> executors)
    : opts_(std::move(opts)), plugins_(std::move(plugins)), executors_(std::move(executors)) {
  // Connections are opened on first use (db_budget.hpp has who shares which).
  claims_ = std::make_unique<SharedStore>(opts_.database_url, "claims");
  for (int i = 0; i < opts_.connections.completers; ++i) {
    completer_stores_.push_back(std::make_unique<SharedStore>(opts_.database_url, "completions"));
  }
  if (opts_.connections.services_own) {
    services_own_ = std::make_unique<SharedStore>(opts_.database_url, "services");
    services_ = services_own_.get();
  } else {
    services_ = claims_.get();
  }
  for (auto* p : plugins_) {
    if (!executors_.count(p->name)) executors_[p->name] = std::make_unique<InProcessExecutor>(p);
    Executor* ex = executors_[p->name].get();
    auto rt = std::make_unique<PluginRuntime>();
    rt->plugin = p;
    rt->executor = ex;
    for (const auto& k : p->kinds) {
      if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), k.kind) == kinds.end()) continue;
      kind_map_[k.kind] = KindEntry{p, &k, ex};
      kinds_.push_back(k.kind);
      rt->kinds.push_back(k.kind);
    }
    // A plugin may enqueue the kinds it serves here, not every kind it declares: a declared kind
    // refused (recorded for another plugin in jr_kinds, or left out by --kinds) would otherwise
    // let it forge jobs that the owner runs. Besides those, the kinds the operator granted it
    // (the trust policy's enqueue_kinds).
    rt->may_enqueue.insert(rt->kinds.begin(), rt->kinds.end());
    rt->may_enqueue.insert(p->grants.enqueue_kinds.begin(), p->grants.enqueue_kinds.end());
    // A plugin none of whose kinds is served here is neither started nor reported.
    if (rt->kinds.empty()) continue;
    runtime_by_name_[p->name] = rt.get();
    runtimes_.push_back(std::move(rt));
  }
  std::sort(kinds_.begin(), kinds_.end());
  if (opts_.worker_id.empty()) opts_.worker_id = make_worker_id();
  // Idle hooks: settings from the manifest's "idle" block, overridden by the config keys it
  // names; its "enabled_key" set to false in the config turns the hook off. The manifest is
  // the plugin's: values of the wrong type are ignored.
  for (auto* p : plugins_) {
    if (!p->has_idle || !runtime_by_name_.count(p->name)) continue;
    nlohmann::json idle = p->manifest.value("idle", nlohmann::json::object());
    if (!idle.is_object()) idle = nlohmann::json::object();
    nlohmann::json cfg = opts_.plugin_configs.count(p->name) ? opts_.plugin_configs[p->name]
                                                             : nlohmann::json::object();
    auto config_key = [&](const char* name) -> std::string {
      if (!idle.contains("config_keys") || !idle["config_keys"].is_object()) return "";
      const auto& keys = idle["config_keys"];
      return keys.contains(name) && keys[name].is_string() ? keys[name].get<std::string>() : "";
    };
    auto setting = [&](const char* name, double def) {
      double v = idle.contains(name) && idle[name].is_number() ? idle[name].get<double>() : def;
      std::string key = config_key(name);
      if (!key.empty() && cfg.is_object() && cfg.contains(key) && cfg[key].is_number()) {
        v = cfg[key].get<double>();
      }
      return std::isfinite(v) ? v : def;
    };
    if (idle.contains("enabled_key") && idle["enabled_key"].is_string()) {
      std::string key = idle["enabled_key"].get<std::string>();
      if (cfg.is_object() && cfg.contains(key) && cfg[key].is_boolean() && !cfg[key].get<bool>()) {
        log::info("idle hook disabled by config", {{"plugin", p->name}, {"key", key}});
        continue;
      }
    }
    auto hook = std::make_unique<IdleHook>();
    hook->plugin = p;
    hook->executor = executors_[p->name].get();
    hook->runtime = runtime_by_name_[p->name];
    hook->threshold_ms = static_cast<int64_t>(setting("threshold_seconds", 60) * 1000);
    hook->poll_ms =
        std::max<int64_t>(50, static_cast<int64_t>(setting("poll_interval_seconds", 30) * 1000));
    hook->timeout_ms = std::max<int64_t>(
        100, static_cast<int64_t>(setting("timeout_seconds", opts_.idle_timeout_seconds) * 1000));
    for (const auto& k : p->kinds) {
      if (kind_map_.count(k.kind)) {
        hook->kinds.push_back(k.kind);
        idle_by_kind_[k.kind] = hook.get();
      }
    }
    if (!hook->kinds.empty()) idle_hooks_.push_back(std::move(hook));
  }
}

Engine::~Engine() {
  stop();
  {
    std::lock_guard<std::mutex> lock(ready_mu_);  // see stop()
    slots_done_ = true;
  }
  ready_cv_.notify_all();
  { std::lock_guard<std::mutex> lock(heartbeat_mu_); }
  heartbeat_cv_.notify_all();
  for (auto* t : {&fetcher_, &maintainer_, &heartbeater_}) {
    if (t->joinable()) t->join();
  }
  for (auto& t : completers_) {
    if (t.joinable()) t.join();
  }
  for (auto& t : slots_) {
    if (t.joinable()) t.join();
  }
  finish_background(steady_ms() + 2000);
  if (progress_thread_.joinable()) {
    progress_done_ = true;
    progress_cv_.notify_all();
    progress_thread_.join();
  }
}

void Engine::stop() {
  if (!stopping_.exchange(true)) {
    log::info("shutdown requested: no new jobs will be claimed",
              {{"worker_id", opts_.worker_id}, {"grace_seconds", opts_.shutdown_grace_seconds}});
  }
  // Idle hooks are not work anyone waits for: ask them to stop now (a sandboxed one is killed
  // after the kill grace if it does not).
  for (auto& h : idle_hooks_) {
    std::lock_guard<std::mutex> lock(h->mu);
    if (h->current != nullptr) h->current->cancel.store(kCancelShutdown);
  }
  // Nor are plugin starts: a constructor or init that hangs is killed now, not at its deadline.
  for (auto& r : runtimes_) r->executor->cancel_starts();
  // Each notify after taking the waiters' mutex: a waiter that has checked its predicate but
  // not yet slept would otherwise miss it and sleep for ever (these waits have no timeout).
  { std::lock_guard<std::mutex> lock(plugins_mu_); }
  plugins_cv_.notify_all();
  { std::lock_guard<std::mutex> lock(ready_mu_); }
  ready_cv_.notify_all();
  room_cv_.notify_all();
  { std::lock_guard<std::mutex> lock(done_mu_); }
  done_cv_.notify_all();
}

void Engine::backoff_sleep(int& delay_ms) {
  int slept = 0;
  while (slept < delay_ms && !(stopping_ && completer_done_)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    slept += 50;
  }
  delay_ms = std::min(delay_ms * 2, 30000);
}

int Engine::run() {
  if (kinds_.empty()) {
    log::error("no job kinds to serve: no plugin loaded, or --kinds matches none of them");
    return 2;
  }
  // Whichever way run() returns, the background threads that may be inside plugin code are
  // waited for a bounded time only.
  struct Finish {
    Engine* e;
    ~Finish() { e->finish_background(steady_ms() + 2000); }
  } finish{this};
  start_plugins();  // plugins come up while the database is awaited
  // Register before starting work, retrying until the database is reachable.
  {
    int delay = 250;
    for (;;) {
      try {
        std::vector<KindDefaults> defs;
        for (const auto& [kind, e] : kind_map_) {
          KindDefaults d;
          d.kind = kind;
          d.plugin = e.plugin->name;
          if (!e.info->default_queue.empty()) d.default_queue = e.info->default_queue;
          if (e.info->timeout_ms > 0) d.timeout_ms = e.info->timeout_ms;
          if (e.info->max_attempts > 0) d.max_attempts = e.info->max_attempts;
          if (!e.info->retry_schedule_text.empty()) d.retry_schedule = e.info->retry_schedule_text;
          if (!e.info->finalizer.empty()) d.finalizer = e.info->finalizer;
          defs.push_back(std::move(d));
        }
        services_->with([&](Store& s) {
          s.WorkerRegister({opts_.worker_id, kinds_, opts_.queues});
          s.KindDefaultsUpsert(defs);
          if (!opts_.cron.empty()) s.CronUpsert(opts_.cron);
        });
        break;
      } catch (const StoreError& e) {
        ++stats_.db_errors;
        log::error("database unreachable at start-up; retrying",
                   {{"error", e.what()}, {"retry_in_ms", delay}});
        if (stopping_) return 0;
        backoff_sleep(delay);
        if (stopping_) return 0;
      }
    }
  }
  if (opts_.maintenance) {
    MaintenanceOptions mo;
    mo.database_url = opts_.database_url;
    mo.shared = services_;
    mo.worker_id = opts_.worker_id;
    mo.poll_interval_seconds = opts_.poll_interval_seconds;
    mo.rescue_interval_seconds = opts_.rescue_interval_seconds;
    mo.prune_interval_seconds = opts_.prune_interval_seconds;
    mo.default_max_attempts = opts_.default_max_attempts;
    mo.prune = opts_.prune;
    mo.priority_aging_seconds = opts_.priority_aging_seconds;
    mo.dead_worker_seconds = std::max(60.0, opts_.lease_seconds * 2);  // heartbeat: lease / 3
    maintenance_ = std::make_unique<Maintenance>(mo);
    maintenance_->start();
    if (opts_.observer) opts_.observer->maintenance_started(maintenance_.get());
  }
  for (auto& h : idle_hooks_) h->last_active = steady_ms();
  for (int i = 0; i < std::max<int>(1, static_cast<int>(completer_stores_.size())); ++i) {
    completers_.emplace_back([this] { complete_loop(); });
  }
  maintainer_ = std::thread([this] { maintain_loop(); });
  heartbeater_ = std::thread([this] { heartbeat_loop(); });
  progress_thread_ = std::thread([this] { progress_loop(); });
  for (int i = 0; i < opts_.concurrency; ++i) slots_.emplace_back([this] { slot_loop(); });
  fetcher_ = std::thread([this] { fetch_loop(); });
  for (auto& h : idle_hooks_) {
    IdleHook* hp = h.get();
    h->thread = std::thread([this, hp] { idle_loop(hp); });
  }
  // "runner started" once every plugin had its first start attempt (bounded: a plugin still
  // starting then is reported as not ready; the others are served meanwhile anyway).
  {
    int64_t by = steady_ms() + 30000;
    std::unique_lock<std::mutex> lock(plugins_mu_);
    auto attempted = [&] {
      for (auto& r : runtimes_) {
        if (!r->attempted) return false;
      }
      return true;
    };
    while (!stopping_ && !attempted() && steady_ms() < by) {
      plugins_cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
  }
  nlohmann::json not_ready = nlohmann::json::object();
  for (const auto& st : plugin_status()) {
    if (!st.ready) not_ready[st.name] = st.reason;
  }
  log::info("runner started",
            {{"worker_id", opts_.worker_id},
             {"kinds", kinds_},
             {"queues", opts_.queues.empty() ? nlohmann::json("*") : nlohmann::json(opts_.queues)},
             {"concurrency", opts_.concurrency},
             {"plugins_not_ready", not_ready}});

  fetcher_.join();
  // No more claims. A claimed job an idle slot is taking runs like the ones already started
  // (claimed for a free slot, it is as good as started: releasing it would hinge on which
  // thread the scheduler ran first); the prefetched rest goes back at once without using an
  // attempt, for another runner to take.
  release_ready_jobs(true);
  // Let running jobs finish within the grace period, then ask them to stop.
  int64_t grace_end = steady_ms() + static_cast<int64_t>(opts_.shutdown_grace_seconds * 1000);
  bool cancelled_for_shutdown = false;
  for (;;) {
    {
      // Every claimed job is finished (its outcome handed to the completers) or released.
      std::lock_guard<std::mutex> lock(ready_mu_);
      if (inflight_ <= 0) break;
    }
    if (steady_ms() >= grace_end) release_ready_jobs(false);  // none starts after the grace
    {
      std::lock_guard<std::mutex> lock(running_mu_);
      if (!cancelled_for_shutdown && steady_ms() >= grace_end) {
        log::warn("shutdown grace period over; asking running jobs to stop",
                  {{"running", running_.size()}});
        for (auto& [id, r] : running_) r.ctx->cancel.store(kCancelShutdown);
        cancelled_for_shutdown = true;
        grace_end = steady_ms() + 2000;  // a last moment for cooperative handlers
      } else if (cancelled_for_shutdown && steady_ms() >= grace_end) {
        // Handlers that ignore cancellation: release their leases so another runner can take
        // the jobs at once; a late completion from them is then fenced off.
        for (auto& [id, r] : running_) {
          JobFinish f;
          f.id = id;
          f.attempt = r.ctx->attempt;
          f.outcome = Outcome::release;
          push_finish(std::move(f));
          log::warn("job ignored the shutdown request; lease released",
                    {{"job_id", id}, {"kind", r.ctx->kind}});
        }
        running_.clear();
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  slots_done_ = true;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);  // see stop()
  }
  ready_cv_.notify_all();
  bool detached = cancelled_for_shutdown;
  if (detached) abandoned_handlers_ = true;
  for (auto& t : slots_) {
    if (detached) {
      t.detach();  // may still be stuck inside a plugin that ignores cancellation
    } else {
      t.join();
    }
  }
  slots_.clear();
  // Every job's last progress was written by its slot (flush_progress); the writer can go.
  progress_done_ = true;
  progress_cv_.notify_all();
  if (progress_thread_.joinable()) progress_thread_.join();
  // Idle hooks and plugin starts: cancelled at stop(); a sandboxed one is killed within the
  // kill grace, an in-process one that ignores the request is abandoned.
  finish_background(steady_ms() + 3000);
  completer_done_ = true;
  {
    std::lock_guard<std::mutex> lock(done_mu_);  // see stop()
  }
  done_cv_.notify_all();
  for (auto& t : completers_) t.join();
  completers_.clear();
  maintainer_.join();
  { std::lock_guard<std::mutex> lock(heartbeat_mu_); }
  heartbeat_cv_.notify_all();
  heartbeater_.join();
  if (maintenance_) maintenance_->stop();
  try {
    services_->with([&](Store& s) { s.WorkerUnregister(opts_.worker_id); });
  } catch (const StoreError& e) {
    log::warn("could not unregister the worker", {{"error", e.what()}});
  }
  log::info("runner stopped", {{"worker_id", opts_.worker_id},
                               {"completed", stats_.completed.load()},
                               {"retried", stats_.retried.load()},
                               {"discarded", stats_.discarded.load()},
                               {"released", stats_.released.load()}});
  return 0;
}

size_t Engine::release_ready_jobs(bool keep_for_idle) {
  std::deque<ClaimedJob> left;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    // A slot not running a job takes one as soon as it is scheduled, whether or not its thread
    // has reached the wait yet (on a loaded machine it may not have run at all since start-up).
    size_t free_slots = static_cast<size_t>(std::max(0, opts_.concurrency - busy_slots_));
    size_t keep = keep_for_idle ? std::min(ready_.size(), free_slots) : 0;
    auto from = ready_.begin() + static_cast<std::ptrdiff_t>(keep);
    left.assign(std::make_move_iterator(from), std::make_move_iterator(ready_.end()));
    ready_.erase(from, ready_.end());
    inflight_ -= static_cast<int>(left.size());
  }
  for (auto& j : left) {
    JobFinish f;
    f.id = j.id;
    f.attempt = j.attempt;
    f.outcome = Outcome::release;
    push_finish(std::move(f));
  }
  if (!left.empty())
    log::info("released claimed jobs that had not started", {{"count", left.size()}});
  if (!left.empty()) room_cv_.notify_all();
  return left.size();
}

void Engine::fetch_loop() {
  // Claims on the claims connection (shared with the completions unless they have their own);
  // the wait for NOTIFY on a connection of its own, so the claims connection is never parked in
  // a wait. Without one (polling) the fetcher sleeps the poll interval.
  std::unique_ptr<Store> listener;
  const bool listening = opts_.connections.listen > 0;
  int delay = 250;
  bool reconnect_now = true;    // the next transient failure reconnects without a pause
  bool recover_claims = false;  // the last claim's answer was lost (see below)
  int64_t recover_until = 0, next_recovery = 0;  // more passes after that, until recover_until
  const int poll_ms = std::max(1, static_cast<int>(opts_.poll_interval_seconds * 1000));
  while (!stopping_) {
    int room = 0;
    {
      std::unique_lock<std::mutex> lock(ready_mu_);
      // Claim when the slots are about to starve or there is room for a good batch; claiming
      // the moment one slot frees would mean one round trip per job.
      room_cv_.wait(lock, [&] {
        int cap = max_inflight();
        int r = cap - inflight_ - static_cast<int>(unflushed_.load());
        return stopping_ || (r > 0 && (ready_.empty() || r * 2 >= cap));
      });
      if (stopping_) break;
      room = max_inflight() - inflight_ - static_cast<int>(unflushed_.load());
    }
    int want = std::min(
        room, opts_.fetch_batch > 0 ? opts_.fetch_batch : std::max(1, opts_.completion_batch));
    // Only the kinds of ready plugins: a plugin whose init failed leaves its jobs queued (for
    // another runner, or for this one once it is up).
    std::vector<std::string> kinds = claimable_kinds();
    if (kinds.empty()) {
      std::unique_lock<std::mutex> lock(plugins_mu_);
      plugins_cv_.wait_for(lock, std::chrono::milliseconds(poll_ms),
                           [&] { return stopping_.load() || !ready_kinds_.empty(); });
      continue;
    }
    std::vector<ClaimedJob> jobs;
    double throttled = 0;
    try {
      if (listening && !listener) {
        // LISTEN before claiming: an insert committed after the claim's snapshot then wakes us.
        listener = Store::open(opts_.listen_database_url.empty() ? opts_.database_url
                                                                 : opts_.listen_database_url);
        listener->Listen();
      }
      if (recover_claims || (steady_ms() < recover_until && steady_ms() >= next_recovery)) {
        // The last claim failed with the connection: it may have committed. Its jobs carry
        // our id but no slot has them; they go back with their attempt restored. Repeated for
        // a few seconds (every 250 ms at most): a backend that lost its client can still
        // commit the claim after the error, which a single pass right away would not see.
        next_recovery = steady_ms() + 250;
        std::vector<int64_t> held;
        {
          std::lock_guard<std::mutex> lock(held_mu_);
          for (const auto& [id, n] : held_) held.push_back(id);
        }
        auto orphans = claims_->with(
            [&](Store& s) { return s.JobReleaseOrphanedClaims(opts_.worker_id, held); });
        recover_claims = false;
        if (!orphans.empty()) {
          stats_.released += static_cast<int64_t>(orphans.size());
          log::warn(
              "a claim whose answer was lost had committed; its jobs were put back without "
              "using an attempt",
              {{"jobs", orphans}});
        }
      }
      JobClaimParams p;
      p.worker_id = opts_.worker_id;
      p.kinds = std::move(kinds);
      p.queues = opts_.queues;
      p.limit = want;
      p.lease_seconds = opts_.lease_seconds;
      throttled = 0;
      p.throttled_retry_seconds = &throttled;
      jobs = claims_->with([&](Store& s) { return s.JobClaim(p); });
      delay = 250;
      reconnect_now = true;
    } catch (const StoreError& e) {
      ++stats_.db_errors;
      // A connection lost after it had worked (its backend killed or restarted between two
      // claims) is replaced at once; failing again, or any other error, backs off.
      bool now = e.transient() && reconnect_now;
      reconnect_now = false;
      log::error("claiming jobs failed; retrying",
                 {{"error", e.what()}, {"retry_in_ms", now ? 0 : delay}});
      if (e.transient()) {
        listener.reset();
        recover_claims = true;
        recover_until = steady_ms() + 5000;
      }
      if (!now) backoff_sleep(delay);
      continue;
    }
    if (!jobs.empty()) {
      // A job this runner already holds, claimed again: its earlier claim was lost (claims
      // commit asynchronously, and a database crash can undo one), the job went back to
      // available with its attempt restored, and this claim gave it the same owner and attempt
      // number. The execution already running keeps it (its outcome passes the fence); a second
      // one would run the job twice here at once.
      // (Not the same as "still in held_": after a retry or snooze with no delay, the job can
      // be claimed again before the completer, which committed its outcome, lets go of it.)
      std::set<int64_t> executing;
      {
        std::lock_guard<std::mutex> lock(running_mu_);
        for (const auto& j : jobs) {
          auto it = running_.find(j.id);
          if (it != running_.end() && it->second.ctx->attempt == j.attempt) executing.insert(j.id);
        }
      }
      std::lock_guard<std::mutex> lock(held_mu_);
      if (executing.empty()) {  // the usual case: the batch as it is
        for (const auto& j : jobs) ++held_[j.id];
      } else {
        std::vector<ClaimedJob> fresh;
        for (auto& j : jobs) {
          if (executing.count(j.id)) {
            log::warn(
                "a job this runner is running was claimed again (its earlier claim was lost, "
                "e.g. in a database crash); the running execution keeps it",
                {{"job_id", j.id}, {"attempt", j.attempt}});
            continue;
          }
          ++held_[j.id];
          fresh.push_back(std::move(j));
        }
        jobs = std::move(fresh);
      }
    }
    int got = static_cast<int>(jobs.size());
    if (got > 0) {
      stats_.claimed += got;
      std::lock_guard<std::mutex> lock(ready_mu_);
      inflight_ += got;
      for (auto& j : jobs) ready_.push_back(std::move(j));
    }
    if (got > 0) ready_cv_.notify_all();
    if (got == 0 && throttled > 0) {
      // Rate limited: come back when the next token is due.
      std::this_thread::sleep_for(std::chrono::microseconds(
          static_cast<int64_t>(std::min(throttled, opts_.poll_interval_seconds) * 1e6)));
    } else if (got == 0) {
      // Nothing for us: sleep until an insert notifies us, or the poll interval.
      try {
        if (listener) {
          listener->WaitForJobs(std::min(poll_ms, 1000));
        } else {
          std::unique_lock<std::mutex> lock(ready_mu_);
          room_cv_.wait_for(lock, std::chrono::milliseconds(poll_ms),
                            [&] { return stopping_.load(); });
        }
      } catch (const StoreError& e) {
        ++stats_.db_errors;
        log::error("waiting for notifications failed", {{"error", e.what()}});
        listener.reset();
        backoff_sleep(delay);
      }
    }
  }
}

int Engine::max_inflight() const {
  if (opts_.prefetch >= 0) return opts_.concurrency + opts_.prefetch;
  // Auto: keep roughly 2 ms of work queued locally per slot. Slow jobs get no prefetch, so they
  // are never held back behind each other while other runners idle. The cap (10 jobs per slot,
  // at least two completion batches so claims can be as large as the completion batches, at
  // most 2,000) also limits what a crash costs: prefetched jobs of a killed runner wait for
  // their lease to expire, and the lost attempt is counted. Only jobs under ~20 us reach it.
  int64_t avg = std::max<int64_t>(1, avg_job_us_.load(std::memory_order_relaxed));
  int64_t extra = static_cast<int64_t>(opts_.concurrency) * 2000 / avg;
  int64_t cap = std::min<int64_t>(
      std::max<int64_t>(static_cast<int64_t>(opts_.concurrency) * 10,
                        2 * static_cast<int64_t>(std::max(1, opts_.completion_batch))),
      2000);
  return opts_.concurrency + static_cast<int>(std::min(extra, cap));
}

size_t Engine::group_size_locked(const ClaimedJob& first, Executor** executor) const {
  if (stopping_) return 1;
  auto it = kind_map_.find(first.kind);
  if (it == kind_map_.end()) return 1;
  *executor = it->second.executor;
  size_t limit = (*executor)->batch_limit();
  if (limit <= 1) return 1;
  // Only short jobs, from a deep local queue: a group holds about 2 ms of work (the average job
  // of this runner), and never more than its slot's share of what waits, so it neither delays
  // jobs behind a slow one nor leaves other slots idle.
  int64_t avg = std::max<int64_t>(1, avg_job_us_.load(std::memory_order_relaxed));
  size_t by_time = static_cast<size_t>(2000 / avg);
  size_t share = ready_.size() / static_cast<size_t>(std::max(1, opts_.concurrency));
  return std::max<size_t>(1, std::min({limit, by_time, share}));
}

void Engine::slot_loop() {
  std::vector<ClaimedJob> group;
  for (;;) {
    group.clear();
    Executor* executor = nullptr;
    {
      std::unique_lock<std::mutex> lock(ready_mu_);
      // A slot ends only when run() says so (slots_done_), never at stop() alone: a claim in
      // flight at the stop lands its jobs after it, and run() keeps up to one per free slot to
      // run within the grace. A slot that had left at the stop would leave them held, the
      // shutdown waiting out the whole grace for a slot that is gone.
      ready_cv_.wait(lock, [&] { return !ready_.empty() || slots_done_; });
      if (ready_.empty()) return;
      group.push_back(std::move(ready_.front()));
      ready_.pop_front();
      ++busy_slots_;
      size_t want = group_size_locked(group[0], &executor);
      while (group.size() < want && !ready_.empty()) {
        auto it = kind_map_.find(ready_.front().kind);
        if (it == kind_map_.end() || it->second.executor != executor) break;
        group.push_back(std::move(ready_.front()));
        ready_.pop_front();
      }
    }
    if (group.size() > 1) {
      execute_group(group, executor);
    } else {
      auto t0 = std::chrono::steady_clock::now();
      execute(group[0]);
      job_left_slot(std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count());
    }
    {
      std::lock_guard<std::mutex> lock(ready_mu_);
      --busy_slots_;
    }
  }
}

void Engine::job_left_slot(int64_t run_us) {
  if (run_us >= 0) {
    int64_t avg = avg_job_us_.load(std::memory_order_relaxed);
    avg_job_us_.store(avg + (run_us - avg) / 16, std::memory_order_relaxed);
  }
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    --inflight_;
  }
  room_cv_.notify_one();
}

// One attempt of a job, from its slot taking it to its outcome.
struct Engine::Attempt {
  ClaimedJob* job = nullptr;
  const KindEntry* k = nullptr;
  IdleHook* idle = nullptr;
  jr_job_ctx ctx;
  trace::AttemptTrace tr;
  int64_t span_start_ns = 0;
  int64_t timeout_ms = 0;
  bool started = false;
  int64_t start_steady = 0;
  std::chrono::steady_clock::time_point t0;
  jr_job j{};
};

bool Engine::begin_attempt(ClaimedJob& job, Attempt& a, bool start_now) {
  auto it = kind_map_.find(job.kind);
  if (it == kind_map_.end()) {  // cannot happen: we only claim our kinds
    JobFinish f{job.id, job.attempt, Outcome::release, "", "", "", 0, job.kind};
    push_finish(std::move(f));
    return false;
  }
  a.job = &job;
  a.k = &it->second;
  auto idle_it = idle_by_kind_.find(job.kind);
  if (idle_it != idle_by_kind_.end()) {
    a.idle = idle_it->second;
    a.idle->last_active = steady_ms();
  }
  jr_job_ctx& ctx = a.ctx;
  ctx.job_id = job.id;
  ctx.attempt = job.attempt;
  ctx.kind = job.kind;
  ctx.plugin = a.k->plugin->name;
  ctx.services = this;
  // OpenTelemetry traces: the attempt's span and the traceparent the plugin gets (jr.trace.v1).
  a.tr = trace::attempt_trace(job.traceparent, job.id, job.created_at, opts_.spans != nullptr);
  ctx.traceparent = a.tr.handed;
  a.timeout_ms = job.timeout_ms.value_or(a.k->info->timeout_ms);
  {
    // Registered before it starts: a cancellation reaches a job waiting in a group too.
    std::lock_guard<std::mutex> lock(running_mu_);
    running_[job.id] = Running{&ctx, 0};
  }
  if (start_now) attempt_started(a, steady_ms());
  jr_job& j = a.j;
  j.struct_size = sizeof(jr_job);
  j.id = job.id;
  j.kind = job.kind.c_str();
  j.queue = job.queue.c_str();
  j.payload = job.payload.c_str();
  j.payload_len = job.payload.size();
  j.attempt = job.attempt;
  j.max_attempts = job.max_attempts.value_or(
      a.k->info->max_attempts > 0 ? a.k->info->max_attempts : opts_.default_max_attempts);
  // For an in-process run, which starts now. A sandboxed one gets its timeout instead and its
  // worker sets deadline_ms when the job starts (a job of a group may start much later).
  j.deadline_ms = a.timeout_ms > 0 ? unix_ms() + a.timeout_ms : 0;
  return true;
}

void Engine::attempt_started(Attempt& a, int64_t now_steady) {
  a.started = true;
  a.start_steady = now_steady;
  a.t0 = std::chrono::steady_clock::now();
  a.span_start_ns = a.tr.record ? unix_ns_now() : 0;
  if (a.timeout_ms > 0) {
    std::lock_guard<std::mutex> lock(running_mu_);
    auto it = running_.find(a.job->id);
    if (it != running_.end()) it->second.deadline_ms = now_steady + a.timeout_ms;
  }
}

void Engine::end_attempt(Attempt& a, const ExecOutcome& exec) {
  ClaimedJob& job = *a.job;
  jr_job_ctx& ctx = a.ctx;
  // An executor that enforces the deadline itself (the sandbox) may stop the job before the
  // maintainer marks it: past the deadline, a stop is a timeout.
  if (a.started && a.timeout_ms > 0 && steady_ms() >= a.start_steady + a.timeout_ms) {
    int expected = kNoCancel;
    ctx.cancel.compare_exchange_strong(expected, kCancelTimeout);
  }
  // The last progress reaches the database before the outcome can (the completer's write
  // ends the attempt, and later progress writes match nothing).
  end_call(ctx);
  bool still_ours;
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    still_ours = running_.erase(job.id) > 0;
  }
  if (a.idle != nullptr) a.idle->last_active = steady_ms();
  if (!still_ours) return;  // released by a forced shutdown; the outcome is no longer ours
  if (!a.started) {         // a job of a group that never started goes back as it was
    JobFinish f{job.id, job.attempt, Outcome::release, "", "", "", 0, job.kind};
    push_finish(std::move(f));
    return;
  }
  JobFinish finish = classify(job, *a.k, exec, ctx);
  if (opts_.observer) {
    opts_.observer->job_finished(job, finish.outcome, (steady_ms() - a.start_steady) / 1000.0);
  }
  if (a.tr.record) opts_.spans->submit(make_attempt_span(a.tr, job, finish, a.span_start_ns));
  push_finish(std::move(finish));
}

void Engine::execute(ClaimedJob& job) {
  Attempt a;
  if (!begin_attempt(job, a, true)) return;
  ExecOutcome exec =
      a.k->executor->run(a.j, a.ctx, a.timeout_ms > 0 ? a.start_steady + a.timeout_ms : 0);
  end_attempt(a, exec);
}

void Engine::execute_group(std::vector<ClaimedJob>& jobs, Executor* executor) {
  std::vector<std::unique_ptr<Attempt>> attempts;
  std::vector<BatchJob> batch;
  for (auto& job : jobs) {
    auto a = std::make_unique<Attempt>();
    if (!begin_attempt(job, *a, false)) {
      job_left_slot(-1);
      continue;
    }
    batch.push_back(BatchJob{&a->j, &a->ctx, a->timeout_ms});
    attempts.push_back(std::move(a));
  }
  if (batch.empty()) return;
  class Sink final : public BatchSink {
   public:
    Sink(Engine* e, std::vector<std::unique_ptr<Attempt>>* a) : e_(e), a_(a) {}
    // A job not yet handed over when the runner stops goes back unstarted, like the prefetched
    // ones (release_ready_jobs).
    bool may_send(size_t) override { return !e_->stopping_.load(); }
    void started(size_t i, int64_t steady) override { e_->attempt_started(*(*a_)[i], steady); }
    void finished(size_t i, ExecOutcome out) override {
      Attempt& a = *(*a_)[i];
      e_->end_attempt(a, out);
      e_->job_left_slot(a.started ? std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::steady_clock::now() - a.t0)
                                        .count()
                                  : -1);
    }

   private:
    Engine* e_;
    std::vector<std::unique_ptr<Attempt>>* a_;
  } sink(this, &attempts);
  executor->run_batch(batch, sink);
}

JobFinish Engine::classify(const ClaimedJob& job, const KindEntry& k, const ExecOutcome& exec,
                           jr_job_ctx& ctx) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double jitter = std::uniform_real_distribution<double>(0, 1)(rng);
  std::lock_guard<std::mutex> lock(ctx.mu);
  return decide_outcome(job, *k.info, opts_.default_max_attempts, exec, ctx, ctx.cancel.load(),
                        jitter);
}

void Engine::push_finish(JobFinish f) {
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_.push_back(std::move(f));
    ++unflushed_;
  }
  done_cv_.notify_one();
}

// Counts and logs what a finish statement wrote: each outcome, or its rejection (fenced off:
// the lease is no longer ours).
void Engine::note_finished(const std::vector<JobFinish>& batch, const JobFinishResult& r) {
  for (int64_t id : r.rejected) {
    ++stats_.rejected;
    log::warn("outcome rejected: the job's lease is no longer ours (rescued or released)",
              {{"job_id", id}, {"worker_id", opts_.worker_id}});
  }
  for (const auto& f : batch) {
    bool rejected = std::find(r.rejected.begin(), r.rejected.end(), f.id) != r.rejected.end();
    if (rejected) continue;
    switch (f.outcome) {
      case Outcome::completed:
        ++stats_.completed;
        break;
      case Outcome::retry:
        ++stats_.retried;
        log::warn("job failed; will retry", {{"job_id", f.id},
                                             {"attempt", f.attempt},
                                             {"error_kind", f.error_kind},
                                             {"error", f.error},
                                             {"retry_in_s", f.delay_seconds}});
        break;
      case Outcome::discard:
        ++stats_.discarded;
        log::error("job moved to the dead letter queue", {{"job_id", f.id},
                                                          {"attempt", f.attempt},
                                                          {"error_kind", f.error_kind},
                                                          {"error", f.error}});
        break;
      case Outcome::snooze:
        ++stats_.snoozed;
        break;
      case Outcome::cancelled:
        ++stats_.cancelled;
        log::info("job cancelled", {{"job_id", f.id}});
        break;
      case Outcome::release:
        ++stats_.released;
        break;
    }
  }
}

void Engine::complete_loop() {
  // A connection of its own when the budget gives completers one, else the claims connection.
  SharedStore* store = claims_.get();
  if (!completer_stores_.empty()) {
    store =
        completer_stores_[static_cast<size_t>(next_completer_++) % completer_stores_.size()].get();
  }
  int delay = 250;
  bool reconnect_now = true;
  std::vector<JobFinish> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait(lock, [&] { return !done_.empty() || completer_done_; });
      if (done_.empty() && completer_done_) return;
      size_t n = std::min(done_.size(), static_cast<size_t>(opts_.completion_batch));
      batch.assign(std::make_move_iterator(done_.begin()),
                   std::make_move_iterator(done_.begin() + static_cast<std::ptrdiff_t>(n)));
      done_.erase(done_.begin(), done_.begin() + static_cast<std::ptrdiff_t>(n));
    }
    // Keep the batch until it is written: an outage delays outcomes, it never drops them.
    for (;;) {
      try {
        JobFinishResult r =
            store->with([&](Store& s) { return s.JobFinishMany(opts_.worker_id, batch); });
        note_finished(batch, r);
        delay = 250;
        reconnect_now = true;
        break;
      } catch (const StoreError& e) {
        ++stats_.db_errors;
        // As for claims: a connection lost after it had worked is replaced at once.
        bool now = e.transient() && reconnect_now;
        reconnect_now = false;
        log::error("recording job outcomes failed; retrying",
                   {{"error", e.what()}, {"jobs", batch.size()}, {"retry_in_ms", now ? 0 : delay}});
        if (now) continue;
        if (e.transient()) {
          // The connection was dropped (SharedStore); the next try reconnects.
        } else if (batch.size() > 1) {
          // A request error in a batch: write the outcomes one by one so one bad row (say, a
          // result that is not valid JSON) cannot hold back the others.
          for (auto& f : batch) {
            try {
              JobFinishResult one =
                  store->with([&](Store& s) { return s.JobFinishMany(opts_.worker_id, {f}); });
              note_finished({f}, one);
            } catch (const StoreError& e2) {
              log::error("recording a job outcome failed",
                         {{"job_id", f.id}, {"error", e2.what()}});
            }
          }
          break;
        } else {
          log::error(
              "dropping an outcome the database refuses; the lease will expire and the "
              "job will be retried",
              {{"job_id", batch[0].id}, {"error", e.what()}});
          break;
        }
        backoff_sleep(delay);
      }
    }
    {
      std::lock_guard<std::mutex> lock(held_mu_);
      for (const auto& f : batch) {
        auto it = held_.find(f.id);
        if (it != held_.end() && --it->second <= 0) held_.erase(it);
      }
    }
    unflushed_ -= static_cast<int64_t>(batch.size());
    {
      std::lock_guard<std::mutex> lock(ready_mu_);  // pairs with the fetcher's wait
    }
    room_cv_.notify_one();
    batch.clear();
  }
}

void Engine::cancel_running(int64_t id, int reason) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(id);
  if (it != running_.end()) {
    int expected = kNoCancel;
    it->second.ctx->cancel.compare_exchange_strong(expected, reason);
  }
}

// Lease renewals, on a thread and connection of their own: nothing else (a slow cancellation
// poll, the registry update, a completer's batch) can delay them, and their commits do not wait
// for the WAL flush (SessionAsyncCommit), which on a loaded machine queues behind every other
// session's. Renewed every quarter lease, retried within 100 ms after a failure, so a live
// runner keeps its leases through a stall of up to three quarters of the lease. Never calls
// plugin code.
void Engine::heartbeat_loop() {
  // A little more CPU weight than the slots (allowed for root or CAP_SYS_NICE; else as is).
  (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), -5);
  std::unique_ptr<Store> store;
  const int64_t interval_ms = std::max<int64_t>(
      100, static_cast<int64_t>(
               (opts_.heartbeat_seconds > 0 ? opts_.heartbeat_seconds : opts_.lease_seconds / 4) *
               1000));
  int64_t next = 0;
  int64_t delay = 100;
  bool retried_skipped = false;
  while (!completer_done_) {
    int64_t now = steady_ms();
    if (now >= next) {
      try {
        if (store && store->LostWhileIdle()) store.reset();  // killed since the last round
        if (!store) {
          store = Store::open(opts_.database_url);
          store->SessionAsyncCommit();
        }
        std::vector<int64_t> held;
        {
          std::lock_guard<std::mutex> lock(held_mu_);
          held.reserve(held_.size());
          for (const auto& [id, n] : held_) held.push_back(id);
        }
        size_t renewed = 0;
        for (int64_t id :
             store->JobHeartbeatHeld(opts_.worker_id, opts_.lease_seconds, held, &renewed)) {
          cancel_running(id, kCancelUser);
        }
        // Some held rows were skipped (locked by another transaction, such as a completion or a
        // cancel request waiting for its flush, or no longer ours): once per round they are
        // tried again within 100 ms rather than a whole interval later.
        bool retry_soon = renewed < held.size() && !retried_skipped;
        retried_skipped = retry_soon;
        next = now + (retry_soon ? std::min<int64_t>(100, interval_ms) : interval_ms);
        delay = 100;
      } catch (const StoreError& e) {
        ++stats_.db_errors;
        log::error("renewing leases failed; retrying",
                   {{"error", e.what()}, {"retry_in_ms", delay}});
        if (e.transient()) store.reset();
        next = now + delay;
        delay = std::min(delay * 2, interval_ms);
      }
    }
    std::unique_lock<std::mutex> lock(heartbeat_mu_);
    heartbeat_cv_.wait_for(lock,
                           std::chrono::milliseconds(std::max<int64_t>(1, next - steady_ms())),
                           [&] { return completer_done_.load(); });
  }
}

// Timeouts, cancellation polls and the registry heartbeat. Never calls plugin code (idle hooks run
// on their own threads), so whatever a plugin does, the leases of every job here keep being
// renewed.
void Engine::maintain_loop() {
  const int64_t heartbeat_ms =
      std::max<int64_t>(200, static_cast<int64_t>(opts_.lease_seconds * 1000 / 3));
  int64_t next_heartbeat = 0;
  int64_t next_cancel_poll = 0;
  int delay = 250;
  while (!completer_done_) {
    int64_t now = steady_ms();
    // Timeouts: ask overdue handlers to stop (cooperative; the sandbox adds the hard kill).
    {
      std::lock_guard<std::mutex> lock(running_mu_);
      for (auto& [id, r] : running_) {
        if (r.deadline_ms > 0 && now >= r.deadline_ms) {
          int expected = kNoCancel;
          if (r.ctx->cancel.compare_exchange_strong(expected, kCancelTimeout)) {
            log::warn("job timed out; asking it to stop", {{"job_id", id}, {"kind", r.ctx->kind}});
          }
        }
      }
    }
    try {
      if (now >= next_heartbeat) {
        services_->with(
            [&](Store& s) { s.WorkerHeartbeat(opts_.worker_id, stats_.completed.load()); });
        next_heartbeat = now + heartbeat_ms;
      }
      if (now >= next_cancel_poll) {
        bool any_running;
        {
          std::lock_guard<std::mutex> lock(running_mu_);
          any_running = !running_.empty();
        }
        if (any_running) {
          auto ids =
              services_->with([&](Store& s) { return s.JobCancelRequested(opts_.worker_id); });
          for (int64_t id : ids) {
            cancel_running(id, kCancelUser);
          }
        }
        next_cancel_poll = now + 250;
      }
      delay = 250;
    } catch (const StoreError& e) {
      ++stats_.db_errors;
      log::error("maintenance failed; retrying", {{"error", e.what()}, {"retry_in_ms", delay}});
      next_heartbeat = now + delay;
      next_cancel_poll = now + delay;
      delay = std::min(delay * 2, 5000);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// --- plugins: start-up and readiness ------------------------------------------------------------

void Engine::start_plugins() {
  std::lock_guard<std::mutex> lock(plugins_mu_);
  if (plugins_started_) return;
  plugins_started_ = true;
  for (auto& r : runtimes_) {
    PluginRuntime* rp = r.get();
    r->thread = std::thread([this, rp] { supervise(rp); });
  }
}

void Engine::set_ready(PluginRuntime* r, bool ready, const std::string& why) {
  bool changed;
  {
    std::lock_guard<std::mutex> lock(plugins_mu_);
    changed = r->ready != ready;
    r->ready = ready;
    r->reason = ready ? "" : why;
    if (changed) {
      ready_kinds_.clear();
      for (const auto& rt : runtimes_) {
        if (rt->ready) ready_kinds_.insert(ready_kinds_.end(), rt->kinds.begin(), rt->kinds.end());
      }
      std::sort(ready_kinds_.begin(), ready_kinds_.end());
    }
  }
  plugins_cv_.notify_all();
  if (!changed) return;
  if (ready) {
    nlohmann::json f = {{"plugin", r->plugin->name},
                        {"version", r->plugin->version},
                        {"file", r->plugin->path},
                        {"kinds", r->kinds}};
    if (auto it = opts_.plugin_log_fields.find(r->plugin->name);
        it != opts_.plugin_log_fields.end() && it->second.is_object()) {
      for (const auto& [k, v] : it->second.items()) f[k] = v;
    }
    log::info(
        r->executor->can_stop_calls() ? "plugin loaded in the sandbox" : "plugin loaded in-process",
        std::move(f));
  } else {
    log::warn("plugin not ready: its kinds are not claimed until it is",
              {{"plugin", r->plugin->name}, {"file", r->plugin->path}, {"reason", why}});
  }
}

// One per plugin: brings it up, retries with backoff while its start fails (each failure logged
// with the reason), and notices when it stops being ready (a new worker's init refused).
void Engine::supervise(PluginRuntime* r) {
  const int64_t max_delay =
      std::max<int64_t>(100, static_cast<int64_t>(opts_.init_retry_max_seconds * 1000));
  const int64_t first_delay = std::min<int64_t>(1000, max_delay);
  int64_t delay = first_delay;
  int failures = 0;
  auto pause = [&](int64_t ms) {
    std::unique_lock<std::mutex> lock(plugins_mu_);
    plugins_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
  };
  while (!stopping_) {
    std::string why;
    if (r->executor->ready(&why)) {
      set_ready(r, true, "");
      {
        std::lock_guard<std::mutex> lock(plugins_mu_);
        r->attempted = true;
      }
      failures = 0;
      delay = first_delay;
      pause(500);
      continue;
    }
    bool was_ready;
    {
      std::lock_guard<std::mutex> lock(plugins_mu_);
      was_ready = r->ready;
    }
    if (was_ready) set_ready(r, false, why);
    why.clear();
    r->in_plugin = true;
    bool ok = false;
    try {
      ok = r->executor->start_plugin(&why);
    } catch (const std::exception& e) {  // whatever a worker answered, never fatal
      why = std::string("start failed: ") + e.what();
    }
    r->in_plugin = false;
    if (ok) {
      set_ready(r, true, "");  // logs "plugin loaded ..." before the attempt counts as made
    }
    {
      std::lock_guard<std::mutex> lock(plugins_mu_);
      r->attempted = true;
    }
    plugins_cv_.notify_all();
    if (ok || stopping_) continue;
    ++failures;
    set_ready(r, false, why);
    log::error("plugin failed to start; retrying", {{"plugin", r->plugin->name},
                                                    {"file", r->plugin->path},
                                                    {"error", why},
                                                    {"attempt", failures},
                                                    {"retry_in_ms", delay}});
    pause(delay);
    delay = std::min(delay * 2, max_delay);
  }
  r->finished = true;
}

std::vector<std::string> Engine::claimable_kinds() {
  std::lock_guard<std::mutex> lock(plugins_mu_);
  return ready_kinds_;
}

std::vector<Engine::PluginStatus> Engine::plugin_status() const {
  std::vector<PluginStatus> out;
  std::lock_guard<std::mutex> lock(plugins_mu_);
  for (const auto& r : runtimes_) {
    out.push_back({r->plugin->name, r->plugin->path, r->ready, r->reason});
  }
  return out;
}

void Engine::finish_background(int64_t deadline_ms) {
  stop();  // idempotent; wakes the starters and cancels idle calls
  auto settle = [&](std::thread& t, const std::atomic<bool>& finished, const char* what,
                    const std::string& plugin) {
    if (!t.joinable()) return;
    while (!finished && steady_ms() < deadline_ms) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (finished) {
      t.join();
      return;
    }
    // Inside plugin code that ignores the shutdown (an in-process init or idle hook): the
    // process must exit without unloading the plugin under it.
    log::warn("shutdown: a plugin call did not return in time; abandoning it",
              {{"plugin", plugin}, {"call", what}});
    t.detach();
    abandoned_handlers_ = true;
  };
  for (auto& h : idle_hooks_) settle(h->thread, h->finished, "idle hook", h->plugin->name);
  for (auto& r : runtimes_) settle(r->thread, r->finished, "start", r->plugin->name);
}

// --- idle hooks
// ------------------------------------------------------------------------------------

// One per plugin with a hook, with its own connection: a hook that hangs holds up nothing but
// itself (and is killed at its deadline when sandboxed).
void Engine::idle_loop(IdleHook* h) {
  int64_t delay = 250;
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lock(plugins_mu_);
      plugins_cv_.wait_for(lock, std::chrono::milliseconds(h->poll_ms),
                           [&] { return stopping_.load(); });
    }
    if (stopping_) break;
    try {
      run_idle_hook(*h);
      delay = 250;
    } catch (const StoreError& e) {
      ++stats_.db_errors;
      log::error("idle hook: database error; retrying",
                 {{"plugin", h->plugin->name}, {"error", e.what()}, {"retry_in_ms", delay}});
      std::unique_lock<std::mutex> lock(plugins_mu_);
      plugins_cv_.wait_for(lock, std::chrono::milliseconds(delay),
                           [&] { return stopping_.load(); });
      delay = std::min<int64_t>(delay * 2, 30000);
    }
  }
  h->finished = true;
}

// Its statements run on the services connection, which is never held while the hook runs.
void Engine::run_idle_hook(IdleHook& h) {
  {
    std::lock_guard<std::mutex> lock(plugins_mu_);
    if (!h.runtime->ready) return;
  }
  if (steady_ms() - h.last_active.load() < h.threshold_ms) return;
  if (!services_->with([&](Store& s) { return s.KindsIdle(h.kinds); }))
    return;  // work is queued or running somewhere
  std::string lock = "idle:" + h.plugin->name;
  // The leadership outlives the deadline, so no other runner calls the hook meanwhile.
  double ttl = std::max(300.0, h.timeout_ms / 1000.0 + 60);
  if (!services_->with([&](Store& s) { return s.LeaderTryAcquire(lock, opts_.worker_id, ttl); })) {
    return;  // another runner's turn
  }          // another runner's turn
  jr_job_ctx ctx;
  ctx.kind = "(idle:" + h.plugin->name + ")";
  ctx.plugin = h.plugin->name;
  ctx.services = this;
  {
    std::lock_guard<std::mutex> l(h.mu);
    if (!stopping_) h.current = &ctx;
  }
  if (h.current == nullptr) {  // shutting down: hand the turn back
    services_->with([&](Store& s) { s.LeaderResign(lock, opts_.worker_id); });
    return;
  }
  int64_t started = steady_ms();
  int32_t n = h.executor->idle(ctx, started + h.timeout_ms);
  {
    std::lock_guard<std::mutex> l(h.mu);
    h.current = nullptr;
  }
  end_call(ctx);
  bool late = steady_ms() - started >= h.timeout_ms;
  try {
    services_->with([&](Store& s) { s.LeaderResign(lock, opts_.worker_id); });
  } catch (const StoreError& e) {
    log::warn("idle hook: could not resign its lock", {{"error", e.what()}});
  }
  h.last_active = steady_ms();  // the next call waits a full threshold again
  if (late && h.executor->can_stop_calls()) {
    log::warn("idle hook ran past its deadline; its worker was killed",
              {{"plugin", h.plugin->name}, {"timeout_ms", h.timeout_ms}});
  } else if (n < 0) {
    log::warn("idle hook failed", {{"plugin", h.plugin->name}, {"result", n}});
  } else if (n > 0) {
    log::info("idle hook enqueued jobs", {{"plugin", h.plugin->name}, {"jobs", n}});
  }
}

// --- host services ------------------------------------------------------------------------------

void Engine::job_log(jr_job_ctx* ctx, int level, std::string_view msg) {
  log::Level l = level <= JR_LOG_DEBUG  ? log::Level::debug
                 : level == JR_LOG_INFO ? log::Level::info
                 : level == JR_LOG_WARN ? log::Level::warn
                                        : log::Level::error;
  nlohmann::json f = nlohmann::json::object();
  if (ctx != nullptr) {
    // The per-call budget: past it, one line says so and the rest is counted, not written.
    int64_t lines = ++ctx->usage.log_lines;
    int64_t bytes = ctx->usage.log_bytes += static_cast<int64_t>(msg.size());
    if (lines > opts_.log_lines_per_job || bytes > opts_.log_bytes_per_job) {
      if (ctx->usage.log_suppressed++ == 0) {
        log::warn("log budget exhausted: further lines of this job are suppressed",
                  {{"job_id", ctx->job_id},
                   {"kind", ctx->kind},
                   {"plugin", ctx->plugin},
                   {"log_lines_per_job", opts_.log_lines_per_job},
                   {"log_bytes_per_job", opts_.log_bytes_per_job}});
      }
      ctx->usage.log_suppressed_bytes += static_cast<int64_t>(msg.size());
      return;
    }
    f = {{"job_id", ctx->job_id}, {"kind", ctx->kind}, {"attempt", ctx->attempt}};
  }
  log::write(l, msg, std::move(f));
}

// Coalesced: the latest value is kept in the call's usage and written by the progress thread
// (at most once per progress interval per job); the plugin never waits on the database.
void Engine::job_progress(jr_job_ctx* ctx, double percent, std::string_view step) {
  if (ctx == nullptr || ctx->job_id == 0) return;  // an idle call has no job to report on
  bool first;
  {
    std::lock_guard<std::mutex> lock(ctx->usage.progress_mu);
    ctx->usage.progress_percent = percent;
    ctx->usage.progress_step.assign(step);
    ctx->usage.progress_dirty = true;
    first = !ctx->usage.progress_seen;
    ctx->usage.progress_seen = true;
  }
  if (first) {
    {
      std::lock_guard<std::mutex> lock(progress_mu_);
      progress_calls_.insert(ctx);
    }
    progress_cv_.notify_one();
  }
}

void Engine::progress_loop() {
  const int64_t interval =
      std::max<int64_t>(10, static_cast<int64_t>(opts_.progress_interval_seconds * 1000));
  struct Pending {
    int64_t id;
    int attempt;
    double percent;
    std::string step;
  };
  std::vector<Pending> batch;
  int64_t delay = 250;
  int64_t pause = 0;  // after a failed write (outside the write lock: jobs' ends must not wait)
  while (!progress_done_) {
    {
      std::unique_lock<std::mutex> lock(progress_mu_);
      progress_cv_.wait_for(
          lock, std::chrono::milliseconds(std::max(pause, std::min<int64_t>(interval, 100))),
          [&] { return progress_done_.load(); });
      pause = 0;
      if (progress_done_) break;
    }
    // Values are taken and written under the write lock, so a job's end (flush_progress) waits
    // for a write of its value in flight and cannot be overtaken by it.
    std::lock_guard<std::mutex> write_lock(progress_write_mu_);
    {
      std::lock_guard<std::mutex> lock(progress_mu_);
      int64_t now = steady_ms();
      for (jr_job_ctx* c : progress_calls_) {
        std::lock_guard<std::mutex> l(c->usage.progress_mu);
        if (!c->usage.progress_dirty || now - c->usage.progress_written_ms < interval) continue;
        batch.push_back({c->job_id, c->attempt, c->usage.progress_percent, c->usage.progress_step});
        c->usage.progress_dirty = false;
        c->usage.progress_written_ms = now;
      }
    }
    if (batch.empty()) continue;
    try {
      services_->with([&](Store& s) {
        for (const auto& p : batch) s.JobProgress(p.id, p.attempt, p.percent, p.step);
      });
      delay = 250;
    } catch (const StoreError& e) {
      // Progress is advisory: these values are dropped (a later one, or the last one written
      // at the job's end, replaces them).
      ++stats_.db_errors;
      log::warn("progress update failed", {{"jobs", batch.size()}, {"error", e.what()}});
      pause = delay;
      delay = std::min<int64_t>(delay * 2, 5000);
    }
    batch.clear();
  }
}

void Engine::flush_progress(jr_job_ctx& ctx) {
  {
    std::lock_guard<std::mutex> lock(ctx.usage.progress_mu);
    if (!ctx.usage.progress_seen) return;
  }
  {
    std::lock_guard<std::mutex> lock(progress_mu_);
    progress_calls_.erase(&ctx);
  }
  // Under the write lock: a write of this job's earlier value that is in flight finishes first.
  std::lock_guard<std::mutex> lock(progress_write_mu_);
  double percent;
  std::string step;
  {
    std::lock_guard<std::mutex> l(ctx.usage.progress_mu);
    if (!ctx.usage.progress_dirty) return;
    ctx.usage.progress_dirty = false;
    percent = ctx.usage.progress_percent;
    step = ctx.usage.progress_step;
  }
  try {
    services_->with([&](Store& s) { s.JobProgress(ctx.job_id, ctx.attempt, percent, step); });
  } catch (const StoreError& e) {
    ++stats_.db_errors;
    log::warn("progress update failed", {{"job_id", ctx.job_id}, {"error", e.what()}});
  }
}

void Engine::end_call(jr_job_ctx& ctx) {
  flush_progress(ctx);
  int64_t n = ctx.usage.log_suppressed.load();
  if (n > 0) {
    log::warn("log budget exhausted: lines of this job were suppressed",
              {{"job_id", ctx.job_id},
               {"kind", ctx.kind},
               {"plugin", ctx.plugin},
               {"suppressed_lines", n},
               {"suppressed_bytes", ctx.usage.log_suppressed_bytes.load()}});
  }
}

// The rules of host->enqueue, checked before anything of the request is parsed: a plugin may
// enqueue the kinds it serves here and the kinds granted to it, at most enqueues_per_job times
// per call.
bool Engine::enqueue_permitted(jr_job_ctx* ctx, std::string_view kind) {
  // No context: the host itself (a plugin's call always carries one: host_api and the sandbox
  // exchange never pass null), so no plugin's rules apply.
  if (ctx == nullptr) return true;
  int64_t n = ++ctx->usage.enqueues;
  if (n > opts_.enqueues_per_job) {
    if (n == opts_.enqueues_per_job + 1) {
      log::error(
          "enqueue refused: the job used up its enqueue budget; further enqueues of "
          "this job are refused silently",
          {{"job_id", ctx->job_id},
           {"kind", ctx->kind},
           {"plugin", ctx->plugin},
           {"enqueues_per_job", opts_.enqueues_per_job}});
    }
    return false;
  }
  auto it = runtime_by_name_.find(ctx->plugin);
  if (it == runtime_by_name_.end() || !it->second->may_enqueue.count(std::string(kind))) {
    log::error(
        "enqueue refused: a plugin may enqueue only its own kinds and those granted to it",
        {{"job_id", ctx->job_id},
         {"plugin", ctx->plugin},
         {"requested_kind", kind},
         {"allowed", it == runtime_by_name_.end() ? nlohmann::json::array()
                                                  : nlohmann::json(it->second->may_enqueue)}});
    return false;
  }
  return true;
}

int64_t Engine::job_enqueue(jr_job_ctx* ctx, std::string_view kind, std::string_view payload,
                            std::string_view options_json) {
  if (!enqueue_permitted(ctx, kind)) return -1;
  nlohmann::json fields = {{"kind", kind}};
  if (ctx != nullptr) fields["job_id"] = ctx->job_id;
  try {
    // The options of `runner enqueue`, parsed like the CLI and the HTTP API do (one parser:
    // ops/job_options.hpp); an unknown key or a bad value refuses the enqueue.
    JobInsertParams p = ops::job_from_parts(
        kind, nlohmann::json::parse(payload),
        options_json.empty() ? nlohmann::json() : nlohmann::json::parse(options_json));
    // OpenTelemetry traces: a job enqueued by a job joins its trace, under the attempt's span.
    if (ctx != nullptr && !p.traceparent && !ctx->traceparent.empty()) {
      p.traceparent = ctx->traceparent;
    }
    return services_->with([&](Store& s) { return s.JobInsert(p); });
  } catch (const StoreError& e) {
    fields["error"] = e.what();
  } catch (const std::exception& e) {
    fields["error"] = std::string("invalid enqueue request: ") + e.what();
  }
  log::error("enqueue from a plugin failed", std::move(fields));
  return -1;
}

int Engine::job_parent_results(jr_job_ctx* ctx, uint32_t offset, uint32_t max_bytes,
                               std::string* page) {
  if (ctx == nullptr || ctx->job_id <= 0) return -1;  // an idle call has no parents
  nlohmann::json fields = {{"job_id", ctx->job_id}, {"plugin", ctx->plugin}};
  if (++ctx->usage.parent_results > kParentResultsCallsPerJob) {
    if (ctx->usage.parent_results == kParentResultsCallsPerJob + 1) {
      fields["limit"] = kParentResultsCallsPerJob;
      log::error("parent_results refused: the job used up its calls; further calls fail",
                 std::move(fields));
    }
    return -1;
  }
  try {
    auto r = services_->with([&](Store& s) {
      return s.JobParentResults(ctx->job_id, std::min<int64_t>(offset, ops::kMaxWorkflowSteps + 1),
                                std::clamp<int64_t>(max_bytes, 1024, ops::kParentResultsPageBytes),
                                ops::kParentResultsPageCount);
    });
    if (!r) {
      log::error("parent_results: the job is not in the database", std::move(fields));
      return -1;
    }
    *page = std::move(*r);
    return 0;
  } catch (const StoreError& e) {
    fields["error"] = e.what();
  }
  log::error("parent_results failed", std::move(fields));
  return -1;
}

}  // namespace jr
