#include "domain_check/src/domain_store.hpp"

#include <algorithm>

#include "domain_check/src/utf8_text.hpp"

namespace domain_check {
namespace {

// pg_advisory_xact_lock key for schema creation: "domchk" in ASCII.
constexpr long long kSchemaLockKey = 0x646f6d63686bLL;

const char* kSchemaSql =
#include "domain_check/schema.sql.inc"
    ;

// A text[] literal for `= ANY($1::text[])`; elements are double-quoted and escaped.
std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

}  // namespace

// Returns its connection to the pool unless the connection broke while leased.
class DomainStore::Lease {
 public:
  explicit Lease(DomainStore& s) : s_(s), c_(s.acquire()) {}
  ~Lease() {
    if (c_ && c_->is_open()) s_.release(std::move(c_));
  }
  pqxx::connection& operator*() { return *c_; }
  void discard() { c_.reset(); }

 private:
  DomainStore& s_;
  std::unique_ptr<pqxx::connection> c_;
};

DomainStore::DomainStore(std::string url, size_t pool_size)
    : url_(std::move(url)), pool_size_(std::max<size_t>(1, pool_size)) {}

DomainStore::~DomainStore() = default;

std::unique_ptr<pqxx::connection> DomainStore::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  return std::make_unique<pqxx::connection>(url_);
}

void DomainStore::release(std::unique_ptr<pqxx::connection> c) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < pool_size_) idle_.push_back(std::move(c));
}

void DomainStore::ensure_schema() {
  std::lock_guard<std::mutex> lock(schema_mu_);
  if (schema_ready_) return;
  Lease conn(*this);
  try {
    pqxx::work tx(*conn);
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kSchemaLockKey) + ")");
    tx.exec(kSchemaSql);
    tx.commit();
  } catch (...) {
    conn.discard();
    throw;
  }
  schema_ready_ = true;
}

namespace {

// SQLSTATE classes that depend on one row's values rather than on the database's condition:
// 22 data exception, 23 integrity constraint violation, 54 program limit exceeded.
bool row_error(const pqxx::sql_error& e) {
  const std::string& s = e.sqlstate();
  return s.rfind("22", 0) == 0 || s.rfind("23", 0) == 0 || s.rfind("54", 0) == 0;
}

std::string values_tuple(pqxx::transaction_base& tx, const DomainResult& r) {
  nlohmann::json details = r.details;
  details["latency_ms"] = r.latency_ms;
  if (!r.reason.empty()) details["reason"] = r.reason;
  make_storable(details);
  return "(" + tx.quote(to_utf8(r.name)) + "," + tx.quote(r.status) + "," +
         (r.method.empty() ? std::string("NULL") : tx.quote(r.method)) + "," +
         tx.quote(r.checked_at) + "::timestamptz," +
         tx.quote(details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) +
         "::jsonb)";
}

const char* const kUpsertHead =
    "INSERT INTO domains (name, status, method, checked_at, details) VALUES ";
const char* const kUpsertTail =
    " ON CONFLICT (name) DO UPDATE SET status = EXCLUDED.status, method = EXCLUDED.method,"
    " checked_at = EXCLUDED.checked_at, details = EXCLUDED.details,"
    " recheck_enqueued_at = NULL"
    " WHERE domains.checked_at <= EXCLUDED.checked_at";

}  // namespace

UpsertReport DomainStore::upsert(const std::vector<DomainResult>& results) {
  ensure_schema();
  UpsertReport report;
  std::vector<const DomainResult*> rows;
  for (const auto& r : results) {
    if (r.status != "invalid" && !r.name.empty()) rows.push_back(&r);
  }
  // One row per name (the payload may repeat a name), in name order so that two jobs writing
  // overlapping sets lock rows in the same order and cannot deadlock.
  std::sort(rows.begin(), rows.end(),
            [](const DomainResult* a, const DomainResult* b) { return a->name < b->name; });
  rows.erase(
      std::unique(rows.begin(), rows.end(),
                  [](const DomainResult* a, const DomainResult* b) { return a->name == b->name; }),
      rows.end());
  if (rows.empty()) return report;
  Lease conn(*this);
  try {
    pqxx::work tx(*conn);
    constexpr size_t kChunk = 500;
    for (size_t start = 0; start < rows.size(); start += kChunk) {
      size_t end = std::min(rows.size(), start + kChunk);
      std::string sql = kUpsertHead;
      for (size_t i = start; i < end; ++i) {
        if (i > start) sql += ',';
        sql += values_tuple(tx, *rows[i]);
      }
      try {
        pqxx::subtransaction chunk(tx, "chunk");
        chunk.exec(sql + kUpsertTail);
        chunk.commit();
        report.written += end - start;
        continue;
      } catch (const pqxx::sql_error& e) {
        if (!row_error(e)) throw;
      }
      // Some row of this chunk was refused: write them one by one, each behind a savepoint.
      for (size_t i = start; i < end; ++i) {
        const DomainResult& r = *rows[i];
        try {
          pqxx::subtransaction one(tx, "row");
          one.exec(kUpsertHead + values_tuple(tx, r) + kUpsertTail);
          one.commit();
          ++report.written;
          continue;
        } catch (const pqxx::sql_error& e) {
          if (!row_error(e)) throw;
          std::string why = e.what();
          while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
          report.failed[r.name] = to_utf8(why);
        }
        DomainResult stand_in;
        stand_in.name = r.name;
        stand_in.status = "unknown";
        stand_in.reason = "not stored";
        stand_in.checked_at = iso8601_now();
        stand_in.details["error"] = report.failed[r.name];
        try {
          pqxx::subtransaction one(tx, "stand_in");
          one.exec(kUpsertHead + values_tuple(tx, stand_in) + kUpsertTail);
          one.commit();
          ++report.written;
        } catch (const pqxx::sql_error& e) {
          if (!row_error(e)) throw;
        }
      }
    }
    tx.commit();
  } catch (const pqxx::broken_connection&) {
    conn.discard();
    throw;
  }
  return report;
}

RecheckOutcome DomainStore::recheck_stale(
    const RecheckParams& p, const std::function<void(const std::vector<std::string>&)>& enqueue) {
  ensure_schema();
  RecheckOutcome out;
  Lease conn(*this);
  try {
    pqxx::work tx(*conn);
    long long limit = static_cast<long long>(p.batch_size) * p.max_batches;
    // A domain already handed to a recheck job is skipped until that job writes a new
    // checked_at (which clears the mark) or the mark itself is older than the interval (the job
    // was lost), so a domain is never in two pending recheck jobs.
    std::string days = std::to_string(p.interval_days);
    pqxx::result rows = tx.exec(
        "SELECT name FROM domains"
        " WHERE status <> 'invalid'"
        "   AND checked_at < now() - make_interval(days => " +
        days +
        ")"
        "   AND (recheck_enqueued_at IS NULL"
        "        OR recheck_enqueued_at < now() - make_interval(days => " +
        days +
        "))"
        " ORDER BY checked_at, name"
        " LIMIT " +
        std::to_string(limit) + " FOR UPDATE SKIP LOCKED");
    std::vector<std::string> names;
    names.reserve(rows.size());
    for (const auto& row : rows) names.push_back(row[0].as<std::string>());
    std::vector<std::string> enqueued;
    for (size_t start = 0; start < names.size(); start += static_cast<size_t>(p.batch_size)) {
      std::vector<std::string> batch(
          names.begin() + static_cast<std::ptrdiff_t>(start),
          names.begin() + static_cast<std::ptrdiff_t>(
                              std::min(names.size(), start + static_cast<size_t>(p.batch_size))));
      try {
        enqueue(batch);
      } catch (const std::exception& e) {
        out.error = e.what();
        break;
      }
      enqueued.insert(enqueued.end(), batch.begin(), batch.end());
      ++out.jobs;
    }
    if (!enqueued.empty()) {
      tx.exec("UPDATE domains SET recheck_enqueued_at = now() WHERE name = ANY(" +
              tx.quote(text_array(enqueued)) + "::text[])");
    }
    tx.commit();
    out.domains = static_cast<int>(enqueued.size());
  } catch (const pqxx::broken_connection&) {
    conn.discard();
    throw;
  }
  return out;
}

}  // namespace domain_check
