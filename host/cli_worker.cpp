// `runner` / `runner worker`: load plugins, connect, serve until SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cron.hpp"
#include "engine.hpp"
#include "log.hpp"
#include "ops/job_options.hpp"
#include "ops/ops.hpp"
#include "ops/server.hpp"
#include "plugin_db.hpp"
#include "plugin_loader.hpp"
#include "sandbox/sandbox.hpp"
#include "util.hpp"

namespace jr::cli {
namespace {

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

// Works out each plugin's database_url (provisioning its role); a plugin whose database grant
// cannot be honoured is refused with the reason and left out, and the others start.
void refuse_plugins_without_database(std::deque<LoadedPlugin>& plugins, PluginDatabases& dbs,
                                     const nlohmann::json& sections,
                                     std::map<std::string, std::string>& urls) {
  for (auto it = plugins.begin(); it != plugins.end();) {
    try {
      urls[it->name] = dbs.url_for(*it, sections);
      ++it;
    } catch (const PluginError& e) {
      log::error("plugin refused: its database grant cannot be honoured",
                 {{"plugin", it->name}, {"error", e.what()}});
      it = plugins.erase(it);
    }
  }
}

void block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

}  // namespace

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
  if (!w.rescue_interval.empty()) {
    cfg.rescue_interval_seconds = parse_duration_seconds(w.rescue_interval);
  }
  if (!w.http.empty()) cfg.http = w.http;
  validate(cfg);
  if (!cfg.http.empty()) ops::parse_listen_address(cfg.http);  // bad address: usage error
  for (const auto& [kind, hook] : cfg.webhooks) ops::check_webhook_url(hook);
  if (cfg.plugins_dir.empty()) {
    std::cerr << "runner: no plugins to serve: give --plugins DIR (or RUNNER_PLUGINS, or "
                 "[worker] plugins in the config)\n";
    return cli::kExitUsage;
  }
  if (!w.isolation.empty()) cfg.isolation = w.isolation;
  if (cfg.isolation != "sandbox" && cfg.isolation != "none") {
    std::cerr << "runner: isolation must be 'sandbox' or 'none', got '" << cfg.isolation << "'\n";
    return cli::kExitUsage;
  }
  block_signals();
  std::string url = cli::resolve_database(cfg);
  // Each plugin's database_url: its own role for a plugin granted a database, none otherwise
  // (host/plugin_db.hpp). Filled once all plugins are described, before any is initialised.
  PluginDatabases plugin_dbs(url);
  std::map<std::string, std::string> db_urls;
  // Plugins: sandboxed (described inside a worker, so no plugin constructor runs here) unless
  // the runner or the plugin's config/manifest says isolation = "none".
  std::deque<LoadedPlugin> plugins;
  std::map<std::string, std::unique_ptr<Executor>> executors;
  std::vector<LoadedPlugin*> ptrs;
  std::vector<LoadedPlugin*> in_process;
  // Sandboxed plugins by name (executors owned by the engine below).
  std::vector<std::pair<std::string, sandbox::SandboxExecutor*>> sandboxed;
  if (cfg.isolation == "none") {
    for (auto& p : load_plugin_dir(cfg.plugins_dir)) plugins.push_back(std::move(p));
    refuse_plugins_without_database(plugins, plugin_dbs, cfg.plugin_config, db_urls);
  } else {
    sandbox::SandboxOptions so;
    so.pool_size = cfg.concurrency;
    for (auto& d : sandbox::describe_dir_in_sandbox(cfg.plugins_dir, so)) {
      plugins.push_back(std::move(d));
    }
    refuse_plugins_without_database(plugins, plugin_dbs, cfg.plugin_config, db_urls);
    for (auto& d : plugins) {
      nlohmann::json pc = plugin_config_for(d, cfg.plugin_config, db_urls[d.name]);
      if (sandbox::isolation_of(d, pc) == "none") continue;
      auto ex = sandbox::make_executor(d, pc, so);
      ex->start();
      sandboxed.emplace_back(d.name, ex.get());
      executors[d.name] = std::move(ex);
      log::info("plugin loaded in the sandbox",
                {{"plugin", d.name}, {"version", d.version}, {"file", d.path}});
    }
  }
  for (auto& p : plugins) {
    ptrs.push_back(&p);
    if (executors.count(p.name)) continue;
    if (p.desc == nullptr) p = load_plugin(p.path);  // described in the sandbox: load for real
    init_plugin(p, plugin_config_for(p, cfg.plugin_config, db_urls[p.name]));
    in_process.push_back(&p);
    log::info("plugin loaded in-process",
              {{"plugin", p.name}, {"version", p.version}, {"file", p.path}});
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
  eo.prefetch = w.prefetch;
  eo.fetch_batch = cfg.fetch_batch;
  eo.completion_batch = cfg.completion_batch;
  eo.queues = cfg.queues;
  eo.lease_seconds = cfg.lease_seconds;
  eo.poll_interval_seconds = cfg.poll_interval_seconds;
  eo.shutdown_grace_seconds = cfg.shutdown_grace_seconds;
  eo.rescue_interval_seconds = cfg.rescue_interval_seconds;
  eo.default_max_attempts = cfg.max_attempts;
  eo.prune.result_ttl_seconds = cfg.result_ttl_seconds;
  eo.prune.failure_ttl_seconds = cfg.failure_ttl_seconds;
  eo.priority_aging_seconds = cfg.priority_aging_seconds;
  for (const auto& j : cfg.cron) eo.cron.push_back(cron_entry_from_json(j, "config"));
  for (auto& p : plugins) {
    eo.plugin_configs[p.name] = plugin_config_for(p, cfg.plugin_config, db_urls[p.name]);
    if (!p.manifest.contains("cron")) continue;
    for (const auto& j : p.manifest["cron"]) {
      try {
        eo.cron.push_back(cron_entry_from_json(j, "plugin:" + p.name));
      } catch (const std::invalid_argument& e) {
        throw PluginError("plugin " + p.path + ": bad cron entry in its manifest: " + e.what());
      }
    }
  }
  ops::OpsConfig oc;
  oc.database_url = url;
  oc.http = cfg.http;
  oc.api_token = cfg.api_token;
  oc.webhook_secret = cfg.webhook_secret;
  oc.webhooks = cfg.webhooks;
  ops::Operations operations(oc);
  eo.observer = &operations;
  Engine engine(eo, ptrs, cfg.kinds, std::move(executors));
  if (!sandboxed.empty()) {
    // /metrics: sandbox workers started and restarts by reason, per plugin.
    ops::set_sandbox_stats_provider([sandboxed] {
      std::vector<ops::SandboxPluginStats> out;
      for (const auto& [name, ex] : sandboxed) {
        nlohmann::json c = ex->counters().to_json();
        ops::SandboxPluginStats st;
        st.plugin = name;
        st.workers = c["workers_started"].get<int64_t>();
        for (auto& [reason, n] : c["restarts"].items()) st.restarts[reason] = n.get<int64_t>();
        out.push_back(std::move(st));
      }
      return out;
    });
  }
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
  if (!engine.stopping()) operations.start(engine);
  int rc = engine.run();
  ops::set_sandbox_stats_provider({});
  operations.stop();
  if (engine.abandoned_handlers()) {
    // Their jobs were released; the threads are still inside plugin code, so neither the
    // plugins nor this process's globals may be torn down under them.
    log::warn("exiting with handlers still running (their jobs were released)");
    std::fflush(nullptr);
    _exit(rc);
  }
  for (auto* p : in_process) {
    if (p->initialised && p->desc->shutdown) p->desc->shutdown(p->state);
  }
  return rc;
}

}  // namespace jr::cli
