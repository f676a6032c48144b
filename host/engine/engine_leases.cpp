// Engine: lease renewal (a thread and a connection of its own), cancellation requests and
// timeouts.
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "clock.hpp"
#include "engine.hpp"
#include "log.hpp"

namespace jr {

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

}  // namespace jr
