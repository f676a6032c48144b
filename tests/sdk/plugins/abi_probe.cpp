// A C++ plugin built twice from this one source: with clang++ by a custom command and with g++
// by jr_plugin(), both loaded by the g++-built host. Kind "abi_probe" (payload {"op": ...}):
//   ok        progress + log, throws and catches an exception inside the plugin, returns facts
//   permanent PermanentError       retryable  std::runtime_error     snooze  Snooze(12.5)
//   cancel    polls cancelled() until the host asks, then Cancelled
//   enqueue   enqueues an "abi_probe" job and returns its id
//   threads   4 plugin threads call host->log concurrently during the call
// abi_checks.h makes either compiler fail the build if it laid out an ABI struct differently.
#include <jobrunner/abi_checks.h>

#include <jobrunner/plugin.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

class AbiProbe : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
#ifdef __clang__
    i.name = "abi_probe_clang";
    i.kinds.push_back({"abi_probe_clang", "abi_q", 20000, 3, "1,2"});
#else
    i.name = "abi_probe_gcc";
    i.kinds.push_back({"abi_probe_gcc", "abi_q", 20000, 3, "1,2"});
#endif
    i.version = "1.0.0";
    i.manifest = {{"sandbox", {{"network", "none"}}}};
    return i;
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    const nlohmann::json& p = job.payload();
    std::string op = p.value("op", "ok");
    if (op == "permanent") throw jobrunner::PermanentError("probe: permanent on purpose");
    if (op == "retryable") throw std::runtime_error("probe: retryable on purpose");
    if (op == "snooze") throw jobrunner::Snooze(12.5);
    if (op == "cancel") {
      for (int i = 0; i < 100000 && !job.cancelled(); ++i) std::this_thread::yield();
      throw jobrunner::Cancelled();
    }
    if (op == "enqueue") {
      int64_t id = job.enqueue(std::string(job.kind()), {{"op", "ok"}}, {{"priority", 3}});
      return {{"enqueued", id}};
    }
    if (op == "threads") {
      std::vector<std::thread> ts;
      for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&job, t] {
          for (int i = 0; i < 25; ++i) job.info("thread " + std::to_string(t));
        });
      }
      for (auto& t : ts) t.join();
      return {{"threads", 4}};
    }
    bool caught = false;
    try {
      throw std::out_of_range("inside the plugin");
    } catch (const std::exception& e) {
      caught = std::string(e.what()) == "inside the plugin";
    }
    job.progress(50, "half");
    job.info("probe ran");
#ifdef __clang__
    const char* compiler = "clang";
#else
    const char* compiler = "gcc";
#endif
    return {{"compiler", compiler},
            {"caught", caught},
            {"attempt", job.attempt()},
            {"queue", std::string(job.queue())},
            {"plugin_minor", JR_ABI_MINOR},
            {"host_minor", job.host()->abi_minor},
            {"payload", p}};
  }
};

}  // namespace

JOBRUNNER_PLUGIN(AbiProbe)
