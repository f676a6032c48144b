/* Deliberately broken descriptors, one shared library per case, selected at compile time with
 * JR_CASE: 1 wrong ABI major, 2 struct_size too small, 3 no entry symbol, 4 entry returns NULL,
 * 5 a v1.0 descriptor (older minor: no idle field) that must still load and run,
 * 6 a descriptor from a newer minor (extra trailing fields) that must load. */
#include <jobrunner/abi.h>
#include <string.h>

static int32_t ok_init(const jr_host_api* host, const char* cfg, void** state, char* err,
                       size_t cap) {
  (void)host;
  (void)cfg;
  (void)err;
  (void)cap;
  *state = NULL;
  return 0;
}

static int32_t ok_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  host->set_result(ctx, job->payload, job->payload_len);
  return JR_OK;
}

#if JR_CASE == 6
/* What a future minor version's descriptor could look like: v1.1 plus new trailing fields. */
typedef struct future_desc {
  jr_plugin_desc base;
  int64_t added_in_minor_7;
  const char* also_new;
} future_desc;
#endif

#if JR_CASE == 1
#define KIND "case_wrong_major"
#elif JR_CASE == 2
#define KIND "case_small"
#elif JR_CASE == 5
#define KIND "case_old_minor"
#else
#define KIND "case_new_minor"
#endif

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, KIND, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};

#if JR_CASE == 6
static future_desc desc = {{sizeof(future_desc), JR_ABI_MAJOR, 99, "case6", "9.9", kinds, 1, 0,
                            NULL, ok_init, ok_handle, NULL, NULL},
                           42,
                           "future"};
#else
static jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                              JR_ABI_MAJOR,
                              JR_ABI_MINOR,
                              "case",
                              "0.1",
                              kinds,
                              1,
                              0,
                              NULL,
                              ok_init,
                              ok_handle,
                              NULL,
                              NULL};
#endif

#if JR_CASE == 3
JR_EXPORT const jr_plugin_desc* not_the_entry_point(void) { return &desc; }
#else
JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
#if JR_CASE == 1
  desc.abi_major = 2;
#elif JR_CASE == 2
  desc.struct_size = 8;
#elif JR_CASE == 4
  return NULL;
#elif JR_CASE == 5
  desc.abi_minor = 0;
  desc.struct_size = (uint32_t)JR_PLUGIN_DESC_V1_0_SIZE;
#endif
#if JR_CASE == 6
  return &desc.base;
#else
  return &desc;
#endif
}
#endif
