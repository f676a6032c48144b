// Pure parts of the sandbox: policy parsing/merging and the frame codec.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "policy.hpp"
#include "protocol.hpp"

using namespace jr::sandbox;

TEST(Policy, DefaultsManifestAndHostOverride) {
  Policy d = make_policy(nlohmann::json::object(), nullptr, nlohmann::json::object());
  EXPECT_EQ(d.network, Network::none);
  EXPECT_EQ(d.memory_mb, 1024);
  nlohmann::json manifest = {{"sandbox",
                              {{"network", "loopback"},
                               {"memory_mb", 256},
                               {"writable", {"/data/out"}},
                               {"readable_config_keys", {"storage_root"}},
                               {"user", "root"}}}};
  nlohmann::json over = {{"memory_mb", 512}, {"max_jobs", 10}, {"user", "daemon"}};
  Policy p = make_policy(manifest, over, {{"storage_root", "/srv/data"}});
  EXPECT_EQ(p.network, Network::loopback);
  EXPECT_EQ(p.memory_mb, 512);
  EXPECT_EQ(p.max_jobs, 10);
  EXPECT_EQ(p.writable, std::vector<std::string>{"/data/out"});
  EXPECT_EQ(p.readable, std::vector<std::string>{"/srv/data"});
  EXPECT_EQ(p.user, "daemon");  // from the host; the manifest's "root" was ignored
  Policy m = make_policy(manifest, nullptr, nlohmann::json::object());
  EXPECT_EQ(m.user, "");
}

TEST(Policy, BadValuesAreRefusedByName) {
  auto bad = [](const nlohmann::json& sb) {
    try {
      make_policy({{"sandbox", sb}}, nullptr, nlohmann::json::object());
    } catch (const PolicyError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(bad({{"network", "internet"}}).find("sandbox.network"), std::string::npos);
  EXPECT_NE(bad({{"memory_mb", -1}}).find("sandbox.memory_mb"), std::string::npos);
  EXPECT_NE(bad({{"writable", {"relative/path"}}}).find("absolute"), std::string::npos);
  EXPECT_NE(bad({{"cpu_seconds", "lots"}}).find("sandbox.cpu_seconds"), std::string::npos);
  EXPECT_NE(bad({{"colour", "blue"}}).find("unknown sandbox policy key 'colour'"),
            std::string::npos);
}

TEST(Protocol, FramesRoundTripAndOversizedFramesAreRefused) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  proto::Encoder e;
  for (int i = 0; i < 3; ++i) {
    e.begin(proto::Type::log);
    e.put<uint64_t>(7);
    e.put<int32_t>(i);
    e.str("message " + std::to_string(i));
    ASSERT_TRUE(proto::write_all(sv[0], e.finish()));
  }
  proto::FrameReader r(1024);
  for (int i = 0; i < 3; ++i) {
    proto::Frame f;
    ASSERT_EQ(r.next_blocking(sv[1], f), proto::FrameReader::Result::frame);
    EXPECT_EQ(f.type, proto::Type::log);
    proto::Decoder d(f.payload);
    EXPECT_EQ(d.get<uint64_t>(), 7u);
    EXPECT_EQ(d.get<int32_t>(), i);
    EXPECT_EQ(d.str(), "message " + std::to_string(i));
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE(d.at_end());
  }
  // Truncated payloads are detected, not read past.
  // A length of 5 followed by 2 bytes. The literal is split so "ab" is not read as part of
  // the hex escape (\x00ab is one escape): the view covers exactly the 6 bytes written.
  proto::Decoder shortd(
      std::string_view("\x05\x00\x00\x00"
                       "ab",
                       6));
  EXPECT_EQ(shortd.str(), "");
  EXPECT_FALSE(shortd.ok());
  // A header announcing more than the limit.
  e.begin(proto::Type::done);
  e.str(std::string(2000, 'x'));
  ASSERT_TRUE(proto::write_all(sv[0], e.finish()));
  proto::Frame f;
  EXPECT_EQ(r.next_blocking(sv[1], f), proto::FrameReader::Result::too_big);
  EXPECT_EQ(r.last_len(), 2004u);
  close(sv[0]);
  proto::FrameReader r2(1024);
  EXPECT_EQ(r2.next_blocking(sv[1], f), proto::FrameReader::Result::eof);
  close(sv[1]);
}
