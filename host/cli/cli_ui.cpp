// `runner ui --http [ADDR:]PORT`: the web dashboard alone, for operators who run it apart from
// the workers. It serves /ui, the JSON API, /healthz, /readyz and /metrics (build information
// only) from the database, and claims no jobs. SIGTERM or SIGINT stops it (exit 0).
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <iostream>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "server.hpp"
#include "util.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

namespace jr::cli {

int cmd_ui(const GlobalFlags& g, const WorkerFlags& w) {
  Config cfg = build_config(g);
  apply_worker_flags(cfg, w);  // --http and --lease-seconds only (register_ui)
  if (cfg.http.empty()) {
    std::cerr << "runner ui: give --http [ADDR:]PORT (or RUNNER_HTTP, or [worker] http in the "
                 "config): where to serve the dashboard\n";
    return kExitUsage;
  }
  ops::parse_listen_address(cfg.http);  // a bad address is a usage error (std::invalid_argument)
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // Migrated first: the dashboard reads migration 11's tables.
  std::string url = migrated_database(cfg);
  ops::StorePool pool(url);
  ops::Registry registry;
  registry.collector([](ops::TextWriter& tw) {
    tw.family("jobrunner_build_info", "gauge", "Build information; the value is always 1.");
    tw.sample("jobrunner_build_info", {{"version", JR_VERSION}}, 1);
  });
  ops::ServerOptions so;
  so.listen = cfg.http;
  so.api_token = cfg.api_token;
  so.live_seconds = cfg.lease_seconds;
  so.dashboard_only = true;
  std::atomic<bool> stopping{false};
  ops::Server server(so, pool, registry, [&stopping]() -> ops::Readiness {
    if (stopping) return {false, "shutting down"};
    return {};
  });
  server.start();
  log::info("dashboard serving (no jobs run in this process)",
            {{"url", "http://" + server.host() + ":" + std::to_string(server.port()) + "/ui/"},
             {"writes_enabled", !cfg.api_token.empty()}});
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  stopping = true;
  log::info("signal received; stopping the dashboard",
            {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  server.stop();
  return kExitOk;
}

void register_ui(CLI::App& app, Context& ctx) {
  auto* ui = app.add_subcommand(
      "ui", "serve the web dashboard at /ui on --http [ADDR:]PORT, without running jobs");
  ui->fallthrough();
  ctx.worker_flags_of["ui"] = {"--http", "--lease-seconds"};  // where to serve; live runners
  on_parsed(ui, ctx, [&ctx] { return cmd_ui(ctx.g, ctx.w); });
}

}  // namespace jr::cli
