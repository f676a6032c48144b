// The dataset_parse plugin: job kinds `parse_dataset` and `reprocess_dataset` (payload
// {"dataset_id": "..."}). Looks the dataset up in `datasets`, picks the country's parser, opens
// the file through Storage and loads its rows into `names` in one transaction, then records the
// outcome (status, error_message, metrics) on the dataset. See README.md for the contract.
//
// Threading: handle() runs concurrently; the plugin state is immutable after init except the
// connection pool and the schema flag, which are mutex-protected.
#include <jobrunner/plugin.hpp>
#include <mutex>

#include "dataset_parse/src/config.hpp"
#include "dataset_parse/src/db.hpp"
#include "dataset_parse/src/ingest.hpp"
#include "dataset_parse/src/parsers.hpp"
#include "dataset_parse/src/storage.hpp"

namespace dataset_parse {

namespace {

constexpr const char* kParse = "parse_dataset";
constexpr const char* kReprocess = "reprocess_dataset";

// Bad input decided by the plugin (not found, unknown country, not configured): no retry.
class Permanent : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class DatasetNotFound : public Permanent {
 public:
  using Permanent::Permanent;
};

class JobObserver : public IngestObserver {
 public:
  explicit JobObserver(jobrunner::Job& job) : job_(job) {}
  void on_progress(const Metrics& m) override {
    double pct = m.bytes_total > 0 ? 100.0 * static_cast<double>(m.bytes_read) /
                                         static_cast<double>(m.bytes_total)
                                   : 0.0;
    if (pct > 100) pct = 100;
    job_.progress(pct, "PARSE");
    job_.debug("PARSE " + std::to_string(m.bytes_read) + " of " + std::to_string(m.bytes_total) +
               " bytes, " + std::to_string(m.rows_inserted) + " rows");
  }
  bool cancelled() override { return job_.cancelled(); }

 private:
  jobrunner::Job& job_;
};

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

class DatasetParse : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "dataset_parse";
    i.version = "1.0.0";
    // 1 hour per attempt; 4 attempts with retries after 1, 5 and 15 minutes.
    i.kinds.push_back({kParse, "datasets", 3'600'000, 4, "60,300,900"});
    i.kinds.push_back({kReprocess, "datasets", 3'600'000, 4, "60,300,900"});
    // "database": its own role and schema (plugin_dataset_parse) on the runner's database.
    i.manifest = {{"database", true},
                  {"env",
                   {{"WORKER_STORAGE_ROOT", "storage_root"},
                    {"DATASET_DATABASE_URL", "database_url"},
                    {"DATASET_BATCH_SIZE", "batch_size"},
                    {"DATASET_MAX_BAD_LINE_RATIO", "max_bad_line_ratio"}}},
                  {"sandbox",
                   {{"network", "loopback"},
                    {"memory_mb", 512},
                    {"writable", nlohmann::json::array()},
                    // Read access the worker needs beyond the defaults: the value of config key
                    // storage_root (resolved by the host from this plugin's config).
                    {"readable_config_keys", {"storage_root"}}}}};
    return i;
  }

  void init(const nlohmann::json& config) override {
    cfg_ = parse_config(config);
    if (!cfg_.storage_root.empty()) {
      try {
        storage_ = std::make_unique<LocalStorage>(cfg_.storage_root);
      } catch (const StorageError& e) {
        throw ConfigError(std::string("storage_root: ") + e.what());
      }
    }
    pool_ = std::make_unique<ConnectionPool>(cfg_.database_url);
    try {
      ensure_schema();
    } catch (const pqxx::broken_connection&) {
      // The database is not up yet; the first job creates the tables.
    }
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    const nlohmann::json& p = job.payload();
    if (!p.is_object() || !p.contains("dataset_id") || !p["dataset_id"].is_string() ||
        p["dataset_id"].get<std::string>().empty()) {
      throw jobrunner::PermanentError(R"(payload must be {"dataset_id": "<non-empty string>"})");
    }
    std::string id = p["dataset_id"].get<std::string>();
    bool reprocess = job.kind() == kReprocess;
    Metrics m;
    try {
      return run(job, id, reprocess, m);
    } catch (const jobrunner::Cancelled&) {
      mark_unfinished(job, id, "pending", "interrupted (cancel, timeout or shutdown); no rows kept",
                      m);
      throw;
    } catch (const DatasetNotFound& e) {
      throw jobrunner::PermanentError(e.what());
    } catch (const std::exception& e) {
      bool permanent = is_permanent(e);
      std::string msg = e.what();
      bool last = job.attempt() >= job.max_attempts();
      if (permanent || last) {
        mark_unfinished(job, id, "failed", msg, m);
      } else {
        mark_unfinished(job, id, "pending",
                        "attempt " + std::to_string(job.attempt()) + " failed, will retry: " + msg,
                        m);
      }
      if (permanent) throw jobrunner::PermanentError(msg);
      throw jobrunner::RetryableError(msg);
    }
  }

 private:
  static bool is_permanent(const std::exception& e) {
    if (dynamic_cast<const Permanent*>(&e) || dynamic_cast<const FormatError*>(&e)) return true;
    if (const auto* s = dynamic_cast<const StorageError*>(&e)) return s->permanent();
    if (dynamic_cast<const pqxx::failure*>(&e) || dynamic_cast<const pqxx::sql_error*>(&e)) {
      return !db_error_retryable(e);
    }
    return false;  // anything else (I/O, memory): try again
  }

  void ensure_schema() {
    std::lock_guard<std::mutex> lock(schema_mu_);
    if (schema_ready_) return;
    auto c = pool_->acquire();
    create_schema(*c);
    c.keep();
    schema_ready_ = true;
  }

  nlohmann::json run(jobrunner::Job& job, const std::string& id, bool reprocess, Metrics& m) {
    ensure_schema();
    auto conn = pool_->acquire();
    std::string country, path;
    {
      pqxx::work tx(*conn);
      // parse_dataset leaves a completed dataset alone; a concurrent job holding the row makes
      // this wait, then re-check the status.
      auto r = tx.exec_params(
          "UPDATE datasets SET status = 'processing', error_message = NULL, updated_at = now() "
          "WHERE id = $1 AND ($2 OR status <> 'completed') RETURNING country_code, storage_path",
          id, reprocess);
      if (r.empty()) {
        auto s = tx.exec_params("SELECT metrics::text FROM datasets WHERE id = $1", id);
        if (s.empty()) throw DatasetNotFound("dataset '" + id + "' not found");
        conn.keep();
        return already_done(id, s[0][0]);
      }
      country = r[0][0].as<std::string>();
      path = r[0][1].as<std::string>();
      tx.commit();
    }
    if (!storage_) {
      throw Permanent(
          "dataset_parse is not configured: set storage_root in [plugins.dataset_parse] or "
          "WORKER_STORAGE_ROOT");
    }
    const Parser* parser = Registry::builtin().find(country);
    if (parser == nullptr) {
      std::string known;
      for (const auto& c : Registry::builtin().countries())
        known += (known.empty() ? "" : ", ") + c;
      throw Permanent("no parser for country '" + country + "' (parsers exist for " + known + ")");
    }
    m.parser = std::string(parser->format());
    m.file = path;
    auto file_parser = parser->begin(base_name(path));
    auto in = storage_->open(path);

    pqxx::work tx(*conn);
    auto r =
        tx.exec_params("SELECT status, metrics::text FROM datasets WHERE id = $1 FOR UPDATE", id);
    if (r.empty()) throw DatasetNotFound("dataset '" + id + "' was deleted while processing");
    if (!reprocess && r[0][0].as<std::string>() == "completed") {
      tx.commit();
      conn.keep();
      return already_done(id, r[0][1]);
    }
    m.rows_deleted = tx.exec_params("DELETE FROM names WHERE dataset_id = $1", id).affected_rows();
    IngestOptions o;
    o.batch_size = cfg_.batch_size;
    o.max_bad_line_ratio = cfg_.max_bad_line_ratio;
    o.read_buffer_bytes = static_cast<size_t>(cfg_.read_buffer_bytes);
    o.test_fail_after_rows = cfg_.test_fail_after_rows;
    JobObserver obs(job);
    ingest(tx, id, *in, *file_parser, o, obs, m);
    nlohmann::json metrics = m.to_json();
    tx.exec_params(
        "UPDATE datasets SET status = 'completed', error_message = NULL, metrics = $2::jsonb, "
        "updated_at = now() WHERE id = $1",
        id, metrics.dump());
    tx.commit();
    conn.keep();
    job.info("dataset " + id + " completed: " + std::to_string(m.rows_inserted) + " rows from " +
             std::to_string(m.bytes_read) + " bytes (" + std::to_string(m.rows_rejected) +
             " rejected, " + std::to_string(m.rows_skipped) + " skipped)");
    return {{"dataset_id", id}, {"status", "completed"}, {"metrics", metrics}};
  }

  static nlohmann::json already_done(const std::string& id, const pqxx::field& metrics) {
    nlohmann::json out = {
        {"dataset_id", id},
        {"status", "completed"},
        {"skipped", true},
        {"reason", "already completed; enqueue reprocess_dataset to parse again"}};
    if (!metrics.is_null()) out["metrics"] = nlohmann::json::parse(metrics.c_str());
    return out;
  }

  // Records a failed or interrupted attempt on the dataset. Best effort: when the database is
  // what failed, the job's own error history still tells the story.
  void mark_unfinished(jobrunner::Job& job, const std::string& id, const char* status,
                       const std::string& msg, const Metrics& m) {
    try {
      auto conn = pool_->acquire();
      pqxx::work tx(*conn);
      tx.exec_params(
          "UPDATE datasets SET status = $2, error_message = $3, "
          "metrics = CASE WHEN $4 THEN $5::jsonb ELSE metrics END, updated_at = now() "
          "WHERE id = $1",
          id, status, msg, m.rows_read > 0 || m.bytes_read > 0, m.to_json().dump());
      tx.commit();
      conn.keep();
    } catch (const std::exception& e) {
      job.warn("could not record status '" + std::string(status) + "' on dataset " + id + ": " +
               e.what());
    }
  }

  Config cfg_;
  std::unique_ptr<Storage> storage_;
  std::unique_ptr<ConnectionPool> pool_;
  std::mutex schema_mu_;
  bool schema_ready_ = false;  // guarded by schema_mu_
};

}  // namespace

}  // namespace dataset_parse

JOBRUNNER_PLUGIN(dataset_parse::DatasetParse)
