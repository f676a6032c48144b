// Administration subcommands: migrate, plugins ls|check|approve|approvals, config reference, db
// start|stop|status|url.
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"
#include "log.hpp"
#include "managed_db.hpp"
#include "plugin_db.hpp"
#include "plugin_loader.hpp"
#include "sandbox.hpp"
#include "settings_table.hpp"
#include "util.hpp"

namespace jr::cli {

// Described in the sandbox from the pinned content (host/sandbox/check.cpp): listing plugins
// never runs their code in this process.
int cmd_plugins_ls(const std::string& dir, bool json) { return sandbox::cmd_plugins_ls(dir, json); }

int cmd_db(const GlobalFlags& g, const std::string& action, const DbUrlFlags& url_flags) {
  Config cfg = build_config(g);
  if (action == "url" && !url_flags.plugin.empty()) {
    std::cout << stored_plugin_database_url(resolve_database(cfg), url_flags.plugin) << "\n";
    return cli::kExitOk;
  }
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
    std::cout << (url_flags.superuser ? db.superuser_url_for(db.database()) : db.url()) << "\n";
  }
  return cli::kExitOk;
}

void register_admin(CLI::App& app, Context& ctx) {
  auto* migrate = app.add_subcommand("migrate", "create or upgrade the schema");
  migrate->fallthrough();
  on_parsed(migrate, ctx, [&ctx] {
    Config cfg = build_config(ctx.g);
    auto store = Store::open(resolve_database(cfg));
    int n = store->SchemaMigrate();
    std::cout << "schema at version " << store->SchemaVersion() << " (" << n
              << " migration(s) applied)\n";
    return kExitOk;
  });

  struct PluginsFlags {
    std::string dir, file;
    bool json = false;
    bool yes = false;                // approve --yes
    std::string approval_name, sha;  // approvals rm
  };
  auto pf = std::make_shared<PluginsFlags>();
  auto* plugins = app.add_subcommand("plugins", "inspect plugins");
  plugins->require_subcommand(1);
  auto* plugins_ls = plugins->add_subcommand(
      "ls", "describe every plugin in DIR inside the sandbox (no plugin code runs in the runner)");
  plugins_ls->add_option("dir", pf->dir, "plugin directory")->required();
  plugins_ls->add_flag("--json", pf->json, "print JSON");
  on_parsed(plugins_ls, ctx, [pf] { return cmd_plugins_ls(pf->dir, pf->json); });
  auto* plugins_check = plugins->add_subcommand(
      "check",
      "describe a plugin inside the sandbox; print its sha256, what it requests, what is granted "
      "(and by whom) and the effective policy; exit 1 when it would be refused");
  plugins_check->fallthrough();
  plugins_check->add_option("file", pf->file, "plugin .so")->required();
  plugins_check->add_flag("--json", pf->json, "print JSON");
  on_parsed(plugins_check, ctx, [&ctx, pf] {
    Config cfg = build_config(ctx.g);
    return sandbox::cmd_plugins_check(pf->file, sandbox::trust_context(cfg, cfg.concurrency),
                                      pf->json);
  });
  // Trust model (issue 16): approvals bound to (name, SHA-256), in RUNNER_APPROVALS /
  // approvals_file.
  auto approvals_file = [&ctx] {
    Config cfg = build_config(ctx.g);
    return sandbox::approvals_path(cfg.approvals_file, cfg.data_dir);
  };
  auto* plugins_approve = plugins->add_subcommand(
      "approve",
      "describe a plugin in the sandbox, print what it requests, and approve exactly that for "
      "this file content (RUNNER_APPROVALS / approvals_file)");
  plugins_approve->fallthrough();
  plugins_approve->add_option("file", pf->file, "plugin .so")->required();
  plugins_approve->add_flag("--yes", pf->yes, "do not ask for confirmation");
  plugins_approve->add_flag("--json", pf->json, "print JSON");
  on_parsed(plugins_approve, ctx, [pf, approvals_file] {
    return sandbox::cmd_plugins_approve(pf->file, approvals_file(), pf->yes, pf->json);
  });
  auto* plugins_approvals = plugins->add_subcommand("approvals", "list or remove approvals");
  plugins_approvals->fallthrough();
  plugins_approvals->require_subcommand(1);
  auto* approvals_ls = plugins_approvals->add_subcommand("ls", "list approvals");
  approvals_ls->fallthrough();
  approvals_ls->add_flag("--json", pf->json, "print JSON");
  on_parsed(approvals_ls, ctx, [pf, approvals_file] {
    return sandbox::cmd_plugins_approvals_ls(approvals_file(), pf->json);
  });
  auto* approvals_rm = plugins_approvals->add_subcommand("rm", "remove a plugin's approvals");
  approvals_rm->fallthrough();
  approvals_rm->add_option("name", pf->approval_name, "plugin name")->required();
  approvals_rm->add_option("sha256", pf->sha, "only the approval of this content");
  on_parsed(approvals_rm, ctx, [pf, approvals_file] {
    return sandbox::cmd_plugins_approvals_rm(approvals_file(), pf->approval_name, pf->sha);
  });

  auto* config_cmd = app.add_subcommand("config", "the runner's settings");
  config_cmd->require_subcommand(1);
  auto* config_ref = config_cmd->add_subcommand(
      "reference",
      "print every setting as a commented TOML file: its default, variable, flag and meaning");
  on_parsed(config_ref, ctx, [] {
    std::cout << config_reference();
    return kExitOk;
  });

  struct DbFlags {
    std::string action;
    DbUrlFlags url;
  };
  auto dbf = std::make_shared<DbFlags>();
  auto* db = app.add_subcommand("db", "manage the local PostgreSQL");
  db->fallthrough();
  db->require_subcommand(1);
  for (const char* a : {"start", "stop", "status", "url"}) {
    auto* sub = db->add_subcommand(a, std::string(a) + " the managed cluster")
                    ->fallthrough()
                    ->callback([dbf, a] { dbf->action = a; });
    if (std::string(a) != "url") continue;
    sub->add_option("--plugin", dbf->url.plugin,
                    "the URL of that plugin's own role (password included)");
    sub->add_flag("--superuser", dbf->url.superuser,
                  "the managed cluster's superuser (for administration only)");
  }
  on_parsed(db, ctx, [&ctx, dbf] { return cmd_db(ctx.g, dbf->action, dbf->url); });
}

}  // namespace jr::cli
