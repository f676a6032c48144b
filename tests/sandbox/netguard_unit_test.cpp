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
  EXPECT_EQ(database_socket_dirs("postgres://u:p@%2Fs1,localhost:5432/db?host=/s2,h"),
            (V{"/s1", "/s2"}));
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
