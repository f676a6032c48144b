// A plugin's sandbox policy, and the trust decision that produces it. A plugin's manifest only
// *requests* (its "sandbox" object, "isolation", "env", "database", "enqueue"); decide_trust()
// grants each dimension from the operator's config, an approval bound to the file's SHA-256, a
// built-in approval of a shipped plugin, or the default, and refuses the plugin when it asks
// for more than any of them allows (docs/sandbox.md, "Grants and approvals").
// Plain value types; every function here is pure (no I/O) and thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace jr::sandbox {

class PolicyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Network { none, loopback, full };

const char* network_name(Network n);

struct Policy {
  int64_t memory_mb = 1024;         // RLIMIT_AS of a worker; 0 = unlimited
  double cpu_seconds = 0;           // CPU budget per job (RLIMIT_CPU, see docs); 0 = none
  double wall_timeout_seconds = 0;  // per-job wall clock cap on top of the job's timeout; 0 = none
  Network network = Network::none;  // none: netns + socket() EPERM; loopback/full: sockets allowed
  std::vector<std::string> readable;  // extra read-only paths
  std::vector<std::string> writable;  // extra read-write paths (the scratch dir is always one)
  // network = "loopback": unix sockets (files, or directories holding them) the worker may reach
  // besides those beneath readable/writable paths (net_guard.hpp)
  std::vector<std::string> sockets;
  // network = "loopback": peers the worker may reach besides loopback (net_grants.hpp):
  // "host:port", "cidr:port", "[v6]:port", "/unix/path". The host adds the endpoints of the
  // plugin's own database_url by itself.
  std::vector<std::string> connect;
  int64_t max_jobs = 0;          // recycle a worker after this many jobs; 0 = never
  int64_t max_rss_mb = 0;        // recycle a worker whose peak RSS passed this; 0 = never
  int workers = 0;               // pool size; 0 = the executor's default (concurrency share)
  int64_t max_open_files = 256;  // RLIMIT_NOFILE
  int64_t max_file_mb = 1024;    // RLIMIT_FSIZE
  int64_t max_threads = 4096;    // RLIMIT_NPROC and pids.max: all the plugin's workers
  int64_t scratch_mb = 256;      // size of each worker's scratch tmpfs (1 .. 1<<20)
  std::string user;              // uid to run as when the host is root ("" = allocated)
  // exec grant (issue 22, plugins/exec): programs the worker and its children may execute
  // (absolute paths, with their ELF and script interpreters). Empty: execve and fork kill the
  // worker (seccomp). Configuration-only: a manifest cannot grant itself exec.
  std::vector<std::string> exec;
  // With exec: handlers may call execve themselves (Landlock still limits it to `exec`); false:
  // seccomp lets only the worker's spawn path exec (the operator's sandbox.exec sets it).
  bool exec_from_handlers = false;

  // Host-side grants (not part of a worker's confinement; copied to LoadedPlugin::grants):
  bool database = false;                   // a database role and URL for it; false = no URL
  std::vector<std::string> enqueue_kinds;  // kinds it may enqueue beyond its own
  std::map<std::string, std::string> env;  // host env VAR -> config key (configuration-only)

  // The sandbox keys (what a worker applies; make_policy() reads it back).
  nlohmann::json to_json() const;
  // {"database": ..., "enqueue_kinds": [...], "env": {...}}.
  nlohmann::json grants_json() const;
};

// Merges sandbox objects without any trust decision: defaults, then the manifest's "sandbox"
// object, then `config_override` (may be null). The worker uses it to read back the policy the
// host decided (Policy::to_json); the host decides with decide_trust(), never with this.
// `plugin_config` resolves "readable_config_keys"/"writable_config_keys": config keys whose
// string values are paths the plugin needs. The "user" key is honoured only from
// `config_override`. Throws PolicyError on unknown keys or bad values.
Policy make_policy(const nlohmann::json& manifest, const nlohmann::json& config_override,
                   const nlohmann::json& plugin_config);

// ---- The trust decision ----

// Where a dimension's effective value came from.
enum class GrantSource { default_value, config, approval, builtin };
const char* grant_source_name(GrantSource s);  // "default", "config", "approval", "built-in"

// Its implicit moves move strings and JSON values, which do not throw; clang-tidy 14 does not
// see that through nlohmann::json's assertions.
// NOLINTNEXTLINE(bugprone-exception-escape)
struct DimensionDecision {
  std::string key;           // "isolation", "env", "database", "enqueue" or a sandbox key
  nlohmann::json requested;  // null: the manifest does not ask (the default applies)
  nlohmann::json granted;    // the bound of the layer that decided (null when refused)
  nlohmann::json effective;  // what the plugin gets
  GrantSource source = GrantSource::default_value;
  std::string refused;  // non-empty: this request refuses the plugin, and why
};

struct TrustInput {
  std::string name;    // the plugin's name (from its descriptor)
  std::string sha256;  // of its pinned content
  std::string file;    // for messages
  std::vector<std::string> own_kinds;
  nlohmann::json manifest;  // untrusted: the request
  // [plugins.<name>]: host keys (isolation, env, database, enqueue, sha256, replace_kinds), the
  // "sandbox" table, and the plugin's own settings.
  nlohmann::json section;
  // Resolves readable_config_keys / writable_config_keys (null: `section`).
  nlohmann::json plugin_config;
  std::string host_isolation = "sandbox";    // [worker] isolation / --isolation / RUNNER_ISOLATION
  const nlohmann::json* approved = nullptr;  // the request an approval of (name, sha256) recorded
  bool builtin = false;     // a built-in approval (shipped plugin) matches sha256: as config
  int default_workers = 1;  // the host's pool size per plugin (a request above it needs a grant)
  // exec grant (issue 22), computed by the caller (it reads the command files):
  bool exec_plugin = false;                // the shipped exec plugin (built-in approval)
  std::vector<std::string> exec_programs;  // its configured kinds' programs and interpreters
  std::vector<std::string> exec_extra;     // [plugins.<name>.sandbox] exec, with interpreters
  std::string exec_error;                  // non-empty: a command cannot be granted, and why
};

struct TrustDecision {
  std::string isolation = "sandbox";                  // effective: "sandbox" or "none" (in-process)
  Policy policy;                                      // effective sandbox policy and grants
  nlohmann::json sandbox = nlohmann::json::object();  // effective sandbox keys (for resolve())
  std::vector<DimensionDecision> dims;
  std::vector<std::string> refusals;  // empty = accepted
  bool replace_kinds = false;         // [plugins.<name>] replace_kinds

  bool accepted() const { return refusals.empty(); }
  std::string refusal_text() const;  // the refusals joined with "; "
  // The effective policy with config-key paths resolved against the final plugin config.
  Policy resolve(const nlohmann::json& plugin_config) const;
  // {"isolation", "requested", "granted": {key: {value, source}}, "effective", "refused"}.
  nlohmann::json to_json() const;
};

TrustDecision decide_trust(const TrustInput& in);

// The part of a manifest an approval records: its "sandbox", "database" and "enqueue" requests
// (isolation and env are configuration-only, never approved).
nlohmann::json approvable_request(const nlohmann::json& manifest);
// Everything a manifest requests (approvable_request plus "isolation" and "env").
nlohmann::json full_request(const nlohmann::json& manifest);

}  // namespace jr::sandbox
