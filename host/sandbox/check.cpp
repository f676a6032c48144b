// The `runner plugins` commands: check (descriptor, sha256, requested / granted / effective
// policy, uid, layers), ls (every plugin of a directory, described in the sandbox), approve and
// approvals ls|rm. Everything about a plugin is read inside the sandbox from its pinned content:
// no plugin code runs in this process.
#include <pwd.h>
#include <unistd.h>

#include <ctime>
#include <iostream>

#include "config.hpp"
#include "exec_kinds.hpp"
#include "internal.hpp"
#include "net_guard.hpp"
#include "sandbox.hpp"

namespace jr::sandbox {
namespace {

std::string layer_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("status")) {
    std::string s = v["status"].is_string() ? v["status"].get<std::string>() : v["status"].dump();
    nlohmann::json rest = v;
    rest.erase("status");
    return s + " " + rest.dump();
  }
  return v.dump();
}

void print_kinds(const LoadedPlugin& p, const char* prefix) {
  for (const auto& k : p.kinds) {
    std::cout << prefix << k.kind << (k.default_queue.empty() ? "" : "  queue=" + k.default_queue)
              << (k.timeout_ms > 0 ? "  timeout_ms=" + std::to_string(k.timeout_ms) : "")
              << (k.max_attempts > 0 ? "  max_attempts=" + std::to_string(k.max_attempts) : "")
              << (k.retry_schedule_text.empty() ? "" : "  retry=" + k.retry_schedule_text) << "\n";
  }
}

std::string now_iso() {
  char buf[32];
  time_t t = time(nullptr);
  struct tm tm {};
  gmtime_r(&t, &tm);
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What a plugin asks for beyond the defaults (the refusals of a decision with no grant at all),
// split into what an approval can grant and what only the configuration can.
void above_default(const LoadedPlugin& p, std::vector<std::string>* approvable,
                   std::vector<std::string>* config_only) {
  TrustInput in;
  in.name = p.name;
  in.sha256 = p.sha256;
  in.file = p.path;
  for (const auto& k : p.kinds) in.own_kinds.push_back(k.kind);
  in.manifest = p.manifest;
  TrustDecision d = decide_trust(in);
  for (const auto& dim : d.dims) {
    if (dim.refused.empty()) continue;
    bool cfg_only = dim.key == "isolation" || dim.key == "env";
    (cfg_only ? config_only : approvable)->push_back(dim.key + ": " + dim.requested.dump());
  }
}

}  // namespace

TrustContext trust_context(const Config& cfg, int default_workers) {
  TrustContext ctx;
  ctx.sections = cfg.plugin_config.is_object() ? cfg.plugin_config : nlohmann::json::object();
  ctx.host_isolation = cfg.isolation;
  ctx.default_workers = std::max(1, default_workers);
  ctx.approvals_file = approvals_path(cfg.approvals_file, cfg.data_dir);
  ctx.database_url = cfg.database_url.value_or("");
  try {
    ctx.approvals = Approvals::load(ctx.approvals_file);
  } catch (const ApprovalError& e) {
    log::error("approvals file ignored: plugins that need an approval will be refused",
               {{"file", ctx.approvals_file}, {"error", e.what()}});
  }
  return ctx;
}

int cmd_plugins_check(const std::string& file, const TrustContext& ctx, bool json) {
  SandboxOptions opts;
  try {
    if (access(file.c_str(), F_OK) != 0) throw PluginError("plugin " + file + ": file not found");
    auto pin = PinnedFile::pin(file);
    nlohmann::json hello;
    // First with the default (strictest) policy: the manifest is not known yet.
    LoadedPlugin p = describe_pinned(pin, Policy{}, opts, &hello);
    // plugins/exec (issue 22): the kinds and commands the operator configured.
    nlohmann::json exec_kinds = nlohmann::json::array();
    std::string exec_kinds_error;
    if (declares_config_kinds(p.manifest)) {
      try {
        add_config_kinds(p, ctx.sections);
        nlohmann::json section = ctx.sections.is_object() && ctx.sections.contains(p.name)
                                     ? ctx.sections[p.name]
                                     : nlohmann::json::object();
        for (const auto& k : parse_exec_kinds(section)) {
          exec_kinds.push_back({{"kind", k.info.kind},
                                {"command", k.command},
                                {"workers", k.workers},
                                {"env", k.env},
                                {"programs", program_closure(k.command[0])}});
        }
      } catch (const std::exception& e) {
        exec_kinds_error = e.what();
      }
    }
    TrustDecision dec = decide_for(p, ctx);
    if (!exec_kinds_error.empty()) dec.refusals.push_back("config: " + exec_kinds_error);
    const Policy& pol = dec.policy;
    if (dec.accepted() && dec.isolation == "sandbox") {
      opts.describe_as = p.name;  // with the uid and a cgroup of its own, as its workers get
      describe_pinned(pin, pol, opts, &hello);  // again, confined as its workers will be
    }
    int64_t uid = -1, gid = -1;
    std::string user = pol.user.empty() ? opts.user : pol.user;
    nlohmann::json uid_json;
    try {
      detail::resolve_user(user, &uid, &gid);
      uid_json = {{"user", uid < 0 ? "(this user: the runner is not root)"
                                   : (user.empty() ? "nobody" : user)},
                  {"uid", uid < 0 ? static_cast<int64_t>(geteuid()) : uid},
                  {"gid", gid < 0 ? static_cast<int64_t>(getegid()) : gid}};
    } catch (const std::exception& e) {
      uid_json = {{"error", e.what()}};
    }
    // What the confined describe actually ran as (the uid allocated for the plugin, or its
    // named user), rather than the sandbox's fallback user.
    if (dec.accepted() && dec.isolation == "sandbox") {
      nlohmann::json ran =
          hello.value("layers", nlohmann::json::object()).value("user", nlohmann::json());
      if (ran.is_object() && ran.contains("uid")) {
        uid_json = {{"user", pol.user.empty() ? "(allocated for the plugin)" : pol.user},
                    {"uid", ran["uid"]},
                    {"gid", ran.value("gid", nlohmann::json())},
                    {"source", ran.value("source", "")}};
      }
    }
    if (dec.isolation == "none") {
      uid_json = {{"user", "(in-process: the runner's own user)"},
                  {"uid", static_cast<int64_t>(geteuid())}};
    }
    // The peers its workers may reach: what the guard will allow (net_guard.hpp), from the
    // effective policy and the database_url the plugin gets (the operator's own, or the
    // runner's server when it is granted a database).
    nlohmann::json network;
    if (pol.network == Network::loopback && dec.isolation == "sandbox") {
      nlohmann::json cfg = ctx.sections.is_object() && ctx.sections.contains(p.name) &&
                                   ctx.sections[p.name].is_object()
                               ? ctx.sections[p.name]
                               : nlohmann::json::object();
      std::string db_note;
      if (!cfg.contains("database_url") && pol.database) {
        if (!ctx.database_url.empty()) {
          cfg["database_url"] = ctx.database_url;
          db_note = "the runner's database server (its own role)";
        } else {
          db_note = "the runner's managed cluster (unix socket)";
        }
      }
      nlohmann::json init = {{"policy", pol.to_json()}, {"config", cfg}};
      network = NetRules::for_worker(init).grants_json(true);
      if (!db_note.empty()) network.push_back({{"peer", db_note}, {"source", "database_url"}});
    } else {
      network = nlohmann::json::array(
          {{{"peer", pol.network == Network::full ? "any (network = \"full\")"
                                                  : "none (network = \"none\")"},
            {"source", "policy"}}});
    }
    const Approval* ap = ctx.approvals.find(p.name, p.sha256);
    const BuiltinApproval* bi = builtin_approval(p.sha256);
    nlohmann::json trust = dec.to_json();
    nlohmann::json doc = {{"file", file},
                          {"name", p.name},
                          {"version", p.version},
                          {"abi", "1." + std::to_string(p.abi_minor)},
                          {"sha256", p.sha256},
                          {"size", pin->size()},
                          {"kinds", kinds_json(p)},
                          {"has_idle", p.has_idle},
                          {"manifest", p.manifest},
                          {"isolation", dec.isolation},
                          {"accepted", dec.accepted()},
                          {"refused", dec.refusals},
                          {"requested", trust["requested"]},
                          {"granted", trust["granted"]},
                          {"effective", trust["effective"]},
                          {"policy", pol.to_json()},
                          {"grants", pol.grants_json()},
                          {"approval",
                           {{"approvals_file", ctx.approvals_file},
                            {"approved", ap != nullptr},
                            {"approved_at", ap != nullptr ? ap->approved_at : ""},
                            {"builtin", bi != nullptr}}},
                          {"uid", uid_json},
                          {"exec_kinds", exec_kinds},
                          {"network_grants", network},
                          {"layers", hello.value("layers", nlohmann::json::object())},
                          {"warnings", hello.value("warnings", nlohmann::json::array())}};
    if (json) {
      std::cout << doc.dump() << "\n";
      return dec.accepted() ? 0 : 1;
    }
    std::cout << "plugin     " << p.name << " " << p.version << " (ABI "
              << doc["abi"].get<std::string>() << ")\n"
              << "file       " << file << "\n"
              << "sha256     " << p.sha256 << "\n";
    print_kinds(p, "kind       ");
    for (const auto& k : exec_kinds) {  // plugins/exec (issue 22)
      std::cout << "command    " << k["kind"].get<std::string>() << ": " << k["command"].dump()
                << " (workers " << k["workers"] << ", executable: " << k["programs"].dump()
                << ")\n";
    }
    std::cout << "manifest   " << p.manifest.dump() << "\n"
              << "approval   "
              << (bi != nullptr   ? "built-in (shipped plugin)"
                  : ap != nullptr ? "approved " + ap->approved_at + " in " + ctx.approvals_file
                                  : "none (" + ctx.approvals_file + ")")
              << "\n"
              << "trust      " << (dec.accepted() ? "accepted" : "REFUSED: " + dec.refusal_text())
              << "\n"
              << "isolation  " << dec.isolation
              << (dec.isolation == "none" ? " (runs in the host process: trusted)" : "") << "\n";
    std::cout << "dimension             requested            granted (source)                  "
                 "effective\n";
    for (const auto& d : dec.dims) {
      std::string req = d.requested.is_null() ? "-" : d.requested.dump();
      std::string gr = d.refused.empty()
                           ? d.granted.dump() + " (" + grant_source_name(d.source) + ")"
                           : "REFUSED";
      auto pad = [](std::string s, size_t n) {
        if (s.size() > n - 1) s = s.substr(0, n - 4) + "...";
        return s + std::string(n - s.size(), ' ');
      };
      std::cout << "  " << pad(d.key, 20) << pad(req, 21) << pad(gr, 34) << d.effective.dump()
                << "\n";
    }
    std::cout << "uid        " << uid_json.dump() << "\n";
    for (const auto& g : network) {
      std::cout << "network    " << g["peer"].get<std::string>() << "  ("
                << g["source"].get<std::string>() << ")";
      if (g.contains("resolves_to")) std::cout << "  resolves to " << g["resolves_to"].dump();
      if (g.contains("resolve_error")) {
        std::cout << "  (" << g["resolve_error"].get<std::string>() << ")";
      }
      std::cout << "\n";
    }
    for (const auto& [layer, v] : doc["layers"].items()) {
      std::cout << "layer      " << layer << ": " << layer_text(v) << "\n";
    }
    for (const auto& w : doc["warnings"]) {
      std::cout << "WARNING    " << (w.is_string() ? w.get<std::string>() : w.dump()) << "\n";
    }
    return dec.accepted() ? 0 : 1;
  } catch (const std::exception& e) {
    if (json) {
      std::cout << nlohmann::json({{"file", file}, {"error", e.what()}}).dump() << "\n";
    }
    std::cerr << "runner: " << e.what() << "\n";
    return 1;
  }
}

int cmd_plugins_ls(const std::string& dir, bool json) {
  SandboxOptions opts;
  DescribedDir d = describe_dir(dir, opts);
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& p : d.plugins) {
    nlohmann::json kinds = kinds_json(p);
    arr.push_back({{"name", p.name},
                   {"version", p.version},
                   {"file", p.path},
                   {"sha256", p.sha256},
                   {"abi", "1." + std::to_string(p.abi_minor)},
                   {"kinds", kinds},
                   {"idle_hook", p.has_idle},
                   {"manifest", p.manifest}});
  }
  if (json) {
    std::cout << arr.dump(2) << "\n";
  } else {
    for (const auto& p : d.plugins) {
      std::cout << p.name << " " << p.version << " (ABI 1." << p.abi_minor << ") " << p.path
                << "\n  sha256 " << p.sha256 << "\n";
      print_kinds(p, "  kind ");
    }
  }
  for (const auto& r : d.refused) std::cerr << "runner: refused: " << r.reason << "\n";
  return d.refused.empty() ? 0 : 1;
}

int cmd_plugins_approve(const std::string& file, const std::string& approvals_file, bool yes,
                        bool json) {
  try {
    if (access(file.c_str(), F_OK) != 0) throw PluginError("plugin " + file + ": file not found");
    SandboxOptions opts;
    LoadedPlugin p = describe_pinned(PinnedFile::pin(file), Policy{}, opts, nullptr);
    nlohmann::json request = approvable_request(p.manifest);
    std::vector<std::string> approvable, config_only;
    above_default(p, &approvable, &config_only);
    if (!json) {
      std::cout << "plugin     " << p.name << " " << p.version << "\n"
                << "file       " << file << "\n"
                << "sha256     " << p.sha256 << "\n"
                << "requests   " << full_request(p.manifest).dump() << "\n";
      if (approvable.empty()) {
        std::cout << "above the default: nothing an approval grants\n";
      }
      for (const auto& a : approvable) std::cout << "approve    " << a << "\n";
      for (const auto& c : config_only) {
        std::cout << "NOT approvable (configuration only): " << c << "  -> set it in [plugins."
                  << p.name << "] if you trust it\n";
      }
    }
    if (!yes) {
      if (!isatty(0)) {
        std::cerr << "runner: stdin is not a terminal: pass --yes to approve " << p.name
                  << " (sha256 " << p.sha256 << ")\n";
        return 2;
      }
      std::cout << "Approve exactly this request for this file content? [y/N] " << std::flush;
      std::string answer;
      std::getline(std::cin, answer);
      if (answer != "y" && answer != "Y" && answer != "yes") {
        std::cout << "not approved\n";
        return 1;
      }
    }
    Approval a;
    a.name = p.name;
    a.sha256 = p.sha256;
    a.file = file;
    a.approved_at = now_iso();
    a.request = request;
    Approvals::update(approvals_file, [&](Approvals& all) { all.add(a); });
    log::info("plugin approved", {{"plugin", p.name},
                                  {"sha256", p.sha256},
                                  {"file", file},
                                  {"approvals_file", approvals_file},
                                  {"request", request}});
    if (json) {
      std::cout << nlohmann::json({{"name", p.name},
                                   {"sha256", p.sha256},
                                   {"file", file},
                                   {"approvals_file", approvals_file},
                                   {"request", request},
                                   {"approvable", approvable},
                                   {"configuration_only", config_only},
                                   {"approved", true}})
                       .dump()
                << "\n";
    } else {
      std::cout << "approved " << p.name << " (sha256 " << p.sha256 << ") in " << approvals_file
                << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    if (json) std::cout << nlohmann::json({{"file", file}, {"error", e.what()}}).dump() << "\n";
    std::cerr << "runner: " << e.what() << "\n";
    return 1;
  }
}

int cmd_plugins_approvals_ls(const std::string& approvals_file, bool json) {
  Approvals all = Approvals::load(approvals_file);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& a : all.all()) {
      arr.push_back({{"name", a.name},
                     {"sha256", a.sha256},
                     {"file", a.file},
                     {"approved_at", a.approved_at},
                     {"request", a.request}});
    }
    for (const auto& b : builtin_approvals()) {
      arr.push_back({{"builtin", true}, {"file", b.file}, {"sha256", b.sha256}});
    }
    std::cout << arr.dump(2) << "\n";
    return 0;
  }
  std::cout << "approvals file " << approvals_file << "\n";
  for (const auto& a : all.all()) {
    std::cout << a.name << "  " << a.sha256 << "  " << a.approved_at << "  " << a.file << "\n"
              << "  request " << a.request.dump() << "\n";
  }
  for (const auto& b : builtin_approvals()) {
    std::cout << "(built-in) " << b.file << "  " << b.sha256 << "\n";
  }
  return 0;
}

int cmd_plugins_approvals_rm(const std::string& approvals_file, const std::string& name,
                             const std::string& sha256) {
  int removed = 0;
  Approvals::update(approvals_file, [&](Approvals& all) { removed = all.remove(name, sha256); });
  std::cout << "removed " << removed << " approval(s) of " << name << "\n";
  return removed > 0 ? 0 : 3;
}

}  // namespace jr::sandbox
