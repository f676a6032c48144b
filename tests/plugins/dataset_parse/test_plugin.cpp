// The dataset_parse plugin run in-process (tests/support/plugin_host) against a real PostgreSQL
// and real files: every outcome the issue names, checked in the tables the plugin writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <jobrunner/abi.h>

#include <filesystem>
#include <thread>

#include "gen.hpp"
#include "harness.hpp"
#include "plugin_host.hpp"

namespace fs = std::filesystem;
using jrtest::JobOutcome;
using jrtest::PgCluster;
using nlohmann::json;

namespace {

class DatasetParse : public ::testing::Test {
 protected:
  // The plugin's own role and schema (what a runner hands it); the test reads and seeds the
  // plugin's tables through it too.
  void SetUp() override {
    url_ = jrtest::plugin_database(PgCluster::get().create_database("dp"), "dataset_parse").url;
  }

  json config(const json& extra = json::object()) const {
    json c = {{"database_url", url_}, {"storage_root", root_.path()}};
    for (const auto& [k, v] : extra.items()) c[k] = v;
    return c;
  }
  std::unique_ptr<jrtest::PluginHost> host(const json& extra = json::object()) {
    return std::make_unique<jrtest::PluginHost>(jrtest::plugin_dir() + "/libjr_dataset_parse.so",
                                                config(extra));
  }
  void add_dataset(const std::string& id, const std::string& country, const std::string& path) {
    PgCluster::exec(url_, "INSERT INTO datasets (id, country_code, storage_path) VALUES ('" + id +
                              "', '" + country + "', '" + path + "')");
  }
  void file(const std::string& rel, const std::string& body) {
    fs::create_directories(fs::path(root_.path() + "/" + rel).parent_path());
    dptest::write_file(root_.path() + "/" + rel, body);
  }
  std::string q(const std::string& sql) const { return PgCluster::query_one(url_, sql); }
  std::string status(const std::string& id) const {
    return q("SELECT status FROM datasets WHERE id = '" + id + "'");
  }
  std::string error_message(const std::string& id) const {
    return q("SELECT coalesce(error_message, '') FROM datasets WHERE id = '" + id + "'");
  }
  long rows(const std::string& id) const {
    return std::stol(q("SELECT count(*) FROM names WHERE dataset_id = '" + id + "'"));
  }
  json metrics(const std::string& id) const {
    return json::parse(
        q("SELECT coalesce(metrics, 'null')::text FROM datasets WHERE id = '" + id + "'"));
  }
  static JobOutcome run(jrtest::PluginHost& h, const std::string& id,
                        const std::string& kind = "parse_dataset", int attempt = 1) {
    return h.run(kind, json{{"dataset_id", id}}.dump(), attempt);
  }
  // A permanent failure: the job says so, the dataset is failed with `needle` in its message and
  // has no rows.
  void expect_permanent(const JobOutcome& o, const std::string& id, const std::string& needle) {
    EXPECT_EQ(o.status, JR_ERR_PERMANENT) << o.error;
    EXPECT_NE(o.error.find(needle), std::string::npos) << o.error;
    EXPECT_EQ(status(id), "failed");
    EXPECT_NE(error_message(id).find(needle), std::string::npos) << error_message(id);
    EXPECT_EQ(rows(id), 0);
  }

  std::string url_;
  jrtest::TempDir root_;
};

TEST_F(DatasetParse, FullYearFileLoadsEveryRowWithRanksMetricsAndProgress) {
  auto h = host();
  std::string body = dptest::make_ssa_yob(30000);
  file("us/yob2022.txt", body);
  add_dataset("us-2022", "US", "us/yob2022.txt");
  EXPECT_EQ(status("us-2022"), "pending");
  JobOutcome o = run(*h, "us-2022");
  ASSERT_EQ(o.status, JR_OK) << o.error;

  EXPECT_EQ(status("us-2022"), "completed");
  EXPECT_EQ(error_message("us-2022"), "");
  EXPECT_EQ(rows("us-2022"), 30000);
  EXPECT_EQ(q("SELECT count(*) FROM names WHERE dataset_id = 'us-2022' AND year = 2022"), "30000");
  EXPECT_EQ(q("SELECT count(*) FROM names WHERE sex = 'F'"), "15000");
  EXPECT_EQ(q("SELECT name || ',' || count || ',' || rank FROM names WHERE sex = 'M' AND rank = 1"),
            dptest::name_for(15000) + ",20000,1");
  EXPECT_EQ(q("SELECT max(rank) FROM names WHERE sex = 'F'"),
            q("SELECT min(rank) FROM names WHERE sex = 'F' AND count = 5"));  // ties at the tail
  json m = metrics("us-2022");
  EXPECT_EQ(m["rows_read"], 30000);
  EXPECT_EQ(m["rows_inserted"], 30000);
  EXPECT_EQ(m["rows_rejected"], 0);
  EXPECT_EQ(m["bytes"], body.size());
  EXPECT_EQ(m["parser"], "us-ssa-yob");
  EXPECT_GT(m["duration_ms"].get<double>(), 0);
  json result = json::parse(o.result);
  EXPECT_EQ(result["status"], "completed");
  EXPECT_EQ(result["metrics"]["bytes"], body.size());
  ASSERT_FALSE(o.progress.empty());
  EXPECT_EQ(o.progress.back().first, 100.0);
  EXPECT_EQ(o.progress.back().second, "PARSE");
  bool logged_bytes = false;
  for (const auto& l : o.logs) {
    logged_bytes |= l.find(std::to_string(body.size()) + " bytes") != std::string::npos;
  }
  EXPECT_TRUE(logged_bytes);
}

TEST_F(DatasetParse, MalformedLinesBelowTheRatioAreCountedAndSkipped) {
  auto h = host();
  std::string body = dptest::make_ssa_yob(1000);
  body += "Broken line without commas\nAlice,X,10\nBob,M,many\n\n\r\nCarl,M,7\r\n";
  file("yob2010.txt", body);
  add_dataset("d1", "US", "yob2010.txt");
  ASSERT_EQ(run(*h, "d1").status, JR_OK);
  EXPECT_EQ(status("d1"), "completed");
  EXPECT_EQ(rows("d1"), 1001);  // blank lines ignored, CRLF accepted
  json m = metrics("d1");
  EXPECT_EQ(m["rows_read"], 1004);
  EXPECT_EQ(m["rows_rejected"], 3);
  ASSERT_EQ(m["first_rejections"].size(), 3u);
  EXPECT_EQ(m["first_rejections"][0],
            "line 1001: expected 3 comma-separated fields "
            "(Name,Sex,Count), found 1");
  EXPECT_NE(m["first_rejections"][1].get<std::string>().find("line 1002: sex must be F or M"),
            std::string::npos);
}

TEST_F(DatasetParse, TooManyMalformedLinesFailTheDatasetAndTheRatioIsConfigurable) {
  auto strict = host();                                                    // creates the tables
  std::string body = dptest::make_ssa_yob(100) + "bad\nbad,F\nbad,F,x\n";  // 3 of 103 = 2.9%
  file("yob2011.txt", body);
  add_dataset("d2", "US", "yob2011.txt");
  expect_permanent(run(*strict, "d2"), "d2", "3 of 103 lines are malformed");
  EXPECT_EQ(metrics("d2")["rows_rejected"], 3);  // partial counts kept for the operator

  auto lenient = host({{"max_bad_line_ratio", 0.05}});
  ASSERT_EQ(run(*lenient, "d2").status, JR_OK);
  EXPECT_EQ(status("d2"), "completed");
  EXPECT_EQ(rows("d2"), 100);
}

TEST_F(DatasetParse, WrongFileNameIsPermanent) {
  auto h = host();
  file("us/names-2020.txt", dptest::make_ssa_yob(10));
  add_dataset("d3", "US", "us/names-2020.txt");
  expect_permanent(run(*h, "d3"), "d3", "invalid filename 'names-2020.txt'");
}

TEST_F(DatasetParse, UnknownCountryIsPermanent) {
  auto h = host();
  file("yob2020.txt", dptest::make_ssa_yob(10));
  add_dataset("d4", "ZZ", "yob2020.txt");
  expect_permanent(run(*h, "d4"), "d4", "no parser for country 'ZZ'");
}

TEST_F(DatasetParse, MissingFileIsRetriedThenFailsOnTheLastAttempt) {
  auto h = host();
  add_dataset("d5", "US", "us/yob2019.txt");
  JobOutcome first = run(*h, "d5", "parse_dataset", 1);
  EXPECT_EQ(first.status, JR_ERR_RETRYABLE) << first.error;
  EXPECT_NE(first.error.find("not found"), std::string::npos) << first.error;
  EXPECT_EQ(status("d5"), "pending");
  EXPECT_NE(error_message("d5").find("attempt 1 failed, will retry"), std::string::npos);

  JobOutcome last = run(*h, "d5", "parse_dataset", 25);  // the host's max_attempts is 25
  EXPECT_EQ(last.status, JR_ERR_RETRYABLE);
  EXPECT_EQ(status("d5"), "failed");
  EXPECT_NE(error_message("d5").find("not found"), std::string::npos);

  file("us/yob2019.txt", dptest::make_ssa_yob(10));  // the upload lands: a replay works
  ASSERT_EQ(run(*h, "d5").status, JR_OK);
  EXPECT_EQ(rows("d5"), 10);
}

TEST_F(DatasetParse, PathEscapesArePermanent) {
  auto h = host();
  jrtest::TempDir outside;
  dptest::write_file(outside.path() + "/yob2000.txt", dptest::make_ssa_yob(10));
  fs::create_directories(root_.path() + "/us");
  fs::create_symlink(outside.path() + "/yob2000.txt", root_.path() + "/us/yob2000.txt");
  fs::create_symlink(outside.path(), root_.path() + "/mnt");
  std::string rel_up = fs::relative(outside.path() + "/yob2000.txt", root_.path()).string();
  ASSERT_EQ(rel_up.rfind("../", 0), 0u);
  add_dataset("up", "US", rel_up);
  add_dataset("abs", "US", outside.path() + "/yob2000.txt");
  add_dataset("link", "US", "us/yob2000.txt");
  add_dataset("dirlink", "US", "mnt/yob2000.txt");
  expect_permanent(run(*h, "up"), "up", "'..' is not allowed");
  expect_permanent(run(*h, "abs"), "abs", "absolute paths are not allowed");
  expect_permanent(run(*h, "link"), "link", "outside the storage root");
  expect_permanent(run(*h, "dirlink"), "dirlink", "outside the storage root");
  EXPECT_EQ(q("SELECT count(*) FROM names"), "0");
}

TEST_F(DatasetParse, UnknownDatasetAndBadPayloadArePermanent) {
  auto h = host();
  JobOutcome o = run(*h, "nope");
  EXPECT_EQ(o.status, JR_ERR_PERMANENT);
  EXPECT_EQ(o.error, "dataset 'nope' not found");
  for (const char* p : {"{}", R"({"dataset_id": 7})", R"({"dataset_id": ""})", "[1]"}) {
    JobOutcome b = h->run("parse_dataset", p);
    EXPECT_EQ(b.status, JR_ERR_PERMANENT) << p;
    EXPECT_NE(b.error.find("payload must be"), std::string::npos) << b.error;
  }
}

TEST_F(DatasetParse, ReprocessGivesTheSameCountsAndParseDoesNotRunTwice) {
  auto h = host();
  file("yob2015.txt", dptest::make_ssa_yob(5000) + "oops\n");
  add_dataset("d6", "US", "yob2015.txt");
  ASSERT_EQ(run(*h, "d6").status, JR_OK);
  std::string sum = q("SELECT sum(count) || '/' || count(*) FROM names WHERE dataset_id = 'd6'");
  json before = metrics("d6");

  JobOutcome again = run(*h, "d6");  // a duplicate parse_dataset is a no-op
  ASSERT_EQ(again.status, JR_OK);
  EXPECT_EQ(json::parse(again.result)["skipped"], true);
  EXPECT_EQ(rows("d6"), 5000);

  for (int i = 0; i < 2; ++i) {
    JobOutcome re = run(*h, "d6", "reprocess_dataset");
    ASSERT_EQ(re.status, JR_OK) << re.error;
    EXPECT_EQ(status("d6"), "completed");
    EXPECT_EQ(q("SELECT sum(count) || '/' || count(*) FROM names WHERE dataset_id = 'd6'"), sum);
    json m = metrics("d6");
    EXPECT_EQ(m["rows_deleted"], 5000);
    EXPECT_EQ(m["rows_inserted"], before["rows_inserted"]);
    EXPECT_EQ(m["rows_rejected"], 1);
  }
}

TEST_F(DatasetParse, ConcurrentJobsForOneDatasetLoadItOnce) {
  auto h = host();
  file("yob2016.txt", dptest::make_ssa_yob(20000));
  add_dataset("d9", "US", "yob2016.txt");
  JobOutcome a, b;
  std::thread ta([&] { a = run(*h, "d9"); });
  std::thread tb([&] { b = run(*h, "d9"); });
  ta.join();
  tb.join();
  ASSERT_EQ(a.status, JR_OK) << a.error;
  ASSERT_EQ(b.status, JR_OK) << b.error;
  // Whatever the interleaving, the row lock lets one job load and the other see "completed".
  int skipped =
      json::parse(a.result).value("skipped", false) + json::parse(b.result).value("skipped", false);
  EXPECT_EQ(skipped, 1);
  EXPECT_EQ(rows("d9"), 20000);
  EXPECT_EQ(status("d9"), "completed");
}

TEST_F(DatasetParse, FailureMidInsertLeavesNoRows) {
  // TEST ONLY hook: after 250 rows (two COPY batches of 100 already completed) a row the
  // database refuses is streamed; the whole transaction must roll back.
  auto failing = host({{"batch_size", 100}, {"test_fail_after_rows", 250}});
  file("yob2001.txt", dptest::make_ssa_yob(1000));
  add_dataset("d7", "US", "yob2001.txt");
  expect_permanent(run(*failing, "d7"), "d7", "names_count_check");

  auto good = host({{"batch_size", 100}});
  ASSERT_EQ(run(*good, "d7").status, JR_OK);
  EXPECT_EQ(rows("d7"), 1000);
  EXPECT_EQ(metrics("d7")["batches"], 10);
  // A failed reprocess keeps the previous rows: the DELETE rolls back with the rest.
  JobOutcome re = run(*failing, "d7", "reprocess_dataset");
  EXPECT_EQ(re.status, JR_ERR_PERMANENT);
  EXPECT_EQ(status("d7"), "failed");
  EXPECT_EQ(rows("d7"), 1000);
}

TEST_F(DatasetParse, FrenchInseeFileLoadsUtf8AndSkipsAggregates) {
  auto h = host();
  file("fr/nat2022.csv", dptest::make_insee_nat(50, 2000, 3));
  add_dataset("fr", "fr", "fr/nat2022.csv");
  ASSERT_EQ(run(*h, "fr").status, JR_OK);
  EXPECT_EQ(rows("fr"), 150);
  json m = metrics("fr");
  EXPECT_EQ(m["rows_skipped"], 2);
  EXPECT_EQ(m["rows_read"], 152);
  EXPECT_EQ(m["parser"], "fr-insee-nat");
  EXPECT_EQ(q("SELECT count(*) FROM names WHERE name LIKE '%\xC3\x89' AND year = 2001"), "7");
  EXPECT_EQ(q("SELECT count(*) FROM names WHERE rank IS NULL"), "150");
}

TEST_F(DatasetParse, EmptyFileAndWrongHeaderAreInvalidFormat) {
  auto h = host();
  file("yob1990.txt", "");
  file("nat2020.csv", "name,sex,count\n1;MARIE;1950;10\n");
  add_dataset("empty", "US", "yob1990.txt");
  add_dataset("hdr", "FR", "nat2020.csv");
  expect_permanent(run(*h, "empty"), "empty", "no data lines");
  expect_permanent(run(*h, "hdr"), "hdr", "invalid file format");
}

TEST_F(DatasetParse, UnreachableDatabaseIsRetryable) {
  // Port 1 on loopback refuses the connection at once: no server is needed to be down.
  jrtest::PluginHost h(jrtest::plugin_dir() + "/libjr_dataset_parse.so",
                       {{"database_url", "postgresql://127.0.0.1:1/x?connect_timeout=2"},
                        {"storage_root", root_.path()}});
  JobOutcome o = h.run("parse_dataset", R"({"dataset_id": "d"})");
  EXPECT_EQ(o.status, JR_ERR_RETRYABLE);
  EXPECT_NE(o.error.find("127.0.0.1"), std::string::npos) << o.error;
}

TEST_F(DatasetParse, MissingStorageRootConfigFailsJobsAndBadRootFailsInit) {
  jrtest::PluginHost h(jrtest::plugin_dir() + "/libjr_dataset_parse.so", {{"database_url", url_}});
  add_dataset("d8", "US", "yob2020.txt");
  expect_permanent(h.run("parse_dataset", R"({"dataset_id": "d8"})"), "d8", "not configured");
  const std::string so = jrtest::plugin_dir() + "/libjr_dataset_parse.so";
  EXPECT_THAT(jrtest::start_error(so, config({{"storage_root", root_.path() + "/missing"}})),
              testing::HasSubstr("storage_root"));
  EXPECT_THAT(jrtest::start_error(so, config({{"batch_size", 0}})),
              testing::HasSubstr("batch_size"));
}

}  // namespace
