// Kind ownership across runners: jr_kinds records which plugin (name and content SHA-256) serves
// each job kind (column plugin_sha256, migration v8). A runner whose plugin for a kind has a
// different *name* than the recorded one refuses that kind (it is not served, error log) unless
// the operator set [plugins.<name>] replace_kinds = true; the same name with new content is an
// upgrade: accepted, recorded, logged at info.
//
// Stateless functions; each opens its own connection. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace jr {

struct KindClaim {
  std::string kind;
  std::string plugin;    // its plugin's name
  std::string sha256;    // its plugin's content
  bool replace = false;  // [plugins.<name>] replace_kinds
  // The kind's defaults, written with a new row so that `runner enqueue` sees the default queue
  // as soon as the kind is recorded (the engine upserts them again when it starts).
  std::string default_queue;  // "" = none
  int64_t timeout_ms = 0;     // 0 = none
  int max_attempts = 0;       // 0 = none
  std::vector<int> retry_schedule;
};

struct KindVerdict {
  std::string kind;
  bool serve = true;
  std::string previous_plugin;  // the recorded owner before this claim ("" = none)
  std::string previous_sha256;
  std::string message;  // what happened, for the log ("" = nothing new)
  std::string level;    // "info", "warn" or "error" (refused)
};

// Records or checks every claim in one transaction (rows locked, so two runners starting at
// once cannot both take a new kind). Throws StoreError.
std::vector<KindVerdict> claim_kinds(const std::string& database_url,
                                     const std::vector<KindClaim>& claims);

// Migrates the schema, then claim_kinds(), retrying with backoff (logged) while the database is
// unreachable. SIGINT/SIGTERM must be blocked in the calling process: one arriving meanwhile
// stops the wait and returns std::nullopt (the signal is consumed). Logs each verdict.
std::optional<std::vector<KindVerdict>> claim_kinds_at_start(const std::string& database_url,
                                                             const std::vector<KindClaim>& claims);

}  // namespace jr
