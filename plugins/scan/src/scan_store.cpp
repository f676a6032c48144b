#include "scan/src/scan_store.hpp"

#include <pqxx/pqxx>

namespace scan {

namespace {
// pg_advisory_xact_lock key for schema creation ("SCAN" in ASCII, plus 1).
constexpr int64_t kSchemaLockKey = 0x5343414E0001LL;
// Class id of the per-scan session locks: pg_try_advisory_lock(kScanLockClass, hashtext(id)).
constexpr int kScanLockClass = 0x5343;
}  // namespace

const char* const kScanJobsDdl =
#include "scan/schema.sql.inc"
    ;

ScanStore::Lease::Lease(ScanStore* store, std::unique_ptr<pqxx::connection> c)
    : store_(store), conn_(std::move(c)) {}
ScanStore::Lease::Lease(Lease&& o) noexcept : store_(o.store_), conn_(std::move(o.conn_)) {}
ScanStore::Lease::~Lease() {
  if (conn_ && store_) store_->release(std::move(conn_));
}

ScanStore::ScanStore(std::string url, size_t max_idle)
    : url_(std::move(url)), max_idle_(max_idle) {}
ScanStore::~ScanStore() = default;

ScanStore::Lease ScanStore::acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return Lease(this, std::move(c));
    }
  }
  return Lease(this, std::make_unique<pqxx::connection>(url_));
}

void ScanStore::release(std::unique_ptr<pqxx::connection> c) {
  if (!c->is_open()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(c));
}

void ScanStore::ensure_schema(pqxx::connection& c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (schema_ready_) return;
  }
  pqxx::work w(c);
  w.exec_params("SELECT pg_advisory_xact_lock($1)", kSchemaLockKey);
  w.exec(kScanJobsDdl);
  w.commit();
  std::lock_guard<std::mutex> lock(mu_);
  schema_ready_ = true;
}

std::string jsonb_text(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.find("\\u0000") == std::string::npos) return s;
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      if (s.compare(i, 6, "\\u0000") == 0) {
        i += 5;
        continue;
      }
      out.push_back(s[i]);
      out.push_back(s[++i]);
      continue;
    }
    out.push_back(s[i]);
  }
  return out;
}

namespace {

nlohmann::json json_or_null(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return nlohmann::json::parse(f.c_str());
}

std::string str_or_empty(const pqxx::field& f) { return f.is_null() ? "" : f.c_str(); }

}  // namespace

ScanRow scan_load_or_create(pqxx::connection& c, const std::string& id, const std::string& url,
                            const std::string& user_id, int64_t ttl_seconds) {
  pqxx::work w(c);
  w.exec_params(
      "INSERT INTO scan_jobs (id, url, user_id, status, progress, created_at, expires_at) "
      "VALUES ($1, $2, NULLIF($3, ''), 'QUEUED', 0, now(), now() + make_interval(secs => $4)) "
      "ON CONFLICT (id) DO NOTHING",
      id, url, user_id, static_cast<double>(ttl_seconds));
  pqxx::result r = w.exec_params(
      "SELECT id, url, user_id, status, step, progress, teaser, result, state, error_state, "
      "error_message FROM scan_jobs WHERE id = $1",
      id);
  w.commit();
  ScanRow row;
  const pqxx::row& f = r.at(0);
  row.id = f[0].c_str();
  row.url = f[1].c_str();
  row.user_id = str_or_empty(f[2]);
  row.status = f[3].c_str();
  row.step = str_or_empty(f[4]);
  row.progress = f[5].as<int>();
  row.teaser = json_or_null(f[6]);
  row.result = json_or_null(f[7]);
  row.state = json_or_null(f[8]);
  row.error_state = str_or_empty(f[9]);
  row.error_message = str_or_empty(f[10]);
  return row;
}

bool scan_try_lock(pqxx::connection& c, const std::string& id) {
  pqxx::nontransaction n(c);
  return n.exec_params("SELECT pg_try_advisory_lock($1, hashtext($2))", kScanLockClass, id)[0][0]
      .as<bool>();
}

void scan_unlock(pqxx::connection& c, const std::string& id) {
  pqxx::nontransaction n(c);
  n.exec_params("SELECT pg_advisory_unlock($1, hashtext($2))", kScanLockClass, id);
}

void scan_write_status(pqxx::connection& c, const std::string& id, const std::string& status,
                       const std::string& step, int progress, int64_t job_id) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET status = $2, step = $3, progress = $4, error_state = NULL, "
      "error_message = NULL, updated_at = now(), "
      "job_id = CASE WHEN $5 > 0 THEN $5 ELSE job_id END WHERE id = $1",
      id, status, step, progress, job_id);
  w.commit();
}

void scan_write_state(pqxx::connection& c, const std::string& id, const nlohmann::json& state,
                      int progress) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET state = $2::jsonb, progress = $3, updated_at = now() "
      "WHERE id = $1",
      id, jsonb_text(state), progress);
  w.commit();
}

void scan_write_teaser(pqxx::connection& c, const std::string& id, const nlohmann::json& teaser,
                       const nlohmann::json& state, int progress) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET status = 'TEASER_READY', step = 'GENERATE', progress = $4, "
      "teaser = $2::jsonb, state = $3::jsonb, updated_at = now() WHERE id = $1",
      id, jsonb_text(teaser), jsonb_text(state), progress);
  w.commit();
}

void scan_write_result(pqxx::connection& c, const std::string& id, const nlohmann::json& result) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET status = 'FULL_READY', step = 'GENERATE', progress = 100, "
      "result = $2::jsonb, state = NULL, error_state = NULL, error_message = NULL, "
      "updated_at = now() WHERE id = $1",
      id, jsonb_text(result));
  w.commit();
}

void scan_write_error(pqxx::connection& c, const std::string& id, const std::string& error_state,
                      const std::string& message) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET status = $2, error_state = $2, error_message = $3, updated_at = now() "
      "WHERE id = $1",
      id, error_state, message);
  w.commit();
}

void scan_write_retry(pqxx::connection& c, const std::string& id, const std::string& message) {
  pqxx::work w(c);
  w.exec_params(
      "UPDATE scan_jobs SET status = 'RUNNING', error_state = NULL, error_message = $2, "
      "updated_at = now() WHERE id = $1",
      id, message);
  w.commit();
}

std::optional<std::string> scan_write_final(pqxx::connection& c, const std::string& id,
                                            const std::string& url, int64_t job_id,
                                            const std::string& status, const std::string& message,
                                            bool* written) {
  pqxx::work w(c);
  pqxx::result u = w.exec_params(
      "UPDATE scan_jobs SET status = $4, error_state = $4, error_message = $5, "
      "updated_at = now() "
      "WHERE id = $1 AND url = $2 AND (job_id IS NULL OR job_id = $3) "
      "AND status <> 'FULL_READY' AND status NOT LIKE 'ERROR\\_%'",
      id, url, job_id, status, message);
  if (written != nullptr) *written = u.affected_rows() > 0;
  pqxx::result r =
      w.exec_params("SELECT status FROM scan_jobs WHERE id = $1 AND url = $2", id, url);
  w.commit();
  if (r.empty()) return std::nullopt;
  return r[0][0].as<std::string>();
}

int64_t scan_delete_expired(pqxx::connection& c, int64_t ttl_seconds) {
  pqxx::work w(c);
  pqxx::result r = w.exec_params(
      "DELETE FROM scan_jobs WHERE created_at < now() - make_interval(secs => $1) "
      "OR expires_at < now()",
      static_cast<double>(ttl_seconds));
  w.commit();
  return static_cast<int64_t>(r.affected_rows());
}

}  // namespace scan
