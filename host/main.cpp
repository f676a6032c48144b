// `runner`: the command-line entry point. Only wiring lives here; each subcommand's work is in
// its own component (engine, store, managed_db, plugin_loader).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_common.hpp"
#include "config.hpp"
#include "engine.hpp"
#include "log.hpp"
#include "managed_db.hpp"
#include "plugin_loader.hpp"
#include "util.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

namespace {

using namespace jr;

struct GlobalFlags {
  std::string config_file;
  std::string database;
  std::string data_dir;
  std::string log_level;
};

struct WorkerFlags {
  std::string plugins;
  int concurrency = 0;
  std::string queues;
  std::string kinds;
  std::string lease;
  std::string poll;
  std::string grace;
  int prefetch = -1;
  int fetch_batch = -1;
  std::string worker_id;
};

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
void handle_signals(Engine& engine) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  std::thread([set, &engine]() mutable {
    int count = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (++count == 1) {
        log::info("signal received; shutting down gracefully (send again to force)",
                  {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
        engine.stop();
      } else {
        log::warn("second signal: exiting now", {{"signal", sig}});
        _exit(130);
      }
    }
  }).detach();
}

void block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int cmd_worker(const GlobalFlags& g, const WorkerFlags& w) {
  Config cfg = build_config(g);
  if (!w.plugins.empty()) cfg.plugins_dir = w.plugins;
  if (w.concurrency > 0) cfg.concurrency = w.concurrency;
  if (!w.queues.empty()) cfg.queues = split_list(w.queues);
  if (!w.kinds.empty()) cfg.kinds = split_list(w.kinds);
  if (!w.lease.empty()) cfg.lease_seconds = parse_duration_seconds(w.lease);
  if (!w.poll.empty()) cfg.poll_interval_seconds = parse_duration_seconds(w.poll);
  if (!w.grace.empty()) cfg.shutdown_grace_seconds = parse_duration_seconds(w.grace);
  if (w.fetch_batch >= 0) cfg.fetch_batch = w.fetch_batch;
  validate(cfg);
  if (cfg.plugins_dir.empty()) {
    std::cerr << "runner: no plugins to serve: give --plugins DIR (or RUNNER_PLUGINS, or "
                 "[worker] plugins in the config)\n";
    return cli::kExitUsage;
  }
  block_signals();
  auto plugins = load_plugin_dir(cfg.plugins_dir);
  std::string url = cli::resolve_database(cfg);
  std::vector<LoadedPlugin*> ptrs;
  for (auto& p : plugins) {
    init_plugin(p, plugin_config_for(p, cfg.plugin_config, url));
    ptrs.push_back(&p);
    log::info("plugin loaded", {{"plugin", p.name}, {"version", p.version}, {"file", p.path}});
  }
  for (const auto& k : cfg.kinds) {
    bool found = false;
    for (auto& p : plugins) {
      for (auto& ki : p.kinds) found = found || ki.kind == k;
    }
    if (!found) {
      std::cerr << "runner: --kinds names '" << k << "', which no plugin in " << cfg.plugins_dir
                << " handles\n";
      return cli::kExitUsage;
    }
  }
  EngineOptions eo;
  eo.database_url = url;
  eo.worker_id = w.worker_id;
  eo.concurrency = cfg.concurrency;
  eo.prefetch = w.prefetch >= 0 ? w.prefetch : 0;
  eo.fetch_batch = cfg.fetch_batch;
  eo.completion_batch = cfg.completion_batch;
  eo.queues = cfg.queues;
  eo.lease_seconds = cfg.lease_seconds;
  eo.poll_interval_seconds = cfg.poll_interval_seconds;
  eo.shutdown_grace_seconds = cfg.shutdown_grace_seconds;
  Engine engine(eo, ptrs, cfg.kinds);
  handle_signals(engine);
  // Migrate before serving; an unreachable database is retried with backoff, not fatal.
  for (int delay = 250; !engine.stopping(); delay = std::min(delay * 2, 30000)) {
    try {
      Store::open(url)->SchemaMigrate();
      break;
    } catch (const StoreError& e) {
      log::error("database unreachable at start-up; retrying",
                 {{"error", e.what()}, {"retry_in_ms", delay}});
      for (int slept = 0; slept < delay && !engine.stopping(); slept += 50) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }
  int rc = engine.run();
  for (auto& p : plugins) {
    if (p.initialised && p.desc->shutdown) p.desc->shutdown(p.state);
  }
  return rc;
}

struct EnqueueFlags {
  std::string kind;
  std::string payload;
  std::string payload_file;
  std::string queue;
  int priority = 0;
  std::string delay;
  std::string run_at;
  int max_attempts = 0;
  std::string timeout;
  std::string retry_schedule;
};

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
  std::vector<JobInsertParams> jobs;
  if (!f.payload.empty()) {
    nlohmann::json doc;
    try {
      doc = nlohmann::json::parse(f.payload);
    } catch (const nlohmann::json::parse_error& e) {
      std::cerr << "runner enqueue: --payload is not valid JSON: " << e.what()
                << "\nnothing was enqueued\n";
      return cli::kExitUsage;
    }
    base.payload = doc.dump();
    jobs.push_back(base);
  } else {
    std::ifstream in(f.payload_file);
    if (!in) {
      std::cerr << "runner enqueue: cannot read " << f.payload_file << "\n";
      return cli::kExitUsage;
    }
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        JobInsertParams p = base;
        p.payload = nlohmann::json::parse(line).dump();
        jobs.push_back(std::move(p));
      } catch (const nlohmann::json::parse_error& e) {
        std::cerr << "runner enqueue: " << f.payload_file << ":" << lineno
                  << ": not valid JSON: " << e.what() << "\nnothing was enqueued\n";
        return cli::kExitUsage;
      }
    }
  }
  Config cfg = build_config(g);
  auto store = cli::open_store(cfg);
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> ids;
  if (jobs.size() == 1) {
    ids.push_back(store->JobInsert(jobs[0]));
  } else {
    ids = store->JobInsertMany(jobs);
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
  if (json) {
    if (!note.empty()) doc["note"] = note;
    std::cout << doc.dump(2) << "\n";
  } else {
    std::cout << cli::render_job(job->json);
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

int cmd_plugins_ls(const std::string& dir, bool json) {
  auto plugins = load_plugin_dir(dir);
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& p : plugins) {
    nlohmann::json kinds = nlohmann::json::array();
    for (const auto& k : p.kinds) {
      kinds.push_back({{"kind", k.kind},
                       {"default_queue", k.default_queue},
                       {"timeout_ms", k.timeout_ms},
                       {"max_attempts", k.max_attempts},
                       {"retry_schedule", k.retry_schedule}});
    }
    arr.push_back({{"name", p.name},
                   {"version", p.version},
                   {"file", p.path},
                   {"abi", "1." + std::to_string(p.abi_minor)},
                   {"kinds", kinds},
                   {"idle_hook", p.has_idle},
                   {"manifest", p.manifest}});
  }
  if (json) {
    std::cout << arr.dump(2) << "\n";
  } else {
    for (const auto& p : arr) {
      std::cout << p["name"].get<std::string>() << " " << p["version"].get<std::string>()
                << " (ABI " << p["abi"].get<std::string>() << ") " << p["file"].get<std::string>()
                << "\n";
      for (const auto& k : p["kinds"]) {
        std::cout << "  kind " << k["kind"].get<std::string>();
        if (!k["default_queue"].get<std::string>().empty()) {
          std::cout << "  queue=" << k["default_queue"].get<std::string>();
        }
        if (k["timeout_ms"].get<int64_t>() > 0) std::cout << "  timeout_ms=" << k["timeout_ms"];
        std::cout << "\n";
      }
    }
  }
  return cli::kExitOk;
}

int cmd_db(const GlobalFlags& g, const std::string& action) {
  Config cfg = build_config(g);
  ManagedDbOptions o;
  o.data_dir = cfg.data_dir.empty() ? ManagedDb::default_data_dir() : cfg.data_dir + "/pg";
  ManagedDb db(o);
  if (action == "start") {
    bool started = db.start();
    Store::open(db.url())->SchemaMigrate();
    std::cout << (started ? "started " : "already running ") << db.data_dir() << "\n";
  } else if (action == "stop") {
    std::cout << (db.stop() ? "stopped " : "not running ") << db.data_dir() << "\n";
  } else if (action == "status") {
    bool up = db.running();
    std::cout << (up ? "running " : (db.initialised() ? "stopped " : "not initialised "))
              << db.data_dir() << "\n";
    return up ? cli::kExitOk : cli::kExitError;
  } else if (action == "url") {
    std::cout << db.url() << "\n";
  }
  return cli::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  log::init(log::Level::info);
  CLI::App app{"runner: runs background jobs from PostgreSQL queues through handler plugins"};
  app.set_version_flag("--version", JR_VERSION);
  app.require_subcommand(0, 1);

  GlobalFlags g;
  app.add_option("--config", g.config_file, "TOML config file")->envname("RUNNER_CONFIG");
  app.add_option("--database", g.database,
                 "PostgreSQL URL (default: DATABASE_URL, else the managed local cluster)");
  app.add_option("--data-dir", g.data_dir, "directory of the managed local PostgreSQL");
  app.add_option("--log-level", g.log_level, "debug, info, warn or error");

  WorkerFlags w;
  app.add_option("--plugins", w.plugins, "directory of plugins to serve");
  app.add_option("--concurrency", w.concurrency, "job slots (default 10)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--queues", w.queues, "serve only these queues (a,b)");
  app.add_option("--kinds", w.kinds, "serve only these job kinds (a,b)");
  app.add_option("--lease-seconds", w.lease, "lease length (default 30s)");
  app.add_option("--poll-interval", w.poll, "fallback poll interval (default 1s)");
  app.add_option("--shutdown-grace", w.grace, "time in-flight jobs get on SIGTERM (default 30s)");
  app.add_option("--prefetch", w.prefetch, "jobs claimed ahead of free slots (default 0)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--fetch-batch", w.fetch_batch, "max jobs per claim (default: free slots)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--worker-id", w.worker_id, "identity in leases and the registry");

  auto* worker = app.add_subcommand("worker", "run jobs (the default command)");
  worker->fallthrough();

  EnqueueFlags ef;
  auto* enqueue = app.add_subcommand("enqueue", "add jobs; prints each new job id on a line");
  enqueue->fallthrough();
  enqueue->add_option("kind", ef.kind, "job kind")->required();
  enqueue->add_option("--payload", ef.payload, "payload JSON");
  enqueue->add_option("--payload-file", ef.payload_file, "JSON-lines file, one payload per line");
  enqueue->add_option("--queue", ef.queue, "queue (default: the kind's default, else 'default')");
  enqueue->add_option("--priority", ef.priority, "higher runs first (default 0)");
  auto* delay = enqueue->add_option("--delay", ef.delay, "run after this long (30s, 5m)");
  enqueue->add_option("--run-at", ef.run_at, "run at this time (ISO 8601)")->excludes(delay);
  enqueue->add_option("--max-attempts", ef.max_attempts, "attempts before the dead letter queue")
      ->check(CLI::Range(1, 1000000));
  enqueue->add_option("--timeout", ef.timeout, "per-attempt timeout (90s, 5m)");
  enqueue->add_option("--retry-schedule", ef.retry_schedule, "retry delays in seconds: 60,300,900");

  int64_t status_id = 0;
  bool status_json = false;
  auto* status = app.add_subcommand("status", "show one job");
  status->fallthrough();
  status->add_option("id", status_id, "job id")->required();
  status->add_flag("--json", status_json, "print JSON");

  auto* jobs = app.add_subcommand("jobs", "list jobs");
  jobs->fallthrough();
  jobs->require_subcommand(1);
  auto* jobs_ls = jobs->add_subcommand("ls", "list jobs");
  jobs_ls->fallthrough();
  std::string ls_state, ls_kind, ls_queue;
  int ls_limit = 100;
  bool ls_json = false;
  jobs_ls->add_option("--state", ls_state,
                      "scheduled, available, running, retryable, completed, "
                      "discarded or cancelled");
  jobs_ls->add_option("--kind", ls_kind);
  jobs_ls->add_option("--queue", ls_queue);
  jobs_ls->add_option("--limit", ls_limit)->check(CLI::Range(1, 1000000));
  jobs_ls->add_flag("--json", ls_json, "print a JSON array");

  auto* migrate = app.add_subcommand("migrate", "create or upgrade the schema");
  migrate->fallthrough();

  auto* plugins = app.add_subcommand("plugins", "inspect plugins");
  plugins->require_subcommand(1);
  auto* plugins_ls = plugins->add_subcommand("ls", "load every plugin in DIR and describe it");
  std::string plugins_dir;
  bool plugins_json = false;
  plugins_ls->add_option("dir", plugins_dir, "plugin directory")->required();
  plugins_ls->add_flag("--json", plugins_json, "print JSON");

  auto* db = app.add_subcommand("db", "manage the local PostgreSQL");
  db->fallthrough();
  db->require_subcommand(1);
  std::string db_action;
  for (const char* a : {"start", "stop", "status", "url"}) {
    db->add_subcommand(a, std::string(a) + " the managed cluster")
        ->fallthrough()
        ->callback([&db_action, a] { db_action = a; });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (*enqueue) return cmd_enqueue(g, ef);
    if (*status) return cmd_status(g, status_id, status_json);
    if (*jobs_ls) {
      JobListParams p;
      if (!ls_state.empty()) p.state = ls_state;
      if (!ls_kind.empty()) p.kind = ls_kind;
      if (!ls_queue.empty()) p.queue = ls_queue;
      p.limit = ls_limit;
      return cmd_jobs_ls(g, p, ls_json);
    }
    if (*migrate) {
      Config cfg = build_config(g);
      auto store = Store::open(cli::resolve_database(cfg));
      int n = store->SchemaMigrate();
      std::cout << "schema at version " << store->SchemaVersion() << " (" << n
                << " migration(s) applied)\n";
      return cli::kExitOk;
    }
    if (*plugins_ls) return cmd_plugins_ls(plugins_dir, plugins_json);
    if (*db) return cmd_db(g, db_action);
    return cmd_worker(g, w);
  } catch (const ConfigError& e) {
    std::cerr << "runner: invalid configuration: " << e.what() << "\n";
    return cli::kExitUsage;
  } catch (const std::invalid_argument& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitUsage;
  } catch (const PluginError& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  } catch (const StoreError& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  } catch (const std::exception& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  }
}
