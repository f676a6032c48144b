// The `runner` subcommands' work. Each group's register_* function (cli_registry.hpp) parses
// its flags with CLI11 into the structs below and calls one of these; each returns the process
// exit code (see cli_common.hpp) or throws (ConfigError, StoreError, PluginError,
// std::invalid_argument), which main turns into a message and an exit code.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "config.hpp"
#include "store.hpp"

namespace jr::cli {

struct GlobalFlags {
  std::string config_file;
  std::string database;
  std::string data_dir;
  std::string log_level;
};

struct WorkerFlags {
  // The flags of settings in the table (core/settings_table.hpp), registered from it, by setting
  // name
  // ("worker.lease_seconds"): the text given ("" when not given). A true/false setting's flag
  // (--pgbouncer, --no-maintenance) is "1" when given.
  std::map<std::string, std::string> given;
  int prefetch = -1;             // --prefetch: jobs claimed ahead of free slots; -1 = automatic
  std::string reclaim_interval;  // --reclaim-interval-seconds (Reproq), seconds
  int metrics_port = 0;          // --metrics-port (Reproq): --http PORT
  // The text given for a setting's flag, "" when none.
  std::string of(const std::string& setting) const {
    auto it = given.find(setting);
    return it == given.end() ? "" : it->second;
  }
};

// The worker flags given, applied to `cfg` (after the file and the environment, so they win).
// Throws std::invalid_argument naming the flag.
void apply_worker_flags(Config& cfg, const WorkerFlags& w);

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
  std::string ttl;
  std::string result_ttl;
  std::string failure_ttl;
  bool unique = false;
  std::string unique_key;
  std::string lock_key;
  int lock_limit = 0;
  std::string depends_on;
  std::string webhook;  // --webhook URL (host/ops)
  // Uniqueness over a period and states, replace, debounce (docs/job-model.md).
  std::string unique_for;     // --unique-for 1h
  std::string unique_states;  // --unique-states available,scheduled,running,completed
  bool replace = false;       // --replace
  std::string debounce;       // --debounce 5s
  std::string debounce_max;   // --debounce-max 1m
  std::string rate_key;       // --rate-key tenant:42 (per-tenant rate limits)
  std::string traceparent;    // --traceparent 00-...: the producer's span (OpenTelemetry traces)
  // Batches (docs/job-model.md "Batches", host/cli/cli_batch.cpp).
  std::string batch_on_complete;  // --batch-on-complete KIND
  std::string batch_on_failure;   // --batch-on-failure KIND
  std::string batch_payload;      // --batch-payload JSON (the callbacks' payload)
  // Workflows (docs/job-model.md "Workflows", host/cli/cli_workflow.cpp).
  std::string workflow;  // --workflow FILE (- for standard input)
};

// `runner jobs cancel --queue Q [--kind K] [--state S] [--yes]`.
struct JobsCancelFlags {
  std::string queue;
  std::string kind;
  std::string state;
  bool yes = false;
};

struct DlqFlags {
  std::string action;  // ls, show, replay, purge
  int64_t id = 0;
  std::string kind;
  std::string queue;
  std::string since;
  std::string before;
  int limit = 1000;
  bool all = false;
  bool json = false;
};

struct LimitFlags {
  std::string action;  // set, ls, rm, set-field, rm-field, fields
  std::string key;
  std::string kind, field, prefix;  // set-field, rm-field
  double rate = 0;
  double burst = 0;
  bool json = false;
};

struct TortureFlags {
  int jobs = 2000;
  int runners = 3;
  int concurrency = 50;
  double kill_every = 1.0;  // seconds between random kills; 0 = none
  int min_kills = 4;        // kill -9s the run must see (more job waves until then)
  int time_limit = 600;     // seconds
  std::string plugins;      // directory with libjr_echo.so
  uint64_t seed = 0;
};

// Config file, then environment, then the global flags.
Config build_config(const GlobalFlags& g);

int cmd_worker(const GlobalFlags& g, const WorkerFlags& w);
int cmd_enqueue(const GlobalFlags& g, const EnqueueFlags& f);
int cmd_status(const GlobalFlags& g, int64_t id, bool json);
// `runner batch status ID [--json]` (host/cli/cli_batch.cpp).
int cmd_batch_status(const GlobalFlags& g, int64_t id, bool json);
// `runner workflow status ID [--json]` (host/cli/cli_workflow.cpp).
int cmd_workflow_status(const GlobalFlags& g, int64_t id, bool json);
int cmd_jobs_ls(const GlobalFlags& g, const JobListParams& p, bool json);
int cmd_jobs_cancel(const GlobalFlags& g, const JobsCancelFlags& f);
int cmd_plugins_ls(const std::string& dir, bool json);
// `runner db url --plugin NAME`: the plugin's own role (from jr_plugin_roles, with its
// password); `--superuser`: the managed cluster's superuser. Default: the runner's role.
struct DbUrlFlags {
  std::string plugin;
  bool superuser = false;
};
int cmd_db(const GlobalFlags& g, const std::string& action, const DbUrlFlags& url_flags = {});
int cmd_cancel(const GlobalFlags& g, int64_t id);
int cmd_retry(const GlobalFlags& g, int64_t id);
int cmd_replay(const GlobalFlags& g, int64_t id);
int cmd_dlq(const GlobalFlags& g, const DlqFlags& f);
int cmd_queue(const GlobalFlags& g, const std::string& action, const std::string& queue);
int cmd_limit(const GlobalFlags& g, const LimitFlags& f);
int cmd_cron_ls(const GlobalFlags& g, bool json);
int cmd_torture(const GlobalFlags& g, const TortureFlags& f);
// `runner new-plugin NAME DIR` (host/cli/cli_new_plugin.cpp): scaffolds an out-of-tree plugin.
int cmd_new_plugin(const std::string& name, const std::string& dir);
// `runner info [--json] [--watch]` (host/cli/cli_info.cpp): queues, live runners, throughput.
int cmd_info(const GlobalFlags& g, const WorkerFlags& w, bool json, bool watch);
// `runner ui --http PORT` (host/cli/cli_ui.cpp): the web dashboard alone, no jobs served.
int cmd_ui(const GlobalFlags& g, const WorkerFlags& w);

}  // namespace jr::cli
