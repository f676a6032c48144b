// PgStore: operations (host/ops, `runner info`): queue depths and throughput, the runners'
// registry and the dashboard's statistics, the webhook outbox. SQL: host/store/sql/ops.sql.
#include "pg_store.hpp"
#include "util.hpp"

namespace jr {

const char* runner_connections_sql() { return sql::fragment::runner_connections; }

std::string PgStore::QueueDepths() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::queue_depths)[0][0].c_str());
  });
}

std::string PgStore::QueueThroughput(double seconds) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::queue_throughput, seconds)[0][0].c_str());
  });
}

std::string PgStore::WorkerList(double live_seconds) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::worker_list, live_seconds)[0][0].c_str());
  });
}

int PgStore::WorkerPruneDead(double older_than_seconds) {
  return in_tx([&](pqxx::work& tx) {
    return static_cast<int>(
        pg::exec(tx, sql::worker_prune_dead, older_than_seconds).affected_rows());
  });
}

void PgStore::WorkerPublish(const std::string& worker_id, const std::string& details_json,
                            const std::vector<int64_t>& minute_starts,
                            const std::vector<std::string>& outcomes,
                            const std::vector<int64_t>& counts, bool prune_stats) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::worker_details, worker_id, details_json);
    if (!minute_starts.empty()) {
      pg::exec(tx, sql::stats_minute_add, pg_int_array(minute_starts), pg_text_array(outcomes),
               pg_int_array(counts));
    }
    if (prune_stats) pg::exec(tx, sql::stats_minute_prune);
    return 0;
  });
}

void PgStore::WebhookUrlsSet(const std::vector<std::string>& served,
                             const std::vector<std::pair<std::string, std::string>>& urls) {
  in_tx([&](pqxx::work& tx) {
    std::vector<std::string> keep;
    for (const auto& [kind, url] : urls) {
      keep.push_back(kind);
      pg::exec(tx, sql::webhook_url_set, kind, url);
    }
    pg::exec(tx, sql::webhook_urls_drop, pg_text_array(served), pg_text_array(keep));
    return 0;
  });
}

std::vector<WebhookDelivery> PgStore::WebhookClaim(const std::string& owner, int limit,
                                                   double lease_seconds) {
  return in_tx([&](pqxx::work& tx) {
    std::vector<WebhookDelivery> out;
    for (const auto& row : pg::exec(tx, sql::webhook_claim, owner, limit, lease_seconds)) {
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
  });
}

void PgStore::WebhookDelivered(int64_t id, int http_status) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::webhook_delivered, id, http_status);
    return 0;
  });
}

void PgStore::WebhookFailed(int64_t id, int http_status, const std::string& error,
                            double retry_in_seconds, int max_attempts) {
  in_tx([&](pqxx::work& tx) {
    pg::exec(tx, sql::webhook_failed, id,
             http_status > 0 ? std::to_string(http_status).c_str() : nullptr, error,
             retry_in_seconds, max_attempts);
    return 0;
  });
}

std::string PgStore::WebhookForJob(int64_t job_id) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return std::string(pg::exec(tx, sql::webhook_for_job, job_id)[0][0].c_str());
  });
}

}  // namespace jr
