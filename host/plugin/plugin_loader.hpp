// Loading handler plugins (Boost.DLL, RTLD_NOW | RTLD_LOCAL) and validating their descriptors
// before any plugin function runs. A bad plugin is refused with a PluginError that names the
// file and the reason. Plugins are never unloaded. Files are pinned by content first
// (plugin_pin.hpp): loads read the sealed in-memory copy, never the path.
//
// Not thread-safe: load at start-up, from one thread (the refused-plugin list is thread-safe).
#pragma once

#include <jobrunner/abi.h>
#include <jobrunner/abi_validate.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "plugin_pin.hpp"

namespace jr {

// Largest manifest_json a plugin may declare (bytes); a longer one refuses the plugin.
constexpr size_t kMaxManifestBytes = jobrunner::abi::kMaxManifestBytes;

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
  // Kind enqueued when a job of this kind ends discarded or cancelled ("" = none); from the
  // manifest's "finalizers" map (resolve_finalizers). See docs/writing-a-plugin.md.
  std::string finalizer;
};

// What the operator granted a plugin beyond its sandbox limits, decided by the trust model
// (host/sandbox/policy.hpp: decide_trust; docs/sandbox.md "Grants and approvals"). Default:
// nothing. Read-only once the runner serves jobs.
struct PluginGrants {
  // It gets a database (its own role and a `database_url` for it). false: no URL at all.
  bool database = false;
  // Kinds it may enqueue besides its own.
  std::vector<std::string> enqueue_kinds;
  // Host environment variable -> config key copied into its config (configuration-only).
  std::map<std::string, std::string> env;
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
  std::string sha256;                     // of the pinned content ("" when not pinned)
  std::shared_ptr<const PinnedFile> pin;  // the content every load and worker uses
  PluginGrants grants;                    // set by the trust decision before init
};

// A plugin (or one kind of it) the runner refused at start-up, with the reason. The runner keeps
// the list for /readyz and `runner info`.
struct RefusedPlugin {
  std::string name;  // "" when the file could not even be described
  std::string file;
  std::string kind;  // "" = the whole plugin; else only this kind was refused
  std::string reason;
};
void note_refused_plugin(RefusedPlugin r);     // thread-safe
std::vector<RefusedPlugin> refused_plugins();  // thread-safe snapshot
void clear_refused_plugins();                  // tests

// True when a manifest says `"config_kinds": true`: the plugin declares no kinds of its own and
// serves the kinds the operator declares in [[plugins.<name>.kinds]] (issue 22, plugins/exec;
// host/sandbox/exec_kinds.hpp).
bool declares_config_kinds(const nlohmann::json& manifest);

// [A-Za-z0-9_.:-]{1,128}: what plugin, kind and queue names may be (checked in linear time).
bool valid_plugin_name(std::string_view s);

// The kinds of a plugin as JSON, one form for every place that shows or sends them (`plugins
// ls --json`, `plugins check --json`, the worker's hello): [{"kind", "default_queue",
// "timeout_ms", "max_attempts", "retry_schedule"}], the schedule as an array of seconds
// ([60, 300, 900], [] for none), the form `plugins ls --json` has always printed.
nlohmann::json kinds_json(const LoadedPlugin& p);

// Loads one plugin file and validates its descriptor. Does not call init. Pins the file first
// (the returned plugin carries `pin` and `sha256`).
LoadedPlugin load_plugin(const std::string& path);
// Loads the pinned content (through /proc/self/fd/N), named pin->path() in errors.
LoadedPlugin load_plugin(std::shared_ptr<const PinnedFile> pin);
// Same, loading `path` (e.g. /proc/self/fd/N) but naming the plugin `shown_as` in errors and in
// LoadedPlugin::path.
LoadedPlugin load_plugin(const std::string& path, const std::string& shown_as);

// The plugin files of `dir`: every regular *.so in it, sorted by name. Throws PluginError when
// `dir` is not a directory. The one directory scan: load_plugin_dir and the sandbox's
// describe_dir both use it.
std::vector<std::string> plugin_files(const std::string& dir);

// A plugin name or job kind claimed by two files of one directory: none of the claimants can be
// trusted to own it, so every claimant is refused. `plugins[i]` is the plugin of `files[i]`, or
// null for a file already refused. Returns one reason per file ("" = not refused here).
std::vector<std::string> duplicate_claims(const std::vector<std::string>& files,
                                          const std::vector<const LoadedPlugin*>& plugins);

// Loads every plugin of `dir` (plugin_files). Refuses duplicate plugin names and two plugins
// claiming one kind (duplicate_claims): throws the first refusal.
std::vector<LoadedPlugin> load_plugin_dir(const std::string& dir);

// Reads the manifest's "finalizers" object ({"kind": "finalizer_kind", ...}) into
// KindInfo::finalizer. Both must be kinds of this plugin, a kind cannot finalize itself, and a
// finalizer kind cannot have a finalizer of its own (no chains, no loops). Throws PluginError
// naming the problem. load_plugin and the sandbox's describe call it.
void resolve_finalizers(LoadedPlugin& p);

// Calls the plugin's init with its config section; throws PluginError on failure.
void init_plugin(LoadedPlugin& p, const nlohmann::json& config);

// The plugin's config section from the host config (plugin_config[name]) plus the host-provided
// keys and the host environment variables the operator granted it (p.grants.env: VAR -> key; a
// manifest's "env" alone copies nothing). `database_url` is the plugin's own database
// (PluginDatabases::url_for in plugin_db.hpp); "" adds no key at all.
nlohmann::json plugin_config_for(const LoadedPlugin& p, const nlohmann::json& all_sections,
                                 const std::string& database_url);

}  // namespace jr
