// Engine: execution: the slot threads, and one attempt of a job from its slot taking it to its
// outcome.
#include <algorithm>
#include <chrono>

#include "clock.hpp"
#include "engine.hpp"
#include "log.hpp"
#include "outcome.hpp"

namespace jr {

namespace {
int64_t unix_ms() { return static_cast<int64_t>(unix_seconds() * 1000); }

// A job's own time on its slot since t0, in us: without its wait for the executor
// (ExecOutcome::waited_us), which the average job time must not count.
int64_t own_us(std::chrono::steady_clock::time_point t0, int64_t waited_us) {
  auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return std::max<int64_t>(0, us - waited_us);
}
}  // namespace

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
      int64_t waited_us = execute(group[0]);
      job_left_slot(own_us(t0, waited_us));
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
  bool wake;
  {
    std::lock_guard<std::mutex> lock(ready_mu_);
    --inflight_;
    wake = claim_due_locked();
  }
  if (wake) room_cv_.notify_one();
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

int64_t Engine::execute(ClaimedJob& job) {
  Attempt a;
  if (!begin_attempt(job, a, true)) return 0;
  ExecOutcome exec =
      a.k->executor->run(a.j, a.ctx, a.timeout_ms > 0 ? a.start_steady + a.timeout_ms : 0);
  int64_t waited_us = exec.waited_us;
  end_attempt(a, exec);
  return waited_us;
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
      int64_t waited_us = out.waited_us;
      e_->end_attempt(a, out);
      e_->job_left_slot(a.started ? own_us(a.t0, waited_us) : -1);
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

}  // namespace jr
