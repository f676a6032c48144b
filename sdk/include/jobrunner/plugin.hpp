// Header-only C++ layer over jobrunner/abi.h. A plugin derives from jobrunner::Plugin, describes
// itself with a static `info()` and exports itself with JOBRUNNER_PLUGIN(Class). Exceptions
// never cross the C boundary: the trampolines below turn them into jr_status codes.
//
// Ownership and threading are those of abi.h: a Job is valid only inside handle(); handle() may
// run concurrently on several threads, so members of a Plugin touched there must be thread-safe.
#ifndef JOBRUNNER_PLUGIN_HPP
#define JOBRUNNER_PLUGIN_HPP

#include <jobrunner/abi.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace jobrunner {

// Throw from handle() to fail the attempt; the class decides what happens next. An optional
// kind names the failure (e.g. "dns_timeout"): recorded as the attempt's error_kind through the
// host extension JR_EXT_ERROR_KIND (abi.h), else "error" / "permanent".
class RetryableError : public std::runtime_error {
 public:
  explicit RetryableError(const std::string& what, std::string kind = "")
      : std::runtime_error(what), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};
class PermanentError : public std::runtime_error {
 public:
  explicit PermanentError(const std::string& what, std::string kind = "")
      : std::runtime_error(what), kind_(std::move(kind)) {}
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
};
// Throw to run the job again after `seconds` without using up an attempt.
class Snooze : public std::runtime_error {
 public:
  explicit Snooze(double seconds) : std::runtime_error("snoozed"), seconds_(seconds) {}
  double seconds() const { return seconds_; }

 private:
  double seconds_;
};
// Throw when the handler stops because Job::cancelled() became true.
class Cancelled : public std::runtime_error {
 public:
  Cancelled() : std::runtime_error("cancelled") {}
};

// Access to the host for one call (a job, or an idle callback).
class Context {
 public:
  Context(const jr_host_api* host, jr_job_ctx* ctx) : host_(host), ctx_(ctx) {}

  void log(jr_log_level level, std::string_view msg) const {
    host_->log(ctx_, level, msg.data(), msg.size());
  }
  void debug(std::string_view m) const { log(JR_LOG_DEBUG, m); }
  void info(std::string_view m) const { log(JR_LOG_INFO, m); }
  void warn(std::string_view m) const { log(JR_LOG_WARN, m); }
  void error(std::string_view m) const { log(JR_LOG_ERROR, m); }

  // True when the host asks the job to stop; long handlers should poll it.
  bool cancelled() const { return host_->is_cancelled(ctx_) != 0; }

  // Enqueue another job; returns its id. Throws RetryableError when the host refuses.
  int64_t enqueue(std::string_view kind, const nlohmann::json& payload,
                  const nlohmann::json& options = nlohmann::json::object()) const {
    std::string k(kind);
    std::string p = payload.dump();
    std::string o = options.dump();
    int64_t id = 0;
    if (host_->enqueue(ctx_, k.c_str(), p.data(), p.size(), o.c_str(), &id) != 0) {
      throw RetryableError("enqueue of a '" + k + "' job failed");
    }
    return id;
  }

  const jr_host_api* host() const { return host_; }
  jr_job_ctx* raw() const { return ctx_; }

 protected:
  const jr_host_api* host_;
  jr_job_ctx* ctx_;
};

// The job being handled.
class Job : public Context {
 public:
  Job(const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job)
      : Context(host, ctx), job_(job) {}

  int64_t id() const { return job_->id; }
  std::string_view kind() const { return job_->kind; }
  std::string_view queue() const { return job_->queue; }
  int attempt() const { return job_->attempt; }
  int max_attempts() const { return job_->max_attempts; }
  int64_t deadline_ms() const { return job_->deadline_ms; }
  std::string_view payload_text() const { return {job_->payload, job_->payload_len}; }

  // The payload, parsed on first use. Invalid JSON is a PermanentError.
  const nlohmann::json& payload() {
    if (!parsed_) {
      try {
        payload_ = nlohmann::json::parse(payload_text());
      } catch (const nlohmann::json::parse_error& e) {
        throw PermanentError(std::string("payload is not valid JSON: ") + e.what());
      }
      parsed_ = true;
    }
    return payload_;
  }

  void progress(double percent, const char* step = nullptr) const {
    host_->progress(ctx_, percent, step);
  }

  // One page of the results of this job's parents (extension JR_EXT_PARENT_RESULTS, abi.h):
  // {"total", "offset", "count", "next_offset", "parents": [{"job_id", "step", "kind", "state",
  // "result"}]}. Throws RetryableError when the host does not offer it or cannot answer.
  nlohmann::json parent_results(uint32_t offset = 0) const {
    const auto* ext =
        host_->get_extension != nullptr
            ? static_cast<const jr_parent_results_ext*>(host_->get_extension(JR_EXT_PARENT_RESULTS))
            : nullptr;
    if (ext == nullptr || ext->struct_size < sizeof(jr_parent_results_ext)) {
      throw RetryableError("this runner does not offer parent results (jr.parent_results.v1)");
    }
    std::string text;
    auto receive = [](void* user, const char* json, size_t len) {
      static_cast<std::string*>(user)->assign(json, len);
    };
    if (ext->parent_results(ctx_, offset, receive, &text) != 0) {
      throw RetryableError("parent results are not available (see the runner's log)");
    }
    return nlohmann::json::parse(text);
  }
  // Every parent's entry, all pages read.
  nlohmann::json all_parent_results() const {
    nlohmann::json all = nlohmann::json::array();
    uint32_t offset = 0;
    for (;;) {
      nlohmann::json page = parent_results(offset);
      for (auto& p : page["parents"]) all.push_back(std::move(p));
      if (!page["next_offset"].is_number_unsigned()) return all;
      offset = page["next_offset"].get<uint32_t>();
    }
  }

 private:
  const jr_job* job_;
  nlohmann::json payload_;
  bool parsed_ = false;
};

// Describes one job kind. Zero / empty values mean "host default".
struct KindSpec {
  std::string kind;
  std::string default_queue;
  int64_t timeout_ms = 0;
  int32_t max_attempts = 0;
  std::string retry_schedule;  // "60,300,900"
};

struct PluginInfo {
  std::string name;
  std::string version;
  std::vector<KindSpec> kinds;
  nlohmann::json manifest = nlohmann::json::object();
  bool idle_hook = false;  // call Plugin::idle when the plugin's queues are idle
};

class Plugin {
 public:
  virtual ~Plugin() = default;
  // The plugin's section of the host config. Throw to refuse to start.
  virtual void init(const nlohmann::json& /*config*/) {}
  // One attempt. Return the result document (null for none) or throw one of the errors above.
  virtual nlohmann::json handle(Job& job) = 0;
  // Idle callback (only when PluginInfo::idle_hook). Returns the number of jobs enqueued.
  virtual int idle(Context& /*ctx*/) { return 0; }
};

namespace detail {

inline void copy_message(char* dst, size_t cap, const std::string& msg) {
  if (cap == 0 || dst == nullptr) return;
  size_t n = msg.size() < cap - 1 ? msg.size() : cap - 1;
  std::memcpy(dst, msg.data(), n);
  dst[n] = '\0';
}

inline int32_t fail(const jr_host_api* host, jr_job_ctx* ctx, jr_status status,
                    const std::string& msg, const std::string& kind = "") noexcept {
  host->set_error(ctx, msg.data(), msg.size());
  if (!kind.empty() && host->get_extension != nullptr) {
    auto* ext = static_cast<const jr_error_kind_ext*>(host->get_extension(JR_EXT_ERROR_KIND));
    if (ext != nullptr && ext->struct_size >= sizeof(jr_error_kind_ext)) {
      ext->set_error_kind(ctx, kind.data(), kind.size());
    }
  }
  return status;
}

template <class P>
struct Adapter {
  static int32_t init(const jr_host_api* /*host*/, const char* config_json, void** state, char* err,
                      size_t err_cap) noexcept {
    try {
      auto plugin = std::make_unique<P>();
      plugin->init(nlohmann::json::parse(config_json ? config_json : "{}"));
      *state = plugin.release();
      return 0;
    } catch (const std::exception& e) {
      copy_message(err, err_cap, e.what());
    } catch (...) {
      copy_message(err, err_cap, "unknown exception in init");
    }
    return 1;
  }

  static int32_t handle(void* state, const jr_host_api* host, jr_job_ctx* ctx,
                        const jr_job* job) noexcept {
    try {
      Job j(host, ctx, job);
      nlohmann::json result = static_cast<P*>(state)->handle(j);
      if (!result.is_null()) {
        std::string text = result.dump();
        host->set_result(ctx, text.data(), text.size());
      }
      return JR_OK;
    } catch (const PermanentError& e) {
      return fail(host, ctx, JR_ERR_PERMANENT, e.what(), e.kind());
    } catch (const RetryableError& e) {
      return fail(host, ctx, JR_ERR_RETRYABLE, e.what(), e.kind());
    } catch (const Snooze& e) {
      host->snooze(ctx, e.seconds());
      return JR_SNOOZE;
    } catch (const Cancelled& e) {
      return fail(host, ctx, JR_CANCELLED, e.what());
    } catch (const nlohmann::json::exception& e) {
      // Asking a payload for a missing key or the wrong type: the input is bad, not the world.
      return fail(host, ctx, JR_ERR_PERMANENT, std::string("invalid payload: ") + e.what());
    } catch (const std::exception& e) {
      return fail(host, ctx, JR_ERR_RETRYABLE, e.what());
    } catch (...) {
      return fail(host, ctx, JR_ERR_RETRYABLE, "unknown exception");
    }
  }

  static void shutdown(void* state) noexcept { delete static_cast<P*>(state); }

  static int32_t idle(void* state, const jr_host_api* host, jr_job_ctx* ctx) noexcept {
    try {
      Context c(host, ctx);
      return static_cast<P*>(state)->idle(c);
    } catch (const std::exception& e) {
      std::string msg = std::string("idle hook failed: ") + e.what();
      host->log(ctx, JR_LOG_ERROR, msg.data(), msg.size());
      return -1;
    } catch (...) {
      return -1;
    }
  }
};

// Owns the static storage the descriptor points into.
struct DescriptorStorage {
  PluginInfo info;
  std::string manifest;
  std::vector<jr_kind_desc> kinds;
  std::vector<const jr_kind_desc*> kind_ptrs;
  jr_plugin_desc desc{};
};

template <class P>
const jr_plugin_desc* descriptor() noexcept {
  try {
    static DescriptorStorage* s = [] {
      auto* st = new DescriptorStorage();  // never freed: plugins are never unloaded
      st->info = P::info();
      st->manifest = st->info.manifest.dump();
      st->kinds.resize(st->info.kinds.size());
      for (size_t i = 0; i < st->info.kinds.size(); ++i) {
        const KindSpec& k = st->info.kinds[i];
        jr_kind_desc& d = st->kinds[i];
        d = jr_kind_desc{};
        d.struct_size = sizeof(jr_kind_desc);
        d.kind = k.kind.c_str();
        d.default_queue = k.default_queue.empty() ? nullptr : k.default_queue.c_str();
        d.timeout_ms = k.timeout_ms;
        d.max_attempts = k.max_attempts;
        d.retry_schedule = k.retry_schedule.empty() ? nullptr : k.retry_schedule.c_str();
      }
      for (auto& k : st->kinds) st->kind_ptrs.push_back(&k);
      jr_plugin_desc& d = st->desc;
      d.struct_size = sizeof(jr_plugin_desc);
      d.abi_major = JR_ABI_MAJOR;
      d.abi_minor = JR_ABI_MINOR;
      d.name = st->info.name.c_str();
      d.version = st->info.version.c_str();
      d.kinds = st->kind_ptrs.data();
      d.kind_count = static_cast<uint32_t>(st->kind_ptrs.size());
      d.manifest_json = st->manifest.c_str();
      d.init = &Adapter<P>::init;
      d.handle = &Adapter<P>::handle;
      d.shutdown = &Adapter<P>::shutdown;
      d.idle = st->info.idle_hook ? &Adapter<P>::idle : nullptr;
      return st;
    }();
    return &s->desc;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace detail
}  // namespace jobrunner

// Exports the entry symbol for plugin class `Class` (which must have `static PluginInfo info()`).
#define JOBRUNNER_PLUGIN(Class)                                                      \
  extern "C" JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t) noexcept { \
    return ::jobrunner::detail::descriptor<Class>();                                 \
  }

#endif  // JOBRUNNER_PLUGIN_HPP
