#include "ops.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bounds.hpp"
#include "clock.hpp"
#include "log.hpp"
#include "server.hpp"
#include "ui_publish.hpp"
#include "webhooks.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

namespace jr::ops {
namespace {

double unix_now() { return unix_seconds(); }

// Unix time this process started: its start in clock ticks after boot (/proc/self/stat, field
// 22) plus the boot time (/proc/stat btime). Falls back to the time of static initialisation,
// which is before main() too.
const double kStaticInitTime = unix_now();
double process_start_time() {
  std::ifstream stat("/proc/self/stat");
  std::string text;
  std::getline(stat, text);
  auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  std::ifstream proc_stat("/proc/stat");
  double boot = 0;
  for (std::string key; proc_stat >> key;) {
    if (key == "btime") {
      proc_stat >> boot;
      break;
    }
    proc_stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  long ticks = sysconf(_SC_CLK_TCK);
  if (close == std::string::npos || boot <= 0 || ticks <= 0) return kStaticInitTime;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i < 22 && rest >> field; ++i) {
  }
  unsigned long long start_ticks = 0;
  if (!(rest >> start_ticks)) return kStaticInitTime;
  return boot + static_cast<double>(start_ticks) / static_cast<double>(ticks);
}

const std::vector<double> kDurationBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                              2.5,   5,    10,    30,   60,  300,  900, 3600};
const std::vector<double> kWaitBuckets = {0.01, 0.05, 0.1, 0.25, 0.5, 1,    2.5,   5,
                                          10,   30,   60,  300,  900, 3600, 21600, 86400};

}  // namespace

const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::completed:
      return "completed";
    case Outcome::retry:
      return "retried";
    case Outcome::discard:
      return "discarded";
    case Outcome::snooze:
      return "snoozed";
    case Outcome::cancelled:
      return "cancelled";
    case Outcome::release:
      return "released";
  }
  return "unknown";
}

Operations::Operations(OpsConfig cfg) : cfg_(std::move(cfg)) {
  finished_ = &registry_.counter(
      "jobrunner_jobs_finished_total",
      "Job attempts finished by this runner, by kind, queue and outcome (completed, retried, "
      "discarded = dead letter, snoozed, cancelled, released).",
      {"kind", "queue", "outcome"});
  duration_ = &registry_.histogram("jobrunner_job_duration_seconds",
                                   "Time an attempt ran in its handler, by kind.", {"kind"},
                                   kDurationBuckets);
  wait_ = &registry_.histogram("jobrunner_job_wait_seconds",
                               "Time from enqueue to the start of the attempt, by kind.", {"kind"},
                               kWaitBuckets);
  pool_ = std::make_unique<StorePool>(cfg_.database_url, 4,
                                      static_cast<size_t>(std::max(0, cfg_.http_connections)));
  add_collectors();
}

Operations::~Operations() { stop(); }

void Operations::job_finished(const ClaimedJob& job, Outcome outcome, double run_seconds) {
  try {
    finished_->inc({job.kind, job.queue, outcome_name(outcome)});
    if (RunnerPublisher* p = publisher_ptr_.load()) p->count(outcome_name(outcome));
    duration_->observe({job.kind}, run_seconds);
    if (job.started_at > 0 && job.created_at > 0) {
      wait_->observe({job.kind}, std::max(0.0, job.started_at - job.created_at));
    }
  } catch (const std::exception& e) {
    log::warn("metrics update failed", {{"error", e.what()}});
  }
}

void Operations::add_collectors() {
  registry_.collector([this](TextWriter& w) {
    Engine* e = engine_.load();
    w.family("jobrunner_running_jobs", "gauge", "Jobs executing in this runner's slots now.");
    w.sample("jobrunner_running_jobs", {}, e ? e->running_jobs() : 0);
    const EngineStats* st = e ? &e->stats() : nullptr;
    auto stat = [&](const std::atomic<int64_t> EngineStats::*m) {
      return st ? static_cast<double>((st->*m).load()) : 0.0;
    };
    w.family("jobrunner_retries_total", "counter",
             "Failed attempts this runner scheduled for a retry.");
    w.sample("jobrunner_retries_total", {}, stat(&EngineStats::retried));
    const Maintenance* m = maintenance_.load();
    double rescued = m ? static_cast<double>(m->counts().rescued.load()) : 0;
    double rescued_dlq = m ? static_cast<double>(m->counts().rescued_to_dlq.load()) : 0;
    w.family("jobrunner_dead_letters_total", "counter",
             "Jobs moved to the dead letter queue: by this runner's attempts (source=attempt) or "
             "by its rescuer after a lost lease (source=rescue).");
    w.sample("jobrunner_dead_letters_total", {{"source", "attempt"}},
             stat(&EngineStats::discarded));
    w.sample("jobrunner_dead_letters_total", {{"source", "rescue"}}, rescued_dlq);
    w.family("jobrunner_rescues_total", "counter",
             "Jobs with an expired lease recovered by this runner while it led maintenance, by "
             "result (retryable or discarded).");
    w.sample("jobrunner_rescues_total", {{"result", "retryable"}}, rescued);
    w.sample("jobrunner_rescues_total", {{"result", "discarded"}}, rescued_dlq);
    w.family("jobrunner_database_errors_total", "counter",
             "Database operations of the engine that failed (each was retried).");
    w.sample("jobrunner_database_errors_total", {}, stat(&EngineStats::db_errors));
    w.family("jobrunner_fenced_outcomes_total", "counter",
             "Outcomes rejected because the job's lease was no longer this runner's.");
    w.sample("jobrunner_fenced_outcomes_total", {}, stat(&EngineStats::rejected));
    w.family("jobrunner_maintenance_leader", "gauge",
             "1 while this runner leads the maintenance services.");
    w.sample("jobrunner_maintenance_leader", {}, m && m->counts().leader.load() ? 1 : 0);
  });
  registry_.collector([this](TextWriter& w) {
    std::string json;
    {
      std::lock_guard<std::mutex> lock(depth_mu_);
      int64_t now = steady_ms();
      if (now - depth_at_ms_ >= 1000) {
        try {
          depth_json_ = pool_->with([](Store& s) { return s.QueueDepths(); });
          depth_at_ms_ = now;
        } catch (const StoreError& e) {
          log::warn("metrics: queue depths unavailable", {{"error", e.what()}});
        }
      }
      json = depth_json_;
    }
    w.family("jobrunner_queue_depth", "gauge",
             "Jobs in the database per queue and state (waiting, scheduled, available, running, "
             "retryable); refreshed at most once a second.");
    auto d = nlohmann::json::parse(json, nullptr, false);
    if (d.is_object()) {
      for (auto& [queue, states] : d.items()) {
        for (const char* s : {"waiting", "scheduled", "available", "running", "retryable"}) {
          w.sample("jobrunner_queue_depth", {{"queue", queue}, {"state", s}}, states.value(s, 0.0));
        }
      }
    }
  });
  registry_.collector([this](TextWriter& w) {
    if (!webhooks_) return;
    const auto& c = webhooks_->counts();
    w.family("jobrunner_webhook_deliveries_total", "counter",
             "Webhook POSTs by this runner, by outcome (delivered, failed = will retry, "
             "given_up = max attempts reached).");
    w.sample("jobrunner_webhook_deliveries_total", {{"outcome", "delivered"}},
             static_cast<double>(c.delivered.load()));
    w.sample("jobrunner_webhook_deliveries_total", {{"outcome", "failed"}},
             static_cast<double>(c.failed_attempts.load()));
    w.sample("jobrunner_webhook_deliveries_total", {{"outcome", "given_up"}},
             static_cast<double>(c.given_up.load()));
  });
  registry_.collector([](TextWriter& w) {
    if (!has_sandbox_stats_provider()) return;
    auto stats = sandbox_stats();
    w.family("jobrunner_sandbox_workers", "gauge", "Live sandbox worker processes per plugin.");
    for (const auto& p : stats) {
      w.sample("jobrunner_sandbox_workers", {{"plugin", p.plugin}}, static_cast<double>(p.workers));
    }
    w.family("jobrunner_sandbox_restarts_total", "counter",
             "Sandbox worker restarts per plugin and reason.");
    for (const auto& p : stats) {
      for (const auto& [reason, n] : p.restarts) {
        w.sample("jobrunner_sandbox_restarts_total", {{"plugin", p.plugin}, {"reason", reason}},
                 static_cast<double>(n));
      }
    }
  });
  registry_.collector([](TextWriter& w) {
    static const double started = process_start_time();
    w.family("jobrunner_build_info", "gauge", "Build information; the value is always 1.");
    w.sample("jobrunner_build_info", {{"version", JR_VERSION}}, 1);
    w.family("jobrunner_start_time_seconds", "gauge", "Unix time this runner process started.");
    w.sample("jobrunner_start_time_seconds", {}, started);
  });
}

void Operations::start(Engine& engine) {
  engine_ = &engine;
  // Every runner delivers webhooks: a per-job URL (`runner enqueue --webhook`) may come from any
  // enqueuer, whatever this runner's config says. Without a webhook_secret the POSTs go out
  // unsigned (no X-Jobrunner-Signature), said here and on the first unsigned delivery.
  {
    WebhookOptions wo;
    wo.database_url = cfg_.database_url;
    wo.shared = &engine.services_store();
    wo.owner = engine.worker_id();
    wo.secret = cfg_.webhook_secret;
    wo.kinds_served = engine.kinds();
    wo.per_kind = cfg_.webhooks;
    wo.retry_base_seconds = cfg_.webhook_retry_base_seconds;
    if (wo.secret.empty()) {
      // Nothing configured: look for per-job deliveries once a second rather than 4 times.
      if (wo.per_kind.empty()) wo.poll_seconds = 1.0;
      log::write(
          wo.per_kind.empty() ? log::Level::info : log::Level::warn,
          "no webhook_secret is set: webhook notifications are delivered unsigned (no "
          "X-Jobrunner-Signature header); set RUNNER_WEBHOOK_SECRET or webhook_secret to sign "
          "them",
          {{"webhooks_configured", wo.per_kind.size()}});
    }
    webhooks_ = std::make_unique<WebhookDeliverer>(std::move(wo));
    webhooks_->start();
  }
  {
    // The dashboard's view of this runner (plugins, sandbox state, refused plugins) and the
    // attempts that ended per minute, written every few seconds.
    PublisherOptions po;
    po.database_url = cfg_.database_url;
    po.shared = &engine.services_store();
    po.worker_id = engine.worker_id();
    po.interval_seconds = std::clamp(cfg_.lease_seconds / 3, 1.0, 5.0);
    publisher_ = std::make_unique<RunnerPublisher>(
        po,
        [this] {
          Engine* e = engine_.load();
          return nlohmann::json{{"version", JR_VERSION},
                                {"running", e ? e->running_jobs() : 0},
                                {"http_port", http_port()},
                                {"plugins", plugin_state()},
                                {"refused", refused_plugins_json()}};
        },
        [this](RunnerPublisher& p) {
          const Maintenance* m = maintenance_.load();
          if (!m) return;
          int64_t r = m->counts().rescued.load(), d = m->counts().rescued_to_dlq.load();
          p.count("retried", r - rescued_seen_);
          p.count("discarded", d - rescued_dlq_seen_);
          rescued_seen_ = r;
          rescued_dlq_seen_ = d;
        });
    publisher_ptr_ = publisher_.get();
    publisher_->start();
  }
  if (!cfg_.http.empty()) {
    ServerOptions so;
    so.listen = cfg_.http;
    so.api_token = cfg_.api_token;
    so.live_seconds = cfg_.lease_seconds;
    server_ = std::make_unique<Server>(so, *pool_, registry_, [this]() -> Readiness {
      Readiness r;
      Engine* e = engine_.load();
      if (!e) return {false, "starting", {}};
      if (e->stopping()) return {false, "shutting down", {}};
      if (e->kinds().empty()) return {false, "no plugin loaded: no job kinds to serve", {}};
      // Not ready while any plugin is not (its kinds are not served); every plugin's state
      // and the plugins refused at start-up are in the body.
      nlohmann::json plugins = nlohmann::json::array();
      for (const auto& p : e->plugin_status()) {
        nlohmann::json j = {{"name", p.name}, {"file", p.file}, {"ready", p.ready}};
        if (!p.ready) {
          // Plugin text (its init error) on an unauthenticated endpoint: bounded, redacted.
          std::string cut;
          std::string why = log::redact(bounds::cut(p.reason, 1024, cut));
          j["reason"] = why;
          if (r.ready) {
            r.ready = false;
            r.reason = "plugin " + p.name + " is not ready: " + why;
          }
        }
        plugins.push_back(std::move(j));
      }
      nlohmann::json refused = nlohmann::json::array();
      for (const auto& p : refused_plugins()) {  // refused at start-up (plugin_loader.hpp)
        nlohmann::json j = {{"name", p.name}, {"file", p.file}, {"reason", log::redact(p.reason)}};
        if (!p.kind.empty()) j["kind"] = p.kind;
        refused.push_back(std::move(j));
      }
      r.details = {{"plugins", plugins}, {"refused_plugins", refused}};
      return r;
    });
    server_->start();
  }
}

void Operations::stop() {
  if (server_) server_->stop();
  if (webhooks_) webhooks_->stop();
  if (publisher_) publisher_->stop();
}

int Operations::http_port() const { return server_ ? server_->port() : 0; }

}  // namespace jr::ops
