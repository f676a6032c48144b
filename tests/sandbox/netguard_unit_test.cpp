// NetRules, the guard's address predicate, and the pieces that feed it (unix path
// normalisation, the unix socket directories of a database URL, the grants of an Init frame).
// Pure functions: no worker here (netguard_test.cpp runs them against a hostile plugin).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cstring>

#include "net_guard.hpp"

using jr::sandbox::database_socket_dirs;
using jr::sandbox::NetOp;
using jr::sandbox::NetRules;
using jr::sandbox::NetVerdict;
using jr::sandbox::normalise_unix_path;

namespace {

struct Addr {
  sockaddr_storage a{};
  socklen_t len = 0;
};

Addr in4(const char* ip, int port, int family = AF_INET) {
  Addr r;
  auto* in = reinterpret_cast<sockaddr_in*>(&r.a);
  in->sin_family = static_cast<sa_family_t>(family);
  in->sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip, &in->sin_addr);
  r.len = sizeof(sockaddr_in);
  return r;
}

Addr in6(const char* ip, int port) {
  Addr r;
  auto* in = reinterpret_cast<sockaddr_in6*>(&r.a);
  in->sin6_family = AF_INET6;
  in->sin6_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET6, ip, &in->sin6_addr);
  r.len = sizeof(sockaddr_in6);
  return r;
}

Addr un(const std::string& path, bool abstract = false) {
  Addr r;
  auto* u = reinterpret_cast<sockaddr_un*>(&r.a);
  u->sun_family = AF_UNIX;
  size_t at = abstract ? 1 : 0;
  std::memcpy(u->sun_path + at, path.data(), path.size());
  // An empty non-abstract name is "unnamed": no path bytes at all.
  size_t n = path.empty() && !abstract ? 0 : at + path.size() + 1;
  r.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
  return r;
}

NetRules rules() {
  return NetRules::loopback(
      {{"/scratch/w1", "/data/out"}, {"/scratch/w1", "/run/pg", "/srv/a.sock"}});
}

bool ok(NetOp op, int domain, const Addr& a) {
  return rules().check(op, domain, a.a, a.len).allowed;
}

TEST(NetRules, LoopbackPeersAndLocalAddressesOnly) {
  EXPECT_TRUE(ok(NetOp::connect, AF_INET, in4("127.0.0.1", 5432)));
  EXPECT_TRUE(ok(NetOp::send, AF_INET, in4("127.1.2.3", 53)));
  EXPECT_TRUE(ok(NetOp::bind, AF_INET, in4("127.0.0.1", 0)));
  EXPECT_FALSE(ok(NetOp::bind, AF_INET, in4("0.0.0.0", 0)));
  EXPECT_FALSE(ok(NetOp::connect, AF_INET, in4("192.0.2.1", 80)));
  EXPECT_FALSE(ok(NetOp::listen, AF_INET, in4("0.0.0.0", 8080)));
  EXPECT_TRUE(ok(NetOp::connect, AF_INET6, in6("::1", 80)));
  EXPECT_TRUE(ok(NetOp::connect, AF_INET6, in6("::ffff:127.0.0.1", 80)));
  EXPECT_FALSE(ok(NetOp::connect, AF_INET6, in6("::ffff:192.0.2.1", 80)));
  EXPECT_FALSE(ok(NetOp::bind, AF_INET6, in6("::", 0)));
  Addr short4 = in4("127.0.0.1", 1);
  short4.len = 8;
  EXPECT_FALSE(ok(NetOp::connect, AF_INET, short4));
}

TEST(NetRules, TheAddressFamilyMustBeTheSockets) {
  // Linux UDP treats AF_UNSPEC as AF_INET in sendto: refused; connect(AF_UNSPEC) dissolves.
  EXPECT_FALSE(ok(NetOp::send, AF_INET, in4("192.0.2.1", 53, AF_UNSPEC)));
  EXPECT_FALSE(ok(NetOp::send, AF_INET, in4("127.0.0.1", 53, AF_UNSPEC)));
  EXPECT_FALSE(ok(NetOp::bind, AF_INET, in4("0.0.0.0", 0, AF_UNSPEC)));
  EXPECT_TRUE(ok(NetOp::connect, AF_INET, in4("0.0.0.0", 0, AF_UNSPEC)));
  // An inet address on an inet6 socket, and the other way round.
  EXPECT_FALSE(ok(NetOp::connect, AF_INET6, in4("127.0.0.1", 80)));
  EXPECT_FALSE(ok(NetOp::connect, AF_INET, in6("::1", 80)));
  // Families nobody modelled: netlink, packet, ...
  Addr nl;
  nl.a.ss_family = AF_NETLINK;
  nl.len = 12;
  EXPECT_FALSE(ok(NetOp::send, AF_NETLINK, nl));
  Addr none;
  none.len = 1;
  EXPECT_FALSE(ok(NetOp::connect, AF_INET, none));
}

TEST(NetRules, UnixPathsFollowTheGrants) {
  // bind: strictly beneath a writable path.
  EXPECT_TRUE(ok(NetOp::bind, AF_UNIX, un("/scratch/w1/s.sock")));
  EXPECT_TRUE(ok(NetOp::bind, AF_UNIX, un("/data/out/sub/s.sock")));
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("/scratch/w1")));
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("/scratch/w10/s.sock")));
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("/tmp/s.sock")));
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("/run/pg/s.sock")));  // reachable, not writable
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("/scratch/w1/../../tmp/s.sock")));
  EXPECT_FALSE(ok(NetOp::bind, AF_UNIX, un("s.sock")));
  EXPECT_TRUE(ok(NetOp::bind, AF_UNIX, un("")));  // autobind: an unguessable abstract name
  // connect/send: beneath or equal to a reachable path.
  EXPECT_TRUE(ok(NetOp::connect, AF_UNIX, un("/run/pg/.s.PGSQL.5432")));
  EXPECT_TRUE(ok(NetOp::connect, AF_UNIX, un("/srv/a.sock")));
  EXPECT_TRUE(ok(NetOp::send, AF_UNIX, un("/scratch/w1//./peer")));
  EXPECT_FALSE(ok(NetOp::connect, AF_UNIX, un("/srv/b.sock")));
  EXPECT_FALSE(ok(NetOp::connect, AF_UNIX, un("/run/dbus/system_bus_socket")));
  EXPECT_FALSE(ok(NetOp::connect, AF_UNIX, un("/run/pg/../dbus/system_bus_socket")));
  EXPECT_FALSE(ok(NetOp::connect, AF_UNIX, un("x11", true)));  // abstract
  EXPECT_FALSE(ok(NetOp::connect, AF_UNIX, un("")));
  EXPECT_FALSE(ok(NetOp::listen, AF_UNIX, un("")));
  auto v = rules().check(NetOp::connect, AF_UNIX, un("/scratch/w1//x").a, un("/scratch/w1//x").len);
  EXPECT_EQ(v.unix_path, "/scratch/w1/x");
  EXPECT_EQ(v.grants, std::vector<std::string>{"/scratch/w1"});
}

TEST(NetRules, PathNormalisation) {
  std::string why;
  EXPECT_EQ(normalise_unix_path("/a//b/./c/", &why), "/a/b/c");
  EXPECT_EQ(normalise_unix_path("/", &why), "/");
  EXPECT_EQ(normalise_unix_path("/a/../b", &why), "");
  EXPECT_NE(why.find(".."), std::string::npos);
  EXPECT_EQ(normalise_unix_path("a/b", &why), "");
  EXPECT_NE(why.find("relative"), std::string::npos);
}

TEST(NetRules, DatabaseUrlsNameTheirSocketDirectories) {
  using V = std::vector<std::string>;
  EXPECT_EQ(database_socket_dirs("postgresql:///db?host=%2Ftmp%2Fpg.sock&port=5432&user=x"),
            V{"/tmp/pg.sock"});
  EXPECT_EQ(database_socket_dirs("postgresql://%2Fvar%2Frun%2Fpostgresql:5433/db"),
            V{"/var/run/postgresql"});
  // A host= parameter replaces the URI's hosts, as libpq reads it (it never connects to /s1).
  EXPECT_EQ(database_socket_dirs("postgres://u:p@%2Fs1,localhost:5432/db?host=/s2,h"), (V{"/s2"}));
  EXPECT_EQ(database_socket_dirs("postgres://u:p@%2Fs1,localhost:5432/db"), (V{"/s1"}));
  EXPECT_EQ(database_socket_dirs("postgresql://%2Fs1%zz/db"), V{});  // libpq refuses it
  EXPECT_EQ(database_socket_dirs("postgresql://user:pw@db.internal:5432/app"), V{});
  EXPECT_EQ(database_socket_dirs("host=/run/pg dbname=x"), V{"/run/pg"});
  EXPECT_EQ(database_socket_dirs("dbname=x host = '/a b' port=1"), V{"/a b"});
  EXPECT_EQ(database_socket_dirs("host=localhost"), V{});
  EXPECT_EQ(database_socket_dirs(""), V{});
}

TEST(NetRules, GrantsOfAWorkerComeFromItsInitFrame) {
  nlohmann::json init = {
      {"scratch", "/var/lib/jr/scratch/p-1"},
      {"policy",
       {{"readable", {"/etc/app"}}, {"writable", {"/data/out/"}}, {"sockets", {"/run/svc.sock"}}}},
      {"config", {{"database_url", "postgresql:///app?host=/run/pg"}}}};
  NetRules r = NetRules::for_worker(init);
  using V = std::vector<std::string>;
  EXPECT_EQ(r.unix_grants().bind, (V{"/data/out", "/var/lib/jr/scratch/p-1"}));
  EXPECT_EQ(r.unix_grants().connect,
            (V{"/etc/app", "/data/out", "/run/svc.sock", "/var/lib/jr/scratch/p-1", "/run/pg"}));
  NetRules bare = NetRules::for_worker({{"policy", nlohmann::json::object()}});
  EXPECT_TRUE(bare.unix_grants().bind.empty());
  EXPECT_TRUE(bare.unix_grants().connect.empty());
  EXPECT_NE(r.describe().find("/run/pg"), std::string::npos);
}

}  // namespace

// ---- Named grants (issue 20) ----

namespace {

using jr::sandbox::ConnectGrant;
using jr::sandbox::database_endpoints;
using jr::sandbox::parse_connect_grant;

ConnectGrant grant(const std::string& text) {
  ConnectGrant g;
  std::string why;
  EXPECT_TRUE(parse_connect_grant(text, &g, &why)) << text << ": " << why;
  return g;
}

std::string refusal(const std::string& text) {
  ConnectGrant g;
  std::string why;
  EXPECT_FALSE(parse_connect_grant(text, &g, &why)) << text;
  return why;
}

// A DNS query for `name` (type A), as a resolver receives it.
std::vector<unsigned char> dns_query(const std::string& name) {
  std::vector<unsigned char> q = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
  size_t at = 0;
  while (at <= name.size()) {
    size_t dot = name.find('.', at);
    std::string label = name.substr(at, dot == std::string::npos ? std::string::npos : dot - at);
    q.push_back(static_cast<unsigned char>(label.size()));
    q.insert(q.end(), label.begin(), label.end());
    if (dot == std::string::npos) break;
    at = dot + 1;
  }
  q.insert(q.end(), {0, 0, 1, 0, 1});
  return q;
}

}  // namespace

TEST(NetGrants, EntriesParseOrSayWhatIsWrong) {
  ConnectGrant n = grant("DB.Internal.:5432");
  EXPECT_EQ(n.kind, ConnectGrant::Kind::name);
  EXPECT_EQ(n.name, "db.internal");
  EXPECT_EQ(n.port, 5432);
  ConnectGrant c = grant("10.1.7.9/16:5432");
  EXPECT_EQ(c.kind, ConnectGrant::Kind::net);
  EXPECT_EQ(c.addr.str(), "10.1.0.0");  // host bits cleared
  EXPECT_EQ(c.prefix, 16);
  ConnectGrant v6 = grant("[2001:db8::/32]:443");
  EXPECT_EQ(v6.prefix, 32);
  EXPECT_EQ(grant("192.0.2.10:5432").prefix, 32);
  EXPECT_EQ(grant("/run/svc/app.sock").kind, ConnectGrant::Kind::unix_path);
  EXPECT_NE(refusal("db.internal").find("no port"), std::string::npos);
  EXPECT_NE(refusal("db.internal:0").find("1 to 65535"), std::string::npos);
  EXPECT_NE(refusal("db.internal:70000").find("1 to 65535"), std::string::npos);
  EXPECT_NE(refusal("10.0.0.0/33:1").find("at most 32"), std::string::npos);
  EXPECT_NE(refusal("2001:db8::1:443").find("brackets"), std::string::npos);
  EXPECT_NE(refusal("db internal:5432").find("neither an address nor a host name"),
            std::string::npos);
  EXPECT_NE(refusal("db.internal/8:5432").find("numeric address"), std::string::npos);
  EXPECT_NE(refusal("/run/../etc/x.sock").find(".."), std::string::npos);
  EXPECT_FALSE(refusal("").empty());
}

TEST(NetGrants, DatabaseUrlsNameTheirTcpEndpoints) {
  auto texts = [](const std::string& url) {
    std::vector<std::string> out;
    for (const auto& g : database_endpoints(url)) {
      EXPECT_EQ(g.source, "database_url");
      out.push_back(g.text);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(texts("postgresql://u:p@192.0.2.10/db"), V{"192.0.2.10:5432"});
  EXPECT_EQ(texts("postgresql://u@db.internal:6432/db?sslmode=require"), V{"db.internal:6432"});
  EXPECT_EQ(texts("postgresql://a:5433,b/db"), (V{"a:5433", "b:5432"}));
  EXPECT_EQ(texts("postgres://[2001:db8::5]:5433/db"), V{"[2001:db8::5]:5433"});
  // The runner hands a plugin this form (host and port as parameters).
  EXPECT_EQ(texts("postgresql:///jr?host=192.0.2.10&port=5433&user=jr_plugin_x&password=s"),
            V{"192.0.2.10:5433"});
  EXPECT_EQ(texts("host=db.internal hostaddr=10.0.0.5 port=5444 dbname=x"),
            (V{"db.internal:5444", "10.0.0.5:5444"}));
  EXPECT_TRUE(texts("postgresql:///jr?host=/run/pg&user=x").empty());  // a socket: no TCP
  EXPECT_TRUE(texts("host=/var/run/postgresql dbname=x").empty());
  // What libpq connects to: a host= parameter replaces the URI's hosts; quoting and escapes.
  EXPECT_EQ(texts("postgresql://a:5433,b/db?host=c"), V{"c:5433"});
  EXPECT_EQ(texts("host='db.internal' port = '6543'"), V{"db.internal:6543"});
  EXPECT_TRUE(texts("host=a port=5432 dbname='unterminated").empty());  // libpq refuses it
}

TEST(NetGrants, GrantedPeersOnlyForConnectAndSendOnTheirPort) {
  NetRules r = NetRules::with_grants(
      {}, {grant("192.0.2.10:5432"), grant("10.1.0.0/16:6432"), grant("[2001:db8::/32]:443")}, {});
  auto allowed = [&r](NetOp op, int domain, const Addr& a) {
    return r.check(op, domain, a.a, a.len).allowed;
  };
  EXPECT_TRUE(allowed(NetOp::connect, AF_INET, in4("192.0.2.10", 5432)));
  EXPECT_TRUE(allowed(NetOp::send, AF_INET, in4("192.0.2.10", 5432)));
  EXPECT_FALSE(allowed(NetOp::connect, AF_INET, in4("192.0.2.10", 5433)));
  EXPECT_FALSE(allowed(NetOp::connect, AF_INET, in4("192.0.2.11", 5432)));
  EXPECT_TRUE(allowed(NetOp::connect, AF_INET, in4("10.1.255.3", 6432)));
  EXPECT_FALSE(allowed(NetOp::connect, AF_INET, in4("10.2.0.1", 6432)));
  EXPECT_TRUE(allowed(NetOp::connect, AF_INET6, in6("::ffff:192.0.2.10", 5432)));  // mapped
  EXPECT_TRUE(allowed(NetOp::connect, AF_INET6, in6("2001:db8:9::1", 443)));
  EXPECT_FALSE(allowed(NetOp::connect, AF_INET6, in6("2001:db9::1", 443)));
  // Never a local address: bind and listen stay loopback-only.
  EXPECT_FALSE(allowed(NetOp::bind, AF_INET, in4("192.0.2.10", 5432)));
  EXPECT_FALSE(allowed(NetOp::listen, AF_INET, in4("192.0.2.10", 5432)));
  EXPECT_TRUE(allowed(NetOp::connect, AF_INET, in4("127.0.0.1", 9)));  // loopback as before
  auto v = r.check(NetOp::connect, AF_INET, in4("192.0.2.11", 5432).a, sizeof(sockaddr_in));
  EXPECT_EQ(v.shown, "192.0.2.11:5432");
  EXPECT_EQ(v.why, "neither loopback nor a granted peer");
}

TEST(NetGrants, TheWorkersGrantsIncludeItsDatabaseAndItsConnectEntries) {
  nlohmann::json init = {
      {"policy", {{"connect", {"10.9.0.0/24:80", "/run/svc.sock"}}}},
      {"config", {{"database_url", "postgresql:///jr?host=192.0.2.10&port=5432&user=u"}}}};
  NetRules r = NetRules::for_worker(init);
  ASSERT_EQ(r.inet_grants().size(), 2u);
  EXPECT_EQ(r.inet_grants()[0].source, "policy");
  EXPECT_EQ(r.inet_grants()[1].source, "database_url");
  EXPECT_TRUE(
      r.check(NetOp::connect, AF_INET, in4("192.0.2.10", 5432).a, sizeof(sockaddr_in)).allowed);
  EXPECT_TRUE(r.check(NetOp::connect, AF_INET, in4("10.9.0.7", 80).a, sizeof(sockaddr_in)).allowed);
  Addr sock = un("/run/svc.sock");
  NetVerdict v = r.check(NetOp::connect, AF_UNIX, sock.a, sock.len);
  EXPECT_TRUE(v.allowed) << v.why;
  EXPECT_TRUE(r.resolvers().nameservers.empty());  // no name: no DNS
  // Without a database grant (no database_url) its server is not reachable.
  NetRules bare = NetRules::for_worker({{"policy", nlohmann::json::object()}});
  EXPECT_FALSE(
      bare.check(NetOp::connect, AF_INET, in4("192.0.2.10", 5432).a, sizeof(sockaddr_in)).allowed);
}

TEST(NetGrants, DnsOnlyToTheResolversAndOnlyAboutGrantedNames) {
  jr::sandbox::ResolvConf rc = jr::sandbox::parse_resolv_conf(
      "# comment\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n"
      "search corp.example\noptions ndots:1\n");
  ASSERT_EQ(rc.nameservers.size(), 2u);
  EXPECT_EQ(rc.search, std::vector<std::string>{"corp.example"});
  NetRules r = NetRules::with_grants({}, {grant("db.internal:5432")}, rc);
  auto v = r.check(NetOp::send, AF_INET, in4("192.0.2.53", 53).a, sizeof(sockaddr_in));
  EXPECT_TRUE(v.allowed);
  EXPECT_TRUE(v.dns);
  EXPECT_FALSE(
      r.check(NetOp::send, AF_INET, in4("192.0.2.53", 5353).a, sizeof(sockaddr_in)).allowed);
  EXPECT_FALSE(r.check(NetOp::send, AF_INET, in4("192.0.2.54", 53).a, sizeof(sockaddr_in)).allowed);
  std::string why;
  for (const char* ok : {"db.internal", "DB.internal", "db.internal.corp.example"}) {
    auto q = dns_query(ok);
    EXPECT_TRUE(r.dns_allowed(q.data(), q.size(), false, &why)) << ok << ": " << why;
  }
  auto bad = dns_query("secret-data.attacker.example");
  EXPECT_FALSE(r.dns_allowed(bad.data(), bad.size(), false, &why));
  EXPECT_NE(why.find("secret-data.attacker.example"), std::string::npos);
  auto tcp = dns_query("db.internal");
  tcp.insert(tcp.begin(), {0, static_cast<unsigned char>(tcp.size())});
  EXPECT_TRUE(r.dns_allowed(tcp.data(), tcp.size(), true, &why)) << why;
  std::vector<unsigned char> junk = {1, 2, 3};
  EXPECT_FALSE(r.dns_allowed(junk.data(), junk.size(), false, &why));
  // Without a name grant no resolver is admitted.
  NetRules numeric = NetRules::with_grants({}, {grant("192.0.2.10:5432")}, rc);
  EXPECT_FALSE(
      numeric.check(NetOp::send, AF_INET, in4("192.0.2.53", 53).a, sizeof(sockaddr_in)).allowed);
}
