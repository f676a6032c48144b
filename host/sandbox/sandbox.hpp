// Sandboxed plugin execution: the public surface the host uses (see README.md for wiring).
//
//   describe_in_sandbox(path)   what load_plugin() returns (name, version, kinds, manifest),
//                               read by a confined jr-worker: the plugin's constructors never run
//                               in the host process. The file is pinned first (plugin_pin.hpp):
//                               every later worker runs exactly the described content.
//   describe_dir(dir)           every plugin of a directory, in parallel, each with a deadline;
//                               a bad plugin is refused (with its reason), never fatal.
//   decide_for(plugin, ctx)     the trust decision (policy.hpp): requested / granted / effective.
//   make_executor(plugin, cfg)  an Executor that runs the plugin's jobs in a pool of warm,
//                               confined worker processes (one job per worker at a time).
//   cmd_plugins_check(file)     `runner plugins check FILE`, and the other `plugins` commands.
//
// Ownership: a SandboxExecutor owns its workers; stop() (or the destructor) shuts them down.
// Threading: run()/idle() may be called concurrently (the engine's slot threads); start(),
// stop() from one thread; counters may be read from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "approvals.hpp"
#include "error_kind.hpp"
#include "executor.hpp"
#include "log.hpp"
#include "plugin_loader.hpp"
#include "policy.hpp"
#include "protocol.hpp"
#include "worker_output.hpp"

namespace jr {
struct Config;
}

namespace jr::sandbox {

class PluginCgroup;

class SandboxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SandboxOptions {
  std::string worker_path;  // "" = $JR_WORKER, else jr-worker next to /proc/self/exe, else build
  int pool_size = 1;        // workers per plugin (its concurrency share); policy "workers" wins
  // Workers started with the pool (at most pool_size; 0 = as many as CPUs). The others start
  // when a job has waited for a free worker as long as the last worker's start took: a new
  // worker pays off only then, and no-op jobs keep a small pool busy instead of many idle.
  int warm_workers = 0;
  uint32_t max_frame = proto::kDefaultMaxFrame;
  int64_t kill_grace_ms = 1000;                 // deadline or cancel -> SIGKILL after this long
  int batch_limit = 16;                         // jobs per run_batch (Executor::batch_limit)
  int64_t start_timeout_ms = 30000;             // load + init of the plugin in a new worker
  int64_t describe_timeout_ms = 10000;          // describing a plugin (its constructors run)
  uint32_t describe_max_frame = 1 << 20;        // the describe hello (descriptor) at most
  int describe_parallel = 8;                    // plugins described at once
  int crash_loop_limit = 5;                     // abnormal worker deaths ...
  double crash_loop_window_seconds = 60;        // ... within this window quarantine the plugin ...
  double quarantine_seconds = 300;              // ... for this long (its jobs stay queued)
  double quarantine_release_delay_seconds = 1;  // pause before handing back a quarantined job
  int64_t respawn_backoff_initial_ms = 100;
  int64_t respawn_backoff_max_ms = 5000;
  std::string scratch_root;  // per-worker scratch dirs live here ("" = $TMPDIR or /tmp)
  std::string user;          // uid for workers when the host is root ("" = one per plugin)
  // describe_with_report: give the worker the uid (and a cgroup named after) this plugin
  // rather than the describe uid (`plugins check`, once the name is known).
  std::string describe_as;
  OutputLimits output;  // bounds on what a worker writes to stdout/stderr (worker_output.hpp)
  std::vector<std::string> simulate_missing;  // tests: pretend the kernel lacks these layers
  // Tests: sees every log line the sandbox writes (after it went to the log).
  std::function<void(log::Level, const std::string&, const nlohmann::json&)> log_observer;
};

// Why a worker was replaced.
enum class Restart { crash, seccomp, oom, timeout, protocol, cancelled, recycle, start_failure };
constexpr int kRestartReasons = 8;
const char* restart_name(Restart r);
Restart restart_for_kind(ErrorKind error_kind);  // crash for unknown kinds

// Failed attempts by error kind ("error" = the plugin reported a failure itself).
constexpr ErrorKind kFailureKinds[] = {
    ErrorKind::error,   ErrorKind::crash,    ErrorKind::seccomp,   ErrorKind::oom,
    ErrorKind::timeout, ErrorKind::protocol, ErrorKind::cancelled, ErrorKind::unavailable};
constexpr int kFailureKindCount = 8;

struct Counters {
  std::atomic<uint64_t> workers_started{0};
  std::atomic<uint64_t> jobs{0};
  std::atomic<uint64_t> quarantines{0};
  std::atomic<uint64_t> released_quarantined{0};  // jobs handed back while quarantined
  std::atomic<uint64_t> restarts[kRestartReasons] = {};
  std::atomic<uint64_t> failures[kFailureKindCount] = {};
  uint64_t failures_for(const std::string& kind) const;
  uint64_t restarts_for(Restart r) const { return restarts[static_cast<int>(r)].load(); }
  nlohmann::json to_json() const;
};

// What the operator decided, for decide_for(): the config's [plugins.*] sections, the runner-wide
// isolation, the approvals file, the pool size (a plugin asking for more workers needs a grant).
struct TrustContext {
  nlohmann::json sections = nlohmann::json::object();
  std::string host_isolation = "sandbox";
  Approvals approvals;
  std::string approvals_file;  // where `approvals` came from ("" = none read)
  int default_workers = 1;
  // The runner's DATABASE_URL ("" = its managed cluster): a plugin granted a database gets the
  // same server, so `plugins check` shows the network grant derived from it.
  std::string database_url;
};

// The TrustContext of a runner configuration: its [plugins.*] sections, isolation, and approvals
// file (an unreadable or unsafe approvals file is logged as an error and ignored: plugins that
// need an approval are then refused, nothing else changes).
TrustContext trust_context(const Config& cfg, int default_workers);

// The trust decision for a described (pinned) plugin: its manifest's requests against the
// operator's config section, an approval of (name, sha256), a built-in approval and the defaults.
// `plugin_config` resolves config-key paths (null: its config section).
TrustDecision decide_for(const LoadedPlugin& plugin, const TrustContext& ctx,
                         const nlohmann::json& plugin_config = nullptr);

// "sandbox" (the default) or "none" (in-process), as decide_for() with only the built-in
// approvals and `plugin_config` as the plugin's config section decides it: "none" comes from the
// config only. Throws SandboxError on a bad config value.
std::string isolation_of(const LoadedPlugin& plugin, const nlohmann::json& plugin_config);

class SandboxExecutor final : public Executor {
 public:
  SandboxExecutor(const LoadedPlugin& plugin, nlohmann::json plugin_config, Policy policy,
                  SandboxOptions opts);
  ~SandboxExecutor() override;

  // Starts the pool's workers (load + init of the plugin in each). Throws SandboxError when no
  // worker can start (bad plugin, init refused). The runner uses start_plugin() instead.
  void start();
  // Asks idle workers to shut down (the plugin's shutdown runs), waits a bounded time for running
  // jobs to return, then kills what is left. Later run() calls release their jobs.
  void stop();

  ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline_steady_ms) override;
  // Several jobs on one worker: the frames of the next ones wait in the worker's socket while
  // one runs (at most kAheadBytes of them), so a short job costs no round trip and no sleep of
  // the worker between jobs. Each job still has its own deadline (from its start), its own
  // cancellation and its own outcome; jobs not yet started when the worker dies (of the current
  // job) run on its replacement.
  size_t batch_limit() const override { return static_cast<size_t>(opts_.batch_limit); }
  // The places with a worker or taken (a start for a job counts): what runs at once now.
  size_t parallelism() const override {
    return static_cast<size_t>(std::max(1, in_use_.load(std::memory_order_relaxed)));
  }
  void run_batch(const std::vector<BatchJob>& jobs, BatchSink& sink) override;
  // The plugin's idle hook in a worker: its return value, or -1 (no hook, or the worker failed).
  // The worker is killed at the deadline (0 = none) or once ctx.cancel is set (+ kill grace).
  int32_t idle(jr_job_ctx& ctx, int64_t deadline_steady_ms) override;
  // Same, with the outcome (host_error_kind etc.) when the worker failed.
  int32_t idle_until(jr_job_ctx& ctx, int64_t deadline_steady_ms, ExecOutcome* out);

  // Starts workers in the free empty slots; true (ready) once at least one worker runs the
  // plugin, false with the reason (init refused, worker failed to start) otherwise. Never throws.
  bool start_plugin(std::string* why) override;
  // False before the first worker started, and again after a new worker's init was refused
  // (until start_plugin() succeeds).
  bool ready(std::string* why) const override;
  bool can_stop_calls() const override { return true; }
  // Kills a worker that is still loading the plugin (constructor or init), within 100 ms.
  void cancel_starts() override { cancel_starts_ = true; }

  bool has_idle() const { return has_idle_; }
  const Policy& policy() const { return policy_; }
  const Counters& counters() const { return counters_; }
  nlohmann::json layers() const;  // the layers the last started worker reported
  // The pool's cgroup (tests, `plugins check`); inert when cgroups are unavailable.
  const PluginCgroup& cgroup() const { return *cgroup_; }
  int64_t uid() const { return uid_; }
  bool quarantined() const;
  int pool_size() const { return static_cast<int>(slots_.size()); }
  int warm_workers() const { return warm_; }

 private:
  struct Slot {
    std::unique_ptr<class WorkerProcess> w;
    bool busy = false;
    int64_t busy_since = 0;  // steady ms when its holder took it (acquire)
  };
  // One job (or the idle call) of an exchange with a worker.
  struct Item {
    const jr_job* job = nullptr;  // null: the idle call
    jr_job_ctx* ctx = nullptr;
    size_t index = 0;            // in the caller's batch
    int64_t timeout_ms = 0;      // counted from its start (0 = none) ...
    int64_t deadline = 0;        // ... or a steady-clock deadline set by the caller (0 = none)
    bool started = false;        // BatchSink::started() was called
    int allowed = 0;             // BatchSink::may_send(): 0 not asked yet, 1 yes, -1 no
    uint64_t seq = 0;            // its frame's sequence number on the current worker
    bool cancel_marked = false;  // its cancellation is in the worker's cancel_ahead
    bool recalled = false;       // sent ahead to a worker due for replacement: called back
    size_t frame_bytes = 0;      // its Job frame's size
    int64_t waited_us = 0;       // waiting for a worker (the first item of a serve)
    ExecOutcome out;
  };
  // Outstanding Job frames beyond the running one stay under this many bytes, well inside a
  // socket's send buffer: writing them never blocks the exchange, which must keep reading.
  static constexpr size_t kAheadBytes = 64 * 1024;
  Slot* acquire(jr_job_ctx& ctx, int64_t deadline, ExecOutcome& out);
  void release(Slot* s);
  bool ensure_worker(Slot* s, jr_job_ctx& ctx, ExecOutcome& out);
  // job_cancel: the start is for that job (on demand), else for the pool (start_plugin).
  std::unique_ptr<WorkerProcess> start_worker(ErrorKind* kind, std::string* err, bool* init_refused,
                                              const std::atomic<int>* job_cancel = nullptr);
  // Serves items (all of `type`) on pool workers, replacing a worker that dies between them.
  void serve(proto::Type type, std::vector<Item>& items, BatchSink* sink);
  // Runs items[from..] on s's worker until all have an outcome or the worker is gone; returns
  // the first item without an outcome (sent ones that had not started go again).
  size_t exchange(Slot* s, proto::Type type, std::vector<Item>& items, size_t from,
                  BatchSink* sink);
  void begin_item(Item& it, BatchSink* sink);
  void finish_item(Item& it, BatchSink* sink);
  std::string recycle_reason(const WorkerProcess& w, bool oom) const;
  void worker_died(Slot* s, Restart why, ErrorKind kind, const std::string& text, bool abnormal);
  void maybe_recycle(Slot* s, bool oom);
  // Tears a worker down without waiting on it: killed and reaped here when that is quick,
  // otherwise (still exiting, or a network guard to stop) on a background thread.
  void retire(std::unique_ptr<WorkerProcess> w);
  void not_ready(const std::string& why);
  void note_abnormal_locked(int64_t now);
  void kill_pool_locked();  // quarantine: every worker goes (cgroup kill)
  void say(log::Level l, const std::string& msg, nlohmann::json fields);
  void account(const ExecOutcome& out, const jr_job& job);

  std::string name_;
  std::string path_;
  std::shared_ptr<const PinnedFile> pin_;  // workers load this content (null: path_, tests only)
  nlohmann::json plugin_config_;
  Policy policy_;
  SandboxOptions opts_;
  std::string worker_path_;
  int64_t uid_ = -1, gid_ = -1;
  std::string uid_source_;                  // how uid_ was chosen (identity.hpp)
  std::string user_name_;                   // its name in the workers\' /etc/passwd
  std::vector<std::string> host_warnings_;  // degraded host-side layers (uid, cgroup)
  std::shared_ptr<PluginCgroup> cgroup_;    // the pool's cgroup (inert when unavailable)
  // Bumped when the whole pool is killed (quarantine): a worker of an older generation that
  // dies during a job was killed with the pool, and its job is released.
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> cancel_starts_{false};  // shutdown: stop workers still loading the plugin
  Counters counters_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;     // guarded by mu_ (busy flags; w owned by the holder)
  int warm_ = 1;                // workers started with the pool (SandboxOptions::warm_workers)
  std::atomic<int> in_use_{1};  // places with a worker or taken, as the last acquire() saw them
  // How long the last worker took to start (spawn to hello), the wait after which a job that
  // finds every worker busy starts one of its own.
  std::atomic<int64_t> start_ms_{20};
  std::deque<int64_t> abnormal_;  // steady ms of recent abnormal deaths
  int consecutive_failures_ = 0;  // for the respawn backoff
  int64_t next_spawn_ms_ = 0;
  int64_t quarantined_until_ = 0;
  bool stopping_ = false;
  nlohmann::json layers_;
  std::set<std::string> warned_;  // degraded-layer warnings already logged
  bool has_idle_ = false;
  bool ready_ = false;                  // guarded by mu_
  std::string not_ready_ = "starting";  // guarded by mu_
};

// The effective policy of `plugin` given its host config section (which may hold "sandbox"),
// decided with the built-in approvals only (tests, benches). Throws PolicyError naming every
// refused request.
Policy policy_for(const LoadedPlugin& plugin, const nlohmann::json& plugin_config);

// With policy_for()'s decision (throws PolicyError when the plugin is refused).
std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config,
                                               const SandboxOptions& opts);
// With a policy decided by the caller (decide_for + TrustDecision::resolve).
std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config, Policy policy,
                                               const SandboxOptions& opts);

// What load_plugin(path) returns, computed inside a confined worker (desc and state stay null;
// `path` is the file; `pin` and `sha256` are set). Throws PluginError, like load_plugin, when the
// plugin is refused or its worker dies (or misses opts.describe_timeout_ms) while loading it.
LoadedPlugin describe_in_sandbox(const std::string& path, const SandboxOptions& opts = {});
// Describes pinned content in a worker confined by `policy`; `hello` (may be null) receives the
// worker's hello (layers, warnings). Everything the worker says is validated and bounded.
LoadedPlugin describe_pinned(const std::shared_ptr<const PinnedFile>& pin, const Policy& policy,
                             const SandboxOptions& opts, nlohmann::json* hello);

struct DescribedDir {
  std::vector<LoadedPlugin> plugins;   // described, in file name order; names and kinds unique
  std::vector<RefusedPlugin> refused;  // with the reasons, in file name order
};
// Every *.so in `dir`, pinned and described in parallel (opts.describe_parallel at once), each
// within opts.describe_timeout_ms (then its worker is killed). A plugin that cannot be pinned or
// described, or whose name or a kind is also claimed by another file, is refused (every claimant
// of a contested name or kind: none of them can be trusted to own it). Throws PluginError only
// when `dir` is not a directory.
DescribedDir describe_dir(const std::string& dir, const SandboxOptions& opts = {});

// `runner plugins check FILE [--json]`: describes FILE in the sandbox and prints its descriptor,
// sha256, what its manifest requests, what is granted (and by which layer), the effective policy,
// the worker's uid and the layers a worker with that policy applied. Exit code 0 when the plugin
// would be accepted, 1 when refused.
int cmd_plugins_check(const std::string& file, const TrustContext& ctx, bool json);
// `runner plugins ls DIR [--json]`: every plugin of DIR described in the sandbox (no plugin code
// runs in this process), with its sha256. Exit code 1 when any plugin was refused.
int cmd_plugins_ls(const std::string& dir, bool json);
// `runner plugins approve FILE [--yes] [--json]`: describes FILE, prints what it requests and
// records an approval of exactly that request for (name, sha256) in `approvals_file`. Asks for
// confirmation unless `yes`; refuses without --yes when stdin is not a terminal.
int cmd_plugins_approve(const std::string& file, const std::string& approvals_file, bool yes,
                        bool json);
// `runner plugins approvals ls [--json]` / `runner plugins approvals rm NAME [SHA256]`.
int cmd_plugins_approvals_ls(const std::string& approvals_file, bool json);
int cmd_plugins_approvals_rm(const std::string& approvals_file, const std::string& name,
                             const std::string& sha256);

// The jr-worker binary this process would start.
std::string default_worker_path();

}  // namespace jr::sandbox
