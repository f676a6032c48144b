/* A plain C plugin built against a FUTURE minor version of the ABI (tests/sdk/abi_v1_future,
 * minor 7: fields appended to jr_job, jr_host_api, jr_kind_desc and jr_plugin_desc). The
 * current host must accept its larger descriptors and ignore the fields it does not know; the
 * plugin must notice the older host through struct_size (JR_HAS_FIELD) and not call what the
 * host lacks. Kind "future_echo"; the result reports what the plugin found. */
#include <jobrunner/abi.h>
#include <stdio.h>
#include <string.h>

_Static_assert(JR_ABI_MINOR == 7, "must be built against tests/sdk/abi_v1_future");

static int32_t f_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)config_json;
  /* v1.0 host functions are always there; anything newer must be checked. */
  if (host->log == NULL || host->set_result == NULL) {
    snprintf(err, err_cap, "host lacks v1.0 functions");
    return 1;
  }
  *state = NULL;
  return 0;
}

static int32_t f_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  int host_has_heartbeat = JR_HAS_FIELD(host, jr_host_api, heartbeat);
  int job_has_trace = JR_HAS_FIELD(job, jr_job, trace_id);
  if (host_has_heartbeat) host->heartbeat(ctx);
  const char* trace = job_has_trace && job->trace_id ? job->trace_id : "";
  char out[4096];
  int n = snprintf(out, sizeof out,
                   "{\"plugin_minor\":%d,\"host_minor\":%u,\"host_api_size\":%u,"
                   "\"host_has_heartbeat\":%s,\"job_size\":%u,\"job_has_trace_id\":%s,"
                   "\"trace\":\"%s\",\"payload\":%.*s}",
                   JR_ABI_MINOR, host->abi_minor, host->struct_size,
                   host_has_heartbeat ? "true" : "false", job->struct_size,
                   job_has_trace ? "true" : "false", trace, (int)job->payload_len, job->payload);
  if (n < 0 || (size_t)n >= sizeof out) {
    static const char e[] = "payload too large for the future plugin";
    host->set_error(ctx, e, sizeof e - 1);
    return JR_ERR_PERMANENT;
  }
  host->set_result(ctx, out, (size_t)n);
  return JR_OK;
}

static const jr_kind_desc kind = {
    sizeof(jr_kind_desc), 0, "future_echo", "future_q", 0, NULL, 7, 0};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    "future_plugin",
                                    "1.7.0",
                                    kinds,
                                    1,
                                    0,
                                    "{\"sandbox\": {\"network\": \"none\"}}",
                                    f_init,
                                    f_handle,
                                    NULL,
                                    NULL,
                                    "https://example.invalid/future",
                                    1};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor; /* works with any v1 host: everything newer is checked at run time */
  return &desc;
}
