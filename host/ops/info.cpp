#include "info.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

namespace jr::ops {
namespace {

const char* kLiveStates[] = {"waiting", "scheduled", "available", "running", "retryable"};

std::string join(const nlohmann::json& arr) {
  std::string s;
  for (const auto& v : arr) s += (s.empty() ? "" : ",") + v.get<std::string>();
  return s.empty() ? "*" : s;
}

std::string ago(double seconds) {
  char buf[32];
  if (seconds < 120) {
    std::snprintf(buf, sizeof buf, "%.0fs ago", seconds);
  } else if (seconds < 7200) {
    std::snprintf(buf, sizeof buf, "%.0fm ago", seconds / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fh ago", seconds / 3600);
  }
  return buf;
}

}  // namespace

std::string info_json(Store& store, const InfoOptions& o) {
  auto depths = nlohmann::json::parse(store.QueueDepths());
  auto done = nlohmann::json::parse(store.QueueThroughput(o.window_seconds));
  auto workers = nlohmann::json::parse(store.WorkerList(o.stale_seconds));
  auto paused = store.QueuePaused();
  std::set<std::string> names;
  for (auto& [q, v] : depths.items()) names.insert(q);
  for (auto& [q, v] : done.items()) names.insert(q);
  for (const auto& q : paused) names.insert(q);
  nlohmann::json queues = nlohmann::json::array();
  nlohmann::json per_queue = nlohmann::json::object();
  int64_t total_done = 0;
  for (const auto& q : names) {
    nlohmann::json row = {{"queue", q}};
    int64_t live = 0;
    for (const char* s : kLiveStates) {
      int64_t n = depths.contains(q) ? depths[q].value(s, int64_t{0}) : 0;
      row[s] = n;
      live += n;
    }
    row["total"] = live;
    int64_t finished = 0;
    if (done.contains(q)) {
      for (auto& [st, n] : done[q].items()) finished += n.get<int64_t>();
    }
    row["finished_last_minute"] = finished;
    row["paused"] = std::find(paused.begin(), paused.end(), q) != paused.end();
    per_queue[q] = done.contains(q) ? done[q] : nlohmann::json::object();
    total_done += finished;
    queues.push_back(row);
  }
  nlohmann::json out = {{"queues", queues},
                        {"workers", workers},
                        {"throughput",
                         {{"window_seconds", o.window_seconds},
                          {"finished", total_done},
                          {"per_second", total_done / o.window_seconds},
                          {"per_queue", per_queue}}}};
  return out.dump();
}

std::string info_text(const std::string& snapshot_json) {
  auto j = nlohmann::json::parse(snapshot_json);
  std::ostringstream o;
  char line[512];
  std::snprintf(line, sizeof line, "%-28s %8s %9s %9s %8s %9s %8s\n", "QUEUE", "WAITING",
                "SCHEDULED", "AVAILABLE", "RUNNING", "RETRYABLE", "DONE/1m");
  o << line;
  for (const auto& q : j["queues"]) {
    std::string name = q["queue"].get<std::string>();
    if (q["paused"].get<bool>()) name += " (paused)";
    std::snprintf(line, sizeof line, "%-28s %8lld %9lld %9lld %8lld %9lld %8lld\n", name.c_str(),
                  static_cast<long long>(q["waiting"].get<int64_t>()),
                  static_cast<long long>(q["scheduled"].get<int64_t>()),
                  static_cast<long long>(q["available"].get<int64_t>()),
                  static_cast<long long>(q["running"].get<int64_t>()),
                  static_cast<long long>(q["retryable"].get<int64_t>()),
                  static_cast<long long>(q["finished_last_minute"].get<int64_t>()));
    o << line;
  }
  o << j["queues"].size() << " queue(s)\n\n";
  std::snprintf(line, sizeof line, "%-34s %-16s %7s %-24s %-16s %-20s %-10s %9s %5s\n", "WORKER",
                "HOST", "PID", "KINDS", "QUEUES", "STARTED", "HEARTBEAT", "JOBS DONE", "CONNS");
  o << line;
  for (const auto& w : j["workers"]) {
    std::string started = w.value("started_at", "");
    if (started.size() > 19) started = started.substr(0, 19);
    std::snprintf(line, sizeof line, "%-34s %-16s %7d %-24s %-16s %-20s %-10s %9lld %5lld\n",
                  w.value("id", "").c_str(), w.value("host", "").c_str(), w.value("pid", 0),
                  join(w["kinds"]).c_str(), join(w["queues"]).c_str(), started.c_str(),
                  ago(w.value("heartbeat_age_seconds", 0.0)).c_str(),
                  static_cast<long long>(w.value("jobs_done", int64_t{0})),
                  static_cast<long long>(w.value("connections", int64_t{0})));
    o << line;
  }
  o << j["workers"].size() << " worker(s)\n\n";
  const auto& t = j["throughput"];
  std::snprintf(line, sizeof line, "throughput: %lld job(s) finished in the last %.0f s (%.2f/s)\n",
                static_cast<long long>(t["finished"].get<int64_t>()),
                t["window_seconds"].get<double>(), t["per_second"].get<double>());
  o << line;
  return o.str();
}

int run_info(Store& store, const InfoOptions& o) {
  for (;;) {
    std::string snap = info_json(store, o);
    if (o.json) {
      std::cout << (o.watch ? snap : nlohmann::json::parse(snap).dump(2)) << "\n" << std::flush;
    } else {
      if (o.watch && isatty(STDOUT_FILENO)) std::cout << "\033[H\033[2J";
      std::cout << info_text(snap);
      if (o.watch) std::cout << "\n";
      std::cout << std::flush;
    }
    if (!o.watch) return 0;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace jr::ops
