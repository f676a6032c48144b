/* Hostile plugin "hostile_parents" for the workflow red-team test (tests/host/workflow_test.cpp):
 * the host call jr.parent_results.v1 abused from inside the sandbox. The payload {"arg": "..."}:
 *   short    writes a parent_results frame (type 70) with a truncated payload straight to the
 *            IPC socket (fd 3): the host must end the exchange as a protocol error
 *   long     the same frame with four bytes too many after its fields
 *   hammer   calls the extension 10,010 times; result {"ok": N, "failed": M} (the host allows
 *            10,000 calls per attempt)
 *   null     calls it with a NULL receive callback; result {"rc": N}
 * Plain C against abi.h. */
#define _GNU_SOURCE
#include <jobrunner/abi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hostile_arg.h"

static void count_bytes(void* user, const char* json, size_t len) {
  (void)json;
  *(size_t*)user += len;
}

static int32_t h_init(const jr_host_api* host, const char* config, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)config;
  (void)err;
  (void)err_cap;
  *state = NULL;
  return 0;
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  char arg[64];
  char buf[128];
  jr_hostile_arg(job, arg, sizeof arg);
  const jr_parent_results_ext* ext =
      (const jr_parent_results_ext*)host->get_extension(JR_EXT_PARENT_RESULTS);
  if (ext == NULL) return JR_ERR_PERMANENT;
  if (strcmp(arg, "short") == 0 || strcmp(arg, "long") == 0) {
    /* header {len, type 70, 0}, then seq (8 bytes, any), and a cut request (4 of 8 bytes) or
     * the whole request (8 + 4) and 4 bytes more */
    unsigned char frame[8 + 8 + 16];
    memset(frame, 0, sizeof frame);
    unsigned int len = strcmp(arg, "short") == 0 ? 8 + 4 : 8 + 8 + 4 + 4;
    memcpy(frame, &len, 4);
    frame[4] = 70;
    if (write(3, frame, 8 + len) < 0) return JR_ERR_RETRYABLE;
    sleep(5); /* the host kills the worker meanwhile */
    return JR_OK;
  }
  if (strcmp(arg, "hammer") == 0) {
    int ok = 0, failed = 0;
    for (int i = 0; i < 10010; i++) {
      size_t n = 0;
      if (ext->parent_results(ctx, 0, count_bytes, &n) == 0 && n > 0) {
        ok++;
      } else {
        failed++;
      }
    }
    int len = snprintf(buf, sizeof buf, "{\"ok\":%d,\"failed\":%d}", ok, failed);
    host->set_result(ctx, buf, (size_t)len);
    return JR_OK;
  }
  if (strcmp(arg, "null") == 0) {
    int len =
        snprintf(buf, sizeof buf, "{\"rc\":%d}", (int)ext->parent_results(ctx, 0, NULL, NULL));
    host->set_result(ctx, buf, (size_t)len);
    return JR_OK;
  }
  return JR_OK;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "hostile_parents", NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    "hostile_parents",
                                    "0.1",
                                    kinds,
                                    1,
                                    0,
                                    "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 256}}",
                                    h_init,
                                    h_handle,
                                    NULL,
                                    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
