// A small synchronous DNS client over c-ares: one ares channel per DnsClient, driven by
// ares_getsock + poll on the calling thread. A DnsClient is used by one thread at a time (each
// checker thread owns one); nothing is shared between instances.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace domain_check {

using CancelFn = std::function<bool()>;

struct DnsOptions {
  std::string servers_csv;  // "ip:port,..." for ares_set_servers_ports_csv; "" = system
  double timeout_s = 3.0;   // hard cap on one lookup (NS and, if needed, SOA)
  int tries = 2;            // UDP tries per query within that time
};

enum class DnsOutcome {
  kDelegated,    // NS records (or an SOA at the name): the name is a zone, so registered
  kExistsNoNs,   // NOERROR without NS/SOA at the name: it exists as a host name
  kNxDomain,     // the name does not exist
  kServFail,     // the resolver answered SERVFAIL
  kRefused,      // the resolver refused the query
  kTimeout,      // no answer in time
  kUnreachable,  // nothing listens at the resolver address (connection refused)
  kCancelled,    // the job was cancelled
  kError,        // anything else (malformed answer, NOTIMP, FORMERR...)
};

const char* outcome_name(DnsOutcome o);

struct DnsResult {
  DnsOutcome outcome = DnsOutcome::kError;
  std::vector<std::string> ns;  // NS host names when delegated
  std::string soa;              // primary name server from the SOA, when that decided
  std::string detail;           // c-ares status text for failures
  int queries = 0;              // DNS queries sent (NS, SOA)
};

struct ResolvedHost {
  std::vector<sockaddr_storage> addrs;
  std::vector<socklen_t> lens;
  std::string error;  // when addrs is empty
};

class DnsClient {
 public:
  explicit DnsClient(const DnsOptions& opts);  // throws std::runtime_error
  ~DnsClient();
  DnsClient(const DnsClient&) = delete;
  DnsClient& operator=(const DnsClient&) = delete;

  // Is `name` delegated? Queries NS, then SOA when the name exists without NS.
  DnsResult lookup(const std::string& name, const CancelFn& cancelled);

  // Addresses for a TCP connection to host:port (IP literals need no query), bounded by
  // timeout_s of the options.
  ResolvedHost resolve(const std::string& host, uint16_t port, const CancelFn& cancelled);

 private:
  struct Reply;
  using Clock = std::chrono::steady_clock;
  Reply query(const std::string& name, int type, Clock::time_point deadline,
              const CancelFn& cancelled);
  // Runs the event loop until *done, the deadline or cancellation (which cancel the queries).
  void drive(const bool& done, Clock::time_point deadline, const CancelFn& cancelled,
             bool& timed_out, bool& was_cancelled);

  struct Channel;
  Channel* ch_;
  DnsOptions opts_;
};

}  // namespace domain_check
