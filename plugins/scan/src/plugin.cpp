// The `scan` plugin: kinds `scan` (web page scan pipeline, see pipeline.hpp) and
// `cleanup_expired_scans` (deletes scans past SCAN_JOB_TTL_SECONDS; scheduled hourly by the
// manifest's cron entry). Shared state is one Scanner, safe for concurrent handle() calls.
#include <jobrunner/plugin.hpp>
#include <pqxx/except>

#include "pipeline.hpp"

namespace {

class JobObserver : public scan::ScanObserver {
 public:
  explicit JobObserver(jobrunner::Job& job) : job_(job) {}
  void progress(double percent, const std::string& step) override {
    job_.progress(percent, step.c_str());
  }
  void log(const std::string& msg) override { job_.info(msg); }
  bool cancelled() override { return job_.cancelled(); }

 private:
  jobrunner::Job& job_;
};

std::string text_field(const nlohmann::json& p, const char* key, bool required) {
  auto it = p.find(key);
  if (it == p.end() || it->is_null()) {
    if (required) throw jobrunner::PermanentError(std::string("scan payload needs '") + key + "'");
    return "";
  }
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  throw jobrunner::PermanentError(std::string("scan payload: '") + key + "' must be a string");
}

class ScanPlugin : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "scan";
    i.version = "1.0.0";
    // Scan errors are terminal (the scan row says why); attempts only cover database trouble.
    i.kinds.push_back({"scan", "scan", 120000, 3, "5,30"});
    i.kinds.push_back({"cleanup_expired_scans", "scan", 300000, 3, ""});
    i.manifest = {
        {"database", true},  // its own role and schema (plugin_scan) on the runner's database
        {"sandbox",
         {{"network", "full"}, {"memory_mb", 512}, {"writable", nlohmann::json::array()}}},
        {"env",
         {{"SCAN_JOB_TTL_SECONDS", "scan_job_ttl_seconds"},
          {"SCAN_ALLOW_HOSTS", "allow_hosts"},
          {"SCAN_USER_AGENT", "user_agent"},
          {"SCAN_MAX_BODY_BYTES", "max_body_bytes"},
          {"SCAN_MAX_REDIRECTS", "max_redirects"},
          {"SCAN_CONNECT_TIMEOUT_MS", "connect_timeout_ms"},
          {"SCAN_REQUEST_TIMEOUT_MS", "request_timeout_ms"}}},
        {"cron",
         {{{"name", "cleanup_expired_scans"},
           {"schedule", "0 * * * *"},
           {"kind", "cleanup_expired_scans"},
           {"payload", nlohmann::json::object()}}}}};
    return i;
  }

  void init(const nlohmann::json& config) override {
    scanner_ = std::make_unique<scan::Scanner>(scan::parse_config(config));
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    try {
      if (job.kind() == "cleanup_expired_scans") {
        int64_t n = scanner_->cleanup_expired();
        if (n > 0) job.info("deleted " + std::to_string(n) + " expired scans");
        return {{"deleted", n}, {"ttl_seconds", scanner_->config().scan_job_ttl_seconds}};
      }
      const nlohmann::json& p = job.payload();
      if (!p.is_object()) throw jobrunner::PermanentError("scan payload must be a JSON object");
      scan::ScanRequest req;
      req.scan_id = text_field(p, "scan_id", true);
      req.url = text_field(p, "url", true);
      req.user_id = text_field(p, "user_id", false);
      if (req.scan_id.empty() || req.scan_id.size() > 200) {
        throw jobrunner::PermanentError("scan payload: scan_id must be 1-200 characters");
      }
      JobObserver obs(job);
      return scanner_->run(req, obs);
    } catch (const scan::ScanFailed& e) {
      throw jobrunner::PermanentError(e.what());
    } catch (const scan::ScanConflict& e) {
      throw jobrunner::PermanentError(e.what());
    } catch (const scan::ScanBusy&) {
      throw jobrunner::Snooze(5);
    } catch (const scan::ScanCancelled&) {
      throw jobrunner::Cancelled();
    } catch (const pqxx::failure& e) {
      throw jobrunner::RetryableError(std::string("database: ") + e.what());
    }
  }

 private:
  std::unique_ptr<scan::Scanner> scanner_;
};

}  // namespace

JOBRUNNER_PLUGIN(ScanPlugin)
