// `runner`: the command-line entry point. Only wiring lives here; each subcommand's work is in
// its own component (engine, store, managed_db, plugin_loader).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "config.hpp"
#include "engine.hpp"
#include "job_options.hpp"
#include "log.hpp"
#include "managed_db.hpp"
#include "plugin_loader.hpp"
#include "sandbox.hpp"
#include "settings_table.hpp"
#include "util.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

using namespace jr;
using namespace jr::cli;

namespace jr::cli {
// `runner new-plugin NAME DIR` (host/cli/cli_new_plugin.cpp): scaffolds an out-of-tree plugin.
int cmd_new_plugin(const std::string& name, const std::string& dir);
// `runner info [--json] [--watch]` (host/cli/cli_info.cpp): queues, live runners, throughput.
int cmd_info(const GlobalFlags& g, const WorkerFlags& w, bool json, bool watch);
// `runner ui --http PORT` (host/cli/cli_ui.cpp): the web dashboard alone, no jobs served.
int cmd_ui(const GlobalFlags& g, const WorkerFlags& w);
}  // namespace jr::cli

namespace {

// A job id argument: 1 .. 2^63-1, digits only (CLI11 alone would clamp 99999999999999999999 to
// the largest id).
const CLI::Validator kJobId(
    [](std::string& text) -> std::string {
      try {
        ops::parse_job_id(text);
        return {};
      } catch (const std::invalid_argument& e) {
        return e.what();
      }
    },
    "ID", "job id");

// A time argument (--since, --before): ISO 8601, checked here rather than by the database.
const CLI::Validator kIsoTime(
    [](std::string& text) -> std::string {
      if (ops::is_iso8601_time(text)) return {};
      return "'" + text.substr(0, 60) + "' is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)";
    },
    "TIME", "ISO 8601 time");

}  // namespace

int main(int argc, char** argv) {
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

  GlobalFlags g;
  app.add_option("--config", g.config_file, "TOML config file")->envname("RUNNER_CONFIG");
  app.add_option("--database,--dsn", g.database,
                 "PostgreSQL URL (default: DATABASE_URL, else the managed local cluster; --dsn "
                 "as in Reproq)");
  app.add_option("--data-dir", g.data_dir, "directory of the managed local PostgreSQL");
  app.add_option("--log-level", g.log_level, "debug, info, warn or error");

  // Worker flags sit on the root command (`runner --plugins DIR` serves jobs); after parsing,
  // one given to a command it does not apply to is refused (exit 2), see below.
  WorkerFlags w;
  std::vector<CLI::Option*> worker_flags;
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
    worker_flags.push_back(opt);
  }
  worker_flags.push_back(app.add_option("--prefetch", w.prefetch,
                                        "jobs claimed ahead of free slots (default: automatic)")
                             ->check(CLI::Range(-1, 100000)));
  // Reproq's names (docs/migrating.md): plain seconds, same meaning.
  worker_flags.push_back(app.add_option("--reclaim-interval-seconds", w.reclaim_interval,
                                        "Reproq's name for --rescue-interval (seconds)"));
  worker_flags.push_back(
      app.add_option("--metrics-port", w.metrics_port, "Reproq's name for --http PORT (loopback)")
          ->check(CLI::Range(1, 65535)));
  // The worker flags other commands use: `torture` starts runners, `info` reads the lease.
  const std::map<std::string, std::set<std::string>> worker_flags_of = {
      {"torture", {"--plugins", "--concurrency"}},
      {"info", {"--lease-seconds"}},
      {"ui", {"--http", "--lease-seconds"}}};

  auto* worker = app.add_subcommand("worker", "run jobs (the default command)");
  worker->fallthrough();

  EnqueueFlags ef;
  auto* enqueue = app.add_subcommand("enqueue", "add jobs; prints each new job id on a line");
  enqueue->fallthrough();
  // Required unless --workflow is given (cmd_enqueue says so).
  enqueue->add_option("kind", ef.kind, "job kind");
  enqueue->add_option("--payload", ef.payload, "payload JSON");
  enqueue->add_option("--payload-file", ef.payload_file,
                      "JSON-lines file, one payload per line (- for standard input)");
  enqueue->add_option("--queue", ef.queue, "queue (default: the kind's default, else 'default')");
  enqueue->add_option("--priority", ef.priority, "higher runs first (default 0)");
  auto* delay = enqueue->add_option("--delay", ef.delay, "run after this long (30s, 5m)");
  enqueue->add_option("--run-at", ef.run_at, "run at this time (ISO 8601)")->excludes(delay);
  enqueue->add_option("--max-attempts", ef.max_attempts, "attempts before the dead letter queue")
      ->check(CLI::Range(1, 1000000));
  enqueue->add_option("--timeout", ef.timeout, "per-attempt timeout (90s, 5m)");
  enqueue->add_option("--retry-schedule", ef.retry_schedule, "retry delays in seconds: 60,300,900");

  enqueue->add_option("--ttl", ef.ttl, "cancel the job if it has not started within this time");
  enqueue->add_option("--result-ttl", ef.result_ttl,
                      "keep the finished job this long (default 1d)");
  enqueue->add_option("--failure-ttl", ef.failure_ttl,
                      "keep the dead letter this long (default 30d)");

  auto* unique = enqueue->add_flag("--unique", ef.unique,
                                   "no second job while one with this kind and payload waits "
                                   "or runs: print the existing id");
  enqueue->add_option("--unique-key", ef.unique_key, "uniqueness by this key instead")
      ->excludes(unique);
  enqueue->add_option("--unique-for", ef.unique_for,
                      "no second job with this key (--unique-key, else kind and payload) "
                      "enqueued within this period, finished or not (1h, 30m)");
  enqueue->add_option("--unique-states", ef.unique_states,
                      "the states in which a job with the key blocks another "
                      "(available,scheduled,running,completed,...)");
  enqueue->add_flag("--replace", ef.replace,
                    "update the pending job with the key (payload, run time) instead of "
                    "refusing; a running one gets a successor");
  enqueue->add_option("--debounce", ef.debounce,
                      "run this long after the last enqueue with the key (5s)");
  enqueue->add_option("--debounce-max", ef.debounce_max,
                      "with --debounce: never later than this after the first (default 10x)");
  enqueue->add_option("--rate-key", ef.rate_key,
                      "claim under this key's token bucket (tenant:42; `runner limit set --key "
                      "'tenant:*'` sets the default per key) instead of the queue's or kind's");
  enqueue->add_option("--traceparent", ef.traceparent,
                      "W3C traceparent of the producer's span: the job's attempts join its trace");
  enqueue->add_option("--lock-key", ef.lock_key, "jobs sharing this key never run at once");
  enqueue->add_option("--lock-limit", ef.lock_limit, "with --lock-key: at most N at once")
      ->check(CLI::Range(1, 1000000));
  enqueue->add_option("--depends-on", ef.depends_on, "run after these jobs complete (id,id)");
  enqueue->add_option("--webhook", ef.webhook,
                      "POST a signed notification to this URL when the job completes or is "
                      "dead-lettered");
  enqueue->add_option("--batch-on-complete", ef.batch_on_complete,
                      "enqueue the jobs as one batch; run a job of this kind once all finished "
                      "(prints \"batch ID\" on stderr)");
  enqueue->add_option("--batch-on-failure", ef.batch_on_failure,
                      "as a batch; run a job of this kind instead if any job failed");
  enqueue->add_option("--batch-payload", ef.batch_payload,
                      "the batch callback's payload (JSON object; the counts are added)");
  enqueue->add_option("--workflow", ef.workflow,
                      "enqueue a workflow: a JSON document of named steps (- for standard "
                      "input); prints the workflow id");

  int64_t cancel_id = 0;
  auto* cancel = app.add_subcommand("cancel", "cancel a queued job, or stop a running one");
  cancel->fallthrough();
  cancel->add_option("id", cancel_id, "job id")->required()->check(kJobId);
  int64_t retry_id = 0;
  auto* retry = app.add_subcommand("retry", "run a dead-lettered (or waiting) job again now");
  retry->fallthrough();
  retry->add_option("id", retry_id, "job id")->required()->check(kJobId);
  int64_t replay_id = 0;
  auto* replay = app.add_subcommand(
      "replay", "run any job again (completed ones too) as a new job; prints the new id");
  replay->fallthrough();
  // `--id` as well as the position: Reproq's `replay --id N` works unchanged (docs/migrating.md).
  replay->add_option("id,--id", replay_id, "job id")->required()->check(kJobId);

  DlqFlags df;
  auto* dlq = app.add_subcommand("dlq", "the dead letter queue");
  dlq->fallthrough();
  dlq->require_subcommand(1);
  auto dlq_filters = [&df](CLI::App* sc) {
    sc->fallthrough();
    sc->add_option("--kind", df.kind, "only this job kind");
    sc->add_option("--queue", df.queue, "only this queue");
    sc->add_option("--since", df.since, "dead-lettered at or after this time (ISO 8601)")
        ->check(kIsoTime);
    sc->add_option("--before", df.before, "dead-lettered before this time (ISO 8601)")
        ->check(kIsoTime);
    sc->add_option("--limit", df.limit, "at most this many (default 1000)")
        ->check(CLI::Range(1, 10000000));
  };
  auto* dlq_ls = dlq->add_subcommand("ls", "list dead letters");
  dlq_filters(dlq_ls);
  dlq_ls->add_flag("--json", df.json, "print a JSON array");
  auto* dlq_show = dlq->add_subcommand("show", "show one dead letter with every attempt's error");
  dlq_show->fallthrough();
  dlq_show->add_option("id", df.id, "job id")->required()->check(kJobId);
  dlq_show->add_flag("--json", df.json, "print JSON");
  auto* dlq_replay = dlq->add_subcommand("replay", "retry every matching dead letter");
  dlq_filters(dlq_replay);
  dlq_replay->add_flag("--all", df.all, "every kind");
  auto* dlq_purge = dlq->add_subcommand("purge", "delete matching dead letters");
  dlq_filters(dlq_purge);
  dlq_purge->add_flag("--all", df.all, "every dead letter");
  for (auto* sc : {dlq_ls, dlq_show, dlq_replay, dlq_purge}) {
    std::string name = sc->get_name();
    sc->callback([&df, name] { df.action = name; });
  }

  std::string queue_action, queue_name;
  auto* queue = app.add_subcommand("queue", "pause or resume a queue for every runner");
  queue->fallthrough();
  queue->require_subcommand(1);
  for (const char* a : {"pause", "resume"}) {
    auto* sc = queue->add_subcommand(a, std::string(a) + " a queue");
    sc->fallthrough();
    sc->add_option("queue", queue_name, "queue name")->required();
    sc->callback([&queue_action, a] { queue_action = a; });
  }
  queue->add_subcommand("ls", "list paused queues")->fallthrough()->callback([&queue_action] {
    queue_action = "ls";
  });

  LimitFlags lf;
  auto* limit = app.add_subcommand("limit", "rate limits enforced at claim time");
  limit->fallthrough();
  limit->require_subcommand(1);
  auto* limit_set = limit->add_subcommand("set", "set a token bucket");
  limit_set->fallthrough();
  limit_set
      ->add_option("--key", lf.key,
                   "queue:NAME, kind:NAME, a rate key (tenant:42) or a default for every "
                   "rate key with a prefix (tenant:*)")
      ->required();
  limit_set->add_option("--rate", lf.rate, "jobs per second")->required();
  limit_set->add_option("--burst", lf.burst, "bucket size (default: max(1, rate))");
  auto* limit_ls = limit->add_subcommand("ls", "list limits");
  limit_ls->fallthrough();
  limit_ls->add_flag("--json", lf.json, "print JSON");
  auto* limit_rm = limit->add_subcommand("rm", "remove a limit");
  limit_rm->fallthrough();
  limit_rm->add_option("--key", lf.key, "queue:NAME, kind:NAME, a rate key or a pattern")
      ->required();
  auto* limit_set_field = limit->add_subcommand(
      "set-field", "give jobs of a kind the rate key PREFIX:<value of a payload field>");
  limit_set_field->fallthrough();
  limit_set_field->add_option("--kind", lf.kind, "the job kind")->required();
  limit_set_field
      ->add_option("--field", lf.field,
                   "the payload field: a top-level name, or a path with dots (customer.id)")
      ->required();
  limit_set_field->add_option(
      "--prefix", lf.prefix,
      "the key's prefix, letters, digits, _ . - (default: the field's last name)");
  auto* limit_rm_field =
      limit->add_subcommand("rm-field", "stop deriving rate keys for a kind's jobs");
  limit_rm_field->fallthrough();
  limit_rm_field->add_option("--kind", lf.kind, "the job kind")->required();
  auto* limit_fields = limit->add_subcommand("fields", "list the kinds whose rate key is a field");
  limit_fields->fallthrough();
  limit_fields->add_flag("--json", lf.json, "print JSON");
  for (auto* sc : {limit_set, limit_ls, limit_rm, limit_set_field, limit_rm_field, limit_fields}) {
    std::string name = sc->get_name();
    sc->callback([&lf, name] { lf.action = name; });
  }

  bool cron_json = false;
  auto* cron = app.add_subcommand("cron", "periodic jobs");
  cron->fallthrough();
  cron->require_subcommand(1);
  auto* cron_ls = cron->add_subcommand("ls", "list periodic jobs with their next run times");
  cron_ls->fallthrough();
  cron_ls->add_flag("--json", cron_json, "print JSON");

  TortureFlags tf;
  auto* torture = app.add_subcommand(
      "torture", "stress test: random failures, timeouts and kills; verifies nothing is lost");
  torture->fallthrough();
  torture->add_option("--jobs", tf.jobs, "jobs to run (default 2000)")
      ->check(CLI::Range(1, 10000000));
  torture->add_option("--runners", tf.runners, "runner processes (default 3)")
      ->check(CLI::Range(1, 64));
  torture->add_option("--kill-every", tf.kill_every, "seconds between random kills (0: none)");
  torture
      ->add_option("--min-kills", tf.min_kills,
                   "kill -9s the run must see; more jobs are enqueued until then (default 4)")
      ->check(CLI::Range(0, 1000));
  torture->add_option("--time-limit", tf.time_limit, "give up after this many seconds");
  torture->add_option("--seed", tf.seed, "random seed (default: random)");

  int64_t status_id = 0;
  bool status_json = false;
  int64_t batch_id = 0;
  bool batch_json = false;
  auto* batch = app.add_subcommand("batch", "batches of jobs with callbacks");
  batch->fallthrough();
  batch->require_subcommand(1);
  auto* batch_status = batch->add_subcommand("status", "counts, state and callback of a batch");
  batch_status->fallthrough();
  batch_status->add_option("id", batch_id, "batch id")->required()->check(kJobId);
  batch_status->add_flag("--json", batch_json, "print JSON");
  int64_t workflow_id = 0;
  bool workflow_json = false;
  auto* workflow = app.add_subcommand("workflow", "workflows of named steps");
  workflow->fallthrough();
  workflow->require_subcommand(1);
  auto* workflow_status = workflow->add_subcommand("status", "state and steps of a workflow");
  workflow_status->fallthrough();
  workflow_status->add_option("id", workflow_id, "workflow id")->required()->check(kJobId);
  workflow_status->add_flag("--json", workflow_json, "print JSON");
  auto* status = app.add_subcommand("status", "show one job");
  status->fallthrough();
  status->add_option("id", status_id, "job id")->required()->check(kJobId);
  status->add_flag("--json", status_json, "print JSON");

  auto* jobs = app.add_subcommand("jobs", "list jobs");
  jobs->fallthrough();
  jobs->require_subcommand(1);
  auto* jobs_ls = jobs->add_subcommand("ls", "list jobs");
  jobs_ls->fallthrough();
  std::string ls_state, ls_kind, ls_queue;
  int ls_limit = 100;
  bool ls_json = false;
  jobs_ls
      ->add_option("--state", ls_state,
                   "waiting, scheduled, available, running, retryable, completed, "
                   "discarded or cancelled")
      ->check(CLI::IsMember({"waiting", "scheduled", "available", "running", "retryable",
                             "completed", "discarded", "cancelled"}));
  jobs_ls->add_option("--kind", ls_kind);
  jobs_ls->add_option("--queue", ls_queue);
  jobs_ls->add_option("--limit", ls_limit)->check(CLI::Range(1, 1000000));
  jobs_ls->add_flag("--json", ls_json, "print a JSON array");

  JobsCancelFlags jcf;
  auto* jobs_cancel = jobs->add_subcommand(
      "cancel", "cancel the jobs of a queue that are not running (all, or one kind or state)");
  jobs_cancel->fallthrough();
  jobs_cancel->add_option("--queue", jcf.queue, "the queue")->required();
  jobs_cancel->add_option("--kind", jcf.kind, "only jobs of this kind");
  jobs_cancel->add_option("--state", jcf.state,
                          "only jobs in this state: waiting, scheduled, available or retryable");
  jobs_cancel->add_flag("--yes", jcf.yes, "cancel without asking (else: a count, and exit 2)");

  bool info_json = false, info_watch = false;
  auto* info = app.add_subcommand("info", "queues, live runners and throughput of the last minute");
  info->fallthrough();
  info->add_flag("--json", info_json, "print JSON");
  info->add_flag("--watch", info_watch, "refresh every second until Ctrl-C");

  auto* ui = app.add_subcommand(
      "ui", "serve the web dashboard at /ui on --http [ADDR:]PORT, without running jobs");
  ui->fallthrough();

  auto* migrate = app.add_subcommand("migrate", "create or upgrade the schema");
  migrate->fallthrough();

  auto* plugins = app.add_subcommand("plugins", "inspect plugins");
  plugins->require_subcommand(1);
  auto* plugins_ls = plugins->add_subcommand(
      "ls", "describe every plugin in DIR inside the sandbox (no plugin code runs in the runner)");
  std::string plugins_dir;
  bool plugins_json = false;
  plugins_ls->add_option("dir", plugins_dir, "plugin directory")->required();
  plugins_ls->add_flag("--json", plugins_json, "print JSON");
  std::string check_file;
  auto* plugins_check = plugins->add_subcommand(
      "check",
      "describe a plugin inside the sandbox; print its sha256, what it requests, what is granted "
      "(and by whom) and the effective policy; exit 1 when it would be refused");
  plugins_check->fallthrough();
  plugins_check->add_option("file", check_file, "plugin .so")->required();
  plugins_check->add_flag("--json", plugins_json, "print JSON");
  // Trust model (issue 16): approvals bound to (name, SHA-256).
  bool approve_yes = false;
  auto* plugins_approve = plugins->add_subcommand(
      "approve",
      "describe a plugin in the sandbox, print what it requests, and approve exactly that for "
      "this file content (RUNNER_APPROVALS / approvals_file)");
  plugins_approve->fallthrough();
  plugins_approve->add_option("file", check_file, "plugin .so")->required();
  plugins_approve->add_flag("--yes", approve_yes, "do not ask for confirmation");
  plugins_approve->add_flag("--json", plugins_json, "print JSON");
  auto* plugins_approvals = plugins->add_subcommand("approvals", "list or remove approvals");
  plugins_approvals->fallthrough();
  plugins_approvals->require_subcommand(1);
  auto* approvals_ls = plugins_approvals->add_subcommand("ls", "list approvals");
  approvals_ls->fallthrough();
  approvals_ls->add_flag("--json", plugins_json, "print JSON");
  std::string approval_name, approval_sha;
  auto* approvals_rm = plugins_approvals->add_subcommand("rm", "remove a plugin's approvals");
  approvals_rm->fallthrough();
  approvals_rm->add_option("name", approval_name, "plugin name")->required();
  approvals_rm->add_option("sha256", approval_sha, "only the approval of this content");

  auto* config_cmd = app.add_subcommand("config", "the runner's settings");
  config_cmd->require_subcommand(1);
  auto* config_ref = config_cmd->add_subcommand(
      "reference",
      "print every setting as a commented TOML file: its default, variable, flag and meaning");

  auto* db = app.add_subcommand("db", "manage the local PostgreSQL");
  db->fallthrough();
  db->require_subcommand(1);
  std::string db_action;
  cli::DbUrlFlags db_url_flags;
  for (const char* a : {"start", "stop", "status", "url"}) {
    auto* sub = db->add_subcommand(a, std::string(a) + " the managed cluster")
                    ->fallthrough()
                    ->callback([&db_action, a] { db_action = a; });
    if (std::string(a) != "url") continue;
    sub->add_option("--plugin", db_url_flags.plugin,
                    "the URL of that plugin's own role (password included)");
    sub->add_flag("--superuser", db_url_flags.superuser,
                  "the managed cluster's superuser (for administration only)");
  }

  // ---- plugin SDK: `runner new-plugin NAME DIR` ----
  std::string new_plugin_name, new_plugin_dir;
  auto* new_plugin = app.add_subcommand(
      "new-plugin", "scaffold a plugin project (handler, manifest, CMake, test) in DIR");
  new_plugin->add_option("name", new_plugin_name, "plugin and job kind name ([a-z][a-z0-9_]*)")
      ->required();
  new_plugin->add_option("dir", new_plugin_dir, "a new or empty directory")->required();

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
    if (command != "worker") {
      auto allowed = worker_flags_of.find(command);
      for (const auto* opt : worker_flags) {
        if (opt->count() == 0) continue;
        std::string flag = opt->get_name();
        if (allowed != worker_flags_of.end() && allowed->second.count(flag)) continue;
        std::cerr << "runner " << command << ": " << flag
                  << " does not apply to this command (it is a flag of `runner worker`)\n"
                  << "Run with --help for more information.\n";
        return cli::kExitUsage;
      }
    }
  }

  try {
    if (*new_plugin) return cmd_new_plugin(new_plugin_name, new_plugin_dir);
    if (*config_ref) {
      std::cout << config_reference();
      return cli::kExitOk;
    }
    if (*enqueue && !ef.workflow.empty()) {
      // A workflow's steps carry their own kinds and options.
      for (const auto* opt : enqueue->get_options()) {
        if (opt->count() == 0 || opt->get_name() == "--workflow") continue;
        std::cerr << "runner enqueue: --workflow takes no " << opt->get_name()
                  << " (each step names its kind, payload and options in the document)\n";
        return cli::kExitUsage;
      }
    }
    if (*enqueue) return cmd_enqueue(g, ef);
    if (*status) return cmd_status(g, status_id, status_json);
    if (*batch_status) return cmd_batch_status(g, batch_id, batch_json);
    if (*workflow_status) return cmd_workflow_status(g, workflow_id, workflow_json);
    if (*cancel) return cmd_cancel(g, cancel_id);
    if (*retry) return cmd_retry(g, retry_id);
    if (*replay) return cmd_replay(g, replay_id);
    if (*dlq) return cmd_dlq(g, df);
    if (*queue) return cmd_queue(g, queue_action, queue_name);
    if (*limit) return cmd_limit(g, lf);
    if (*cron_ls) return cmd_cron_ls(g, cron_json);
    if (*info) return cmd_info(g, w, info_json, info_watch);
    if (*ui) return cmd_ui(g, w);
    if (*torture) {
      tf.plugins = w.of("worker.plugins");
      std::string c = w.of("worker.concurrency");  // in range: checked by CLI11
      tf.concurrency = c.empty() ? 50 : std::stoi(c);
      return cmd_torture(g, tf);
    }
    if (*jobs_cancel) return cmd_jobs_cancel(g, jcf);
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
    if (*plugins_check) {
      Config cfg = build_config(g);
      return sandbox::cmd_plugins_check(check_file, sandbox::trust_context(cfg, cfg.concurrency),
                                        plugins_json);
    }
    if (*plugins_approve || *plugins_approvals) {
      Config cfg = build_config(g);
      std::string file = sandbox::approvals_path(cfg.approvals_file, cfg.data_dir);
      if (*plugins_approve) {
        return sandbox::cmd_plugins_approve(check_file, file, approve_yes, plugins_json);
      }
      if (*approvals_ls) return sandbox::cmd_plugins_approvals_ls(file, plugins_json);
      return sandbox::cmd_plugins_approvals_rm(file, approval_name, approval_sha);
    }
    if (*db) return cmd_db(g, db_action, db_url_flags);
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
    return e.invalid_input() ? cli::kExitUsage : cli::kExitError;
  } catch (const std::exception& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return cli::kExitError;
  }
}
