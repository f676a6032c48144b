// Jobs (or an idle call) on one worker: send the Job frames, serve the worker's host calls, watch
// each job's deadline and ctx.cancel, and turn whatever ends each job into an ExecOutcome.
//
// Several jobs may be handed over at once (run_batch): the frames of the next jobs wait in the
// worker's socket, within kAheadBytes, while one runs. The worker runs them in order, so the
// job whose Done has not arrived yet is the running one ("current"): its host calls, deadline
// and cancellation are the ones served; the ones behind it have not started. A worker that dies
// ends the current job only; the ones behind it go again, on its replacement.
//
// This is the edge where a worker's bytes enter the host: every string in a frame is bounded
// here (bounds.hpp) before the host services (engine, log, database) see it. The loop waits on
// nothing but the worker's socket (in ticks of kReadTickMs), its own deadline and ctx.cancel; a
// killed worker is torn down without waiting on it (SandboxExecutor::retire).
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <thread>

#include "bounds.hpp"
#include "cpu_room.hpp"
#include "sandbox.hpp"
#include "worker_process.hpp"

namespace jr::sandbox {
namespace {

using proto::Decoder;
using proto::Frame;
using proto::FrameReader;
using proto::Type;

}  // namespace

void SandboxExecutor::begin_item(Item& it, BatchSink* sink) {
  if (it.started) return;
  it.started = true;
  int64_t now = proto::steady_ms();
  if (it.deadline == 0 && it.timeout_ms > 0) it.deadline = now + it.timeout_ms;
  if (policy_.wall_timeout_seconds > 0) {
    int64_t wall = now + static_cast<int64_t>(policy_.wall_timeout_seconds * 1000);
    it.deadline = it.deadline > 0 ? std::min(it.deadline, wall) : wall;
  }
  if (sink != nullptr) sink->started(it.index, now);
}

void SandboxExecutor::finish_item(Item& it, BatchSink* sink) {
  if (it.job != nullptr) account(it.out, *it.job);
  it.out.waited_us = it.waited_us;
  if (sink != nullptr) sink->finished(it.index, std::move(it.out));
}

size_t SandboxExecutor::exchange(Slot* s, Type type, std::vector<Item>& items, size_t from,
                                 BatchSink* sink) {
  WorkerProcess& w = *s->w;
  const size_t n = items.size();
  size_t cur = from;             // the running item: the first without a Done
  size_t sent = from;            // the first item not handed to this worker
  size_t ahead_bytes = 0;        // frames of items in (cur, sent)
  bool recycle_pending = false;  // the worker is due for replacement: no more frames for it
  bool recycle_oom = false;

  // Ends the current item with the worker gone: reap, classify, count, log.
  auto died = [&](bool exited_by_itself, const std::string& protocol_why) -> size_t {
    Item& it = items[cur];
    ExecOutcome& out = it.out;
    ErrorKind kind = ErrorKind::crash;
    std::string text;
    if (w.generation != generation_.load()) {
      // Killed with the whole pool (quarantine): not this job's doing.
      w.kill();
      w.reap();
      out.release = true;
      out.host_error = "plugin " + name_ + " was quarantined; its workers were killed";
      worker_died(s, Restart::cancelled, ErrorKind::unavailable, out.host_error, false);
    } else {
      if (exited_by_itself) {
        WorkerProcess::classify(w.reap(), w.killed_by_us(), &kind, &text);
      } else {
        w.kill();
        kind = ErrorKind::protocol;
        text = protocol_why;
      }
      out.host_error_kind = kind;
      out.host_error = text;
      worker_died(s, restart_for_kind(kind), kind, text, true);
    }
    finish_item(it, sink);
    return cur + 1;
  };
  auto protocol = [&](const std::string& why) { return died(false, why); };

  // Exchanges in flight in this process: the worker may poll for its next job only while they
  // are fewer than the CPUs (see proto::kSpinUs), and either side only while no runnable task
  // waits for a CPU (CpuRoom): polling then takes the CPU from what it waits for.
  static std::atomic<int> active{0};
  static const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  struct Active {
    Active() { active.fetch_add(1, std::memory_order_relaxed); }
    ~Active() { active.fetch_sub(1, std::memory_order_relaxed); }
  } in_flight;
  const bool room = CpuRoom::machine().room();
  w.reader.set_spin_us(room ? proto::kSpinUs : 0);
  __atomic_store_n(
      &w.shared->spin_us,
      room && active.load(std::memory_order_relaxed) < cpus ? uint32_t{proto::kSpinUs} : 0u,
      __ATOMIC_RELAXED);

  auto allowed = [&](size_t i) {
    Item& it = items[i];
    if (it.allowed == 0) {
      it.allowed = it.index == 0 || sink == nullptr || sink->may_send(it.index) ? 1 : -1;
    }
    return it.allowed > 0;
  };
  // Hands the worker the next items: always the current one when it has not been sent, then
  // more while they fit in kAheadBytes (and the engine agrees: it says no once it stops).
  // The time an item may take from its start, for the plugin's jr_job.deadline_ms: what is left
  // of the current one's deadline, or a waiting one's whole timeout (its clock starts later).
  auto budget_ms = [&](const Item& it) -> int64_t {
    if (it.deadline > 0) return std::max<int64_t>(1, it.deadline - proto::steady_ms());
    int64_t b = it.timeout_ms;
    if (policy_.wall_timeout_seconds > 0) {
      int64_t wall = static_cast<int64_t>(policy_.wall_timeout_seconds * 1000);
      b = b > 0 ? std::min(b, wall) : wall;
    }
    return b;
  };
  std::string frames;
  auto top_up = [&]() -> bool {
    frames.clear();
    while (sent < n && !recycle_pending) {
      Item& it = items[sent];
      if (sent > cur) {
        if (ahead_bytes + it.frame_bytes > kAheadBytes) break;
        if (sent - cur >= proto::kCancelAheadSlots) break;
        // max_jobs: the frames it may still take before it is recycled.
        if (policy_.max_jobs > 0 &&
            w.jobs + static_cast<int64_t>(sent - cur) >= static_cast<int64_t>(policy_.max_jobs)) {
          break;
        }
      }
      if (!allowed(sent)) break;  // serve() releases it and the ones behind it
      it.seq = ++w.seq;
      it.cancel_marked = false;
      it.recalled = false;
      if (it.ctx->cancel.load(std::memory_order_relaxed) != kNoCancel) {
        // Cancelled before it was sent: marked before the worker can read its frame, so it
        // does not start (the main loop would mark it only after the write).
        it.cancel_marked = true;
        if (sent == cur) {
          __atomic_store_n(&w.shared->cancel_seq, it.seq, __ATOMIC_RELEASE);
        } else {
          __atomic_store_n(&w.shared->cancel_ahead[it.seq % proto::kCancelAheadSlots], it.seq,
                           __ATOMIC_RELEASE);
          it.cancel_marked = true;
        }
      }
      w.enc.begin(type);
      w.enc.put<uint64_t>(it.seq);
      if (type == Type::job) {
        const jr_job* job = it.job;
        w.enc.put<int64_t>(job->id);
        w.enc.put<int32_t>(job->attempt);
        w.enc.put<int32_t>(job->max_attempts);
        w.enc.put<int64_t>(budget_ms(it));  // the worker sets jr_job.deadline_ms at its start
        w.enc.str(job->kind);
        w.enc.str(job->queue);
        w.enc.str(std::string_view(job->payload, job->payload_len));
        w.enc.str(it.ctx->traceparent);  // jr.trace.v1: "" or 55 bytes (trace_context.hpp)
      }
      std::string_view f = w.enc.finish();
      it.frame_bytes = f.size();
      frames.append(f);
      if (sent > cur) ahead_bytes += f.size();
      counters_.jobs++;
      ++sent;
    }
    if (frames.empty()) return true;
    const Item& c = items[cur];
    int64_t write_by = c.deadline > 0 ? c.deadline + opts_.kill_grace_ms : 0;
    return proto::write_all_until(w.fd, frames, write_by);
  };

  bool cancel_sent = false;
  bool drained = false;  // the socket was read once more before a kill
  int cancel_why = kNoCancel;
  int64_t kill_at = 0;
  // The current item starts: its deadline counts from now, its output is tagged with its id.
  auto make_current = [&] {
    Item& it = items[cur];
    begin_item(it, sink);
    cancel_sent = false;
    drained = false;
    cancel_why = kNoCancel;
    kill_at = 0;
    // Tags its stdout/stderr until the next item (text read just after Done is still this job's).
    if (w.output) w.output->set_job(it.job != nullptr ? it.job->id : 0);
  };

  if (!allowed(cur)) return cur;  // the engine is stopping: serve() releases the rest
  make_current();
  if (!top_up()) {
    return w.wait_exit(200) ? died(true, "") : protocol("worker did not accept the job");
  }

  std::string text;  // storage for a bounded string from the current frame
  for (;;) {
    Item& it = items[cur];
    jr_job_ctx& ctx = *it.ctx;
    const uint64_t seq = it.seq;
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
        ExecOutcome& out = it.out;
        out.status = status;
        // "Not started" only counts for a job the host marked: the flag comes from the
        // plugin's process, and believing it unasked would let a plugin dodge max_jobs.
        bool skipped = (flags & proto::kDoneSkipped) != 0 && status == JR_CANCELLED &&
                       (it.cancel_marked || it.recalled || cancel_sent);
        if (skipped && !it.recalled && cancel_sent && cancel_why == kCancelTimeout) {
          // Its deadline (which counts the wait for a worker) passed before it started.
          out.host_error_kind = ErrorKind::timeout;
          out.host_error = "the job's deadline passed before it started in the sandbox";
        } else if (skipped && it.recalled) {
          // Called back from a worker due for replacement before it started: back to the
          // queue, no attempt used (its own run would have met the worker's exhausted budget).
          out = ExecOutcome{};
          out.release = true;
          out.host_error = "sent ahead to a sandbox worker that was then recycled; not started";
        }
        if (!skipped) w.jobs++;
        bool oom = (flags & proto::kDoneOom) != 0 && status != JR_OK && !skipped;
        if (oom) {
          out.host_error_kind = ErrorKind::oom;
          out.host_error = "out of memory: an allocation failed in the worker (memory_mb = " +
                           std::to_string(policy_.memory_mb) + ")" +
                           (error.empty() ? "" : ": " + std::string(error));
        } else if ((flags & proto::kDoneTooBig) != 0) {
          out.host_error_kind = ErrorKind::protocol;
          out.host_error = "result of " + std::to_string(result_size) +
                           " bytes exceeds the sandbox frame limit of " +
                           std::to_string(opts_.max_frame) + " bytes";
        }
        {
          std::lock_guard<std::mutex> lock(mu_);
          consecutive_failures_ = 0;
        }
        if (!recycle_pending && !recycle_reason(w, oom).empty()) {
          // Nothing more is sent; the frames it holds are called back (the one it may have
          // started already runs to its end): after an allocation failure, or past a CPU or
          // RSS budget, the next job would meet the exhausted worker, not its own limits.
          recycle_pending = true;
          recycle_oom = recycle_oom || oom;
          for (size_t k = cur + 1; k < sent; ++k) {
            __atomic_store_n(&w.shared->cancel_ahead[items[k].seq % proto::kCancelAheadSlots],
                             items[k].seq, __ATOMIC_RELEASE);
            items[k].cancel_marked = true;
            items[k].recalled = true;
          }
        }
        // The next item is running already when it was sent; else it goes now. Its outcome's
        // bookkeeping (the engine's) then overlaps with its run.
        size_t done_i = cur++;
        bool wrote = true;
        if (cur < sent) {
          ahead_bytes -= items[cur].frame_bytes;
          make_current();
          wrote = top_up();
        } else if (cur < n && !recycle_pending && allowed(cur)) {
          make_current();
          wrote = top_up();
        }
        finish_item(items[done_i], sink);
        if (cur == sent) {  // nothing outstanding on this worker
          if (recycle_pending) maybe_recycle(s, recycle_oom);
          return cur;
        }
        if (!wrote) {
          return w.wait_exit(200) ? died(true, "") : protocol("worker did not accept the job");
        }
        continue;
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
    // Jobs waiting behind the running one: a cancelled one is skipped by the worker when it
    // gets there (it then reports JR_CANCELLED without running).
    for (size_t k = cur + 1; k < sent; ++k) {
      Item& next = items[k];
      if (!next.cancel_marked && next.ctx->cancel.load(std::memory_order_relaxed) != kNoCancel) {
        __atomic_store_n(&w.shared->cancel_ahead[next.seq % proto::kCancelAheadSlots], next.seq,
                         __ATOMIC_RELEASE);
        next.cancel_marked = true;
      }
    }
    int c = ctx.cancel.load(std::memory_order_relaxed);
    if (!cancel_sent && (c != kNoCancel || (it.deadline > 0 && now >= it.deadline))) {
      // A worker that has not started this item yet skips it (worker_main.cpp).
      __atomic_store_n(&w.shared->cancel_seq, seq, __ATOMIC_RELEASE);
      cancel_sent = true;
      cancel_why = c != kNoCancel ? c : kCancelTimeout;
      kill_at = now + opts_.kill_grace_ms;
    }
    if (cancel_sent && now >= kill_at && !drained) {
      // Its Done may be in the socket already (the worker then runs the next job sent ahead):
      // read what is there before killing, once.
      drained = true;
      pollfd p{w.fd, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0 && w.reader.fill(w.fd) == FrameReader::Result::need_more) continue;
    }
    if (cancel_sent && now >= kill_at) {
      w.kill();
      ExecOutcome& out = it.out;
      std::string grace = std::to_string(opts_.kill_grace_ms) + " ms";
      if (cancel_why == kCancelUser) {
        out.host_error_kind = ErrorKind::cancelled;
        out.host_error = "the handler ignored the cancellation; worker killed after " + grace;
        worker_died(s, Restart::cancelled, ErrorKind::cancelled, out.host_error, false);
      } else if (cancel_why == kCancelShutdown) {
        out.release = true;
        out.host_error = "the handler ignored the shutdown request; worker killed";
        worker_died(s, Restart::cancelled, ErrorKind::shutdown, out.host_error, false);
      } else {
        out.host_error_kind = ErrorKind::timeout;
        out.host_error =
            "the job ran past its deadline and ignored the cancellation; worker "
            "killed after a grace of " +
            grace;
        worker_died(s, Restart::timeout, ErrorKind::timeout, out.host_error, false);
      }
      finish_item(it, sink);
      return cur + 1;
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
