// The dashboard's view of a plugin and its sandbox (ui_publish.hpp). Its own file: it needs the
// sandbox library, which only the runner's worker command links with (cli_worker.cpp).
#include "sandbox.hpp"
#include "ui_publish.hpp"

namespace jr::ops {

nlohmann::json plugin_state_json(const LoadedPlugin& p, const sandbox::SandboxExecutor* ex) {
  nlohmann::json kinds = nlohmann::json::array();
  for (const auto& k : p.kinds) kinds.push_back(k.kind);
  nlohmann::json j = {{"name", p.name},
                      {"version", p.version},
                      {"sha256", p.sha256},
                      {"kinds", kinds},
                      {"isolation", ex ? "sandbox" : "none"}};
  // What the trust decision granted beyond the sandbox limits (names only: the env map holds
  // host variable -> config key, never a value).
  nlohmann::json env = nlohmann::json::array();
  for (const auto& [var, key] : p.grants.env) env.push_back(var);
  j["grants"] = {
      {"database", p.grants.database}, {"enqueue_kinds", p.grants.enqueue_kinds}, {"env", env}};
  if (ex) {
    nlohmann::json c = ex->counters().to_json();
    j["workers"] = ex->pool_size();
    j["workers_started"] = c["workers_started"];
    j["jobs"] = c["jobs"];
    j["restarts"] = c["restarts"];
    j["failures"] = c["failures"];
    j["quarantined"] = ex->quarantined();
    j["quarantines"] = c["quarantines"];
    j["layers"] = ex->layers();
    j["policy"] = ex->policy().to_json();
  }
  return j;
}

}  // namespace jr::ops
