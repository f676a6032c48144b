// SSRF-guarded HTTP fetcher of the scan plugin (libcurl). Every hop of a redirect chain is
// validated: scheme http/https, no credentials, the host resolved once through a Resolver, every
// resolved address classified (ip_guard.hpp) unless allowlisted, and the connection pinned to the
// checked address with CURLOPT_RESOLVE so a second DNS answer (rebinding) is never used. curl
// never resolves names and never follows redirects itself; an open-socket callback re-checks the
// address curl actually connects to. Proxies from the environment are ignored.
//
// A Fetcher is immutable after construction except for set_connect_observer (call before use);
// fetch() may run concurrently on several threads (each call uses its own curl handle).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "scan/src/ip_guard.hpp"

namespace scan {

// kValidation: the URL or an address it leads to is refused (ERROR_VALIDATION).
// kCrawl: the fetch itself failed: DNS, connect, timeout, too large, too many redirects.
// kCancelled: the caller's cancel predicate became true.
enum class FetchErrorKind { kValidation, kCrawl, kCancelled };

// transient(): a kCrawl failure that may well not happen again (a timeout, a refused or reset
// connection, a DNS server failure, an HTTP 5xx): worth another attempt. Everything else (4xx,
// too large, too many redirects, wrong content type, a refusal) would fail the same way.
class FetchError : public std::runtime_error {
 public:
  FetchError(FetchErrorKind kind, const std::string& msg, bool transient = false)
      : std::runtime_error(msg), kind_(kind), transient_(transient) {}
  FetchErrorKind kind() const { return kind_; }
  bool transient() const { return transient_; }

 private:
  FetchErrorKind kind_;
  bool transient_;
};

// Resolves a host name to its addresses, once per hop. Throws FetchError(kCrawl) on failure.
class Resolver {
 public:
  virtual ~Resolver() = default;
  virtual std::vector<IpAddress> resolve(const std::string& host) = 0;
};

// getaddrinfo(), in the order it returns (RFC 6724 preference).
class SystemResolver : public Resolver {
 public:
  std::vector<IpAddress> resolve(const std::string& host) override;
};

struct FetchConfig {
  int64_t connect_timeout_ms = 5000;         // per connection
  int64_t request_timeout_ms = 15000;        // whole fetch, all redirect hops together
  int max_redirects = 5;                     // hops followed after the first request
  int64_t max_body_bytes = 2 * 1024 * 1024;  // decoded body; larger is an error
  std::string user_agent = "jobrunner-scan/1.0";
  AllowList allow;
};

enum class Method { kGet, kHead };

struct Hop {
  std::string url;
  long status = 0;
  std::string address;  // the pinned address the hop connected to
};

struct FetchResult {
  std::string final_url;
  long status = 0;
  std::string content_type;  // as sent, "" when none
  std::string body;          // empty for HEAD
  double fetch_ms = 0;       // all hops
  std::vector<Hop> hops;     // every request made, first to last
};

class Fetcher {
 public:
  Fetcher(FetchConfig cfg, std::shared_ptr<Resolver> resolver);

  // Fetches `url`, following up to max_redirects redirects (each validated). Returns the last
  // response whatever its status; throws FetchError. `cancelled` is polled during transfers.
  FetchResult fetch(const std::string& url, Method method,
                    const std::function<bool()>& cancelled = {}) const;

  // Checks a URL without fetching it: returns the address a fetch would pin. Throws FetchError.
  IpAddress check(const std::string& url) const;

  // Test seam: sees every address curl opens a socket to (after the built-in pin check) and may
  // veto it by returning false. Production code leaves it unset.
  void set_connect_observer(std::function<bool(const IpAddress&)> f) { observer_ = std::move(f); }

  const FetchConfig& config() const { return cfg_; }

 private:
  struct Target;
  Target validate(const std::string& url) const;

  FetchConfig cfg_;
  std::shared_ptr<Resolver> resolver_;
  std::function<bool(const IpAddress&)> observer_;
};

// Calls curl_global_init once per process; safe to call repeatedly.
void curl_global_once();

}  // namespace scan
