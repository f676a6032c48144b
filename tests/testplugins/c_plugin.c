/* A plugin written in plain C against abi.h alone: kind "c_echo" returns its payload. */
#include <jobrunner/abi.h>
#include <string.h>

static int32_t c_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)config_json;
  (void)err;
  (void)err_cap;
  *state = NULL;
  return 0;
}

static int32_t c_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  static const char msg[] = "c plugin handling a job";
  host->log(ctx, JR_LOG_INFO, msg, sizeof msg - 1);
  host->progress(ctx, 50.0, "halfway");
  if (strstr(job->payload, "\"fail\"") != NULL) {
    static const char e[] = "c plugin refuses this payload";
    host->set_error(ctx, e, sizeof e - 1);
    return JR_ERR_PERMANENT;
  }
  host->set_result(ctx, job->payload, job->payload_len);
  return JR_OK;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "c_echo", "c_queue", 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    "c_plugin",
                                    "0.1",
                                    kinds,
                                    1,
                                    0,
                                    NULL,
                                    c_init,
                                    c_handle,
                                    NULL,
                                    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
