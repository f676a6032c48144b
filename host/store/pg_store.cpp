// PostgreSQL implementation of Store (libpqxx 6.4): the connection, its error mapping, schema
// migration and notifications. The methods of each concern are in pg_*.cpp (pg_store.hpp), and
// every statement is in host/store/sql/*.sql.
#include "pg_store.hpp"

#include <poll.h>

#include <atomic>
#include <set>
#include <stdexcept>

#include "mem_store.hpp"
#include "migrations.hpp"
#include "util.hpp"

namespace jr {

namespace pg {
namespace {
std::atomic<bool> g_pgbouncer{false};

bool transient_sqlstate(const std::string& s) {
  // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now;
  // 40001/40P01: serialization failure / deadlock; 53: insufficient resources; 55P03: lock n/a.
  return s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0 || s == "40001" || s == "40P01" ||
         s.rfind("53", 0) == 0 || s == "55P03";
}
}  // namespace

bool pgbouncer() { return g_pgbouncer.load(std::memory_order_relaxed); }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

StoreError store_error(const pqxx::sql_error& e) {
  std::string_view what = e.what();
  if (e.sqlstate() == "22023" && what.find("PL/pgSQL function jr_") != what.npos) {
    // A value refused by the schema's own checks (a jr_ function raised it): bad input.
    // The message without its CONTEXT lines, but with the row of a bulk insert.
    std::string m = trim(std::string(what.substr(0, what.find('\n'))));
    if (m.rfind("ERROR:  ", 0) == 0) m.erase(0, 8);
    size_t at = what.find("COPY jr_jobs, line ");
    if (at != what.npos) {
      std::string_view rest = what.substr(at + 19);
      std::string row(rest.substr(0, rest.find_first_not_of("0123456789")));
      if (!row.empty()) m += " (payload " + row + " of the bulk enqueue)";
    }
    return StoreError(m, false, true);
  }
  return StoreError(std::string("database error: ") + trim(e.what()),
                    transient_sqlstate(e.sqlstate()));
}

}  // namespace pg

void Store::set_pgbouncer(bool on) { pg::g_pgbouncer = on; }
bool Store::pgbouncer() { return pg::pgbouncer(); }

std::vector<Statement> named_statements() {
  std::vector<Statement> out;
  for (const Statement* s : sql::kAll) out.push_back(*s);
  return out;
}

class PgStore::NotifyReceiver : public pqxx::notification_receiver {
 public:
  NotifyReceiver(pqxx::connection_base& c, const std::string& channel)
      : pqxx::notification_receiver(c, channel) {}
  void operator()(const std::string&, int) override { ++count; }
  int count = 0;
};

namespace {
constexpr int64_t kMigrateLockKey = 0x6a6f6272756e0001;  // "jobrun" + 1
}  // namespace

PgStore::PgStore(std::string url) : url_(std::move(url)) { connect(); }

PgStore::~PgStore() {
  receiver_.reset();
  conn_.reset();
}

void PgStore::connect() {
  try {
    conn_ = std::make_unique<pqxx::connection>(url_);
    prepared_ = false;
    pqxx::nontransaction tx(*conn_);
    if (!pg::pgbouncer()) {
      pg::exec(tx, sql::session_no_jit);
      if (async_commit_) pg::exec(tx, sql::session_async_commit);
    } else {
      warn_jit_behind_pgbouncer(tx);
    }
  } catch (const std::exception& e) {
    conn_.reset();
    throw StoreError(std::string("cannot connect to PostgreSQL at ") + log::redact(url_) + ": " +
                         pg::trim(e.what()),
                     true);
  }
}

// Behind PgBouncer in transaction mode a session setting would stick to whichever server
// connection ran it, so the runner cannot turn JIT off for itself: the operator does, for the
// runner's role. Checked once per process, at its first connection.
void PgStore::warn_jit_behind_pgbouncer(pqxx::nontransaction& tx) {
  static std::atomic<bool> checked{false};
  if (checked.exchange(true)) return;  // once per process, not a round trip per connection
  auto r = pg::exec(tx, sql::session_setting, "jit");
  if (r.empty() || r[0][0].is_null() || std::string(r[0][0].c_str()) != "on") return;
  log::warn(
      "jit is on for the runner's database role behind PgBouncer: the claim statement can be "
      "JIT-compiled on every claim (about 20 ms each once the tables have statistics); turn it "
      "off for the role: ALTER ROLE <role> SET jit = off (README, PgBouncer)",
      {{"setting", "jit"}});
}

std::string PgStore::SessionSetting(const std::string& name) {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    auto r = pg::exec(tx, sql::session_setting, name);
    return r.empty() || r[0][0].is_null() ? std::string() : std::string(r[0][0].c_str());
  });
}

void PgStore::drop() {
  receiver_.reset();
  seen_ = 0;
  conn_.reset();
}

void PgStore::prepare_all() {
  for (const Statement* s : sql::kAll) {
    if (s->prepared && !pg::pgbouncer()) conn_->prepare(s->name, s->text);
  }
  prepared_ = true;
}

int PgStore::SchemaMigrate() {
  return guard([&] {
    // Up to date (the common case: every CLI command and runner start): no lock. The lock is
    // on the whole database and any role may take an advisory lock, so not waiting for it
    // when there is nothing to do also means a plugin's role holding it blocks nobody then.
    {
      pqxx::nontransaction probe(*conn_);
      std::vector<int64_t> known;
      for (const auto& m : migrations()) known.push_back(m.version);
      if (!pg::exec(probe, sql::schema_migrations_exist)[0][0].is_null() &&
          pg::exec(probe, sql::schema_migrations_known, pg_int_array(known))[0][0].as<size_t>() ==
              known.size()) {
        return 0;
      }
    }
    pqxx::work tx(*conn_);
    pg::exec(tx, sql::schema_migrate_lock, kMigrateLockKey);
    pg::exec(tx, sql::schema_migrations_create);
    // Every migration not applied yet, in version order: a set, not "above the maximum", so a
    // migration that lands after a higher-numbered one (parallel branches) is still applied.
    std::set<int> done;
    for (const auto& row : pg::exec(tx, sql::schema_migrations_applied)) {
      done.insert(row[0].as<int>());
    }
    int applied = 0;
    for (const auto& m : migrations()) {
      if (done.count(m.version)) continue;
      tx.exec(m.sql);  // several statements: the simple query protocol
      pg::exec(tx, sql::schema_migration_record, m.version, m.name);
      ++applied;
    }
    if (applied > 0) tx.exec(privileges_sql());
    tx.commit();
    if (applied > 0) prepare_all();
    return applied;
  });
}

int PgStore::SchemaVersion() {
  return guard([&] {
    pqxx::nontransaction tx(*conn_);
    return pg::exec(tx, sql::schema_version)[0][0].as<int>();
  });
}

void PgStore::SessionAsyncCommit() {
  async_commit_ = true;
  if (pg::pgbouncer()) return;  // per transaction instead (JobHeartbeatHeld)
  guard([&] {
    pqxx::nontransaction tx(*conn_);
    pg::exec(tx, sql::session_async_commit);
    return 0;
  });
}

void PgStore::Listen() {
  guard([&] {
    if (!receiver_) receiver_ = std::make_unique<NotifyReceiver>(*conn_, "jr_jobs");
    return 0;
  });
}

// Notifications count as seen once a wait reports them (`seen_`), wherever they were read
// (LostWhileIdle reads them too), so none is lost between a read and the next wait.
bool PgStore::WaitForJobs(int timeout_ms) {
  return guard([&] {
    if (!receiver_) receiver_ = std::make_unique<NotifyReceiver>(*conn_, "jr_jobs");
    auto fresh = [&] {
      bool got = receiver_->count != seen_;
      seen_ = receiver_->count;
      return got;
    };
    conn_->get_notifs();
    if (receiver_->count != seen_ || timeout_ms <= 0) return fresh();
    conn_->await_notification(timeout_ms / 1000, (timeout_ms % 1000) * 1000L);
    return fresh();
  });
}

bool PgStore::LostWhileIdle() {
  if (!conn_ || !conn_->is_open()) return true;
  pollfd p{};
  p.fd = conn_->sock();
  p.events = POLLIN;
  if (p.fd < 0) return true;
  // Readable or hung up with nothing asked: the backend went away (or sent a notice, which
  // costs one needless reconnect, no error) ...
  if (::poll(&p, 1, 0) <= 0) return false;
  if (!receiver_) return true;
  // ... or, LISTENing, sent a notification: reading it tells the two apart (a closed or broken
  // connection throws), and the notification waits for the next WaitForJobs.
  try {
    conn_->get_notifs();
  } catch (const std::exception&) {
    return true;
  }
  return !conn_->is_open();
}

void* PgStore::NativeHandle() {
  return guard([&] { return static_cast<void*>(conn_.get()); });
}

bool PgStore::Ping() {
  try {
    return guard([&] {
      pqxx::nontransaction tx(*conn_);
      pg::exec(tx, sql::ping);
      return true;
    });
  } catch (const StoreError&) {
    return false;
  }
}

std::unique_ptr<Store> Store::open(const std::string& url) {
  if (is_memory_url(url)) return open_memory_store(url);  // tests: mem_store.hpp
  return std::make_unique<PgStore>(url);
}

}  // namespace jr
