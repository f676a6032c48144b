#include "policy.hpp"

#include <cmath>
#include <set>

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
          {"max_jobs", max_jobs},
          {"max_rss_mb", max_rss_mb},
          {"workers", workers},
          {"max_open_files", max_open_files},
          {"max_file_mb", max_file_mb},
          {"max_threads", max_threads},
          {"scratch_mb", scratch_mb},
          {"user", user}};
}

Policy make_policy(const nlohmann::json& manifest, const nlohmann::json& config_override,
                   const nlohmann::json& plugin_config) {
  Policy p;
  if (manifest.is_object() && manifest.contains("sandbox")) {
    apply(p, manifest["sandbox"], plugin_config, false);
  }
  apply(p, config_override, plugin_config, true);
  // De-duplicate grants while keeping their order (the worker adds one Landlock rule per path).
  for (auto* list : {&p.readable, &p.writable}) {
    std::set<std::string> seen;
    std::vector<std::string> out;
    for (auto& s : *list) {
      if (seen.insert(s).second) out.push_back(s);
    }
    *list = std::move(out);
  }
  return p;
}

}  // namespace jr::sandbox
