// bench_dataset_parse: how fast dataset_parse turns a file into `names` rows.
//
// Generates an SSA-style yob file of N lines (default 2,000,000; argv[1] overrides), then
//   1. parse only: the US parser over the file in memory (no database), rows/s;
//   2. parse_dataset through the real plugin .so (in-process host) into a throwaway PostgreSQL:
//      read + parse + COPY + commit, rows/s, with the plugin's own metrics;
//   3. reprocess_dataset twice: DELETE of the previous rows + the same load.
// Prints human lines, then one JSON line. Goal: >= 300,000 rows/s for step 2.
// The throwaway cluster runs with fsync=off (tests/support/harness.cpp), like the test suite.
#include <jobrunner/abi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "dataset_parse/src/parsers.hpp"
#include "gen.hpp"
#include "harness.hpp"
#include "plugin_host.hpp"

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double parse_only(const std::string& body, size_t* rows_out) {
  auto t0 = Clock::now();
  auto fp = dataset_parse::make_us_ssa_parser()->begin("yob2020.txt");
  dataset_parse::NameRow row;
  std::string reason;
  size_t rows = 0;
  const char* p = body.data();
  const char* end = p + body.size();
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
    if (nl == nullptr) nl = end;
    if (fp->parse_line(std::string_view(p, nl - p), row, reason) ==
        dataset_parse::LineResult::kRow) {
      ++rows;
    }
    p = nl + 1;
  }
  *rows_out = rows;
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  size_t lines = argc > 1 ? std::stoul(argv[1]) : 2'000'000;
  const double goal = 300'000;
  jrtest::TempDir storage;
  std::string body = dptest::make_ssa_yob(lines);
  dptest::write_file(storage.path() + "/yob2020.txt", body);
  std::printf("file: %zu lines, %.1f MB\n", lines, body.size() / 1e6);

  size_t parsed = 0;
  double parse_s = parse_only(body, &parsed);
  std::printf("parse only:        %8.0f rows/s (%zu rows in %.3f s)\n", parsed / parse_s, parsed,
              parse_s);

  std::string url = jrtest::PgCluster::get().create_database("bench_dp");
  jrtest::PluginHost host(jrtest::plugin_dir() + "/libjr_dataset_parse.so",
                          {{"database_url", url}, {"storage_root", storage.path()}});
  jrtest::PgCluster::exec(url,
                          "INSERT INTO datasets (id, country_code, storage_path) VALUES "
                          "('bench', 'US', 'yob2020.txt')");
  auto run = [&](const char* kind) {
    auto t0 = Clock::now();
    jrtest::JobOutcome o = host.run(kind, R"({"dataset_id": "bench"})");
    double s = seconds_since(t0);
    if (o.status != JR_OK) {
      std::fprintf(stderr, "%s failed: %s\n", kind, o.error.c_str());
      std::exit(1);
    }
    json m = json::parse(o.result)["metrics"];
    if (m["rows_inserted"] != lines) {
      std::fprintf(stderr, "%s inserted %s rows, expected %zu\n", kind,
                   m["rows_inserted"].dump().c_str(), lines);
      std::exit(1);
    }
    std::printf(
        "%-18s %8.0f rows/s end to end (%.3f s; in-transaction load %.0f ms, %lld batches)\n", kind,
        lines / s, s, m["duration_ms"].get<double>(),
        static_cast<long long>(m["batches"].get<int64_t>()));
    return lines / s;
  };
  double first = run("parse_dataset");
  std::vector<double> re = {run("reprocess_dataset"), run("reprocess_dataset")};
  std::string count = jrtest::PgCluster::query_one(url, "SELECT count(*) FROM names");
  std::printf("names rows after the runs: %s\n", count.c_str());
  bool pass = first >= goal;
  std::printf("goal %.0f rows/s: %s\n", goal, pass ? "met" : "NOT met");
  json out = {{"bench", "dataset_parse"},
              {"lines", lines},
              {"bytes", body.size()},
              {"parse_only_rows_per_second", parsed / parse_s},
              {"parse_dataset_rows_per_second", first},
              {"reprocess_rows_per_second", *std::max_element(re.begin(), re.end())},
              {"goal_rows_per_second", goal},
              {"goal_met", pass}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
