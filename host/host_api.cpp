#include "host_api.hpp"

#include <cmath>

namespace jr {
namespace {

void api_log(jr_job_ctx* ctx, int32_t level, const char* msg, size_t len) {
  if (ctx == nullptr || ctx->services == nullptr || msg == nullptr) return;
  ctx->services->job_log(ctx, level, std::string_view(msg, len));
}

int32_t api_progress(jr_job_ctx* ctx, double percent, const char* step) {
  if (ctx == nullptr || ctx->services == nullptr || !std::isfinite(percent)) return -1;
  if (percent < 0) percent = 0;
  if (percent > 100) percent = 100;
  ctx->services->job_progress(ctx, percent, step ? std::string_view(step) : std::string_view());
  return 0;
}

int32_t api_set_result(jr_job_ctx* ctx, const char* json, size_t len) {
  if (ctx == nullptr || json == nullptr) return -1;
  std::lock_guard<std::mutex> lock(ctx->mu);
  ctx->result.assign(json, len);
  ctx->has_result = true;
  return 0;
}

int32_t api_set_error(jr_job_ctx* ctx, const char* msg, size_t len) {
  if (ctx == nullptr || msg == nullptr) return -1;
  std::lock_guard<std::mutex> lock(ctx->mu);
  ctx->error.assign(msg, len);
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
  int64_t id = ctx->services->job_enqueue(ctx, kind, std::string_view(payload, payload_len),
                                          options_json ? options_json : "");
  if (id < 0) return -1;
  if (out_id != nullptr) *out_id = id;
  return 0;
}

const void* api_get_extension(const char*) { return nullptr; }

}  // namespace

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
