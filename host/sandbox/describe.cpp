// Reading a plugin's descriptor inside the sandbox, `runner plugins check`, and the small
// helpers shared by the host-side files (user resolution, scratch dirs, the Init frame).
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

#include "cgroup.hpp"
#include "identity.hpp"
#include "internal.hpp"
#include "sandbox.hpp"
#include "util.hpp"
#include "worker_process.hpp"

#ifndef JR_WORKER_BUILD_PATH
#define JR_WORKER_BUILD_PATH ""
#endif

namespace fs = std::filesystem;

namespace jr::sandbox {

namespace detail {

void resolve_user(const std::string& user, int64_t* uid, int64_t* gid) {
  *uid = *gid = -1;
  if (geteuid() != 0) return;
  std::string name = user.empty() ? "nobody" : user;
  struct passwd* pw = getpwnam(name.c_str());
  if (pw == nullptr) throw SandboxError("sandbox user '" + name + "' does not exist");
  if (pw->pw_uid == 0) throw SandboxError("sandbox user '" + name + "' is root");
  *uid = pw->pw_uid;
  *gid = pw->pw_gid;
  if (user.empty()) {
    if (struct group* g = getgrnam("nogroup")) *gid = g->gr_gid;
  }
}

std::string make_scratch_dir(const std::string& root_in, const std::string& plugin, int64_t uid,
                             int64_t gid) {
  static std::atomic<uint64_t> counter{0};
  std::string root = root_in;
  if (root.empty()) {
    const char* t = std::getenv("TMPDIR");
    root = t != nullptr && *t ? t : "/tmp";
  }
  remove_stale_scratch_dirs(root);  // of runners that are gone (once per process)
  std::string dir = root + "/jr-sandbox-" + plugin + "-" + std::to_string(getpid()) + "-" +
                    std::to_string(counter.fetch_add(1));
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (mkdir(dir.c_str(), 0700) != 0) {
    throw SandboxError("cannot create scratch dir " + dir + ": " + std::strerror(errno));
  }
  if (uid >= 0 && chown(dir.c_str(), static_cast<uid_t>(uid), static_cast<gid_t>(gid)) != 0) {
    throw SandboxError("cannot chown scratch dir " + dir + ": " + std::strerror(errno));
  }
  return dir;
}

nlohmann::json init_json(const std::string& mode, const std::string& plugin_path,
                         const Policy& policy, const nlohmann::json& config,
                         const std::string& scratch, int64_t uid, int64_t gid,
                         const SandboxOptions& opts) {
  return {{"mode", mode},
          {"plugin", plugin_path},
          {"policy", policy.to_json()},
          {"config", config.is_object() ? config : nlohmann::json::object()},
          {"scratch", scratch},
          {"uid", uid},
          {"gid", gid},
          {"simulate_missing", opts.simulate_missing},
          {"max_frame", opts.max_frame}};
}

}  // namespace detail

std::string default_worker_path() {
  if (const char* env = std::getenv("JR_WORKER"); env != nullptr && *env) return env;
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path next = self.parent_path() / "jr-worker";
    if (access(next.c_str(), X_OK) == 0) return next.string();
  }
  return JR_WORKER_BUILD_PATH;
}

std::string isolation_of(const LoadedPlugin& plugin, const nlohmann::json& plugin_config) {
  std::string v = "sandbox";
  auto pick = [&](const nlohmann::json& obj, const char* where) {
    if (!obj.is_object() || !obj.contains("isolation")) return;
    const auto& x = obj["isolation"];
    if (!x.is_string() || (x != "none" && x != "sandbox")) {
      throw SandboxError("plugin " + plugin.name + ": " + where +
                         " isolation must be \"sandbox\" or \"none\"");
    }
    v = x.get<std::string>();
  };
  pick(plugin.manifest, "manifest");
  pick(plugin_config, "config");
  return v;
}

Policy policy_for(const LoadedPlugin& plugin, const nlohmann::json& plugin_config) {
  nlohmann::json over = plugin_config.is_object() && plugin_config.contains("sandbox")
                            ? plugin_config["sandbox"]
                            : nlohmann::json();
  try {
    return make_policy(plugin.manifest, over, plugin_config);
  } catch (const PolicyError& e) {
    throw PolicyError("plugin " + plugin.name + ": " + e.what());
  }
}

std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config,
                                               const SandboxOptions& opts) {
  return std::make_unique<SandboxExecutor>(plugin, plugin_config, policy_for(plugin, plugin_config),
                                           opts);
}

LoadedPlugin describe_with_report(const std::string& path, const Policy& policy,
                                  const SandboxOptions& opts, nlohmann::json* hello_out) {
  auto fail = [&](const std::string& why) { return PluginError("plugin " + path + ": " + why); };
  if (!fs::exists(path)) throw fail("file not found");
  std::string abs = fs::absolute(path).string();
  // Its own uid and cgroup: the describe uid, or the plugin's once its name is known.
  const std::string& user = policy.user.empty() ? opts.user : policy.user;
  WorkerIdentity id =
      opts.describe_as.empty() ? describe_identity(user) : plugin_identity(opts.describe_as, user);
  bool no_cgroup = std::count(opts.simulate_missing.begin(), opts.simulate_missing.end(),
                              std::string("cgroup")) > 0;
  std::string label = opts.describe_as.empty() ? "describe" : opts.describe_as;
  auto cg = PluginCgroup::create(label, {policy.memory_mb, policy.max_threads}, no_cgroup);
  std::string err, kind;
  std::string worker = opts.worker_path.empty() ? default_worker_path() : opts.worker_path;
  auto w = WorkerProcess::spawn(worker, abs, opts.max_frame, &err);
  if (!w) throw fail("cannot start the sandbox worker: " + err);
  w->output->configure(opts.describe_as.empty() ? fs::path(path).filename().string() : label,
                       opts.output, opts.log_observer);
  if (!w->join_cgroup(*cg, &err)) throw fail("cannot put the sandbox worker in its cgroup: " + err);
  // `plugins check`: a scratch area too, so the report shows the one its workers get.
  struct Scratch {
    std::string dir;
    ~Scratch() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } scratch;
  if (!opts.describe_as.empty()) {
    scratch.dir = detail::make_scratch_dir(opts.scratch_root, label, id.uid, id.gid);
  }
  nlohmann::json init = detail::init_json("describe", abs, policy, nlohmann::json::object(),
                                          scratch.dir, id.uid, id.gid, opts);
  init["uid_source"] = id.source;
  init["user_name"] = id.name;
  nlohmann::json hello = w->handshake(init, opts.start_timeout_ms, &kind, &err);
  if (hello.is_null()) throw fail("sandbox worker died while loading it (" + kind + "): " + err);
  if (!hello.value("ok", false)) {
    std::string e = hello.value("error", "unknown error");
    if (hello.value("stage", "") == "load") throw PluginError(e);  // load_plugin's own text
    throw fail("sandbox setup failed (" + hello.value("stage", "") + "): " + e);
  }
  const nlohmann::json& d = hello["plugin"];
  LoadedPlugin p;
  p.path = path;
  p.name = d.value("name", "");
  p.version = d.value("version", "");
  p.abi_minor = d.value("abi_minor", uint16_t{0});
  p.manifest = d.value("manifest", nlohmann::json::object());
  p.has_idle = d.value("has_idle", false);
  for (const auto& k : d.value("kinds", nlohmann::json::array())) {
    KindInfo ki;
    ki.kind = k.value("kind", "");
    ki.default_queue = k.value("default_queue", "");
    ki.timeout_ms = k.value("timeout_ms", int64_t{0});
    ki.max_attempts = k.value("max_attempts", 0);
    ki.retry_schedule_text = k.value("retry_schedule", "");
    if (!ki.retry_schedule_text.empty()) {
      try {
        ki.retry_schedule = parse_retry_schedule(ki.retry_schedule_text);
      } catch (const std::invalid_argument& e) {
        throw fail(std::string("kind '") + ki.kind + "': " + e.what());
      }
    }
    p.kinds.push_back(std::move(ki));
  }
  if (hello_out != nullptr) {
    *hello_out = hello;
    (*hello_out)["layers"]["cgroup"] = cg->report();
    for (const std::string& wmsg : {id.warning, cg->warning()}) {
      if (!wmsg.empty()) (*hello_out)["warnings"].push_back(wmsg);
    }
  }
  return p;
}

LoadedPlugin describe_in_sandbox(const std::string& path, const SandboxOptions& opts) {
  return describe_with_report(path, Policy{}, opts, nullptr);
}

std::vector<LoadedPlugin> describe_dir_in_sandbox(const std::string& dir,
                                                  const SandboxOptions& opts) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw PluginError("plugin directory " + dir + " does not exist or is not a directory");
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".so" && e.is_regular_file()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  std::vector<LoadedPlugin> out;
  std::map<std::string, std::string> kind_owner, name_owner;
  for (const auto& f : files) {
    LoadedPlugin p = describe_in_sandbox(f, opts);
    if (auto it = name_owner.find(p.name); it != name_owner.end()) {
      throw PluginError("plugin " + f + ": plugin name '" + p.name + "' is already used by " +
                        it->second);
    }
    name_owner[p.name] = f;
    for (const auto& k : p.kinds) {
      if (auto it = kind_owner.find(k.kind); it != kind_owner.end()) {
        throw PluginError("plugin " + f + ": job kind '" + k.kind + "' is already handled by " +
                          it->second + " (two plugins cannot serve one kind)");
      }
      kind_owner[k.kind] = f;
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace jr::sandbox
