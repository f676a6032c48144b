#include "net_grants.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "conninfo.hpp"

namespace jr::sandbox {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    size_t p = s.find(sep, at);
    out.push_back(s.substr(at, p == std::string::npos ? std::string::npos : p - at));
    if (p == std::string::npos) return out;
    at = p + 1;
  }
}

bool parse_port(const std::string& s, uint16_t* out) {
  if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  long v = std::stol(s);
  if (v < 1 || v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

// RFC 1123 host name: labels of [A-Za-z0-9-] (and '_', seen in service names), 1-63 bytes,
// not starting or ending with '-'; at most 253 bytes in all.
bool is_host_name(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  for (const auto& label : split(s, '.')) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (unsigned char c : label) {
      if (!std::isalnum(c) && c != '-' && c != '_') return false;
    }
  }
  return true;
}

// host, hostaddr and port of a connection string, each a comma-separated list as libpq has it.
struct ConnParams {
  std::string host, hostaddr, port;
};

ConnParams conn_params(const std::string& conninfo) {
  // libpq's own parser (URI and key=value forms, quoting, percent-encoding, IPv6 brackets), so
  // the grant is derived from what libpq will connect to; an unparsable string grants nothing.
  ConnParams p;
  try {
    auto kv = dbauth::parse_conninfo(conninfo);
    p.host = kv.count("host") ? kv["host"] : "";
    p.hostaddr = kv.count("hostaddr") ? kv["hostaddr"] : "";
    p.port = kv.count("port") ? kv["port"] : "";
  } catch (const std::invalid_argument&) {
  }
  return p;
}

}  // namespace

bool IpAddr::operator==(const IpAddr& o) const {
  return family == o.family && std::memcmp(bytes, o.bytes, family == AF_INET ? 4 : 16) == 0;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family == AF_INET ? AF_INET : AF_INET6, bytes, buf, sizeof buf);
  return buf;
}

bool parse_ip(const std::string& text, IpAddr* out) {
  std::string t = text.substr(0, text.find('%'));
  IpAddr a;
  if (inet_pton(AF_INET, t.c_str(), a.bytes) == 1) {
    a.family = AF_INET;
  } else if (inet_pton(AF_INET6, t.c_str(), a.bytes) == 1) {
    a.family = AF_INET6;
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.bytes, kMapped, 12) == 0) {
      std::memmove(a.bytes, a.bytes + 12, 4);
      std::memset(a.bytes + 4, 0, 12);
      a.family = AF_INET;
    }
  } else {
    return false;
  }
  *out = a;
  return true;
}

bool ConnectGrant::matches(const IpAddr& a, uint16_t p) const {
  if (kind != Kind::net || a.family != addr.family || p != port) return false;
  int full = prefix / 8, rest = prefix % 8;
  if (std::memcmp(a.bytes, addr.bytes, static_cast<size_t>(full)) != 0) return false;
  if (rest == 0) return true;
  auto mask = static_cast<unsigned char>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (addr.bytes[full] & mask);
}

bool parse_connect_grant(const std::string& entry, ConnectGrant* out, std::string* why) {
  ConnectGrant g;
  g.text = entry;
  g.source = "policy";
  if (entry.empty() || entry.size() > 512) {
    *why = "an empty or over-long entry";
    return false;
  }
  if (entry[0] == '/') {
    bool dotdot = entry.find("/../") != std::string::npos ||
                  (entry.size() >= 3 && entry.compare(entry.size() - 3, 3, "/..") == 0);
    if (dotdot) {
      *why = "'..' in a unix socket path";
      return false;
    }
    g.kind = ConnectGrant::Kind::unix_path;
    g.path = entry;
    *out = g;
    return true;
  }
  std::string host, port;
  if (entry[0] == '[') {
    size_t close = entry.find(']');
    if (close == std::string::npos || close + 1 >= entry.size() || entry[close + 1] != ':') {
      *why = "an IPv6 entry must be \"[address]:port\" or \"[address/prefix]:port\"";
      return false;
    }
    host = entry.substr(1, close - 1);
    port = entry.substr(close + 2);
  } else {
    size_t colon = entry.rfind(':');
    if (colon == std::string::npos) {
      *why = "no port (write \"host:port\", \"cidr:port\" or an absolute unix socket path)";
      return false;
    }
    host = entry.substr(0, colon);
    port = entry.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      *why = "an IPv6 address must be in brackets: \"[address]:port\"";
      return false;
    }
  }
  if (!parse_port(port, &g.port)) {
    *why = "the port must be a number from 1 to 65535";
    return false;
  }
  std::string addr = host;
  int prefix = -1;
  if (auto slash = host.find('/'); slash != std::string::npos) {
    addr = host.substr(0, slash);
    std::string len = host.substr(slash + 1);
    if (len.empty() || len.size() > 3 || len.find_first_not_of("0123456789") != std::string::npos) {
      *why = "the prefix length must be a number";
      return false;
    }
    prefix = std::stoi(len);
  }
  if (parse_ip(addr, &g.addr)) {
    int max = g.addr.family == AF_INET ? 32 : 128;
    if (prefix < 0) prefix = max;
    // "::ffff:10.0.0.0/104" became IPv4: its prefix counts the IPv4 bits.
    if (g.addr.family == AF_INET && addr.find(':') != std::string::npos && prefix >= 96) {
      prefix -= 96;
    }
    if (prefix > max) {
      *why = "the prefix length must be at most " + std::to_string(max);
      return false;
    }
    g.prefix = prefix;
    // Clear the host bits, so the grant reads as the network it is.
    for (int bit = prefix; bit < max; ++bit) {
      g.addr.bytes[bit / 8] &= static_cast<unsigned char>(~(0x80 >> (bit % 8)));
    }
    g.kind = ConnectGrant::Kind::net;
    *out = g;
    return true;
  }
  if (prefix >= 0) {
    *why = "a prefix length needs a numeric address";
    return false;
  }
  std::string name = lower(host);
  if (!name.empty() && name.back() == '.') name.pop_back();
  if (!is_host_name(name)) {
    *why = "\"" + host.substr(0, 100) + "\" is neither an address nor a host name";
    return false;
  }
  g.kind = ConnectGrant::Kind::name;
  g.name = name;
  *out = g;
  return true;
}

std::vector<ConnectGrant> database_endpoints(const std::string& conninfo) {
  ConnParams p = conn_params(conninfo);
  std::vector<std::string> hosts = split(p.host, ',');
  std::vector<std::string> addrs =
      p.hostaddr.empty() ? std::vector<std::string>{} : split(p.hostaddr, ',');
  std::vector<std::string> ports = p.port.empty() ? std::vector<std::string>{} : split(p.port, ',');
  size_t n = std::max(hosts.size(), addrs.size());
  std::vector<ConnectGrant> out;
  for (size_t i = 0; i < n; ++i) {
    uint16_t port = 5432;
    std::string ps = ports.size() == 1 ? ports[0] : i < ports.size() ? ports[i] : "";
    if (!ps.empty() && !parse_port(ps, &port)) continue;  // libpq refuses it too
    for (const std::string* h :
         {i < hosts.size() ? &hosts[i] : nullptr, i < addrs.size() ? &addrs[i] : nullptr}) {
      if (h == nullptr || h->empty() || (*h)[0] == '/' || (*h)[0] == '@') continue;
      ConnectGrant g;
      std::string why;
      std::string text = h->find(':') != std::string::npos ? "[" + *h + "]:" + std::to_string(port)
                                                           : *h + ":" + std::to_string(port);
      if (!parse_connect_grant(text, &g, &why)) continue;
      g.source = "database_url";
      out.push_back(g);
    }
  }
  return out;
}

ResolvConf parse_resolv_conf(const std::string& text) {
  ResolvConf r;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (auto c = line.find_first_of("#;"); c != std::string::npos) line.erase(c);
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "nameserver") {
      std::string v;
      IpAddr a;
      if (words >> v && parse_ip(v, &a) && r.nameservers.size() < 8) r.nameservers.push_back(a);
    } else if (key == "search" || key == "domain") {
      r.search.clear();
      std::string d;
      while (words >> d && r.search.size() < 8) {
        d = lower(d);
        if (!d.empty() && d.back() == '.') d.pop_back();
        if (!d.empty()) r.search.push_back(d);
      }
    }
  }
  return r;
}

ResolvConf read_resolv_conf(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > (1u << 16)) break;  // a resolv.conf is small; read no more
  }
  return parse_resolv_conf(text);
}

bool dns_query_names(const unsigned char* data, size_t len, std::vector<std::string>* names,
                     std::string* why) {
  if (len < 12) {
    *why = "not a DNS message (shorter than its header)";
    return false;
  }
  if ((data[2] & 0x80) != 0) {
    *why = "a DNS response, not a query";
    return false;
  }
  unsigned qd = (static_cast<unsigned>(data[4]) << 8) | data[5];
  if (qd == 0 || qd > 4) {
    *why = "a DNS query with " + std::to_string(qd) + " questions";
    return false;
  }
  size_t at = 12;
  for (unsigned q = 0; q < qd; ++q) {
    std::string name;
    for (;;) {
      if (at >= len) {
        *why = "a truncated DNS question";
        return false;
      }
      unsigned l = data[at++];
      if (l == 0) break;
      if (l > 63 || at + l > len) {
        *why = "a DNS question name with a bad label";
        return false;
      }
      if (!name.empty()) name += '.';
      name.append(reinterpret_cast<const char*>(data + at), l);
      at += l;
      if (name.size() > 255) {
        *why = "a DNS question name over 255 bytes";
        return false;
      }
    }
    if (at + 4 > len) {
      *why = "a truncated DNS question";
      return false;
    }
    at += 4;  // type, class
    names->push_back(lower(name));
  }
  return true;
}

}  // namespace jr::sandbox
