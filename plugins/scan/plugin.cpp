// The `scan` plugin: kinds `scan` (web page scan pipeline, see pipeline.hpp),
// `cleanup_expired_scans` (deletes scans past SCAN_JOB_TTL_SECONDS; scheduled hourly by the
// manifest's cron entry) and `scan_finalize` (the manifest's finalizer of `scan`: the host
// enqueues it when a scan job ends discarded or cancelled, and it brings the row to an error
// state). Shared state is one Scanner, safe for concurrent handle() calls.
#include <jobrunner/plugin.hpp>
#include <pqxx/except>

#include "scan/src/pipeline.hpp"

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
    // Seed 001: Retry(max=3, interval=[10, 30, 60]), i.e. 4 attempts. Transient crawl failures
    // (timeout, connection refused/reset, HTTP 5xx) and database trouble are retried; every
    // other scan error is terminal at once (the scan row says why).
    i.kinds.push_back({"scan", "scan", 120000, 4, "10,30,60"});
    i.kinds.push_back({"cleanup_expired_scans", "scan", 300000, 3, ""});
    // Enqueued by the host when a scan job ends discarded or cancelled (manifest "finalizers"):
    // brings the row to an error state the pipeline never wrote (timeout, kill, lost lease,
    // cancel). Idempotent; retried on database trouble; snoozes while the scan is held.
    i.kinds.push_back({"scan_finalize", "scan", 30000, 10, "5,15,60,300"});
    i.manifest = {
        {"database", true},  // its own role and schema (plugin_scan) on the runner's database
        {"finalizers", {{"scan", "scan_finalize"}}},
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
      if (job.kind() == "scan_finalize") return finalize(job);
      const nlohmann::json& p = job.payload();
      if (!p.is_object()) throw jobrunner::PermanentError("scan payload must be a JSON object");
      scan::ScanRequest req;
      req.scan_id = text_field(p, "scan_id", true);
      req.url = text_field(p, "url", true);
      req.user_id = text_field(p, "user_id", false);
      req.attempt = job.attempt();
      req.max_attempts = job.max_attempts();
      req.job_id = job.id();
      if (req.scan_id.empty() || req.scan_id.size() > 200) {
        throw jobrunner::PermanentError("scan payload: scan_id must be 1-200 characters");
      }
      JobObserver obs(job);
      return scanner_->run(req, obs);
    } catch (const scan::ScanFailed& e) {
      throw jobrunner::PermanentError(e.what());
    } catch (const scan::ScanConflict& e) {
      throw jobrunner::PermanentError(e.what());
    } catch (const scan::ScanRetry& e) {
      throw jobrunner::RetryableError(e.what());
    } catch (const scan::ScanBusy&) {
      // A finalizer mostly waits for a stopped handler to let go of the scan: look again soon.
      throw jobrunner::Snooze(job.kind() == "scan_finalize" ? 1 : 5);
    } catch (const scan::ScanCancelled&) {
      throw jobrunner::Cancelled();
    } catch (const pqxx::failure& e) {
      throw jobrunner::RetryableError(std::string("database: ") + e.what());
    }
  }

 private:
  // The finalizer's payload is the host's {"job_id", "kind", "state", "error_kind", "error",
  // "payload"}; a finished job whose own payload names no scan has no row to finish.
  nlohmann::json finalize(jobrunner::Job& job) {
    const nlohmann::json& p = job.payload();
    if (!p.is_object() || !p.contains("payload")) {
      throw jobrunner::PermanentError("scan_finalize payload must be the host's finalizer object");
    }
    const nlohmann::json& scan_payload = p["payload"];
    scan::FinalizeRequest f;
    try {
      if (!scan_payload.is_object()) throw jobrunner::PermanentError("not an object");
      f.scan_id = text_field(scan_payload, "scan_id", true);
      f.url = text_field(scan_payload, "url", true);
    } catch (const jobrunner::PermanentError& e) {
      job.info(std::string("scan_finalize: the finished job's payload names no scan (") + e.what() +
               "); nothing to do");
      return {{"scan_id", nullptr}, {"status", nullptr}, {"updated", false}};
    }
    auto text = [&p](const char* key) {
      auto it = p.find(key);
      return it != p.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    auto id = p.find("job_id");
    f.job_id = id != p.end() && id->is_number_integer() ? id->get<int64_t>() : 0;
    f.state = text("state");
    f.error_kind = text("error_kind");
    f.error = text("error");
    nlohmann::json out = scanner_->finalize(f);
    if (out.value("updated", false)) {
      job.info("scan " + f.scan_id + ": " + out["status"].get<std::string>() + " (job " +
               std::to_string(f.job_id) + " " + f.state + "): " + f.error);
    }
    return out;
  }

  std::unique_ptr<scan::Scanner> scanner_;
};

}  // namespace

JOBRUNNER_PLUGIN(ScanPlugin)
