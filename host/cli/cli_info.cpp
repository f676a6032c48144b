// `runner info [--json] [--watch]`: wiring of host/ops/info.cpp into the CLI.
#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "info.hpp"
#include "util.hpp"

namespace jr::cli {

int cmd_info(const GlobalFlags& g, const WorkerFlags& w, bool json, bool watch) {
  Config cfg = build_config(g);
  apply_worker_flags(cfg, w);  // --lease-seconds only (main.cpp)
  auto store = open_store(cfg);
  ops::InfoOptions o;
  o.json = json;
  o.watch = watch;
  // A runner heartbeats every third of its lease: one silent for three heartbeats is gone.
  o.stale_seconds = cfg.lease_seconds;
  return ops::run_info(*store, o);
}

}  // namespace jr::cli
