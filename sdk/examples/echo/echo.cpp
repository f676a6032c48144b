// The `echo` job kind: returns its payload. Used by the demo, the tests and the benchmarks, so it
// obeys a few payload fields that make it misbehave on purpose:
//   sleep_ms       sleep this long (checking for cancellation at least every 10 ms)
//   progress       true: while sleeping, report progress every 10 ms (the host writes it at
//                  most every 250 ms)
//   fail           "retryable" or "permanent": fail every attempt that way
//   fail_kind      with fail: name the failure (the attempt's error_kind, abi.h JR_EXT_ERROR_KIND)
//   fail_attempts  fail (retryable) the first N attempts, then succeed
//   crash          "segv" or "abort": kill the process that runs the handler
//   snooze_until   Unix time (s): snooze until then (a snooze does not use up an attempt)
//   fail_permanent_attempts  fail permanently on the first N attempts (then succeed)
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <jobrunner/plugin.hpp>
#include <thread>

namespace {

class Echo : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "echo";
    i.version = "1.0.0";
    i.kinds.push_back({"echo", "default", 0, 0, ""});
    i.manifest = {{"sandbox", {{"network", "none"}, {"memory_mb", 256}}}};
    return i;
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    // Fast path for the benchmarks' no-op jobs.
    if (job.payload_text() == "{}") return nullptr;
    const nlohmann::json& p = job.payload();
    if (!p.is_object()) throw jobrunner::PermanentError("echo payload must be a JSON object");
    if (auto it = p.find("crash"); it != p.end()) {
      std::string how = it->get<std::string>();
      if (how == "segv") std::raise(SIGSEGV);
      if (how == "abort") std::abort();
      throw jobrunner::PermanentError("unknown crash mode '" + how + "'");
    }
    if (auto it = p.find("snooze_until"); it != p.end()) {
      double now =
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      if (now < it->get<double>()) throw jobrunner::Snooze(it->get<double>() - now);
    }
    if (auto it = p.find("sleep_ms"); it != p.end()) {
      auto from = std::chrono::steady_clock::now();
      auto total = std::chrono::milliseconds(it->get<int64_t>());
      bool report = p.value("progress", false);
      for (auto now = from; now < from + total; now = std::chrono::steady_clock::now()) {
        if (job.cancelled()) throw jobrunner::Cancelled();
        if (report) {
          job.progress(100.0 *
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - from) /
                       std::chrono::duration<double>(total));
        }
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            std::chrono::milliseconds(10), from + total - now));
      }
    }
    if (auto it = p.find("fail_attempts"); it != p.end() && job.attempt() <= it->get<int>()) {
      throw jobrunner::RetryableError("failing attempt " + std::to_string(job.attempt()) + " of " +
                                      std::to_string(it->get<int>()) + " on purpose");
    }
    if (auto it = p.find("fail_permanent_attempts");
        it != p.end() && job.attempt() <= it->get<int>()) {
      throw jobrunner::PermanentError("permanent failure on attempt " +
                                      std::to_string(job.attempt()) + " on purpose");
    }
    if (auto it = p.find("fail"); it != p.end()) {
      std::string how = it->get<std::string>();
      std::string kind = p.value("fail_kind", "");
      if (how == "permanent") throw jobrunner::PermanentError("permanent failure on purpose", kind);
      throw jobrunner::RetryableError("retryable failure on purpose", kind);
    }
    return p;
  }
};

}  // namespace

JOBRUNNER_PLUGIN(Echo)
