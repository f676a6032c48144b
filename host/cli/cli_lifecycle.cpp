// Lifecycle subcommands: cancel, retry, and the dead letter queue (dlq ls|show|replay|purge).
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"

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

void register_lifecycle(CLI::App& app, Context& ctx) {
  auto cancel_id = std::make_shared<int64_t>(0);
  auto* cancel = app.add_subcommand("cancel", "cancel a queued job, or stop a running one");
  cancel->fallthrough();
  cancel->add_option("id", *cancel_id, "job id")->required()->check(kJobId);
  on_parsed(cancel, ctx, [&ctx, cancel_id] { return cmd_cancel(ctx.g, *cancel_id); });
  auto retry_id = std::make_shared<int64_t>(0);
  auto* retry = app.add_subcommand("retry", "run a dead-lettered (or waiting) job again now");
  retry->fallthrough();
  retry->add_option("id", *retry_id, "job id")->required()->check(kJobId);
  on_parsed(retry, ctx, [&ctx, retry_id] { return cmd_retry(ctx.g, *retry_id); });
  auto replay_id = std::make_shared<int64_t>(0);
  auto* replay = app.add_subcommand(
      "replay", "run any job again (completed ones too) as a new job; prints the new id");
  replay->fallthrough();
  // `--id` as well as the position: Reproq's `replay --id N` works unchanged (docs/migrating.md).
  replay->add_option("id,--id", *replay_id, "job id")->required()->check(kJobId);
  on_parsed(replay, ctx, [&ctx, replay_id] { return cmd_replay(ctx.g, *replay_id); });

  auto df = std::make_shared<DlqFlags>();
  auto* dlq = app.add_subcommand("dlq", "the dead letter queue");
  dlq->fallthrough();
  dlq->require_subcommand(1);
  auto dlq_filters = [&df](CLI::App* sc) {
    sc->fallthrough();
    sc->add_option("--kind", df->kind, "only this job kind");
    sc->add_option("--queue", df->queue, "only this queue");
    sc->add_option("--since", df->since, "dead-lettered at or after this time (ISO 8601)")
        ->check(kIsoTime);
    sc->add_option("--before", df->before, "dead-lettered before this time (ISO 8601)")
        ->check(kIsoTime);
    sc->add_option("--limit", df->limit, "at most this many (default 1000)")
        ->check(CLI::Range(1, 10000000));
  };
  auto* dlq_ls = dlq->add_subcommand("ls", "list dead letters");
  dlq_filters(dlq_ls);
  dlq_ls->add_flag("--json", df->json, "print a JSON array");
  auto* dlq_show = dlq->add_subcommand("show", "show one dead letter with every attempt's error");
  dlq_show->fallthrough();
  dlq_show->add_option("id", df->id, "job id")->required()->check(kJobId);
  dlq_show->add_flag("--json", df->json, "print JSON");
  auto* dlq_replay = dlq->add_subcommand("replay", "retry every matching dead letter");
  dlq_filters(dlq_replay);
  dlq_replay->add_flag("--all", df->all, "every kind");
  auto* dlq_purge = dlq->add_subcommand("purge", "delete matching dead letters");
  dlq_filters(dlq_purge);
  dlq_purge->add_flag("--all", df->all, "every dead letter");
  for (auto* sc : {dlq_ls, dlq_show, dlq_replay, dlq_purge}) {
    std::string name = sc->get_name();
    sc->callback([df, name] { df->action = name; });
  }
  on_parsed(dlq, ctx, [&ctx, df] { return cmd_dlq(ctx.g, *df); });
}

}  // namespace jr::cli
