// Engine: claiming: how many jobs a runner holds (max_inflight), the fetcher thread that claims
// them, and the groups of short jobs a slot takes at once.
#include <algorithm>
#include <chrono>

#include "clock.hpp"
#include "engine.hpp"
#include "log.hpp"

namespace jr {

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
  // a wait, or, when the plan gives the claims connection to the fetcher alone
  // (listen_on_claims), on the claims connection itself: nobody else waits for it. Without
  // LISTEN (polling) the fetcher sleeps the poll interval.
  std::unique_ptr<Store> listener;
  const bool listen_on_claims = opts_.connections.listen > 0 && opts_.connections.listen_on_claims;
  const bool listening = opts_.connections.listen > 0 && !listen_on_claims;
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
      room_cv_.wait(lock, [&] { return stopping_ || claim_due_locked(); });
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
      jobs = claims_->with([&](Store& s) {
        // LISTEN before claiming, on this session (again after a reconnect: Listen is a no-op
        // while it listens), so an insert committed after the claim's snapshot wakes the wait.
        if (listen_on_claims) s.Listen();
        auto got = s.JobClaim(p);
        // Notifications that arrived meanwhile are consumed now: a fetcher that keeps finding
        // jobs never waits, and the client library would keep queueing them.
        // (Failing, it must not lose the claim's answer: the next claim reconnects.)
        if (listen_on_claims && !got.empty()) {
          try {
            s.WaitForJobs(0);
          } catch (const StoreError&) {
            ++stats_.db_errors;
          }
        }
        return got;
      });
      backlog_.store(static_cast<int>(jobs.size()) >= want, std::memory_order_relaxed);
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
    if (listener && !jobs.empty()) {
      // A listener of its own is drained the same way: a session that never reads its
      // notifications holds back the server's notification queue for every other listener.
      try {
        listener->WaitForJobs(0);
      } catch (const StoreError&) {
        listener.reset();  // opened again before the next claim
      }
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
      ++stats_.claims;
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
        } else if (listen_on_claims) {
          claims_->with([&](Store& s) { return s.WaitForJobs(std::min(poll_ms, 1000)); });
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

bool Engine::claim_due_locked() const {
  int cap = max_inflight();
  int r = cap - inflight_ - static_cast<int>(unflushed_.load());
  return r > 0 && (ready_.empty() || r * 2 >= cap);
}

int Engine::max_inflight() const {
  if (opts_.prefetch >= 0) return opts_.concurrency + opts_.prefetch;
  // Auto: keep roughly 2 ms of work queued locally per slot. Slow jobs get no prefetch, so they
  // are never held back behind each other while other runners idle. While the queue is deep
  // (the last claim was full) 20 ms: what this runner holds then is not what another runner
  // lacks, and claims and completions of short jobs come in batches ten times larger (a
  // sandboxed no-op job takes ~0.2 ms, so 2 ms per slot meant claims of ~100 jobs). The first
  // claim that comes back short returns to 2 ms. The cap (10 jobs per slot, at least two
  // completion batches so claims can be as large as the completion batches, at most 2,000)
  // also limits what a crash costs: prefetched jobs of a killed runner wait for their lease to
  // expire, and the lost attempt is counted.
  int64_t avg = std::max<int64_t>(1, avg_job_us_.load(std::memory_order_relaxed));
  int64_t horizon_us = backlog_.load(std::memory_order_relaxed) ? 20000 : 2000;
  int64_t extra = static_cast<int64_t>(opts_.concurrency) * horizon_us / avg;
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
  // Shared among the slots that can run at once: a sandbox pool smaller than the slots runs only
  // as many groups as it has workers, and the other slots would wait for one anyway.
  size_t runs = std::min(static_cast<size_t>(std::max(1, opts_.concurrency)),
                         std::max<size_t>(1, (*executor)->parallelism()));
  size_t share = ready_.size() / runs;
  return std::max<size_t>(1, std::min({limit, by_time, share}));
}

}  // namespace jr
