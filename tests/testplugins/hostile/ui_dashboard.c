/* Test plugin of the dashboard's browser test (tests/ui): two kinds.
 *   ui_progress  reports progress 0..100 in 10 steps, {"arg": "MS"} apart (default 400 ms), so a
 *                job page can be watched moving; stops when asked to.
 *   ui_hostile   fails for good with an error, a progress step and a log line made of markup
 *                ("<script>", "\"><img onerror=...>") and bytes that are not UTF-8 (0xff, an
 *                overlong '/', a lone surrogate): text a plugin may send the host and the page
 *                must show inert.
 * Plain C against abi.h. */
#include <jobrunner/abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hostile_arg.h"

static const char kHostile[] =
    "<script>document.title='pwned-error'</script>\"><img src=x onerror=\"document.title="
    "'pwned-img'\"> bad bytes: \xff\xfe \xc0\xaf \xed\xa0\x80 end";

static int32_t handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  char arg[64];
  if (strcmp(job->kind, "ui_hostile") == 0) {
    host->progress(ctx, 42.0, kHostile);
    host->log(ctx, JR_LOG_WARN, kHostile, sizeof kHostile - 1);
    host->set_error(ctx, kHostile, sizeof kHostile - 1);
    return JR_ERR_PERMANENT;
  }
  long ms = atol(jr_hostile_arg(job, arg, sizeof arg));
  if (ms <= 0) ms = 400;
  for (int i = 0; i <= 10; ++i) {
    char step[32];
    snprintf(step, sizeof step, "step %d of 10", i);
    host->progress(ctx, i * 10.0, step);
    if (i == 10) break;
    for (long slept = 0; slept < ms; slept += 10) {
      if (host->is_cancelled(ctx)) return JR_CANCELLED;
      struct timespec t = {0, 10 * 1000000L};
      nanosleep(&t, NULL);
    }
  }
  host->set_result(ctx, "{\"steps\":10}", 12);
  return JR_OK;
}

static int32_t init(const jr_host_api* host, const char* config, void** state, char* err,
                    size_t cap) {
  (void)host;
  (void)config;
  (void)err;
  (void)cap;
  *state = NULL;
  return 0;
}

static const jr_kind_desc kProgress = {sizeof(jr_kind_desc), 3, "ui_progress", NULL, 0, NULL};
static const jr_kind_desc kHostileKind = {sizeof(jr_kind_desc), 1, "ui_hostile", NULL, 0, NULL};
static const jr_kind_desc* const kKinds[] = {&kProgress, &kHostileKind};
static const jr_plugin_desc kDesc = {sizeof(jr_plugin_desc),
                                     JR_ABI_MAJOR,
                                     JR_ABI_MINOR,
                                     "ui_dashboard",
                                     "1.0.0",
                                     kKinds,
                                     2,
                                     0,
                                     "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 128}}",
                                     init,
                                     handle,
                                     NULL,
                                     NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &kDesc;
}
