// Running helper programs (initdb, pg_ctl) from the host: fork + exec with an optional switch to
// an unprivileged user, output captured. Call only where forking is safe (the child only execs).
#pragma once

#include <string>
#include <vector>

namespace jr {

struct CommandResult {
  int exit_code = -1;  // -1: could not run; 128+N: killed by signal N
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (a path) with args. When `as_user` is non-empty and we are root, the child drops
// to that user (and its primary group) before exec.
CommandResult run_command(const std::vector<std::string>& argv, const std::string& as_user = "");

}  // namespace jr
