// The per-domain decision (DNS, then WHOIS for NXDOMAIN candidates) and the bounded concurrent
// run over one job's names. A Checker holds only read-only settings: one instance serves every
// job concurrently; each check_all() call starts its own threads (at most max_concurrent_checks),
// each with its own DnsClient.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "domain_check/src/config.hpp"
#include "domain_check/src/dns_client.hpp"

namespace domain_check {

struct DomainResult {
  std::string input;       // as given in the payload
  std::string name;        // normalised; "" when invalid
  std::string status;      // available | registered | invalid | unknown
  std::string method;      // dns | whois | "" (invalid)
  std::string reason;      // short, stable: "timeout", "SERVFAIL", "WHOIS unreachable", ...
  std::string checked_at;  // ISO 8601 UTC, millisecond precision
  double latency_ms = 0;
  nlohmann::json details = nlohmann::json::object();

  nlohmann::json to_json() const;
  // Makes every text field valid UTF-8 without NUL (utf8_text.hpp), so that dumping and
  // storing this result cannot fail whatever bytes a server sent.
  void make_storable();
};

using ProgressFn = std::function<void(size_t done, size_t total)>;

class Checker {
 public:
  explicit Checker(const Settings& s);

  // One result per input, in input order. Names equal after normalisation are checked once.
  // progress is called (serialised) from the worker threads; cancelled is polled often.
  std::vector<DomainResult> check_all(const std::vector<std::string>& inputs,
                                      const CancelFn& cancelled, const ProgressFn& progress) const;

  // Checks one valid, normalised name with the caller's DnsClient.
  DomainResult check_one(DnsClient& dns, const std::string& name, const CancelFn& cancelled) const;

  DnsOptions dns_options() const;

 private:
  void confirm_with_whois(DnsClient& dns, const std::string& name, DomainResult& r,
                          const CancelFn& cancelled) const;
  const Settings& s_;
};

std::string iso8601_now();

}  // namespace domain_check
