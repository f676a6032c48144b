// The one parser of job options. `runner enqueue` (its flags turned into this JSON), the HTTP API
// (POST /api/v1/jobs) and the plugin host function (Engine::job_enqueue, jr_host_api::enqueue)
// all build their JobInsertParams here, and jr_enqueue() in SQL (migration 9) accepts exactly
// the same keys with the same rules (tests/ops/ops_db_test.cpp checks both lists agree).
// Everything is checked before the database sees it: types, integer ranges (no wrap-around),
// durations, ISO 8601 times, NUL characters and invalid UTF-8 in every text that could be cut.
//
// Pure functions; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "store.hpp"

namespace jr::ops {

// A field that failed validation. what() is "'field' detail"; field() is the JSON name
// ("priority", "payload", "kind", ...) so the CLI can name its flag instead; detail() names
// the problem and the offending value.
class JobOptionError : public std::invalid_argument {
 public:
  JobOptionError(std::string field, std::string detail)
      : std::invalid_argument("'" + field + "' " + detail),
        field_(std::move(field)),
        detail_(std::move(detail)) {}
  const std::string& field() const { return field_; }
  const std::string& detail() const { return detail_; }

 private:
  std::string field_;
  std::string detail_;
};

// The option keys, as `runner enqueue` names them in JSON (README "Job options"):
// queue, priority, delay_seconds, run_at, max_attempts, timeout_seconds, retry_schedule,
// ttl_seconds, result_ttl_seconds, failure_ttl_seconds, unique, unique_key, lock_key,
// lock_limit, depends_on, webhook, unique_for_seconds, unique_states, replace, debounce_seconds,
// debounce_max_seconds (migration 14), rate_key (migration 15), traceparent (migration 19);
// docs/job-model.md.
const std::vector<std::string>& job_option_keys();

// Limits shared with jr_enqueue() (migration 9).
constexpr int64_t kPriorityLimit = 1000000;         // priority in [-limit, limit]
constexpr int64_t kAttemptsLimit = 1000000;         // max_attempts, lock_limit in [1, limit]
constexpr double kMaxDurationSeconds = 3155760000;  // 100 years: delays, ttls, timeouts
constexpr size_t kMaxNameBytes = 1024;              // queue, unique_key, lock_key
constexpr size_t kMaxUrlBytes = 8192;               // webhook
constexpr size_t kMaxDependencies = 10000;          // depends_on entries

// {"kind": K, "payload": {...}, ...options}: the HTTP API's request body. Unknown keys are
// refused. Throws JobOptionError.
JobInsertParams job_from_json(const nlohmann::json& body);

// A job from its kind, payload and options object (the keys above; null or {} = none).
// Throws JobOptionError.
JobInsertParams job_from_parts(std::string_view kind, const nlohmann::json& payload,
                               const nlohmann::json& options);

// The body of POST /api/v1/batches: {"kind", "payloads": [objects], "options", "on_complete",
// "on_failure"} (each callback null or {"kind", "payload", "options"}), every part checked as
// one job is. Throws JobOptionError naming the part ("payloads[3]", "on_complete.kind", ...).
void check_batch_request(const nlohmann::json& body);

// A job kind: [A-Za-z0-9_.:-]{1,128}, as a plugin declares it. Throws JobOptionError("kind").
void check_kind(std::string_view kind);

// A payload: a JSON object with no NUL character in any string or key (PostgreSQL's jsonb
// cannot store one). Throws JobOptionError("payload").
void check_payload(const nlohmann::json& payload);

// The same check on JSON text without building it (`--payload-file` lines): valid JSON (and so
// valid UTF-8), an object, no NUL. Throws JobOptionError("payload") saying where.
void check_payload_text(std::string_view text);

// True for an ISO 8601 date or date-time PostgreSQL reads as a timestamptz:
// YYYY-MM-DD[(T| )HH:MM[:SS[.fraction]][Z|(+|-)HH[[:]MM]]], with valid field ranges.
bool is_iso8601_time(std::string_view text);

// Checks a webhook URL (http or https, a host, no spaces or control characters); throws
// std::invalid_argument.
void check_webhook_url(const std::string& url);

// A job id written in decimal: 1 .. 2^63-1, digits only. Throws std::invalid_argument naming
// the text.
int64_t parse_job_id(std::string_view text);

}  // namespace jr::ops
