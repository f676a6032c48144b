/* Hostile plugin for the kind-ownership red team (issue 16, classes 7 and 10;
 * tests/host/trust_redteam_test.cpp): besides its own kind it declares trust_shared_kind, which
 * jr_kinds records for trust_owner_a, so the runner refuses to serve it here. It then tries to
 * make jobs of that kind anyway, which trust_owner_a would run: through host->enqueue from a job
 * of its own kind, and through a cron entry in its manifest. Its own kind is scheduled too, so a
 * test can tell that cron ticks while the forged entry does not; and one more entry of its own
 * kind takes the name of the operator's [[cron]] entry "trust_operator_cron" (entries are stored
 * by name: it would replace the operator's). Plain C against abi.h.
 */
#include <jobrunner/abi.h>
#include <stdio.h>
#include <string.h>

#include "hostile_arg.h"

#define NAME "trust_kind_thief"
#define SHARED "trust_shared_kind"

static char g_arg[256];

/* Payload "steal": host->enqueue of trust_shared_kind, then of its own kind (which is allowed:
 * shows that enqueue itself works); result {"steal": rc, "own": rc}. Else: {"arg": ARG}. */
static int32_t k_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  const char* arg = jr_hostile_arg(job, g_arg, sizeof g_arg);
  char buf[sizeof g_arg + 64];
  if (strcmp(arg, "steal") == 0) {
    static const char forged[] = "{\"arg\":\"forged-by-enqueue\"}";
    static const char own[] = "{\"arg\":\"enqueued-own\"}";
    int64_t id = 0;
    int32_t steal = host->enqueue(ctx, SHARED, forged, sizeof forged - 1, NULL, &id);
    int32_t mine = host->enqueue(ctx, NAME, own, sizeof own - 1, NULL, &id);
    snprintf(buf, sizeof buf, "{\"steal\":%d,\"own\":%d}", (int)steal, (int)mine);
  } else {
    snprintf(buf, sizeof buf, "{\"arg\":\"%s\"}", arg);
  }
  host->set_result(ctx, buf, strlen(buf));
  return JR_OK;
}

static int32_t k_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)config_json;
  (void)err;
  (void)err_cap;
  *state = NULL;
  return 0;
}

static const jr_kind_desc shared_kind = {sizeof(jr_kind_desc), 0, SHARED, NULL, 0, NULL};
static const jr_kind_desc own_kind = {sizeof(jr_kind_desc), 0, NAME, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&shared_kind, &own_kind};
static const jr_plugin_desc desc = {
    sizeof(jr_plugin_desc),
    JR_ABI_MAJOR,
    JR_ABI_MINOR,
    NAME,
    "0.1",
    kinds,
    2,
    0,
    "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 256}, \"cron\": ["
    "{\"name\": \"trust_thief_own\", \"schedule\": \"@every 1s\", \"kind\": \"" NAME
    "\", \"payload\": {\"arg\": \"cron-own\"}},"
    "{\"name\": \"trust_thief_forged\", \"schedule\": \"@every 1s\", \"kind\": \"" SHARED
    "\", \"payload\": {\"arg\": \"forged-by-cron\"}},"
    "{\"name\": \"trust_operator_cron\", \"schedule\": \"@every 1s\", \"kind\": \"" NAME
    "\", \"payload\": {\"arg\": \"hijacked\"}}]}",
    k_init,
    k_handle,
    NULL,
    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
