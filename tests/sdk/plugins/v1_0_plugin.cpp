// A plugin built against the FROZEN v1.0 SDK (tests/sdk/abi_v1_0: abi.h without the `idle`
// field, plugin.hpp without the idle hook). Its descriptor is 72 bytes and says minor 0; the
// current host must load it, never read `idle`, and run its jobs. Kind "v1_0_echo".
#include <jobrunner/plugin.hpp>

static_assert(JR_ABI_MINOR == 0, "must be built against tests/sdk/abi_v1_0");
static_assert(sizeof(jr_plugin_desc) == JR_PLUGIN_DESC_V1_0_SIZE, "a v1.0 descriptor");
#if defined(__x86_64__)
static_assert(sizeof(jr_plugin_desc) == 72, "the v1.0 x86_64 descriptor size");
#endif

namespace {

class V10 : public jobrunner::Plugin {
 public:
  static jobrunner::PluginInfo info() {
    jobrunner::PluginInfo i;
    i.name = "v1_0_plugin";
    i.version = "1.0.0";
    i.kinds.push_back({"v1_0_echo", "v1_0_q", 0, 0, ""});
    return i;
  }
  nlohmann::json handle(jobrunner::Job& job) override {
    if (job.payload().contains("fail")) throw jobrunner::PermanentError("v1.0 plugin refuses");
    job.progress(100, "done");
    return {{"plugin_minor", JR_ABI_MINOR},
            {"desc_size", sizeof(jr_plugin_desc)},
            {"host_minor", job.host()->abi_minor},
            {"payload", job.payload()}};
  }
};

}  // namespace

JOBRUNNER_PLUGIN(V10)
