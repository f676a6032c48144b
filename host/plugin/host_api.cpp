#include "host_api.hpp"

#include <cmath>
#include <cstring>

#include "bounds.hpp"

namespace jr {
namespace {

// The edge for in-process plugins: every string is bounded here (bounds.hpp) before the host
// services see it. C strings are measured with strnlen up to one byte past their bound.

void api_log(jr_job_ctx* ctx, int32_t level, const char* msg, size_t len) {
  if (ctx == nullptr || ctx->services == nullptr || msg == nullptr) return;
  std::string storage;
  ctx->services->job_log(ctx, level,
                         bounds::cut(std::string_view(msg, len), bounds::kLogMessageMax, storage));
}

int32_t api_progress(jr_job_ctx* ctx, double percent, const char* step) {
  if (ctx == nullptr || ctx->services == nullptr || !std::isfinite(percent)) return -1;
  if (percent < 0) percent = 0;
  if (percent > 100) percent = 100;
  std::string_view text;
  std::string storage;
  if (step != nullptr) {
    text = bounds::cut(std::string_view(step, strnlen(step, bounds::kProgressStepMax + 1)),
                       bounds::kProgressStepMax, storage);
  }
  ctx->services->job_progress(ctx, percent, text);
  return 0;
}

int32_t api_set_result(jr_job_ctx* ctx, const char* json, size_t len) {
  if (ctx == nullptr || json == nullptr) return -1;
  std::lock_guard<std::mutex> lock(ctx->mu);
  if (len > bounds::kResultMax) {
    // As in the sandbox, where such a result cannot cross the frame limit: the attempt fails.
    ctx->result.clear();
    ctx->has_result = false;
    ctx->result_refused_size = len;
    return -1;
  }
  ctx->result.assign(json, len);
  ctx->has_result = true;
  ctx->result_refused_size = 0;
  return 0;
}

int32_t api_set_error(jr_job_ctx* ctx, const char* msg, size_t len) {
  if (ctx == nullptr || msg == nullptr) return -1;
  std::string storage;
  std::string_view text = bounds::cut(std::string_view(msg, len), bounds::kErrorTextMax, storage);
  std::lock_guard<std::mutex> lock(ctx->mu);
  ctx->error.assign(text);
  return 0;
}

int32_t api_snooze(jr_job_ctx* ctx, double seconds) {
  if (ctx == nullptr || !std::isfinite(seconds) || seconds < 0) return -1;
  std::lock_guard<std::mutex> lock(ctx->mu);
  ctx->snooze_seconds = seconds;
  return 0;
}

int32_t api_is_cancelled(jr_job_ctx* ctx) {
  return ctx != nullptr && ctx->cancel.load(std::memory_order_relaxed) != kNoCancel ? 1 : 0;
}

int32_t api_enqueue(jr_job_ctx* ctx, const char* kind, const char* payload, size_t payload_len,
                    const char* options_json, int64_t* out_id) {
  if (ctx == nullptr || ctx->services == nullptr || kind == nullptr || payload == nullptr) {
    return -1;
  }
  std::string_view k(kind, strnlen(kind, bounds::kEnqueueKindMax + 1));
  std::string_view p(payload, payload_len);
  std::string_view o;
  if (options_json != nullptr) {
    o = std::string_view(options_json, strnlen(options_json, bounds::kEnqueueOptionsMax + 1));
  }
  if (std::string why = bounds::enqueue_refusal(k, p, o); !why.empty()) {
    ctx->services->job_log(ctx, JR_LOG_ERROR, "enqueue refused: " + why);
    return -1;
  }
  int64_t id = ctx->services->job_enqueue(ctx, k, p, o);
  if (id < 0) return -1;
  if (out_id != nullptr) *out_id = id;
  return 0;
}

int32_t api_set_error_kind(jr_job_ctx* ctx, const char* kind, size_t len) {
  if (ctx == nullptr || kind == nullptr) return -1;
  std::string_view k(kind, std::min(len, bounds::kErrorKindMax + 1));
  if (std::string why = bounds::error_kind_refusal(k); !why.empty()) {
    if (ctx->services != nullptr) {
      std::string storage;
      ctx->services->job_log(
          ctx, JR_LOG_WARN,
          "set_error_kind refused: " + std::string(bounds::cut(why, 200, storage)) +
              "; the failure keeps the kind 'error'");
    }
    return -1;
  }
  std::lock_guard<std::mutex> lock(ctx->mu);
  ctx->error_kind.assign(k);
  return 0;
}

const jr_error_kind_ext kErrorKindExt = {sizeof(jr_error_kind_ext), 0, &api_set_error_kind};

int32_t api_get_traceparent(jr_job_ctx* ctx, char* buf, size_t cap) {
  if (ctx == nullptr || buf == nullptr) return -1;
  const std::string& tp = ctx->traceparent;  // written before the call; constant during it
  if (tp.empty()) {
    if (cap > 0) buf[0] = '\0';
    return 0;
  }
  if (cap < tp.size() + 1) return -1;
  std::memcpy(buf, tp.data(), tp.size());
  buf[tp.size()] = '\0';
  return static_cast<int32_t>(tp.size());
}

const jr_trace_ext kTraceExt = {sizeof(jr_trace_ext), 0, &api_get_traceparent};
// jr.parent_results.v1: the page comes from the host services (the engine's database, or the
// worker's exchange with the host) and is handed to `receive`, borrowed, during the call.
int32_t api_parent_results(jr_job_ctx* ctx, uint32_t offset,
                           void (*receive)(void* user, const char* json, size_t json_len),
                           void* user) {
  if (ctx == nullptr || ctx->services == nullptr || receive == nullptr) return -1;
  std::string page;
  if (ctx->services->job_parent_results(ctx, offset, UINT32_MAX, &page) != 0) return -1;
  receive(user, page.data(), page.size());
  return 0;
}

const jr_parent_results_ext kParentResultsExt = {sizeof(jr_parent_results_ext), 0,
                                                 &api_parent_results};

const void* api_get_extension(const char* id) { return host_extension(id); }

}  // namespace

const void* host_extension(const char* id) {
  if (id != nullptr && std::strncmp(id, JR_EXT_ERROR_KIND, sizeof JR_EXT_ERROR_KIND) == 0) {
    return &kErrorKindExt;
  }
  if (id != nullptr && std::strncmp(id, JR_EXT_TRACE, sizeof JR_EXT_TRACE) == 0) return &kTraceExt;
  if (id != nullptr && std::strncmp(id, JR_EXT_PARENT_RESULTS, sizeof JR_EXT_PARENT_RESULTS) == 0) {
    return &kParentResultsExt;
  }
  return nullptr;
}

const jr_host_api* host_api() {
  static const jr_host_api api = [] {
    jr_host_api a{};
    a.struct_size = sizeof(jr_host_api);
    a.abi_minor = JR_ABI_MINOR;
    a.log = &api_log;
    a.progress = &api_progress;
    a.set_result = &api_set_result;
    a.set_error = &api_set_error;
    a.snooze = &api_snooze;
    a.is_cancelled = &api_is_cancelled;
    a.enqueue = &api_enqueue;
    a.get_extension = &api_get_extension;
    return a;
  }();
  return &api;
}

}  // namespace jr
