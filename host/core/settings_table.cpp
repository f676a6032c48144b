#include "settings_table.hpp"

#include <sstream>
#include <stdexcept>

#include "util.hpp"

namespace jr {

const std::vector<Setting>& settings() {
  // clang-format off
  static const std::vector<Setting> table = {
    // --- top level: the database and what every command reads
    {"", "database_url", "RUNNER_DATABASE_URL", "--database", &Config::database_url,
     "\"postgresql://jobs:secret@db.internal/jobs\"",
     "the queue's PostgreSQL (also --dsn); unset: the managed local cluster in data_dir",
     0, 0, "DATABASE_URL", true},
    {"", "listen_database_url", "RUNNER_LISTEN_DATABASE_URL", "", &Config::listen_database_url,
     "\"postgresql://jobs:secret@db.internal:5432/jobs\"",
     "a direct connection for LISTEN when database_url is PgBouncer; unset: database_url "
     "(with pgbouncer = true: polling every poll_interval)"},
    {"", "data_dir", "RUNNER_DATA_DIR", "--data-dir", &Config::data_dir,
     "\"/var/lib/jobrunner\"",
     "the managed cluster's home (PostgreSQL in data_dir/pg); default /var/lib/jobrunner as "
     "root, else ~/.local/share/jobrunner",
     0, 0, "", true},
    {"", "log_level", "RUNNER_LOG_LEVEL", "--log-level", &Config::log_level, "\"info\"",
     "debug, info, warn or error", 0, 0, "", true},
    {"", "approvals_file", "RUNNER_APPROVALS", "", &Config::approvals_file,
     "\"/var/lib/jobrunner/approvals.json\"",
     "the operator's plugin approvals (runner plugins approve); default: approvals.json in the "
     "data dir"},
    {"", "api_token", "RUNNER_API_TOKEN", "", &Config::api_token, "\"\"",
     "Bearer token the HTTP API's POSTs require (with X-Jobrunner-CSRF: 1); empty: they answer "
     "403"},
    {"", "webhook_secret", "RUNNER_WEBHOOK_SECRET", "", &Config::webhook_secret, "\"\"",
     "HMAC-SHA256 key signing webhook deliveries; empty: sent unsigned (said at start-up)"},

    // --- [worker]: running jobs
    {"worker", "plugins", "RUNNER_PLUGINS", "--plugins", &Config::plugins_dir,
     "\"/usr/lib/jobrunner/plugins\"", "directory of plugins to serve"},
    {"worker", "concurrency", "RUNNER_CONCURRENCY", "--concurrency", &Config::concurrency, "10",
     "job slots in this process", 1, 4096},
    {"worker", "queues", "RUNNER_QUEUES", "--queues", &Config::queues, "[\"default\", \"mail:*\"]",
     "serve only these queues (globs; a,b in a variable or flag); empty: every queue"},
    {"worker", "kinds", "RUNNER_KINDS", "--kinds", &Config::kinds, "[]",
     "serve only these job kinds; empty: every kind of the loaded plugins"},
    {"worker", "lease_seconds", "RUNNER_LEASE_SECONDS", "--lease-seconds", &Config::lease_seconds,
     "30", "how long a claim holds a job without renewal (at least 1 s)"},
    {"worker", "heartbeat_interval", "RUNNER_HEARTBEAT_INTERVAL", "--heartbeat-seconds",
     &Config::heartbeat_seconds, "\"0\"",
     "how often held leases are renewed; 0: a quarter of the lease"},
    {"worker", "worker_id", "RUNNER_WORKER_ID", "--worker-id", &Config::worker_id, "\"\"",
     "identity in leases and the registry (also WORKER_ID); empty: host-pid-random"},
    {"worker", "poll_interval", "RUNNER_POLL_INTERVAL", "--poll-interval",
     &Config::poll_interval_seconds, "\"1s\"",
     "how often to look for jobs when no NOTIFY came (LISTEN/NOTIFY wakes the runner at once)"},
    {"worker", "shutdown_grace", "RUNNER_SHUTDOWN_GRACE", "--shutdown-grace",
     &Config::shutdown_grace_seconds, "\"30s\"",
     "time running jobs get on SIGTERM before they are released"},
    {"worker", "rescue_interval", "RUNNER_RESCUE_INTERVAL", "--rescue-interval",
     &Config::rescue_interval_seconds, "\"5s\"",
     "how often the maintenance leader looks for expired leases"},
    {"worker", "result_ttl", "RUNNER_RESULT_TTL", "", &Config::result_ttl_seconds, "\"1d\"",
     "how long completed jobs are kept (a job's own result_ttl wins)"},
    {"worker", "failure_ttl", "RUNNER_FAILURE_TTL", "", &Config::failure_ttl_seconds, "\"30d\"",
     "how long dead letters are kept (a job's own failure_ttl wins)"},
    {"worker", "max_attempts", "RUNNER_MAX_ATTEMPTS", "", &Config::max_attempts, "25",
     "attempts of a job when neither the job nor its kind says", 1, 1000000},
    {"worker", "priority_aging", "RUNNER_PRIORITY_AGING", "--priority-aging-factor",
     &Config::priority_aging_seconds, "\"60s\"",
     "waiting time per priority point gained; 0: off"},
    {"worker", "vacuum_dead_rows", "RUNNER_VACUUM_DEAD_ROWS", "", &Config::vacuum_dead_rows,
     "50000",
     "the maintenance leader vacuums jr_jobs once this many more dead rows than its last vacuum "
     "left have piled up (autovacuum looks a minute apart; a long drain slows without); 0: off",
     0, 1000000000},
    {"worker", "isolation", "RUNNER_ISOLATION", "--isolation", &Config::isolation,
     "\"sandbox\"",
     "sandbox: plugins run in confined worker processes; none: in the runner ([plugins.<name>] "
     "isolation = \"none\" trusts one plugin)"},
    {"worker", "fetch_batch", "RUNNER_FETCH_BATCH", "--fetch-batch", &Config::fetch_batch, "0",
     "most jobs per claim; 0: the free slots", 0, 100000},
    {"worker", "completion_batch", "", "", &Config::completion_batch, "500",
     "most outcomes written per statement", 1, 100000},
    {"worker", "sandbox_batch", "RUNNER_SANDBOX_BATCH", "--sandbox-batch", &Config::sandbox_batch,
     "16",
     "short jobs handed to a sandboxed worker at once while many wait (each its own attempt); "
     "1: one per round trip",
     1, 256},
    {"worker", "sandbox_warm_workers", "RUNNER_SANDBOX_WARM_WORKERS", "--sandbox-warm-workers",
     &Config::sandbox_warm_workers, "0",
     "sandboxed workers a plugin starts with (at most its share of concurrency); the rest start "
     "once a job has waited as long as a worker's start takes; 0: as many as CPUs",
     0, 4096},
    {"worker", "max_connections", "RUNNER_MAX_CONNECTIONS", "--max-connections",
     &Config::max_connections, "4",
     "the runner's own database connections (plugins' pools apart); default 4, 5 with http; "
     "too few for the services asked for: exit 2",
     1, 1000},
    {"worker", "pgbouncer", "RUNNER_PGBOUNCER", "--pgbouncer", &Config::pgbouncer, "false",
     "database_url is PgBouncer in transaction mode: no prepared statements, no session "
     "settings"},
    {"worker", "maintenance", "RUNNER_MAINTENANCE", "--no-maintenance", &Config::maintenance,
     "true",
     "stand in the election for the maintenance services (rescuer, scheduler, cron, pruner); "
     "off: only run jobs, and another runner on the database must keep it on"},
    {"worker", "http", "RUNNER_HTTP", "--http", &Config::http, "\"\"",
     "serve /metrics, /healthz, /readyz, the JSON API and the dashboard on [ADDR:]PORT "
     "(loopback unless ADDR is given); empty: off"},
    // Limits on what one job attempt (or idle-hook call) may ask of the host (docs/sandbox.md).
    {"worker", "enqueues_per_job", "", "", &Config::enqueues_per_job, "1000",
     "host->enqueue calls per attempt; more are refused (-1)", 0, 100000000},
    {"worker", "log_lines_per_job", "", "", &Config::log_lines_per_job, "10000",
     "log lines per attempt; past this or the bytes, one line says so and the rest is dropped",
     0, int64_t{1} << 40},
    {"worker", "log_bytes_per_job", "", "", &Config::log_bytes_per_job, "1048576",
     "log bytes per attempt", 0, int64_t{1} << 40},
    {"worker", "progress_interval", "", "", &Config::progress_interval_seconds, "\"250ms\"",
     "progress is written at most this often per job"},
    {"worker", "idle_timeout", "", "", &Config::idle_timeout_seconds, "\"60s\"",
     "an idle-hook call is stopped (its worker killed) after this"},
    {"worker", "init_retry_max", "", "", &Config::init_retry_max_seconds, "\"60s\"",
     "a plugin whose init fails is retried, backing off from 1 s up to this; its jobs wait"},
    {"worker", "plugin_start_timeout", "", "", &Config::plugin_start_timeout_seconds, "\"30s\"",
     "a sandboxed plugin's load and init in a new worker; past it the worker is killed and the "
     "start retried"},

    // --- [otel]: a span per job attempt over OTLP/HTTP JSON (docs/operations.md)
    {"otel", "endpoint", "RUNNER_OTEL_ENDPOINT", "--otel-endpoint", &Config::otel_endpoint,
     "\"http://collector:4318\"", "the collector's base URL; empty: no export"},
    {"otel", "service_name", "", "", &Config::otel_service_name, "\"jobrunner\"",
     "the spans' service.name"},
    {"otel", "batch_size", "", "", &Config::otel_batch_size, "512", "spans per request", 1,
     100000},
    {"otel", "queue_size", "", "", &Config::otel_queue_size, "2048",
     "spans waiting to be sent; beyond it new ones are dropped (counted)", 1, 10000000},
    {"otel", "interval", "", "", &Config::otel_interval_seconds, "\"1s\"",
     "a partial batch waits at most this"},
    {"otel", "timeout", "", "", &Config::otel_timeout_seconds, "\"5s\"", "one export request"},
    {"otel", "max_retries", "", "", &Config::otel_max_retries, "3",
     "more tries of a failed request", 0, 100},
    {"otel", "shutdown_timeout", "", "", &Config::otel_shutdown_seconds, "\"5s\"",
     "the flush of waiting spans at shutdown"},
  };
  // clang-format on
  return table;
}

std::string setting_name(const Setting& s) {
  return *s.section ? std::string(s.section) + "." + s.key : std::string(s.key);
}

namespace {

int64_t parse_integer(const std::string& text, int64_t min, int64_t max) {
  int64_t v = 0;
  size_t pos = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos == 0 || pos != text.size())
    throw std::invalid_argument("'" + text + "' is not an integer");
  if (v < min || v > max) {
    throw std::invalid_argument("must be between " + std::to_string(min) + " and " +
                                std::to_string(max) + ", got " + text);
  }
  return v;
}

bool parse_bool(const std::string& s) {
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off" || s.empty()) return false;
  throw std::invalid_argument("'" + s + "' is not true or false (1/0, yes/no, on/off)");
}

template <class... F>
struct Overload : F... {
  using F::operator()...;
};
template <class... F>
Overload(F...) -> Overload<F...>;

}  // namespace

void set_from_text(Config& cfg, const Setting& s, const std::string& text) {
  std::visit(
      Overload{
          [&](std::string Config::*m) { cfg.*m = text; },
          [&](std::optional<std::string> Config::*m) { cfg.*m = text; },
          [&](int Config::*m) { cfg.*m = static_cast<int>(parse_integer(text, s.min, s.max)); },
          [&](int64_t Config::*m) { cfg.*m = parse_integer(text, s.min, s.max); },
          [&](double Config::*m) { cfg.*m = parse_duration_seconds(text); },
          [&](bool Config::*m) { cfg.*m = parse_bool(text); },
          [&](std::vector<std::string> Config::*m) { cfg.*m = split_list(text); },
      },
      s.field);
}

bool flag_sets(const Config& defaults, const Setting& s) {
  return !(defaults.*std::get<bool Config::*>(s.field));
}

std::string config_reference() {
  std::ostringstream out;
  out << "# The runner's settings (runner config reference): each with the value shown (the\n"
         "# default, or an example where there is none), its environment variable and flag,\n"
         "# and what it does. Precedence: flag, then variable, then this file, then default.\n\n";
  std::string section = "-";
  for (const Setting& s : settings()) {
    if (section != s.section) {
      section = s.section;
      if (!section.empty()) out << "\n[" << section << "]\n";
    }
    std::string names;
    if (*s.env) names += s.env;
    if (*s.env_alias) names += std::string(names.empty() ? "" : ", ") + s.env_alias;
    if (*s.flag) names += std::string(names.empty() ? "" : ", ") + s.flag;
    std::string comment = (names.empty() ? "" : names + ": ") + s.doc;
    // Wrapped at 100 columns, words kept whole.
    std::string line = "#";
    std::istringstream words(comment);
    for (std::string w; words >> w;) {
      if (line.size() + 1 + w.size() > 100) {
        out << line << "\n";
        line = "#";
      }
      line += " " + w;
    }
    out << line << "\n" << s.key << " = " << s.shown << "\n";
  }
  return out.str();
}

}  // namespace jr
