// One job (or idle call) on one worker: send the Job frame, serve the worker's host calls, watch
// the deadline and ctx.cancel, and turn whatever ends the exchange into an ExecOutcome.
//
// This is the edge where a worker's bytes enter the host: every string in a frame is bounded
// here (bounds.hpp) before the host services (engine, log, database) see it. The loop waits on
// nothing but the worker's socket (in ticks of kReadTickMs), its own deadline and ctx.cancel; a
// killed worker is torn down without waiting on it (SandboxExecutor::retire).
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <thread>

#include "bounds.hpp"
#include "sandbox.hpp"
#include "worker_process.hpp"

namespace jr::sandbox {
namespace {

using proto::Decoder;
using proto::Frame;
using proto::FrameReader;
using proto::Type;

}  // namespace

ExecOutcome SandboxExecutor::exchange(Slot* s, Type type, const jr_job* job, jr_job_ctx& ctx,
                                      int64_t deadline) {
  ExecOutcome out;
  WorkerProcess& w = *s->w;
  const uint64_t seq = ++w.seq;
  // Ends the exchange with the worker gone: reap, classify, count, log.
  auto died = [&](bool exited_by_itself, const std::string& protocol_why) {
    std::string kind, text;
    if (w.generation != generation_.load()) {
      // Killed with the whole pool (quarantine): not this job's doing.
      w.kill();
      w.reap();
      out.release = true;
      out.host_error = "plugin " + name_ + " was quarantined; its workers were killed";
      worker_died(s, Restart::cancelled, "unavailable", out.host_error, false);
      return out;
    }
    if (exited_by_itself) {
      WorkerProcess::classify(w.reap(), w.killed_by_us(), &kind, &text);
    } else {
      w.kill();
      kind = "protocol";
      text = protocol_why;
    }
    out.host_error_kind = kind;
    out.host_error = text;
    worker_died(s, restart_for_kind(kind), kind, text, true);
    return out;
  };
  auto protocol = [&](const std::string& why) { return died(false, why); };

  w.enc.begin(type);
  w.enc.put<uint64_t>(seq);
  if (type == Type::job) {
    size_t size = std::strlen(job->kind) + std::strlen(job->queue) + job->payload_len;
    if (size + 256 > opts_.max_frame) {
      std::lock_guard<std::mutex> lock(ctx.mu);
      ctx.error = "payload of " + std::to_string(job->payload_len) +
                  " bytes exceeds the sandbox frame limit of " + std::to_string(opts_.max_frame);
      out.status = JR_ERR_PERMANENT;
      return out;
    }
    w.enc.put<int64_t>(job->id);
    w.enc.put<int32_t>(job->attempt);
    w.enc.put<int32_t>(job->max_attempts);
    w.enc.put<int64_t>(job->deadline_ms);
    w.enc.str(job->kind);
    w.enc.str(job->queue);
    w.enc.str(std::string_view(job->payload, job->payload_len));
    w.enc.str(ctx.traceparent);  // jr.trace.v1: "" or 55 bytes (trace_context.hpp)
  }
  // Exchanges in flight in this process: the worker may poll for its next job only while they
  // are fewer than the CPUs (see proto::kSpinUs).
  static std::atomic<int> active{0};
  static const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  struct Active {
    Active() { active.fetch_add(1, std::memory_order_relaxed); }
    ~Active() { active.fetch_sub(1, std::memory_order_relaxed); }
  } in_flight;
  __atomic_store_n(&w.shared->spin_us,
                   active.load(std::memory_order_relaxed) < cpus ? uint32_t{proto::kSpinUs} : 0u,
                   __ATOMIC_RELAXED);
  // Tags its stdout/stderr until the next exchange (text read just after Done is still this job's).
  if (w.output) w.output->set_job(job != nullptr ? job->id : 0);
  int64_t write_by = deadline > 0 ? deadline + opts_.kill_grace_ms : 0;
  if (!proto::write_all_until(w.fd, w.enc.finish(), write_by)) {
    return w.wait_exit(200) ? died(true, "") : protocol("worker did not accept the job");
  }
  counters_.jobs++;

  bool cancel_sent = false;
  int cancel_why = kNoCancel;
  int64_t kill_at = 0;
  std::string text;  // storage for a bounded string from the current frame
  for (;;) {
    Frame f;
    FrameReader::Result r = w.reader.parse(f);
    if (r == FrameReader::Result::frame) {
      Decoder d(f.payload);
      uint64_t fseq = d.get<uint64_t>();
      if (f.type == Type::log) {
        int32_t level = d.get<int32_t>();
        std::string_view msg = d.str();
        if (!d.ok()) return protocol("malformed log frame");
        if (fseq == seq && ctx.services != nullptr) {
          ctx.services->job_log(&ctx, level, bounds::cut(msg, bounds::kLogMessageMax, text));
        }
      } else if (f.type == Type::progress) {
        double pct = d.get<double>();
        std::string_view step = d.str();
        if (!d.ok()) return protocol("malformed progress frame");
        if (fseq == seq && ctx.services != nullptr && std::isfinite(pct)) {
          ctx.services->job_progress(&ctx, std::clamp(pct, 0.0, 100.0),
                                     bounds::cut(step, bounds::kProgressStepMax, text));
        }
      } else if (f.type == Type::enqueue) {
        uint64_t req = d.get<uint64_t>();
        std::string_view kind = d.str(), payload = d.str(), options = d.str();
        if (!d.ok()) return protocol("malformed enqueue frame");
        int64_t id = -1;
        if (fseq == seq && ctx.services != nullptr) {
          if (std::string why = bounds::enqueue_refusal(kind, payload, options); !why.empty()) {
            ctx.services->job_log(&ctx, JR_LOG_ERROR, "enqueue refused: " + why);
          } else {
            id = ctx.services->job_enqueue(&ctx, kind, payload, options);
          }
        }
        proto::Encoder reply;
        reply.begin(Type::enqueue_reply);
        reply.put<uint64_t>(req);
        reply.put<int64_t>(id);
        if (!proto::write_all_until(w.fd, reply.finish(), proto::steady_ms() + 5000)) {
          return protocol("worker stopped reading its enqueue replies");
        }
      } else if (f.type == Type::parents) {
        // Fixed fields only; the page is the host's, bounded to fit a frame.
        uint64_t req = d.get<uint64_t>();
        uint32_t offset = d.get<uint32_t>();
        if (!d.ok() || !d.at_end()) return protocol("malformed parent_results frame");
        std::string page;
        int32_t rc = -1;
        if (fseq == seq && ctx.services != nullptr && opts_.max_frame > 8192) {
          rc = ctx.services->job_parent_results(&ctx, offset, opts_.max_frame - 4096, &page);
          if (rc == 0 && page.size() + 64 > opts_.max_frame) rc = -1;
        }
        if (rc != 0) page.clear();
        proto::Encoder reply;
        reply.begin(Type::parents_reply);
        reply.put<uint64_t>(req);
        reply.put<int32_t>(rc);
        reply.str(page);
        if (!proto::write_all_until(w.fd, reply.finish(), proto::steady_ms() + 5000)) {
          return protocol("worker stopped reading its parent_results replies");
        }
      } else if (f.type == Type::done) {
        int32_t status = d.get<int32_t>();
        uint32_t flags = d.get<uint32_t>();
        double snooze = d.get<double>();
        w.cpu_us = d.get<int64_t>();
        w.maxrss_kb = d.get<int64_t>();
        uint64_t result_size = d.get<uint64_t>();
        std::string_view result = d.str(), error = d.str(), error_kind = d.str();
        if (!d.ok() || !d.at_end()) return protocol("malformed done frame");
        // The worker checked the kind, but its memory is the plugin's: checked again here, and
        // one that does not pass is dropped (the failure keeps the kind "error").
        if (!error_kind.empty() && !bounds::error_kind_refusal(error_kind).empty()) {
          error_kind = {};
        }
        if (fseq != seq) return protocol("done frame for another job");
        error = bounds::cut(error, bounds::kErrorTextMax, text);
        {
          std::lock_guard<std::mutex> lock(ctx.mu);
          ctx.has_result = (flags & proto::kDoneHasResult) != 0;
          if (ctx.has_result) ctx.result.assign(result);
          ctx.error.assign(error);
          ctx.error_kind.assign(error_kind);
          ctx.snooze_seconds = snooze;
        }
        out.status = status;
        w.jobs++;
        bool oom = (flags & proto::kDoneOom) != 0 && status != JR_OK;
        if (oom) {
          out.host_error_kind = "oom";
          out.host_error = "out of memory: an allocation failed in the worker (memory_mb = " +
                           std::to_string(policy_.memory_mb) + ")" +
                           (error.empty() ? "" : ": " + std::string(error));
        } else if ((flags & proto::kDoneTooBig) != 0) {
          out.host_error_kind = "protocol";
          out.host_error = "result of " + std::to_string(result_size) +
                           " bytes exceeds the sandbox frame limit of " +
                           std::to_string(opts_.max_frame) + " bytes";
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          consecutive_failures_ = 0;
        }
        maybe_recycle(s, oom);
        return out;
      } else {
        return protocol("unexpected frame type " + std::to_string(static_cast<int>(f.type)));
      }
      continue;
    }
    if (r == FrameReader::Result::too_big) {
      return protocol("frame of " + std::to_string(w.reader.last_len()) +
                      " bytes exceeds the limit of " + std::to_string(opts_.max_frame) + " bytes");
    }
    int64_t now = proto::steady_ms();
    int c = ctx.cancel.load(std::memory_order_relaxed);
    if (!cancel_sent && (c != kNoCancel || (deadline > 0 && now >= deadline))) {
      __atomic_store_n(&w.shared->cancel_seq, seq, __ATOMIC_RELEASE);
      cancel_sent = true;
      cancel_why = c != kNoCancel ? c : kCancelTimeout;
      kill_at = now + opts_.kill_grace_ms;
    }
    if (cancel_sent && now >= kill_at) {
      w.kill();
      std::string grace = std::to_string(opts_.kill_grace_ms) + " ms";
      if (cancel_why == kCancelUser) {
        out.host_error_kind = "cancelled";
        out.host_error = "the handler ignored the cancellation; worker killed after " + grace;
        worker_died(s, Restart::cancelled, "cancelled", out.host_error, false);
      } else if (cancel_why == kCancelShutdown) {
        out.release = true;
        out.host_error = "the handler ignored the shutdown request; worker killed";
        worker_died(s, Restart::cancelled, "shutdown", out.host_error, false);
      } else {
        out.host_error_kind = "timeout";
        out.host_error =
            "the job ran past its deadline and ignored the cancellation; worker "
            "killed after a grace of " +
            grace;
        worker_died(s, Restart::timeout, "timeout", out.host_error, false);
      }
      return out;
    }
    // One blocking read: the socket's receive timeout (kReadTickMs) bounds it, so the loop still
    // checks ctx.cancel and the deadline; a dead worker shows up as end of stream.
    FrameReader::Result fr = w.reader.fill(w.fd);
    if (fr == FrameReader::Result::eof || (fr == FrameReader::Result::error && errno != EAGAIN &&
                                           errno != EWOULDBLOCK && errno != EINTR)) {
      // The worker closed its end: it is exiting (crash) or it closed the socket itself.
      return w.wait_exit(500) ? died(true, "")
                              : protocol("worker closed its IPC channel during a job");
    }
  }
}

}  // namespace jr::sandbox
