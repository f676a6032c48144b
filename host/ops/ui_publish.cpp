#include "ui_publish.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "log.hpp"
#include "util.hpp"

namespace jr::ops {
namespace {

std::mutex g_provider_mu;
std::function<nlohmann::json()> g_provider;

int64_t unix_minute() {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count() / 60;
}

}  // namespace

std::string database_session_name() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  std::string name = "jobrunner " + std::to_string(getpid()) + "@" + host;
  if (name.size() > 63) name.resize(63);
  return name;
}

void name_database_sessions() { setenv("PGAPPNAME", database_session_name().c_str(), 0); }

nlohmann::json refused_plugins_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : refused_plugins()) {
    out.push_back({{"name", r.name}, {"file", r.file}, {"kind", r.kind}, {"reason", r.reason}});
  }
  return out;
}

void set_plugin_state_provider(std::function<nlohmann::json()> provider) {
  std::lock_guard<std::mutex> lock(g_provider_mu);
  g_provider = std::move(provider);
}

nlohmann::json plugin_state() {
  std::function<nlohmann::json()> f;
  {
    std::lock_guard<std::mutex> lock(g_provider_mu);
    f = g_provider;
  }
  return f ? f() : nlohmann::json::array();
}

RunnerPublisher::RunnerPublisher(PublisherOptions opts, std::function<nlohmann::json()> details,
                                 std::function<void(RunnerPublisher&)> collect)
    : opts_(std::move(opts)), details_(std::move(details)), collect_(std::move(collect)) {}

RunnerPublisher::~RunnerPublisher() { stop(); }

void RunnerPublisher::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void RunnerPublisher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RunnerPublisher::count(const std::string& outcome, int64_t n) {
  if (n <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  pending_[{unix_minute(), outcome}] += n;
}

void RunnerPublisher::loop() {
  // First write soon after start (the engine registers its row meanwhile), then every interval.
  auto next = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, next, [this] { return stopping_; });
      if (stopping_) break;
    }
    publish_once();
    next = std::chrono::steady_clock::now() +
           std::chrono::milliseconds(static_cast<int64_t>(opts_.interval_seconds * 1000));
  }
  publish_once();  // the last counts of a stopping runner
}

bool RunnerPublisher::publish_once() {
  if (collect_) collect_(*this);
  std::map<std::pair<int64_t, std::string>, int64_t> counts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    counts.swap(pending_);
  }
  nlohmann::json details;
  try {
    details = details_ ? details_() : nlohmann::json::object();
  } catch (const std::exception& e) {
    details = {{"error", std::string("details unavailable: ") + e.what()}};
  }
  try {
    std::vector<int64_t> minutes, ns;
    std::vector<std::string> outcomes;
    for (const auto& [k, n] : counts) {
      minutes.push_back(k.first * 60);
      outcomes.push_back(k.second);
      ns.push_back(n);
    }
    int64_t minute = unix_minute();
    bool prune = minute - last_prune_ >= 10;
    std::string text = details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto write = [&](Store& s) {
      s.WorkerPublish(opts_.worker_id, text, minutes, outcomes, ns, prune);
    };
    if (opts_.shared) {
      opts_.shared->with(write);
    } else {
      if (own_ && own_->LostWhileIdle()) own_.reset();
      if (!own_) own_ = Store::open(opts_.database_url);
      write(*own_);
    }
    if (prune) last_prune_ = minute;
    if (failing_) log::info("dashboard details published again");
    failing_ = false;
    return true;
  } catch (const std::exception& e) {
    own_.reset();
    // Keep the counts for the next try (bounded: an outage of a day keeps at most a day).
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [k, n] : counts) {
        if (unix_minute() - k.first < 24 * 60) pending_[k] += n;
      }
    }
    if (!failing_) {
      log::warn("cannot publish dashboard details; retrying",
                {{"error", log::redact(e.what())}, {"retry_in_s", opts_.interval_seconds}});
    }
    failing_ = true;
    return false;
  }
}

}  // namespace jr::ops
