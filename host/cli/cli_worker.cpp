// `runner` / `runner worker`: load plugins, connect, serve until SIGTERM.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>
#include <variant>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "cron.hpp"
#include "engine.hpp"
#include "exec_kinds.hpp"
#include "job_options.hpp"
#include "kind_owner.hpp"
#include "log.hpp"
#include "ops.hpp"
#include "otel_exporter.hpp"
#include "plugin_db.hpp"
#include "plugin_loader.hpp"
#include "sandbox.hpp"
#include "server.hpp"
#include "settings_table.hpp"
#include "ui_publish.hpp"
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
  if (!w.reclaim_interval.empty()) {
    if (!w.of("worker.rescue_interval").empty()) {
      std::cerr << "runner: give --rescue-interval or --reclaim-interval-seconds, not both\n";
      return cli::kExitUsage;
    }
    double v = parse_duration_seconds(w.reclaim_interval);
    if (v <= 0) {
      // Reproq's 0 turns reclaiming off. Here only the elected leader rescues expired leases,
      // once for the whole cluster, and a runner without it would strand jobs of dead runners.
      std::cerr << "runner: --reclaim-interval-seconds 0 (no reclaiming) is not supported: "
                   "expired leases are rescued by one elected runner per database; give a "
                   "positive interval\n";
      return cli::kExitUsage;
    }
    cfg.rescue_interval_seconds = v;
  }
  if (w.metrics_port > 0) {
    if (!w.of("worker.http").empty()) {
      std::cerr << "runner: give --http or --metrics-port, not both\n";
      return cli::kExitUsage;
    }
    cfg.http = std::to_string(w.metrics_port);
  }
  apply_worker_flags(cfg, w);
  validate(cfg);
  if (!cfg.otel_endpoint.empty()) {
    try {
      ops::check_otel_endpoint(cfg.otel_endpoint);
    } catch (const std::invalid_argument& e) {
      std::cerr << "runner: " << e.what() << "\n";
      return cli::kExitUsage;
    }
  }
  if (!cfg.env_aliases_used.empty()) {
    std::string names;
    for (const auto& n : cfg.env_aliases_used) names += (names.empty() ? "" : ",") + n;
    log::info("seed environment variables read as aliases (docs/migrating.md)",
              {{"variables", names}});
  }
  if (!cfg.http.empty()) ops::parse_listen_address(cfg.http);  // bad address: usage error
  // The runner's own connections (host/store/db_budget.hpp): a budget too small for the services
  // asked for is a usage error saying what needs how many.
  ConnectionPlan conn_plan;
  try {
    // Through PgBouncer (transaction pooling) LISTEN needs a direct URL; without one: polling.
    // LISTEN may share the claims connection only on the server the claims go to.
    conn_plan = plan_connections(cfg.max_connections, !cfg.http.empty(),
                                 !cfg.pgbouncer || cfg.listen_database_url.has_value(),
                                 !cfg.pgbouncer && !cfg.listen_database_url.has_value());
  } catch (const std::invalid_argument& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitUsage;
  }
  for (const auto& [kind, hook] : cfg.webhooks) ops::check_webhook_url(hook);
  if (cfg.plugins_dir.empty()) {
    std::cerr << "runner: no plugins to serve: give --plugins DIR (or RUNNER_PLUGINS, or "
                 "[worker] plugins in the config)\n";
    return cli::kExitUsage;
  }
  if (cfg.isolation != "sandbox" && cfg.isolation != "none") {
    std::cerr << "runner: isolation must be 'sandbox' or 'none', got '" << cfg.isolation << "'\n";
    return cli::kExitUsage;
  }
  block_signals();
  ops::name_database_sessions();  // "jobrunner PID@HOST": the dashboard counts connections
  std::string url = cli::resolve_database(cfg);
  // Plugins (issue 16, trust model): every file is pinned by content and described inside a
  // confined worker, in parallel with a deadline, so no plugin code runs here and a bad plugin is
  // refused (logged, kept in refused_plugins()) while the others start. Each plugin then gets
  // what the operator granted (config, approvals, built-in approvals of the shipped plugins);
  // a request above that refuses the plugin. isolation = "none" (configuration only) loads the
  // pinned content in-process.
  // Each plugin's database_url: its own role for a plugin granted a database, none otherwise
  // (host/engine/plugin_db.hpp); made before the plugin is initialised.
  PluginDatabases plugin_dbs(url);
  std::map<std::string, std::string> db_urls;
  std::deque<LoadedPlugin> plugins;
  std::map<std::string, std::unique_ptr<Executor>> executors;
  std::vector<LoadedPlugin*> ptrs;
  std::vector<LoadedPlugin*> in_process;
  // Sandboxed plugins by name (executors owned by the engine below).
  std::vector<std::pair<std::string, sandbox::SandboxExecutor*>> sandboxed;
  std::map<std::string, bool> replace_kinds;  // plugin name -> [plugins.<name>] replace_kinds
  std::map<std::string, nlohmann::json> loaded_fields;  // for the "plugin loaded" lines
  {
    sandbox::SandboxOptions so;
    so.pool_size = cfg.concurrency;
    so.batch_limit = cfg.sandbox_batch;
    so.warm_workers = cfg.sandbox_warm_workers;
    so.start_timeout_ms = static_cast<int64_t>(cfg.plugin_start_timeout_seconds * 1000);
    sandbox::TrustContext trust = sandbox::trust_context(cfg, cfg.concurrency);
    auto refuse = [](const std::string& name, const std::string& file, const std::string& why) {
      log::error("plugin refused", {{"plugin", name}, {"file", file}, {"reason", why}});
      note_refused_plugin({name, file, "", why});
    };
    sandbox::DescribedDir described = sandbox::describe_dir(cfg.plugins_dir, so);
    for (const auto& r : described.refused) refuse(r.name, r.file, r.reason);
    for (auto& d : described.plugins) {
      // plugins/exec (issue 22): kinds declared in the operator's config, not by the plugin.
      try {
        if (declares_config_kinds(d.manifest) &&
            sandbox::add_config_kinds(d, cfg.plugin_config) == 0 && d.kinds.empty()) {
          log::info("plugin has no kinds configured; not served",
                    {{"plugin", d.name}, {"hint", "[[plugins." + d.name + ".kinds]]"}});
          continue;
        }
      } catch (const std::exception& e) {
        refuse(d.name, d.path, std::string("config [plugins.") + d.name + "]: " + e.what());
        continue;
      }
      sandbox::TrustDecision dec = sandbox::decide_for(d, trust);
      if (!dec.accepted()) {
        refuse(d.name, d.path, dec.refusal_text());
        continue;
      }
      d.grants.database = dec.policy.database;
      d.grants.enqueue_kinds = dec.policy.enqueue_kinds;
      d.grants.env = dec.policy.env;
      try {
        db_urls[d.name] = plugin_dbs.url_for(d, cfg.plugin_config);
      } catch (const PluginError& e) {
        refuse(d.name, d.path, e.what());  // its database grant cannot be honoured
        continue;
      }
      nlohmann::json pc = plugin_config_for(d, cfg.plugin_config, db_urls[d.name]);
      // A manifest's cron entries must parse (a malformed manifest refuses the plugin); which
      // kinds they may schedule is decided once the kinds this runner serves are known, below.
      std::string bad_cron;
      if (d.manifest.contains("cron")) {
        const auto& crons = d.manifest["cron"];
        if (!crons.is_array()) bad_cron = "its manifest's cron must be an array";
        for (size_t i = 0; bad_cron.empty() && crons.is_array() && i < crons.size(); ++i) {
          try {
            cron_entry_from_json(crons[i], "plugin:" + d.name);
          } catch (const std::exception& e) {
            bad_cron = std::string("bad cron entry in its manifest: ") + e.what();
          }
        }
      }
      if (!bad_cron.empty()) {
        refuse(d.name, d.path, bad_cron);
        continue;
      }
      sandbox::Policy pol;
      try {
        pol = dec.resolve(pc);
      } catch (const std::exception& e) {
        refuse(d.name, d.path, e.what());
        continue;
      }
      replace_kinds[d.name] = dec.replace_kinds;
      nlohmann::json grants = pol.grants_json();
      if (dec.isolation == "none") {
        // Trusted by the operator's configuration: the pinned content, loaded here.
        try {
          LoadedPlugin p = load_plugin(d.pin);
          // A plugin whose kinds come from the operator's config (plugins/exec) gets them here
          // too, as its sandboxed description got them above, before the two are compared.
          if (declares_config_kinds(p.manifest)) sandbox::add_config_kinds(p, cfg.plugin_config);
          bool same = p.name == d.name && p.kinds.size() == d.kinds.size();
          for (size_t i = 0; same && i < p.kinds.size(); ++i) {
            same = p.kinds[i].kind == d.kinds[i].kind;
          }
          if (!same) {
            throw PluginError("plugin " + d.path +
                              ": describes itself differently in-process than in the sandbox");
          }
          p.grants = d.grants;
          plugins.push_back(std::move(p));
          in_process.push_back(&plugins.back());
          // Its init runs in the engine's background start-up (retried while it fails, never
          // fatal), which logs "plugin loaded in-process" with these fields once it is up.
          executors[d.name] = std::make_unique<InProcessExecutor>(&plugins.back(), pc);
          loaded_fields[d.name] = {{"sha256", d.sha256}, {"grants", grants}};
        } catch (const std::exception& e) {
          refuse(d.name, d.path, e.what());
        }
        continue;
      }
      try {
        // Started by the engine in the background (Engine::start_plugins): an init that fails
        // is retried with backoff, never fatal; "plugin loaded in the sandbox" once it is up.
        auto ex = sandbox::make_executor(d, pc, pol, so);
        sandboxed.emplace_back(d.name, ex.get());
        executors[d.name] = std::move(ex);
        loaded_fields[d.name] = {
            {"sha256", d.sha256}, {"policy", pol.to_json()}, {"grants", grants}};
        plugins.push_back(std::move(d));
      } catch (const std::exception& e) {
        refuse(d.name, d.path, e.what());
      }
    }
  }
  ptrs.reserve(plugins.size());
  for (auto& p : plugins) ptrs.push_back(&p);
  auto no_plugin_left = [&](const char* what) {
    std::cerr << "runner: " << what << " in " << cfg.plugins_dir << "\n";
    for (const auto& r : refused_plugins()) {
      std::cerr << "  refused " << (r.kind.empty() ? "" : "kind " + r.kind + " of ")
                << (r.name.empty() ? r.file : r.name + " (" + r.file + ")") << ": " << r.reason
                << "\n";
    }
    // Plugins refused: a runtime failure (1). An empty directory: nothing to serve, bad usage (2).
    return refused_plugins().empty() ? cli::kExitUsage : cli::kExitError;
  };
  if (ptrs.empty()) {
    return no_plugin_left(refused_plugins().empty() ? "no plugin to serve (the directory has none)"
                                                    : "no plugin left to serve");
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
  // Kind ownership across runners (jr_kinds): a kind recorded for another plugin name is not
  // served here unless [plugins.<name>] replace_kinds = true.
  std::vector<std::string> serve_kinds = cfg.kinds;
  {
    std::vector<KindClaim> claims;
    for (auto* p : ptrs) {
      for (const auto& k : p->kinds) {
        if (!cfg.kinds.empty() &&
            std::find(cfg.kinds.begin(), cfg.kinds.end(), k.kind) == cfg.kinds.end()) {
          continue;
        }
        claims.push_back({k.kind, p->name, p->sha256, replace_kinds[p->name], k.default_queue,
                          k.timeout_ms, k.max_attempts, k.retry_schedule});
      }
    }
    auto verdicts = claim_kinds_at_start(url, claims);
    if (!verdicts) return cli::kExitOk;  // SIGTERM/SIGINT while waiting for the database
    std::set<std::string> refused_kinds;
    for (const auto& v : *verdicts) {
      if (v.serve) continue;
      refused_kinds.insert(v.kind);
      for (const auto& c : claims) {
        if (c.kind == v.kind) {
          std::string file;
          for (auto* p : ptrs) {
            if (p->name == c.plugin) file = p->path;
          }
          note_refused_plugin({c.plugin, file, v.kind, v.message});
        }
      }
    }
    if (!refused_kinds.empty()) {
      serve_kinds.clear();
      for (const auto& c : claims) {
        if (!refused_kinds.count(c.kind)) serve_kinds.push_back(c.kind);
      }
      if (serve_kinds.empty()) return no_plugin_left("no job kind left to serve");
    }
  }
  EngineOptions eo;
  eo.database_url = url;
  eo.worker_id = cfg.worker_id;
  eo.heartbeat_seconds = cfg.heartbeat_seconds;
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
  eo.vacuum_dead_rows = cfg.vacuum_dead_rows;
  eo.enqueues_per_job = cfg.enqueues_per_job;
  eo.log_lines_per_job = cfg.log_lines_per_job;
  eo.log_bytes_per_job = cfg.log_bytes_per_job;
  eo.progress_interval_seconds = cfg.progress_interval_seconds;
  eo.idle_timeout_seconds = cfg.idle_timeout_seconds;
  eo.init_retry_max_seconds = cfg.init_retry_max_seconds;
  eo.plugin_log_fields = loaded_fields;
  eo.connections = conn_plan;
  eo.maintenance = cfg.maintenance;
  if (cfg.listen_database_url) eo.listen_database_url = *cfg.listen_database_url;
  if (cfg.pgbouncer) {
    if (cfg.listen_database_url) {
      log::info("PgBouncer mode: no prepared statements; LISTEN on the direct listen_database_url",
                {{"listen_database_url", log::redact(*cfg.listen_database_url)}});
    } else {
      log::warn(
          "PgBouncer mode without listen_database_url: no LISTEN through transaction pooling, so "
          "new jobs are found by polling every poll_interval (set RUNNER_LISTEN_DATABASE_URL to "
          "a direct URL for immediate wake-ups)",
          {{"poll_interval_seconds", cfg.poll_interval_seconds}});
    }
  }
  log::info("database connections of this runner (plugins' own not included)",
            {{"max_connections", conn_plan.budget}, {"plan", conn_plan.describe()}});
  // Cron entries are stored by name (jr_cron), a later one replacing an earlier one: a plugin's
  // entry must not take over the name of the operator's entry or of another plugin's.
  std::map<std::string, std::string> cron_names;  // name -> source
  for (const auto& j : cfg.cron) {
    eo.cron.push_back(cron_entry_from_json(j, "config"));
    cron_names.emplace(eo.cron.back().name, "config");
  }
  // A manifest's cron entries enqueue jobs for the plugin, so they follow the rule of
  // host->enqueue (Engine::enqueue_permitted): only a kind the plugin serves in this runner
  // (after --kinds, the trust decision and kind ownership) or one the operator granted it
  // ([plugins.<name>] enqueue). Any other entry is refused loudly; its other kinds keep working.
  auto may_schedule = [&serve_kinds](const LoadedPlugin& p, const std::string& kind) {
    for (const auto& k : p.kinds) {
      if (k.kind == kind &&
          (serve_kinds.empty() ||
           std::find(serve_kinds.begin(), serve_kinds.end(), kind) != serve_kinds.end())) {
        return true;
      }
    }
    const auto& granted = p.grants.enqueue_kinds;
    return std::find(granted.begin(), granted.end(), kind) != granted.end();
  };
  for (auto& p : plugins) {
    eo.plugin_configs[p.name] = plugin_config_for(p, cfg.plugin_config, db_urls[p.name]);
    if (!p.manifest.contains("cron")) continue;
    for (const auto& j : p.manifest["cron"]) {
      CronEntry e = cron_entry_from_json(j, "plugin:" + p.name);  // parsed above
      if (!may_schedule(p, e.kind)) {
        log::error(
            "cron entry refused: a plugin may schedule only the kinds it serves in this runner "
            "and those granted to it",
            {{"plugin", p.name},
             {"cron", e.name},
             {"kind", e.kind},
             {"hint", "[plugins." + p.name + "] enqueue = [\"" + e.kind + "\"]"}});
        continue;
      }
      if (auto [it, fresh] = cron_names.emplace(e.name, e.source); !fresh) {
        log::error("cron entry refused: its name is already used by another entry",
                   {{"plugin", p.name}, {"cron", e.name}, {"used_by", it->second}});
        continue;
      }
      eo.cron.push_back(std::move(e));
    }
  }
  ops::OpsConfig oc;
  oc.database_url = url;
  oc.http = cfg.http;
  oc.api_token = cfg.api_token;
  oc.webhook_secret = cfg.webhook_secret;
  oc.webhooks = cfg.webhooks;
  oc.lease_seconds = cfg.lease_seconds;
  oc.http_connections = conn_plan.http;
  // OpenTelemetry traces (host/ops/otel_exporter.hpp): only with an endpoint.
  std::unique_ptr<ops::OtlpExporter> otel;
  if (!cfg.otel_endpoint.empty()) {
    ops::OtelOptions otel_opts;
    otel_opts.endpoint = cfg.otel_endpoint;
    otel_opts.service_name = cfg.otel_service_name;
    otel_opts.batch_size = static_cast<size_t>(cfg.otel_batch_size);
    otel_opts.queue_size = static_cast<size_t>(cfg.otel_queue_size);
    otel_opts.interval_seconds = cfg.otel_interval_seconds;
    otel_opts.timeout_seconds = cfg.otel_timeout_seconds;
    otel_opts.max_retries = cfg.otel_max_retries;
    otel_opts.shutdown_seconds = cfg.otel_shutdown_seconds;
    otel = std::make_unique<ops::OtlpExporter>(otel_opts);
    eo.spans = otel.get();
  }
  ops::Operations operations(oc);
  eo.observer = &operations;
  if (otel) {
    operations.registry().collector(
        [e = otel.get()](ops::TextWriter& tw) { e->write_metrics(tw); });
  }
  Engine engine(eo, ptrs, serve_kinds, std::move(executors));
  if (otel) otel->start(engine.worker_id());
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
  // The dashboard: every plugin's isolation and sandbox state (workers, restarts, quarantine,
  // layers), published with this runner's jr_workers row.
  ops::set_plugin_state_provider([&plugins, &sandboxed] {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : plugins) {
      const sandbox::SandboxExecutor* ex = nullptr;
      for (const auto& [name, e] : sandboxed) {
        if (name == p.name) ex = e;
      }
      out.push_back(ops::plugin_state_json(p, ex));
    }
    return out;
  });
  handle_signals(engine);
  engine.start_plugins();  // their init overlaps the wait for the database below
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
  if (otel) otel->shutdown();  // sends what the last attempts left, within its bound
  ops::set_sandbox_stats_provider({});
  operations.stop();
  ops::set_plugin_state_provider({});
  if (engine.abandoned_handlers()) {
    // Their jobs were released; the threads are still inside plugin code, so neither the
    // plugins nor this process's globals may be torn down under them.
    log::warn("exiting with handlers still running (their jobs were released)");
    std::fflush(nullptr);
    _exit(rc);
  }
  // In-process plugins' shutdown hooks: trusted code, but shutdown does not wait on it for
  // ever (the process then exits without unloading them).
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread([in_process, done] {
    for (auto* p : in_process) {
      if (p->initialised && p->desc->shutdown) p->desc->shutdown(p->state);
    }
    *done = true;
  }).detach();
  for (int waited = 0; !*done && waited < 5000; waited += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!*done) {
    log::warn("an in-process plugin's shutdown did not return within 5 s; exiting without it");
    std::fflush(nullptr);
    _exit(rc);
  }
  return rc;
}

// The worker's flags sit on the root command (`runner --plugins DIR` serves jobs); after
// parsing, one given to a command it does not apply to is refused (exit 2, refuse_worker_flags).
void register_worker(CLI::App& app, Context& ctx) {
  WorkerFlags& w = ctx.w;
  // The flags of the settings table (core/settings_table.hpp): each setting's flag, its help line
  // from the table's, with its variable and config key, and an integer's range.
  for (const Setting& s : settings()) {
    if (!*s.flag || s.global_flag) continue;
    std::string name = setting_name(s);
    std::string help = std::string(s.doc) + " (" + (*s.env ? std::string(s.env) + ", " : "") +
                       (*s.section ? "[" + std::string(s.section) + "] " : "") + s.key + ")";
    CLI::Option* opt = nullptr;
    if (std::holds_alternative<bool Config::*>(s.field)) {
      opt = app.add_flag_callback(
          s.flag, [&w, name] { w.given[name] = "1"; }, help);
    } else {
      opt = app.add_option(s.flag, w.given[name], help);
      if (std::holds_alternative<int Config::*>(s.field) ||
          std::holds_alternative<int64_t Config::*>(s.field)) {
        opt->check(CLI::Range(s.min, s.max));
      }
    }
    ctx.worker_flags.push_back(opt);
  }
  ctx.worker_flags.push_back(app.add_option("--prefetch", w.prefetch,
                                            "jobs claimed ahead of free slots (default: automatic)")
                                 ->check(CLI::Range(-1, 100000)));
  // Reproq's names (docs/migrating.md): plain seconds, same meaning.
  ctx.worker_flags.push_back(app.add_option("--reclaim-interval-seconds", w.reclaim_interval,
                                            "Reproq's name for --rescue-interval (seconds)"));
  ctx.worker_flags.push_back(
      app.add_option("--metrics-port", w.metrics_port, "Reproq's name for --http PORT (loopback)")
          ->check(CLI::Range(1, 65535)));

  // `runner` alone serves jobs too: the worker is what runs unless a subcommand says otherwise.
  ctx.run = [&ctx] { return cmd_worker(ctx.g, ctx.w); };
  auto* worker = app.add_subcommand("worker", "run jobs (the default command)");
  worker->fallthrough();
}

bool refuse_worker_flags(const std::string& command, const Context& ctx) {
  if (command == "worker") return false;
  auto allowed = ctx.worker_flags_of.find(command);
  for (const auto* opt : ctx.worker_flags) {
    if (opt->count() == 0) continue;
    std::string flag = opt->get_name();
    if (allowed != ctx.worker_flags_of.end() && allowed->second.count(flag)) continue;
    std::cerr << "runner " << command << ": " << flag
              << " does not apply to this command (it is a flag of `runner worker`)\n"
              << "Run with --help for more information.\n";
    return true;
  }
  return false;
}

}  // namespace jr::cli
