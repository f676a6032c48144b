#include "pg_ops.hpp"

#include "util.hpp"

namespace jr::pg_ops {

namespace {
// {"queue": {"state": n, ...}, ...} from rows of (queue, state, count).
const char* kNest = R"SQL(
  SELECT coalesce(jsonb_object_agg(queue, states), '{}')::text
    FROM (SELECT queue, jsonb_object_agg(state, n) AS states FROM c GROUP BY queue) q)SQL";
}  // namespace

std::string queue_depths(pqxx::transaction_base& tx) {
  auto r = tx.exec(
      std::string("WITH c AS (SELECT queue, state, count(*) AS n FROM jr_jobs GROUP BY 1, 2)") +
      kNest);
  return r[0][0].c_str();
}

std::string queue_throughput(pqxx::transaction_base& tx, double seconds) {
  auto r = tx.exec_params(
      std::string("WITH c AS (SELECT queue, state, count(*) AS n FROM jr_jobs_done WHERE state "
                  "IN ('completed', 'discarded', 'cancelled') AND finished_at > now() - "
                  "make_interval(secs => $1) GROUP BY 1, 2)") +
          kNest,
      seconds);
  return r[0][0].c_str();
}

const char* const kRunnerConnectionsSql =
    "(SELECT count(*) FROM pg_stat_activity a "
    "WHERE a.application_name = left('jobrunner ' || w.pid || '@' || w.host, 63))";

std::string worker_list(pqxx::transaction_base& tx, double live_seconds) {
  auto r = tx.exec_params(
      std::string(
          "SELECT coalesce(json_agg(json_build_object('id', id, 'host', host, 'pid', pid, "
          "'kinds', kinds, 'queues', queues, 'started_at', started_at, 'heartbeat_at', "
          "heartbeat_at, 'heartbeat_age_seconds', extract(epoch from now() - heartbeat_at), "
          "'jobs_done', jobs_done, 'connections', ") +
          kRunnerConnectionsSql +
          ") ORDER BY started_at, id), '[]')::text FROM jr_workers w WHERE heartbeat_at > "
          "now() - make_interval(secs => $1)",
      live_seconds);
  return r[0][0].c_str();
}

void worker_publish(pqxx::transaction_base& tx, const std::string& worker_id,
                    const std::string& details_json, const std::vector<int64_t>& minute_starts,
                    const std::vector<std::string>& outcomes, const std::vector<int64_t>& counts,
                    bool prune_stats) {
  tx.exec_params("UPDATE jr_workers SET details = $2::jsonb WHERE id = $1", worker_id,
                 details_json);
  if (!minute_starts.empty()) {
    tx.exec_params(
        "INSERT INTO jr_stats_minute (minute, outcome, count) SELECT to_timestamp(m), o, n FROM "
        "unnest($1::bigint[], $2::text[], $3::bigint[]) AS u(m, o, n) ON CONFLICT (minute, "
        "outcome) DO UPDATE SET count = jr_stats_minute.count + EXCLUDED.count",
        pg_int_array(minute_starts), pg_text_array(outcomes), pg_int_array(counts));
  }
  if (prune_stats) tx.exec("DELETE FROM jr_stats_minute WHERE minute < now() - interval '1 day'");
}

int worker_prune_dead(pqxx::transaction_base& tx, double older_than_seconds) {
  auto r = tx.exec_params(
      "DELETE FROM jr_workers WHERE heartbeat_at < now() - make_interval(secs => $1)",
      older_than_seconds);
  return static_cast<int>(r.affected_rows());
}

void webhook_urls_set(pqxx::transaction_base& tx, const std::vector<std::string>& served,
                      const std::vector<std::pair<std::string, std::string>>& urls) {
  std::vector<std::string> keep;
  for (const auto& [kind, url] : urls) {
    keep.push_back(kind);
    tx.exec_params(
        "INSERT INTO jr_webhooks (kind, url) VALUES ($1, $2) ON CONFLICT (kind) DO UPDATE SET "
        "url = EXCLUDED.url, updated_at = now() WHERE jr_webhooks.url <> EXCLUDED.url",
        kind, url);
  }
  tx.exec_params(
      "DELETE FROM jr_webhooks WHERE kind = ANY($1::text[]) AND NOT kind = ANY($2::text[])",
      pg_text_array(served), pg_text_array(keep));
}

std::vector<WebhookDelivery> webhook_claim(pqxx::transaction_base& tx, const std::string& owner,
                                           int limit, double lease_seconds) {
  auto r = tx.exec_params(R"SQL(
    WITH due AS (SELECT id FROM jr_webhook_deliveries
                  WHERE state = 'pending' AND next_attempt_at <= now()
                    AND (locked_until IS NULL OR locked_until < now())
                  ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
    UPDATE jr_webhook_deliveries d
       SET locked_by = $1, locked_until = now() + make_interval(secs => $3)
      FROM due WHERE d.id = due.id
    RETURNING d.id, d.job_id, d.event, d.url, d.body, d.attempts)SQL",
                          owner, limit, lease_seconds);
  std::vector<WebhookDelivery> out;
  for (const auto& row : r) {
    WebhookDelivery d;
    d.id = row[0].as<int64_t>();
    d.job_id = row[1].as<int64_t>();
    d.event = row[2].c_str();
    d.url = row[3].c_str();
    d.body = row[4].c_str();
    d.attempts = row[5].as<int>();
    out.push_back(std::move(d));
  }
  return out;
}

void webhook_delivered(pqxx::transaction_base& tx, int64_t id, int http_status) {
  tx.exec_params(
      "UPDATE jr_webhook_deliveries SET state = 'delivered', attempts = attempts + 1, "
      "last_status = $2, last_error = NULL, delivered_at = now(), locked_by = NULL, "
      "locked_until = NULL WHERE id = $1",
      id, http_status);
}

void webhook_failed(pqxx::transaction_base& tx, int64_t id, int http_status,
                    const std::string& error, double retry_in_seconds, int max_attempts) {
  tx.exec_params(
      "UPDATE jr_webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error "
      "= $3, state = CASE WHEN attempts + 1 >= $5 THEN 'failed' ELSE 'pending' END, "
      "next_attempt_at = now() + make_interval(secs => $4), locked_by = NULL, locked_until = "
      "NULL WHERE id = $1",
      id, http_status > 0 ? std::to_string(http_status).c_str() : nullptr, error, retry_in_seconds,
      max_attempts);
}

std::string webhook_for_job(pqxx::transaction_base& tx, int64_t job_id) {
  auto r = tx.exec_params(
      "SELECT coalesce(json_agg(json_build_object('id', id, 'event', event, 'url', url, "
      "'state', state, 'attempts', attempts, 'last_status', last_status, 'last_error', "
      "last_error, 'next_attempt_at', CASE WHEN state = 'pending' THEN next_attempt_at END, "
      "'created_at', created_at, 'delivered_at', delivered_at) ORDER BY id), '[]')::text FROM "
      "jr_webhook_deliveries WHERE job_id = $1",
      job_id);
  return r[0][0].c_str();
}

}  // namespace jr::pg_ops
