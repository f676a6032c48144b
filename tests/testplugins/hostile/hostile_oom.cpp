// Hostile test plugin: allocates 8 GB with operator new (the sandbox's RLIMIT_AS makes it fail
// with std::bad_alloc, which the plugin reports as an ordinary retryable error).
#include <jobrunner/abi.h>

#include <cstring>
#include <new>

namespace {

int32_t oom_init(const jr_host_api*, const char*, void** state, char*, size_t) noexcept {
  *state = nullptr;
  return 0;
}

int32_t oom_handle(void*, const jr_host_api* host, jr_job_ctx* ctx, const jr_job*) noexcept {
  try {
    // A new/delete pair with nothing observable in between may be elided at
    // -O2 (C++14 [expr.new]/10); the empty asm makes the memory escape so
    // the release build allocates and touches all 8 GiB like the debug one.
    char* p = new char[size_t{8} << 30];
    std::memset(p, 1, size_t{8} << 30);
    asm volatile("" : : "r"(p) : "memory");
    delete[] p;
    return JR_OK;
  } catch (const std::bad_alloc& e) {
    host->set_error(ctx, e.what(), std::strlen(e.what()));
    return JR_ERR_RETRYABLE;
  }
}

const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "hostile_oom", nullptr, 0, nullptr};
const jr_kind_desc* const kinds[] = {&kind};
const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                             JR_ABI_MAJOR,
                             JR_ABI_MINOR,
                             "hostile_oom",
                             "0.1",
                             kinds,
                             1,
                             0,
                             R"({"sandbox": {"network": "none", "memory_mb": 256}})",
                             oom_init,
                             oom_handle,
                             nullptr,
                             nullptr};

}  // namespace

extern "C" JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t) { return &desc; }
