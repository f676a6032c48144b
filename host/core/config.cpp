#include "config.hpp"

#include <toml++/toml.h>

#include <cctype>
#include <cstdlib>
#include <set>
#include <sstream>
#include <type_traits>
#include <variant>

#include "cron.hpp"
#include "db_auth.hpp"
#include "settings_table.hpp"
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
  // One setting of the table (settings_table.hpp), by the type of its field.
  void setting(const Setting& st, Config& cfg) {
    std::visit(
        [&](auto member) {
          auto& out = cfg.*member;
          using T = std::decay_t<decltype(out)>;
          if constexpr (std::is_same_v<T, std::string> ||
                        std::is_same_v<T, std::optional<std::string>>) {
            str(st.key, out);
          } else if constexpr (std::is_same_v<T, int>) {
            integer(st.key, out, static_cast<int>(st.min), static_cast<int>(st.max));
          } else if constexpr (std::is_same_v<T, int64_t>) {
            integer64(st.key, out, st.min, st.max);
          } else if constexpr (std::is_same_v<T, double>) {
            seconds(st.key, out);
          } else if constexpr (std::is_same_v<T, bool>) {
            boolean(st.key, out);
          } else {
            list(st.key, out);
          }
        },
        st.field);
  }
  // Every setting of the table in `section`.
  void settings_of(const std::string& section, Config& cfg) {
    for (const Setting& st : settings()) {
      if (section == st.section) setting(st, cfg);
    }
  }
  // The table's keys of `section`, and `more`, are the known keys.
  void known_settings(const std::string& section, const std::set<std::string>& more = {}) {
    std::set<std::string> keys = more;
    for (const Setting& st : settings()) {
      if (section == st.section) keys.insert(st.key);
    }
    known(keys);
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
  // The settings that are one value come from the table (settings_table.hpp); the rest by hand.
  top.known_settings("", {"worker", "plugins", "cron", "webhooks", "otel"});
  top.settings_of("", cfg);
  if (auto wh = root.get("webhooks")) {
    if (!wh->is_table()) top.fail(*wh, "webhooks", "must be a table ([webhooks] kind = \"url\")");
    for (const auto& [kind, url] : *wh->as_table()) {
      if (!url.is_string()) top.fail(url, "webhooks." + std::string(kind.str()), "must be a URL");
      cfg.webhooks.emplace_back(std::string(kind.str()), url.as_string()->get());
    }
  }
  for (const char* section : {"worker", "otel"}) {
    auto t = root.get(section);
    if (!t) continue;
    if (!t->is_table()) {
      top.fail(*t, section, std::string("must be a table ([") + section + "])");
    }
    Reader r(path, *t->as_table(), section);
    r.known_settings(section);
    r.settings_of(section, cfg);
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
  apply_seed_aliases(cfg);
  for (const Setting& st : settings()) {
    for (const char* var : {st.env_alias, st.env}) {  // the alias first: the RUNNER_ name wins
      if (!*var) continue;
      const char* v = env(var);  // an empty variable is unset
      if (v == nullptr) continue;
      try {
        set_from_text(cfg, st, v);
      } catch (const std::invalid_argument& e) {
        throw ConfigError(std::string("environment variable ") + var + ": " + e.what());
      }
    }
  }
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
