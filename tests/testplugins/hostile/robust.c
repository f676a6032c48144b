/* Hostile plugins for the host-robustness red-team tests (tests/host/robust_test.cpp, issue 16
 * classes 6, 7 and 9, issue 17's start-up item). One source, three plugins chosen at build time:
 *
 *   JR_ROBUST_MAIN  "hostile_robust": the payload {"do": "<what>"} names the misbehaviour:
 *       token_log       one log line of "token=" and 200,000 letters
 *       token_error     the same text as the attempt's error (permanent failure)
 *       enqueue_other   enqueues a job of another plugin's kind ("echo"); result {"rc": N}
 *       enqueue_many    enqueues 10,000 jobs of its own kind (delayed an hour); result {"ok": N}
 *       log_flood       1 KiB log lines for one second and 4 MiB (or 50 MB, or 20 s);
 *                       result {"bytes": N}
 *       progress_flood  200,000 progress updates, the last (100, "final"); result {"calls": N}
 *       anything else   returns at once
 *   JR_ROBUST_IDLE  "hostile_idle_hang": an idle hook that never returns (ignores cancellation).
 *   JR_ROBUST_INIT  "hostile_init": init fails ("dependency unreachable") while the Unix time is
 *       before config "fail_until" (always when it is missing): a dependency that is down.
 *   JR_ROBUST_INIT_HANG  "hostile_init_hang": init never returns (after writing "init entered;
 *       never returning" to stderr).
 *   JR_ROBUST_CTOR_HANG  "hostile_ctor_hang": a constructor that never returns, but only in a
 *       worker that serves jobs: describing it (as the describe uid, kDescribeUid below) works,
 *       so the plugin is accepted and then hangs on every start.
 *
 * Plain C against abi.h. */
#define _GNU_SOURCE
#include <jobrunner/abi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(JR_ROBUST_MAIN)
#define JR_NAME "hostile_robust"
#elif defined(JR_ROBUST_IDLE)
#define JR_NAME "hostile_idle_hang"
#elif defined(JR_ROBUST_INIT)
#define JR_NAME "hostile_init"
#elif defined(JR_ROBUST_INIT_HANG)
#define JR_NAME "hostile_init_hang"
#elif defined(JR_ROBUST_CTOR_HANG)
#define JR_NAME "hostile_ctor_hang"
#else
#error "define one of JR_ROBUST_MAIN, JR_ROBUST_IDLE, JR_ROBUST_INIT, JR_ROBUST_INIT_HANG, ..."
#endif

/* Says on stderr (relayed to the runner's log as "plugin output") that it hangs now, then does
 * so for ever (no signal or cancellation stops it; only SIGKILL). */
__attribute__((unused)) static void hang(const char* what) {
  char line[128];
  int n = snprintf(line, sizeof line, "%s entered; never returning\n", what);
  if (write(2, line, (size_t)n) != n) {
  }
  for (;;) usleep(100 * 1000);
}

#if defined(JR_ROBUST_CTOR_HANG)
/* The describe workers' uid when the runner is root (host/sandbox/identity.hpp kUidBase); a
 * worker serving jobs runs as the plugin's own uid. */
#define kDescribeUid 2100000000u
__attribute__((constructor)) static void ctor_hang(void) {
  if (getuid() != kDescribeUid) hang("constructor");
}
#endif

__attribute__((unused)) static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((unused)) static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int32_t result(const jr_host_api* host, jr_job_ctx* ctx, const char* key, long long n) {
  char buf[128];
  int len = snprintf(buf, sizeof buf, "{\"%s\":%lld}", key, n);
  host->set_result(ctx, buf, (size_t)len);
  return JR_OK;
}

#if defined(JR_ROBUST_MAIN)
/* "token=" followed by 200,000 letters: the text that crashed std::regex redaction. */
static char* long_token(size_t* len) {
  const size_t n = 200000;
  char* s = malloc(n + 7);
  if (s == NULL) return NULL;
  memcpy(s, "token=", 6);
  for (size_t i = 0; i < n; i++) s[6 + i] = (char)('a' + i % 26);
  s[6 + n] = '\0';
  *len = 6 + n;
  return s;
}

/* Payloads are {"do": "<what>"}. */
static int is(const jr_job* job, const char* what) {
  char want[64];
  int n = snprintf(want, sizeof want, "\"%s\"", what);
  return memmem(job->payload, job->payload_len, want, (size_t)n) != NULL;
}
#endif

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
#if defined(JR_ROBUST_MAIN)
  if (is(job, "token_log") || is(job, "token_error")) {
    size_t len = 0;
    char* s = long_token(&len);
    if (s == NULL) return JR_ERR_RETRYABLE;
    if (is(job, "token_log")) {
      host->log(ctx, JR_LOG_WARN, s, len);
      free(s);
      return result(host, ctx, "logged", (long long)len);
    }
    host->set_error(ctx, s, len);
    free(s);
    return JR_ERR_PERMANENT;
  }
  if (is(job, "enqueue_other")) {
    int64_t id = 0;
    int32_t rc = host->enqueue(ctx, "echo", "{\"forged\":true}", 15, NULL, &id);
    return result(host, ctx, "rc", rc);
  }
  if (is(job, "enqueue_many")) {
    long long ok = 0;
    for (int i = 0; i < 10000; i++) {
      int64_t id = 0;
      const char* p = "{\"noop\":true}";
      if (host->enqueue(ctx, JR_NAME, p, strlen(p), "{\"delay_seconds\": 3600}", &id) == 0) ok++;
    }
    return result(host, ctx, "ok", ok);
  }
  if (is(job, "log_flood")) {
    char line[1024];
    memset(line, 'x', sizeof line);
    long long bytes = 0;
    /* At least one second and at least 4 MiB (a loaded machine is slower per call), at most
     * 50 MB or 20 s. */
    double start = mono_s();
    int more = 1;
    for (long long i = 0; bytes < 50LL * 1000 * 1000 && more; i++) {
      if (i % 256 == 0) {
        double t = mono_s() - start;
        more = t < 20.0 && (t < 1.0 || bytes < 4LL * 1024 * 1024);
        if (!more) break;
      }
      int n = snprintf(line, sizeof line, "flood line %lld ", i);
      line[n] = 'x';
      host->log(ctx, JR_LOG_INFO, line, sizeof line);
      bytes += (long long)sizeof line;
    }
    return result(host, ctx, "bytes", bytes);
  }
  if (is(job, "progress_flood")) {
    char step[64];
    const int n = 200000;
    for (int i = 0; i < n; i++) {
      snprintf(step, sizeof step, "step %d", i);
      host->progress(ctx, 100.0 * i / n, step);
    }
    host->progress(ctx, 100.0, "final");
    return result(host, ctx, "calls", n + 1);
  }
  return result(host, ctx, "noop", 1);
#else
  (void)job;
  return result(host, ctx, "ok", 1);
#endif
}

static int32_t h_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)config_json;
  *state = NULL;
#if defined(JR_ROBUST_INIT)
  const char* at = strstr(config_json, "\"fail_until\"");
  double until = 1e300;
  if (at != NULL && (at = strchr(at, ':')) != NULL) until = strtod(at + 1, NULL);
  if (now_s() < until) {
    if (at == NULL) {
      snprintf(err, err_cap, "dependency unreachable");
    } else {
      snprintf(err, err_cap, "dependency unreachable (it is down until %.0f)", until);
    }
    return 1;
  }
#elif defined(JR_ROBUST_INIT_HANG)
  (void)err;
  (void)err_cap;
  hang("init");
#else
  (void)err;
  (void)err_cap;
#endif
  return 0;
}

#if defined(JR_ROBUST_IDLE)
static int32_t h_idle(void* state, const jr_host_api* host, jr_job_ctx* ctx) {
  (void)state;
  (void)ctx;
  host->log(ctx, JR_LOG_INFO, "idle hook entered; never returning", 34);
  for (;;) usleep(100 * 1000); /* ignores is_cancelled on purpose */
  return 0;
}
#define JR_IDLE h_idle
#define JR_MANIFEST                                                       \
  "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 256}, \"idle\": " \
  "{\"threshold_seconds\": 0.2, \"poll_interval_seconds\": 0.1, \"timeout_seconds\": 2}}"
#else
#define JR_IDLE NULL
#define JR_MANIFEST "{\"sandbox\": {\"network\": \"none\", \"memory_mb\": 256}}"
#endif

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, JR_NAME, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    JR_NAME,
                                    "0.1",
                                    kinds,
                                    1,
                                    0,
                                    JR_MANIFEST,
                                    h_init,
                                    h_handle,
                                    NULL,
                                    JR_IDLE};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
