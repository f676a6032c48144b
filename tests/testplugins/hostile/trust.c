/* Hostile plugins for the trust-model red-team tests (issue 16, tests/host/trust_redteam_test.cpp):
 * a plugin file that grants itself privileges, that is swapped on disk, whose constructor runs
 * code, loops, stops itself or aborts, whose descriptor is oversized or wrong, and plugins that
 * claim another plugin's kind. One case per build, chosen by JR_TRUST_<CASE> (CMakeLists.txt).
 * Plain C against abi.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile_arg.h"

static char g_arg[4096];
static char g_config[65536];

static const char* arg_of(const jr_job* job) { return jr_hostile_arg(job, g_arg, sizeof g_arg); }

static int32_t ok_json(const jr_host_api* host, jr_job_ctx* ctx, const char* json) {
  host->set_result(ctx, json, strlen(json));
  return JR_OK;
}

/* True when `secret` appears in the plugin's config or its environment. */
static int sees(const char* secret) {
  extern char** environ;
  if (secret == NULL || *secret == '\0') return 0;
  if (strstr(g_config, secret) != NULL) return 1;
  for (char** e = environ; *e != NULL; e++) {
    if (strstr(*e, secret) != NULL) return 1;
  }
  return 0;
}

#if defined(JR_TRUST_GREEDY)
/* Asks for everything: in-process, the whole file system (read and write), the network, no
 * memory limit, and the runner's secrets through environment passthrough. */
#define NAME "trust_greedy"
#define MANIFEST                                                                                \
  "{\"isolation\": \"none\", \"env\": {\"DATABASE_URL\": \"stolen_db\", \"RUNNER_API_TOKEN\": " \
  "\"stolen_token\"}, \"sandbox\": {\"readable\": [\"/\"], \"writable\": [\"/\"], "             \
  "\"network\": \"full\", \"memory_mb\": 0}}"
#elif defined(JR_TRUST_SWAP_A)
#define NAME "trust_swap"
#define VERSION_TAG "A"
#elif defined(JR_TRUST_SWAP_B)
#define NAME "trust_swap"
#define VERSION_TAG "B"
#elif defined(JR_TRUST_MARKER)
/* Its constructor leaves a mark: the file named by $JR_TRUST_MARKER gets "pid uid". Run in the
 * host, it would write as the runner's user; in a sandboxed describe the environment is empty. */
#define NAME "trust_marker"
__attribute__((constructor)) static void mark(void) {
  const char* path = getenv("JR_TRUST_MARKER");
  if (path == NULL) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%d %d\n", (int)getpid(), (int)getuid());
  if (write(fd, buf, (size_t)n) != n) {
  }
  close(fd);
}
#elif defined(JR_TRUST_CTOR_LOOP)
#define NAME "trust_ctor_loop"
__attribute__((constructor)) static void spin(void) {
  for (volatile unsigned long i = 0;; i++) {
  }
}
#elif defined(JR_TRUST_CTOR_STOP)
#define NAME "trust_ctor_stop"
__attribute__((constructor)) static void stop_self(void) { raise(SIGSTOP); }
#elif defined(JR_TRUST_CTOR_ABORT)
#define NAME "trust_ctor_abort"
__attribute__((constructor)) static void die(void) { abort(); }
#elif defined(JR_TRUST_HUGE_MANIFEST)
/* A 1 MiB manifest (the host accepts 64 KiB). */
#define NAME "trust_huge_manifest"
#define DYNAMIC_MANIFEST 1
#elif defined(JR_TRUST_WRONG_MAJOR)
#define NAME "trust_wrong_major"
#define ABI_MAJOR (JR_ABI_MAJOR + 1)
#elif defined(JR_TRUST_LONG_NAME)
/* A 100,000-character name (names are at most 128). */
#define NAME "trust_long_name"
#define DYNAMIC_NAME 1
#elif defined(JR_TRUST_DUP_A)
#define NAME "trust_dup_a"
#define KIND "trust_dup_kind"
#elif defined(JR_TRUST_DUP_B)
#define NAME "trust_dup_b"
#define KIND "trust_dup_kind"
#elif defined(JR_TRUST_OWNER_A)
#define NAME "trust_owner_a"
#define KIND "trust_shared_kind"
#define VERSION_TAG "a"
#elif defined(JR_TRUST_OWNER_B)
#define NAME "trust_owner_b"
#define KIND "trust_shared_kind"
#define VERSION_TAG "b"
#elif defined(JR_TRUST_NET)
/* Asks for what an approval may grant: loopback sockets and a readable file. */
#define NAME "trust_net"
#define MANIFEST "{\"sandbox\": {\"network\": \"loopback\", \"readable\": [\"/etc/hostname\"]}}"
#else
#error "unknown JR_TRUST case"
#endif

#ifndef KIND
#define KIND NAME
#endif
#ifndef MANIFEST
#define MANIFEST "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 256}}"
#endif
#ifndef ABI_MAJOR
#define ABI_MAJOR JR_ABI_MAJOR
#endif
#ifndef VERSION_TAG
#define VERSION_TAG "-"
#endif

/* Payload "crash": abort. "probe;SECRET1;SECRET2;PATH": what the plugin can see and do (its pid
 * and uid, whether either string is in its config or environment, errno of opening PATH and of
 * socket(AF_INET), its address-space limit). Else: {"version", "pid", "uid"}. */
static int32_t t_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  const char* arg = arg_of(job);
  char buf[1024];
  if (strcmp(arg, "crash") == 0) abort();
  if (strncmp(arg, "probe;", 6) == 0) {
    char* s1 = g_arg + 6;
    char* s2 = strchr(s1, ';');
    char* path = NULL;
    if (s2 != NULL) {
      *s2++ = '\0';
      path = strchr(s2, ';');
      if (path != NULL) *path++ = '\0';
    }
    int read_errno = 0;
    if (path != NULL) {
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        read_errno = errno;
      } else {
        close(fd);
      }
    }
    int sock_errno = 0;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
      sock_errno = errno;
    } else {
      close(s);
    }
    struct rlimit as;
    long as_mb = -1;
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY) {
      as_mb = (long)(as.rlim_cur >> 20);
    }
    snprintf(buf, sizeof buf,
             "{\"pid\":%d,\"uid\":%d,\"sees_secret1\":%s,\"sees_secret2\":%s,\"read_errno\":%d,"
             "\"socket_errno\":%d,\"as_mb\":%ld}",
             (int)getpid(), (int)getuid(), sees(s1) ? "true" : "false",
             s2 != NULL && sees(s2) ? "true" : "false", read_errno, sock_errno, as_mb);
    return ok_json(host, ctx, buf);
  }
  snprintf(buf, sizeof buf, "{\"version\":\"%s\",\"pid\":%d,\"uid\":%d}", VERSION_TAG,
           (int)getpid(), (int)getuid());
  return ok_json(host, ctx, buf);
}

static int32_t t_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)err;
  (void)err_cap;
  *state = NULL;
  snprintf(g_config, sizeof g_config, "%s", config_json);
  return 0;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, KIND, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                              ABI_MAJOR,
                              JR_ABI_MINOR,
                              NAME,
                              "0.1",
                              kinds,
                              1,
                              0,
                              MANIFEST,
                              t_init,
                              t_handle,
                              NULL,
                              NULL};

#if defined(DYNAMIC_MANIFEST)
static char g_manifest[(1 << 20) + 64];
#endif
#if defined(DYNAMIC_NAME)
static char g_name[100001];
#endif

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
#if defined(DYNAMIC_MANIFEST)
  size_t n = sizeof g_manifest - 64;
  memcpy(g_manifest, "{\"pad\": \"", 9);
  memset(g_manifest + 9, 'x', n);
  memcpy(g_manifest + 9 + n, "\"}", 3);
  desc.manifest_json = g_manifest;
#endif
#if defined(DYNAMIC_NAME)
  memset(g_name, 'n', sizeof g_name - 1);
  g_name[sizeof g_name - 1] = '\0';
  desc.name = g_name;
#endif
  return &desc;
}
