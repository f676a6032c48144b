// Settings of the domain_check plugin: parsed once in init() from the plugin's config section
// (TOML [plugins.domain_check] as JSON, with the manifest's env overrides already applied by the
// host), then read-only. Safe to share between threads after parse_settings() returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace domain_check {

// One WHOIS server (RFC 3912: TCP, query line, reply until the server closes).
struct WhoisServer {
  std::string host;  // name or IP literal
  uint16_t port = 43;
  std::vector<std::string> not_found;  // case-insensitive substrings meaning "no such domain"
};

struct Settings {
  std::string database_url;  // application database; defaults to the runner's
  // DNS (c-ares). dns_server: comma-separated resolver addresses, each optionally with a port
  // ("127.0.0.1", "10.0.0.1:5353", "[::1]:53"); empty = the system resolvers.
  std::string dns_server;
  int dns_port = 53;         // port for entries of dns_server that give none
  double dns_timeout = 3.0;  // seconds, whole lookup of one name (all tries)
  int dns_tries = 2;         // UDP tries within dns_timeout
  // WHOIS.
  double whois_timeout = 5.0;  // seconds, connect + query + reply
  size_t whois_max_bytes = 65536;
  std::map<std::string, WhoisServer> whois_servers;   // TLD (lowercase, no dot) -> server
  std::vector<std::string> whois_not_found_patterns;  // default "not found" patterns
  std::vector<std::string> whois_error_patterns;      // reply means "try later" (rate limit)
  // Jobs.
  int max_concurrent_checks = 10;  // checks in flight inside one job
  int max_domains_per_job = 1000;  // larger payloads are a permanent error
  // Idle recheck.
  bool enable_idle_recheck = true;
  double idle_threshold_seconds = 60;  // read by the host (manifest "idle")
  double recheck_poll_interval = 30;   // seconds; read by the host (manifest "idle")
  int recheck_interval_days = 7;       // a domain checked longer ago than this is stale
  int recheck_batch_size = 50;         // domains per enqueued job
  int recheck_max_batches = 10;        // jobs enqueued per idle call at most
  int db_pool_size = 8;                // pooled PostgreSQL connections
};

// Built-in defaults for the WHOIS map and patterns (overridable per key in the config).
std::map<std::string, WhoisServer> default_whois_servers();
std::vector<std::string> default_not_found_patterns();

// Parses and validates the config object. Throws std::invalid_argument naming the key.
Settings parse_settings(const nlohmann::json& config);

// The plugin manifest: sandbox policy, env overrides, idle-hook timing, config defaults.
nlohmann::json manifest();

// "host:port" (or "[v6]:port", or "host" with default_port) -> host, port. Throws
// std::invalid_argument.
std::pair<std::string, uint16_t> split_host_port(const std::string& text, uint16_t default_port);

// The c-ares server list ("ip:port,..." with IPv6 in brackets) for settings.dns_server; empty
// when the system resolvers are used.
std::string resolver_csv(const Settings& s);

}  // namespace domain_check
