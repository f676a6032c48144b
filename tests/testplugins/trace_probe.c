/* OpenTelemetry traces (docs/job-model.md): kind "trace_probe" reads the attempt's traceparent
 * through the extension jr.trace.v1 and returns it as its result, {"traceparent": "00-..."} or
 * {"traceparent": null}, as a handler's own tracing SDK would take it as its parent context.
 * A payload {"fail_until": N} fails attempts 1..N retryably (error kind "probe_failed") first. */
#include <jobrunner/abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const jr_trace_ext* trace_ext = NULL;

static int32_t probe_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                          size_t err_cap) {
  (void)config_json;
  *state = NULL;
  if (!JR_HAS_FIELD(host, jr_host_api, get_extension) || host->get_extension == NULL) {
    snprintf(err, err_cap, "host has no get_extension");
    return 1;
  }
  trace_ext = (const jr_trace_ext*)host->get_extension(JR_EXT_TRACE);
  if (trace_ext == NULL || trace_ext->struct_size < sizeof(jr_trace_ext)) {
    snprintf(err, err_cap, "host does not offer %s", JR_EXT_TRACE);
    return 1;
  }
  return 0;
}

static int32_t probe_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx,
                            const jr_job* job) {
  (void)state;
  const char* f = strstr(job->payload, "\"fail_until\":");
  if (f != NULL && job->attempt <= atoi(f + strlen("\"fail_until\":"))) {
    static const char e[] = "trace_probe fails this attempt on purpose";
    host->set_error(ctx, e, sizeof e - 1);
    const jr_error_kind_ext* k = (const jr_error_kind_ext*)host->get_extension(JR_EXT_ERROR_KIND);
    if (k != NULL) k->set_error_kind(ctx, "probe_failed", strlen("probe_failed"));
    return JR_ERR_RETRYABLE;
  }
  char small[8];
  if (trace_ext->get_traceparent(ctx, small, sizeof small) != -1 &&
      trace_ext->get_traceparent(ctx, small, sizeof small) != 0) {
    static const char e[] = "get_traceparent wrote past a small buffer";
    host->set_error(ctx, e, sizeof e - 1);
    return JR_ERR_PERMANENT;
  }
  char tp[JR_TRACEPARENT_SIZE];
  int32_t n = trace_ext->get_traceparent(ctx, tp, sizeof tp);
  char out[128];
  int len = n > 0 ? snprintf(out, sizeof out, "{\"traceparent\": \"%s\"}", tp)
                  : snprintf(out, sizeof out, "{\"traceparent\": null, \"rc\": %d}", (int)n);
  host->set_result(ctx, out, (size_t)len);
  return JR_OK;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "trace_probe", "traced", 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    "trace_probe",
                                    "0.1",
                                    kinds,
                                    1,
                                    0,
                                    NULL,
                                    probe_init,
                                    probe_handle,
                                    NULL,
                                    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
