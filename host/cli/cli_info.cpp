// `runner info [--json] [--watch]`: wiring of host/ops/info.cpp into the CLI.
#include <memory>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "info.hpp"
#include "util.hpp"

namespace jr::cli {

int cmd_info(const GlobalFlags& g, const WorkerFlags& w, bool json, bool watch) {
  Config cfg = build_config(g);
  apply_worker_flags(cfg, w);  // --lease-seconds only (register_info)
  auto store = open_store(cfg);
  ops::InfoOptions o;
  o.json = json;
  o.watch = watch;
  // A runner heartbeats every third of its lease: one silent for three heartbeats is gone.
  o.stale_seconds = cfg.lease_seconds;
  return ops::run_info(*store, o);
}

void register_info(CLI::App& app, Context& ctx) {
  struct InfoFlags {
    bool json = false, watch = false;
  };
  auto f = std::make_shared<InfoFlags>();
  auto* info = app.add_subcommand("info", "queues, live runners and throughput of the last minute");
  info->fallthrough();
  info->add_flag("--json", f->json, "print JSON");
  info->add_flag("--watch", f->watch, "refresh every second until Ctrl-C");
  ctx.worker_flags_of["info"] = {"--lease-seconds"};  // which runners are live
  on_parsed(info, ctx, [&ctx, f] { return cmd_info(ctx.g, ctx.w, f->json, f->watch); });
}

}  // namespace jr::cli
