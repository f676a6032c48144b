// The trust model's parts (issue 16): the grant logic (decide_trust: requested / granted /
// effective), the approvals file, content pinning (SHA-256 + sealed memfd) and describing a
// directory with refusals.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "approvals.hpp"
#include "harness.hpp"
#include "plugin_pin.hpp"
#include "policy.hpp"
#include "sandbox.hpp"

using namespace jr::sandbox;
using nlohmann::json;

namespace {

const std::string kSha(64, 'a');

TrustInput input(const json& manifest, const json& section = json::object()) {
  TrustInput in;
  in.name = "p";
  in.sha256 = kSha;
  in.file = "/plugins/libp.so";
  in.own_kinds = {"p_kind"};
  in.manifest = manifest;
  in.section = section;
  in.default_workers = 4;
  return in;
}

json defaults_for_test(const std::string& key) {
  static const json d = {{"network", "none"},
                         {"memory_mb", 1024},
                         {"readable", json::array()},
                         {"writable", json::array()},
                         {"readable_config_keys", json::array()},
                         {"writable_config_keys", json::array()},
                         {"workers", 4},
                         {"max_open_files", 256},
                         {"max_file_mb", 1024},
                         {"max_threads", 4096},
                         {"scratch_mb", 256}};
  return d.at(key);
}

const DimensionDecision& dim(const TrustDecision& d, const std::string& key) {
  for (const auto& x : d.dims) {
    if (x.key == key) return x;
  }
  throw std::runtime_error("no dimension " + key);
}

TEST(Trust, NoRequestGetsTheDefaults) {
  TrustDecision d = decide_trust(input(json::object()));
  ASSERT_TRUE(d.accepted()) << d.refusal_text();
  EXPECT_EQ(d.isolation, "sandbox");
  EXPECT_EQ(d.policy.network, Network::none);
  EXPECT_EQ(d.policy.memory_mb, 1024);
  EXPECT_TRUE(d.policy.readable.empty());
  EXPECT_TRUE(d.policy.writable.empty());
  EXPECT_FALSE(d.policy.database);
  EXPECT_TRUE(d.policy.env.empty());
  EXPECT_TRUE(d.policy.enqueue_kinds.empty());
  EXPECT_EQ(d.policy.workers, 0);  // the host's share
  for (const auto& x : d.dims) EXPECT_EQ(x.source, GrantSource::default_value) << x.key;
}

TEST(Trust, AskingForLessIsAlwaysHonoured) {
  TrustDecision d = decide_trust(input({{"sandbox",
                                         {{"memory_mb", 256},
                                          {"network", "none"},
                                          {"cpu_seconds", 5},
                                          {"wall_timeout_seconds", 60},
                                          {"max_jobs", 100},
                                          {"max_rss_mb", 200},
                                          {"workers", 2},
                                          {"max_open_files", 64},
                                          {"max_file_mb", 10},
                                          {"max_threads", 16},
                                          {"scratch_mb", 8}}},
                                        {"enqueue", {"p_kind"}}}));
  ASSERT_TRUE(d.accepted()) << d.refusal_text();
  EXPECT_EQ(d.policy.memory_mb, 256);
  EXPECT_EQ(d.policy.cpu_seconds, 5);
  EXPECT_EQ(d.policy.workers, 2);
  EXPECT_EQ(d.policy.max_open_files, 64);
  EXPECT_EQ(d.policy.max_threads, 16);
  EXPECT_EQ(d.policy.scratch_mb, 8);
  EXPECT_EQ(dim(d, "memory_mb").granted, 1024);
  EXPECT_EQ(dim(d, "memory_mb").effective, 256);
  EXPECT_TRUE(d.policy.enqueue_kinds.empty());  // its own kind needs no grant
}

TEST(Trust, EveryRequestAboveTheDefaultRefusesThePluginNamingTheKeyAndTheWayToGrantIt) {
  const std::vector<std::pair<std::string, json>> asks = {{"network", "loopback"},
                                                          {"network", "full"},
                                                          {"memory_mb", 0},
                                                          {"memory_mb", 4096},
                                                          {"readable", {"/"}},
                                                          {"writable", {"/var/lib/x"}},
                                                          {"readable_config_keys", {"k"}},
                                                          {"writable_config_keys", {"k"}},
                                                          {"workers", 64},
                                                          {"max_open_files", 100000},
                                                          {"max_file_mb", 1 << 20},
                                                          {"max_threads", 100000},
                                                          {"scratch_mb", 1 << 20}};
  for (const auto& [key, value] : asks) {
    TrustDecision d = decide_trust(input({{"sandbox", {{key, value}}}}));
    ASSERT_FALSE(d.accepted()) << key << "=" << value.dump();
    ASSERT_EQ(d.refusals.size(), 1u) << d.refusal_text();
    EXPECT_NE(d.refusals[0].find("requests sandbox." + key + " = " + value.dump()),
              std::string::npos)
        << d.refusals[0];
    EXPECT_NE(d.refusals[0].find("runner plugins approve /plugins/libp.so"), std::string::npos)
        << d.refusals[0];
    EXPECT_NE(d.refusals[0].find("[plugins.p.sandbox] " + key), std::string::npos) << d.refusals[0];
    // The refused dimension keeps its default.
    EXPECT_EQ(dim(d, key).effective, defaults_for_test(key)) << key;
  }
}

TEST(Trust, BudgetsAndRecyclingAreNeverAboveTheDefault) {
  TrustDecision d = decide_trust(input({{"sandbox",
                                         {{"cpu_seconds", 1e6},
                                          {"wall_timeout_seconds", 1e6},
                                          {"max_jobs", 0},
                                          {"max_rss_mb", 0}}}}));
  EXPECT_TRUE(d.accepted()) << d.refusal_text();
}

TEST(Trust, IsolationNoneIsConfigurationOnly) {
  json manifest = {{"isolation", "none"}};
  TrustDecision refused = decide_trust(input(manifest));
  ASSERT_FALSE(refused.accepted());
  EXPECT_EQ(refused.isolation, "sandbox");
  EXPECT_NE(refused.refusal_text().find("[plugins.p] isolation = \"none\""), std::string::npos)
      << refused.refusal_text();
  // Not even an approval of this exact file grants it.
  json approved = approvable_request(manifest);
  TrustInput in = input(manifest);
  in.approved = &approved;
  EXPECT_FALSE(decide_trust(in).accepted());
  // The operator: per plugin, or runner-wide.
  TrustDecision cfg = decide_trust(input(manifest, {{"isolation", "none"}}));
  ASSERT_TRUE(cfg.accepted()) << cfg.refusal_text();
  EXPECT_EQ(cfg.isolation, "none");
  EXPECT_EQ(dim(cfg, "isolation").source, GrantSource::config);
  TrustInput global = input(json::object());
  global.host_isolation = "none";
  EXPECT_EQ(decide_trust(global).isolation, "none");
  // The config may also keep a plugin sandboxed whatever it asks.
  TrustDecision kept = decide_trust(input(manifest, {{"isolation", "sandbox"}}));
  ASSERT_TRUE(kept.accepted());
  EXPECT_EQ(kept.isolation, "sandbox");
  // A built-in approval (shipped plugin) counts as configuration.
  TrustInput shipped = input(manifest);
  shipped.builtin = true;
  EXPECT_EQ(decide_trust(shipped).isolation, "none");
  EXPECT_FALSE(decide_trust(input({{"isolation", "maybe"}})).accepted());
  EXPECT_FALSE(decide_trust(input(json::object(), {{"isolation", "maybe"}})).accepted());
}

TEST(Trust, EnvironmentPassthroughIsConfigurationOnly) {
  json manifest = {{"env", {{"DATABASE_URL", "db"}, {"RUNNER_API_TOKEN", "token"}}}};
  TrustDecision refused = decide_trust(input(manifest));
  ASSERT_FALSE(refused.accepted());
  EXPECT_NE(refused.refusal_text().find("DATABASE_URL, RUNNER_API_TOKEN"), std::string::npos)
      << refused.refusal_text();
  EXPECT_TRUE(refused.policy.env.empty());
  json approved = approvable_request(manifest);
  EXPECT_FALSE(approved.contains("env"));
  TrustInput in = input(manifest);
  in.approved = &approved;
  EXPECT_FALSE(decide_trust(in).accepted());
  // The operator grants a table (exactly that), true (the request) or false (nothing).
  TrustDecision table = decide_trust(input(manifest, {{"env", {{"MY_DSN", "db"}}}}));
  ASSERT_TRUE(table.accepted()) << table.refusal_text();
  EXPECT_EQ(table.policy.env, (std::map<std::string, std::string>{{"MY_DSN", "db"}}));
  TrustDecision all = decide_trust(input(manifest, {{"env", true}}));
  ASSERT_TRUE(all.accepted());
  EXPECT_EQ(all.policy.env.size(), 2u);
  TrustDecision none = decide_trust(input(manifest, {{"env", false}}));
  ASSERT_TRUE(none.accepted());
  EXPECT_TRUE(none.policy.env.empty());
  TrustInput shipped = input(manifest);
  shipped.builtin = true;
  EXPECT_EQ(decide_trust(shipped).policy.env.size(), 2u);
  EXPECT_FALSE(decide_trust(input({{"env", {{"X", 1}}}})).accepted());
  EXPECT_FALSE(decide_trust(input(json::object(), {{"env", "yes"}})).accepted());
}

TEST(Trust, DatabaseAndEnqueueNeedAGrant) {
  TrustDecision db = decide_trust(input({{"database", true}}));
  EXPECT_FALSE(db.accepted());
  EXPECT_FALSE(db.policy.database);
  EXPECT_TRUE(decide_trust(input({{"database", true}}, {{"database", true}})).policy.database);
  EXPECT_FALSE(decide_trust(input({{"database", true}}, {{"database", false}})).policy.database);
  TrustDecision enq = decide_trust(input({{"enqueue", {"p_kind", "other_kind"}}}));
  ASSERT_FALSE(enq.accepted());
  EXPECT_NE(enq.refusal_text().find("other_kind"), std::string::npos);
  EXPECT_EQ(enq.refusal_text().find("p_kind"), std::string::npos) << enq.refusal_text();
  TrustDecision cfg = decide_trust(input({{"enqueue", {"other_kind"}}}, {{"enqueue", {"x"}}}));
  ASSERT_TRUE(cfg.accepted());
  EXPECT_EQ(cfg.policy.enqueue_kinds, std::vector<std::string>{"x"});
  // Approved: the database and a subset of the approved kinds.
  json approved = {{"database", true}, {"enqueue", {"a", "b"}}};
  TrustInput in = input({{"database", true}, {"enqueue", {"b"}}});
  in.approved = &approved;
  TrustDecision ok = decide_trust(in);
  ASSERT_TRUE(ok.accepted()) << ok.refusal_text();
  EXPECT_TRUE(ok.policy.database);
  EXPECT_EQ(ok.policy.enqueue_kinds, std::vector<std::string>{"b"});
  EXPECT_EQ(dim(ok, "database").source, GrantSource::approval);
  in.manifest = {{"enqueue", {"b", "c"}}};
  EXPECT_FALSE(decide_trust(in).accepted());
}

TEST(Trust, ConfigSetsADimensionOutrightWhateverTheManifestAsks) {
  json manifest = {{"sandbox", {{"network", "full"}, {"readable", {"/"}}, {"memory_mb", 0}}}};
  json section = {
      {"sandbox", {{"network", "none"}, {"readable", json::array()}, {"memory_mb", 128}}}};
  TrustDecision d = decide_trust(input(manifest, section));
  ASSERT_TRUE(d.accepted()) << d.refusal_text();
  EXPECT_EQ(d.policy.network, Network::none);
  EXPECT_TRUE(d.policy.readable.empty());
  EXPECT_EQ(d.policy.memory_mb, 128);
  EXPECT_EQ(dim(d, "network").source, GrantSource::config);
  EXPECT_EQ(dim(d, "network").requested, "full");
  // And grants more than the default when the operator says so.
  TrustDecision wide = decide_trust(
      input(json::object(), {{"sandbox", {{"network", "loopback"}, {"readable", {"/srv"}}}}}));
  ASSERT_TRUE(wide.accepted());
  EXPECT_EQ(wide.policy.network, Network::loopback);
  EXPECT_EQ(wide.policy.readable, std::vector<std::string>{"/srv"});
  // Bad config values refuse the plugin with the key's name.
  TrustDecision bad = decide_trust(input(json::object(), {{"sandbox", {{"network", "internet"}}}}));
  ASSERT_FALSE(bad.accepted());
  EXPECT_NE(bad.refusal_text().find("sandbox.network"), std::string::npos) << bad.refusal_text();
}

TEST(Trust, AnApprovalGrantsAtMostWhatWasApproved) {
  json approved = approvable_request(
      {{"sandbox", {{"network", "loopback"}, {"readable", {"/a", "/b"}}, {"memory_mb", 0}}}});
  TrustInput in = input({{"sandbox", {{"network", "loopback"}, {"readable", {"/a"}}}}});
  in.approved = &approved;
  TrustDecision d = decide_trust(in);
  ASSERT_TRUE(d.accepted()) << d.refusal_text();
  EXPECT_EQ(dim(d, "network").source, GrantSource::approval);
  EXPECT_EQ(dim(d, "readable").source, GrantSource::approval);
  EXPECT_EQ(d.policy.readable, std::vector<std::string>{"/a"});
  in.manifest = {{"sandbox", {{"memory_mb", 0}}}};  // unlimited was approved
  EXPECT_TRUE(decide_trust(in).accepted());
  for (json more :
       {json{{"network", "full"}}, json{{"readable", {"/a", "/c"}}}, json{{"writable", {"/a"}}}}) {
    in.manifest = {{"sandbox", more}};
    EXPECT_FALSE(decide_trust(in).accepted()) << more.dump();
  }
}

TEST(Trust, Sha256PinBindsTheConfigToOneContent) {
  EXPECT_TRUE(decide_trust(input(json::object(), {{"sha256", kSha}})).accepted());
  std::string upper(64, 'A');
  EXPECT_TRUE(decide_trust(input(json::object(), {{"sha256", upper}})).accepted());
  TrustDecision other = decide_trust(input(json::object(), {{"sha256", std::string(64, 'b')}}));
  ASSERT_FALSE(other.accepted());
  EXPECT_NE(other.refusal_text().find("its content has SHA-256 " + kSha), std::string::npos);
  EXPECT_FALSE(decide_trust(input(json::object(), {{"sha256", "abc"}})).accepted());
}

TEST(Trust, UnknownKeysUserAndConfigKeyPaths) {
  EXPECT_FALSE(decide_trust(input({{"sandbox", {{"colour", "blue"}}}})).accepted());
  EXPECT_FALSE(decide_trust(input({{"sandbox", {{"memory_mb", -1}}}})).accepted());
  // A manifest does not pick its uid; the config does.
  TrustDecision user = decide_trust(input({{"sandbox", {{"user", "root"}}}}));
  ASSERT_TRUE(user.accepted());
  EXPECT_EQ(user.policy.user, "");
  EXPECT_EQ(decide_trust(input(json::object(), {{"sandbox", {{"user", "daemon"}}}})).policy.user,
            "daemon");
  // Granted config keys resolve against the plugin's final config.
  TrustDecision keys =
      decide_trust(input({{"sandbox", {{"readable_config_keys", {"root"}}}}},
                         {{"sandbox", {{"readable_config_keys", {"root"}}}}, {"root", "/srv/a"}}));
  ASSERT_TRUE(keys.accepted()) << keys.refusal_text();
  EXPECT_EQ(keys.policy.readable, std::vector<std::string>{"/srv/a"});
  EXPECT_EQ(keys.resolve({{"root", "/srv/b"}}).readable, std::vector<std::string>{"/srv/b"});
  EXPECT_TRUE(decide_trust(input(json::object(), {{"replace_kinds", true}})).replace_kinds);
  EXPECT_FALSE(decide_trust(input(json::object(), {{"replace_kinds", "yes"}})).accepted());
}

TEST(Trust, DecisionJsonShowsRequestedGrantedAndEffective) {
  TrustDecision d = decide_trust(input({{"sandbox", {{"memory_mb", 256}}}}));
  json j = d.to_json();
  EXPECT_EQ(j["requested"]["memory_mb"], 256);
  EXPECT_EQ(j["granted"]["memory_mb"]["value"], 1024);
  EXPECT_EQ(j["granted"]["memory_mb"]["source"], "default");
  EXPECT_EQ(j["effective"]["memory_mb"], 256);
  EXPECT_EQ(j["accepted"], true);
}

// ---- approvals file ----

TEST(Approvals, RoundTripReplaceRemoveAndMode) {
  jrtest::TempDir d;
  std::string path = d.path() + "/sub/approvals.json";
  EXPECT_TRUE(Approvals::load(path).all().empty());  // missing: none
  Approval a{"p", kSha, "/x/libp.so", "2026-01-01T00:00:00Z", {{"sandbox", {{"network", "full"}}}}};
  Approvals::update(path, [&](Approvals& all) { all.add(a); });
  a.request = {{"database", true}};
  Approvals::update(path, [&](Approvals& all) { all.add(a); });  // same (name, sha): replaced
  Approvals::update(path, [&](Approvals& all) {
    all.add({"p", std::string(64, 'b'), "", "", json::object()});
  });
  Approvals back = Approvals::load(path);
  ASSERT_EQ(back.all().size(), 2u);
  ASSERT_NE(back.find("p", kSha), nullptr);
  EXPECT_EQ(back.find("p", kSha)->request, (json{{"database", true}}));
  EXPECT_EQ(back.find("q", kSha), nullptr);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  int removed = 0;
  Approvals::update(path, [&](Approvals& all) { removed = all.remove("p", kSha); });
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(Approvals::load(path).all().size(), 1u);
}

TEST(Approvals, AFileOthersMayWriteOrGarbageIsRefused) {
  jrtest::TempDir d;
  std::string path = d.path() + "/approvals.json";
  Approvals::update(path, [](Approvals& all) { all.add({"p", kSha, "", "", json::object()}); });
  chmod(path.c_str(), 0666);
  EXPECT_THROW(Approvals::load(path), ApprovalError);
  chmod(path.c_str(), 0600);
  std::ofstream(path) << "{not json";
  EXPECT_THROW(Approvals::load(path), ApprovalError);
  std::ofstream(path) << R"({"version":1,"approvals":[{"name":"p","sha256":"short"}]})";
  EXPECT_THROW(Approvals::load(path), ApprovalError);
}

TEST(Approvals, PathPrecedence) {
  EXPECT_EQ(approvals_path("/etc/jr/a.json", "/data"), "/etc/jr/a.json");
  EXPECT_EQ(approvals_path("", "/data"), "/data/approvals.json");
  EXPECT_NE(approvals_path("", "").find("approvals.json"), std::string::npos);
}

TEST(Approvals, ShippedPluginsAreBuiltIn) {
  auto pin = jr::PinnedFile::pin(jrtest::plugin_dir() + "/libjr_echo.so");
  const BuiltinApproval* b = builtin_approval(pin->sha256());
  ASSERT_NE(b, nullptr) << "the built echo plugin has no built-in approval";
  EXPECT_STREQ(b->file, "libjr_echo.so");
  EXPECT_EQ(builtin_approval(kSha), nullptr);
}

// ---- pinning ----

TEST(Pin, ContentIsHashedAndSealedAndTheFileNoLongerMatters) {
  jrtest::TempDir d;
  std::string path = d.path() + "/libx.so";
  std::string content(100000, 'z');
  std::ofstream(path, std::ios::binary) << content;
  auto pin = jr::PinnedFile::pin(path);
  EXPECT_EQ(pin->size(), content.size());
  EXPECT_EQ(pin->sha256(), jr::sha256_hex(content.data(), content.size()));
  EXPECT_EQ(jr::sha256_hex("abc", 3),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(fcntl(pin->fd(), F_GET_SEALS),
            F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  // Nobody can change the pinned bytes, not even through a writable reopen.
  int w = open(pin->proc_path().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(w, 0);
  EXPECT_EQ(write(w, "x", 1), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_NE(ftruncate(w, 10), 0);
  EXPECT_EQ(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0), MAP_FAILED);
  close(w);
  // Replacing the file changes nothing in the pin.
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "other";
  std::string seen(content.size() + 10, '\0');
  ssize_t n = pread(pin->fd(), seen.data(), seen.size(), 0);
  ASSERT_EQ(n, static_cast<ssize_t>(content.size()));
  seen.resize(static_cast<size_t>(n));
  EXPECT_EQ(seen, content);
}

TEST(Pin, RefusesMissingOversizedAndNonRegularFilesWithoutBlocking) {
  jrtest::TempDir d;
  EXPECT_THROW(jr::PinnedFile::pin(d.path() + "/missing.so"), jr::PluginError);
  std::string big = d.path() + "/big.so";
  std::ofstream(big) << std::string(2000, 'b');
  try {
    jr::PinnedFile::pin(big, 1000);
    ADD_FAILURE() << "an oversized file was pinned";
  } catch (const jr::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("larger than"), std::string::npos) << e.what();
  }
  std::string fifo = d.path() + "/fifo.so";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_THROW(jr::PinnedFile::pin(fifo), jr::PluginError);  // no writer: must not block
  EXPECT_THROW(jr::PinnedFile::pin(d.path()), jr::PluginError);
}

// ---- describing a directory ----

TEST(DescribeDir, BadPluginsAreRefusedWithTheirReasonsAndTheOthersDescribed) {
  jrtest::TempDir d;
  for (const char* c : {"c", "wrong_major", "dup"}) {
    for (const auto& e : std::filesystem::directory_iterator(jrtest::test_plugin_dir() + "/" + c)) {
      if (e.path().extension() == ".so") {
        std::filesystem::copy_file(e.path(), d.path() + "/" + e.path().filename().string());
      }
    }
  }
  DescribedDir out = describe_dir(d.path());
  ASSERT_EQ(out.plugins.size(), 1u);
  EXPECT_EQ(out.plugins[0].name, "c_plugin");
  EXPECT_EQ(out.plugins[0].sha256.size(), 64u);
  ASSERT_TRUE(out.plugins[0].pin);
  ASSERT_EQ(out.refused.size(), 3u);
  std::map<std::string, std::string> why;
  for (const auto& r : out.refused) {
    why[std::filesystem::path(r.file).filename().string()] = r.reason;
  }
  EXPECT_NE(why["libjr_t_wrong_major.so"].find("ABI major version 2"), std::string::npos);
  EXPECT_NE(why["libjr_t_dup_a.so"].find("also declared by"), std::string::npos);
  EXPECT_NE(why["libjr_t_dup_b.so"].find("also declared by"), std::string::npos);
  EXPECT_THROW(describe_dir(d.path() + "/nope"), jr::PluginError);
}

}  // namespace

TEST(Trust, ConnectGrantsAreRequestsLikeEveryOtherWidening) {
  json req = {{"sandbox", {{"network", "loopback"}, {"connect", {"db.internal:5432"}}}}};
  // Asked for in the manifest only: refused, naming the key and how to grant it.
  TrustInput in = input(req);
  in.approved = nullptr;
  TrustDecision d = decide_trust(in);
  ASSERT_FALSE(d.accepted());
  EXPECT_NE(d.refusal_text().find("sandbox.connect"), std::string::npos) << d.refusal_text();
  // Granted in the config: the config's list is what it gets.
  TrustDecision g = decide_trust(
      input(req, {{"sandbox", {{"network", "loopback"}, {"connect", {"10.0.0.0/8:5432"}}}}}));
  ASSERT_TRUE(g.accepted()) << g.refusal_text();
  EXPECT_EQ(g.policy.connect, std::vector<std::string>{"10.0.0.0/8:5432"});
  EXPECT_EQ(dim(g, "connect").source, GrantSource::config);
  // An approval of exactly that request.
  json approved = approvable_request(req);
  TrustInput ai = input(req, {{"sandbox", {{"network", "loopback"}}}});
  ai.approved = &approved;
  TrustDecision a = decide_trust(ai);
  ASSERT_TRUE(a.accepted()) << a.refusal_text();
  EXPECT_EQ(a.policy.connect, std::vector<std::string>{"db.internal:5432"});
  // A bad entry is refused with the entry and the problem.
  TrustDecision bad = decide_trust(
      input(json::object(), {{"sandbox", {{"network", "loopback"}, {"connect", {"db"}}}}}));
  ASSERT_FALSE(bad.accepted());
  EXPECT_NE(bad.refusal_text().find("\"db\": no port"), std::string::npos) << bad.refusal_text();
  // connect without the guarded mode means nothing: refused, saying so.
  TrustDecision none =
      decide_trust(input(json::object(), {{"sandbox", {{"connect", {"10.0.0.1:80"}}}}}));
  ASSERT_FALSE(none.accepted());
  EXPECT_NE(none.refusal_text().find("needs sandbox.network = \"loopback\""), std::string::npos)
      << none.refusal_text();
}
