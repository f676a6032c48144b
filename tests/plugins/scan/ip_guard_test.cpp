// Address classifier and allowlist of the scan plugin's SSRF guard, IPv4 and IPv6 forms.
#include "scan/src/ip_guard.hpp"

#include <gtest/gtest.h>

namespace {

using scan::AddrClass;
using scan::AllowList;
using scan::Cidr;
using scan::IpAddress;

AddrClass cls(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a ? scan::classify(*a) : AddrClass::kPublic;
}

struct Case {
  const char* addr;
  AddrClass expected;
};

TEST(IpGuard, ClassifiesIpv4) {
  const Case cases[] = {
      {"8.8.8.8", AddrClass::kPublic},
      {"93.184.216.34", AddrClass::kPublic},
      {"1.1.1.1", AddrClass::kPublic},
      {"172.32.0.1", AddrClass::kPublic},
      {"100.128.0.1", AddrClass::kPublic},
      {"0.0.0.0", AddrClass::kUnspecified},
      {"0.1.2.3", AddrClass::kUnspecified},
      {"127.0.0.1", AddrClass::kLoopback},
      {"127.255.255.254", AddrClass::kLoopback},
      {"10.0.0.1", AddrClass::kPrivate},
      {"172.16.0.1", AddrClass::kPrivate},
      {"172.31.255.255", AddrClass::kPrivate},
      {"192.168.1.1", AddrClass::kPrivate},
      {"169.254.1.1", AddrClass::kLinkLocal},
      {"169.254.169.254", AddrClass::kMetadata},
      {"100.64.0.1", AddrClass::kCgnat},
      {"100.127.255.255", AddrClass::kCgnat},
      {"224.0.0.1", AddrClass::kMulticast},
      {"239.255.255.250", AddrClass::kMulticast},
      {"255.255.255.255", AddrClass::kReserved},
      {"240.0.0.1", AddrClass::kReserved},
      {"192.0.2.1", AddrClass::kReserved},
      {"198.51.100.7", AddrClass::kReserved},
      {"203.0.113.9", AddrClass::kReserved},
      {"198.18.0.1", AddrClass::kReserved},
      {"192.0.0.1", AddrClass::kReserved},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(cls(c.addr), c.expected) << c.addr << " classified " << scan::to_string(cls(c.addr));
  }
}

TEST(IpGuard, ClassifiesIpv6IncludingEmbeddedIpv4) {
  const Case cases[] = {
      {"2606:4700:4700::1111", AddrClass::kPublic},
      {"2a00:1450:4001:80b::200e", AddrClass::kPublic},
      {"::", AddrClass::kUnspecified},
      {"::1", AddrClass::kLoopback},
      {"fe80::1", AddrClass::kLinkLocal},
      {"febf::1", AddrClass::kLinkLocal},
      {"fec0::1", AddrClass::kPrivate},
      {"fc00::1", AddrClass::kPrivate},
      {"fd12:3456::1", AddrClass::kPrivate},
      {"fd00:ec2::254", AddrClass::kMetadata},
      {"ff02::1", AddrClass::kMulticast},
      // IPv4-mapped
      {"::ffff:127.0.0.1", AddrClass::kLoopback},
      {"::ffff:7f00:1", AddrClass::kLoopback},
      {"::ffff:10.0.0.1", AddrClass::kPrivate},
      {"::ffff:169.254.169.254", AddrClass::kMetadata},
      {"::ffff:100.64.1.1", AddrClass::kCgnat},
      {"::ffff:0.0.0.0", AddrClass::kUnspecified},
      {"::ffff:8.8.8.8", AddrClass::kPublic},
      // deprecated IPv4-compatible: embedded class, public ones refused as reserved
      {"::127.0.0.1", AddrClass::kLoopback},
      {"::8.8.8.8", AddrClass::kReserved},
      // NAT64 well-known prefix and local-use prefix
      {"64:ff9b::7f00:1", AddrClass::kLoopback},
      {"64:ff9b::a9fe:a9fe", AddrClass::kMetadata},
      {"64:ff9b::192.168.0.1", AddrClass::kPrivate},
      {"64:ff9b::808:808", AddrClass::kPublic},
      {"64:ff9b:1::1", AddrClass::kPrivate},
      // 6to4
      {"2002:7f00:1::1", AddrClass::kLoopback},
      {"2002:a9fe:a9fe::", AddrClass::kMetadata},
      {"2002:0a00:0001::1", AddrClass::kPrivate},
      {"2002:0808:0808::1", AddrClass::kPublic},
      // special and reserved
      {"2001:db8::1", AddrClass::kReserved},
      {"2001::1", AddrClass::kReserved},  // Teredo
      {"3fff::1", AddrClass::kReserved},
      {"100::1", AddrClass::kReserved},
      {"4000::1", AddrClass::kReserved},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(cls(c.addr), c.expected) << c.addr << " classified " << scan::to_string(cls(c.addr));
  }
}

TEST(IpGuard, ParsesOnlyStrictLiterals) {
  EXPECT_TRUE(IpAddress::parse("[::1]").has_value());
  EXPECT_FALSE(IpAddress::parse("127.1").has_value());
  EXPECT_FALSE(IpAddress::parse("2130706433").has_value());
  EXPECT_FALSE(IpAddress::parse("example.com").has_value());
  EXPECT_EQ(IpAddress::parse("::ffff:127.0.0.1")->to_string(), "::ffff:127.0.0.1");
}

TEST(IpGuard, CidrContainsAndCoversMappedForms) {
  auto c = Cidr::parse("127.0.0.0/8");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->contains(*IpAddress::parse("127.9.9.9")));
  EXPECT_FALSE(c->contains(*IpAddress::parse("128.0.0.1")));
  EXPECT_TRUE(c->contains(*IpAddress::parse("::ffff:127.0.0.1")));
  auto c6 = Cidr::parse("fd00::/8");
  ASSERT_TRUE(c6);
  EXPECT_TRUE(c6->contains(*IpAddress::parse("fd00:ec2::254")));
  EXPECT_FALSE(c6->contains(*IpAddress::parse("fe80::1")));
  EXPECT_TRUE(Cidr::parse("10.1.2.3/32")->contains(*IpAddress::parse("10.1.2.3")));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33"));
  EXPECT_FALSE(Cidr::parse("::/129"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/"));
  EXPECT_FALSE(Cidr::parse("nothere/8"));
}

TEST(IpGuard, AllowListEntries) {
  AllowList a = AllowList::parse(
      {"127.0.0.1:8080", "Intranet.Example", "[::1]:443", "10.0.0.0/8", "fd00::/8"});
  EXPECT_TRUE(a.allows_host("127.0.0.1", 8080));
  EXPECT_FALSE(a.allows_host("127.0.0.1", 8081));
  EXPECT_TRUE(a.allows_host("intranet.example", 1));
  EXPECT_TRUE(a.allows_host("INTRANET.example", 443));
  EXPECT_TRUE(a.allows_host("[::1]", 443));
  EXPECT_TRUE(a.allows_host("::1", 443));
  EXPECT_FALSE(a.allows_host("::1", 80));
  EXPECT_TRUE(a.allows_address(*IpAddress::parse("10.2.3.4")));
  EXPECT_TRUE(a.allows_address(*IpAddress::parse("fd00:ec2::254")));
  EXPECT_FALSE(a.allows_address(*IpAddress::parse("127.0.0.1")));
  EXPECT_TRUE(AllowList::parse({}).empty());
  for (const char* bad : {"", "1.2.3.4/33", "host:99999", "host:abc", "[::1", ":80"}) {
    EXPECT_THROW(AllowList::parse({bad}), std::invalid_argument) << bad;
  }
}

}  // namespace
