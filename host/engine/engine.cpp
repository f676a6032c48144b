// The engine: one runner's jobs, from claim to recorded outcome. Its parts, one file each:
//   engine.cpp           construction, run() and the orderly stop
//   engine_fetch.cpp     claiming: how many jobs to hold, the fetcher thread, groups of jobs
//   engine_slots.cpp     execution: slot threads, one attempt from start to outcome
//   engine_outcomes.cpp  outcomes: classified, batched and written by the completers
//   engine_leases.cpp    lease renewal, cancellation and timeouts
//   engine_plugins.cpp   plugins' start-up, readiness and idle hooks
//   engine_host_api.cpp  the host services a plugin calls during a job (log, progress, enqueue)
#include "engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "clock.hpp"
#include "log.hpp"
#include "util.hpp"

namespace jr {

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
    mo.vacuum_dead_rows = opts_.vacuum_dead_rows;
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

}  // namespace jr
