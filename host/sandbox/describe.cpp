// Reading a plugin's descriptor inside the sandbox (pinned content, deadline, every field of the
// worker's answer validated and bounded), describing a directory in parallel, the trust decision
// wiring, and the small helpers shared by the host-side files (user resolution, scratch dirs,
// the Init frame).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "cgroup.hpp"
#include "exec_kinds.hpp"
#include "identity.hpp"
#include "internal.hpp"
#include "process.hpp"
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
  // Reentrant lookups (find_user): plugins are described from several threads at once.
  auto pw = find_user(name);
  if (!pw) throw SandboxError("sandbox user '" + name + "' does not exist");
  if (pw->uid == 0) throw SandboxError("sandbox user '" + name + "' is root");
  *uid = pw->uid;
  *gid = user.empty() ? find_group("nogroup").value_or(pw->gid) : pw->gid;
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

namespace {

// Every value the worker sends is untrusted: bounded in depth and size before it is copied,
// compared or dumped (those recurse).
bool json_bounded(const nlohmann::json& j, int max_depth, size_t max_nodes) {
  std::vector<std::pair<const nlohmann::json*, int>> stack{{&j, 0}};
  size_t nodes = 0;
  while (!stack.empty()) {
    auto [n, depth] = stack.back();
    stack.pop_back();
    if (++nodes > max_nodes || depth > max_depth) return false;
    if (n->is_structured()) {
      for (const auto& c : *n) stack.emplace_back(&c, depth + 1);
    }
  }
  return true;
}

const nlohmann::json& field(const nlohmann::json& obj, const char* key) {
  static const nlohmann::json null_value;
  if (!obj.is_object()) return null_value;
  auto it = obj.find(key);
  return it == obj.end() ? null_value : *it;
}

int64_t int_field(const nlohmann::json& obj, const char* key, int64_t min, int64_t max,
                  const std::function<PluginError(const std::string&)>& fail) {
  const auto& v = field(obj, key);
  if (v.is_null()) return 0;
  if (!v.is_number_integer() && !v.is_number_unsigned()) {
    throw fail(std::string("descriptor field '") + key + "' is not an integer");
  }
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max)) {
    throw fail(std::string("descriptor field '") + key + "' is out of range");
  }
  int64_t x = v.get<int64_t>();
  if (x < min || x > max) throw fail(std::string("descriptor field '") + key + "' is out of range");
  return x;
}

std::string str_field(const nlohmann::json& obj, const char* key, size_t max,
                      const std::function<PluginError(const std::string&)>& fail) {
  const auto& v = field(obj, key);
  if (v.is_null()) return "";
  if (!v.is_string()) throw fail(std::string("descriptor field '") + key + "' is not a string");
  if (v.get_ref<const std::string&>().size() > max) {
    throw fail(std::string("descriptor field '") + key + "' is longer than " + std::to_string(max) +
               " bytes");
  }
  return v.get<std::string>();
}

// A kind's retry schedule as the worker sends it (kinds_json): an array of at most 1,000
// whole seconds, each 0..2147483647; absent or null for none.
std::vector<int> schedule_field(const nlohmann::json& kind, const std::string& name,
                                const std::function<PluginError(const std::string&)>& fail) {
  const auto& v = field(kind, "retry_schedule");
  std::vector<int> out;
  if (v.is_null()) return out;
  if (!v.is_array() || v.size() > 1000) {
    throw fail("kind '" + name + "': retry_schedule is not an array of at most 1000 seconds");
  }
  for (const auto& s : v) {
    if (!s.is_number_unsigned() || s.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)) {
      throw fail("kind '" + name + "': retry_schedule holds " +
                 s.dump(-1, ' ', true).substr(0, 64) +
                 ", not a whole number of seconds between 0 and 2147483647");
    }
    out.push_back(static_cast<int>(s.get<uint64_t>()));
  }
  return out;
}

// plugins/exec (issue 22): for the shipped exec plugin (a manifest with "config_kinds" and a
// built-in approval), the programs of the kinds in its config section and of its sandbox.exec,
// with their interpreters; and, unless the config sets sandbox.workers, a pool of the kinds'
// `workers` summed.
void exec_trust_input(const LoadedPlugin& p, nlohmann::json& section, TrustInput& in) {
  if (!declares_config_kinds(p.manifest)) return;
  in.exec_plugin = in.builtin;
  try {
    auto kinds = parse_exec_kinds(section);
    in.exec_programs = exec_programs(kinds);
    int workers = 0;
    for (const auto& k : kinds) workers += k.workers;
    if (!section.contains("sandbox")) section["sandbox"] = nlohmann::json::object();
    auto& sb = section["sandbox"];
    if (sb.is_object() && workers > 0 && !sb.contains("workers")) sb["workers"] = workers;
    if (sb.is_object() && sb.contains("exec") && sb["exec"].is_array()) {
      for (const auto& x : sb["exec"]) {
        if (!x.is_string()) continue;  // decide_trust refuses the value with its reason
        for (auto& prog : program_closure(x.get<std::string>())) in.exec_extra.push_back(prog);
      }
    }
  } catch (const PolicyError& e) {
    in.exec_error = std::string("config [plugins.") + p.name + "]: " + e.what();
  }
}

// The trust decision of `p` under `ctx`: built-in approval by content, approval by (name, sha).
TrustDecision decide(const LoadedPlugin& p, nlohmann::json section,
                     const std::string& host_isolation, const Approvals* approvals,
                     int default_workers, const nlohmann::json& plugin_config) {
  TrustInput in;
  in.name = p.name;
  in.sha256 = p.sha256;
  in.file = p.path;
  for (const auto& k : p.kinds) in.own_kinds.push_back(k.kind);
  in.manifest = p.manifest;
  in.section = std::move(section);
  in.plugin_config = plugin_config;
  in.host_isolation = host_isolation;
  in.builtin = !p.sha256.empty() && builtin_approval(p.sha256) != nullptr;
  const Approval* a =
      approvals != nullptr && !p.sha256.empty() ? approvals->find(p.name, p.sha256) : nullptr;
  if (a != nullptr) in.approved = &a->request;
  in.default_workers = default_workers;
  exec_trust_input(p, in.section, in);  // issue 22: the exec plugin's programs and pool size
  return decide_trust(in);
}

nlohmann::json section_of(const nlohmann::json& sections, const std::string& name) {
  if (sections.is_object()) {
    auto it = sections.find(name);
    if (it != sections.end() && it->is_object()) return *it;
  }
  return nlohmann::json::object();
}

}  // namespace

TrustDecision decide_for(const LoadedPlugin& plugin, const TrustContext& ctx,
                         const nlohmann::json& plugin_config) {
  return decide(plugin, section_of(ctx.sections, plugin.name), ctx.host_isolation, &ctx.approvals,
                ctx.default_workers, plugin_config);
}

std::string isolation_of(const LoadedPlugin& plugin, const nlohmann::json& plugin_config) {
  if (plugin_config.is_object() && plugin_config.contains("isolation")) {
    const auto& x = plugin_config["isolation"];
    if (!x.is_string() || (x != "none" && x != "sandbox")) {
      throw SandboxError("plugin " + plugin.name +
                         ": config isolation must be \"sandbox\" or \"none\"");
    }
  }
  return decide(plugin, plugin_config, "sandbox", nullptr, 1, plugin_config).isolation;
}

Policy policy_for(const LoadedPlugin& plugin, const nlohmann::json& plugin_config) {
  TrustDecision d = decide(plugin, plugin_config, "sandbox", nullptr, 1 << 20, plugin_config);
  if (!d.accepted()) throw PolicyError("plugin " + plugin.name + " refused: " + d.refusal_text());
  return d.policy;
}

std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config,
                                               const SandboxOptions& opts) {
  return std::make_unique<SandboxExecutor>(plugin, plugin_config, policy_for(plugin, plugin_config),
                                           opts);
}

std::unique_ptr<SandboxExecutor> make_executor(const LoadedPlugin& plugin,
                                               const nlohmann::json& plugin_config, Policy policy,
                                               const SandboxOptions& opts) {
  return std::make_unique<SandboxExecutor>(plugin, plugin_config, std::move(policy), opts);
}

LoadedPlugin describe_pinned(const std::shared_ptr<const PinnedFile>& pin, const Policy& policy,
                             const SandboxOptions& opts, nlohmann::json* hello_out) {
  const std::string& path = pin->path();
  std::function<PluginError(const std::string&)> fail = [&](const std::string& why) {
    return PluginError("plugin " + path + ": " + why);
  };
  std::string abs = fs::absolute(path).string();
  // Its own uid and cgroup: the describe uid, or the plugin's once its name is known.
  const std::string& user = policy.user.empty() ? opts.user : policy.user;
  WorkerIdentity id =
      opts.describe_as.empty() ? describe_identity(user) : plugin_identity(opts.describe_as, user);
  bool no_cgroup = std::count(opts.simulate_missing.begin(), opts.simulate_missing.end(),
                              std::string("cgroup")) > 0;
  std::string label = opts.describe_as.empty() ? "describe" : opts.describe_as;
  auto cg = PluginCgroup::create(label, {policy.memory_mb, policy.max_threads}, no_cgroup);
  std::string err;
  ErrorKind kind = ErrorKind::crash;
  std::string worker = opts.worker_path.empty() ? default_worker_path() : opts.worker_path;
  // The worker opens the sealed in-memory copy, never the path: what is described is what runs.
  auto w = WorkerProcess::spawn(worker, pin->proc_path(), opts.describe_max_frame, &err);
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
  nlohmann::json hello = w->handshake(init, opts.describe_timeout_ms, &kind, &err);
  if (hello.is_null()) {
    if (kind == ErrorKind::timeout) {
      throw fail("describing it took longer than " + std::to_string(opts.describe_timeout_ms) +
                 " ms (its constructors or descriptor never returned); the worker was killed");
    }
    throw fail("sandbox worker died while loading it (" + std::string(to_string(kind)) +
               "): " + err);
  }
  if (!json_bounded(hello, 64, 200000)) throw fail("its descriptor is nested too deeply");
  if (!field(hello, "ok").is_boolean() || !hello["ok"].get<bool>()) {
    std::string e = str_field(hello, "error", 4096, fail);
    std::string stage = str_field(hello, "stage", 64, fail);
    if (stage == "load") throw PluginError(e.empty() ? "plugin " + path + ": refused" : e);
    throw fail("sandbox setup failed (" + stage + "): " + (e.empty() ? "unknown error" : e));
  }
  const nlohmann::json& d = field(hello, "plugin");
  if (!d.is_object()) throw fail("the worker sent no descriptor");
  LoadedPlugin p;
  p.path = path;
  p.sha256 = pin->sha256();
  p.pin = pin;
  p.name = str_field(d, "name", 128, fail);
  if (!valid_plugin_name(p.name)) throw fail("missing or invalid plugin name");
  p.version = str_field(d, "version", 256, fail);
  p.abi_minor = static_cast<uint16_t>(int_field(d, "abi_minor", 0, 65535, fail));
  const auto& manifest = field(d, "manifest");
  if (!manifest.is_null()) {
    if (!manifest.is_object()) throw fail("manifest_json is not a JSON object");
    if (!json_bounded(manifest, 32, 20000) || manifest.dump().size() > kMaxManifestBytes) {
      throw fail("manifest_json is larger than " + std::to_string(kMaxManifestBytes) +
                 " bytes or nested deeper than 32");
    }
    p.manifest = manifest;
  }
  const auto& idle = field(d, "has_idle");
  p.has_idle = idle.is_boolean() && idle.get<bool>();
  const auto& kinds = field(d, "kinds");
  if (!kinds.is_array() || (kinds.empty() && !declares_config_kinds(p.manifest))) {
    throw fail("declares no job kinds");  // unless the operator declares them (issue 22)
  }
  if (kinds.size() > 1024) throw fail("declares too many job kinds");
  for (const auto& k : kinds) {
    KindInfo ki;
    ki.kind = str_field(k, "kind", 128, fail);
    if (!valid_plugin_name(ki.kind)) throw fail("a kind has a missing or invalid name");
    for (const auto& existing : p.kinds) {
      if (existing.kind == ki.kind) throw fail("declares kind '" + ki.kind + "' twice");
    }
    ki.default_queue = str_field(k, "default_queue", 128, fail);
    if (!ki.default_queue.empty() && !valid_plugin_name(ki.default_queue)) {
      throw fail("kind '" + ki.kind + "' has an invalid default queue");
    }
    ki.timeout_ms = int_field(k, "timeout_ms", 0, INT64_MAX / 2, fail);
    ki.max_attempts = static_cast<int>(int_field(k, "max_attempts", 0, 1000000000, fail));
    ki.retry_schedule = schedule_field(k, ki.kind, fail);
    for (int s : ki.retry_schedule) {
      if (!ki.retry_schedule_text.empty()) ki.retry_schedule_text += ',';
      ki.retry_schedule_text += std::to_string(s);
    }
    p.kinds.push_back(std::move(ki));
  }
  resolve_finalizers(p);
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
  if (!fs::exists(path)) throw PluginError("plugin " + path + ": file not found");
  return describe_pinned(PinnedFile::pin(path), Policy{}, opts, nullptr);
}

DescribedDir describe_dir(const std::string& dir, const SandboxOptions& opts) {
  std::vector<std::string> files = plugin_files(dir);
  struct Result {
    std::optional<LoadedPlugin> plugin;
    std::string error;
  };
  std::vector<Result> results(files.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < files.size();) {
      try {
        results[i].plugin = describe_pinned(PinnedFile::pin(files[i]), Policy{}, opts, nullptr);
      } catch (const std::exception& e) {
        results[i].error = e.what();
      }
    }
  };
  size_t n =
      std::min<size_t>(files.size(), static_cast<size_t>(std::max(1, opts.describe_parallel)));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < n; ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();

  // A name or kind claimed by two files: none of the claimants can be trusted to own it.
  std::vector<const LoadedPlugin*> described;
  described.reserve(results.size());
  for (const auto& r : results) described.push_back(r.plugin ? &*r.plugin : nullptr);
  std::vector<std::string> dup = duplicate_claims(files, described);
  for (size_t i = 0; i < files.size(); ++i) {
    if (results[i].error.empty() && !dup[i].empty()) results[i].error = dup[i];
  }
  DescribedDir out;
  for (size_t i = 0; i < files.size(); ++i) {
    if (results[i].error.empty()) {
      out.plugins.push_back(std::move(*results[i].plugin));
    } else {
      RefusedPlugin r;
      r.name = results[i].plugin ? results[i].plugin->name : "";
      r.file = files[i];
      r.reason = results[i].error;
      out.refused.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace jr::sandbox
