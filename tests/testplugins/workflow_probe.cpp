// Test plugin for workflows (tests/host/workflow_test.cpp), plugin "wf_probe":
//   kind "wf_step": appends "<job id> step\n" to config["record_file"] when an execution starts;
//                   payload {"i": N, "sleep_ms": T, "fail_attempts": K}: sleeps T ms, fails for
//                   good (PermanentError) while its attempt is <= K, else returns
//                   {"i": N, "square": N*N}.
//   kind "wf_join": appends "<job id> join\n" likewise, reads every page of its parents' results
//                   through jr.parent_results.v1 (and one page past the end), and returns what it
//                   saw: {"total", "pages", "entries", "distinct", "sum_i", "sum_square",
//                   "named", "not_completed", "past_end_count", "first_step", "omitted"}.
//                   Payload {"fail_attempts": K} fails it like a step.
// It declares record_file writable in its sandbox policy; the test creates the file first.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <jobrunner/plugin.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

class Probe : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "wf_probe";
    i.version = "0.1";
    i.kinds.push_back({"wf_step", "", 0, 0, ""});
    i.kinds.push_back({"wf_join", "", 0, 0, ""});
    i.manifest = {{"sandbox", {{"writable_config_keys", {"record_file"}}}}};
    return i;
  }

  void init(const nlohmann::json& config) override {
    std::string path = config.value("record_file", "");
    if (path.empty()) throw std::runtime_error("record_file is not configured");
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd_ < 0) throw std::runtime_error("cannot open " + path);
  }

  nlohmann::json handle(jobrunner::Job& job) override {
    bool join = job.kind() == "wf_join";
    std::string line = std::to_string(job.id()) + (join ? " join\n" : " step\n");
    if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      throw jobrunner::RetryableError("short write to the record file");
    }
    const auto& p = job.payload();
    if (p.contains("sleep_ms")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(p["sleep_ms"].get<int>()));
    }
    if (job.attempt() <= p.value("fail_attempts", 0)) {
      throw jobrunner::PermanentError("failing on purpose at attempt " +
                                      std::to_string(job.attempt()));
    }
    if (!join) {
      int64_t i = p.value("i", 0);
      return {{"i", i}, {"square", i * i}};
    }
    nlohmann::json out = {{"pages", 0}, {"entries", 0},       {"sum_i", 0},  {"sum_square", 0},
                          {"named", 0}, {"not_completed", 0}, {"omitted", 0}};
    std::set<int64_t> ids;
    uint32_t offset = 0;
    for (;;) {
      nlohmann::json page = job.parent_results(offset);
      out["pages"] = out["pages"].get<int>() + 1;
      out["total"] = page["total"];
      for (const auto& e : page["parents"]) {
        out["entries"] = out["entries"].get<int>() + 1;
        ids.insert(e["job_id"].get<int64_t>());
        if (e["step"].is_string()) {
          out["named"] = out["named"].get<int>() + 1;
          if (!out.contains("first_step")) out["first_step"] = e["step"];
        }
        if (e["state"] != "completed") out["not_completed"] = out["not_completed"].get<int>() + 1;
        if (e.value("result_omitted", false)) out["omitted"] = out["omitted"].get<int>() + 1;
        const auto& r = e["result"];
        if (r.is_object()) {
          out["sum_i"] = out["sum_i"].get<int64_t>() + r.value("i", int64_t{0});
          out["sum_square"] = out["sum_square"].get<int64_t>() + r.value("square", int64_t{0});
        }
      }
      if (!page["next_offset"].is_number()) break;
      offset = page["next_offset"].get<uint32_t>();
    }
    out["distinct"] = ids.size();
    out["past_end_count"] = job.parent_results(offset + 100000)["count"];
    return out;
  }

 private:
  int fd_ = -1;
};

}  // namespace

JOBRUNNER_PLUGIN(Probe)
