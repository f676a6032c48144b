// Named network grants of a sandboxed plugin (issue 20): the entries of the policy key `connect`
// ("db.internal:5432", "10.1.0.0/16:5432", "[2001:db8::/32]:443", "/run/svc.sock"), the grant
// the host derives from a plugin's own `database_url` (its TCP endpoints and socket
// directories), the resolvers of /etc/resolv.conf, and the question names of a DNS query.
// NetRules (net_guard.hpp) turns these into its address predicate; the policy validates
// `connect` with parse_connect_grant().
// Pure value types and functions (no I/O except read_resolv_conf), thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jr::sandbox {

// One inet address (network byte order), IPv4 as AF_INET (never IPv4-mapped IPv6).
struct IpAddr {
  int family = 0;  // AF_INET or AF_INET6
  unsigned char bytes[16] = {};
  bool operator==(const IpAddr& o) const;
  std::string str() const;  // "192.0.2.10", "2001:db8::1"
};

// Parses a numeric IPv4 or IPv6 address (a "%scope" suffix is dropped); false when not one.
// An IPv4-mapped IPv6 address becomes its IPv4 address.
bool parse_ip(const std::string& text, IpAddr* out);

struct ConnectGrant {
  enum class Kind { name, net, unix_path };
  Kind kind = Kind::net;
  std::string text;    // as written, for reports
  std::string source;  // "policy" (sandbox.connect) or "database_url" (derived by the host)
  std::string name;    // Kind::name: lower-case host name without a trailing dot
  IpAddr addr;         // Kind::net: network address, host bits cleared
  int prefix = 0;      // Kind::net: prefix length (32 or 128 for one address)
  uint16_t port = 0;   // Kind::name, Kind::net: 1..65535
  std::string path;    // Kind::unix_path: absolute path of a socket or a directory of sockets

  bool matches(const IpAddr& a, uint16_t p) const;  // Kind::net only
};

// Parses one `connect` entry: "host:port", "a.b.c.d:port", "a.b.c.d/len:port", "[v6]:port",
// "[v6/len]:port" or an absolute unix path. False with `why` naming the problem otherwise (no
// port, port 0 or above 65535, a bad prefix, a host name that is not one, ...).
bool parse_connect_grant(const std::string& entry, ConnectGrant* out, std::string* why);

// The TCP endpoints a libpq connection string names (URL or key=value form): every host (and
// hostaddr) with its port (default 5432), as grants with source "database_url". Host names
// become Kind::name, numeric addresses Kind::net (/32, /128); unix socket directories (an
// absolute host) are not returned (database_socket_dirs() has them).
std::vector<ConnectGrant> database_endpoints(const std::string& conninfo);

// The resolvers and search domains of a resolv.conf text ("nameserver" and "search"/"domain"
// lines).
struct ResolvConf {
  std::vector<IpAddr> nameservers;
  std::vector<std::string> search;  // lower case, no trailing dot
};
ResolvConf parse_resolv_conf(const std::string& text);
ResolvConf read_resolv_conf(const std::string& path = "/etc/resolv.conf");

// The question names of a DNS query message (lower case, no trailing dot). False with `why`
// when the message is not a well-formed query (bounded: at most 4 questions, names of at most
// 255 bytes, no compression pointers in a query's question).
bool dns_query_names(const unsigned char* data, size_t len, std::vector<std::string>* names,
                     std::string* why);

}  // namespace jr::sandbox
