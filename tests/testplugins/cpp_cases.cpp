// C++ test plugins built with the SDK's plugin.hpp, one shared library per case (JR_CASE):
//   1 init_fails   init throws: the runner must refuse to start, naming the file
//   2 thrower      kind "thrower": the handler throws; the job fails with the message
//   3 dup_a        kind "shared_kind"
//   4 dup_b        kind "shared_kind" again (a duplicate in the same directory)
//   5 record       kind "record": appends "<job id>\n" to config["record_file"] when an
//                  execution starts (exactly-once accounting for the multi-runner tests);
//                  payload sleep_ms then slows it down (ignoring cancellation on purpose)
//   6 overlap      kind "overlap": sleeps payload sleep_ms, then appends
//                  "<job id> <payload key> <start ns> <end ns>\n" to config["record_file"]
//   7 idler        kind "idler" with an idle hook that enqueues one job of its kind and appends
//                  "<start ns> <end ns>\n" to config["record_file"] (threshold 0.3 s, poll 0.1 s)
// 5-7 declare record_file writable in their sandbox policy; a test creates the file first
// (jrtest::shared_file), because the sandbox user may not create files in the test's dir.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <jobrunner/plugin.hpp>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

[[maybe_unused]] int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Case : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.version = "0.1";
#if JR_CASE == 1
    i.name = "init_fails";
    i.kinds.push_back({"init_fails_kind", "", 0, 0, ""});
#elif JR_CASE == 2
    i.name = "thrower";
    i.kinds.push_back({"thrower", "", 0, 2, "0"});
#elif JR_CASE == 3
    i.name = "dup_a";
    i.kinds.push_back({"shared_kind", "", 0, 0, ""});
#elif JR_CASE == 4
    i.name = "dup_b";
    i.kinds.push_back({"shared_kind", "", 0, 0, ""});
#elif JR_CASE == 5
    i.name = "record";
    i.kinds.push_back({"record", "", 0, 0, ""});
    i.manifest = {{ "sandbox", { { "writable_config_keys", { "record_file" } } } }};
#elif JR_CASE == 6
    i.name = "overlap";
    i.kinds.push_back({"overlap", "", 0, 0, ""});
    i.manifest = {{ "sandbox", { { "writable_config_keys", { "record_file" } } } }};
#elif JR_CASE == 7
    i.name = "idler";
    i.kinds.push_back({"idler", "", 0, 0, ""});
    i.idle_hook = true;
    i.manifest = {{"idle", {{"threshold_seconds", 0.3}, {"poll_interval_seconds", 0.1}}},
                  {"sandbox", {{"writable_config_keys", {"record_file"}}}}};
#endif
    return i;
  }

  void init(const nlohmann::json& config) override {
#if JR_CASE == 1
    (void)config;
    throw std::runtime_error("cannot reach the license server");
#elif JR_CASE >= 5
    std::string path = config.value("record_file", "");
    if (path.empty()) throw std::runtime_error("record_file is not configured");
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path);
#else
    (void)config;
#endif
  }

  nlohmann::json handle(jobrunner::Job& job) override {
#if JR_CASE == 2
    (void)job;
    throw std::runtime_error("boom from handler");
#elif JR_CASE == 5
    // Recorded when the execution starts, so a job killed mid-run still counts.
    std::string line = std::to_string(job.id()) + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      throw jobrunner::RetryableError("short write to the record file");
    }
    if (job.payload_text() != "{}") {
      const auto& p = job.payload();
      if (p.contains("sleep_ms")) {
        std::this_thread::sleep_for(std::chrono::milliseconds(p["sleep_ms"].get<int>()));
      }
    }
    return nullptr;
#elif JR_CASE == 6
    int64_t start = now_ns();
    const auto& p = job.payload();
    std::this_thread::sleep_for(std::chrono::milliseconds(p.value("sleep_ms", 10)));
    std::string line = std::to_string(job.id()) + " " + p.value("key", std::string("-")) + " " +
                       std::to_string(start) + " " + std::to_string(now_ns()) + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      throw jobrunner::RetryableError("short write to the record file");
    }
    return nullptr;
#else
    return job.payload();
#endif
  }

#if JR_CASE == 7
  int idle(jobrunner::Context& ctx) override {
    int64_t start = now_ns();
    ctx.enqueue("idler", {{ "from", "idle" }});  // a plugin may enqueue only its own kinds
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string line = std::to_string(start) + " " + std::to_string(now_ns()) + "\n";
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return -1;
    return 1;
  }
#endif

 private:
  [[maybe_unused]] int fd_ = -1;  // used by the cases that write a line
};

}  // namespace

JOBRUNNER_PLUGIN(Case)
