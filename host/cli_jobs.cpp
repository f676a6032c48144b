// Job subcommands: enqueue, status, jobs ls.
#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "log.hpp"
#include "ops/job_options.hpp"
#include "util.hpp"

namespace jr::cli {

Config build_config(const GlobalFlags& g) {
  Config cfg = load_config(g.config_file);
  if (!g.database.empty()) cfg.database_url = g.database;
  if (!g.data_dir.empty()) cfg.data_dir = g.data_dir;
  if (!g.log_level.empty()) cfg.log_level = g.log_level;
  try {
    log::set_level(log::parse_level(cfg.log_level));
  } catch (const std::invalid_argument& e) {
    throw ConfigError(std::string("log_level: ") + e.what());
  }
  return cfg;
}

// Blocks SIGINT/SIGTERM in every thread and handles them on one: the first asks for a graceful
// stop, the second forces the exit.
int cmd_enqueue(const GlobalFlags& g, const EnqueueFlags& f) {
  if (f.payload.empty() == f.payload_file.empty()) {
    std::cerr << "runner enqueue: give exactly one of --payload JSON or --payload-file FILE\n";
    return cli::kExitUsage;
  }
  JobInsertParams base;
  base.kind = f.kind;
  if (!f.queue.empty()) base.queue = f.queue;
  base.priority = f.priority;
  if (!f.delay.empty()) base.delay_seconds = parse_duration_seconds(f.delay);
  if (!f.run_at.empty()) base.run_at = f.run_at;
  if (f.max_attempts > 0) base.max_attempts = f.max_attempts;
  if (!f.timeout.empty()) {
    base.timeout_ms = static_cast<int64_t>(parse_duration_seconds(f.timeout) * 1000);
    if (*base.timeout_ms <= 0) throw std::invalid_argument("--timeout must be positive");
  }
  if (!f.retry_schedule.empty()) {
    parse_retry_schedule(f.retry_schedule);  // validate now, with a clear message
    base.retry_schedule = f.retry_schedule;
  }
  if (!f.ttl.empty()) base.ttl_seconds = parse_duration_seconds(f.ttl);
  if (!f.result_ttl.empty()) base.result_ttl_seconds = parse_duration_seconds(f.result_ttl);
  if (!f.failure_ttl.empty()) base.failure_ttl_seconds = parse_duration_seconds(f.failure_ttl);
  base.unique = f.unique;
  if (!f.unique_key.empty()) base.unique_key = f.unique_key;
  if (!f.lock_key.empty()) base.lock_key = f.lock_key;
  if (f.lock_limit > 0) base.lock_limit = f.lock_limit;
  if (!f.webhook.empty()) {
    ops::check_webhook_url(f.webhook);
    base.webhook = f.webhook;
  }
  for (const auto& id : split_list(f.depends_on)) {
    try {
      base.depends_on.push_back(std::stoll(id));
    } catch (const std::exception&) {
      throw std::invalid_argument("--depends-on: '" + id + "' is not a job id");
    }
  }
  // One payload per job; with --payload-file every line is validated (not re-serialised:
  // jsonb normalises it) and the jobs share `base`, so none of it is copied per line.
  std::vector<std::string> payloads;
  if (!f.payload.empty()) {
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(f.payload);
    } catch (const nlohmann::json::parse_error& e) {
      std::cerr << "runner enqueue: --payload is not valid JSON: " << e.what()
                << "\nnothing was enqueued\n";
      return cli::kExitUsage;
    }
    payloads.push_back(doc.dump());
  } else {
    std::ifstream in(f.payload_file, std::ios::binary);
    if (!in) {
      std::cerr << "runner enqueue: cannot read " << f.payload_file << "\n";
      return cli::kExitUsage;
    }
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    int lineno = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++lineno;
      // A UTF-8 byte order mark (files saved by some editors): JSON parsers skip it, jsonb
      // refuses it, and the line goes to the database as it is.
      if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      if (!nlohmann::json::accept(line)) {
        std::string why;
        try {
          [[maybe_unused]] auto doc = nlohmann::json::parse(line);  // throws, saying where
        } catch (const nlohmann::json::parse_error& e) {
          why = e.what();
        }
        std::cerr << "runner enqueue: " << f.payload_file << ":" << lineno
                  << ": not valid JSON: " << why << "\nnothing was enqueued\n";
        return cli::kExitUsage;
      }
      payloads.emplace_back(line);
    }
  }
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> ids;
  bool one_by_one = base.unique || base.unique_key || !base.depends_on.empty();
  if (payloads.size() == 1 || one_by_one) {
    JobInsertParams p = base;
    for (auto& payload : payloads) {
      p.payload = std::move(payload);
      JobInsertResult r = store->JobInsertEx(p);
      if (!r.inserted) {
        log::info("an identical unique job is already waiting or running; returning its id",
                  {{"job_id", r.id}});
      }
      ids.push_back(r.id);
    }
  } else {
    ids = store->JobInsertBulk(base, payloads);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log::info("bulk enqueue done", {{"jobs", ids.size()},
                                    {"seconds", secs},
                                    {"jobs_per_second", secs > 0 ? ids.size() / secs : 0.0}});
  }
  std::string out;
  out.reserve(ids.size() * 8);
  for (int64_t id : ids) out += std::to_string(id) + "\n";
  std::cout << out << std::flush;
  return cli::kExitOk;
}

int cmd_status(const GlobalFlags& g, int64_t id, bool json) {
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto job = store->JobGet(id);
  if (!job) {
    std::cerr << "runner status: no job with id " << id << "\n";
    return cli::kExitNotFound;
  }
  auto doc = nlohmann::json::parse(job->json);
  std::string state = doc.value("state", "");
  std::string note;
  if (state == "available" || state == "scheduled" || state == "retryable") {
    std::string kind = doc.value("kind", "");
    if (!store->WorkerServesKind(kind, 60)) {
      note = "no running runner has a loaded plugin that handles kind '" + kind +
             "'; the job waits until one starts";
    }
  }
  auto hooks = nlohmann::json::parse(store->WebhookForJob(id));  // host/ops: delivery state
  for (auto& h : hooks) h["url"] = log::redact(h.value("url", ""));
  if (doc.contains("options") && doc["options"].contains("webhook")) {  // may carry a token
    doc["options"]["webhook"] = log::redact(doc["options"].value("webhook", ""));
  }
  if (json) {
    if (!hooks.empty()) doc["webhook"] = hooks;
    if (!note.empty()) doc["note"] = note;
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cout << cli::render_job(job->json);
    for (const auto& h : hooks) {
      std::cout << "  webhook:   " << h.value("event", "") << " -> " << h.value("url", "") << ": "
                << h.value("state", "") << " after " << h.value("attempts", 0) << " attempt(s)"
                << (h["last_error"].is_string() ? " (" + h["last_error"].get<std::string>() + ")"
                                                : std::string())
                << "\n";
    }
    if (!note.empty()) std::cout << "  note:      " << note << "\n";
  }
  return cli::kExitOk;
}

int cmd_jobs_ls(const GlobalFlags& g, const JobListParams& p, bool json) {
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto rows = store->JobList(p);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) arr.push_back(nlohmann::json::parse(r.json));
    std::cout << arr.dump(2) << "\n";
    return cli::kExitOk;
  }
  std::printf("%-10s %-20s %-16s %-10s %-8s %s\n", "ID", "KIND", "QUEUE", "STATE", "ATTEMPT",
              "CREATED");
  for (const auto& r : rows) {
    auto j = nlohmann::json::parse(r.json);
    std::printf("%-10lld %-20s %-16s %-10s %-8d %s\n", static_cast<long long>(j.value("id", 0LL)),
                j.value("kind", "").c_str(), j.value("queue", "").c_str(),
                j.value("state", "").c_str(), j.value("attempt", 0),
                j.value("created_at", "").c_str());
  }
  return cli::kExitOk;
}

}  // namespace jr::cli
