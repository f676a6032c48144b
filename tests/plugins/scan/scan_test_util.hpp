// Shared helpers of the scan plugin's database tests: a fresh database with scan_jobs and an
// audit trigger that records every row change (so tests observe each status transition as a
// producer polling the table would), and the plugin config pointing at the fixture server.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "fixture_server.hpp"
#include "harness.hpp"
#include "scan/src/scan_store.hpp"

namespace scantest {

inline std::string q(const std::string& url, const std::string& sql) {
  return jrtest::PgCluster::query_one(url, sql);
}

// Creates scan_jobs (the plugin's own DDL) and scan_audit, filled by a trigger on every insert
// or update of scan_jobs.
inline void install_audit(const std::string& url) {
  jrtest::PgCluster::exec(url, scan::kScanJobsDdl);
  jrtest::PgCluster::exec(url, R"SQL(
CREATE TABLE scan_audit (seq bigserial PRIMARY KEY, id text, status text, step text,
                         progress int, has_teaser bool, has_result bool);
CREATE FUNCTION scan_audit_fn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO scan_audit (id, status, step, progress, has_teaser, has_result)
  VALUES (NEW.id, NEW.status, NEW.step, NEW.progress, NEW.teaser IS NOT NULL,
          NEW.result IS NOT NULL);
  RETURN NEW;
END $$;
CREATE TRIGGER scan_audit_trg AFTER INSERT OR UPDATE ON scan_jobs
  FOR EACH ROW EXECUTE FUNCTION scan_audit_fn();
)SQL");
}

// "STATUS/STEP/PROGRESS/teaser?/result?" for every recorded change of scan `id`, comma-joined.
inline std::string audit(const std::string& url, const std::string& id) {
  return q(url,
           "SELECT coalesce(string_agg(status || '/' || coalesce(step, '-') || '/' || progress || "
           "'/' || (CASE WHEN has_teaser THEN 'T' ELSE '-' END) || "
           "(CASE WHEN has_result THEN 'R' ELSE '-' END), ',' ORDER BY seq), '') "
           "FROM scan_audit WHERE id = '" +
               id + "'");
}

inline nlohmann::json plugin_config(const std::string& db, const FixtureServer& s) {
  return {{"database_url", db},
          {"allow_hosts", {"127.0.0.1:" + std::to_string(s.port())}},
          {"request_timeout_ms",
           3000},  // /slow answers after 6 s; the rest must fit on a loaded machine
          {"link_check_timeout_ms", 1000},
          {"max_body_bytes", 1024 * 1024},
          {"max_redirects", 3},
          {"user_agent", "scan-test/1.0"}};
}

inline std::string payload(const std::string& id, const std::string& url,
                           const std::string& user = "") {
  nlohmann::json p = {{"scan_id", id}, {"url", url}};
  if (!user.empty()) p["user_id"] = user;
  return p.dump();
}

// A fixture for tests through the real `runner`: a fresh migrated database, a plugin directory
// holding the scan plugin, and a config that lets it reach the fixture server (plus `extra`).
class RunnerScanTest : public ::testing::Test {
 protected:
  void set_up(const std::string& db_prefix, const std::string& extra) {
    db = jrtest::PgCluster::get().create_database(db_prefix);
    env = {{"DATABASE_URL", db}};
    ASSERT_EQ(jrtest::run_runner({"migrate"}, env).exit_code, 0);
    // The plugin's own role and schema, as the runner will find them: scan_jobs lives there.
    pdb = jrtest::plugin_database(db, "scan").url;
    plugins = dir.path() + "/plugins";
    std::filesystem::create_directories(plugins);
    std::filesystem::copy_file(jrtest::plugin_dir() + "/libjr_scan.so", plugins + "/libjr_scan.so");
    config = dir.path() + "/runner.toml";
    std::ofstream(config) << "[plugins.scan]\nallow_hosts = [\"127.0.0.1:" << server.port()
                          << "\"]\n"
                          << extra;
  }
  // `runner status ID --json` (an empty object when the command failed).
  nlohmann::json status(int64_t id) {
    auto r = jrtest::run_runner({"status", std::to_string(id), "--json"}, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }

  FixtureServer server;
  jrtest::TempDir dir;
  std::string db;   // the runner's role: the queue
  std::string pdb;  // the plugin's role: scan_jobs
  std::string plugins, config;
  std::map<std::string, std::string> env;
};

}  // namespace scantest
