#include "policy.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "net_grants.hpp"

namespace jr::sandbox {
namespace {

int64_t get_count(const nlohmann::json& v, const std::string& key, int64_t max) {
  if (!v.is_number_integer() && !v.is_number_unsigned() &&
      !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())) {
    throw PolicyError("sandbox." + key + " must be a non-negative integer");
  }
  double d = v.get<double>();
  if (d < 0 || d > static_cast<double>(max)) {
    throw PolicyError("sandbox." + key + " must be between 0 and " + std::to_string(max));
  }
  return static_cast<int64_t>(d);
}

double get_seconds(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0) {
    throw PolicyError("sandbox." + key + " must be a non-negative number of seconds");
  }
  return v.get<double>();
}

std::vector<std::string> get_paths(const nlohmann::json& v, const std::string& key) {
  if (!v.is_array()) throw PolicyError("sandbox." + key + " must be an array of absolute paths");
  std::vector<std::string> out;
  for (const auto& p : v) {
    if (!p.is_string() || p.get<std::string>().empty() || p.get<std::string>()[0] != '/') {
      throw PolicyError("sandbox." + key + " must be an array of absolute paths");
    }
    out.push_back(p.get<std::string>());
  }
  return out;
}

void apply(Policy& p, const nlohmann::json& obj, const nlohmann::json& plugin_config,
           bool from_host) {
  if (obj.is_null()) return;
  if (!obj.is_object()) throw PolicyError("sandbox must be an object");
  for (const auto& [key, v] : obj.items()) {
    if (key == "memory_mb") {
      p.memory_mb = get_count(v, key, int64_t{1} << 30);
    } else if (key == "cpu_seconds") {
      p.cpu_seconds = get_seconds(v, key);
    } else if (key == "wall_timeout_seconds") {
      p.wall_timeout_seconds = get_seconds(v, key);
    } else if (key == "network") {
      std::string n = v.is_string() ? v.get<std::string>() : "";
      if (n == "none") {
        p.network = Network::none;
      } else if (n == "loopback") {
        p.network = Network::loopback;
      } else if (n == "full") {
        p.network = Network::full;
      } else {
        throw PolicyError("sandbox.network must be \"none\", \"loopback\" or \"full\"");
      }
    } else if (key == "readable") {
      for (auto& s : get_paths(v, key)) p.readable.push_back(s);
    } else if (key == "writable") {
      for (auto& s : get_paths(v, key)) p.writable.push_back(s);
    } else if (key == "sockets") {
      for (auto& s : get_paths(v, key)) p.sockets.push_back(s);
    } else if (key == "connect") {
      if (!v.is_array() || v.size() > 256) {
        throw PolicyError("sandbox.connect must be an array of at most 256 entries");
      }
      for (const auto& e : v) {
        ConnectGrant g;
        std::string why;
        if (!e.is_string() || !parse_connect_grant(e.get<std::string>(), &g, &why)) {
          std::string shown = e.is_string() ? e.get<std::string>().substr(0, 100) : e.dump();
          throw PolicyError("sandbox.connect entry \"" + shown +
                            "\": " + (why.empty() ? "must be a string" : why) +
                            " (entries are \"host:port\", \"cidr:port\", \"[v6]:port\" or an "
                            "absolute unix socket path)");
        }
        p.connect.push_back(e.get<std::string>());
      }
    } else if (key == "readable_config_keys" || key == "writable_config_keys") {
      if (!v.is_array()) throw PolicyError("sandbox." + key + " must be an array of config keys");
      for (const auto& k : v) {
        if (!k.is_string()) throw PolicyError("sandbox." + key + " must list config keys");
        auto it = plugin_config.is_object() ? plugin_config.find(k.get<std::string>())
                                            : plugin_config.end();
        if (!plugin_config.is_object() || it == plugin_config.end() || !it->is_string()) continue;
        std::string path = it->get<std::string>();
        if (path.empty() || path[0] != '/') continue;  // relative paths cannot be granted
        (key[0] == 'r' ? p.readable : p.writable).push_back(path);
      }
    } else if (key == "max_jobs") {
      p.max_jobs = get_count(v, key, int64_t{1} << 40);
    } else if (key == "max_rss_mb") {
      p.max_rss_mb = get_count(v, key, int64_t{1} << 30);
    } else if (key == "workers") {
      p.workers = static_cast<int>(get_count(v, key, 1024));
    } else if (key == "max_open_files") {
      p.max_open_files = get_count(v, key, 1 << 20);
    } else if (key == "max_file_mb") {
      p.max_file_mb = get_count(v, key, int64_t{1} << 30);
    } else if (key == "max_threads") {
      p.max_threads = get_count(v, key, 1 << 20);
    } else if (key == "scratch_mb") {
      p.scratch_mb = get_count(v, key, int64_t{1} << 20);
      if (p.scratch_mb < 1) throw PolicyError("sandbox.scratch_mb must be between 1 and 1048576");
    } else if (key == "exec") {
      // exec grant (issue 22): only the host hands it to a worker (decide_trust refuses a
      // manifest that asks for it without the operator's grant).
      if (!from_host) continue;
      for (auto& s : get_paths(v, key)) p.exec.push_back(s);
    } else if (key == "exec_from_handlers") {
      if (!from_host) continue;  // derived by decide_trust from [plugins.exec.sandbox] exec
      if (!v.is_boolean()) throw PolicyError("sandbox.exec_from_handlers must be a boolean");
      p.exec_from_handlers = v.get<bool>();
    } else if (key == "user") {
      if (!from_host) continue;  // a plugin does not pick the uid it runs as
      if (!v.is_string()) throw PolicyError("sandbox.user must be a user name");
      p.user = v.get<std::string>();
    } else {
      throw PolicyError("unknown sandbox policy key '" + key + "'");
    }
  }
}

}  // namespace

const char* network_name(Network n) {
  switch (n) {
    case Network::none:
      return "none";
    case Network::loopback:
      return "loopback";
    case Network::full:
      return "full";
  }
  return "none";
}

nlohmann::json Policy::to_json() const {
  return {{"memory_mb", memory_mb},
          {"cpu_seconds", cpu_seconds},
          {"wall_timeout_seconds", wall_timeout_seconds},
          {"network", network_name(network)},
          {"readable", readable},
          {"writable", writable},
          {"sockets", sockets},
          {"connect", connect},
          {"max_jobs", max_jobs},
          {"max_rss_mb", max_rss_mb},
          {"workers", workers},
          {"max_open_files", max_open_files},
          {"max_file_mb", max_file_mb},
          {"max_threads", max_threads},
          {"scratch_mb", scratch_mb},
          {"user", user},
          {"exec", exec},
          {"exec_from_handlers", exec_from_handlers}};
}

nlohmann::json Policy::grants_json() const {
  return {{"database", database}, {"enqueue_kinds", enqueue_kinds}, {"env", env}};
}

Policy make_policy(const nlohmann::json& manifest, const nlohmann::json& config_override,
                   const nlohmann::json& plugin_config) {
  Policy p;
  if (manifest.is_object() && manifest.contains("sandbox")) {
    apply(p, manifest["sandbox"], plugin_config, false);
  }
  apply(p, config_override, plugin_config, true);
  // De-duplicate grants while keeping their order (the worker adds one Landlock rule per path).
  for (auto* list : {&p.readable, &p.writable, &p.sockets, &p.connect, &p.exec}) {
    std::set<std::string> seen;
    std::vector<std::string> out;
    for (auto& s : *list) {
      if (seen.insert(s).second) out.push_back(s);
    }
    *list = std::move(out);
  }
  return p;
}

// ---- The trust decision ----

namespace {

enum class Cmp {
  any,      // any value is within the default (it can only tighten: budgets, recycling)
  limit0,   // a limit where 0 means unlimited: within when 0 < v <= bound, or bound is 0
  le,       // v <= bound
  network,  // none < loopback < full
  subset,   // every element of v is in bound
};

struct KeySpec {
  const char* key;
  Cmp cmp;
};

// Every sandbox key a manifest may request ("user" is configuration-only and not listed).
constexpr KeySpec kKeys[] = {
    {"network", Cmp::network},
    {"memory_mb", Cmp::limit0},
    {"cpu_seconds", Cmp::any},
    {"wall_timeout_seconds", Cmp::any},
    {"readable", Cmp::subset},
    {"writable", Cmp::subset},
    {"readable_config_keys", Cmp::subset},
    {"writable_config_keys", Cmp::subset},
    {"sockets", Cmp::subset},  // loopback: unix sockets reachable besides the grants above
    {"connect", Cmp::subset},  // loopback: named peers (host:port, cidr:port, unix paths)
    {"max_jobs", Cmp::any},
    {"max_rss_mb", Cmp::any},
    {"workers", Cmp::le},
    {"max_open_files", Cmp::le},
    {"max_file_mb", Cmp::le},
    {"max_threads", Cmp::le},
    {"scratch_mb",
     Cmp::le},  // a bigger scratch tmpfs is more memory: above the default needs a grant
};

int network_rank(const nlohmann::json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : "";
  return s == "none" ? 0 : s == "loopback" ? 1 : 2;
}

bool within(Cmp cmp, const nlohmann::json& v, const nlohmann::json& bound) {
  switch (cmp) {
    case Cmp::any:
      return true;
    case Cmp::limit0: {
      double b = bound.is_number() ? bound.get<double>() : 0;
      double x = v.is_number() ? v.get<double>() : 0;
      return b == 0 || (x != 0 && x <= b);
    }
    case Cmp::le:
      return v.is_number() && bound.is_number() && v.get<double>() <= bound.get<double>();
    case Cmp::network:
      return network_rank(v) <= network_rank(bound);
    case Cmp::subset: {
      if (!v.is_array()) return false;
      std::set<std::string> allowed;
      if (bound.is_array()) {
        for (const auto& b : bound) {
          if (b.is_string()) allowed.insert(b.get<std::string>());
        }
      }
      for (const auto& x : v) {
        if (!x.is_string() || !allowed.count(x.get<std::string>())) return false;
      }
      return true;
    }
  }
  return false;
}

nlohmann::json defaults_json(int default_workers) {
  nlohmann::json d = Policy{}.to_json();
  d["workers"] = default_workers;
  d["readable_config_keys"] = nlohmann::json::array();
  d["writable_config_keys"] = nlohmann::json::array();
  return d;
}

// Checks one sandbox key's value (PolicyError with the key's name when bad).
void validate_key(const std::string& key, const nlohmann::json& v) {
  nlohmann::json one = nlohmann::json::object();
  one[key] = v;
  make_policy(nlohmann::json::object(), one, nlohmann::json::object());
}

// A short rendering of an untrusted value for messages.
std::string shown(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 200 ? s.substr(0, 200) + "..." : s;
}

const nlohmann::json& member(const nlohmann::json& obj, const char* key) {
  static const nlohmann::json null_value;
  if (!obj.is_object()) return null_value;
  auto it = obj.find(key);
  return it == obj.end() ? null_value : *it;
}

bool is_kind_list(const nlohmann::json& v) {
  if (!v.is_array() || v.size() > 1024) return false;
  for (const auto& k : v) {
    if (!k.is_string() || k.get<std::string>().empty() || k.get<std::string>().size() > 128) {
      return false;
    }
  }
  return true;
}

bool is_env_map(const nlohmann::json& v) {
  if (!v.is_object()) return false;
  for (const auto& [var, key] : v.items()) {
    if (var.empty() || var.size() > 256 || !key.is_string() || key.get<std::string>().empty() ||
        key.get<std::string>().size() > 256) {
      return false;
    }
  }
  return true;
}

}  // namespace

const char* grant_source_name(GrantSource s) {
  switch (s) {
    case GrantSource::default_value:
      return "default";
    case GrantSource::config:
      return "config";
    case GrantSource::approval:
      return "approval";
    case GrantSource::builtin:
      return "built-in";
  }
  return "default";
}

nlohmann::json approvable_request(const nlohmann::json& manifest) {
  nlohmann::json r = nlohmann::json::object();
  for (const char* k : {"sandbox", "database", "enqueue"}) {
    const auto& v = member(manifest, k);
    if (!v.is_null()) r[k] = v;
  }
  return r;
}

nlohmann::json full_request(const nlohmann::json& manifest) {
  nlohmann::json r = approvable_request(manifest);
  for (const char* k : {"isolation", "env"}) {
    const auto& v = member(manifest, k);
    if (!v.is_null()) r[k] = v;
  }
  return r;
}

std::string TrustDecision::refusal_text() const {
  std::string out;
  for (const auto& r : refusals) out += (out.empty() ? "" : "; ") + r;
  return out;
}

Policy TrustDecision::resolve(const nlohmann::json& plugin_config) const {
  Policy p = make_policy(nlohmann::json::object(), sandbox, plugin_config);
  if (!p.connect.empty() && p.network == Network::none) {
    throw PolicyError(std::string("sandbox.connect needs sandbox.network = \"loopback\" (the "
                                  "guarded mode), not \"") +
                      network_name(p.network) + "\"");
  }
  p.database = policy.database;
  p.enqueue_kinds = policy.enqueue_kinds;
  p.env = policy.env;
  return p;
}

nlohmann::json TrustDecision::to_json() const {
  nlohmann::json req = nlohmann::json::object(), granted = nlohmann::json::object(),
                 eff = nlohmann::json::object();
  for (const auto& d : dims) {
    if (!d.requested.is_null()) req[d.key] = d.requested;
    granted[d.key] = {{"value", d.granted}, {"source", grant_source_name(d.source)}};
    if (!d.refused.empty()) granted[d.key]["refused"] = d.refused;
    eff[d.key] = d.effective;
  }
  return {{"isolation", isolation}, {"requested", req},       {"granted", granted},
          {"effective", eff},       {"accepted", accepted()}, {"refused", refusals}};
}

TrustDecision decide_trust(const TrustInput& in) {
  TrustDecision out;
  const std::string& name = in.name;
  const nlohmann::json& sec = in.section.is_object() ? in.section : nlohmann::json::object();
  const nlohmann::json& cfg_sandbox = member(sec, "sandbox");
  const nlohmann::json& req_sandbox = member(in.manifest, "sandbox");
  const nlohmann::json& approved = in.approved != nullptr ? *in.approved : nlohmann::json();
  const nlohmann::json& approved_sandbox = member(approved, "sandbox");
  const std::string approve_hint = "grant it with `runner plugins approve " + in.file +
                                   "` (bound to this file's SHA-256) or in the config";
  auto refuse = [&](DimensionDecision& d, const std::string& why) {
    d.refused = why;
    d.granted = nullptr;
    out.refusals.push_back(why);
  };

  // Content pin: [plugins.<name>] sha256 = "..." binds the config to one file.
  if (const auto& pin = member(sec, "sha256"); !pin.is_null()) {
    std::string want = pin.is_string() ? pin.get<std::string>() : "";
    std::transform(want.begin(), want.end(), want.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (want.size() != 64 || want.find_first_not_of("0123456789abcdef") != std::string::npos) {
      out.refusals.push_back("config [plugins." + name + "] sha256 must be 64 hex digits");
    } else if (want != in.sha256) {
      out.refusals.push_back("its content has SHA-256 " + in.sha256 +
                             ", not the one pinned by [plugins." + name + "] sha256 = \"" + want +
                             "\"");
    }
  }
  if (const auto& rk = member(sec, "replace_kinds"); !rk.is_null()) {
    if (!rk.is_boolean()) {
      out.refusals.push_back("config [plugins." + name + "] replace_kinds must be true or false");
    } else {
      out.replace_kinds = rk.get<bool>();
    }
  }

  // isolation: configuration-only ("none" runs the plugin inside the runner, unconfined).
  {
    DimensionDecision d;
    d.key = "isolation";
    const auto& req = member(in.manifest, "isolation");
    const auto& cfg = member(sec, "isolation");
    d.requested = req;
    bool bad_req = !req.is_null() && !(req == "sandbox" || req == "none");
    if (!cfg.is_null() && !(cfg == "sandbox" || cfg == "none")) {
      refuse(d, "config [plugins." + name + "] isolation must be \"sandbox\" or \"none\"");
    } else if (!cfg.is_null()) {
      d.granted = d.effective = cfg;
      d.source = GrantSource::config;
    } else if (in.host_isolation == "none") {
      d.granted = d.effective = "none";
      d.source = GrantSource::config;
    } else if (bad_req) {
      refuse(d, "manifest isolation must be \"sandbox\" or \"none\", got " + shown(req));
    } else if (req.is_null() || req == "sandbox") {
      d.granted = d.effective = "sandbox";
    } else if (in.builtin) {
      d.granted = d.effective = req;
      d.source = GrantSource::builtin;
    } else {
      refuse(d,
             "requests isolation = \"none\" (in-process: unconfined, with the runner's own "
             "privileges); only the operator's configuration grants that: [plugins." +
                 name + "] isolation = \"none\"");
    }
    if (d.effective.is_null()) d.effective = "sandbox";
    out.isolation = d.effective.get<std::string>();
    out.dims.push_back(std::move(d));
  }

  // Sandbox keys: config sets a key outright; otherwise the request is honoured when it is
  // within the default, a built-in approval, or an approval of this exact file.
  nlohmann::json defaults = defaults_json(std::max(1, in.default_workers));
  if (!req_sandbox.is_null() && !req_sandbox.is_object()) {
    out.refusals.push_back("manifest sandbox must be an object");
  }
  if (!cfg_sandbox.is_null() && !cfg_sandbox.is_object()) {
    out.refusals.push_back("config [plugins." + name + ".sandbox] must be a table");
  }
  std::set<std::string> known;
  for (const auto& k : kKeys) known.insert(k.key);
  known.insert("user");
  known.insert("exec");
  for (const auto* obj : {&req_sandbox, &cfg_sandbox}) {
    if (!obj->is_object()) continue;
    for (const auto& [key, v] : obj->items()) {
      if (!known.count(key)) {
        out.refusals.push_back(std::string(obj == &req_sandbox ? "manifest" : "config") +
                               ": unknown sandbox policy key '" + key.substr(0, 100) + "'");
      }
    }
  }
  for (const auto& spec : kKeys) {
    DimensionDecision d;
    d.key = spec.key;
    const auto& req = member(req_sandbox, spec.key);
    const auto& cfg = member(cfg_sandbox, spec.key);
    d.requested = req;
    const nlohmann::json& def = defaults[spec.key];
    if (!cfg.is_null()) {
      try {
        validate_key(spec.key, cfg);
        d.granted = d.effective = cfg;
        d.source = GrantSource::config;
      } catch (const PolicyError& e) {
        refuse(d, std::string("config [plugins.") + name + ".sandbox]: " + e.what());
      }
    } else if (!req.is_null()) {
      bool valid = true;
      try {
        validate_key(spec.key, req);
      } catch (const PolicyError& e) {
        refuse(d, std::string("manifest: ") + e.what());
        valid = false;
      }
      const auto& ap = member(approved_sandbox, spec.key);
      if (!valid) {
      } else if (within(spec.cmp, req, def)) {
        d.granted = def;
        d.effective = req;
      } else if (in.builtin) {
        d.granted = d.effective = req;
        d.source = GrantSource::builtin;
      } else if (in.approved != nullptr && !ap.is_null() && within(spec.cmp, req, ap)) {
        d.granted = ap;
        d.effective = req;
        d.source = GrantSource::approval;
      } else {
        refuse(d, "requests sandbox." + std::string(spec.key) + " = " + shown(req) + " (default " +
                      shown(def) + "); " + approve_hint + ": [plugins." + name + ".sandbox] " +
                      spec.key + " = ...");
      }
    } else {
      d.granted = def;
    }
    if (d.effective.is_null() || !d.refused.empty()) d.effective = def;
    if (spec.cmp != Cmp::subset || !d.effective.empty()) out.sandbox[spec.key] = d.effective;
    out.dims.push_back(std::move(d));
  }
  // workers: the default means "the host's share", so leave it unset unless asked or configured.
  if (member(cfg_sandbox, "workers").is_null() && member(req_sandbox, "workers").is_null()) {
    out.sandbox.erase("workers");
  }
  // user: configuration-only (a plugin does not pick the uid it runs as).
  {
    DimensionDecision d;
    d.key = "user";
    d.requested = member(req_sandbox, "user");
    const auto& cfg = member(cfg_sandbox, "user");
    if (!cfg.is_null()) {
      if (!cfg.is_string()) {
        refuse(d, "config [plugins." + name + ".sandbox] user must be a user name");
      } else {
        d.granted = d.effective = cfg;
        d.source = GrantSource::config;
        out.sandbox["user"] = cfg;
      }
    } else {
      d.granted = d.effective = "";
    }
    // A manifest's "user" is not a refusal: it is ignored (`plugins check` shows it).
    out.dims.push_back(std::move(d));
  }

  // exec (issue 22, plugins/exec): configuration-only, and only for the shipped exec plugin
  // (in.exec_plugin: its built-in approval matches the content). The programs are those of the
  // kinds the operator declares in [[plugins.<name>.kinds]] (in.exec_programs, with their
  // interpreters), plus [plugins.<name>.sandbox] exec = [...] (in.exec_extra): programs the
  // handlers themselves may run, which also lets seccomp pass their execve. Never a manifest,
  // never an approval.
  {
    DimensionDecision d;
    d.key = "exec";
    const auto& req = member(req_sandbox, "exec");
    const auto& cfg = member(cfg_sandbox, "exec");
    d.requested = req;
    nlohmann::json eff = nlohmann::json::array();
    for (const auto& p : in.exec_programs) eff.push_back(p);
    for (const auto& p : in.exec_extra) {
      if (std::find(eff.begin(), eff.end(), p) == eff.end()) eff.push_back(p);
    }
    if (!cfg.is_null() || !eff.empty()) d.source = GrantSource::config;
    if (!cfg.is_null()) {
      try {
        validate_key("exec", cfg);
      } catch (const PolicyError& e) {
        refuse(d, std::string("config [plugins.") + name + ".sandbox]: " + e.what());
      }
    }
    if (d.refused.empty() && !in.exec_error.empty()) refuse(d, in.exec_error);
    if (d.refused.empty() && !in.exec_plugin && (!eff.empty() || !cfg.is_null())) {
      refuse(d, "only the shipped exec plugin may run programs: [plugins." + name +
                    "] declares kinds with commands or sandbox.exec");
    }
    if (d.refused.empty() && !req.is_null() && !(req.is_array() && req.empty()) &&
        !within(Cmp::subset, req, eff)) {
      refuse(d, "requests sandbox.exec = " + shown(req) +
                    " (running programs); only the operator's configuration grants that, "
                    "for the shipped exec plugin: [[plugins.exec.kinds]] command = [...]");
    }
    if (d.refused.empty()) d.granted = eff;
    d.effective = d.refused.empty() ? eff : nlohmann::json::array();
    if (!d.effective.empty()) out.sandbox["exec"] = d.effective;
    if (!d.effective.empty() && !in.exec_extra.empty()) out.sandbox["exec_from_handlers"] = true;
    out.dims.push_back(std::move(d));
  }

  // env: configuration-only. A manifest names host variables; nothing is copied unless the
  // operator's config (or a built-in approval, which counts as configuration) says so.
  {
    DimensionDecision d;
    d.key = "env";
    const auto& req = member(in.manifest, "env");
    const auto& cfg = member(sec, "env");
    d.requested = req;
    nlohmann::json eff = nlohmann::json::object();
    if (!cfg.is_null()) {
      if (cfg.is_boolean()) {
        if (cfg.get<bool>() && is_env_map(req)) eff = req;
        d.source = GrantSource::config;
      } else if (is_env_map(cfg)) {
        eff = cfg;
        d.source = GrantSource::config;
      } else {
        refuse(d, "config [plugins." + name +
                      "] env must be true, false or a table { VAR = \"config_key\" }");
      }
    } else if (req.is_null() || (req.is_object() && req.empty())) {
    } else if (!is_env_map(req)) {
      refuse(d, "manifest env must map variable names to config keys");
    } else if (in.builtin) {
      eff = req;
      d.source = GrantSource::builtin;
    } else {
      std::string vars;
      int n = 0;
      for (const auto& [var, key] : req.items()) {
        if (++n > 8) {
          vars += ", ...";
          break;
        }
        vars += (vars.empty() ? "" : ", ") + var.substr(0, 64);
      }
      refuse(d, "requests the host environment variables " + vars +
                    " (manifest \"env\"); only the operator's configuration passes environment "
                    "variables to a plugin: [plugins." +
                    name + "] env = { VAR = \"config_key\" }");
    }
    if (d.refused.empty()) d.granted = eff;
    d.effective = d.refused.empty() ? eff : nlohmann::json::object();
    for (const auto& [var, key] : d.effective.items()) out.policy.env[var] = key.get<std::string>();
    out.dims.push_back(std::move(d));
  }

  // database: approvable.
  {
    DimensionDecision d;
    d.key = "database";
    const auto& req = member(in.manifest, "database");
    const auto& cfg = member(sec, "database");
    d.requested = req;
    bool eff = false;
    if (!cfg.is_null()) {
      if (!cfg.is_boolean()) {
        refuse(d, "config [plugins." + name + "] database must be true or false");
      } else {
        eff = cfg.get<bool>();
        d.source = GrantSource::config;
      }
    } else if (req.is_null() || req == false) {
    } else if (!req.is_boolean()) {
      refuse(d, "manifest database must be true or false");
    } else if (in.builtin) {
      eff = true;
      d.source = GrantSource::builtin;
    } else if (member(approved, "database") == true) {
      eff = true;
      d.source = GrantSource::approval;
    } else {
      refuse(d, "requests a database (manifest \"database\": true); " + approve_hint +
                    ": [plugins." + name + "] database = true");
    }
    if (d.refused.empty()) d.granted = eff;
    d.effective = d.refused.empty() && eff;
    out.policy.database = d.effective.get<bool>();
    out.dims.push_back(std::move(d));
  }

  // enqueue: kinds beyond its own; approvable.
  {
    DimensionDecision d;
    d.key = "enqueue";
    const auto& req_in = member(in.manifest, "enqueue");
    const auto& cfg = member(sec, "enqueue");
    nlohmann::json req = req_in;
    if (is_kind_list(req_in)) {
      // Its own kinds need no grant.
      req = nlohmann::json::array();
      for (const auto& k : req_in) {
        if (std::find(in.own_kinds.begin(), in.own_kinds.end(), k.get<std::string>()) ==
            in.own_kinds.end()) {
          req.push_back(k);
        }
      }
    }
    d.requested = req_in;
    nlohmann::json eff = nlohmann::json::array();
    if (!cfg.is_null()) {
      if (!is_kind_list(cfg)) {
        refuse(d, "config [plugins." + name + "] enqueue must be an array of job kinds");
      } else {
        eff = cfg;
        d.source = GrantSource::config;
      }
    } else if (req.is_null() || (req.is_array() && req.empty())) {
    } else if (!is_kind_list(req)) {
      refuse(d, "manifest enqueue must be an array of job kinds");
    } else if (in.builtin) {
      eff = req;
      d.source = GrantSource::builtin;
    } else if (in.approved != nullptr && within(Cmp::subset, req, member(approved, "enqueue"))) {
      eff = req;
      d.source = GrantSource::approval;
    } else {
      refuse(d, "requests to enqueue the kinds " + shown(req) + " (not its own); " + approve_hint +
                    ": [plugins." + name + "] enqueue = [...]");
    }
    if (d.refused.empty()) d.granted = eff;
    d.effective = d.refused.empty() ? eff : nlohmann::json::array();
    for (const auto& k : d.effective) out.policy.enqueue_kinds.push_back(k.get<std::string>());
    out.dims.push_back(std::move(d));
  }

  // The effective sandbox policy, resolved against the plugin's config.
  try {
    out.policy = out.resolve(in.plugin_config.is_null() ? sec : in.plugin_config);
  } catch (const PolicyError& e) {
    out.refusals.push_back(e.what());
  }
  return out;
}

}  // namespace jr::sandbox
