// A gtest fixture for end-to-end tests of the real `runner` binary: a fresh database per test,
// plugin directories assembled from built plugins, and shortcuts for enqueue/status/SQL.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"

namespace jrtest {

inline std::string echo_so() { return plugin_dir() + "/libjr_echo.so"; }
inline std::string test_so(const std::string& dir, const std::string& name) {
  return test_plugin_dir() + "/" + dir + "/libjr_t_" + name + ".so";
}

class RunnerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = PgCluster::get().create_database("e2e");
    env_ = {{"DATABASE_URL", url_}};
    auto r = run_runner({"migrate"}, env_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // A plugin directory holding exactly the given built plugins.
  std::string plugin_dir_with(const std::vector<std::string>& sos) {
    std::string d = dir_.path() + "/plugins" + std::to_string(++dirs_);
    std::filesystem::create_directories(d);
    for (const auto& so : sos) {
      std::filesystem::copy_file(so, d + "/" + std::filesystem::path(so).filename().string());
    }
    return d;
  }
  // A config file whose [plugins.record] section points at a fresh executions log.
  std::string record_config(std::string* record_path) {
    *record_path = dir_.path() + "/executions" + std::to_string(++dirs_) + ".log";
    std::string cfg = dir_.path() + "/record" + std::to_string(dirs_) + ".toml";
    shared_file(*record_path);
    // The operator grants the write access the plugin's manifest requests (issue 16).
    std::ofstream(cfg)
        << "[plugins.record]\nrecord_file = \"" << *record_path
        << "\"\n[plugins.record.sandbox]\nwritable_config_keys = [\"record_file\"]\n";
    return cfg;
  }
  static std::map<int64_t, int> executions(const std::string& record_path) {
    std::map<int64_t, int> out;
    std::ifstream in(record_path);
    for (std::string line; std::getline(in, line);) ++out[std::stoll(line)];
    return out;
  }
  std::string q(const std::string& sql) { return PgCluster::query_one(url_, sql); }
  int64_t count(const std::string& sql) {
    std::string v = q(sql);
    return v.empty() ? 0 : std::stoll(v);
  }
  int64_t enqueue(const std::vector<std::string>& args) {
    auto r = run_runner(args, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.empty() ? -1 : std::stoll(r.out);
  }
  // Enqueues `n` jobs of `kind` with the same payload through --payload-file; returns the ids.
  std::vector<int64_t> enqueue_many(const std::string& kind, int n, const std::string& payload,
                                    const std::vector<std::string>& extra = {}) {
    std::string file = dir_.path() + "/bulk" + std::to_string(++dirs_) + ".jsonl";
    {
      std::ofstream out(file);
      for (int i = 0; i < n; ++i) out << payload << "\n";
    }
    std::vector<std::string> args = {"enqueue", kind, "--payload-file", file};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run_runner(args, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<int64_t> ids;
    std::istringstream in(r.out);
    for (std::string line; std::getline(in, line);) ids.push_back(std::stoll(line));
    return ids;
  }
  nlohmann::json status(int64_t id) {
    auto r = run_runner({"status", std::to_string(id), "--json"}, env_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }
  bool wait_state(int64_t id, const std::string& state, std::chrono::milliseconds limit) {
    return wait_until(
        [&] {
          return q("SELECT state FROM jr_jobs_all WHERE id = " + std::to_string(id)) == state;
        },
        limit);
  }

  std::string url_;
  std::map<std::string, std::string> env_;
  TempDir dir_;
  int dirs_ = 0;
};

}  // namespace jrtest
