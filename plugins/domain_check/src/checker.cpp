#include "domain_check/src/checker.hpp"

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "domain_check/src/domain_name.hpp"
#include "domain_check/src/utf8_text.hpp"
#include "domain_check/src/whois_client.hpp"

namespace domain_check {

using Clock = std::chrono::steady_clock;

constexpr size_t kWhoisExcerptBytes = 200;  // of the decoded (UTF-8) reply

std::string iso8601_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

nlohmann::json DomainResult::to_json() const {
  nlohmann::json j = {{"input", input},
                      {"name", name.empty() ? nlohmann::json(nullptr) : nlohmann::json(name)},
                      {"status", status},
                      {"method", method.empty() ? nlohmann::json(nullptr) : nlohmann::json(method)},
                      {"reason", reason.empty() ? nlohmann::json(nullptr) : nlohmann::json(reason)},
                      {"checked_at", checked_at},
                      {"latency_ms", latency_ms},
                      {"details", details}};
  return j;
}

void DomainResult::make_storable() {
  for (std::string* s : {&input, &name, &status, &method, &reason, &checked_at}) {
    if (!is_valid_utf8(*s) || s->find('\0') != std::string::npos) *s = to_utf8(*s);
  }
  domain_check::make_storable(details);
}

Checker::Checker(const Settings& s) : s_(s) {}

DnsOptions Checker::dns_options() const {
  DnsOptions o;
  o.servers_csv = resolver_csv(s_);
  o.timeout_s = s_.dns_timeout;
  o.tries = s_.dns_tries;
  return o;
}

void Checker::confirm_with_whois(DnsClient& dns, const std::string& name, DomainResult& r,
                                 const CancelFn& cancelled) const {
  std::string tld = name.substr(name.rfind('.') + 1);
  auto it = s_.whois_servers.find(tld);
  if (it == s_.whois_servers.end()) {
    // Nothing to confirm with: NXDOMAIN is the best evidence there is.
    r.status = "available";
    r.method = "dns";
    r.details["confirmed"] = false;
    r.details["whois"] = "no WHOIS server configured for ." + tld;
    return;
  }
  const WhoisServer& ws = it->second;
  r.method = "whois";
  r.details["whois_server"] = ws.host + ":" + std::to_string(ws.port);
  auto t0 = Clock::now();
  ResolvedHost addr = dns.resolve(ws.host, ws.port, cancelled);
  if (addr.addrs.empty()) {
    r.status = "unknown";
    r.reason = "WHOIS server unresolvable";
    r.details["error"] = addr.error;
    return;
  }
  WhoisReply reply = whois_query(addr, name, s_.whois_timeout, s_.whois_max_bytes, cancelled);
  r.details["whois_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  switch (reply.status) {
    case WhoisReply::kOk:
      break;
    case WhoisReply::kTimeout:
      r.status = "unknown";
      r.reason = "WHOIS timeout";
      r.details["error"] = reply.detail;
      return;
    case WhoisReply::kUnreachable:
      r.status = "unknown";
      r.reason = "WHOIS unreachable";
      r.details["error"] = reply.detail;
      return;
    case WhoisReply::kCancelled:
      r.status = "unknown";
      r.reason = "cancelled";
      return;
    case WhoisReply::kError:
      r.status = "unknown";
      r.reason = "WHOIS error";
      r.details["error"] = reply.detail;
      return;
  }
  // The reply is whatever bytes the server sent (Latin-1 is common): decode it, then cut on a
  // character boundary, so the excerpt is valid UTF-8 (it is stored as jsonb).
  r.details["whois_excerpt"] = utf8_prefix(to_utf8(reply.text), kWhoisExcerptBytes);
  if (reply.text.find_first_not_of(" \t\r\n") == std::string::npos) {
    r.status = "unknown";
    r.reason = "WHOIS empty reply";
    return;
  }
  for (const auto& p : s_.whois_error_patterns) {
    if (contains_nocase(reply.text, p)) {
      r.status = "unknown";
      r.reason = "WHOIS refused";
      r.details["matched"] = p;
      return;
    }
  }
  for (const auto& p : ws.not_found) {
    if (contains_nocase(reply.text, p)) {
      r.status = "available";
      r.details["confirmed"] = true;
      r.details["matched"] = p;
      return;
    }
  }
  r.status = "registered";  // a record came back
}

DomainResult Checker::check_one(DnsClient& dns, const std::string& name,
                                const CancelFn& cancelled) const {
  auto t0 = Clock::now();
  DomainResult r;
  r.input = name;
  r.name = name;
  DnsResult d = dns.lookup(name, cancelled);
  r.details["dns"] = outcome_name(d.outcome);
  r.details["dns_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  r.method = "dns";
  switch (d.outcome) {
    case DnsOutcome::kDelegated:
      r.status = "registered";
      if (!d.ns.empty()) r.details["ns"] = d.ns;
      if (!d.soa.empty()) r.details["soa"] = d.soa;
      break;
    case DnsOutcome::kExistsNoNs:
      r.status = "registered";
      r.reason = "exists in DNS without NS records";
      break;
    case DnsOutcome::kNxDomain:
      confirm_with_whois(dns, name, r, cancelled);
      break;
    case DnsOutcome::kServFail:
    case DnsOutcome::kRefused:
    case DnsOutcome::kTimeout:
    case DnsOutcome::kUnreachable:
    case DnsOutcome::kCancelled:
      r.status = "unknown";
      r.reason = outcome_name(d.outcome);
      break;
    case DnsOutcome::kError:
      r.status = "unknown";
      r.reason = "DNS error";
      r.details["error"] = d.detail;
      break;
  }
  r.checked_at = iso8601_now();
  r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  return r;
}

std::vector<DomainResult> Checker::check_all(const std::vector<std::string>& inputs,
                                             const CancelFn& cancelled,
                                             const ProgressFn& progress) const {
  std::vector<DomainResult> results(inputs.size());
  std::map<std::string, size_t> first;  // normalised name -> index of its first occurrence
  std::vector<size_t> work;
  for (size_t i = 0; i < inputs.size(); ++i) {
    NameCheck nc = check_domain_name(inputs[i]);
    if (!nc.valid) {
      DomainResult& r = results[i];
      r.input = inputs[i];
      r.status = "invalid";
      r.reason = "name " + nc.reason;
      r.checked_at = iso8601_now();
      continue;
    }
    results[i].name = nc.name;
    if (first.emplace(nc.name, i).second) work.push_back(i);
  }
  std::atomic<size_t> next{0};
  std::mutex progress_mu;
  size_t done = 0;
  auto worker = [&] {
    std::unique_ptr<DnsClient> dns;
    std::string init_error;
    try {
      dns = std::make_unique<DnsClient>(dns_options());
    } catch (const std::exception& e) {
      init_error = e.what();
    }
    for (size_t k = next++; k < work.size(); k = next++) {
      size_t i = work[k];
      std::string name = results[i].name;
      DomainResult r;
      if (cancelled && cancelled()) {
        r.name = name;
        r.status = "unknown";
        r.reason = "cancelled";
        r.checked_at = iso8601_now();
      } else if (!dns) {
        r.name = name;
        r.status = "unknown";
        r.reason = "DNS error";
        r.details["error"] = init_error;
        r.checked_at = iso8601_now();
      } else {
        try {
          r = check_one(*dns, name, cancelled);
        } catch (const std::exception& e) {
          r = DomainResult{};
          r.name = name;
          r.status = "unknown";
          r.reason = "internal error";
          r.details["error"] = e.what();
          r.checked_at = iso8601_now();
        }
      }
      r.input = inputs[i];
      results[i] = std::move(r);
      if (progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        progress(++done, work.size());
      }
    }
  };
  size_t nthreads = std::min<size_t>(static_cast<size_t>(s_.max_concurrent_checks), work.size());
  std::vector<std::thread> threads;
  threads.reserve(nthreads);
  for (size_t t = 0; t < nthreads; ++t) {
    try {
      threads.emplace_back(worker);
    } catch (const std::system_error&) {
      // Out of threads or address space (a sandbox limit): go on with the ones we have, or in
      // this thread when none could start. Never leave a started thread unjoined.
      break;
    }
  }
  if (threads.empty()) worker();
  for (auto& t : threads) t.join();
  // Duplicates share the first occurrence's result, keeping their own input text.
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (results[i].status.empty()) {
      DomainResult copy = results[first.at(results[i].name)];
      copy.input = inputs[i];
      results[i] = std::move(copy);
    }
  }
  for (auto& r : results) r.make_storable();
  return results;
}

}  // namespace domain_check
