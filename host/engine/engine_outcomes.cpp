// Engine: outcomes: classified, queued for the completer threads, written in batches and counted.
#include <algorithm>

#include "engine.hpp"
#include "log.hpp"
#include "outcome.hpp"

namespace jr {

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
    bool wake;
    {
      std::lock_guard<std::mutex> lock(ready_mu_);  // pairs with the fetcher's wait
      wake = claim_due_locked();
    }
    if (wake) room_cv_.notify_one();
    batch.clear();
  }
}

}  // namespace jr
