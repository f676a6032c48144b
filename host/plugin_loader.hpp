// Loading handler plugins (Boost.DLL, RTLD_NOW | RTLD_LOCAL) and validating their descriptors
// before any plugin function runs. A bad plugin is refused with a PluginError that names the
// file and the reason. Plugins are never unloaded.
//
// Not thread-safe: load at start-up, from one thread.
#pragma once

#include <jobrunner/abi.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace jr {

class PluginError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct KindInfo {
  std::string kind;
  std::string default_queue;  // "" = none
  int64_t timeout_ms = 0;     // 0 = none
  int max_attempts = 0;       // 0 = host default
  std::vector<int> retry_schedule;
  std::string retry_schedule_text;
};

struct LoadedPlugin {
  std::string path;
  std::string name;
  std::string version;
  uint16_t abi_minor = 0;
  std::vector<KindInfo> kinds;
  nlohmann::json manifest = nlohmann::json::object();
  const jr_plugin_desc* desc = nullptr;
  bool has_idle = false;
  void* state = nullptr;  // set by init()
  bool initialised = false;
};

// Loads one plugin file and validates its descriptor. Does not call init.
LoadedPlugin load_plugin(const std::string& path);
// Same, loading `path` (e.g. /proc/self/fd/N) but naming the plugin `shown_as` in errors and in
// LoadedPlugin::path.
LoadedPlugin load_plugin(const std::string& path, const std::string& shown_as);

// Loads every *.so in `dir` (sorted by name). Refuses duplicate plugin names and two plugins
// claiming one kind.
std::vector<LoadedPlugin> load_plugin_dir(const std::string& dir);

// Calls the plugin's init with its config section; throws PluginError on failure.
void init_plugin(LoadedPlugin& p, const nlohmann::json& config);

// The plugin's config section from the host config (plugin_config[name]) plus the host-provided
// keys and any environment overrides the manifest declares under "env". `database_url` is the
// plugin's own database (PluginDatabases::url_for in plugin_db.hpp); "" adds no key at all.
nlohmann::json plugin_config_for(const LoadedPlugin& p, const nlohmann::json& all_sections,
                                 const std::string& database_url);

}  // namespace jr
