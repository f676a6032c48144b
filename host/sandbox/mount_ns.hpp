// Worker side: the worker's own mount namespace with a minimal root, and its size-limited
// scratch area. Called by confine() as root, before the uid drop (mounting needs
// CAP_SYS_ADMIN), after the network namespace.
//
// The new root is a small tmpfs, read-only once built, holding exactly:
//   /usr, /lib* (bind mounts, read-only; /lib* recreated as symlinks where they are ones)
//   /etc: ld.so.cache, localtime, ssl/ (and resolv.conf, hosts, nsswitch.conf, gai.conf,
//         host.conf, services, protocols when the policy grants a network); passwd and group
//         written for it: root, nobody/nogroup and the worker's own user (libraries such as
//         libpq look the running uid up, and an allocated uid has no entry on the host)
//   /dev: null (read-write), zero, random, urandom; fd, stdin, stdout, stderr symlinks
//   /proc: a procfs of its own with hidepid=invisible,subset=pid (only processes of the
//          worker's uid, and only the ones it may ptrace: itself; no /proc/sys, /proc/kcore...)
//   /sys/devices/system/cpu (read-only, for the CPU count)
//   the policy's `readable` (read-only) and `writable` (read-write) paths, and the directories
//   of the unix sockets the host names (a database socket), read-only, at their own paths
//   the scratch dir: a fresh tmpfs of `scratch_mb` (mode 0700, owned by the worker's uid,
//   nosuid, nodev, noexec) at the path the host created, so TMPDIR/HOME keep their value
// Nothing else exists in it: stat, inotify or open of any other name fails with ENOENT, and the
// plugin's own directory is not there (the plugin is loaded from fd 5). Landlock still applies
// on top. Mounts are private: nothing propagates back to the host.
//
// Single-threaded (the worker's main thread, before any plugin code).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace jr::sandbox {

struct RootSpec {
  std::vector<std::string> readable;     // read-only bind mounts (absolute paths)
  std::vector<std::string> writable;     // read-write bind mounts
  std::vector<std::string> socket_dirs;  // read-only bind mounts (unix socket directories)
  bool network = false;                  // the network files in /etc
  std::string scratch_dir;               // tmpfs mounted here ("" = none)
  int64_t scratch_mb = 0;
  int64_t uid = -1;  // owner of the scratch tmpfs, and the user in its /etc/passwd
  int64_t gid = -1;
  std::string user_name;          // that user's name in /etc/passwd and /etc/group
  bool simulate_missing = false;  // tests: behave as if mount namespaces were unavailable
};

// Builds the root and switches to it. Sets layers["mount_ns"] and layers["scratch"]; appends a
// warning per degraded part. Returns false when the worker stays in the host's view of the
// filesystem (not root, no mount namespaces): the scratch dir is then the host's directory,
// without a size limit.
bool enter_minimal_root(const RootSpec& spec, nlohmann::json& layers,
                        std::vector<std::string>& warnings);

}  // namespace jr::sandbox
