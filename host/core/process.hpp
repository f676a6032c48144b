// Running helper programs (initdb, pg_ctl) from the host: fork + exec with an optional switch to
// an unprivileged user, output captured. Call only where forking is safe (the child only execs).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace jr {

// A user's uid and primary group, or nothing if there is no such user. Reentrant (getpwnam_r):
// the runner looks users up from several threads (plugins are described in parallel, the
// managed cluster starts beside them), and getpwnam's static result is shared by all of them.
struct UserIds {
  uid_t uid = 0;
  gid_t gid = 0;
};
std::optional<UserIds> find_user(const std::string& name);
// A group's gid, or nothing (getgrnam_r).
std::optional<gid_t> find_group(const std::string& name);

struct CommandResult {
  int exit_code = -1;  // -1: could not run; 128+N: killed by signal N
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (a path) with args. When `as_user` is non-empty and we are root, the child drops
// to that user (and its primary group) before exec.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& as_user = "");

}  // namespace jr
