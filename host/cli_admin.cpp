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
#include "util.hpp"

namespace jr::cli {

int cmd_plugins_ls(const std::string& dir, bool json) {
  auto plugins = load_plugin_dir(dir);
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& p : plugins) {
    nlohmann::json kinds = nlohmann::json::array();
    for (const auto& k : p.kinds) {
      kinds.push_back({{"kind", k.kind},
                       {"default_queue", k.default_queue},
                       {"timeout_ms", k.timeout_ms},
                       {"max_attempts", k.max_attempts},
                       {"retry_schedule", k.retry_schedule}});
    }
    arr.push_back({{"name", p.name},
                   {"version", p.version},
                   {"file", p.path},
                   {"abi", "1." + std::to_string(p.abi_minor)},
                   {"kinds", kinds},
                   {"idle_hook", p.has_idle},
                   {"manifest", p.manifest}});
  }
  if (json) {
    std::cout << arr.dump(2) << "\n";
  } else {
    for (const auto& p : arr) {
      std::cout << p["name"].get<std::string>() << " " << p["version"].get<std::string>()
                << " (ABI " << p["abi"].get<std::string>() << ") " << p["file"].get<std::string>()
                << "\n";
      for (const auto& k : p["kinds"]) {
        std::cout << "  kind " << k["kind"].get<std::string>();
        if (!k["default_queue"].get<std::string>().empty()) {
          std::cout << "  queue=" << k["default_queue"].get<std::string>();
        }
        if (k["timeout_ms"].get<int64_t>() > 0) std::cout << "  timeout_ms=" << k["timeout_ms"];
        std::cout << "\n";
      }
    }
  }
  return cli::kExitOk;
}

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
