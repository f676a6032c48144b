#include "domain_check/src/config.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace domain_check {
namespace {

using nlohmann::json;

std::invalid_argument bad(const std::string& key, const std::string& why) {
  return std::invalid_argument("domain_check config: '" + key + "' " + why);
}

// Numbers may arrive as JSON numbers (TOML, typed env overrides) or numeric strings.
double get_number(const json& c, const std::string& key, double def, double lo, double hi) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return def;
  double v = 0;
  if (it->is_number()) {
    v = it->get<double>();
  } else if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    size_t used = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) throw bad(key, "must be a number, got \"" + s + "\"");
  } else {
    throw bad(key, "must be a number");
  }
  if (!std::isfinite(v) || v < lo || v > hi) {
    throw bad(key, "must be between " + json(lo).dump() + " and " + json(hi).dump());
  }
  return v;
}

int get_int(const json& c, const std::string& key, int def, int lo, int hi) {
  double v = get_number(c, key, def, lo, hi);
  if (v != std::floor(v)) throw bad(key, "must be a whole number");
  return static_cast<int>(v);
}

bool get_bool(const json& c, const std::string& key, bool def) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return def;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer() && (it->get<int64_t>() == 0 || it->get<int64_t>() == 1)) {
    return it->get<int64_t>() == 1;
  }
  if (it->is_string()) {
    std::string s = it->get<std::string>();
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
    if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  }
  throw bad(key, "must be a boolean (true/false)");
}

std::string get_string(const json& c, const std::string& key, const std::string& def) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return def;
  if (!it->is_string()) throw bad(key, "must be a string");
  return it->get<std::string>();
}

std::vector<std::string> get_string_list(const json& c, const std::string& key,
                                         std::vector<std::string> def) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return def;
  if (!it->is_array()) throw bad(key, "must be an array of strings");
  std::vector<std::string> out;
  for (const auto& e : *it) {
    if (!e.is_string() || e.get_ref<const std::string&>().empty()) {
      throw bad(key, "must contain only non-empty strings");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return std::tolower(ch); });
  return s;
}

void parse_whois_servers(const json& c, Settings& s) {
  s.whois_servers = default_whois_servers();
  for (auto& [tld, srv] : s.whois_servers) srv.not_found = s.whois_not_found_patterns;
  auto it = c.find("whois_servers");
  if (it == c.end() || it->is_null()) return;
  if (!it->is_object()) throw bad("whois_servers", "must be a table of tld = \"host:port\"");
  for (const auto& [raw_tld, v] : it->items()) {
    std::string tld = lower(raw_tld);
    if (!tld.empty() && tld[0] == '.') tld.erase(0, 1);
    std::string key = "whois_servers." + raw_tld;
    if (tld.empty()) throw bad(key, "has an empty TLD");
    std::string server;
    WhoisServer ws;
    ws.not_found = s.whois_not_found_patterns;
    if (v.is_string()) {
      server = v.get<std::string>();
    } else if (v.is_object()) {
      server = get_string(v, "server", "");
      ws.not_found = get_string_list(v, "not_found", ws.not_found);
    } else {
      throw bad(key, "must be \"host:port\" or {server = \"host:port\", not_found = [...]}");
    }
    if (server.empty()) {  // "" disables a built-in entry
      s.whois_servers.erase(tld);
      continue;
    }
    try {
      auto [host, port] = split_host_port(server, 43);
      ws.host = host;
      ws.port = port;
    } catch (const std::invalid_argument& e) {
      throw bad(key, e.what());
    }
    s.whois_servers[tld] = ws;
  }
}

}  // namespace

std::map<std::string, WhoisServer> default_whois_servers() {
  return {
      {"com", {"whois.verisign-grs.com", 43, {}}},
      {"net", {"whois.verisign-grs.com", 43, {}}},
      {"org", {"whois.publicinterestregistry.org", 43, {}}},
  };
}

std::vector<std::string> default_not_found_patterns() {
  return {"No match for",    "NOT FOUND",    "No Data Found",     "No entries found",
          "No Object Found", "Status: free", "Status: AVAILABLE", "is available for registration"};
}

std::pair<std::string, uint16_t> split_host_port(const std::string& text, uint16_t default_port) {
  std::string host = text;
  std::string port_text;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) throw std::invalid_argument("unbalanced '[' in " + text);
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':') throw std::invalid_argument("junk after ']' in " + text);
      port_text = text.substr(close + 2);
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) throw std::invalid_argument("empty host in \"" + text + "\"");
  uint16_t port = default_port;
  if (!port_text.empty() || text.back() == ':') {
    size_t used = 0;
    long p = 0;
    try {
      p = std::stol(port_text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != port_text.size() || p < 1 || p > 65535) {
      throw std::invalid_argument("bad port in \"" + text + "\"");
    }
    port = static_cast<uint16_t>(p);
  }
  return {host, port};
}

std::string resolver_csv(const Settings& s) {
  std::string out;
  size_t start = 0;
  const std::string& list = s.dns_server;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string item =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) {
      auto [host, port] = split_host_port(item, static_cast<uint16_t>(s.dns_port));
      unsigned char buf[16];
      bool v6 = inet_pton(AF_INET6, host.c_str(), buf) == 1;
      if (!v6 && inet_pton(AF_INET, host.c_str(), buf) != 1) {
        throw std::invalid_argument("resolver address \"" + host + "\" is not an IP address");
      }
      if (!out.empty()) out += ',';
      out += (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Settings parse_settings(const json& c) {
  if (!c.is_object()) throw std::invalid_argument("domain_check config must be a table/object");
  Settings s;
  s.database_url = get_string(c, "database_url", "");
  if (s.database_url.empty()) {
    throw bad("database_url", "is required (the host passes the runner's database by default)");
  }
  s.dns_server = get_string(c, "dns_server", "");
  s.dns_port = get_int(c, "dns_port", 53, 1, 65535);
  s.dns_timeout = get_number(c, "dns_timeout", 3.0, 0.01, 600);
  s.dns_tries = get_int(c, "dns_tries", 2, 1, 10);
  try {
    resolver_csv(s);
  } catch (const std::invalid_argument& e) {
    throw bad("dns_server", e.what());
  }
  s.whois_timeout = get_number(c, "whois_timeout", 5.0, 0.01, 600);
  s.whois_max_bytes =
      static_cast<size_t>(get_int(c, "whois_max_bytes", 65536, 1024, 16 * 1024 * 1024));
  s.whois_not_found_patterns =
      get_string_list(c, "whois_not_found_patterns", default_not_found_patterns());
  s.whois_error_patterns =
      get_string_list(c, "whois_error_patterns",
                      {"limit exceeded", "quota exceeded", "too many requests", "try again later"});
  parse_whois_servers(c, s);
  s.max_concurrent_checks = get_int(c, "max_concurrent_checks", 10, 1, 1000);
  s.max_domains_per_job = get_int(c, "max_domains_per_job", 1000, 1, 1000000);
  s.enable_idle_recheck = get_bool(c, "enable_idle_recheck", true);
  s.idle_threshold_seconds = get_number(c, "idle_threshold_seconds", 60, 0, 86400 * 365);
  s.recheck_poll_interval = get_number(c, "recheck_poll_interval", 30, 0.01, 86400 * 365);
  s.recheck_interval_days = get_int(c, "recheck_interval_days", 7, 0, 36500);
  s.recheck_batch_size = get_int(c, "recheck_batch_size", 50, 1, 100000);
  s.recheck_max_batches = get_int(c, "recheck_max_batches", 10, 1, 100000);
  s.db_pool_size = get_int(c, "db_pool_size", 8, 1, 1000);
  return s;
}

nlohmann::json manifest() {
  Settings d;  // the defaults
  json env = {
      {"DOMAIN_CHECKER_DNS_SERVER", "dns_server"},
      {"DOMAIN_CHECKER_DNS_PORT", "dns_port"},
      {"DOMAIN_CHECKER_DNS_TIMEOUT", "dns_timeout"},
      {"DOMAIN_CHECKER_DNS_TRIES", "dns_tries"},
      {"DOMAIN_CHECKER_WHOIS_TIMEOUT", "whois_timeout"},
      {"DOMAIN_CHECKER_DATABASE_URL", "database_url"},
      {"WORKER_MAX_CONCURRENT_CHECKS", "max_concurrent_checks"},
      {"WORKER_ENABLE_IDLE_RECHECK", "enable_idle_recheck"},
      {"WORKER_IDLE_THRESHOLD_SECONDS", "idle_threshold_seconds"},
      {"WORKER_RECHECK_INTERVAL_DAYS", "recheck_interval_days"},
      {"WORKER_RECHECK_BATCH_SIZE", "recheck_batch_size"},
      {"WORKER_RECHECK_MAX_BATCHES", "recheck_max_batches"},
      {"WORKER_RECHECK_POLL_INTERVAL", "recheck_poll_interval"},
  };
  json defaults = {
      {"dns_server", d.dns_server},
      {"dns_port", d.dns_port},
      {"dns_timeout", d.dns_timeout},
      {"dns_tries", d.dns_tries},
      {"whois_timeout", d.whois_timeout},
      {"whois_max_bytes", d.whois_max_bytes},
      {"whois_not_found_patterns", default_not_found_patterns()},
      {"max_concurrent_checks", d.max_concurrent_checks},
      {"max_domains_per_job", d.max_domains_per_job},
      {"enable_idle_recheck", d.enable_idle_recheck},
      {"idle_threshold_seconds", d.idle_threshold_seconds},
      {"recheck_poll_interval", d.recheck_poll_interval},
      {"recheck_interval_days", d.recheck_interval_days},
      {"recheck_batch_size", d.recheck_batch_size},
      {"recheck_max_batches", d.recheck_max_batches},
      {"db_pool_size", d.db_pool_size},
  };
  return {
      // Its own role and schema (plugin_domain_check) on the runner's database.
      {"database", true},
      {"sandbox", {{"network", "full"}, {"writable", json::array()}, {"memory_mb", 256}}},
      {"env", env},
      // The host's idle service reads these: the defaults here, overridden by the plugin's
      // config keys named in "config_keys" (after env overrides), and "enabled_key" = false
      // means the host need not call idle() at all.
      {"idle",
       {{"threshold_seconds", d.idle_threshold_seconds},
        {"poll_interval_seconds", d.recheck_poll_interval},
        {"enabled_key", "enable_idle_recheck"},
        {"config_keys",
         {{"threshold_seconds", "idle_threshold_seconds"},
          {"poll_interval_seconds", "recheck_poll_interval"}}}}},
      {"config_defaults", defaults},
  };
}

}  // namespace domain_check
