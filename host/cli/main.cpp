// `runner`: the command-line entry point. main creates the root command and its global flags,
// has each group of subcommands register itself (cli_registry.hpp: one cli_<group>.cpp each),
// parses, runs the command given and maps errors to the documented exit codes.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "config.hpp"
#include "log.hpp"
#include "plugin_loader.hpp"
#include "store.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

using namespace jr;
using namespace jr::cli;

namespace {

int run_runner(int argc, char** argv) {
  // SIGTERM and SIGINT are held from the first instruction. The worker and the dashboard take
  // them with sigwait, so a stop sent at any moment of their start-up, even before their signal
  // thread exists, becomes a clean shutdown (exit 0) instead of the default death. Every other
  // command gets the default action back as soon as it is known (below).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  log::init(log::Level::info);
  CLI::App app{"runner: runs background jobs from PostgreSQL queues through handler plugins"};
  app.set_version_flag("--version", JR_VERSION);
  app.require_subcommand(0, 1);

  Context ctx;
  app.add_option("--config", ctx.g.config_file, "TOML config file")->envname("RUNNER_CONFIG");
  app.add_option("--database,--dsn", ctx.g.database,
                 "PostgreSQL URL (default: DATABASE_URL, else the managed local cluster; --dsn "
                 "as in Reproq)");
  app.add_option("--data-dir", ctx.g.data_dir, "directory of the managed local PostgreSQL");
  app.add_option("--log-level", ctx.g.log_level, "debug, info, warn or error");

  // Each group adds its subcommands; this order is the order of `runner --help`.
  register_worker(app, ctx);
  register_enqueue(app, ctx);
  register_lifecycle(app, ctx);
  register_flow(app, ctx);
  register_torture(app, ctx);
  register_batch(app, ctx);
  register_workflow(app, ctx);
  register_jobs(app, ctx);
  register_info(app, ctx);
  register_ui(app, ctx);
  register_admin(app, ctx);
  register_new_plugin(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every other parse error is bad usage (README: exit 2), not
    // one of CLI11's own codes.
    return app.exit(e) == 0 ? cli::kExitOk : cli::kExitUsage;
  }
  {
    std::string command = "worker";
    if (!app.get_subcommands().empty()) command = app.get_subcommands().front()->get_name();
    if (command != "worker" && command != "ui") {
      pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);  // a pending one acts now
    }
    if (refuse_worker_flags(command, ctx)) return cli::kExitUsage;
  }

  try {
    return ctx.run();
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
    return e.invalid_input() ? cli::kExitUsage : cli::kExitError;
  } catch (const std::exception& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_runner(argc, argv);
  } catch (const std::exception& e) {  // before or after a command ran (its errors are above)
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  }
}
