// Red team of the trust model (issue 16, classes 1, 2, 9 (describe) and 10) through the real
// runner as root, each hostile plugin beside the healthy echo plugin (RedTeamFixture): a plugin
// file can only ask; what was checked is what runs; a bad plugin is refused, not fatal; a kind
// recorded for one plugin is not taken by another.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "redteam.hpp"

namespace {

using jrtest::wait_until;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string trust_so(const std::string& c) {
  return jrtest::test_plugin_dir() + "/trust_" + c + "/libjr_trust_" + c + ".so";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string sha256_of(const std::string& path) {
  std::string data = slurp(path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

size_t occurrences(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// The log lines (JSON objects) whose "msg" is `msg`.
std::vector<nlohmann::json> log_lines(const std::string& log, const std::string& msg) {
  std::vector<nlohmann::json> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("msg", "") == msg) out.push_back(j);
  }
  return out;
}

class TrustRedTeam : public jrtest::RedTeamFixture {
 protected:
  void SetUp() override {
    RedTeamFixture::SetUp();
    token_ = "runner-token-" + std::to_string(getpid()) + "-never-shared";
    env_["RUNNER_API_TOKEN"] = token_;
    env_["RUNNER_APPROVALS"] = dir_.path() + "/approvals.json";
    // A file every user may read (DAC) but no plugin was granted: only the sandbox stops it.
    secret_file_ = dir_.path() + "/not-granted.txt";
    std::ofstream(secret_file_) << "private\n";
    chmod(secret_file_.c_str(), 0644);
  }

  // `so` with `extra` bytes appended: still a valid library, another SHA-256.
  std::string modified_copy(const std::string& so, const std::string& name) {
    std::string d = dir_.path() + "/mod" + std::to_string(++dirs_);
    fs::create_directories(d);
    std::string out = d + "/" + name;
    fs::copy_file(so, out);
    std::ofstream(out, std::ios::app | std::ios::binary) << "jr-trust-test-padding";
    return out;
  }

  nlohmann::json check_json(const std::string& so, int* rc) {
    auto r = jrtest::run_runner({"plugins", "check", so, "--json"}, env_);
    *rc = r.exit_code;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out << r.err;
    return j.is_object() ? j : nlohmann::json::object();
  }

  std::string probe_payload(const std::string& secret1, const std::string& secret2) {
    return arg_payload("probe;" + secret1 + ";" + secret2 + ";" + secret_file_);
  }

  std::string token_;
  std::string secret_file_;
};

// Class 1: the manifest asks for in-process execution, the whole file system (read and write), the
// network, no memory limit and the runner's secrets. With no grant the plugin is refused (nothing
// of it runs in the runner, its job is never taken) while echo jobs complete.
TEST_F(TrustRedTeam, GreedyManifestWithoutAGrantIsRefused) {
  start_runner({trust_so("greedy")});
  int64_t greedy = enqueue({"enqueue", "trust_greedy", "--payload",
                            probe_payload("stolen_token", token_), "--max-attempts", "1"});
  enqueue_healthy(20);
  std::string log = stop_and_check();
  EXPECT_EQ(q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(greedy)), "available")
      << "the greedy plugin ran: " << status(greedy).dump() << "\n"
      << log;
  auto refused = log_lines(log, "plugin refused");
  ASSERT_EQ(refused.size(), 1u) << log;
  EXPECT_EQ(refused[0]["plugin"], "trust_greedy");
  std::string why = refused[0]["reason"].get<std::string>();
  for (const char* asked :
       {"isolation = \"none\"", "sandbox.readable", "sandbox.writable", "sandbox.network",
        "sandbox.memory_mb", "DATABASE_URL", "RUNNER_API_TOKEN"}) {
    EXPECT_NE(why.find(asked), std::string::npos) << asked << " not in: " << why;
  }
  EXPECT_EQ(log.find("plugin loaded in-process"), std::string::npos) << log;
}

// Class 1: the operator's config sets each dimension outright (the request is ignored): the
// plugin runs confined, in its own process as nobody, with none of what it asked for.
TEST_F(TrustRedTeam, OperatorConfigDecidesWhatTheGreedyPluginGets) {
  start_runner({trust_so("greedy")}, R"(
[plugins.trust_greedy]
isolation = "sandbox"
env = false
[plugins.trust_greedy.sandbox]
readable = []
writable = []
network = "none"
memory_mb = 256
)");
  int64_t greedy = enqueue({"enqueue", "trust_greedy", "--payload",
                            probe_payload("stolen_token", token_), "--max-attempts", "1"});
  enqueue_healthy(20);
  ASSERT_EQ(wait_finished(greedy, 60s), "completed") << runner_->log();
  nlohmann::json r = status(greedy)["result"];
  pid_t host = runner_->pid();
  std::string log = stop_and_check();
  EXPECT_NE(r["pid"].get<int>(), host) << "ran inside the runner: " << r.dump();
  EXPECT_NE(r["uid"].get<int>(), 0) << r.dump();
  EXPECT_FALSE(r["sees_secret1"].get<bool>()) << "env passthrough reached its config: " << r.dump();
  EXPECT_FALSE(r["sees_secret2"].get<bool>()) << "it sees RUNNER_API_TOKEN: " << r.dump();
  // Refused by Landlock (EACCES) or not even visible in its mount namespace (ENOENT).
  EXPECT_TRUE(r["read_errno"] == EACCES || r["read_errno"] == ENOENT)
      << "it read a file it was not granted: " << r.dump();
  EXPECT_EQ(r["socket_errno"], EPERM) << r.dump();
  EXPECT_EQ(r["as_mb"], 256) << r.dump();
  auto loaded = log_lines(log, "plugin loaded in the sandbox");
  bool found = false;
  for (const auto& l : loaded) {
    if (l.value("plugin", "") != "trust_greedy") continue;
    found = true;
    EXPECT_EQ(l.value("sha256", ""), sha256_of(trust_so("greedy"))) << l.dump();
    EXPECT_EQ(l.value("grants", nlohmann::json::object()).value("env", nlohmann::json()),
              nlohmann::json::object())
        << l.dump();
  }
  EXPECT_TRUE(found) << log;
}

// Class 1: an approval grants exactly what the approved file requested, only for that content;
// isolation and environment passthrough are never approvable.
TEST_F(TrustRedTeam, ApprovalsAreBoundToTheContentAndCannotGrantConfigurationOnlyAsks) {
  int rc = 0;
  nlohmann::json before = check_json(trust_so("net"), &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(before["accepted"], false) << before.dump();
  EXPECT_EQ(before["sha256"], sha256_of(trust_so("net")));
  EXPECT_NE(before["refused"].dump().find("sandbox.network"), std::string::npos) << before.dump();

  auto no_tty = jrtest::run_runner({"plugins", "approve", trust_so("net")}, env_);
  EXPECT_EQ(no_tty.exit_code, 2) << "approved without --yes on a non-terminal: " << no_tty.out;
  auto ap = jrtest::run_runner({"plugins", "approve", trust_so("net"), "--yes", "--json"}, env_);
  ASSERT_EQ(ap.exit_code, 0) << ap.err;
  struct stat st {};
  ASSERT_EQ(stat(env_["RUNNER_APPROVALS"].c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());

  nlohmann::json after = check_json(trust_so("net"), &rc);
  EXPECT_EQ(rc, 0) << after.dump();
  EXPECT_EQ(after["granted"]["network"]["source"], "approval") << after.dump();
  EXPECT_EQ(after["granted"]["readable"]["source"], "approval") << after.dump();
  EXPECT_EQ(after["effective"]["network"], "loopback");

  // Another content under the same name: not approved.
  std::string other = modified_copy(trust_so("net"), "libjr_trust_net.so");
  nlohmann::json changed = check_json(other, &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(changed["accepted"], false) << changed.dump();

  // Through the runner: the approved plugin runs with its approved network.
  start_runner({trust_so("net")});
  int64_t net = enqueue({"enqueue", "trust_net", "--payload", probe_payload("x", "y")});
  enqueue_healthy(10);
  ASSERT_EQ(wait_finished(net, 60s), "completed") << runner_->log();
  EXPECT_EQ(status(net)["result"]["socket_errno"], 0) << status(net).dump();
  stop_and_check();

  // Approving the greedy plugin grants what is approvable; isolation and env stay refused.
  auto g = jrtest::run_runner({"plugins", "approve", trust_so("greedy"), "--yes", "--json"}, env_);
  ASSERT_EQ(g.exit_code, 0) << g.err;
  auto gj = nlohmann::json::parse(g.out, nullptr, false);
  EXPECT_NE(gj["configuration_only"].dump().find("isolation"), std::string::npos) << g.out;
  EXPECT_NE(gj["configuration_only"].dump().find("env"), std::string::npos) << g.out;
  nlohmann::json greedy = check_json(trust_so("greedy"), &rc);
  EXPECT_EQ(rc, 1);
  std::string refused = greedy["refused"].dump();
  EXPECT_NE(refused.find("isolation"), std::string::npos) << refused;
  EXPECT_NE(refused.find("RUNNER_API_TOKEN"), std::string::npos) << refused;
  EXPECT_EQ(refused.find("sandbox.network"), std::string::npos) << refused;
  EXPECT_EQ(greedy["granted"]["network"]["source"], "approval") << greedy.dump();
}

// Class 2: the file is replaced on disk after the runner described it; new jobs, and a worker
// respawned after a crash, still run the described content (behaviour and SHA-256).
TEST_F(TrustRedTeam, SwappedPluginFileChangesNothingEvenAfterARespawn) {
  start_runner({trust_so("swap_a")});
  int64_t first = enqueue({"enqueue", "trust_swap", "--payload", "{}"});
  ASSERT_EQ(wait_finished(first, 60s), "completed") << runner_->log();
  EXPECT_EQ(status(first)["result"]["version"], "A");
  // Replace the file in place (same inode, new bytes) with the other build.
  std::string installed = plugins_ + "/libjr_trust_swap_a.so";
  {
    std::string b = slurp(trust_so("swap_b"));
    std::ofstream out(installed, std::ios::binary | std::ios::trunc);
    out << b;
  }
  ASSERT_EQ(sha256_of(installed), sha256_of(trust_so("swap_b")));
  int64_t crash =
      enqueue({"enqueue", "trust_swap", "--payload", arg_payload("crash"), "--max-attempts", "1"});
  ASSERT_EQ(wait_finished(crash, 60s), "discarded") << runner_->log();
  EXPECT_EQ(status(crash)["errors"][0]["kind"], "crash");
  auto after = enqueue_many("trust_swap", 20, "{}");
  enqueue_healthy(10);
  for (int64_t id : after) {
    ASSERT_EQ(wait_finished(id, 60s), "completed") << runner_->log();
    EXPECT_EQ(status(id)["result"]["version"], "A") << "a replaced file ran: " << status(id).dump();
  }
  std::string log = stop_and_check();
  std::string sha_a = sha256_of(trust_so("swap_a"));
  std::string sha_b = sha256_of(trust_so("swap_b"));
  ASSERT_NE(sha_a, sha_b);
  EXPECT_NE(log.find(sha_a), std::string::npos) << log;
  EXPECT_EQ(log.find(sha_b), std::string::npos) << log;
}

// Class 2: `runner plugins ls` (and check) describe plugins in the sandbox; no constructor runs
// in the runner process (the marker plugin's constructor writes $JR_TRUST_MARKER when it can).
TEST_F(TrustRedTeam, PluginsLsAndCheckRunNoPluginCodeInTheRunner) {
  std::string marker = dir_.path() + "/ctor-marker";
  std::map<std::string, std::string> env = env_;
  env["JR_TRUST_MARKER"] = marker;
  std::string dir = plugin_dir_with({trust_so("marker"), jrtest::echo_so()});
  auto ls = jrtest::run_runner({"plugins", "ls", dir, "--json"}, env);
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  auto arr = nlohmann::json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(arr.is_array()) << ls.out;
  ASSERT_EQ(arr.size(), 2u) << ls.out;
  EXPECT_EQ(arr[1]["name"], "trust_marker");
  EXPECT_EQ(arr[1]["sha256"], sha256_of(trust_so("marker")));
  EXPECT_FALSE(fs::exists(marker))
      << "a plugin constructor ran in `runner plugins ls`: " << slurp(marker);
  auto check = jrtest::run_runner({"plugins", "check", trust_so("marker"), "--json"}, env);
  EXPECT_EQ(check.exit_code, 0) << check.err;
  EXPECT_FALSE(fs::exists(marker)) << "a plugin constructor ran in `runner plugins check`";
}

// Class 9 (describe): constructors that loop, stop themselves or abort, a 1 MiB manifest, a wrong
// ABI major, a 100,000-character name, two plugins claiming one kind: each refuses only that
// plugin, with its file and reason, while the runner starts and serves echo.
TEST_F(TrustRedTeam, BadPluginsAreRefusedWhileTheHealthyOneStarts) {
  auto start = std::chrono::steady_clock::now();
  start_runner({trust_so("ctor_loop"), trust_so("ctor_stop"), trust_so("ctor_abort"),
                trust_so("huge_manifest"), trust_so("wrong_major"), trust_so("long_name"),
                trust_so("dup_a"), trust_so("dup_b")});
  enqueue_healthy(50);
  std::string log = stop_and_check();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 45s) << "describing in parallel with a deadline should not take this long";
  auto refused = log_lines(log, "plugin refused");
  std::map<std::string, std::string> reason;  // file name -> reason
  for (const auto& r : refused) {
    reason[fs::path(r["file"].get<std::string>()).filename().string()] =
        r["reason"].get<std::string>();
  }
  auto expect = [&](const std::string& c, const std::string& text) {
    std::string file = "libjr_trust_" + c + ".so";
    ASSERT_TRUE(reason.count(file)) << file << " was not refused\n" << log;
    EXPECT_NE(reason[file].find(text), std::string::npos) << file << ": " << reason[file];
  };
  expect("ctor_loop", "took longer than");
  expect("ctor_stop", "took longer than");
  expect("ctor_abort", "SIGABRT");
  expect("huge_manifest", "manifest_json is larger than");
  expect("wrong_major", "ABI major version");
  expect("long_name", "invalid plugin name");
  expect("dup_a", "job kind 'trust_dup_kind' is also declared by");
  expect("dup_b", "job kind 'trust_dup_kind' is also declared by");
  EXPECT_EQ(refused.size(), 8u) << log;
}

// Class 10: jr_kinds records which plugin (name and content) serves a kind. A runner with another
// plugin declaring that kind refuses it (the jobs wait for the owner) unless the operator sets
// replace_kinds; the same plugin with new content is an upgrade.
TEST_F(TrustRedTeam, KindOwnershipAcrossRunners) {
  const std::string kind_row =
      "SELECT plugin || ' ' || coalesce(plugin_sha256, '') FROM jr_kinds WHERE kind = "
      "'trust_shared_kind'";
  std::string sha_a = sha256_of(trust_so("owner_a"));
  std::string sha_b = sha256_of(trust_so("owner_b"));
  // Runner 1 records trust_owner_a as the owner.
  start_runner({trust_so("owner_a")});
  ASSERT_TRUE(wait_until([&] { return q(kind_row) == "trust_owner_a " + sha_a; }, 30s))
      << q(kind_row) << "\n"
      << runner_->log();
  stop_and_check();

  // Runner 2 has another plugin for the kind: it refuses the kind, serves echo.
  start_runner({trust_so("owner_b")});
  auto shared = enqueue_many("trust_shared_kind", 5, "{}");
  enqueue_healthy(20);
  std::string log2 = stop_and_check();
  for (int64_t id : shared) {
    EXPECT_EQ(q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(id)), "available")
        << "another plugin took the kind: " << status(id).dump();
  }
  auto refused = log_lines(log2,
                           "kind refused: it is recorded as served by plugin "
                           "'trust_owner_a' (sha256 " +
                               sha_a.substr(0, 12) +
                               "), not by 'trust_owner_b'; set [plugins.trust_owner_b] "
                               "replace_kinds = true to take it over");
  EXPECT_EQ(refused.size(), 1u) << log2;
  EXPECT_EQ(q(kind_row), "trust_owner_a " + sha_a);

  // Runner 3: the same plugin name with new content is an upgrade, accepted and recorded.
  std::string a2 = modified_copy(trust_so("owner_a"), "libjr_trust_owner_a.so");
  std::string sha_a2 = sha256_of(a2);
  start_runner({a2});
  for (int64_t id : shared) {
    ASSERT_EQ(wait_finished(id, 60s), "completed") << runner_->log();
    EXPECT_EQ(status(id)["result"]["version"], "a");
  }
  std::string log3 = stop_and_check();
  EXPECT_EQ(q(kind_row), "trust_owner_a " + sha_a2);
  EXPECT_EQ(log_lines(log3,
                      "plugin upgraded: the kind is now served by new content of the same "
                      "plugin")
                .size(),
            1u)
      << log3;

  // Runner 4: the operator lets trust_owner_b replace the owner.
  start_runner({trust_so("owner_b")}, "[plugins.trust_owner_b]\nreplace_kinds = true\n");
  int64_t taken = enqueue({"enqueue", "trust_shared_kind", "--payload", "{}"});
  ASSERT_EQ(wait_finished(taken, 60s), "completed") << runner_->log();
  EXPECT_EQ(status(taken)["result"]["version"], "b");
  std::string log4 = stop_and_check();
  EXPECT_EQ(q(kind_row), "trust_owner_b " + sha_b);
  EXPECT_EQ(occurrences(log4, "kind taken over from another plugin (replace_kinds = true)"), 1u)
      << log4;
}

// Classes 7 and 10: a plugin that also declares a kind recorded for another plugin is refused that
// kind here, and may not make jobs of it either (the owner would run them): neither through
// host->enqueue from a job of its own kind nor through a cron entry in its manifest. Both are
// refused with its name in the log; its own kind, enqueued and scheduled, keeps working. Nor may
// its cron entry replace the operator's entry of the same name.
TEST_F(TrustRedTeam, RefusedKindCanNeitherBeEnqueuedNorScheduledByTheOtherPlugin) {
  const std::string kind_row = "SELECT plugin FROM jr_kinds WHERE kind = 'trust_shared_kind'";
  start_runner({trust_so("owner_a")});
  ASSERT_TRUE(wait_until([&] { return q(kind_row) == "trust_owner_a"; }, 30s))
      << q(kind_row) << "\n"
      << runner_->log();
  stop_and_check();

  start_runner({trust_so("kind_thief")}, R"(
[[cron]]
name = "trust_operator_cron"
schedule = "@every 1h"
kind = "echo"
)");
  int64_t steal = enqueue({"enqueue", "trust_kind_thief", "--payload", arg_payload("steal")});
  enqueue_healthy(20);
  ASSERT_EQ(wait_finished(steal, 60s), "completed") << runner_->log();
  nlohmann::json r = status(steal)["result"];
  EXPECT_NE(r["steal"], 0) << "host->enqueue of a refused kind succeeded: " << r.dump();
  EXPECT_EQ(r["own"], 0) << "host->enqueue of its own kind failed: " << r.dump();
  // Its own cron entry ticks (and the job it enqueued ran): the schedules were registered.
  const std::string own_done =
      "SELECT count(*) FROM jr_jobs_done WHERE kind = 'trust_kind_thief' AND state = "
      "'completed' AND payload->>'arg' = ";
  EXPECT_TRUE(wait_until([&] { return count(own_done + "'cron-own'") > 0; }, 60s))
      << runner_->log();
  EXPECT_TRUE(wait_until([&] { return count(own_done + "'enqueued-own'") == 1; }, 60s))
      << runner_->log();
  std::string log = stop_and_check();
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE kind = 'trust_shared_kind'"), 0)
      << "the thief made jobs of another plugin's kind: "
      << q("SELECT string_agg(payload::text, ' ') FROM jr_jobs_all WHERE kind = "
           "'trust_shared_kind'");
  EXPECT_EQ(count("SELECT count(*) FROM jr_cron WHERE kind = 'trust_shared_kind'"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM jr_cron WHERE name = 'trust_thief_own'"), 1);
  EXPECT_EQ(q("SELECT kind || ' ' || source FROM jr_cron WHERE name = 'trust_operator_cron'"),
            "echo config");
  EXPECT_EQ(count("SELECT count(*) FROM jr_jobs_all WHERE payload->>'arg' = 'hijacked'"), 0);
  EXPECT_EQ(q(kind_row), "trust_owner_a");

  auto refused_enqueue = log_lines(
      log, "enqueue refused: a plugin may enqueue only its own kinds and those granted to it");
  ASSERT_EQ(refused_enqueue.size(), 1u) << log;
  EXPECT_EQ(refused_enqueue[0]["plugin"], "trust_kind_thief");
  EXPECT_EQ(refused_enqueue[0]["requested_kind"], "trust_shared_kind");
  EXPECT_EQ(refused_enqueue[0]["allowed"], nlohmann::json::array({"trust_kind_thief"}));
  auto refused_cron = log_lines(log,
                                "cron entry refused: a plugin may schedule only the kinds it "
                                "serves in this runner and those granted to it");
  ASSERT_EQ(refused_cron.size(), 1u) << log;
  EXPECT_EQ(refused_cron[0]["plugin"], "trust_kind_thief");
  EXPECT_EQ(refused_cron[0]["cron"], "trust_thief_forged");
  EXPECT_EQ(refused_cron[0]["kind"], "trust_shared_kind");
  auto taken = log_lines(log, "cron entry refused: its name is already used by another entry");
  ASSERT_EQ(taken.size(), 1u) << log;
  EXPECT_EQ(taken[0]["plugin"], "trust_kind_thief");
  EXPECT_EQ(taken[0]["cron"], "trust_operator_cron");
  EXPECT_EQ(taken[0]["used_by"], "config");
}

}  // namespace
