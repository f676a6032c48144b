// The uid/gid a plugin's workers run as when the host is root (host side).
//
// Every plugin gets its own: the user the operator names in [plugins.<name>.sandbox] `user`
// (a real account, e.g. one a package created), else a uid allocated for the plugin from a fixed
// range: kUidBase + a stable offset derived from the plugin's name (FNV-1a), gid = uid. No
// /etc/passwd entry is needed. Collisions are resolved in this process (a uid already given to
// another plugin, or one that belongs to an existing user or group, moves to the next slot), so
// the same set of plugins gets the same uids on every start. Offset 0 is the describe uid: the
// short-lived workers that read a plugin file's descriptor before its name is known.
//
// When the allocated uid is not mapped in this process' user namespace (a container with a
// narrow uid_map), workers fall back to `nobody` and the report says "degraded".
//
// Thread-safe (one process-wide registry behind a mutex).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace jr::sandbox {

constexpr uint32_t kUidBase = 2100000000;  // 2.1e9: far above distribution and LDAP ranges
constexpr uint32_t kUidSlots = 1u << 20;   // base .. base + 1,048,575 (below 2^31)

struct WorkerIdentity {
  int64_t uid = -1;  // -1/-1: keep the host's (the host is not root)
  int64_t gid = -1;
  std::string name;     // the user's name in the worker's own /etc/passwd ("jr-<plugin>", ...)
  std::string source;   // "allocated", "configured user NAME", "nobody", "host uid"
  std::string warning;  // non-empty when degraded (shared nobody)
};

// The identity of `plugin`'s workers; `user` = the operator's configured user ("" = allocate).
// Throws SandboxError for an unknown or root `user`.
WorkerIdentity plugin_identity(const std::string& plugin, const std::string& user);

// The identity of describe workers (`user` as above; "" = the describe uid kUidBase).
WorkerIdentity describe_identity(const std::string& user);

// The stable slot of a plugin name (1 .. kUidSlots-1), before collision resolution.
uint32_t uid_slot(const std::string& plugin);

}  // namespace jr::sandbox
