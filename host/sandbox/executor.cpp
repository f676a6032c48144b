// SandboxExecutor: a pool of warm jr-worker processes for one plugin and the supervision of
// each job (frames, deadline, kill, classification, respawn backoff, quarantine, recycling).
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>

#include "bounds.hpp"
#include "cgroup.hpp"
#include "identity.hpp"
#include "internal.hpp"
#include "sandbox.hpp"
#include "worker_process.hpp"

namespace jr::sandbox {
namespace {

constexpr int64_t kTickMs = 50;  // how often a waiting job checks ctx.cancel

// The CPUs this process may run on (its affinity mask, which containers and taskset narrow).
int usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

Restart restart_for_kind(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::seccomp:
      return Restart::seccomp;
    case ErrorKind::oom:
      return Restart::oom;
    case ErrorKind::timeout:
      return Restart::timeout;
    case ErrorKind::protocol:
      return Restart::protocol;
    default:
      return Restart::crash;
  }
}

const char* restart_name(Restart r) {
  static const char* const names[kRestartReasons] = {
      "crash", "seccomp", "oom", "timeout", "protocol", "cancelled", "recycle", "start_failure"};
  return names[static_cast<int>(r)];
}

nlohmann::json Counters::to_json() const {
  nlohmann::json r = nlohmann::json::object();
  for (int i = 0; i < kRestartReasons; ++i) {
    r[restart_name(static_cast<Restart>(i))] = restarts[i].load();
  }
  nlohmann::json f = nlohmann::json::object();
  for (int i = 0; i < kFailureKindCount; ++i)
    f[std::string(to_string(kFailureKinds[i]))] = failures[i].load();
  return {{"workers_started", workers_started.load()},
          {"failures", f},
          {"jobs", jobs.load()},
          {"quarantines", quarantines.load()},
          {"released_quarantined", released_quarantined.load()},
          {"restarts", r}};
}

uint64_t Counters::failures_for(const std::string& kind) const {
  for (int i = 0; i < kFailureKindCount; ++i) {
    if (kind == to_string(kFailureKinds[i])) return failures[i].load();
  }
  return 0;
}

SandboxExecutor::SandboxExecutor(const LoadedPlugin& plugin, nlohmann::json plugin_config,
                                 Policy policy, SandboxOptions opts)
    : name_(plugin.name),
      path_(std::filesystem::absolute(plugin.path).string()),
      pin_(plugin.pin),
      plugin_config_(std::move(plugin_config)),
      policy_(std::move(policy)),
      opts_(std::move(opts)),
      has_idle_(plugin.has_idle) {
  worker_path_ = opts_.worker_path.empty() ? default_worker_path() : opts_.worker_path;
  WorkerIdentity id = plugin_identity(name_, policy_.user.empty() ? opts_.user : policy_.user);
  uid_ = id.uid;
  gid_ = id.gid;
  uid_source_ = id.source;
  user_name_ = id.name;
  if (!id.warning.empty()) host_warnings_.push_back(id.warning);
  bool no_cgroup = std::count(opts_.simulate_missing.begin(), opts_.simulate_missing.end(),
                              std::string("cgroup")) > 0;
  cgroup_ = PluginCgroup::create(name_, {policy_.memory_mb, policy_.max_threads}, no_cgroup);
  if (!cgroup_->warning().empty()) host_warnings_.push_back(cgroup_->warning());
  int n = policy_.workers > 0 ? policy_.workers : std::max(1, opts_.pool_size);
  slots_.resize(static_cast<size_t>(n));
  warm_ = std::clamp(opts_.warm_workers > 0 ? opts_.warm_workers : usable_cpus(), 1, n);
  in_use_.store(warm_);
}

SandboxExecutor::~SandboxExecutor() { stop(); }

void SandboxExecutor::say(log::Level l, const std::string& msg, nlohmann::json fields) {
  fields["plugin"] = name_;
  log::write(l, msg, fields);
  if (opts_.log_observer) opts_.log_observer(l, msg, fields);
}

nlohmann::json SandboxExecutor::layers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return layers_;
}

bool SandboxExecutor::quarantined() const {
  std::lock_guard<std::mutex> lock(mu_);
  return quarantined_until_ > proto::steady_ms();
}

void SandboxExecutor::start() {
  std::string why;
  if (!start_plugin(&why)) throw SandboxError("plugin " + path_ + ": " + why);
}

bool SandboxExecutor::start_plugin(std::string* why) {
  bool started = false;
  std::vector<Slot*> empty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      *why = "the sandbox is shutting down";
      return false;
    }
    if (int64_t left = quarantined_until_ - proto::steady_ms(); left > 0) {
      *why = "quarantined after repeated worker crashes (for " + std::to_string(left / 1000) +
             " s more)";
      return false;
    }
    // The warm part of the pool: workers that run (or start) count towards it.
    int occupied = 0;
    for (const auto& s : slots_) {
      if (s.busy || s.w) ++occupied;
      if (!s.busy && s.w) started = true;  // a free slot's worker belongs to nobody
    }
    for (auto& s : slots_) {
      if (occupied >= warm_) break;
      if (s.busy || s.w) continue;
      s.busy = true;  // ours while its worker starts
      s.busy_since = proto::steady_ms();
      empty.push_back(&s);
      ++occupied;
    }
  }
  // Starts one slot's worker: "" once it runs the plugin, else why not.
  auto start_slot = [&](Slot* s) -> std::string {
    ErrorKind kind = ErrorKind::start_failure;
    std::string err;
    bool refused = false;
    try {
      s->w = start_worker(&kind, &err, &refused);
    } catch (const std::exception& e) {  // a hello with fields of the wrong types
      kind = ErrorKind::protocol;
      err = std::string("malformed hello from the worker: ") + e.what();
    }
    if (s->w) return "";
    counters_.restarts[static_cast<int>(Restart::start_failure)]++;
    // A worker that dies while starting counts towards quarantine; an init that says no does
    // not (a dependency of the plugin may be down for a while: the engine retries with backoff).
    if (!refused) {
      std::lock_guard<std::mutex> lock(mu_);
      note_abnormal_locked(proto::steady_ms());
    }
    if (refused) {
      // The plugin's own init said no: the same words as the in-process path.
      return "init failed: " + (err.rfind("init: ", 0) == 0 ? err.substr(6) : err);
    }
    return "sandbox worker failed to start (" + std::string(to_string(kind)) + "): " + err;
  };
  // The first alone: when it fails the others would fail alike, and their slots stay empty
  // (a job's slot starts its worker on demand). Then the rest side by side, a few at a time:
  // a worker's start is mostly waiting (exec, namespaces, the plugin's load and init), and one
  // after the other the pool of 10 took 430 ms before the runner served its first job.
  std::string reason;
  if (!empty.empty()) {
    reason = start_slot(empty[0]);
    started = started || reason.empty();
  }
  if (!empty.empty() && reason.empty() && empty.size() > 1) {
    std::atomic<size_t> next{1};
    std::atomic<bool> any{false}, failed{false};
    auto starter = [&] {
      // After a failure no more starts, as one after the other (the slots left empty start
      // on demand, through the respawn backoff).
      for (size_t i; !failed && (i = next.fetch_add(1)) < empty.size();) {
        if (start_slot(empty[i]).empty()) {
          any = true;
        } else {
          failed = true;
        }
      }
    };
    size_t threads =
        std::min(empty.size() - 1,
                 static_cast<size_t>(std::max(2u, 2 * std::thread::hardware_concurrency())));
    std::vector<std::thread> pool;
    for (size_t t = 1; t < threads; ++t) pool.emplace_back(starter);
    starter();
    for (auto& t : pool) t.join();
    started = started || any;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (Slot* s : empty) s->busy = false;
    ready_ = started;
    not_ready_ = started ? "" : reason;
  }
  cv_.notify_all();
  if (!started) *why = reason;
  return started;
}

bool SandboxExecutor::ready(std::string* why) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!ready_) *why = not_ready_;
  return ready_;
}

void SandboxExecutor::not_ready(const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  ready_ = false;
  not_ready_ = why;
}

namespace {
std::atomic<int> g_retiring{0};  // workers being torn down on background threads
}  // namespace

void SandboxExecutor::retire(std::unique_ptr<WorkerProcess> w) {
  if (!w) return;
  if (w->alive()) {
    w->kill();
    if (w->wait_exit(100)) w->reap();
  }
  if (!w->alive() && !w->net_guard) return;  // gone: the rest of the teardown is quick
  // Still exiting, or a network guard whose thread may be inside a blocking call: the slot
  // and the job must not wait for that.
  ++g_retiring;
  std::thread([w = std::move(w)]() mutable {
    w->reap();
    w.reset();
    --g_retiring;
  }).detach();
}

void SandboxExecutor::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // stopped already (stop() then the destructor)
    stopping_ = true;
  }
  cancel_starts_ = true;
  cv_.notify_all();
  // Jobs in flight return by their deadline (+ grace) or on cancellation; wait for them, within
  // a bound: shutdown never waits without end on plugin code.
  const int64_t wait_by = proto::steady_ms() + opts_.kill_grace_ms + 5000;
  std::vector<Slot*> mine;
  std::unique_lock<std::mutex> lock(mu_);
  for (auto& s : slots_) {
    int64_t left = std::max<int64_t>(0, wait_by - proto::steady_ms());
    if (!cv_.wait_for(lock, std::chrono::milliseconds(left), [&] { return !s.busy; })) {
      log::warn("sandbox: a worker is still busy at shutdown; leaving it", {{"plugin", name_}});
      continue;
    }
    s.busy = true;  // ours now; nobody else takes a slot once stopping_
    mine.push_back(&s);
  }
  lock.unlock();
  // Every worker runs the plugin's shutdown at the same time; together they get 2 s.
  for (Slot* s : mine) {
    if (!s->w) continue;
    WorkerProcess& w = *s->w;
    w.enc.begin(proto::Type::shutdown);
    if (!proto::write_all_until(w.fd, w.enc.finish(), proto::steady_ms() + 200)) w.kill();
  }
  const int64_t exit_by = proto::steady_ms() + 2000;
  for (Slot* s : mine) {
    if (!s->w) continue;
    if (!s->w->wait_exit(std::max<int64_t>(0, exit_by - proto::steady_ms()))) s->w->kill();
    retire(std::move(s->w));
  }
  cgroup_->kill_all();  // anything left in the pool's cgroup
}

std::unique_ptr<WorkerProcess> SandboxExecutor::start_worker(ErrorKind* kind, std::string* err,
                                                             bool* init_refused,
                                                             const std::atomic<int>* job_cancel) {
  std::string scratch;
  try {
    scratch = detail::make_scratch_dir(opts_.scratch_root, name_, uid_, gid_);
  } catch (const std::exception& e) {
    *kind = ErrorKind::start_failure;
    *err = e.what();
    return nullptr;
  }
  const int64_t t0 = proto::steady_ms();
  // The pinned content (sealed memfd), never the path again: what was described is what runs.
  auto w =
      WorkerProcess::spawn(worker_path_, pin_ ? pin_->proc_path() : path_, opts_.max_frame, err);
  if (!w) {
    std::error_code ec;
    std::filesystem::remove_all(scratch, ec);
    *kind = ErrorKind::start_failure;
    return nullptr;
  }
  w->scratch = scratch;
  w->generation = generation_.load();
  w->output->configure(name_, opts_.output, opts_.log_observer);
  if (!w->join_cgroup(*cgroup_, err)) {  // before Init: no plugin code runs outside it
    *kind = ErrorKind::start_failure;
    return nullptr;
  }
  nlohmann::json init =
      detail::init_json("serve", path_, policy_, plugin_config_, scratch, uid_, gid_, opts_);
  init["uid_source"] = uid_source_;
  init["user_name"] = user_name_;
  init["plugin_name"] = name_;  // for the network guard's log lines
  init["socket_dirs"] = unix_socket_dirs(plugin_config_);
  // The pool's own starts stop at the runner's stop; a start for a job claimed for a slot goes
  // on through the shutdown grace, as the job would run on a warm worker, and stops with the job
  // (the engine asks it to once the grace is over).
  auto abort = job_cancel != nullptr
                   ? std::function<bool()>([job_cancel] { return job_cancel->load() != kNoCancel; })
                   : std::function<bool()>([this] { return cancel_starts_.load(); });
  nlohmann::json hello = w->handshake(init, opts_.start_timeout_ms, kind, err, abort);
  if (hello.is_null()) return nullptr;
  if (!hello.value("ok", false)) {
    // The worker's words (the plugin's init error): bounded before they reach logs and /readyz.
    std::string storage;
    std::string stage(bounds::cut(hello.value("stage", "start"), 64, storage));
    *init_refused = stage == "init";
    *kind = stage == "init" ? ErrorKind::unavailable : ErrorKind::start_failure;
    *err = stage + ": " +
           std::string(bounds::cut(hello.value("error", "unknown error"), 4096, storage));
    return nullptr;
  }
  counters_.workers_started++;
  // A start that waited on a lock or a loaded machine is as long as the next one may be; bounded
  // so that one very slow start does not keep a waiting job from a worker of its own for long.
  start_ms_ = std::clamp<int64_t>(proto::steady_ms() - t0, 1, 1000);
  std::vector<std::string> fresh;
  {
    std::lock_guard<std::mutex> lock(mu_);
    layers_ = hello.value("layers", nlohmann::json::object());
    layers_["cgroup"] = cgroup_->report();
    nlohmann::json warnings = hello.value("warnings", nlohmann::json::array());
    for (const auto& h : host_warnings_) warnings.push_back(h);
    for (const auto& wmsg : warnings) {
      if (wmsg.is_string() && warned_.insert(wmsg.get<std::string>()).second) {
        fresh.push_back(wmsg.get<std::string>());
      }
    }
  }
  for (const auto& wmsg : fresh) {
    say(log::Level::warn, "sandbox layer degraded", {{"warning", wmsg}});
  }
  return w;
}

void SandboxExecutor::note_abnormal_locked(int64_t now) {
  abnormal_.push_back(now);
  int64_t window = static_cast<int64_t>(opts_.crash_loop_window_seconds * 1000);
  while (!abnormal_.empty() && abnormal_.front() < now - window) abnormal_.pop_front();
  ++consecutive_failures_;
  int shift = std::min(consecutive_failures_ - 1, 20);
  next_spawn_ms_ =
      now + std::min(opts_.respawn_backoff_initial_ms << shift, opts_.respawn_backoff_max_ms);
  if (static_cast<int>(abnormal_.size()) >= opts_.crash_loop_limit && quarantined_until_ <= now) {
    quarantined_until_ = now + static_cast<int64_t>(opts_.quarantine_seconds * 1000);
    counters_.quarantines++;
    nlohmann::json f = {{"plugin", name_},
                        {"failures", abnormal_.size()},
                        {"window_seconds", opts_.crash_loop_window_seconds},
                        {"quarantine_seconds", opts_.quarantine_seconds}};
    abnormal_.clear();
    kill_pool_locked();
    log::error("plugin quarantined: its workers keep dying; its jobs stay queued", f);
    if (opts_.log_observer) {
      opts_.log_observer(log::Level::error,
                         "plugin quarantined: its workers keep dying; its jobs stay queued", f);
    }
  }
}

void SandboxExecutor::kill_pool_locked() {
  generation_.fetch_add(1);
  for (auto& s : slots_) {
    if (!s.busy && s.w) s.w.reset();  // SIGKILL and reap; busy ones die by the cgroup kill
  }
  cgroup_->kill_all(500);
}

void SandboxExecutor::worker_died(Slot* s, Restart why, ErrorKind kind, const std::string& text,
                                  bool abnormal) {
  counters_.restarts[static_cast<int>(why)]++;
  pid_t pid = s->w ? s->w->pid : -1;
  retire(std::move(s->w));
  if (abnormal) {
    std::lock_guard<std::mutex> lock(mu_);
    note_abnormal_locked(proto::steady_ms());
  }
  say(abnormal ? log::Level::error : log::Level::warn, "sandbox worker replaced",
      {{"reason", restart_name(why)},
       {"error_kind", to_string(kind)},
       {"error", text},
       {"pid", pid}});
}

SandboxExecutor::Slot* SandboxExecutor::acquire(jr_job_ctx& ctx, int64_t deadline,
                                                ExecOutcome& out) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    int64_t now = proto::steady_ms();
    if (stopping_) {
      out.release = true;
      out.host_error = "the sandbox is shutting down";
      return nullptr;
    }
    if (quarantined_until_ > now) {
      lock.unlock();
      counters_.released_quarantined++;
      int64_t until = now + static_cast<int64_t>(opts_.quarantine_release_delay_seconds * 1000);
      while (proto::steady_ms() < until && ctx.cancel.load() == kNoCancel) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      out.release = true;
      out.host_error_kind = ErrorKind::unavailable;
      out.host_error = "plugin " + name_ + " is quarantined after repeated worker crashes";
      return nullptr;
    }
    // Prefer a warm worker. An empty place starts one at once while the pool is below its warm
    // size (a worker died or was recycled), otherwise once every busy worker has been on its
    // current jobs as long as a start takes. Jobs that slow free no worker sooner than a new
    // one starts; short jobs keep the warm workers turning over, and more workers would only
    // be more processes sharing the same CPUs (measured: 50 places of no-op jobs on 2 CPUs
    // drained slower when the pool grew while they waited, and slower still started whole).
    Slot* empty = nullptr;
    Slot* warm = nullptr;
    int occupied = 0, in_use = 0;
    int64_t youngest = std::numeric_limits<int64_t>::max();  // the most recent taking's age
    for (auto& s : slots_) {
      if (s.busy) {
        ++occupied;
        youngest = std::min(youngest, now - s.busy_since);
      } else if (s.w) {
        if (warm == nullptr) warm = &s;
      } else if (empty == nullptr) {
        empty = &s;
      }
      if (s.busy || s.w) ++in_use;
    }
    in_use_.store(in_use, std::memory_order_relaxed);
    if (warm != nullptr) {
      warm->busy = true;
      warm->busy_since = now;
      return warm;
    }
    int64_t grow_in = 0;
    if (empty != nullptr) {
      grow_in = occupied < warm_ ? 0 : start_ms_.load() - youngest;
      // A job claimed for a slot of the runner runs within the shutdown grace like a started
      // one (it would have had a worker of its own in a pool started whole): a stop does not
      // send it back while the pool has room.
      if (grow_in <= 0 || ctx.cancel.load() == kCancelShutdown) {
        empty->busy = true;
        empty->busy_since = now;
        in_use_.store(in_use + 1, std::memory_order_relaxed);
        return empty;
      }
    }
    int c = ctx.cancel.load();
    if (c != kNoCancel || (deadline > 0 && now >= deadline)) {
      if (c == kCancelShutdown) {
        out.release = true;
      } else if (c == kCancelUser) {
        out.host_error_kind = ErrorKind::cancelled;
        out.host_error = "cancelled while waiting for a sandbox worker";
      } else {
        out.host_error_kind = ErrorKind::timeout;
        out.host_error = "no sandbox worker became free before the job's deadline";
      }
      return nullptr;
    }
    int64_t tick = empty != nullptr ? std::clamp<int64_t>(grow_in, 1, kTickMs) : kTickMs;
    cv_.wait_for(lock, std::chrono::milliseconds(tick));
  }
}

void SandboxExecutor::release(Slot* s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    s->busy = false;
  }
  cv_.notify_one();
}

bool SandboxExecutor::ensure_worker(Slot* s, jr_job_ctx& ctx, ExecOutcome& out) {
  if (s->w) return true;
  int64_t not_before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    not_before = next_spawn_ms_;
  }
  while (proto::steady_ms() < not_before) {  // respawn backoff
    if (ctx.cancel.load() != kNoCancel) {
      out.release = true;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::clamp<int64_t>(not_before - proto::steady_ms(), 1, kTickMs)));
  }
  ErrorKind kind = ErrorKind::start_failure;
  std::string err;
  bool refused = false;
  try {
    s->w = start_worker(&kind, &err, &refused, &ctx.cancel);
  } catch (const std::exception& e) {  // a hello with fields of the wrong types
    kind = ErrorKind::protocol;
    err = std::string("malformed hello from the worker: ") + e.what();
  }
  if (s->w) return true;
  if (cancel_starts_ || ctx.cancel.load() != kNoCancel) {
    // Stopped while starting (the executor stops, or the job was): no fault of the plugin's.
    out.release = true;
    out.host_error = "the sandbox is stopping";
    return false;
  }
  counters_.restarts[static_cast<int>(Restart::start_failure)]++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    note_abnormal_locked(proto::steady_ms());
  }
  say(log::Level::error, "sandbox worker failed to start; the job goes back to the queue",
      {{"error_kind", to_string(kind)}, {"error", err}});
  if (refused) not_ready("init failed: " + (err.rfind("init: ", 0) == 0 ? err.substr(6) : err));
  out.release = true;  // not the job's fault: no attempt used
  out.host_error_kind = kind;
  out.host_error = "sandbox worker failed to start: " + err;
  return false;
}

namespace {

// A Job frame's size, for kAheadBytes (before it is encoded).
size_t job_frame_bytes(const jr_job& job, const jr_job_ctx& ctx) {
  return std::strlen(job.kind) + std::strlen(job.queue) + job.payload_len + ctx.traceparent.size() +
         96;
}

// Whether its frame would pass the frame limit (with room for the fixed fields).
bool fits_frame(const jr_job& job, uint32_t max_frame) {
  return std::strlen(job.kind) + std::strlen(job.queue) + job.payload_len + 256 <= max_frame;
}

}  // namespace

void SandboxExecutor::serve(proto::Type type, std::vector<Item>& items, BatchSink* sink) {
  ExecOutcome waited;
  begin_item(items[0], sink);  // waiting for a worker counts towards the first one's deadline
  const auto wait_from = std::chrono::steady_clock::now();
  Slot* s = acquire(*items[0].ctx, items[0].deadline, waited);
  items[0].waited_us = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - wait_from)
                           .count();
  size_t i = 0;
  if (s != nullptr) {
    while (i < items.size()) {
      if (i > 0) {
        // Between workers (one died of the job before): a quarantine or a stop ends the batch.
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ || quarantined_until_ > proto::steady_ms()) break;
      }
      if (items[i].allowed < 0) break;  // the engine is stopping
      if (i > 0 && sink != nullptr && !sink->may_send(items[i].index)) {
        break;  // asked again: its frame was on a worker that is gone, and the engine may stop
      }
      ExecOutcome out;
      if (!ensure_worker(s, *items[i].ctx, out)) {
        items[i].out = std::move(out);
        finish_item(items[i], sink);
        ++i;
        break;
      }
      i = exchange(s, type, items, i, sink);
    }
    release(s);
  } else {
    items[0].out = std::move(waited);
    finish_item(items[0], sink);
    i = 1;
  }
  // Not started: back to the queue, no attempt used.
  for (; i < items.size(); ++i) {
    items[i].out = ExecOutcome{};
    items[i].out.release = true;
    finish_item(items[i], sink);
  }
}

ExecOutcome SandboxExecutor::run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline) {
  if (!fits_frame(job, opts_.max_frame)) {
    ExecOutcome out;
    std::lock_guard<std::mutex> lock(ctx.mu);
    ctx.error = "payload of " + std::to_string(job.payload_len) +
                " bytes exceeds the sandbox frame limit of " + std::to_string(opts_.max_frame);
    out.status = JR_ERR_PERMANENT;
    return out;
  }
  std::vector<Item> items(1);
  items[0].job = &job;
  items[0].ctx = &ctx;
  items[0].deadline = deadline;
  items[0].frame_bytes = job_frame_bytes(job, ctx);
  serve(proto::Type::job, items, nullptr);
  return std::move(items[0].out);
}

void SandboxExecutor::run_batch(const std::vector<BatchJob>& jobs, BatchSink& sink) {
  std::vector<Item> items;
  items.reserve(jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    const BatchJob& b = jobs[i];
    size_t bytes = job_frame_bytes(*b.job, *b.ctx);
    if (!fits_frame(*b.job, opts_.max_frame)) {  // never sent: fails at once, as run() does
      sink.started(i, proto::steady_ms());
      ExecOutcome out;
      {
        std::lock_guard<std::mutex> lock(b.ctx->mu);
        b.ctx->error = "payload of " + std::to_string(b.job->payload_len) +
                       " bytes exceeds the sandbox frame limit of " +
                       std::to_string(opts_.max_frame);
      }
      out.status = JR_ERR_PERMANENT;
      sink.finished(i, std::move(out));
      continue;
    }
    Item it;
    it.job = b.job;
    it.ctx = b.ctx;
    it.index = i;
    it.timeout_ms = b.timeout_ms;
    it.frame_bytes = bytes;
    items.push_back(std::move(it));
  }
  if (!items.empty()) serve(proto::Type::job, items, &sink);
}

void SandboxExecutor::account(const ExecOutcome& out, const jr_job& job) {
  std::optional<ErrorKind> kind = out.host_error_kind;
  if (!kind && !out.release && (out.status == JR_ERR_RETRYABLE || out.status == JR_ERR_PERMANENT)) {
    kind = ErrorKind::error;
  }
  if (!kind) return;
  for (int i = 0; i < kFailureKindCount; ++i) {
    if (*kind == kFailureKinds[i]) counters_.failures[i]++;
  }
  if (*kind == ErrorKind::error || out.release) return;  // the engine logs plugin-reported failures
  say(log::Level::warn, "sandboxed job failed",
      {{"job_id", job.id},
       {"kind", job.kind},
       {"error_kind", to_string(*kind)},
       {"error", out.host_error}});
}

int32_t SandboxExecutor::idle(jr_job_ctx& ctx, int64_t deadline) {
  ExecOutcome out;
  return idle_until(ctx, deadline, &out);
}

int32_t SandboxExecutor::idle_until(jr_job_ctx& ctx, int64_t deadline, ExecOutcome* out) {
  *out = ExecOutcome{};
  if (!has_idle_) return -1;
  std::vector<Item> items(1);
  items[0].ctx = &ctx;
  items[0].deadline = deadline;
  serve(proto::Type::idle, items, nullptr);
  *out = std::move(items[0].out);
  return !out->host_error_kind && !out->release ? out->status : -1;
}

std::string SandboxExecutor::recycle_reason(const WorkerProcess& w, bool oom) const {
  if (oom) return "an allocation failed (the heap may be exhausted)";
  if (policy_.max_jobs > 0 && w.jobs >= policy_.max_jobs) {
    return "ran max_jobs = " + std::to_string(policy_.max_jobs) + " jobs";
  }
  if (policy_.max_rss_mb > 0 && w.maxrss_kb > policy_.max_rss_mb * 1024) {
    return "peak RSS " + std::to_string(w.maxrss_kb / 1024) +
           " MB above max_rss_mb = " + std::to_string(policy_.max_rss_mb);
  }
  if (policy_.cpu_seconds > 0 && w.cpu_us > policy_.cpu_seconds * 1e6) {
    return "used more than one cpu_seconds budget";
  }
  return "";
}

void SandboxExecutor::maybe_recycle(Slot* s, bool oom) {
  WorkerProcess& w = *s->w;
  std::string why = recycle_reason(w, oom);
  if (why.empty()) return;
  w.enc.begin(proto::Type::shutdown);
  if (!proto::write_all_until(w.fd, w.enc.finish(), proto::steady_ms() + 1000) ||
      !w.wait_exit(1000)) {
    w.kill();
  }
  Restart r = oom ? Restart::oom : Restart::recycle;
  counters_.restarts[static_cast<int>(r)]++;
  say(log::Level::info, "sandbox worker recycled",
      {{"reason", restart_name(r)}, {"why", why}, {"pid", w.pid}, {"jobs", w.jobs}});
  retire(std::move(s->w));
}

}  // namespace jr::sandbox
