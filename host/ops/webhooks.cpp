#include "webhooks.hpp"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <chrono>
#include <cmath>

#include "log.hpp"
#include "store.hpp"

namespace jr::ops {

std::string hmac_sha256_hex(const std::string& key, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 0xf];
  }
  return out;
}

WebhookDeliverer::WebhookDeliverer(WebhookOptions o) : opts_(std::move(o)) {}

WebhookDeliverer::~WebhookDeliverer() { stop(); }

void WebhookDeliverer::start() {
  static std::once_flag curl_once;
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  // Publish the per-kind URLs before the engine (started right after) can finish a job: the
  // outbox trigger reads jr_webhooks when the job completes. The loop publishes again (the
  // same rows), and keeps trying if the database does not answer now.
  if (!opts_.kinds_served.empty() || !opts_.per_kind.empty()) {
    try {
      auto set = [&](Store& s) { s.WebhookUrlsSet(opts_.kinds_served, opts_.per_kind); };
      if (opts_.shared) {
        opts_.shared->with(set);
      } else {
        set(*Store::open(opts_.database_url));
      }
    } catch (const StoreError&) {
    }
  }
  thread_ = std::thread([this] { loop(); });
}

void WebhookDeliverer::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

namespace {
size_t discard_body(char*, size_t size, size_t n, void*) { return size * n; }
}  // namespace

std::pair<int, std::string> WebhookDeliverer::post(const std::string& url, const std::string& event,
                                                   int64_t delivery_id, const std::string& body) {
  CURL* c = curl_easy_init();
  if (!c) return {0, "curl_easy_init failed"};
  struct curl_slist* h = nullptr;
  h = curl_slist_append(h, "Content-Type: application/json");
  if (!opts_.secret.empty()) {
    h = curl_slist_append(
        h, ("X-Jobrunner-Signature: sha256=" + hmac_sha256_hex(opts_.secret, body)).c_str());
  } else if (!warned_unsigned_) {
    warned_unsigned_ = true;
    log::warn("delivering webhook notifications unsigned: no webhook_secret is set",
              {{"delivery_id", delivery_id}, {"url", log::redact(url)}});
  }
  h = curl_slist_append(h, ("X-Jobrunner-Event: " + event).c_str());
  h = curl_slist_append(h, ("X-Jobrunner-Delivery: " + std::to_string(delivery_id)).c_str());
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "jobrunner-webhooks/1");
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.timeout_seconds * 1000));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
  CURLcode rc = curl_easy_perform(c);
  long status = 0;
  std::string err;
  if (rc != CURLE_OK) {
    err = curl_easy_strerror(rc);
  } else {
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) err = "receiver answered HTTP " + std::to_string(status);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  return {static_cast<int>(status), err};
}

void WebhookDeliverer::loop() {
  std::unique_ptr<Store> own;
  // Each statement on the shared connection in turn; a POST never holds it.
  auto db = [&](auto&& fn) -> decltype(auto) {
    if (opts_.shared) return opts_.shared->with(fn);
    if (own && own->LostWhileIdle()) own.reset();
    if (!own) own = Store::open(opts_.database_url);
    return fn(*own);
  };
  bool published = opts_.kinds_served.empty() && opts_.per_kind.empty();
  int delay_ms = 250;
  while (!stop_) {
    int wait_ms = static_cast<int>(opts_.poll_seconds * 1000);
    try {
      if (!published) {
        db([&](Store& s) { s.WebhookUrlsSet(opts_.kinds_served, opts_.per_kind); });
        published = true;
      }
      {
        auto due = db([&](Store& s) {
          return s.WebhookClaim(opts_.owner, 20, opts_.timeout_seconds * 3 + 5);
        });
        for (const auto& d : due) {
          // Named variables, not a structured binding: the lambdas below capture them, which
          // clang before 16 (clang-tidy's parser) refuses.
          const std::pair<int, std::string> posted = post(d.url, d.event, d.id, d.body);
          const int status = posted.first;
          const std::string& err = posted.second;
          if (err.empty()) {
            db([&](Store& s) { s.WebhookDelivered(d.id, status); });
            ++counts_.delivered;
            continue;
          }
          int n = d.attempts + 1;  // failures so far, this one included
          double retry =
              std::min(opts_.retry_max_seconds, opts_.retry_base_seconds * std::pow(2.0, n - 1));
          db([&](Store& s) { s.WebhookFailed(d.id, status, err, retry, opts_.max_attempts); });
          ++counts_.failed_attempts;
          nlohmann::json f = {{"delivery_id", d.id},
                              {"job_id", d.job_id},
                              {"url", log::redact(d.url)},
                              {"attempt", n},
                              {"error", err}};
          if (n >= opts_.max_attempts) {
            ++counts_.given_up;
            log::error("webhook delivery failed for good", std::move(f));
          } else {
            f["retry_in_s"] = retry;
            log::warn("webhook delivery failed; will retry", std::move(f));
          }
        }
        if (due.size() == 20) wait_ms = 0;  // more may be due
      }
      delay_ms = 250;
    } catch (const StoreError& e) {
      log::error("webhooks: database error; retrying",
                 {{"error", e.what()}, {"retry_in_ms", delay_ms}});
      if (e.transient()) own.reset();
      wait_ms = delay_ms;
      delay_ms = std::min(delay_ms * 2, 10000);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stop_.load(); });
  }
}

}  // namespace jr::ops
