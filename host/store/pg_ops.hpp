// SQL of the operations Store methods (queue depths, throughput, worker registry, webhook
// outbox). PgStore (host/store/pg_store.cpp) wraps each in its error guard; each runs in the
// caller's transaction and throws libpqxx errors.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "store.hpp"

namespace jr::pg_ops {

std::string queue_depths(pqxx::transaction_base& tx);
std::string queue_throughput(pqxx::transaction_base& tx, double seconds);
// SQL expression: the database sessions of the runner of jr_workers row `w`, counted in
// pg_stat_activity by the application_name it gives them ("jobrunner PID@HOST", cut at 63
// bytes: ops/ui_publish.hpp). Used by `runner info` and the dashboard's runner list.
extern const char* const kRunnerConnectionsSql;
std::string worker_list(pqxx::transaction_base& tx, double live_seconds);
// The dashboard publisher's write (ops/ui_publish.hpp): the runner's details, and attempts
// finished per minute added to jr_stats_minute; with `prune_stats`, rows older than a day go.
void worker_publish(pqxx::transaction_base& tx, const std::string& worker_id,
                    const std::string& details_json, const std::vector<int64_t>& minute_starts,
                    const std::vector<std::string>& outcomes, const std::vector<int64_t>& counts,
                    bool prune_stats);
int worker_prune_dead(pqxx::transaction_base& tx, double older_than_seconds);
void webhook_urls_set(pqxx::transaction_base& tx, const std::vector<std::string>& served,
                      const std::vector<std::pair<std::string, std::string>>& urls);
std::vector<WebhookDelivery> webhook_claim(pqxx::transaction_base& tx, const std::string& owner,
                                           int limit, double lease_seconds);
void webhook_delivered(pqxx::transaction_base& tx, int64_t id, int http_status);
void webhook_failed(pqxx::transaction_base& tx, int64_t id, int http_status,
                    const std::string& error, double retry_in_seconds, int max_attempts);
std::string webhook_for_job(pqxx::transaction_base& tx, int64_t job_id);

}  // namespace jr::pg_ops
