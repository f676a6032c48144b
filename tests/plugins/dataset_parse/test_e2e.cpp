// End to end through the real `runner` binary: a worker serving only dataset_parse, jobs added
// with `runner enqueue`, outcomes read with `runner status --json` and from the plugin's tables.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "gen.hpp"
#include "harness.hpp"

namespace fs = std::filesystem;
using jrtest::PgCluster;
using nlohmann::json;

namespace {

TEST(DatasetParseEndToEnd, RunnerParsesADatasetAndDeadLettersABadOne) {
  std::string url = PgCluster::get().create_database("dpe2e");
  // The plugin's tables are in its own schema, under its own role (the runner reuses it).
  std::string plugin_url = jrtest::plugin_database(url, "dataset_parse").url;
  jrtest::TempDir plugins, storage;
  fs::create_symlink(jrtest::plugin_dir() + "/libjr_dataset_parse.so",
                     plugins.path() + "/libjr_dataset_parse.so");
  fs::create_directories(storage.path() + "/us");
  dptest::write_file(storage.path() + "/us/yob2021.txt", dptest::make_ssa_yob(2000));
  std::map<std::string, std::string> env = {{"DATABASE_URL", url},
                                            {"WORKER_STORAGE_ROOT", storage.path()}};

  jrtest::RunnerProcess runner({"--plugins", plugins.path(), "--concurrency", "2"}, env);
  // The plugin creates its tables in init; wait for them before registering datasets.
  ASSERT_TRUE(jrtest::wait_until(
      [&] {
        return PgCluster::query_one(plugin_url, "SELECT to_regclass('datasets') IS NOT NULL") ==
               "t";
      },
      std::chrono::seconds(30)))
      << runner.log();
  PgCluster::exec(plugin_url,
                  "INSERT INTO datasets (id, country_code, storage_path) VALUES "
                  "('us-2021', 'US', 'us/yob2021.txt'), ('mars-2021', 'MA', 'us/yob2021.txt'), "
                  "('late-2020', 'US', 'us/yob2020.txt')");

  auto enqueue = [&](const std::string& id) {
    auto r = jrtest::run_runner(
        {"enqueue", "parse_dataset", "--payload", json{{"dataset_id", id}}.dump()}, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  };
  auto job = [&](const std::string& job_id) {
    auto r = jrtest::run_runner({"status", job_id, "--json"}, env);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  };
  std::string good = enqueue("us-2021");
  std::string bad = enqueue("mars-2021");
  std::string late = enqueue("late-2020");  // file not there (yet): retried on the schedule

  ASSERT_TRUE(jrtest::wait_until([&] { return job(good)["state"] == "completed"; },
                                 std::chrono::seconds(60)))
      << job(good).dump(2) << runner.log();
  json done = job(good);
  EXPECT_EQ(done["result"]["metrics"]["rows_inserted"], 2000);
  EXPECT_EQ(PgCluster::query_one(plugin_url, "SELECT status FROM datasets WHERE id = 'us-2021'"),
            "completed");
  EXPECT_EQ(
      PgCluster::query_one(plugin_url, "SELECT count(*) FROM names WHERE dataset_id = 'us-2021'"),
      "2000");

  ASSERT_TRUE(jrtest::wait_until([&] { return job(bad)["state"] == "discarded"; },
                                 std::chrono::seconds(60)))
      << job(bad).dump(2) << runner.log();
  json dead = job(bad);
  EXPECT_EQ(dead["attempt"], 1);  // permanent: no retry
  ASSERT_FALSE(dead["errors"].empty());
  std::string msg = dead["errors"].back()["message"];
  EXPECT_NE(msg.find("no parser for country 'MA'"), std::string::npos) << dead.dump(2);
  EXPECT_EQ(PgCluster::query_one(plugin_url, "SELECT status FROM datasets WHERE id = 'mars-2021'"),
            "failed");
  EXPECT_EQ(
      PgCluster::query_one(plugin_url, "SELECT error_message FROM datasets WHERE id = 'mars-2021'"),
      msg);
  EXPECT_EQ(
      PgCluster::query_one(plugin_url, "SELECT count(*) FROM names WHERE dataset_id = 'mars-2021'"),
      "0");

  ASSERT_TRUE(jrtest::wait_until([&] { return job(late)["state"] == "retryable"; },
                                 std::chrono::seconds(60)))
      << job(late).dump(2) << runner.log();
  json retry = job(late);
  EXPECT_NE(retry["errors"].back()["message"].get<std::string>().find("not found"),
            std::string::npos)
      << retry.dump(2);
  // First retry after 60 s (the kind's schedule "60,300,900"), not the host's default backoff:
  // counted from the failure's own time (the test may look much later on a loaded machine).
  double wait_s = std::stod(PgCluster::query_one(
      url, "SELECT extract(epoch FROM '" + retry["run_at"].get<std::string>() +
               "'::timestamptz - '" + retry["errors"].back()["at"].get<std::string>() +
               "'::timestamptz)"));
  EXPECT_GT(wait_s, 40);
  EXPECT_LE(wait_s, 60.5);
  EXPECT_EQ(PgCluster::query_one(plugin_url, "SELECT status FROM datasets WHERE id = 'late-2020'"),
            "pending");

  // The kinds carry the retry policy the issue asks for.
  auto ls = jrtest::run_runner({"plugins", "ls", plugins.path(), "--json"}, env);
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  json kinds = json::parse(ls.out)[0]["kinds"];
  ASSERT_EQ(kinds.size(), 2u);
  for (const auto& k : kinds) {
    EXPECT_EQ(k["retry_schedule"], json::parse("[60, 300, 900]"));
    EXPECT_EQ(k["max_attempts"], 4);
  }
  runner.signal(SIGTERM);
  EXPECT_EQ(runner.wait(std::chrono::seconds(30)), 0);
}

}  // namespace
