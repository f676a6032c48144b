#include "plugin_loader.hpp"

#define BOOST_DLL_USE_STD_FS 1
#include <algorithm>
#include <boost/dll/shared_library.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>

#include "host_api.hpp"
#include "log.hpp"
#include "util.hpp"

namespace fs = std::filesystem;

namespace jr {
namespace {

std::mutex g_refused_mu;
std::vector<RefusedPlugin>& refused_list() {
  static auto* v = new std::vector<RefusedPlugin>();
  return *v;
}

// Keeps every loaded library alive for the life of the process.
std::vector<boost::dll::shared_library>& libraries() {
  static auto* libs = new std::vector<boost::dll::shared_library>();
  return *libs;
}

}  // namespace

bool valid_plugin_name(std::string_view s) {
  if (s.size() > 128 || s.find('\0') != std::string_view::npos) return false;
  return jobrunner::abi::valid_name(std::string(s).c_str());
}

LoadedPlugin load_plugin(const std::string& path) { return load_plugin(PinnedFile::pin(path)); }

LoadedPlugin load_plugin(std::shared_ptr<const PinnedFile> pin) {
  {
    // The dynamic loader knows a library by the name it was opened with ("/proc/self/fd/N"): if
    // the memfd were closed, a later pin reusing N would get the old library back. Whatever was
    // handed to dlopen stays open for the life of the process (plugins are never unloaded).
    static std::mutex mu;
    static auto* kept = new std::vector<std::shared_ptr<const PinnedFile>>();
    std::lock_guard<std::mutex> lock(mu);
    kept->push_back(pin);
  }
  LoadedPlugin p = load_plugin(pin->proc_path(), pin->path());
  p.sha256 = pin->sha256();
  p.pin = std::move(pin);
  return p;
}

bool declares_config_kinds(const nlohmann::json& manifest) {
  if (!manifest.is_object()) return false;
  auto it = manifest.find("config_kinds");
  return it != manifest.end() && it->is_boolean() && it->get<bool>();
}

void note_refused_plugin(RefusedPlugin r) {
  std::lock_guard<std::mutex> lock(g_refused_mu);
  refused_list().push_back(std::move(r));
}

std::vector<RefusedPlugin> refused_plugins() {
  std::lock_guard<std::mutex> lock(g_refused_mu);
  return refused_list();
}

void clear_refused_plugins() {
  std::lock_guard<std::mutex> lock(g_refused_mu);
  refused_list().clear();
}

LoadedPlugin load_plugin(const std::string& path, const std::string& shown_as) {
  auto fail = [&](const std::string& why) {
    return PluginError("plugin " + shown_as + ": " + why);
  };
  if (!fs::exists(path)) throw fail("file not found");
  boost::dll::shared_library lib;
  try {
    lib.load(fs::path(path), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    throw fail(std::string("cannot be loaded: ") + e.what());
  }
  if (!lib.has(JR_PLUGIN_ENTRY_SYMBOL)) {
    throw fail("missing entry symbol '" JR_PLUGIN_ENTRY_SYMBOL
               "' (not a jobrunner plugin, or built for another ABI major version)");
  }
  auto entry = lib.get<const jr_plugin_desc*(uint32_t)>(JR_PLUGIN_ENTRY_SYMBOL);
  const jr_plugin_desc* d = entry(JR_ABI_MINOR);
  // The descriptor's checks, shared with the SDK's test harness (jobrunner/abi_validate.h).
  if (std::string why = jobrunner::abi::check_descriptor(d); !why.empty()) throw fail(why);

  LoadedPlugin p;
  p.path = shown_as;
  p.name = d->name;
  p.version = d->version ? d->version : "";
  p.abi_minor = d->abi_minor;
  p.desc = d;
  // Fields beyond v1.0 are read only when the plugin's struct has them.
  p.has_idle = JR_HAS_FIELD(d, jr_plugin_desc, idle) && d->idle != nullptr;
  for (uint32_t i = 0; i < d->kind_count; ++i) {
    const jr_kind_desc* k = d->kinds[i];
    KindInfo ki;
    ki.kind = k->kind;
    if (k->default_queue != nullptr) ki.default_queue = k->default_queue;
    ki.timeout_ms = k->timeout_ms;
    ki.max_attempts = k->max_attempts;
    if (k->retry_schedule != nullptr) {
      try {
        ki.retry_schedule = parse_retry_schedule(k->retry_schedule);
        ki.retry_schedule_text = k->retry_schedule;
      } catch (const std::invalid_argument& e) {
        throw fail("kind '" + ki.kind + "': " + e.what());
      }
    }
    p.kinds.push_back(std::move(ki));
  }
  if (d->manifest_json != nullptr && *d->manifest_json) {
    p.manifest = nlohmann::json::parse(d->manifest_json, nullptr, false);
    if (p.manifest.is_discarded() || !p.manifest.is_object()) {
      throw fail("manifest_json is not a JSON object");
    }
  }
  // Kinds come from the descriptor, or (issue 22) from the operator's config for a plugin that
  // says so (`"config_kinds": true`, e.g. plugins/exec): the host adds them before serving.
  if (p.kinds.empty() && !declares_config_kinds(p.manifest)) throw fail("declares no job kinds");
  resolve_finalizers(p);
  if (d->abi_minor > JR_ABI_MINOR) {
    log::info(
        "plugin built for a newer ABI minor version; fields this host does not know are "
        "ignored",
        {{"plugin", p.name},
         {"file", shown_as},
         {"plugin_abi_minor", d->abi_minor},
         {"host_abi_minor", JR_ABI_MINOR}});
  }
  libraries().push_back(std::move(lib));
  return p;
}

std::vector<std::string> plugin_files(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw PluginError("plugin directory " + dir + " does not exist or is not a directory");
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".so" && e.is_regular_file()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::string> duplicate_claims(const std::vector<std::string>& files,
                                          const std::vector<const LoadedPlugin*>& plugins) {
  std::vector<std::string> reasons(files.size());
  std::map<std::string, std::vector<size_t>> by_name, by_kind;
  for (size_t i = 0; i < files.size() && i < plugins.size(); ++i) {
    if (!plugins[i]) continue;
    by_name[plugins[i]->name].push_back(i);
    for (const auto& k : plugins[i]->kinds) by_kind[k.kind].push_back(i);
  }
  auto others = [&](const std::vector<size_t>& claimants, size_t self) {
    std::string s;
    for (size_t j : claimants) {
      if (j != self) s += (s.empty() ? "" : ", ") + files[j];
    }
    return s;
  };
  for (const auto& [name, claimants] : by_name) {
    if (claimants.size() < 2) continue;
    for (size_t i : claimants) {
      reasons[i] = "plugin " + files[i] + ": plugin name '" + name + "' is also used by " +
                   others(claimants, i) + " (both refused)";
    }
  }
  for (const auto& [kind, claimants] : by_kind) {
    if (claimants.size() < 2) continue;
    for (size_t i : claimants) {
      if (!reasons[i].empty()) continue;
      reasons[i] = "plugin " + files[i] + ": job kind '" + kind + "' is also declared by " +
                   others(claimants, i) + " (two plugins cannot serve one kind; both refused)";
    }
  }
  return reasons;
}

std::vector<LoadedPlugin> load_plugin_dir(const std::string& dir) {
  std::vector<std::string> files = plugin_files(dir);
  std::vector<LoadedPlugin> out;
  out.reserve(files.size());
  for (const auto& f : files) out.push_back(load_plugin(f));
  std::vector<const LoadedPlugin*> ptrs;
  ptrs.reserve(out.size());
  for (const auto& p : out) ptrs.push_back(&p);
  for (const auto& reason : duplicate_claims(files, ptrs)) {
    if (!reason.empty()) throw PluginError(reason);
  }
  return out;
}

void resolve_finalizers(LoadedPlugin& p) {
  auto fail = [&](const std::string& why) {
    return PluginError("plugin " + p.path + ": manifest \"finalizers\": " + why);
  };
  auto it = p.manifest.find("finalizers");
  if (it == p.manifest.end()) return;
  if (!it->is_object()) throw fail("must be an object {\"kind\": \"finalizer kind\"}");
  auto find = [&](const std::string& kind) -> KindInfo* {
    for (auto& k : p.kinds) {
      if (k.kind == kind) return &k;
    }
    return nullptr;
  };
  for (const auto& [kind, fin] : it->items()) {
    KindInfo* k = find(kind);
    if (k == nullptr) throw fail("'" + kind + "' is not one of this plugin's kinds");
    if (!fin.is_string()) throw fail("the finalizer of '" + kind + "' must be a kind name");
    const std::string& name = fin.get_ref<const std::string&>();
    if (find(name) == nullptr) {
      throw fail("the finalizer of '" + kind + "', '" + name +
                 "', is not one of this plugin's kinds");
    }
    if (name == kind) throw fail("'" + kind + "' cannot be its own finalizer");
    if (it->contains(name)) {
      throw fail("the finalizer kind '" + name + "' has a finalizer of its own (no chains)");
    }
    k->finalizer = name;
  }
}

void init_plugin(LoadedPlugin& p, const nlohmann::json& config) {
  char err[1024] = {0};
  std::string cfg = config.dump();
  void* state = nullptr;
  int32_t rc = p.desc->init(host_api(), cfg.c_str(), &state, err, sizeof err);
  if (rc != 0) {
    err[sizeof err - 1] = '\0';
    throw PluginError("plugin " + p.path + ": init failed: " +
                      (err[0] ? std::string(err) : "code " + std::to_string(rc)));
  }
  p.state = state;
  p.initialised = true;
}

nlohmann::json plugin_config_for(const LoadedPlugin& p, const nlohmann::json& all_sections,
                                 const std::string& database_url) {
  nlohmann::json cfg = nlohmann::json::object();
  if (all_sections.is_object() && all_sections.contains(p.name) &&
      all_sections[p.name].is_object()) {
    cfg = all_sections[p.name];
  }
  if (!cfg.contains("database_url") && !database_url.empty()) cfg["database_url"] = database_url;
  // Environment passthrough: only what the operator granted (a manifest's "env" is a request).
  for (const auto& [var, key] : p.grants.env) {
    const char* v = std::getenv(var.c_str());
    if (v == nullptr || key.empty()) continue;
    std::string text(v);
    // Keep numbers and booleans typed so the plugin reads them as it reads the TOML values.
    nlohmann::json parsed = nlohmann::json::parse(text, nullptr, false);
    if (!parsed.is_discarded() && (parsed.is_number() || parsed.is_boolean())) {
      cfg[key] = parsed;
    } else {
      cfg[key] = text;
    }
  }
  return cfg;
}

nlohmann::json kinds_json(const LoadedPlugin& p) {
  nlohmann::json kinds = nlohmann::json::array();
  for (const auto& k : p.kinds) {
    kinds.push_back({{"kind", k.kind},
                     {"default_queue", k.default_queue},
                     {"timeout_ms", k.timeout_ms},
                     {"max_attempts", k.max_attempts},
                     {"retry_schedule", k.retry_schedule}});
  }
  return kinds;
}

}  // namespace jr
