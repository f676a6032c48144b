// `runner info`: queues (depth per state and jobs finished in the last minute), live runners
// (host, pid, kinds, queues, started, last heartbeat, jobs done) and throughput, like `rq info`.
#pragma once

#include <string>

#include "store.hpp"

namespace jr::ops {

struct InfoOptions {
  bool json = false;
  bool watch = false;          // refresh every second until interrupted
  double stale_seconds = 30;   // runners without a heartbeat this long are hidden
  double window_seconds = 60;  // throughput window
};

// The snapshot as JSON: {"queues": [...], "workers": [...], "throughput": {...}}.
std::string info_json(Store& store, const InfoOptions& o);
// The snapshot as text tables.
std::string info_text(const std::string& snapshot_json);
// Prints once, or every second with `watch` (Ctrl-C ends it). Returns the exit code.
int run_info(Store& store, const InfoOptions& o);

}  // namespace jr::ops
