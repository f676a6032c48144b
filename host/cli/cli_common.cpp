#include "cli_common.hpp"

#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "job_options.hpp"
#include "managed_db.hpp"

namespace jr::cli {

const CLI::Validator kJobId(
    [](std::string& text) -> std::string {
      try {
        ops::parse_job_id(text);
        return {};
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
    },
    "ID", "job id");

const CLI::Validator kIsoTime(
    [](std::string& text) -> std::string {
      if (ops::is_iso8601_time(text)) return {};
      return "'" + text.substr(0, 60) + "' is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)";
    },
    "TIME", "ISO 8601 time");

std::string resolve_database(const Config& cfg) {
  Store::set_pgbouncer(cfg.pgbouncer);  // before any connection (host/store/pg_store.hpp)
  if (cfg.database_url) return *cfg.database_url;
  ManagedDbOptions o;
  o.data_dir = cfg.data_dir.empty() ? ManagedDb::default_data_dir() : cfg.data_dir + "/pg";
  ManagedDb db(o);
  db.start();
  return db.url();
}

std::unique_ptr<Store> open_store(const Config& cfg) {
  auto store = Store::open(resolve_database(cfg));
  store->SchemaMigrate();
  return store;
}

std::string migrated_database(const Config& cfg) {
  std::string url = resolve_database(cfg);
  Store::open(url)->SchemaMigrate();
  return url;
}

std::string render_job(const std::string& job_json) {
  auto j = nlohmann::json::parse(job_json);
  std::ostringstream o;
  auto s = [&](const char* k) -> std::string {
    if (!j.contains(k) || j[k].is_null()) return "-";
    return j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
  };
  o << "job " << s("id") << "\n"
    << "  kind:      " << s("kind") << "\n"
    << "  queue:     " << s("queue") << "\n"
    << "  state:     " << s("state") << "\n"
    << "  priority:  " << s("priority") << "\n"
    << "  attempt:   " << s("attempt") << " of "
    << (j.contains("max_attempts") && !j["max_attempts"].is_null()
            ? s("max_attempts")
            : std::string("the kind's default"))
    << "\n"
    << "  created:   " << s("created_at") << "\n"
    << "  run at:    " << s("run_at") << "\n"
    << "  started:   " << s("started_at") << "\n"
    << "  finished:  " << s("finished_at") << "\n";
  if (j.contains("lease_owner") && !j["lease_owner"].is_null()) {
    o << "  lease:     " << s("lease_owner") << " until " << s("lease_expires_at") << "\n";
  }
  if (j.contains("progress") && j["progress"].is_object()) {
    const auto& p = j["progress"];
    o << "  progress:  " << p.value("percent", 0.0) << "%";
    if (p.contains("step") && p["step"].is_string())
      o << " (" << p["step"].get<std::string>() << ")";
    o << "\n";
  }
  o << "  payload:   " << (j.contains("payload") ? j["payload"].dump() : "-") << "\n";
  if (j.contains("result") && !j["result"].is_null())
    o << "  result:    " << j["result"].dump() << "\n";
  auto runs = job_runs(j);
  if (!runs.empty()) {
    o << "  runs:\n";
    for (const auto& r : runs) {
      o << "    attempt " << r.value("attempt", 0) << " on " << r.value("worker_id", "?")
        << " (host " << (r["host"].is_string() ? r["host"].get<std::string>() : "unknown")
        << "): " << r.value("outcome", "?") << "\n";
    }
  }
  if (j.contains("errors") && j["errors"].is_array() && !j["errors"].empty()) {
    o << "  errors:\n";
    for (const auto& e : j["errors"]) {
      o << "    attempt " << e.value("attempt", 0) << " at " << e.value("at", std::string("?"))
        << " [" << e.value("kind", std::string("error")) << "] "
        << e.value("message", std::string()) << "\n";
    }
  }
  return o.str();
}

nlohmann::json job_runs(const nlohmann::json& j) {
  nlohmann::json runs = nlohmann::json::array();
  auto text = [](const nlohmann::json& v, const char* k) -> nlohmann::json {
    return v.contains(k) && v[k].is_string() ? v[k] : nlohmann::json();
  };
  if (j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object() || !text(e, "worker_id").is_string()) continue;  // not an attempt
      runs.push_back({{"attempt", e.value("attempt", 0)},
                      {"worker_id", e["worker_id"]},
                      {"host", text(e, "host")},
                      {"outcome", e.value("kind", std::string("error"))}});
    }
  }
  std::string state = j.value("state", "");
  if ((state == "completed" || state == "running") && text(j, "worker_id").is_string()) {
    runs.push_back({{"attempt", j.value("attempt", 0)},
                    {"worker_id", j["worker_id"]},
                    {"host", text(j, "worker_host")},
                    {"outcome", state}});
  }
  return runs;
}

}  // namespace jr::cli
