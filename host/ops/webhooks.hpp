// Webhook delivery: a background thread that takes due rows from the outbox
// (jr_webhook_deliveries, filled by a trigger in the transaction that finishes a job) and POSTs
// each body with an HMAC-SHA256 signature, retrying failures with exponential backoff. It never
// touches the job path: a slow or dead receiver only delays its own notifications.
//
// Threading: owns one thread; its database work runs on the runner's shared services connection
// (or a Store of its own without one), never while a POST is in flight; start()/stop() from one
// thread; counters are atomic.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "db_budget.hpp"

namespace jr::ops {

// Lower-case hex HMAC-SHA256 of `body` under `key` (the X-Jobrunner-Signature value is
// "sha256=" + this).
std::string hmac_sha256_hex(const std::string& key, const std::string& body);

struct WebhookOptions {
  std::string database_url;
  std::string owner;   // the runner's worker id (claims of deliveries)
  std::string secret;  // HMAC key; empty: deliveries are sent unsigned (warned once)
  std::vector<std::string> kinds_served;                      // their URLs are published here
  std::vector<std::pair<std::string, std::string>> per_kind;  // [webhooks] kind = url
  int max_attempts = 10;                                      // then the delivery is marked failed
  double retry_base_seconds = 1.0;  // delay after the n-th failure: base * 2^(n-1), capped
  double retry_max_seconds = 3600;
  double poll_seconds = 0.25;
  double timeout_seconds = 10;    // per HTTP request
  SharedStore* shared = nullptr;  // the runner's services connection; null: one of its own
};

struct WebhookCounts {
  std::atomic<int64_t> delivered{0};
  std::atomic<int64_t> failed_attempts{0};  // non-2xx or transport errors (retried later)
  std::atomic<int64_t> given_up{0};         // deliveries marked failed after max_attempts
};

class WebhookDeliverer {
 public:
  explicit WebhookDeliverer(WebhookOptions o);
  ~WebhookDeliverer();
  void start();
  void stop();
  const WebhookCounts& counts() const { return counts_; }

 private:
  void loop();
  // Returns {http status (0 on transport failure), error text ("" on 2xx)}.
  std::pair<int, std::string> post(const std::string& url, const std::string& event,
                                   int64_t delivery_id, const std::string& body);

  WebhookOptions opts_;
  WebhookCounts counts_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
  bool warned_unsigned_ = false;  // the deliverer thread's own
};

}  // namespace jr::ops
