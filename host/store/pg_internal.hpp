// Internal to the PostgreSQL store: statement helpers shared by pg_store.cpp and the files that
// hold its larger SQL (pg_claim.cpp, pg_flow.cpp). Every function runs inside the caller's
// transaction and throws libpqxx errors, which PgStore turns into StoreError.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "store.hpp"

namespace jr::pg {

// Named statements. By default each is prepared once per connection (exec_prepared). With
// PgBouncer in transaction pooling mode (Store::set_pgbouncer) a named prepared statement would
// live in whichever server session happened to serve the PREPARE, so every statement is sent
// with its text instead (exec_params: an unnamed statement, parsed in the same round trip).
bool pgbouncer();
// Records the statement's text (the first definition of a name wins: texts never change) and
// prepares it on `c` unless in PgBouncer mode.
void define(pqxx::connection_base& c, const std::string& name, const std::string& sql);
const std::string& statement_text(const std::string& name);
template <class... Args>
pqxx::result exec_stmt(pqxx::transaction_base& tx, const std::string& name, Args&&... args) {
  if (pgbouncer()) return tx.exec_params(statement_text(name), std::forward<Args>(args)...);
  return tx.exec_prepared(name, std::forward<Args>(args)...);
}

// Claims jobs (fair across queues, lock keys honoured, paused queues and rate limits obeyed).
std::vector<ClaimedJob> claim(pqxx::work& tx, const JobClaimParams& p);
// The common case as one autocommit statement: no rate limit for our kinds or any queue, no
// lock-keyed job among the picks. Otherwise sets need_slow (whatever it did claim is returned)
// and the caller claims the rest with claim() in a transaction.
std::vector<ClaimedJob> claim_fast(pqxx::nontransaction& tx, const JobClaimParams& p,
                                   bool& need_slow);
void prepare_claim(pqxx::connection_base& c);

std::pair<int, int> resolve_dependencies(pqxx::work& tx, int limit);
int age_priorities(pqxx::work& tx, double seconds_per_point, int limit);

const char* opt(const std::optional<std::string>& s);

void cron_upsert(pqxx::work& tx, const std::vector<CronEntry>& entries);
int cron_run(pqxx::work& tx, const Store::CronNext& next);

}  // namespace jr::pg
