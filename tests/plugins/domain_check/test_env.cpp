#include "test_env.hpp"

#include <jobrunner/abi.h>

namespace dctest {

Env& env() {
  static Env* e = new Env();  // process lifetime; its destructor would race gtest's exit
  static bool registered = [] {
    std::atexit([] { delete e; });
    return true;
  }();
  (void)registered;
  return *e;
}

nlohmann::json run_ok(jrtest::PluginHost& host, const nlohmann::json& payload) {
  jrtest::JobOutcome out = host.run("domain_check", payload.dump());
  EXPECT_EQ(out.status, JR_OK) << out.error;
  if (out.result.empty()) return nlohmann::json::object();
  return nlohmann::json::parse(out.result);
}

}  // namespace dctest
