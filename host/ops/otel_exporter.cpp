#include "otel_exporter.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "clock.hpp"
#include "log.hpp"

namespace jr::ops {
namespace {

using nlohmann::json;

size_t discard_body(char*, size_t size, size_t n, void*) { return size * n; }

// libcurl's progress callback (called about once a second, and on every transfer step): ends a
// request in flight once the shutdown bound has passed.
int abort_after_deadline(void* p, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  int64_t deadline = static_cast<std::atomic<int64_t>*>(p)->load(std::memory_order_relaxed);
  return deadline > 0 && steady_ms() >= deadline ? 1 : 0;
}

json str_attr(const char* key, const std::string& v) {
  return {{"key", key}, {"value", {{"stringValue", v}}}};
}
json int_attr(const char* key, int64_t v) {
  return {{"key", key}, {"value", {{"intValue", std::to_string(v)}}}};  // int64 as a string
}
json double_attr(const char* key, double v) {
  return {{"key", key}, {"value", {{"doubleValue", v}}}};
}

// OTLP status codes and span kinds (opentelemetry-proto trace/v1).
constexpr int kStatusUnset = 0;
constexpr int kStatusOk = 1;
constexpr int kStatusError = 2;
constexpr int kSpanKindConsumer = 5;

// Retryable answers (the OTLP/HTTP specification's list).
bool retryable(long status) {
  return status == 0 || status == 429 || status == 502 || status == 503 || status == 504;
}

}  // namespace

void check_otel_endpoint(const std::string& url) {
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    throw std::invalid_argument("otel endpoint must start with http:// or https://, got '" +
                                url.substr(0, 80) + "'");
  }
  if (url.size() <= scheme_end + 3 || url[scheme_end + 3] == '/') {
    throw std::invalid_argument("otel endpoint has no host: '" + url.substr(0, 80) + "'");
  }
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) {
      throw std::invalid_argument("otel endpoint contains a space or a control character");
    }
  }
}

OtlpExporter::OtlpExporter(OtelOptions opts) : opts_(std::move(opts)) {
  check_otel_endpoint(opts_.endpoint);
  std::string base = opts_.endpoint;
  while (!base.empty() && base.back() == '/') base.pop_back();
  url_ = base + "/v1/traces";
  opts_.queue_size = std::max<size_t>(1, opts_.queue_size);
  opts_.batch_size = std::clamp<size_t>(opts_.batch_size, 1, opts_.queue_size);
}

OtlpExporter::~OtlpExporter() { shutdown(); }

void OtlpExporter::start(const std::string& instance_id) {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (opts_.service_instance.empty()) opts_.service_instance = instance_id;
  log::info("OpenTelemetry traces exported over OTLP/HTTP JSON",
            {{"url", log::redact(url_)},
             {"batch_size", opts_.batch_size},
             {"queue_size", opts_.queue_size},
             {"interval_seconds", opts_.interval_seconds}});
  thread_ = std::thread([this] { run(); });
}

void OtlpExporter::submit(AttemptSpan span) noexcept {
  try {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!stopping_ && queue_.size() < opts_.queue_size) {
        queue_.push_back(std::move(span));
        stats_.queued.store(static_cast<int64_t>(queue_.size()), std::memory_order_relaxed);
        if (queue_.size() >= opts_.batch_size) cv_.notify_one();
        return;
      }
    }
    stats_.dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
    if (!drop_logged_.exchange(true)) {
      log::warn(
          "OpenTelemetry span queue is full (the collector is slow or unreachable): spans are "
          "dropped, never waited for; counted in jobrunner_otel_spans_dropped_total, logged "
          "once",
          {{"queue_size", opts_.queue_size}, {"url", log::redact(url_)}});
    }
  } catch (...) {
    // Out of memory while queueing: the span is lost, the job is not.
    stats_.dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
  }
}

void OtlpExporter::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      flush_deadline_ms_ =
          std::max<int64_t>(1, steady_ms() + static_cast<int64_t>(opts_.shutdown_seconds * 1000));
    }
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OtlpExporter::run() {
  const auto interval = std::chrono::milliseconds(
      std::max<int64_t>(1, static_cast<int64_t>(opts_.interval_seconds * 1000)));
  for (;;) {
    std::vector<AttemptSpan> batch;
    int64_t deadline = 0;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, interval, [&] { return stopping_ || queue_.size() >= opts_.batch_size; });
      stopping = stopping_;
      if (stopping && (queue_.empty() || steady_ms() >= flush_deadline_ms_)) {
        stats_.dropped_shutdown.fetch_add(static_cast<int64_t>(queue_.size()));
        if (!queue_.empty()) {
          log::warn("OpenTelemetry spans not sent before the shutdown bound; dropped",
                    {{"spans", queue_.size()}, {"shutdown_seconds", opts_.shutdown_seconds}});
        }
        queue_.clear();
        stats_.queued.store(0);
        return;
      }
      size_t n = std::min(queue_.size(), opts_.batch_size);
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.queued.store(static_cast<int64_t>(queue_.size()));
      deadline = stopping ? flush_deadline_ms_.load() : 0;
    }
    if (batch.empty()) continue;
    std::string body;
    try {
      body = encode(batch);
    } catch (const std::exception& e) {
      stats_.dropped_export_failed.fetch_add(static_cast<int64_t>(batch.size()));
      log::error("OpenTelemetry spans could not be encoded; dropped", {{"error", e.what()}});
      continue;
    }
    if (send(body, batch.size(), deadline)) {
      stats_.exported.fetch_add(static_cast<int64_t>(batch.size()));
    } else {
      stats_.dropped_export_failed.fetch_add(static_cast<int64_t>(batch.size()));
    }
  }
}

bool OtlpExporter::send(const std::string& body, size_t spans, int64_t deadline_ms) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return false;
  const int64_t timeout_ms =
      std::max<int64_t>(1, static_cast<int64_t>(opts_.timeout_seconds * 1000));
  int64_t backoff_ms = 100;
  bool ok = false;
  std::string why;
  long status = 0;
  for (int attempt = 0; attempt <= opts_.max_retries; ++attempt) {
    int64_t t = timeout_ms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) deadline_ms = flush_deadline_ms_.load();  // shutdown began: its bound
    }
    if (deadline_ms > 0) {
      int64_t left = deadline_ms - steady_ms();
      if (left <= 0) break;
      t = std::min(t, left);
    }
    status = post(curl, body, t, &why);
    if (status >= 200 && status <= 299) {
      ok = true;
      break;
    }
    stats_.request_errors.fetch_add(1);
    if (!retryable(status) || attempt == opts_.max_retries) break;
    // Back off before the next try; a shutdown cuts the wait short (its own bound then rules).
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
  }
  curl_easy_cleanup(curl);
  if (!ok) {
    // Logged on the first failure and then at most once a minute; the counters have the rest.
    int64_t now = steady_ms();
    if (failure_logged_ms_ == 0 || now - failure_logged_ms_ >= 60000) {
      failure_logged_ms_ = now;
      log::warn("OpenTelemetry export failed; the batch is dropped",
                {{"url", log::redact(url_)},
                 {"spans", spans},
                 {"http_status", status},
                 {"error", why},
                 {"tries", opts_.max_retries + 1},
                 {"dropped_total", stats_.dropped_export_failed.load() + int64_t(spans)}});
    }
  }
  return ok;
}

long OtlpExporter::post(void* handle, const std::string& body, int64_t timeout_ms,
                        std::string* why) {
  CURL* c = static_cast<CURL*>(handle);
  curl_easy_reset(c);
  struct curl_slist* h = nullptr;
  h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "jobrunner-otlp/1");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_after_deadline);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &flush_deadline_ms_);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  if (rc != CURLE_OK) {
    *why = rc == CURLE_ABORTED_BY_CALLBACK ? "the shutdown bound passed during the request"
                                           : curl_easy_strerror(rc);
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) *why = "collector answered HTTP " + std::to_string(status);
  }
  curl_slist_free_all(h);
  return status;
}

std::string OtlpExporter::encode(const std::vector<AttemptSpan>& spans) const {
  json out = json::array();
  for (const auto& s : spans) {
    json attrs = json::array({
        str_attr("messaging.system", "jobrunner"),
        str_attr("messaging.operation.type", "process"),
        str_attr("messaging.destination.name", s.queue),
        str_attr("messaging.message.id", std::to_string(s.job_id)),
        int_attr("jobrunner.job.id", s.job_id),
        str_attr("jobrunner.job.kind", s.kind),
        str_attr("jobrunner.job.queue", s.queue),
        int_attr("jobrunner.job.attempt", s.attempt),
        str_attr("jobrunner.job.outcome", s.outcome),
        double_attr("jobrunner.job.wait_seconds", s.wait_seconds),
    });
    if (!s.error_kind.empty()) attrs.push_back(str_attr("jobrunner.job.error_kind", s.error_kind));
    json status = {{"code", s.outcome == "completed" ? kStatusOk : kStatusUnset}};
    if (s.outcome == "retried" || s.outcome == "discarded") {
      status = {{"code", kStatusError}, {"message", s.error}};
    }
    json span = {{"traceId", s.trace_id},
                 {"spanId", s.span_id},
                 {"name", "process " + s.kind},
                 {"kind", kSpanKindConsumer},
                 {"startTimeUnixNano", std::to_string(s.start_unix_ns)},
                 {"endTimeUnixNano", std::to_string(s.end_unix_ns)},
                 {"attributes", std::move(attrs)},
                 {"status", std::move(status)}};
    if (!s.parent_span_id.empty()) span["parentSpanId"] = s.parent_span_id;
    out.push_back(std::move(span));
  }
  json resource = json::array({str_attr("service.name", opts_.service_name)});
  if (!opts_.service_instance.empty()) {
    resource.push_back(str_attr("service.instance.id", opts_.service_instance));
  }
  if (!opts_.service_version.empty()) {
    resource.push_back(str_attr("service.version", opts_.service_version));
  }
  json req = {{"resourceSpans",
               json::array({{{"resource", {{"attributes", std::move(resource)}}},
                             {"scopeSpans", json::array({{{"scope", {{"name", "jobrunner"}}},
                                                          {"spans", std::move(out)}}})}}})}};
  // A handler's error text may be anything: invalid UTF-8 is replaced, never thrown on.
  return req.dump(-1, ' ', false, json::error_handler_t::replace);
}

void OtlpExporter::write_metrics(TextWriter& w) const {
  w.family("jobrunner_otel_spans_exported_total", "counter",
           "Attempt spans the OpenTelemetry collector accepted.");
  w.sample("jobrunner_otel_spans_exported_total", {}, static_cast<double>(stats_.exported.load()));
  w.family("jobrunner_otel_spans_dropped_total", "counter",
           "Attempt spans not exported, by reason: queue_full (the collector was slow or "
           "unreachable and the queue was full; the job never waited), export_failed (the "
           "request failed after its retries), shutdown (still queued at the shutdown bound).");
  w.sample("jobrunner_otel_spans_dropped_total", {{"reason", "queue_full"}},
           static_cast<double>(stats_.dropped_queue_full.load()));
  w.sample("jobrunner_otel_spans_dropped_total", {{"reason", "export_failed"}},
           static_cast<double>(stats_.dropped_export_failed.load()));
  w.sample("jobrunner_otel_spans_dropped_total", {{"reason", "shutdown"}},
           static_cast<double>(stats_.dropped_shutdown.load()));
  w.family("jobrunner_otel_export_errors_total", "counter",
           "Failed OTLP export requests, retries included.");
  w.sample("jobrunner_otel_export_errors_total", {},
           static_cast<double>(stats_.request_errors.load()));
  w.family("jobrunner_otel_spans_queued", "gauge", "Attempt spans waiting to be exported.");
  w.sample("jobrunner_otel_spans_queued", {}, static_cast<double>(stats_.queued.load()));
}

}  // namespace jr::ops
