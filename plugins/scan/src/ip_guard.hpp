// SSRF guard for the scan plugin: classifies IPv4/IPv6 addresses (private, loopback, link-local,
// multicast, unspecified, CGNAT, cloud metadata, reserved, including IPv4 embedded in IPv6 forms:
// IPv4-mapped, NAT64 and 6to4) and holds the operator's allowlist (`allow_hosts`).
// Plain values, no shared state: safe to use from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace scan {

// An IPv4 or IPv6 address in network byte order (IPv4 uses the first 4 bytes).
struct IpAddress {
  int family = 0;  // AF_INET or AF_INET6
  std::array<uint8_t, 16> bytes{};

  static std::optional<IpAddress> parse(std::string_view text);  // strict: inet_pton forms only
  static std::optional<IpAddress> from_sockaddr(const sockaddr* sa);
  std::string to_string() const;  // "1.2.3.4" or "2001:db8::1" (no brackets)
  bool operator==(const IpAddress& o) const { return family == o.family && bytes == o.bytes; }
};

enum class AddrClass {
  kPublic,
  kUnspecified,  // 0.0.0.0/8, ::
  kLoopback,     // 127.0.0.0/8, ::1
  kPrivate,      // 10/8, 172.16/12, 192.168/16, fc00::/7
  kLinkLocal,    // 169.254/16, fe80::/10
  kMulticast,    // 224/4, ff00::/8
  kCgnat,        // 100.64/10
  kMetadata,     // 169.254.169.254, fd00:ec2::254 (and their mapped/NAT64/6to4 forms)
  kReserved,     // documentation, benchmarking, broadcast, 240/4, IETF special, non-2000::/3 v6
};

// Classifies `a`; IPv6 addresses that embed an IPv4 address (::ffff:a.b.c.d, ::a.b.c.d,
// 64:ff9b::a.b.c.d, 2002:AABB:CCDD::) take the class of the embedded address.
AddrClass classify(const IpAddress& a);
const char* to_string(AddrClass c);

// One CIDR block, e.g. 127.0.0.0/8 or ::1/128.
struct Cidr {
  IpAddress base;
  int prefix = 0;
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& a) const;
};

// The `allow_hosts` entries: "host" (any port), "host:port", "[v6]:port" or a CIDR. A URL whose
// host (and port) matches a host entry skips the address classification; an address inside an
// allowed CIDR is accepted whatever its class. The connection is pinned either way.
class AllowList {
 public:
  // Throws std::invalid_argument naming the bad entry.
  static AllowList parse(const std::vector<std::string>& entries);
  bool allows_host(std::string_view host, int port) const;
  bool allows_address(const IpAddress& a) const;
  bool empty() const { return hosts_.empty() && cidrs_.empty(); }

 private:
  struct HostEntry {
    std::string host;  // lower case, no brackets
    int port = 0;      // 0 = any
  };
  std::vector<HostEntry> hosts_;
  std::vector<Cidr> cidrs_;
};

}  // namespace scan
