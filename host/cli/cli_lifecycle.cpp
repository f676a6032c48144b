// Lifecycle subcommands: cancel, retry, and the dead letter queue (dlq ls|show|replay|purge).
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "cli_common.hpp"

namespace jr::cli {

int cmd_cancel(const GlobalFlags& g, int64_t id) {
  auto store = open_store(build_config(g));
  switch (store->JobCancel(id)) {
    case CancelResult::cancelled:
      std::cout << "job " << id << " cancelled\n";
      return kExitOk;
    case CancelResult::requested:
      std::cout << "job " << id << " is running: its runner has been asked to stop it\n";
      return kExitOk;
    case CancelResult::already_finished:
      std::cerr << "runner cancel: job " << id << " has already finished\n";
      return kExitError;
    case CancelResult::not_found:
      break;
  }
  std::cerr << "runner cancel: no job with id " << id << "\n";
  return kExitNotFound;
}

int cmd_retry(const GlobalFlags& g, int64_t id) {
  auto store = open_store(build_config(g));
  if (store->JobRetry(id)) {
    std::cout << "job " << id << " is available again\n";
    return kExitOk;
  }
  auto job = store->JobGet(id);
  if (!job) {
    std::cerr << "runner retry: no job with id " << id << "\n";
    return kExitNotFound;
  }
  std::cerr << "runner retry: job " << id << " is "
            << nlohmann::json::parse(job->json).value("state", "?")
            << "; only dead-lettered, cancelled, scheduled or retryable jobs can be retried\n";
  return kExitError;
}

int cmd_replay(const GlobalFlags& g, int64_t id) {
  auto store = open_store(build_config(g));
  auto new_id = store->JobReplay(id);
  if (!new_id) {
    std::cerr << "runner replay: no job with id " << id << "\n";
    return kExitNotFound;
  }
  std::cout << *new_id << "\n";
  return kExitOk;
}

int cmd_dlq(const GlobalFlags& g, const DlqFlags& f) {
  auto store = open_store(build_config(g));
  DeadLetterFilter filter;
  if (!f.kind.empty()) filter.kind = f.kind;
  if (!f.queue.empty()) filter.queue = f.queue;
  if (!f.since.empty()) filter.since = f.since;
  if (!f.before.empty()) filter.before = f.before;
  filter.limit = f.limit;
  if (f.action == "ls") {
    auto rows = store->DeadLetterList(filter);
    if (f.json) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& r : rows) arr.push_back(nlohmann::json::parse(r.json));
      std::cout << arr.dump(2) << "\n";
      return kExitOk;
    }
    std::printf("%-10s %-20s %-16s %-8s %-27s %s\n", "ID", "KIND", "QUEUE", "ATTEMPT", "FINISHED",
                "LAST ERROR");
    for (const auto& r : rows) {
      auto j = nlohmann::json::parse(r.json);
      std::string last;
      if (j["errors"].is_array() && !j["errors"].empty()) {
        const auto& e = j["errors"].back();
        last =
            "[" + e.value("kind", std::string("error")) + "] " + e.value("message", std::string());
      }
      std::printf("%-10lld %-20s %-16s %-8d %-27s %s\n", static_cast<long long>(j.value("id", 0LL)),
                  j.value("kind", "").c_str(), j.value("queue", "").c_str(), j.value("attempt", 0),
                  j.value("finished_at", "").c_str(), last.c_str());
    }
    return kExitOk;
  }
  if (f.action == "show") {
    auto job = store->JobGet(f.id);
    if (!job || nlohmann::json::parse(job->json).value("state", "") != "discarded") {
      std::cerr << "runner dlq show: job " << f.id << " is not in the dead letter queue\n";
      return kExitNotFound;
    }
    if (f.json) {
      std::cout << nlohmann::json::parse(job->json).dump(2) << "\n";
    } else {
      std::cout << render_job(job->json);
    }
    return kExitOk;
  }
  if (f.action == "replay") {
    if (!filter.kind && !f.all) {
      std::cerr << "runner dlq replay: give --kind K (or --all to replay every dead letter)\n";
      return kExitUsage;
    }
    auto ids = store->DeadLetterReplay(filter);
    for (int64_t id : ids) std::cout << id << "\n";
    std::cerr << ids.size() << " dead letter(s) replayed\n";
    return kExitOk;
  }
  if (f.action == "purge") {
    if (!filter.kind && !filter.queue && !filter.before && !f.all) {
      std::cerr << "runner dlq purge: give --kind, --queue or --before (or --all)\n";
      return kExitUsage;
    }
    int n = store->DeadLetterPurge(filter);
    std::cout << n << " dead letter(s) deleted\n";
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace jr::cli
