// Engine: plugins: start-up with retries, readiness, and the idle hooks.
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "clock.hpp"
#include "engine.hpp"
#include "log.hpp"

namespace jr {

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

}  // namespace jr
