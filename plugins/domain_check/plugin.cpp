// The `domain_check` job kind: is a domain name available? DNS (NS/SOA via c-ares) decides
// "registered"; NXDOMAIN candidates are confirmed over WHOIS. Results go to the `domains` table
// and back as the job result. An idle hook re-enqueues domains whose last check is stale.
// See README.md for the payload, result, config keys and the recheck protocol.
#include <ares.h>

#include <chrono>
#include <jobrunner/plugin.hpp>
#include <memory>
#include <mutex>

#include "domain_check/src/checker.hpp"
#include "domain_check/src/config.hpp"
#include "domain_check/src/domain_store.hpp"

namespace {

using namespace domain_check;

class DomainCheck : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "domain_check";
    i.version = "1.0.0";
    // 15 minutes per attempt: 1000 names x (3 s DNS + 5 s WHOIS) / 10 in flight at worst.
    i.kinds.push_back({"domain_check", "domain_checks", 15 * 60 * 1000, 5, "30,120,600,1800"});
    i.manifest = manifest();
    i.idle_hook = true;
    return i;
  }

  ~DomainCheck() override {
    if (ares_ready_) ares_library_cleanup();
  }

  void init(const nlohmann::json& config) override {
    settings_ = parse_settings(config);
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
      throw std::runtime_error(std::string("c-ares library init failed: ") + ares_strerror(rc));
    }
    ares_ready_ = true;
    DnsClient probe(Checker(settings_).dns_options());  // fail early on a bad resolver list
    checker_ = std::make_unique<Checker>(settings_);
    store_ = std::make_unique<DomainStore>(settings_.database_url,
                                           static_cast<size_t>(settings_.db_pool_size));
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    std::vector<std::string> names = parse_payload(job.payload());
    job.progress(0, "checking");
    size_t last_pct = 0;
    auto cancelled = [&job] { return job.cancelled(); };
    auto progress = [&](size_t done, size_t total) {
      size_t pct = total ? done * 90 / total : 90;
      if (pct >= last_pct + 5 || done == total) {
        last_pct = pct;
        job.progress(static_cast<double>(pct), "checking");
      }
    };
    std::vector<DomainResult> results = checker_->check_all(names, cancelled, progress);
    if (job.cancelled()) throw jobrunner::Cancelled();
    job.progress(90, "storing");
    UpsertReport stored;
    try {
      stored = store_->upsert(results);
    } catch (const std::exception& e) {
      throw jobrunner::RetryableError(std::string("storing results in the domains table: ") +
                                      e.what());
    }
    // A name the database refused is that name's failure, not the job's.
    for (auto& r : results) {
      auto it = stored.failed.find(r.name);
      if (r.name.empty() || it == stored.failed.end()) continue;
      r.status = "unknown";
      r.reason = "not stored";
      r.details = {{"error", it->second}};
    }
    if (!stored.failed.empty()) {
      job.warn("domain_check: " + std::to_string(stored.failed.size()) +
               " result(s) refused by the database, recorded as unknown/\"not stored\"; first: " +
               stored.failed.begin()->first + ": " + stored.failed.begin()->second);
    }
    nlohmann::json out = {{"domains", nlohmann::json::array()}};
    nlohmann::json summary = {{"available", 0}, {"registered", 0}, {"invalid", 0}, {"unknown", 0}};
    for (const auto& r : results) {
      out["domains"].push_back(r.to_json());
      summary[r.status] = summary[r.status].get<int>() + 1;
    }
    out["summary"] = summary;
    job.progress(100, "done");
    return out;
  }

  int idle(jobrunner::Context& ctx) override {
    if (!settings_.enable_idle_recheck) return 0;
    RecheckParams p;
    p.interval_days = settings_.recheck_interval_days;
    p.batch_size = settings_.recheck_batch_size;
    p.max_batches = settings_.recheck_max_batches;
    RecheckOutcome o = store_->recheck_stale(p, [&ctx](const std::vector<std::string>& batch) {
      ctx.enqueue("domain_check", {{"domains", batch}});
    });
    if (!o.error.empty()) {
      ctx.warn("domain_check idle recheck stopped early after " + std::to_string(o.jobs) +
               " jobs: " + o.error);
      if (o.jobs == 0) throw std::runtime_error(o.error);
    }
    if (o.jobs > 0) {
      ctx.info("domain_check idle recheck enqueued " + std::to_string(o.jobs) + " jobs for " +
               std::to_string(o.domains) + " stale domains");
    }
    return o.jobs;
  }

 private:
  std::vector<std::string> parse_payload(const nlohmann::json& p) const {
    if (!p.is_object()) {
      throw jobrunner::PermanentError("payload must be an object {\"domains\": [...]}");
    }
    auto it = p.find("domains");
    if (it == p.end() || !it->is_array()) {
      throw jobrunner::PermanentError("payload needs \"domains\": an array of domain names");
    }
    if (it->empty()) throw jobrunner::PermanentError("payload \"domains\" is empty");
    if (it->size() > static_cast<size_t>(settings_.max_domains_per_job)) {
      throw jobrunner::PermanentError(
          "payload has " + std::to_string(it->size()) + " domains; at most " +
          std::to_string(settings_.max_domains_per_job) + " per job (max_domains_per_job)");
    }
    std::vector<std::string> names;
    names.reserve(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_string()) {
        throw jobrunner::PermanentError("payload \"domains\"[" + std::to_string(i) +
                                        "] is not a string");
      }
      names.push_back((*it)[i].get<std::string>());
    }
    return names;
  }

  Settings settings_;
  bool ares_ready_ = false;
  std::unique_ptr<Checker> checker_;
  std::unique_ptr<DomainStore> store_;
};

}  // namespace

JOBRUNNER_PLUGIN(DomainCheck)
