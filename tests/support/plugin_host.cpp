#include "plugin_host.hpp"

#include <cstdlib>
#include <stdexcept>

#include "sandbox.hpp"

namespace jrtest {
namespace {

jr::LoadedPlugin load(const std::string& so_path) {
  if (PluginHost::sandbox_requested()) return jr::sandbox::describe_in_sandbox(so_path);
  return jr::load_plugin(so_path);
}

}  // namespace

bool PluginHost::sandbox_requested() {
  const char* v = std::getenv("JR_TEST_ISOLATION");
  if (v == nullptr || std::string(v) == "none" || *v == 0) return false;
  if (std::string(v) != "sandbox") {
    throw std::invalid_argument("JR_TEST_ISOLATION must be 'sandbox' or 'none'");
  }
  return true;
}

PluginHost::PluginHost(const std::string& so_path, const nlohmann::json& config)
    : plugin_(load(so_path)) {
  if (!sandbox_requested()) {
    jr::init_plugin(plugin_, config);
    return;
  }
  // As `runner` does: the policy from the manifest and the config's "sandbox" section; enough
  // workers for the tests that call run() from several threads at once.
  jr::sandbox::SandboxOptions so;
  so.pool_size = 8;
  auto ex = jr::sandbox::make_executor(plugin_, config, so);
  ex->start();  // throws SandboxError when the plugin's init refuses, like init_plugin
  executor_ = std::move(ex);
}

PluginHost::~PluginHost() {
  if (executor_) {
    executor_.reset();  // shuts the workers down; each runs the plugin's shutdown
    return;
  }
  if (plugin_.initialised && plugin_.desc->shutdown) plugin_.desc->shutdown(plugin_.state);
}

JobOutcome PluginHost::run(const std::string& kind, const std::string& payload, int attempt,
                           int64_t job_id) {
  JobOutcome out;
  jr_job_ctx ctx;
  ctx.job_id = job_id;
  ctx.attempt = attempt;
  ctx.kind = kind;
  ctx.services = this;
  jr_job j{};
  j.struct_size = sizeof(jr_job);
  j.id = job_id;
  j.kind = kind.c_str();
  j.queue = "default";
  j.payload = payload.c_str();
  j.payload_len = payload.size();
  j.attempt = attempt;
  j.max_attempts = 25;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = &out;
  }
  if (executor_) {
    jr::ExecOutcome o = executor_->run(j, ctx, 0);
    out.status = o.status;
    if (o.host_error_kind.has_value()) {
      // The worker died or broke the protocol: tests see it as a retryable failure naming why.
      out.status = JR_ERR_RETRYABLE;
      std::lock_guard<std::mutex> lock(ctx.mu);
      ctx.error = "sandbox: " + jr::name_of(o.host_error_kind) + ": " + o.host_error;
    }
  } else {
    out.status = plugin_.desc->handle(plugin_.state, jr::host_api(), &ctx, &j);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = nullptr;
  }
  std::lock_guard<std::mutex> lock(ctx.mu);
  if (ctx.has_result) out.result = ctx.result;
  out.error = ctx.error;
  out.snooze_seconds = ctx.snooze_seconds;
  return out;
}

int PluginHost::idle() {
  if (!plugin_.has_idle) throw std::runtime_error("plugin has no idle hook");
  jr_job_ctx ctx;
  ctx.services = this;
  ctx.kind = "(idle)";
  if (executor_) return executor_->idle(ctx, 0);
  return plugin_.desc->idle(plugin_.state, jr::host_api(), &ctx);
}

std::vector<Enqueued> PluginHost::enqueued() {
  std::lock_guard<std::mutex> lock(mu_);
  return enqueued_;
}

void PluginHost::job_log(jr_job_ctx*, int, std::string_view msg) {
  std::lock_guard<std::mutex> lock(mu_);
  if (current_) current_->logs.emplace_back(msg);
}

void PluginHost::job_progress(jr_job_ctx*, double percent, std::string_view step) {
  std::lock_guard<std::mutex> lock(mu_);
  if (current_) current_->progress.emplace_back(percent, std::string(step));
}

int64_t PluginHost::job_enqueue(jr_job_ctx*, std::string_view kind, std::string_view payload,
                                std::string_view options_json) {
  std::lock_guard<std::mutex> lock(mu_);
  Enqueued e;
  e.kind = std::string(kind);
  e.payload = nlohmann::json::parse(payload, nullptr, false);
  e.options = options_json.empty() ? nlohmann::json::object()
                                   : nlohmann::json::parse(options_json, nullptr, false);
  enqueued_.push_back(std::move(e));
  return next_id_++;
}

std::string start_error(const std::string& so_path, const nlohmann::json& config) {
  try {
    PluginHost h(so_path, config);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace jrtest
