// Batches from the command line (docs/job-model.md "Batches"): `runner enqueue ...
// --batch-on-complete KIND` through jr_batch_enqueue() (migration 17), and `runner batch status
// ID`, through the Store (BatchEnqueue, BatchStatus). The SQL functions hold every rule; this
// file builds their arguments and prints.
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"

namespace jr::cli {

int enqueue_batch(const Config& cfg, const EnqueueFlags& f, const nlohmann::json& options,
                  const std::vector<std::string>& payloads) {
  nlohmann::json cb_payload = nlohmann::json::object();
  if (!f.batch_payload.empty()) {
    try {
      cb_payload = nlohmann::json::parse(f.batch_payload);
    } catch (const nlohmann::json::parse_error& e) {
      std::cerr << "runner enqueue: --batch-payload is not valid JSON: " << e.what()
                << "\nnothing was enqueued\n";
      return kExitUsage;
    }
  }
  auto spec = [&](const std::string& kind) -> std::string {
    if (kind.empty()) return "null";
    return nlohmann::json{{"kind", kind}, {"payload", cb_payload}}.dump();
  };
  // The payloads were each checked as JSON by the caller: joined as they are.
  std::string array = "[";
  for (size_t i = 0; i < payloads.size(); ++i) {
    if (i) array += ',';
    array += payloads[i];
  }
  array += ']';
  std::string text;
  try {
    text = Store::open(migrated_database(cfg))
               ->BatchEnqueue(f.kind, array, options.dump(), spec(f.batch_on_complete),
                              spec(f.batch_on_failure));
  } catch (const std::invalid_argument& e) {
    std::cerr << "runner enqueue: " << e.what() << "\nnothing was enqueued\n";
    return kExitUsage;
  }
  auto doc = nlohmann::json::parse(text);
  std::cerr << "batch " << doc["batch_id"].get<int64_t>() << "\n";
  std::string out;
  for (const auto& id : doc["job_ids"]) out += std::to_string(id.get<int64_t>()) + "\n";
  std::cout << out << std::flush;
  return kExitOk;
}

int cmd_batch_status(const GlobalFlags& g, int64_t id, bool json) {
  Config cfg = build_config(g);
  std::optional<std::string> text = Store::open(migrated_database(cfg))->BatchStatus(id);
  if (!text) {
    std::cerr << "runner batch status: no batch with id " << id << "\n";
    return kExitNotFound;
  }
  auto b = nlohmann::json::parse(*text);
  if (json) {
    std::cout << b.dump() << "\n";
    return kExitOk;
  }
  auto s = [&](const char* k) -> std::string {
    if (!b.contains(k) || b[k].is_null()) return "-";
    return b[k].is_string() ? b[k].get<std::string>() : b[k].dump();
  };
  std::cout << "batch " << s("id") << "\n"
            << "  state:       " << s("state") << "\n"
            << "  total:       " << s("total") << "\n"
            << "  completed:   " << s("completed") << "\n"
            << "  failed:      " << s("failed") << "\n"
            << "  pending:     " << s("pending") << "\n"
            << "  callback:    " << s("callback_job_id") << "\n";
  if (!b["callback_error"].is_null())
    std::cout << "  callback error: " << s("callback_error") << "\n";
  std::cout << "  created:     " << s("created_at") << "\n"
            << "  finished:    " << s("finished_at") << "\n";
  return kExitOk;
}

void register_batch(CLI::App& app, Context& ctx) {
  auto bf = std::make_shared<IdFlags>();
  auto* batch = app.add_subcommand("batch", "batches of jobs with callbacks");
  batch->fallthrough();
  batch->require_subcommand(1);
  auto* batch_status = batch->add_subcommand("status", "counts, state and callback of a batch");
  batch_status->fallthrough();
  batch_status->add_option("id", bf->id, "batch id")->required()->check(kJobId);
  batch_status->add_flag("--json", bf->json, "print JSON");
  on_parsed(batch_status, ctx, [&ctx, bf] { return cmd_batch_status(ctx.g, bf->id, bf->json); });
}

}  // namespace jr::cli
