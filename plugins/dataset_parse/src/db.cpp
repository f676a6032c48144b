#include "dataset_parse/src/db.hpp"

namespace dataset_parse {
namespace {

// schema.sql: the datasets and names tables and their index.
const char* const kSchemaSql =
#include "dataset_parse/schema.sql.inc"
    ;

}  // namespace

ConnectionPool::Lease::~Lease() {
  if (conn_ && keep_ && pool_ != nullptr) pool_->give_back(std::move(conn_));
}

ConnectionPool::Lease ConnectionPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (c->is_open()) return Lease(this, std::move(c));
    }
  }
  return Lease(this, std::make_unique<pqxx::connection>(url_));
}

void ConnectionPool::give_back(std::unique_ptr<pqxx::connection> c) {
  if (!c->is_open()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
}

void create_schema(pqxx::connection& c) {
  pqxx::work tx(c);
  tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kSchemaLockKey) + ")");
  tx.exec(kSchemaSql);
  tx.commit();
}

bool db_error_retryable(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) return true;
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) return true;
  if (const auto* s = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& st = s->sqlstate();
    if (st.size() < 2) return true;  // no SQLSTATE: the connection failed under us
    std::string cls = st.substr(0, 2);
    return !(cls == "22" || cls == "23");
  }
  return true;
}

}  // namespace dataset_parse
