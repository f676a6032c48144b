// Helpers shared by the host-side sandbox files (not part of the public surface).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "sandbox.hpp"

namespace jr::sandbox::detail {

// When the host runs as root: the uid/gid workers drop to (`user`, "" = nobody/nogroup).
// Otherwise -1/-1 (the worker keeps the host's uid). Throws SandboxError for an unknown user.
void resolve_user(const std::string& user, int64_t* uid, int64_t* gid);

// Creates an empty private scratch directory owned by uid/gid (when >= 0); returns its path.
std::string make_scratch_dir(const std::string& root, const std::string& plugin, int64_t uid,
                             int64_t gid);

// The Init frame's JSON for a worker.
nlohmann::json init_json(const std::string& mode, const std::string& plugin_path,
                         const Policy& policy, const nlohmann::json& config,
                         const std::string& scratch, int64_t uid, int64_t gid,
                         const SandboxOptions& opts);

}  // namespace jr::sandbox::detail
