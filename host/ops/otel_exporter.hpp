// The OpenTelemetry exporter of attempt spans (docs/job-model.md "OpenTelemetry traces",
// docs/operations.md): OTLP over HTTP with the JSON encoding, POST {endpoint}/v1/traces, with
// libcurl. Made by cli_worker.cpp only when [otel] endpoint (RUNNER_OTEL_ENDPOINT,
// --otel-endpoint) is set; without it the engine has no SpanSink and pays nothing.
//
// A job never waits for it: submit() puts the span in a bounded queue under a mutex held for a
// push and nothing else; a full queue drops the span (counted, logged once). One thread of its
// own sends batches (batch_size spans, or what is queued after interval_seconds), retries a
// failed request a bounded number of times (connection errors, timeouts, 429, 502, 503, 504),
// and at shutdown() sends what is queued within shutdown_seconds, dropping (and counting) the
// rest.
//
// Threading: submit() from any thread; start()/shutdown() from one thread (the worker command);
// stats and write_metrics() from any thread (the HTTP server's scrape).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "attempt_span.hpp"
#include "metrics.hpp"

namespace jr::ops {

struct OtelOptions {
  std::string endpoint;  // base URL ("http://collector:4318"); spans go to {endpoint}/v1/traces
  std::string service_name = "jobrunner";  // resource attribute service.name
  std::string service_instance;            // service.instance.id: the runner's worker id
  std::string service_version;             // service.version ("" = left out)
  size_t queue_size = 2048;                // spans waiting to be sent; beyond: dropped
  size_t batch_size = 512;                 // spans per request
  double interval_seconds = 1.0;           // a partial batch goes out after this long
  double timeout_seconds = 5.0;            // one request, connection included
  int max_retries = 3;                     // further tries of a request that failed retryably
  double shutdown_seconds = 5.0;           // the flush at shutdown takes at most this long
};

// Counters of the exporter (/metrics: jobrunner_otel_*).
struct OtelStats {
  std::atomic<int64_t> exported{0};               // spans the collector accepted
  std::atomic<int64_t> dropped_queue_full{0};     // submitted while the queue was full
  std::atomic<int64_t> dropped_export_failed{0};  // in a batch that failed for good
  std::atomic<int64_t> dropped_shutdown{0};       // still queued when the shutdown bound passed
  std::atomic<int64_t> request_errors{0};         // failed requests, retries included
  std::atomic<int64_t> queued{0};                 // waiting now
};

// Checks an endpoint: http:// or https://, a host, no spaces or control characters. Throws
// std::invalid_argument naming the problem.
void check_otel_endpoint(const std::string& url);

class OtlpExporter final : public SpanSink {
 public:
  explicit OtlpExporter(OtelOptions opts);
  ~OtlpExporter() override;  // shutdown()

  // Starts the export thread; `instance_id` (the worker id) becomes service.instance.id.
  void start(const std::string& instance_id);
  void submit(AttemptSpan span) noexcept override;
  // Sends what is queued within shutdown_seconds, then stops the thread. Idempotent.
  void shutdown();

  const OtelStats& stats() const { return stats_; }
  // The jobrunner_otel_* families.
  void write_metrics(TextWriter& w) const;
  // The OTLP/JSON request body for `spans` (ExportTraceServiceRequest).
  std::string encode(const std::vector<AttemptSpan>& spans) const;

 private:
  void run();
  // One batch, with retries, giving up at `deadline_ms` (steady clock). True when accepted.
  bool send(const std::string& body, size_t spans, int64_t deadline_ms);
  // One POST: the HTTP status, or 0 with `why` set when there was no response.
  long post(void* curl, const std::string& body, int64_t timeout_ms, std::string* why);

  OtelOptions opts_;
  std::string url_;
  OtelStats stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<AttemptSpan> queue_;  // guarded by mu_
  bool stopping_ = false;          // guarded by mu_
  // Steady ms the shutdown flush ends (0: not shutting down); also read by a request in flight,
  // which aborts once it has passed.
  std::atomic<int64_t> flush_deadline_ms_{0};
  std::atomic<bool> drop_logged_{false};
  int64_t failure_logged_ms_ = 0;  // export thread only
  std::thread thread_;
};

}  // namespace jr::ops
