// Engine: the host services a plugin calls during a job: log, progress, enqueue, parent results.
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "clock.hpp"
#include "engine.hpp"
#include "job_options.hpp"
#include "log.hpp"
#include "workflow.hpp"

namespace jr {

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
