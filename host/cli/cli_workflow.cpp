// Workflows from the command line (docs/job-model.md "Workflows"): `runner enqueue --workflow
// FILE`, checked by ops::check_workflow() before the database is touched and enqueued by
// jr_workflow_enqueue() (migration 18) in one transaction, and `runner workflow status ID`.
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>
#include <sstream>
#include <string>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "workflow.hpp"

namespace jr::cli {

namespace {

constexpr size_t kMaxDocumentBytes = 64u << 20;

std::string trim_message(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.rfind("ERROR:  ", 0) == 0) s = s.substr(8);
  return s;
}

}  // namespace

int enqueue_workflow(const Config& cfg, const std::string& file) {
  auto refuse = [](const std::string& why) {
    std::cerr << "runner enqueue: " << why << "\nnothing was enqueued\n";
    return kExitUsage;
  };
  std::string text;
  {
    std::ifstream in_file;
    std::istream* in = &std::cin;
    if (file != "-") {
      in_file.open(file, std::ios::binary);
      if (!in_file) return refuse("--workflow: cannot read " + file);
      in = &in_file;
    }
    char buf[65536];
    while (in->read(buf, sizeof buf) || in->gcount() > 0) {
      text.append(buf, static_cast<size_t>(in->gcount()));
      if (text.size() > kMaxDocumentBytes) {
        return refuse("--workflow: " + file + " is larger than 64 MiB");
      }
    }
  }
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded()) return refuse("--workflow: " + file + " is not valid JSON");
  try {
    ops::check_workflow(doc);
  } catch (const ops::WorkflowError& e) {
    return refuse("--workflow " + file + ": " + e.what());
  }
  pqxx::connection c(migrated_database(cfg));
  pqxx::work tx(c);
  pqxx::result r;
  try {
    r = tx.exec_params("SELECT jr_workflow_enqueue($1::jsonb)::text", doc.dump());
  } catch (const pqxx::sql_error& e) {
    // What the checks above cannot see: a step's kind, queue, ... as the database has them.
    if (e.sqlstate() == "22023")
      return refuse("--workflow " + file + ": " + trim_message(e.what()));
    throw StoreError("database error: " + trim_message(e.what()), false);
  }
  tx.commit();
  auto out = nlohmann::json::parse(r[0][0].c_str());
  std::cout << out["workflow_id"].get<int64_t>() << "\n" << std::flush;
  return kExitOk;
}

int cmd_workflow_status(const GlobalFlags& g, int64_t id, bool json) {
  Config cfg = build_config(g);
  pqxx::connection c(migrated_database(cfg));
  pqxx::nontransaction tx(c);
  auto r = tx.exec_params("SELECT jr_workflow_status($1)::text", id);
  if (r[0][0].is_null()) {
    std::cerr << "runner workflow status: no workflow with id " << id << "\n";
    return kExitNotFound;
  }
  auto w = nlohmann::json::parse(r[0][0].c_str());
  if (json) {
    std::cout << w.dump() << "\n";
    return kExitOk;
  }
  auto s = [](const nlohmann::json& o, const char* k) -> std::string {
    if (!o.contains(k) || o[k].is_null()) return "-";
    return o[k].is_string() ? o[k].get<std::string>() : o[k].dump();
  };
  auto why = [](const nlohmann::json& error) -> std::string {
    if (!error.is_object()) return "";
    std::string m = error.value("message", "");
    return m.empty() ? "" : ": " + m;
  };
  std::ostringstream out;
  out << "workflow " << s(w, "id");
  if (!w["name"].is_null()) out << " (" << s(w, "name") << ")";
  out << "\n  state:       " << s(w, "state") << "\n  steps:       " << s(w, "total")
      << " (completed " << s(w, "completed") << ", failed " << s(w, "failed") << ", cancelled "
      << s(w, "cancelled") << ", pending " << s(w, "pending") << ")\n";
  if (w["failed_step"].is_object()) {
    const auto& f = w["failed_step"];
    out << "  failed step: " << s(f, "step") << " (job " << s(f, "job_id") << ", " << s(f, "state")
        << ")" << why(f["error"]) << "\n";
  }
  int shown = 0;
  for (const auto& st : w["steps"]) {
    if (st.value("state", "") != "cancelled") continue;
    if (w["failed_step"].is_object() && st["job_id"] == w["failed_step"]["job_id"]) continue;
    if (shown++ < 10) {
      out << "  cancelled:   " << s(st, "step") << " (job " << s(st, "job_id") << ")"
          << why(st["error"]) << "\n";
    }
  }
  if (shown > 10) out << "  ... and " << (shown - 10) << " more cancelled steps\n";
  out << "  created:     " << s(w, "created_at") << "\n  finished:    " << s(w, "finished_at")
      << "\n";
  std::cout << out.str();
  return kExitOk;
}

void register_workflow(CLI::App& app, Context& ctx) {
  auto wf = std::make_shared<IdFlags>();
  auto* workflow = app.add_subcommand("workflow", "workflows of named steps");
  workflow->fallthrough();
  workflow->require_subcommand(1);
  auto* workflow_status = workflow->add_subcommand("status", "state and steps of a workflow");
  workflow_status->fallthrough();
  workflow_status->add_option("id", wf->id, "workflow id")->required()->check(kJobId);
  workflow_status->add_flag("--json", wf->json, "print JSON");
  on_parsed(workflow_status, ctx,
            [&ctx, wf] { return cmd_workflow_status(ctx.g, wf->id, wf->json); });
}

}  // namespace jr::cli
