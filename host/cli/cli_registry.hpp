// How the `runner` command line is put together. main.cpp creates the root command and its global
// flags, then calls each group's register_* function below, in the order their subcommands are
// listed by `runner --help`. A group's function adds its subcommands with their flags, validators
// and a callback that, once the command line parses, sets Context::run to the command's work
// (a cmd_* function of cli_commands.hpp). main then runs it and maps what it throws to an exit
// code.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cli_commands.hpp"

namespace jr::cli {

struct Context {
  GlobalFlags g;  // --config, --database, --data-dir, --log-level (main.cpp)
  WorkerFlags w;  // the worker's flags, on the root command (register_worker)
  // Every worker flag, and those a command other than `worker` uses, by command name (`torture`
  // starts runners, `info` reads the lease): after parsing, any other one given to a command
  // that is not `worker` is refused (refuse_worker_flags).
  std::vector<CLI::Option*> worker_flags;
  std::map<std::string, std::set<std::string>> worker_flags_of;
  // The parsed command's work: returns the exit code or throws. register_worker sets the worker
  // (`runner` alone serves jobs); the callback of the subcommand given replaces it.
  std::function<int()> run;
};

// The arguments of a `status ID [--json]` subcommand.
struct IdFlags {
  int64_t id = 0;
  bool json = false;
};

// Once `sub` is parsed, `work` is what runs (Context::run).
inline void on_parsed(CLI::App* sub, Context& ctx, std::function<int()> work) {
  sub->callback([&ctx, work = std::move(work)] { ctx.run = work; });
}

// The groups, each in its own file (cli_<group>.cpp), in `runner --help` order.
void register_worker(CLI::App& app, Context& ctx);      // worker flags on the root; worker
void register_enqueue(CLI::App& app, Context& ctx);     // enqueue (cli_jobs.cpp)
void register_lifecycle(CLI::App& app, Context& ctx);   // cancel, retry, replay, dlq
void register_flow(CLI::App& app, Context& ctx);        // queue, limit, cron
void register_torture(CLI::App& app, Context& ctx);     // torture
void register_batch(CLI::App& app, Context& ctx);       // batch
void register_workflow(CLI::App& app, Context& ctx);    // workflow
void register_jobs(CLI::App& app, Context& ctx);        // status, jobs (cli_jobs.cpp)
void register_info(CLI::App& app, Context& ctx);        // info
void register_ui(CLI::App& app, Context& ctx);          // ui
void register_admin(CLI::App& app, Context& ctx);       // migrate, plugins, config, db
void register_new_plugin(CLI::App& app, Context& ctx);  // new-plugin

// After parsing `command`: a worker flag given to a command other than `worker` that does not
// use it is refused. Returns true then, with the message on stderr (cli_worker.cpp).
bool refuse_worker_flags(const std::string& command, const Context& ctx);

}  // namespace jr::cli
