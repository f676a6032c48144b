// Header-only test harness for plugin authors. It runs a plugin's handler in-process with a
// payload and records what the plugin told the host: result, error text, snooze delay,
// progress, log lines, enqueued jobs and the outcome class. No database, no host library: the
// harness implements jr_host_api itself and talks to the plugin only through its descriptor.
//
//   auto h = jobrunner::testing::Harness::load(PLUGIN_PATH);      // the built .so (dlopen)
//   auto h = jobrunner::testing::Harness::of<MyPlugin>();          // a Plugin class directly
//   auto h = jobrunner::testing::Harness::from_entry(&jr_plugin_entry_v1);  // linked-in entry
//   auto r = h.run({{"name", "ada"}});
//   EXPECT_EQ(r.outcome, jobrunner::testing::Outcome::ok);
//
// The descriptor is validated like the host loader does (struct size, ABI major, names, kinds),
// and misuse of the ABI that the real host would not survive is recorded in
// RunResult::violations (a host function called after the call returned, a result that is not
// JSON, an unknown status code).
//
// Ownership: the harness owns the plugin state (init on construction, shutdown on destruction)
// and keeps a dlopen()ed library loaded for the life of the process, like the host.
// Threading: run() and idle() may be called from several threads at once (handle() must be
// thread-safe, as in production); host functions may be called from the plugin's own threads
// during a call. A Harness object itself must not be moved while a call is running.
#ifndef JOBRUNNER_TESTING_HPP
#define JOBRUNNER_TESTING_HPP

#include <dlfcn.h>
#include <jobrunner/abi.h>
#include <jobrunner/abi_validate.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <jobrunner/plugin.hpp>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace jobrunner::testing {

// What the host would do with the attempt.
enum class Outcome { ok, retryable, permanent, snooze, cancelled, invalid };

inline const char* to_string(Outcome o) {
  switch (o) {
    case Outcome::ok:
      return "ok";
    case Outcome::retryable:
      return "retryable";
    case Outcome::permanent:
      return "permanent";
    case Outcome::snooze:
      return "snooze";
    case Outcome::cancelled:
      return "cancelled";
    case Outcome::invalid:
      break;
  }
  return "invalid";
}
inline std::ostream& operator<<(std::ostream& os, Outcome o) { return os << to_string(o); }

struct LogLine {
  int32_t level = JR_LOG_INFO;  // jr_log_level
  std::string message;
};

struct ProgressUpdate {
  double percent = 0;  // clamped to [0, 100] as the host does
  std::string step;    // "" when the plugin passed NULL
};

struct EnqueuedJob {
  int64_t id = 0;  // the id the harness handed back
  std::string kind;
  nlohmann::json payload;  // parsed payload (a string holding the raw text if not JSON)
  nlohmann::json options;  // parsed options ({} when NULL)
};

// Everything one call did.
struct RunResult {
  Outcome outcome = Outcome::invalid;
  int32_t status = -1;      // raw return value of handle (or idle)
  bool has_result = false;  // set_result was called
  std::string result_text;  // last set_result text
  nlohmann::json result;    // result_text parsed (null when none)
  std::string error;        // last set_error text
  double snooze_seconds = 0;
  std::vector<ProgressUpdate> progress;
  std::vector<LogLine> logs;
  std::vector<EnqueuedJob> enqueued;
  int cancel_checks = 0;                // times the plugin asked is_cancelled
  std::vector<std::string> violations;  // ABI misuse seen during the call

  bool ok() const { return outcome == Outcome::ok; }
  // One line for assertion messages: "permanent: <error>".
  std::string describe() const {
    std::string s = to_string(outcome);
    if (!error.empty()) s += ": " + error;
    for (const auto& v : violations) s += " [violation: " + v + "]";
    return s;
  }
};

// The job handed to the plugin. Empty kind = the plugin's first kind; empty queue = the kind's
// default queue, else "default".
struct JobSpec {
  std::string kind;
  std::string queue;
  int64_t id = 0;  // 0 = a fresh id per run
  int32_t attempt = 1;
  int32_t max_attempts = 25;
  int64_t deadline_ms = 0;
  // -1: never cancelled; N >= 0: is_cancelled() answers 1 from check number N+1 onwards (0 =
  // cancellation already requested when the job starts).
  int cancel_after_checks = -1;
};

class HarnessError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Harness {
 public:
  // Validates the descriptor as the host loader does, then calls init with `config` (the
  // plugin's config section; the host adds database_url for a plugin whose manifest asks for a
  // database: add it yourself if you need one).
  explicit Harness(const jr_plugin_desc* desc,
                   const nlohmann::json& config = nlohmann::json::object())
      : s_(std::make_unique<State>()) {
    s_->desc = desc;
    validate();
    std::string cfg = config.dump();
    char err[1024] = {0};
    void* state = nullptr;
    int32_t rc = desc->init(&s_->api, cfg.c_str(), &state, err, sizeof err);
    if (rc != 0) {
      err[sizeof err - 1] = '\0';
      throw HarnessError("plugin " + s_->name + ": init failed: " +
                         (err[0] ? std::string(err) : "code " + std::to_string(rc)));
    }
    s_->state = state;
    s_->initialised = true;
  }

  // A jobrunner::Plugin class, through the same descriptor JOBRUNNER_PLUGIN(P) exports.
  template <class P>
  static Harness of(const nlohmann::json& config = nlohmann::json::object()) {
    return Harness(::jobrunner::detail::descriptor<P>(), config);
  }

  // An entry function linked into the test (e.g. &jr_plugin_entry_v1).
  static Harness from_entry(jr_plugin_entry_v1_fn entry,
                            const nlohmann::json& config = nlohmann::json::object()) {
    const jr_plugin_desc* d = entry(JR_ABI_MINOR);
    if (d == nullptr) throw HarnessError("the entry point returned no descriptor");
    return Harness(d, config);
  }

  // A built plugin file, loaded like the host does (RTLD_NOW | RTLD_LOCAL, never unloaded).
  static Harness load(const std::string& path,
                      const nlohmann::json& config = nlohmann::json::object()) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* e = dlerror();
      throw HarnessError("plugin " + path + ": cannot be loaded: " + (e ? e : "unknown error"));
    }
    void* sym = dlsym(lib, JR_PLUGIN_ENTRY_SYMBOL);
    if (sym == nullptr) {
      throw HarnessError("plugin " + path + ": missing entry symbol '" JR_PLUGIN_ENTRY_SYMBOL "'");
    }
    jr_plugin_entry_v1_fn entry = nullptr;
    static_assert(sizeof entry == sizeof sym, "function and data pointers differ in size");
    std::memcpy(&entry, &sym, sizeof entry);
    return from_entry(entry, config);
  }

  Harness(Harness&&) noexcept = default;
  Harness& operator=(Harness&&) = delete;
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  ~Harness() {
    if (s_ && s_->initialised && s_->desc->shutdown != nullptr) s_->desc->shutdown(s_->state);
  }

  // Runs one attempt with a JSON payload.
  RunResult run(const nlohmann::json& payload, const JobSpec& spec = {}) {
    return run_text(payload.dump(), spec);
  }

  // Runs one attempt with raw payload text (to test invalid JSON handling).
  RunResult run_text(std::string_view payload_text, const JobSpec& spec = {}) {
    std::string kind = spec.kind.empty() ? s_->kinds.front().kind : spec.kind;
    const KindSpec* ks = find_kind(kind);
    if (ks == nullptr) throw HarnessError("plugin " + s_->name + " does not serve kind " + kind);
    std::string queue = spec.queue;
    if (queue.empty()) queue = ks->default_queue.empty() ? "default" : ks->default_queue;
    std::string payload(payload_text);
    Call* c = s_->new_call(spec.cancel_after_checks);
    jr_job j{};
    j.struct_size = sizeof(jr_job);
    j.id = spec.id != 0 ? spec.id : s_->next_job_id.fetch_add(1);
    j.kind = kind.c_str();
    j.queue = queue.c_str();
    j.payload = payload.c_str();
    j.payload_len = payload.size();
    j.attempt = spec.attempt;
    j.max_attempts = spec.max_attempts;
    j.deadline_ms = spec.deadline_ms;
    int32_t rc = s_->desc->handle(s_->state, &s_->api, c->ctx(), &j);
    return s_->finish(c, rc, false);
  }

  // Calls the idle hook (the plugin must declare one). status is its return value.
  RunResult idle() {
    if (!has_idle()) throw HarnessError("plugin " + s_->name + " has no idle hook");
    Call* c = s_->new_call(-1);
    int32_t rc = s_->desc->idle(s_->state, &s_->api, c->ctx());
    return s_->finish(c, rc, true);
  }

  const std::string& name() const { return s_->name; }
  const std::string& version() const { return s_->version; }
  uint16_t abi_minor() const { return s_->desc->abi_minor; }
  const std::vector<KindSpec>& kinds() const { return s_->kinds; }
  const nlohmann::json& manifest() const { return s_->manifest; }
  bool has_idle() const {
    return JR_HAS_FIELD(s_->desc, jr_plugin_desc, idle) && s_->desc->idle != nullptr;
  }
  const jr_plugin_desc* descriptor() const { return s_->desc; }
  const jr_host_api* host_api() const { return &s_->api; }

  // Every job enqueued so far, across calls.
  std::vector<EnqueuedJob> enqueued() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->all_enqueued;
  }
  // Misuse seen outside any single call's result (late calls after a call returned).
  std::vector<std::string> violations() const {
    std::lock_guard<std::mutex> lock(s_->mu);
    return s_->late_violations;
  }
  // Makes host->enqueue fail (as when the database refuses), to test the plugin's reaction.
  void fail_enqueue(bool fail) { s_->fail_enqueue.store(fail); }
  // What host->get_extension(id) returns (NULL for unknown ids, as today's host). The call has
  // no ctx, so with several harnesses alive the most recently constructed one answers.
  void provide_extension(const std::string& id, const void* ext) {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->extensions.emplace_back(id, ext);
  }

 private:
  struct State;

  // One handle/idle call: what the plugin's jr_job_ctx* points to.
  struct Call {
    State* owner = nullptr;
    RunResult out;
    int cancel_after = -1;
    bool live = true;  // guarded by owner->mu
    jr_job_ctx* ctx() { return reinterpret_cast<jr_job_ctx*>(this); }
  };

  struct State {
    jr_host_api api{};
    const jr_plugin_desc* desc = nullptr;
    void* state = nullptr;
    bool initialised = false;
    std::string name, version;
    std::vector<KindSpec> kinds;
    nlohmann::json manifest = nlohmann::json::object();
    std::atomic<int64_t> next_job_id{1};
    std::atomic<bool> fail_enqueue{false};
    mutable std::mutex mu;  // guards everything below and every Call's `out` and `live`
    std::deque<std::unique_ptr<Call>> calls;  // kept so late calls are detected, not UB
    std::vector<EnqueuedJob> all_enqueued;
    std::vector<std::string> late_violations;
    std::vector<std::pair<std::string, const void*>> extensions;
    int64_t next_enqueued_id = 1000000;

    State() {
      api.struct_size = sizeof(jr_host_api);
      api.abi_minor = JR_ABI_MINOR;
      api.log = &api_log;
      api.progress = &api_progress;
      api.set_result = &api_set_result;
      api.set_error = &api_set_error;
      api.snooze = &api_snooze;
      api.is_cancelled = &api_is_cancelled;
      api.enqueue = &api_enqueue;
      api.get_extension = &api_get_extension;
      current() = this;
    }
    ~State() {
      if (current() == this) current() = nullptr;
    }
    State(const State&) = delete;
    State& operator=(const State&) = delete;

    // get_extension has no ctx; the most recently constructed harness answers it.
    static State*& current() {
      static State* s = nullptr;
      return s;
    }

    Call* new_call(int cancel_after) {
      auto c = std::make_unique<Call>();
      c->owner = this;
      c->cancel_after = cancel_after;
      Call* raw = c.get();
      std::lock_guard<std::mutex> lock(mu);
      calls.push_back(std::move(c));
      return raw;
    }

    RunResult finish(Call* c, int32_t rc, bool is_idle) {
      std::lock_guard<std::mutex> lock(mu);
      c->live = false;
      RunResult r = std::move(c->out);
      c->out = RunResult{};
      r.status = rc;
      if (is_idle) {
        r.outcome = rc >= 0 ? Outcome::ok : Outcome::retryable;
      } else {
        switch (rc) {
          case JR_OK:
            r.outcome = Outcome::ok;
            break;
          case JR_ERR_RETRYABLE:
            r.outcome = Outcome::retryable;
            break;
          case JR_ERR_PERMANENT:
            r.outcome = Outcome::permanent;
            break;
          case JR_SNOOZE:
            r.outcome = Outcome::snooze;
            break;
          case JR_CANCELLED:
            r.outcome = Outcome::cancelled;
            break;
          default:
            r.outcome = Outcome::invalid;
            r.violations.push_back("handle returned unknown status " + std::to_string(rc));
        }
      }
      if (r.has_result) {
        r.result = nlohmann::json::parse(r.result_text, nullptr, false);
        if (r.result.is_discarded()) {
          r.result = nullptr;
          r.violations.push_back("set_result: the result is not valid JSON");
        }
      }
      return r;
    }
  };

  // Runs `f(call.out)` under the lock if the call is still running; records a violation if not.
  template <class F>
  static int32_t with_call(jr_job_ctx* ctx, const char* fn, F&& f) {
    if (ctx == nullptr) return -1;
    Call* c = reinterpret_cast<Call*>(ctx);
    std::lock_guard<std::mutex> lock(c->owner->mu);
    if (!c->live) {
      c->owner->late_violations.push_back(std::string(fn) + " called after the call returned");
      return -1;
    }
    return f(*c);
  }

  static void api_log(jr_job_ctx* ctx, int32_t level, const char* msg, size_t len) noexcept {
    if (msg == nullptr) return;
    with_call(ctx, "log", [&](Call& c) {
      c.out.logs.push_back({level, std::string(msg, len)});
      return 0;
    });
  }
  static int32_t api_progress(jr_job_ctx* ctx, double percent, const char* step) noexcept {
    if (!std::isfinite(percent)) return -1;
    percent = percent < 0 ? 0 : (percent > 100 ? 100 : percent);
    return with_call(ctx, "progress", [&](Call& c) {
      c.out.progress.push_back({percent, step ? std::string(step) : std::string()});
      return 0;
    });
  }
  static int32_t api_set_result(jr_job_ctx* ctx, const char* json, size_t len) noexcept {
    if (json == nullptr) return -1;
    return with_call(ctx, "set_result", [&](Call& c) {
      c.out.has_result = true;
      c.out.result_text.assign(json, len);
      return 0;
    });
  }
  static int32_t api_set_error(jr_job_ctx* ctx, const char* msg, size_t len) noexcept {
    if (msg == nullptr) return -1;
    return with_call(ctx, "set_error", [&](Call& c) {
      c.out.error.assign(msg, len);
      return 0;
    });
  }
  static int32_t api_snooze(jr_job_ctx* ctx, double seconds) noexcept {
    if (!std::isfinite(seconds) || seconds < 0) return -1;
    return with_call(ctx, "snooze", [&](Call& c) {
      c.out.snooze_seconds = seconds;
      return 0;
    });
  }
  static int32_t api_is_cancelled(jr_job_ctx* ctx) noexcept {
    int32_t answer = 0;
    with_call(ctx, "is_cancelled", [&](Call& c) {
      ++c.out.cancel_checks;
      answer = c.cancel_after >= 0 && c.out.cancel_checks > c.cancel_after ? 1 : 0;
      return 0;
    });
    return answer;
  }
  static int32_t api_enqueue(jr_job_ctx* ctx, const char* kind, const char* payload,
                             size_t payload_len, const char* options_json,
                             int64_t* out_id) noexcept {
    if (kind == nullptr || payload == nullptr) return -1;
    try {
      EnqueuedJob e;
      e.kind = kind;
      std::string text(payload, payload_len);
      e.payload = nlohmann::json::parse(text, nullptr, false);
      if (e.payload.is_discarded()) e.payload = text;
      e.options = options_json && *options_json
                      ? nlohmann::json::parse(options_json, nullptr, false)
                      : nlohmann::json::object();
      return with_call(ctx, "enqueue", [&](Call& c) {
        if (c.owner->fail_enqueue.load()) return -1;
        if (e.options.is_discarded() || !e.options.is_object()) {
          c.out.violations.push_back("enqueue: options_json is not a JSON object");
          return -1;
        }
        e.id = c.owner->next_enqueued_id++;
        if (out_id != nullptr) *out_id = e.id;
        c.out.enqueued.push_back(e);
        c.owner->all_enqueued.push_back(e);
        return 0;
      });
    } catch (...) {
      return -1;
    }
  }
  static const void* api_get_extension(const char* id) noexcept {
    State* s = State::current();
    if (s == nullptr || id == nullptr) return nullptr;
    std::lock_guard<std::mutex> lock(s->mu);
    for (const auto& [name, ext] : s->extensions) {
      if (name == id) return ext;
    }
    return nullptr;
  }

  // The host loader's checks, from the same header (jobrunner/abi_validate.h), so a plugin
  // that passes here loads there and one refused there is refused here for the same reason.
  void validate() {
    const jr_plugin_desc* d = s_->desc;
    auto fail = [](const std::string& why) { return HarnessError("plugin descriptor: " + why); };
    if (std::string why = jobrunner::abi::check_descriptor(d); !why.empty()) throw fail(why);
    s_->name = d->name;
    s_->version = d->version ? d->version : "";
    if (d->manifest_json != nullptr && *d->manifest_json) {
      s_->manifest = nlohmann::json::parse(d->manifest_json, nullptr, false);
      if (s_->manifest.is_discarded() || !s_->manifest.is_object()) {
        throw fail("manifest_json is not a JSON object");
      }
    }
    if (d->kind_count == 0) {
      // The host serves such a plugin only when the operator's config names its kinds; the
      // harness runs kinds the descriptor declares.
      throw fail("declares no job kinds");
    }
    for (uint32_t i = 0; i < d->kind_count; ++i) {
      const jr_kind_desc* k = d->kinds[i];
      KindSpec ks;
      ks.kind = k->kind;
      ks.default_queue = k->default_queue ? k->default_queue : "";
      ks.timeout_ms = k->timeout_ms;
      ks.max_attempts = k->max_attempts;
      ks.retry_schedule = k->retry_schedule ? k->retry_schedule : "";
      s_->kinds.push_back(std::move(ks));
    }
  }

  const KindSpec* find_kind(const std::string& kind) const {
    for (const auto& k : s_->kinds) {
      if (k.kind == kind) return &k;
    }
    return nullptr;
  }

  std::unique_ptr<State> s_;
};

}  // namespace jobrunner::testing

#endif  // JOBRUNNER_TESTING_HPP
