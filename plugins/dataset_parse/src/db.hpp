// Database side of dataset_parse: a small connection pool, the plugin's tables (datasets, names),
// and the classification of libpqxx errors into retryable / permanent.
//
// Threading: ConnectionPool is thread-safe; a Lease (one connection) belongs to one thread.
// ensure_schema() may be called from any thread; the DDL runs once per process under a
// transaction-scoped advisory lock so concurrent runners do not race.
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace dataset_parse {

// pg_advisory_xact_lock key held while creating the tables ("dsparse" in ASCII).
constexpr long long kSchemaLockKey = 0x647370617273650LL;

class ConnectionPool {
 public:
  explicit ConnectionPool(std::string url, size_t max_idle = 16)
      : url_(std::move(url)), max_idle_(max_idle) {}

  // One connection for one thread. Returned to the pool only when keep() was called (i.e. the
  // work on it finished cleanly); otherwise closed, so a connection left mid-COPY or in an
  // aborted state is never reused.
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<pqxx::connection> c)
        : pool_(pool), conn_(std::move(c)) {}
    ~Lease();
    Lease(Lease&&) = default;
    Lease& operator=(Lease&&) = delete;
    pqxx::connection& operator*() { return *conn_; }
    pqxx::connection* operator->() { return conn_.get(); }
    void keep() { keep_ = true; }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<pqxx::connection> conn_;
    bool keep_ = false;
  };

  // Throws pqxx::broken_connection when the database cannot be reached.
  Lease acquire();
  const std::string& url() const { return url_; }

 private:
  void give_back(std::unique_ptr<pqxx::connection> c);

  std::string url_;
  size_t max_idle_;
  std::mutex mu_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;  // guarded by mu_
};

// Creates the datasets and names tables and their index if missing (idempotent).
void create_schema(pqxx::connection& c);

// True when a database error is worth retrying (connection trouble, server shutting down,
// deadlock, serialization failure, out of resources, outcome in doubt); false when the data
// itself was refused (SQLSTATE classes 22 data exception and 23 integrity violation).
bool db_error_retryable(const std::exception& e);

}  // namespace dataset_parse
