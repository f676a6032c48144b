// A plugin linked straight into test_sdk_testing: JOBRUNNER_PLUGIN defines jr_plugin_entry_v1 in
// the test binary, which Harness::from_entry() then uses (the "link the plugin into its unit
// test" style). Kind "linked": returns {"linked": true, "config": <init config>}.
#include <jobrunner/plugin.hpp>

namespace {

class Linked : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "linked";
    i.version = "2.0.0";
    i.kinds.push_back({"linked", "", 0, 0, ""});
    return i;
  }
  void init(const nlohmann::json& config) override { config_ = config; }
  nlohmann::json handle(jobrunner::Job& job) override {
    return {{"linked", true}, {"config", config_}, {"queue", std::string(job.queue())}};
  }

 private:
  nlohmann::json config_;
};

}  // namespace

JOBRUNNER_PLUGIN(Linked)
