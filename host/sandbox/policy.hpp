// A plugin's sandbox policy: what its worker processes may use. Built from the plugin manifest
// ({"sandbox": {...}}) with the host config section [plugins.<name>.sandbox] layered on top.
// Plain value type; parsing is a pure function (throws PolicyError naming the bad key).
#pragma once

#include <cstdint>
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
  int64_t max_jobs = 0;               // recycle a worker after this many jobs; 0 = never
  int64_t max_rss_mb = 0;             // recycle a worker whose peak RSS passed this; 0 = never
  int workers = 0;                    // pool size; 0 = the executor's default (concurrency share)
  int64_t max_open_files = 256;       // RLIMIT_NOFILE
  int64_t max_file_mb = 1024;         // RLIMIT_FSIZE
  int64_t max_threads = 4096;         // RLIMIT_NPROC and pids.max: all the plugin's workers
  int64_t scratch_mb = 256;           // size of each worker's scratch tmpfs (1 .. 1<<20)
  std::string user;                   // uid to run as when the host is root ("" = allocated)

  nlohmann::json to_json() const;
};

// Builds the effective policy: defaults, then the manifest's "sandbox" object, then the host
// config override (`config_override` = the [plugins.<name>.sandbox] table, may be null).
// `plugin_config` resolves "readable_config_keys"/"writable_config_keys": config keys whose
// string values are paths the plugin needs. The "user" key is honoured only from the host
// config (a plugin does not choose its uid). Throws PolicyError on unknown keys or bad values.
Policy make_policy(const nlohmann::json& manifest, const nlohmann::json& config_override,
                   const nlohmann::json& plugin_config);

}  // namespace jr::sandbox
