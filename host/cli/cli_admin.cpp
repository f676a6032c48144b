// Plugin and database subcommands: plugins ls, db start|stop|status|url.
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "log.hpp"
#include "managed_db.hpp"
#include "plugin_db.hpp"
#include "plugin_loader.hpp"
#include "sandbox.hpp"
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

}  // namespace jr::cli
