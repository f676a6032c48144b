#include "scan/src/ip_guard.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <stdexcept>

namespace scan {

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from_sockaddr(const sockaddr* sa) {
  if (sa == nullptr) return std::nullopt;
  IpAddress a;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = AF_INET;
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.family = AF_INET6;
    std::memcpy(a.bytes.data(), &in6->sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (inet_ntop(family, bytes.data(), buf, sizeof(buf)) == nullptr) return "?";
  return buf;
}

namespace {

// True when the first `bits` bits of `a` equal those of `prefix`.
bool has_prefix(const uint8_t* a, const uint8_t* prefix, int bits) {
  int full = bits / 8;
  if (std::memcmp(a, prefix, full) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (a[full] & mask) == (prefix[full] & mask);
}

bool v4_in(const uint8_t* a, uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3, int bits) {
  const uint8_t p[4] = {b0, b1, b2, b3};
  return has_prefix(a, p, bits);
}

AddrClass classify_v4(const uint8_t* a) {
  if (v4_in(a, 169, 254, 169, 254, 32)) return AddrClass::kMetadata;
  if (v4_in(a, 0, 0, 0, 0, 8)) return AddrClass::kUnspecified;
  if (v4_in(a, 127, 0, 0, 0, 8)) return AddrClass::kLoopback;
  if (v4_in(a, 10, 0, 0, 0, 8) || v4_in(a, 172, 16, 0, 0, 12) || v4_in(a, 192, 168, 0, 0, 16)) {
    return AddrClass::kPrivate;
  }
  if (v4_in(a, 169, 254, 0, 0, 16)) return AddrClass::kLinkLocal;
  if (v4_in(a, 100, 64, 0, 0, 10)) return AddrClass::kCgnat;
  if (v4_in(a, 224, 0, 0, 0, 4)) return AddrClass::kMulticast;
  if (v4_in(a, 240, 0, 0, 0, 4) ||      // reserved + 255.255.255.255 broadcast
      v4_in(a, 192, 0, 0, 0, 24) ||     // IETF protocol assignments
      v4_in(a, 192, 0, 2, 0, 24) ||     // TEST-NET-1
      v4_in(a, 198, 51, 100, 0, 24) ||  // TEST-NET-2
      v4_in(a, 203, 0, 113, 0, 24) ||   // TEST-NET-3
      v4_in(a, 198, 18, 0, 0, 15) ||    // benchmarking
      v4_in(a, 192, 88, 99, 0, 24)) {   // deprecated 6to4 relay anycast
    return AddrClass::kReserved;
  }
  return AddrClass::kPublic;
}

const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
const uint8_t kZero[16] = {0};
const uint8_t kNat64[12] = {0x00, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};  // 64:ff9b::/96
const uint8_t kNat64Local[6] = {0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01};          // 64:ff9b:1::/48
const uint8_t k6to4[2] = {0x20, 0x02};                                        // 2002::/16
const uint8_t kEc2Meta[16] = {0xFD, 0x00, 0x0E, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};

AddrClass classify_v6(const uint8_t* a) {
  if (std::memcmp(a, kZero, 16) == 0) return AddrClass::kUnspecified;
  uint8_t one[16] = {0};
  one[15] = 1;
  if (std::memcmp(a, one, 16) == 0) return AddrClass::kLoopback;
  if (std::memcmp(a, kEc2Meta, 16) == 0) return AddrClass::kMetadata;
  // IPv4 embedded forms take the class of the embedded IPv4 address.
  if (has_prefix(a, kMapped, 96)) return classify_v4(a + 12);      // ::ffff:a.b.c.d
  if (has_prefix(a, kNat64, 96)) return classify_v4(a + 12);       // 64:ff9b::a.b.c.d
  if (has_prefix(a, kNat64Local, 48)) return AddrClass::kPrivate;  // local-use NAT64
  if (has_prefix(a, k6to4, 16)) return classify_v4(a + 2);         // 2002:AABB:CCDD::/48
  if (has_prefix(a, kZero, 96)) {
    // Deprecated IPv4-compatible ::a.b.c.d: classify the embedded address, refuse it anyway.
    AddrClass c = classify_v4(a + 12);
    return c == AddrClass::kPublic ? AddrClass::kReserved : c;
  }
  if ((a[0] & 0xFE) == 0xFC) return AddrClass::kPrivate;                    // fc00::/7
  if (a[0] == 0xFE && (a[1] & 0xC0) == 0x80) return AddrClass::kLinkLocal;  // fe80::/10
  if (a[0] == 0xFE && (a[1] & 0xC0) == 0xC0) return AddrClass::kPrivate;    // fec0::/10
  if (a[0] == 0xFF) return AddrClass::kMulticast;                           // ff00::/8
  if ((a[0] & 0xE0) != 0x20) return AddrClass::kReserved;  // outside global unicast 2000::/3
  const uint8_t ietf[3] = {0x20, 0x01, 0x00};              // 2001::/23 (Teredo, ORCHID...)
  if (has_prefix(a, ietf, 23)) return AddrClass::kReserved;
  const uint8_t doc[4] = {0x20, 0x01, 0x0D, 0xB8};  // 2001:db8::/32
  if (has_prefix(a, doc, 32)) return AddrClass::kReserved;
  const uint8_t doc2[3] = {0x3F, 0xFF, 0x00};  // 3fff::/20
  if (has_prefix(a, doc2, 20)) return AddrClass::kReserved;
  return AddrClass::kPublic;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

AddrClass classify(const IpAddress& a) {
  return a.family == AF_INET ? classify_v4(a.bytes.data()) : classify_v6(a.bytes.data());
}

const char* to_string(AddrClass c) {
  switch (c) {
    case AddrClass::kPublic:
      return "public";
    case AddrClass::kUnspecified:
      return "unspecified";
    case AddrClass::kLoopback:
      return "loopback";
    case AddrClass::kPrivate:
      return "private";
    case AddrClass::kLinkLocal:
      return "link-local";
    case AddrClass::kMulticast:
      return "multicast";
    case AddrClass::kCgnat:
      return "CGNAT";
    case AddrClass::kMetadata:
      return "cloud metadata";
    case AddrClass::kReserved:
      return "reserved";
  }
  return "?";
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto base = IpAddress::parse(text.substr(0, slash));
  if (!base) return std::nullopt;
  std::string bits(text.substr(slash + 1));
  if (bits.empty() || bits.size() > 3 ||
      !std::all_of(bits.begin(), bits.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  int prefix = std::stoi(bits);
  if (prefix > (base->family == AF_INET ? 32 : 128)) return std::nullopt;
  return Cidr{*base, prefix};
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.family == base.family) return has_prefix(a.bytes.data(), base.bytes.data(), prefix);
  // An IPv4 block also covers the IPv4-mapped IPv6 form of its addresses.
  if (base.family == AF_INET && a.family == AF_INET6 && has_prefix(a.bytes.data(), kMapped, 96)) {
    return has_prefix(a.bytes.data() + 12, base.bytes.data(), prefix);
  }
  return false;
}

AllowList AllowList::parse(const std::vector<std::string>& entries) {
  AllowList out;
  for (const auto& raw : entries) {
    std::string e = lower(raw);
    if (e.empty()) throw std::invalid_argument("allow_hosts: empty entry");
    if (e.find('/') != std::string::npos) {
      auto c = Cidr::parse(e);
      if (!c) throw std::invalid_argument("allow_hosts: bad CIDR '" + raw + "'");
      out.cidrs_.push_back(*c);
      continue;
    }
    HostEntry h;
    std::string port;
    if (e.front() == '[') {  // [v6] or [v6]:port
      auto close = e.find(']');
      if (close == std::string::npos) throw std::invalid_argument("allow_hosts: bad '" + raw + "'");
      h.host = e.substr(1, close - 1);
      if (close + 1 < e.size()) {
        if (e[close + 1] != ':') throw std::invalid_argument("allow_hosts: bad '" + raw + "'");
        port = e.substr(close + 2);
      }
    } else if (std::count(e.begin(), e.end(), ':') == 1) {
      h.host = e.substr(0, e.find(':'));
      port = e.substr(e.find(':') + 1);
    } else {
      h.host = e;  // a name, an IPv4 address or a bare IPv6 address
    }
    if (!port.empty()) {
      if (port.size() > 5 ||
          !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); })) {
        throw std::invalid_argument("allow_hosts: bad port in '" + raw + "'");
      }
      h.port = std::stoi(port);
      if (h.port < 1 || h.port > 65535) {
        throw std::invalid_argument("allow_hosts: bad port in '" + raw + "'");
      }
    }
    if (h.host.empty()) throw std::invalid_argument("allow_hosts: empty host in '" + raw + "'");
    out.hosts_.push_back(h);
  }
  return out;
}

bool AllowList::allows_host(std::string_view host, int port) const {
  std::string h = lower(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  for (const auto& e : hosts_) {
    if (e.host == h && (e.port == 0 || e.port == port)) return true;
  }
  return false;
}

bool AllowList::allows_address(const IpAddress& a) const {
  return std::any_of(cidrs_.begin(), cidrs_.end(), [&](const Cidr& c) { return c.contains(a); });
}

}  // namespace scan
