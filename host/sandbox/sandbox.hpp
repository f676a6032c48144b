// Sandboxed plugin execution: the public surface the host uses (see README.md for wiring).
//
//   describe_in_sandbox(path)   what load_plugin() returns (name, version, kinds, manifest),
//                               read by a confined jr-worker: the plugin's constructors never run
//                               in the host process.
//   make_executor(plugin, cfg)  an Executor that runs the plugin's jobs in a pool of warm,
//                               confined worker processes (one job per worker at a time).
//   cmd_plugins_check(file)     `runner plugins check FILE`.
//
// Ownership: a SandboxExecutor owns its workers; stop() (or the destructor) shuts them down.
// Threading: run()/idle() may be called concurrently (the engine's slot threads); start(),
// stop() from one thread; counters may be read from any thread.
#pragma once

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

#include "executor.hpp"
#include "log.hpp"
#include "plugin_loader.hpp"
#include "policy.hpp"
#include "protocol.hpp"
#include "worker_output.hpp"

namespace jr::sandbox {

class PluginCgroup;

class SandboxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SandboxOptions {
  std::string worker_path;  // "" = $JR_WORKER, else jr-worker next to /proc/self/exe, else build
  int pool_size = 1;        // workers per plugin (its concurrency share); policy "workers" wins
  uint32_t max_frame = proto::kDefaultMaxFrame;
  int64_t kill_grace_ms = 1000;                 // deadline or cancel -> SIGKILL after this long
  int64_t start_timeout_ms = 30000;             // load + init of the plugin in a new worker
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
Restart restart_for_kind(const std::string& error_kind);  // crash for unknown kinds

// Failed attempts by error kind ("error" = the plugin reported a failure itself).
constexpr const char* kFailureKinds[] = {"error",   "crash",    "seccomp",   "oom",
                                         "timeout", "protocol", "cancelled", "unavailable"};
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

// "sandbox" (the default) or "none" (in-process): the host config section's "isolation" wins
// over the manifest's. Throws SandboxError on any other value.
std::string isolation_of(const LoadedPlugin& plugin, const nlohmann::json& plugin_config);

class SandboxExecutor final : public Executor {
 public:
  SandboxExecutor(const LoadedPlugin& plugin, nlohmann::json plugin_config, Policy policy,
                  SandboxOptions opts);
  ~SandboxExecutor() override;

  // Starts the pool's workers (load + init of the plugin in each). Throws SandboxError when the
  // first worker cannot start (bad plugin, init refused): the in-process path fails the same way.
  void start();
  // Asks idle workers to shut down (the plugin's shutdown runs), waits for running jobs to
  // return, then kills what is left. Later run() calls release their jobs.
  void stop();

  ExecOutcome run(const jr_job& job, jr_job_ctx& ctx, int64_t deadline_steady_ms) override;
  // The plugin's idle hook in a worker: its return value, or -1 (no hook, or the worker failed).
  int32_t idle(jr_job_ctx& ctx) override;
  // Same, with a deadline and the outcome (host_error_kind etc.) when the worker failed.
  int32_t idle_until(jr_job_ctx& ctx, int64_t deadline_steady_ms, ExecOutcome* out);

  bool has_idle() const { return has_idle_; }
  const Policy& policy() const { return policy_; }
  const Counters& counters() const { return counters_; }
  nlohmann::json layers() const;  // the layers the last started worker reported
  // The pool's cgroup (tests, `plugins check`); inert when cgroups are unavailable.
  const PluginCgroup& cgroup() const { return *cgroup_; }
  int64_t uid() const { return uid_; }
  bool quarantined() const;
  int pool_size() const { return static_cast<int>(slots_.size()); }

 private:
  struct Slot {
    std::unique_ptr<class WorkerProcess> w;
    bool busy = false;
  };
  struct Attempt;
  Slot* acquire(jr_job_ctx& ctx, int64_t deadline, ExecOutcome& out);
  void release(Slot* s);
  bool ensure_worker(Slot* s, jr_job_ctx& ctx, ExecOutcome& out);
  std::unique_ptr<WorkerProcess> start_worker(std::string* kind, std::string* err,
                                              bool* init_refused);
  ExecOutcome exchange(Slot* s, proto::Type type, const jr_job* job, jr_job_ctx& ctx,
                       int64_t deadline);
  void worker_died(Slot* s, Restart why, const std::string& kind, const std::string& text,
                   bool abnormal);
  void maybe_recycle(Slot* s, bool oom);
  void note_abnormal_locked(int64_t now);
  void kill_pool_locked();  // quarantine: every worker goes (cgroup kill)
  void say(log::Level l, const std::string& msg, nlohmann::json fields);
  void account(const ExecOutcome& out, const jr_job& job);

  std::string name_;
  std::string path_;
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
  Counters counters_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;       // guarded by mu_ (busy flags; w owned by the holder)
  std::deque<int64_t> abnormal_;  // steady ms of recent abnormal deaths
  int consecutive_failures_ = 0;  // for the respawn backoff
  int64_t next_spawn_ms_ = 0;
  int64_t quarantined_until_ = 0;
  bool stopping_ = false;
  nlohmann::json layers_;
  std::set<std::string> warned_;  // degraded-layer warnings already logged
  bool has_idle_ = false;
};

// The effective policy of `plugin` given its host config section (which may hold "sandbox").
Policy policy_for(const LoadedPlugin& plugin, const nlohmann::json& plugin_config);

std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config,
                                               const SandboxOptions& opts);

// What load_plugin(path) returns, computed inside a confined worker (desc and state stay null;
// `path` is the file). Throws PluginError, like load_plugin, when the plugin is refused or its
// worker dies while loading it.
LoadedPlugin describe_in_sandbox(const std::string& path, const SandboxOptions& opts = {});
// The sandboxed counterpart of load_plugin_dir (same ordering and duplicate checks).
std::vector<LoadedPlugin> describe_dir_in_sandbox(const std::string& dir,
                                                  const SandboxOptions& opts = {});
// Same as describe_in_sandbox, also returning the worker's hello (layers, warnings).
LoadedPlugin describe_with_report(const std::string& path, const Policy& policy,
                                  const SandboxOptions& opts, nlohmann::json* hello);

// `runner plugins check FILE [--json]`: loads FILE in the sandbox and prints its descriptor, the
// effective policy (manifest + [plugins.<name>.sandbox] in `config_sections`) and the layers a
// worker with that policy applied. Returns the process exit code (0 ok, 1 refused).
int cmd_plugins_check(const std::string& file, const nlohmann::json& config_sections, bool json);

// The jr-worker binary this process would start.
std::string default_worker_path();

}  // namespace jr::sandbox
