// `runner plugins check FILE [--json]`: the plugin's descriptor and effective sandbox policy, and
// the layers a worker with that policy applied — all read inside the sandbox.
#include <iostream>

#include "sandbox.hpp"

namespace jr::sandbox {
namespace {

std::string layer_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("status")) {
    std::string s = v["status"].get<std::string>();
    nlohmann::json rest = v;
    rest.erase("status");
    return s + " " + rest.dump();
  }
  return v.dump();
}

}  // namespace

int cmd_plugins_check(const std::string& file, const nlohmann::json& config_sections, bool json) {
  SandboxOptions opts;
  try {
    // First with the default (strictest) policy: the manifest is not known yet.
    LoadedPlugin p = describe_in_sandbox(file, opts);
    nlohmann::json section = config_sections.is_object() && config_sections.contains(p.name)
                                 ? config_sections[p.name]
                                 : nlohmann::json::object();
    std::string isolation = isolation_of(p, section);
    Policy pol = policy_for(p, section);
    nlohmann::json hello;
    opts.describe_as = p.name;  // with the uid and a cgroup of its own, as its workers get
    describe_with_report(file, pol, opts, &hello);  // again, confined as its workers will be
    nlohmann::json kinds = nlohmann::json::array();
    for (const auto& k : p.kinds) {
      kinds.push_back({{"kind", k.kind},
                       {"default_queue", k.default_queue},
                       {"timeout_ms", k.timeout_ms},
                       {"max_attempts", k.max_attempts},
                       {"retry_schedule", k.retry_schedule_text}});
    }
    nlohmann::json doc = {{"file", file},
                          {"name", p.name},
                          {"version", p.version},
                          {"abi", "1." + std::to_string(p.abi_minor)},
                          {"kinds", kinds},
                          {"has_idle", p.has_idle},
                          {"manifest", p.manifest},
                          {"isolation", isolation},
                          {"policy", pol.to_json()},
                          {"layers", hello.value("layers", nlohmann::json::object())},
                          {"warnings", hello.value("warnings", nlohmann::json::array())}};
    if (json) {
      std::cout << doc.dump() << "\n";
      return 0;
    }
    std::cout << "plugin     " << p.name << " " << p.version << " (ABI "
              << doc["abi"].get<std::string>() << ")\n"
              << "file       " << file << "\n";
    for (const auto& k : p.kinds) {
      std::cout << "kind       " << k.kind
                << (k.default_queue.empty() ? "" : "  queue=" + k.default_queue)
                << (k.timeout_ms > 0 ? "  timeout_ms=" + std::to_string(k.timeout_ms) : "")
                << (k.max_attempts > 0 ? "  max_attempts=" + std::to_string(k.max_attempts) : "")
                << (k.retry_schedule_text.empty() ? "" : "  retry=" + k.retry_schedule_text)
                << "\n";
    }
    std::cout << "manifest   " << p.manifest.dump() << "\n"
              << "isolation  " << isolation
              << (isolation == "none" ? " (runs in the host process: trusted)" : "") << "\n"
              << "policy     " << pol.to_json().dump() << "\n";
    for (const auto& [layer, v] : doc["layers"].items()) {
      std::cout << "layer      " << layer << ": " << layer_text(v) << "\n";
    }
    for (const auto& w : doc["warnings"]) {
      std::cout << "WARNING    " << w.get<std::string>() << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    if (json) {
      std::cout << nlohmann::json({{"file", file}, {"error", e.what()}}).dump() << "\n";
    }
    std::cerr << "runner: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace jr::sandbox
