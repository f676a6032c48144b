// Operations wiring for one runner process: job metrics (as the engine's observer), the HTTP
// server and the webhook deliverer. The webhook deliverer and the dashboard publisher run on the
// engine's shared services connection; the HTTP server's connections are capped by
// OpsConfig::http_connections. cli_worker.cpp creates one, hands observer() to the engine,
// calls start(engine) before Engine::run() and stop() after it.
//
// Threading: job_finished() is called from slot threads; everything it touches is thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine.hpp"
#include "metrics.hpp"

namespace jr::ops {

class Server;
class StorePool;
class WebhookDeliverer;
class RunnerPublisher;

struct OpsConfig {
  std::string database_url;
  std::string http;  // "" = no HTTP server
  std::string api_token;
  std::string webhook_secret;
  std::vector<std::pair<std::string, std::string>> webhooks;  // per kind
  double webhook_retry_base_seconds = 1.0;
  double lease_seconds = 30;  // the dashboard hides runners silent this long
  // Cap on the HTTP server's connections (API and dashboard together; the runner's budget,
  // db_budget.hpp); 0: no cap.
  int http_connections = 0;
};

class Operations : public EngineObserver {
 public:
  explicit Operations(OpsConfig cfg);
  ~Operations() override;

  // Starts the HTTP server (throws std::runtime_error when it cannot bind) and the webhook
  // deliverer. `engine` must outlive stop().
  void start(Engine& engine);
  void stop();
  Registry& registry() { return registry_; }
  int http_port() const;

  void job_finished(const ClaimedJob& job, Outcome outcome, double run_seconds) override;
  void maintenance_started(const Maintenance* m) override { maintenance_ = m; }

 private:
  void add_collectors();

  OpsConfig cfg_;
  Registry registry_;
  CounterVec* finished_ = nullptr;
  HistogramVec* duration_ = nullptr;
  HistogramVec* wait_ = nullptr;
  std::atomic<Engine*> engine_{nullptr};
  std::atomic<const Maintenance*> maintenance_{nullptr};
  std::unique_ptr<StorePool> pool_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<WebhookDeliverer> webhooks_;
  // Publishes this runner's details and finished attempts for the dashboard (ui_publish.hpp).
  std::unique_ptr<RunnerPublisher> publisher_;
  std::atomic<RunnerPublisher*> publisher_ptr_{nullptr};
  int64_t rescued_seen_ = 0, rescued_dlq_seen_ = 0;  // publisher thread only
  // Queue depths from the database, refreshed at most once a second.
  std::mutex depth_mu_;
  int64_t depth_at_ms_ = 0;
  std::string depth_json_ = "{}";
};

const char* outcome_name(Outcome o);

}  // namespace jr::ops
