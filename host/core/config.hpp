// Runner configuration: a TOML file, overridden by environment variables, overridden by flags
// (the CLI applies flags last). Every field documents its unit and default. Loading errors name
// the file, the line and the key (ConfigError).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace jr {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Config {
  std::string source;  // the file read, "" when none

  // Database. Unset: the managed local PostgreSQL in data_dir.
  std::optional<std::string> database_url;  // DATABASE_URL / database_url
  std::string data_dir;                     // RUNNER_DATA_DIR / data_dir; "" = default
  // RUNNER_LISTEN_DATABASE_URL / listen_database_url: a direct connection (not through
  // PgBouncer) for LISTEN; unset with pgbouncer: the worker polls every poll_interval.
  std::optional<std::string> listen_database_url;
  std::string log_level = "info";  // RUNNER_LOG_LEVEL / log_level
  // Plugin approvals (`runner plugins approve`): RUNNER_APPROVALS / approvals_file; "" = the
  // default, approvals.json in the data dir (host/sandbox/approvals.hpp).
  std::string approvals_file;

  // [worker]
  std::string plugins_dir;             // RUNNER_PLUGINS / plugins; "" = none
  int concurrency = 10;                // RUNNER_CONCURRENCY: job slots in this process
  std::vector<std::string> queues;     // RUNNER_QUEUES: empty = every queue
  std::vector<std::string> kinds;      // RUNNER_KINDS: empty = every loaded kind
  double lease_seconds = 30;           // RUNNER_LEASE_SECONDS
  double heartbeat_seconds = 0;        // RUNNER_HEARTBEAT_INTERVAL: lease renewal; 0 = lease/4
  std::string worker_id;               // RUNNER_WORKER_ID / WORKER_ID: "" = host-pid-random
  double poll_interval_seconds = 1.0;  // RUNNER_POLL_INTERVAL: fallback when no NOTIFY
  double shutdown_grace_seconds = 30;  // RUNNER_SHUTDOWN_GRACE
  int fetch_batch = 0;                 // RUNNER_FETCH_BATCH: max jobs per claim; 0 = auto
  // RUNNER_SANDBOX_BATCH: short jobs handed to a sandboxed worker at once while the local queue
  // is deep (Executor::run_batch); 1 = one job per round trip.
  int sandbox_batch = 16;
  // Sandboxed workers each plugin starts with its pool (RUNNER_SANDBOX_WARM_WORKERS); the others
  // start when a job has waited for a free worker as long as a start takes. 0 = the CPUs.
  int sandbox_warm_workers = 0;
  int completion_batch = 500;            // max outcomes written per statement
  double rescue_interval_seconds = 5;    // RUNNER_RESCUE_INTERVAL: expired-lease scan period
  double result_ttl_seconds = 86400;     // RUNNER_RESULT_TTL: keep completed jobs (1 day)
  double failure_ttl_seconds = 2592000;  // RUNNER_FAILURE_TTL: keep dead letters (30 days)
  int max_attempts = 25;                 // RUNNER_MAX_ATTEMPTS: when neither job nor kind says
  double priority_aging_seconds = 60;    // RUNNER_PRIORITY_AGING: waiting per point; 0 = off
  int vacuum_dead_rows = 50000;          // RUNNER_VACUUM_DEAD_ROWS: vacuum jr_jobs after; 0 = off
  std::string isolation = "sandbox";     // RUNNER_ISOLATION: sandbox | none (per plugin too)
  // RUNNER_MAX_CONNECTIONS / max_connections: the runner's own database connections (plugins'
  // pools not included); 0 = the default, 4 (5 with http). host/store/db_budget.hpp.
  int max_connections = 0;
  // RUNNER_PGBOUNCER / pgbouncer / --pgbouncer: database_url goes through PgBouncer in
  // transaction pooling mode: no named prepared statements, no session settings (every command).
  bool pgbouncer = false;
  // RUNNER_MAINTENANCE / maintenance / --no-maintenance: take part in the election of the
  // runner that runs the maintenance services (rescuer, scheduler, cron, pruner, ...). Off for
  // runners that should only execute jobs; at least one runner per database must keep it on.
  bool maintenance = true;
  // Limits on host services, per job attempt or idle call (docs/sandbox.md).
  int64_t enqueues_per_job = 1000;          // host->enqueue calls; more are refused
  int64_t log_lines_per_job = 10000;        // log lines; past either budget, one line says
  int64_t log_bytes_per_job = 1048576;      // so and the rest is dropped
  double progress_interval_seconds = 0.25;  // progress_interval: min time between writes
  double idle_timeout_seconds = 60;         // idle_timeout: deadline of one idle-hook call
  double init_retry_max_seconds = 60;       // init_retry_max: longest pause between starts
  // plugin_start_timeout: a sandboxed plugin's load and init in a new worker (its constructors
  // and init) must finish within this, else the worker is killed and the start retried.
  double plugin_start_timeout_seconds = 30;

  // Seed environment variables read as aliases (docs/migrating.md), e.g. "WORKER_CONCURRENCY";
  // the worker logs them at start so an operator sees where a setting came from.
  std::vector<std::string> env_aliases_used;

  // [[cron]]: periodic jobs (name, schedule, kind, payload, queue, timezone, backfill).
  std::vector<nlohmann::json> cron;

  // [plugins.<name>]: each plugin's own section, handed to it as JSON.
  nlohmann::json plugin_config = nlohmann::json::object();

  // Operations (host/ops).
  std::string http;            // RUNNER_HTTP / [worker] http: "ADDR:PORT" or "PORT"; "" = off
  std::string api_token;       // RUNNER_API_TOKEN / api_token: Bearer token for POST endpoints
  std::string webhook_secret;  // RUNNER_WEBHOOK_SECRET / webhook_secret: HMAC key
  std::vector<std::pair<std::string, std::string>> webhooks;  // [webhooks] kind = "url"

  // [otel]: OpenTelemetry traces, a span per job attempt over OTLP/HTTP JSON (docs/operations.md,
  // host/ops/otel_exporter.hpp). No endpoint: no exporter.
  std::string otel_endpoint;  // RUNNER_OTEL_ENDPOINT / endpoint / --otel-endpoint: base URL
  std::string otel_service_name = "jobrunner";  // service_name: resource service.name
  int otel_batch_size = 512;                    // batch_size: spans per request
  int otel_queue_size = 2048;                   // queue_size: spans waiting; beyond: dropped
  double otel_interval_seconds = 1;             // interval: a partial batch waits at most this
  double otel_timeout_seconds = 5;              // timeout: one export request
  int otel_max_retries = 3;                     // max_retries: more tries of a failed request
  double otel_shutdown_seconds = 5;             // shutdown_timeout: the flush at shutdown
};

// Reads `path` (if non-empty) then applies the environment. Throws ConfigError.
Config load_config(const std::string& path);

// Applies RUNNER_* / DATABASE_URL variables to `cfg`. Throws ConfigError naming the variable.
void apply_env(Config& cfg);

// Checks ranges; throws ConfigError naming the setting.
void validate(const Config& cfg);

}  // namespace jr
