// The scan plugin (the real .so, in-process through PluginHost) against a real PostgreSQL and the
// local fixture server: status transitions observed in scan_jobs, teaser then full report, every
// error state, idempotent re-runs, resuming after the last completed step, cleanup, manifest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <jobrunner/abi.h>

#include <cstdlib>
#include <pqxx/pqxx>

#include "plugin_host.hpp"
#include "scan/src/pipeline.hpp"
#include "scan_test_util.hpp"

namespace {

using nlohmann::json;
using scantest::audit;
using scantest::payload;
using scantest::q;

class ScanPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's own role and schema (what a runner hands it); the test reads and seeds
    // scan_jobs through it too.
    db = jrtest::plugin_database(jrtest::PgCluster::get().create_database("scan"), "scan").url;
    scantest::install_audit(db);
    host = std::make_unique<jrtest::PluginHost>(so(), scantest::plugin_config(db, server));
  }
  static std::string so() { return jrtest::plugin_dir() + "/libjr_scan.so"; }
  jrtest::JobOutcome scan(const std::string& id, const std::string& url, int attempt = 1) {
    return host->run("scan", payload(id, url), attempt);
  }
  std::string row(const std::string& id, const std::string& col) {
    return q(db,
             "SELECT coalesce(" + col + "::text, '<null>') FROM scan_jobs WHERE id = '" + id + "'");
  }

  scantest::FixtureServer server;
  std::string db;
  std::unique_ptr<jrtest::PluginHost> host;
};

std::vector<std::string> finding_ids(const json& findings) {
  std::vector<std::string> out;
  for (const auto& f : findings) out.push_back(f["id"]);
  return out;
}

TEST_F(ScanPluginTest, GoodPageWalksEveryStatusToFullReady) {
  auto out = scan("good-1", server.url("/good"));
  ASSERT_EQ(out.status, JR_OK) << out.error;
  // Every write to the row, as a producer polling scan_jobs sees them.
  EXPECT_EQ(audit(db, "good-1"),
            "QUEUED/-/0/--,RUNNING/CRAWL/5/--,RUNNING/CRAWL/25/--,RUNNING/PARSE/30/--,"
            "RUNNING/PARSE/45/--,RUNNING/ANALYZE/50/--,RUNNING/ANALYZE/65/--,"
            "RUNNING/GENERATE/70/--,TEASER_READY/GENERATE/80/T-,TEASER_READY/GENERATE/95/T-,"
            "FULL_READY/GENERATE/100/TR");
  // The same steps reported to the host as job progress.
  std::vector<std::string> steps;
  for (const auto& [pct, step] : out.progress) {
    if (steps.empty() || steps.back() != step) steps.push_back(step);
  }
  EXPECT_EQ(steps, (std::vector<std::string>{"CRAWL", "PARSE", "ANALYZE", "GENERATE",
                                             "TEASER_READY", "FULL_READY"}));
  EXPECT_EQ(out.progress.back().first, 100);
  bool logged = false;
  for (const auto& l : out.logs) logged = logged || l == "scan good-1: RUNNING PARSE 30%";
  EXPECT_TRUE(logged);

  json r = json::parse(out.result);
  EXPECT_EQ(r["scan_id"], "good-1");
  EXPECT_EQ(r["http_status"], 200);
  EXPECT_EQ(r["page"]["title"], "Acme Widgets: Durable Garden Tools");
  EXPECT_EQ(r["page"]["canonical"], server.url("/good"));
  EXPECT_FALSE(r["page"].contains("visible_text"));
  EXPECT_TRUE(r["findings"].empty()) << r["findings"].dump();
  EXPECT_EQ(r["link_checks"].size(), 1u);
  EXPECT_EQ(r["link_checks"][0]["outcome"], "ok");
  EXPECT_EQ(r["metrics"]["resource_count"], 3);
  EXPECT_GT(r["metrics"]["text_to_html_ratio"].get<double>(), 10.0);
  ASSERT_FALSE(r["keyphrases"].empty());
  bool garden = false;
  for (const auto& k : r["keyphrases"]) {
    garden = garden || k["phrase"].get<std::string>().find("garden") != std::string::npos;
  }
  EXPECT_TRUE(garden) << r["keyphrases"].dump();
  EXPECT_EQ(server.last_user_agent("/good"), "scan-test/1.0");
  EXPECT_EQ(server.last_method("/about"), "HEAD");

  EXPECT_EQ(row("good-1", "status"), "FULL_READY");
  EXPECT_EQ(row("good-1", "progress"), "100");
  EXPECT_EQ(row("good-1", "state"), "<null>");
  EXPECT_EQ(row("good-1", "error_state"), "<null>");
  EXPECT_EQ(json::parse(row("good-1", "result")), r);
}

TEST_F(ScanPluginTest, BadPageTeaserThenFullReportWithBrokenLinks) {
  auto out = scan("bad-1", server.url("/bad"));
  ASSERT_EQ(out.status, JR_OK) << out.error;
  json r = json::parse(out.result);
  EXPECT_EQ(finding_ids(r["findings"]),
            (std::vector<std::string>{"title_missing", "broken_internal_links",
                                      "meta_description_missing", "h1_multiple",
                                      "images_missing_alt", "thin_content", "json_ld_invalid",
                                      "canonical_missing", "open_graph_missing"}));
  json broken = r["findings"][1]["details"]["links"];
  ASSERT_EQ(broken.size(), 1u);
  EXPECT_EQ(broken[0]["url"], server.url("/missing"));
  EXPECT_EQ(broken[0]["status"], 404);
  // The teaser was stored at TEASER_READY: the first three on-page findings.
  json teaser = json::parse(row("bad-1", "teaser"));
  EXPECT_EQ(finding_ids(teaser["findings"]),
            (std::vector<std::string>{"title_missing", "meta_description_missing", "h1_multiple"}));
  EXPECT_EQ(teaser["finding_count"], 8);
  EXPECT_EQ(server.hits("/missing"), 1);
  EXPECT_EQ(server.last_method("/missing"), "HEAD");
}

TEST_F(ScanPluginTest, UsesTheProducersRowAndKeepsItsFields) {
  // The documented producer SQL (plugins/scan/README.md).
  jrtest::PgCluster::exec(
      db,
      "INSERT INTO scan_jobs (id, url, user_id, status, progress, created_at, expires_at) "
      "VALUES ('prod-1', '" +
          server.url("/good") +
          "', 'u-7', 'QUEUED', 0, "
          "'2030-01-01T00:00:00Z', '2030-01-02T00:00:00Z')");
  auto out = host->run("scan", payload("prod-1", server.url("/good"), "u-7"));
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(row("prod-1", "user_id"), "u-7");
  EXPECT_EQ(row("prod-1", "status"), "FULL_READY");
  EXPECT_EQ(q(db, "SELECT expires_at = '2030-01-02T00:00:00Z' FROM scan_jobs WHERE id='prod-1'"),
            "t");
  EXPECT_EQ(audit(db, "prod-1").substr(0, 26), "QUEUED/-/0/--,RUNNING/CRAW");
  EXPECT_EQ(json::parse(out.result)["user_id"], "u-7");
}

TEST_F(ScanPluginTest, CreatesTheRowWhenTheProducerDidNot) {
  auto out = host->run(
      "scan", json{{"scan_id", "own-1"}, {"url", server.url("/good")}, {"user_id", 42}}.dump());
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(row("own-1", "user_id"), "42");
  EXPECT_EQ(q(db,
              "SELECT expires_at - created_at = interval '1 day' FROM scan_jobs "
              "WHERE id = 'own-1'"),
            "t");
}

struct ErrorCase {
  std::string path;  // on the fixture server, or an absolute URL
  std::string state;
  std::string needle;
};

TEST_F(ScanPluginTest, EveryErrorStateIsStoredAndTheJobFailsPermanently) {
  const std::vector<ErrorCase> cases = {
      {"/slow", "ERROR_CRAWL", "timed out after 3000 ms"},
      {"/huge", "ERROR_CRAWL", "too large"},
      {"/huge-chunked", "ERROR_CRAWL", "too large"},
      {"/data.json", "ERROR_CRAWL", "unsupported content type 'application/json'"},
      {"/no-type", "ERROR_CRAWL", "unsupported content type"},
      {"/missing", "ERROR_CRAWL", "HTTP 404"},
      {"/error500", "ERROR_CRAWL", "HTTP 500"},
      {"/redirect/4", "ERROR_CRAWL", "too many redirects"},
      {"/to-private", "ERROR_VALIDATION", "10.0.0.1 (private)"},
      {"/to-metadata", "ERROR_VALIDATION", "169.254.169.254 (cloud metadata)"},
      {"/to-localhost", "ERROR_VALIDATION", "(loopback)"},
      {"ftp://127.0.0.1/file", "ERROR_VALIDATION", "only http and https"},
      {"http://[::ffff:169.254.169.254]/", "ERROR_VALIDATION", "cloud metadata"},
      {"/empty", "ERROR_ANALYZE", "empty"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    std::string id = "err-" + std::to_string(n++);
    std::string url = c.path[0] == '/' ? server.url(c.path) : c.path;
    auto out = scan(id, url, 25);  // the last attempt (of 25): transient errors end there too
    EXPECT_EQ(out.status, JR_ERR_PERMANENT);
    EXPECT_EQ(out.error.rfind(c.state + ": ", 0), 0u) << out.error;
    EXPECT_EQ(row(id, "status"), c.state);
    EXPECT_EQ(row(id, "error_state"), c.state);
    EXPECT_NE(row(id, "error_message").find(c.needle), std::string::npos)
        << row(id, "error_message");
  }
  EXPECT_EQ(server.hits("/good"), 0);  // no redirect reached a page past a refusal
}

TEST_F(ScanPluginTest, RedirectChainWithinTheLimitCompletes) {
  auto out = scan("redir-ok", server.url("/redirect/2"));
  ASSERT_EQ(out.status, JR_OK) << out.error;
  json r = json::parse(out.result);
  EXPECT_EQ(r["final_url"], server.url("/good"));
  EXPECT_EQ(r["redirects"].size(), 4u);
  EXPECT_EQ(r["metrics"]["redirects"], 3);
}

TEST_F(ScanPluginTest, LoopbackIsRefusedWithoutTheAllowlist) {
  json cfg = scantest::plugin_config(db, server);
  cfg.erase("allow_hosts");
  jrtest::PluginHost strict(so(), cfg);
  auto out = strict.run("scan", payload("strict-1", server.url("/good")));
  EXPECT_EQ(out.status, JR_ERR_PERMANENT);
  EXPECT_EQ(row("strict-1", "status"), "ERROR_VALIDATION");
  EXPECT_NE(row("strict-1", "error_message").find("127.0.0.1 (loopback)"), std::string::npos);
  EXPECT_EQ(server.hits("/good"), 0);
}

TEST_F(ScanPluginTest, FinishedScanReturnsItsStoredResult) {
  auto first = scan("idem-1", server.url("/good"));
  ASSERT_EQ(first.status, JR_OK) << first.error;
  std::string before = audit(db, "idem-1");
  auto second = scan("idem-1", server.url("/good"), 2);
  ASSERT_EQ(second.status, JR_OK) << second.error;
  EXPECT_EQ(json::parse(second.result), json::parse(first.result));
  EXPECT_EQ(server.hits("/good"), 1);
  EXPECT_EQ(audit(db, "idem-1"), before);  // not a single write
}

// A worker that died after PARSE: the Scanner (the plugin's own code) stops there; the retried
// job must not fetch the page again. /flaky now fails, so a second fetch would show.
TEST_F(ScanPluginTest, RetriedScanResumesAfterItsLastCompletedStep) {
  struct Quiet : scan::ScanObserver {
    void progress(double, const std::string&) override {}
    void log(const std::string&) override {}
    bool cancelled() override { return false; }
  } quiet;
  scan::Scanner dying(scan::parse_config(scantest::plugin_config(db, server)));
  scan::ScanRequest req{"resume-1", server.url("/flaky"), ""};
  EXPECT_TRUE(dying.run(req, quiet, scan::StopAfter::kParse).is_null());
  EXPECT_EQ(row("resume-1", "status"), "RUNNING");
  EXPECT_EQ(row("resume-1", "step"), "PARSE");
  EXPECT_EQ(q(db,
              "SELECT state ? 'parse' AND NOT (state->'crawl' ? 'body') FROM scan_jobs "
              "WHERE id = 'resume-1'"),
            "t");
  jrtest::PgCluster::exec(db, "DELETE FROM scan_audit");
  server.set_flaky_failing(true);

  auto out = scan("resume-1", server.url("/flaky"), 2);
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(server.hits("/flaky"), 1);
  EXPECT_EQ(audit(db, "resume-1").substr(0, 21), "RUNNING/ANALYZE/50/--");
  EXPECT_EQ(json::parse(out.result)["page"]["title"], "Acme Widgets: Durable Garden Tools");
}

TEST_F(ScanPluginTest, ResumeAfterTeaserOnlyChecksLinks) {
  struct Quiet : scan::ScanObserver {
    void progress(double, const std::string&) override {}
    void log(const std::string&) override {}
    bool cancelled() override { return false; }
  } quiet;
  scan::Scanner dying(scan::parse_config(scantest::plugin_config(db, server)));
  dying.run({"resume-2", server.url("/bad"), ""}, quiet, scan::StopAfter::kTeaser);
  EXPECT_EQ(row("resume-2", "status"), "TEASER_READY");
  std::string teaser = row("resume-2", "teaser");
  EXPECT_EQ(server.hits("/missing"), 0);

  auto out = scan("resume-2", server.url("/bad"), 2);
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(server.hits("/bad"), 1);
  EXPECT_EQ(server.hits("/missing"), 1);
  EXPECT_EQ(row("resume-2", "teaser"), teaser);
  EXPECT_EQ(row("resume-2", "status"), "FULL_READY");
}

TEST_F(ScanPluginTest, ErroredScanRunsAgainWhenRetried) {
  server.set_flaky_failing(true);
  auto first = scan("flaky-1", server.url("/flaky"), 25);  // a 500 on the last attempt
  EXPECT_EQ(first.status, JR_ERR_PERMANENT);
  EXPECT_EQ(row("flaky-1", "status"), "ERROR_CRAWL");
  server.set_flaky_failing(false);
  auto second = scan("flaky-1", server.url("/flaky"), 26);  // retried from the dead letters
  ASSERT_EQ(second.status, JR_OK) << second.error;
  EXPECT_EQ(row("flaky-1", "status"), "FULL_READY");
  EXPECT_EQ(row("flaky-1", "error_state"), "<null>");
  EXPECT_EQ(row("flaky-1", "error_message"), "<null>");
}

TEST_F(ScanPluginTest, SameIdForAnotherUrlIsRefusedAndTheRowKept) {
  ASSERT_EQ(scan("dup-1", server.url("/good")).status, JR_OK);
  std::string before = audit(db, "dup-1");
  auto out = scan("dup-1", server.url("/bad"));
  EXPECT_EQ(out.status, JR_ERR_PERMANENT);
  EXPECT_NE(out.error.find("exists for another URL"), std::string::npos) << out.error;
  EXPECT_EQ(audit(db, "dup-1"), before);
  EXPECT_EQ(server.hits("/bad"), 0);
}

TEST_F(ScanPluginTest, ScanHeldElsewhereSnoozes) {
  scan::ScanStore store(db);
  auto lease = store.acquire();
  ASSERT_TRUE(scan::scan_try_lock(lease.conn(), "busy-1"));
  auto out = scan("busy-1", server.url("/good"));
  EXPECT_EQ(out.status, JR_SNOOZE);
  EXPECT_EQ(out.snooze_seconds, 5);
  EXPECT_EQ(server.hits("/good"), 0);
  scan::scan_unlock(lease.conn(), "busy-1");
  EXPECT_EQ(scan("busy-1", server.url("/good")).status, JR_OK);
}

TEST_F(ScanPluginTest, BadPayloadsFailPermanently) {
  auto out = host->run("scan", R"({"scan_id": "x"})");
  EXPECT_EQ(out.status, JR_ERR_PERMANENT);
  EXPECT_NE(out.error.find("needs 'url'"), std::string::npos) << out.error;
  EXPECT_EQ(host->run("scan", R"({"url": "http://a.example/"})").status, JR_ERR_PERMANENT);
  EXPECT_EQ(host->run("scan", "[1]").status, JR_ERR_PERMANENT);
  EXPECT_EQ(host->run("scan", "not json").status, JR_ERR_PERMANENT);
}

TEST_F(ScanPluginTest, CleanupDeletesExpiredScans) {
  jrtest::PgCluster::exec(db, R"SQL(
INSERT INTO scan_jobs (id, url, created_at, expires_at) VALUES
  ('old', 'http://a.example/', now() - interval '2 days', now() + interval '1 day'),
  ('fresh', 'http://a.example/', now(), now() + interval '1 day'),
  ('expired', 'http://a.example/', now() - interval '1 minute', now() - interval '1 second'),
  ('two-hours', 'http://a.example/', now() - interval '2 hours', NULL))SQL");
  auto out = host->run("cleanup_expired_scans", "{}");
  ASSERT_EQ(out.status, JR_OK) << out.error;
  EXPECT_EQ(json::parse(out.result), (json{{"deleted", 2}, {"ttl_seconds", 86400}}));
  EXPECT_EQ(q(db, "SELECT string_agg(id, ',' ORDER BY id) FROM scan_jobs"), "fresh,two-hours");

  // SCAN_JOB_TTL_SECONDS reaches the config through the manifest's env map (host code).
  setenv("SCAN_JOB_TTL_SECONDS", "3600", 1);
  // As the built-in approval of the shipped plugin grants it (host/sandbox/policy.cpp).
  jr::LoadedPlugin granted = host->plugin();
  granted.grants.env = granted.manifest["env"].get<std::map<std::string, std::string>>();
  json cfg =
      jr::plugin_config_for(granted, json{{"scan", scantest::plugin_config(db, server)}}, db);
  unsetenv("SCAN_JOB_TTL_SECONDS");
  EXPECT_EQ(cfg["scan_job_ttl_seconds"], 3600);
  jrtest::PluginHost hourly(so(), cfg);
  auto out2 = hourly.run("cleanup_expired_scans", "{}");
  ASSERT_EQ(out2.status, JR_OK) << out2.error;
  EXPECT_EQ(json::parse(out2.result)["deleted"], 1);
  EXPECT_EQ(q(db, "SELECT string_agg(id, ',') FROM scan_jobs"), "fresh");
}

TEST_F(ScanPluginTest, ManifestDeclaresCronEnvAndSandbox) {
  const json& m = host->plugin().manifest;
  EXPECT_EQ(m["cron"], json::parse(R"([{"name": "cleanup_expired_scans", "schedule": "0 * * * *",
                                        "kind": "cleanup_expired_scans", "payload": {}}])"));
  EXPECT_EQ(m["env"]["SCAN_JOB_TTL_SECONDS"], "scan_job_ttl_seconds");
  EXPECT_EQ(m["sandbox"]["network"], "full");
  EXPECT_EQ(m["sandbox"]["writable"], json::array());
  std::vector<std::string> kinds;
  for (const auto& k : host->plugin().kinds) kinds.push_back(k.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"scan", "cleanup_expired_scans", "scan_finalize"}));
}

TEST_F(ScanPluginTest, InitRefusesBadConfig) {
  json cfg = scantest::plugin_config(db, server);
  cfg["allow_hosts"] = {"10.0.0.0/99"};
  EXPECT_THAT(jrtest::start_error(so(), cfg), testing::HasSubstr("allow_hosts"));
  cfg = scantest::plugin_config(db, server);
  cfg["max_redirects"] = "lots";
  EXPECT_THAT(jrtest::start_error(so(), cfg), testing::HasSubstr("max_redirects"));
}

}  // namespace
