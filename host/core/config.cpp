#include "config.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <cstdlib>
#include <set>
#include <sstream>

#include "cron.hpp"
#include "db_auth.hpp"
#include "util.hpp"

namespace jr {
namespace {

std::string where(const std::string& file, const toml::node& n) {
  const auto& src = n.source();
  return file + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

nlohmann::json to_json(const toml::node& n) {
  if (auto t = n.as_table()) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& [k, v] : *t) o[std::string(k.str())] = to_json(v);
    return o;
  }
  if (auto a = n.as_array()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& v : *a) arr.push_back(to_json(v));
    return arr;
  }
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return i->get();
  if (auto f = n.as_floating_point()) return f->get();
  if (auto b = n.as_boolean()) return b->get();
  std::ostringstream os;
  if (auto d = n.as_date()) os << d->get();
  if (auto t = n.as_time()) os << t->get();
  if (auto dt = n.as_date_time()) os << dt->get();
  return os.str();
}

class Reader {
 public:
  Reader(std::string file, const toml::table& table, std::string section)
      : file_(std::move(file)), table_(table), section_(std::move(section)) {}

  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& what) {
    throw ConfigError(where(file_, n) + ": " + qualified(key) + " " + what);
  }

  std::string qualified(const std::string& key) const {
    return section_.empty() ? "'" + key + "'" : "'" + section_ + "." + key + "'";
  }

  void known(std::set<std::string> keys, const std::set<std::string>& more = {}) {
    keys.insert(more.begin(), more.end());
    for (const auto& [k, v] : table_) {
      std::string key(k.str());
      if (!keys.count(key)) {
        std::string all;
        for (const auto& s : keys) all += (all.empty() ? "" : ", ") + s;
        fail(v, key, "is not a known setting (known: " + all + ")");
      }
    }
  }

  void str(const char* key, std::string& out) {
    if (auto n = table_.get(key)) {
      if (!n->is_string()) fail(*n, key, "must be a string");
      out = n->as_string()->get();
    }
  }
  void str(const char* key, std::optional<std::string>& out) {
    std::string s;
    if (table_.get(key)) {
      str(key, s);
      out = s;
    }
  }
  void boolean(const char* key, bool& out) {
    if (auto n = table_.get(key)) {
      if (!n->is_boolean()) fail(*n, key, "must be true or false");
      out = n->as_boolean()->get();
    }
  }
  void integer(const char* key, int& out, int min, int max) {
    if (auto n = table_.get(key)) {
      if (!n->is_integer()) fail(*n, key, "must be an integer");
      int64_t v = n->as_integer()->get();
      if (v < min || v > max) {
        fail(*n, key,
             "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                 std::to_string(v));
      }
      out = static_cast<int>(v);
    }
  }
  void integer64(const char* key, int64_t& out, int64_t min, int64_t max) {
    if (auto n = table_.get(key)) {
      if (!n->is_integer()) fail(*n, key, "must be an integer");
      int64_t v = n->as_integer()->get();
      if (v < min || v > max) {
        fail(*n, key,
             "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                 std::to_string(v));
      }
      out = v;
    }
  }
  // Seconds as a number or a duration string ("30s", "5m").
  void seconds(const char* key, double& out) {
    if (auto n = table_.get(key)) {
      if (n->is_integer()) {
        out = static_cast<double>(n->as_integer()->get());
      } else if (n->is_floating_point()) {
        out = n->as_floating_point()->get();
      } else if (n->is_string()) {
        try {
          out = parse_duration_seconds(n->as_string()->get());
        } catch (const std::invalid_argument& e) {
          fail(*n, key, e.what());
        }
      } else {
        fail(*n, key, "must be a number of seconds or a duration string like \"30s\"");
      }
      if (out < 0) fail(*n, key, "must not be negative");
    }
  }
  void list(const char* key, std::vector<std::string>& out) {
    if (auto n = table_.get(key)) {
      out.clear();
      if (n->is_string()) {
        out = split_list(n->as_string()->get());
        return;
      }
      if (!n->is_array()) fail(*n, key, "must be an array of strings");
      for (const auto& item : *n->as_array()) {
        if (!item.is_string()) fail(item, key, "must contain only strings");
        out.push_back(item.as_string()->get());
      }
    }
  }

 private:
  std::string file_;
  const toml::table& table_;
  std::string section_;
};

void read_file(const std::string& path, Config& cfg) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    std::string pos = src.begin.line ? ":" + std::to_string(src.begin.line) + ":" +
                                           std::to_string(src.begin.column)
                                     : "";
    throw ConfigError(path + pos + ": " + std::string(e.description()));
  }
  cfg.source = path;
  Reader top(path, root, "");
  top.known({"database_url", "data_dir", "log_level", "worker", "plugins", "cron", "api_token",
             "webhook_secret", "webhooks", "approvals_file", "listen_database_url"},
            {"otel"});
  top.str("listen_database_url", cfg.listen_database_url);
  top.str("approvals_file", cfg.approvals_file);
  top.str("api_token", cfg.api_token);
  top.str("webhook_secret", cfg.webhook_secret);
  if (auto wh = root.get("webhooks")) {
    if (!wh->is_table()) top.fail(*wh, "webhooks", "must be a table ([webhooks] kind = \"url\")");
    for (const auto& [kind, url] : *wh->as_table()) {
      if (!url.is_string()) top.fail(url, "webhooks." + std::string(kind.str()), "must be a URL");
      cfg.webhooks.emplace_back(std::string(kind.str()), url.as_string()->get());
    }
  }
  top.str("database_url", cfg.database_url);
  top.str("data_dir", cfg.data_dir);
  top.str("log_level", cfg.log_level);
  if (auto w = root.get("worker")) {
    if (!w->is_table()) top.fail(*w, "worker", "must be a table ([worker])");
    Reader r(path, *w->as_table(), "worker");
    r.known({"plugins",          "concurrency",        "queues",          "kinds",
             "lease_seconds",    "poll_interval",      "shutdown_grace",  "fetch_batch",
             "completion_batch", "rescue_interval",    "result_ttl",      "failure_ttl",
             "max_attempts",     "priority_aging",     "isolation",       "http",
             "worker_id",        "heartbeat_interval", "max_connections", "pgbouncer",
             "sandbox_batch",    "maintenance"},
            // Limits on host services (docs/sandbox.md).
            {"enqueues_per_job", "log_lines_per_job", "log_bytes_per_job", "progress_interval",
             "idle_timeout", "init_retry_max", "plugin_start_timeout"});
    r.str("http", cfg.http);
    r.str("plugins", cfg.plugins_dir);
    r.integer("concurrency", cfg.concurrency, 1, 4096);
    r.list("queues", cfg.queues);
    r.list("kinds", cfg.kinds);
    r.seconds("lease_seconds", cfg.lease_seconds);
    r.seconds("heartbeat_interval", cfg.heartbeat_seconds);
    r.str("worker_id", cfg.worker_id);
    r.seconds("poll_interval", cfg.poll_interval_seconds);
    r.seconds("shutdown_grace", cfg.shutdown_grace_seconds);
    r.integer("fetch_batch", cfg.fetch_batch, 0, 100000);
    r.integer("sandbox_batch", cfg.sandbox_batch, 1, 256);
    r.integer("completion_batch", cfg.completion_batch, 1, 100000);
    r.seconds("rescue_interval", cfg.rescue_interval_seconds);
    r.seconds("result_ttl", cfg.result_ttl_seconds);
    r.seconds("failure_ttl", cfg.failure_ttl_seconds);
    r.integer("max_attempts", cfg.max_attempts, 1, 1000000);
    r.seconds("priority_aging", cfg.priority_aging_seconds);
    r.str("isolation", cfg.isolation);
    r.integer("max_connections", cfg.max_connections, 1, 1000);
    r.boolean("pgbouncer", cfg.pgbouncer);
    r.boolean("maintenance", cfg.maintenance);
    r.integer64("enqueues_per_job", cfg.enqueues_per_job, 0, 100000000);
    r.integer64("log_lines_per_job", cfg.log_lines_per_job, 0, int64_t{1} << 40);
    r.integer64("log_bytes_per_job", cfg.log_bytes_per_job, 0, int64_t{1} << 40);
    r.seconds("progress_interval", cfg.progress_interval_seconds);
    r.seconds("idle_timeout", cfg.idle_timeout_seconds);
    r.seconds("init_retry_max", cfg.init_retry_max_seconds);
    r.seconds("plugin_start_timeout", cfg.plugin_start_timeout_seconds);
  }
  if (auto o = root.get("otel")) {
    // OpenTelemetry traces (docs/operations.md).
    if (!o->is_table()) top.fail(*o, "otel", "must be a table ([otel])");
    Reader r(path, *o->as_table(), "otel");
    r.known({"endpoint", "service_name", "batch_size", "queue_size", "interval", "timeout",
             "max_retries", "shutdown_timeout"});
    r.str("endpoint", cfg.otel_endpoint);
    r.str("service_name", cfg.otel_service_name);
    r.integer("batch_size", cfg.otel_batch_size, 1, 100000);
    r.integer("queue_size", cfg.otel_queue_size, 1, 10000000);
    r.seconds("interval", cfg.otel_interval_seconds);
    r.seconds("timeout", cfg.otel_timeout_seconds);
    r.integer("max_retries", cfg.otel_max_retries, 0, 100);
    r.seconds("shutdown_timeout", cfg.otel_shutdown_seconds);
  }
  if (auto c = root.get("cron")) {
    if (!c->is_array_of_tables()) top.fail(*c, "cron", "must be an array of tables ([[cron]])");
    for (const auto& entry : *c->as_array()) {
      nlohmann::json j = to_json(entry);
      try {
        cron_entry_from_json(j, "config");
      } catch (const std::exception& e) {
        throw ConfigError(where(path, entry) + ": [[cron]] " + e.what());
      }
      cfg.cron.push_back(std::move(j));
    }
  }
  if (auto p = root.get("plugins")) {
    if (!p->is_table()) top.fail(*p, "plugins", "must be a table of per-plugin tables");
    for (const auto& [name, section] : *p->as_table()) {
      if (!section.is_table()) {
        top.fail(section, "plugins." + std::string(name.str()),
                 "must be a table ([plugins." + std::string(name.str()) + "])");
      }
      cfg.plugin_config[std::string(name.str())] = to_json(section);
    }
  }
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

// The seeds' own environment variables (docs/migrating.md), read before RUNNER_* so those win:
// the domain checker's DB_* / POSTGRES_* connection parts and RQ_QUEUE, the dataset worker's
// WORKER_CONCURRENCY, WORKER_POLL_INTERVAL and WORKER_MAX_RETRIES, Reproq's WORKER_ID.
void apply_seed_aliases(Config& cfg) {
  auto bad = [](const char* var, const std::string& why) {
    return ConfigError(std::string("environment variable ") + var + ": " + why);
  };
  std::vector<std::string> db_parts;  // the names used, recorded only if the URL is made
  auto pick = [&](const char* a, const char* b) -> const char* {
    for (const char* name : {a, b}) {
      if (auto v = env(name)) {
        db_parts.push_back(name);
        return v;
      }
    }
    return nullptr;
  };
  // A database URL from its parts, only when no URL is given (as in the seed: DATABASE_URL
  // "takes precedence if set"). Missing parts keep the seed's defaults except the password
  // (none) and the database name (the user's, as libpq does).
  const char* host = pick("DB_HOST", "POSTGRES_HOST");
  const char* port = pick("DB_PORT", "POSTGRES_PORT");
  const char* user = pick("DB_USER", "POSTGRES_USER");
  const char* password = pick("DB_PASSWORD", "POSTGRES_PASSWORD");
  const char* name = pick("DB_NAME", "POSTGRES_DB");
  if ((host || port || user || password || name) && !env("DATABASE_URL") &&
      !env("RUNNER_DATABASE_URL")) {
    if (port) {
      std::string ps(port);
      if (ps.empty() || ps.size() > 5 || ps.find_first_not_of("0123456789") != std::string::npos ||
          std::stoi(ps) < 1 || std::stoi(ps) > 65535) {
        throw bad(env("DB_PORT") ? "DB_PORT" : "POSTGRES_PORT",
                  "'" + ps.substr(0, 40) + "' is not a port number (1-65535)");
      }
    }
    std::string h = host ? host : "localhost";
    std::string u = "postgresql://" + dbauth::url_encode(user ? user : "postgres");
    if (password) u += ":" + dbauth::url_encode(password);
    u += "@";
    std::string query;
    if (!h.empty() && h[0] == '/') {
      query = "?host=" + dbauth::url_encode(h);  // a unix-socket directory
    } else if (h.find(':') != std::string::npos) {
      u += "[" + h + "]";  // IPv6 literal
    } else {
      u += dbauth::url_encode(h);
    }
    if (port && query.empty()) u += std::string(":") + port;
    if (port && !query.empty()) query += std::string("&port=") + port;
    u += "/" + dbauth::url_encode(name ? name : (user ? user : "postgres")) + query;
    cfg.database_url = u;
    cfg.env_aliases_used.insert(cfg.env_aliases_used.end(), db_parts.begin(), db_parts.end());
  }
  if (auto v = env("RQ_QUEUE")) {
    cfg.queues = split_list(v);
    cfg.env_aliases_used.push_back("RQ_QUEUE");
  }
  if (auto v = env("WORKER_ID")) {
    cfg.worker_id = v;
    cfg.env_aliases_used.push_back("WORKER_ID");
  }
  if (auto v = env("WORKER_CONCURRENCY")) {
    try {
      size_t pos = 0;
      cfg.concurrency = std::stoi(v, &pos);
      if (pos != std::string(v).size()) throw std::invalid_argument(v);
    } catch (const std::exception&) {
      throw bad("WORKER_CONCURRENCY", std::string("'") + v + "' is not an integer");
    }
    cfg.env_aliases_used.push_back("WORKER_CONCURRENCY");
  }
  if (auto v = env("WORKER_POLL_INTERVAL")) {
    try {
      cfg.poll_interval_seconds = parse_duration_seconds(v);
    } catch (const std::invalid_argument& e) {
      throw bad("WORKER_POLL_INTERVAL", e.what());
    }
    cfg.env_aliases_used.push_back("WORKER_POLL_INTERVAL");
  }
  if (auto v = env("WORKER_MAX_RETRIES")) {
    // Retries after the first attempt: WORKER_MAX_RETRIES=3 is four attempts in all.
    try {
      size_t pos = 0;
      int n = std::stoi(v, &pos);
      if (pos != std::string(v).size() || n < 0 || n > 999999) throw std::invalid_argument(v);
      cfg.max_attempts = n + 1;
    } catch (const std::exception&) {
      throw bad("WORKER_MAX_RETRIES",
                std::string("'") + v + "' is not a count of retries (0-999999)");
    }
    cfg.env_aliases_used.push_back("WORKER_MAX_RETRIES");
  }
}

}  // namespace

void apply_env(Config& cfg) {
  auto bad = [](const char* var, const std::string& why) {
    return ConfigError(std::string("environment variable ") + var + ": " + why);
  };
  apply_seed_aliases(cfg);
  if (auto v = env("DATABASE_URL")) cfg.database_url = v;
  if (auto v = env("RUNNER_DATABASE_URL")) cfg.database_url = v;
  if (auto v = env("RUNNER_LISTEN_DATABASE_URL")) cfg.listen_database_url = v;
  auto bool_var = [&](const char* name, bool& out) {
    auto v = env(name);
    if (!v) return;
    std::string s = v;
    if (s == "1" || s == "true" || s == "yes" || s == "on") {
      out = true;
    } else if (s == "0" || s == "false" || s == "no" || s == "off" || s.empty()) {
      out = false;
    } else {
      throw bad(name, "'" + s + "' is not true or false (1/0, yes/no, on/off)");
    }
  };
  bool_var("RUNNER_PGBOUNCER", cfg.pgbouncer);
  bool_var("RUNNER_MAINTENANCE", cfg.maintenance);
  if (auto v = env("RUNNER_DATA_DIR")) cfg.data_dir = v;
  if (auto v = env("RUNNER_APPROVALS")) cfg.approvals_file = v;
  if (auto v = env("RUNNER_LOG_LEVEL")) cfg.log_level = v;
  if (auto v = env("RUNNER_PLUGINS")) cfg.plugins_dir = v;
  if (auto v = env("RUNNER_QUEUES")) cfg.queues = split_list(v);
  if (auto v = env("RUNNER_KINDS")) cfg.kinds = split_list(v);
  if (auto v = env("RUNNER_ISOLATION")) cfg.isolation = v;
  if (auto v = env("RUNNER_HTTP")) cfg.http = v;
  if (auto v = env("RUNNER_API_TOKEN")) cfg.api_token = v;
  if (auto v = env("RUNNER_WEBHOOK_SECRET")) cfg.webhook_secret = v;
  if (auto v = env("RUNNER_WORKER_ID")) cfg.worker_id = v;
  if (auto v = env("RUNNER_OTEL_ENDPOINT")) cfg.otel_endpoint = v;
  auto int_var = [&](const char* var, int& out) {
    if (auto v = env(var)) {
      try {
        size_t pos = 0;
        out = std::stoi(v, &pos);
        if (pos != std::string(v).size()) throw std::invalid_argument(v);
      } catch (const std::exception&) {
        throw bad(var, std::string("'") + v + "' is not an integer");
      }
    }
  };
  auto dur_var = [&](const char* var, double& out) {
    if (auto v = env(var)) {
      try {
        out = parse_duration_seconds(v);
      } catch (const std::invalid_argument& e) {
        throw bad(var, e.what());
      }
    }
  };
  int_var("RUNNER_CONCURRENCY", cfg.concurrency);
  int_var("RUNNER_FETCH_BATCH", cfg.fetch_batch);
  int_var("RUNNER_SANDBOX_BATCH", cfg.sandbox_batch);
  int_var("RUNNER_MAX_CONNECTIONS", cfg.max_connections);
  dur_var("RUNNER_LEASE_SECONDS", cfg.lease_seconds);
  dur_var("RUNNER_HEARTBEAT_INTERVAL", cfg.heartbeat_seconds);
  dur_var("RUNNER_POLL_INTERVAL", cfg.poll_interval_seconds);
  dur_var("RUNNER_SHUTDOWN_GRACE", cfg.shutdown_grace_seconds);
  dur_var("RUNNER_RESCUE_INTERVAL", cfg.rescue_interval_seconds);
  dur_var("RUNNER_RESULT_TTL", cfg.result_ttl_seconds);
  dur_var("RUNNER_FAILURE_TTL", cfg.failure_ttl_seconds);
  int_var("RUNNER_MAX_ATTEMPTS", cfg.max_attempts);
  dur_var("RUNNER_PRIORITY_AGING", cfg.priority_aging_seconds);
}

Config load_config(const std::string& path) {
  Config cfg;
  if (!path.empty()) read_file(path, cfg);
  apply_env(cfg);
  return cfg;
}

void validate(const Config& cfg) {
  if (cfg.concurrency < 1 || cfg.concurrency > 4096) {
    throw ConfigError("concurrency must be between 1 and 4096, got " +
                      std::to_string(cfg.concurrency));
  }
  if (cfg.lease_seconds < 1) throw ConfigError("lease_seconds must be at least 1");
  if (cfg.heartbeat_seconds < 0 ||
      (cfg.heartbeat_seconds > 0 &&
       (cfg.heartbeat_seconds < 0.1 || cfg.heartbeat_seconds >= cfg.lease_seconds))) {
    std::ostringstream m;
    m << "heartbeat_interval must be at least 100ms and shorter than lease_seconds ("
      << cfg.lease_seconds << "s), got " << cfg.heartbeat_seconds << "s";
    throw ConfigError(m.str());
  }
  if (cfg.poll_interval_seconds <= 0) throw ConfigError("poll_interval must be positive");
  if (cfg.fetch_batch < 0) throw ConfigError("fetch_batch must not be negative");
  if (cfg.sandbox_batch < 1 || cfg.sandbox_batch > 256) {
    throw ConfigError("sandbox_batch must be between 1 and 256, got " +
                      std::to_string(cfg.sandbox_batch));
  }
  if (cfg.max_connections < 0 || cfg.max_connections > 1000) {
    throw ConfigError("max_connections must be between 1 and 1000, got " +
                      std::to_string(cfg.max_connections));
  }
  if (cfg.rescue_interval_seconds <= 0) throw ConfigError("rescue_interval must be positive");
  if (cfg.max_attempts < 1) throw ConfigError("max_attempts must be at least 1");
  if (cfg.idle_timeout_seconds < 0.1) throw ConfigError("idle_timeout must be at least 0.1s");
  if (cfg.init_retry_max_seconds < 0.1) throw ConfigError("init_retry_max must be at least 0.1s");
  if (cfg.otel_interval_seconds < 0.001 || cfg.otel_timeout_seconds < 0.001) {
    throw ConfigError("otel interval and timeout must be at least 1ms");
  }
  if (cfg.otel_service_name.empty()) throw ConfigError("otel service_name must not be empty");
  if (cfg.plugin_start_timeout_seconds < 0.1 || cfg.plugin_start_timeout_seconds > 3600) {
    throw ConfigError("plugin_start_timeout must be between 0.1s and 1h");
  }
}

}  // namespace jr
