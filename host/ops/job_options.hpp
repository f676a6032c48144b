// Job options as JSON, shared by the HTTP API (POST /api/v1/jobs) and documented beside
// jr_enqueue(): the same names, the same meaning as the CLI flags of `runner enqueue`.
#pragma once

#include <nlohmann/json.hpp>

#include "store.hpp"

namespace jr::ops {

// {"kind": K, "payload": {...}, "queue": Q, "priority": P, "delay_seconds": S, "run_at": T,
//  "max_attempts": N, "timeout_seconds": S, "retry_schedule": "60,300" | [60, 300],
//  "ttl_seconds": S, "result_ttl_seconds": S, "failure_ttl_seconds": S, "unique": bool,
//  "unique_key": K, "lock_key": K, "lock_limit": N, "depends_on": [ids], "webhook": URL}
// Throws std::invalid_argument naming the offending field (unknown fields too).
JobInsertParams job_from_json(const nlohmann::json& body);

// Checks a webhook URL (http or https, a host); throws std::invalid_argument.
void check_webhook_url(const std::string& url);

}  // namespace jr::ops
