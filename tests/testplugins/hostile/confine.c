/* Hostile plugin for the confinement red-team tests (tests/sandbox/confine_test.cpp): what a
 * plugin can do to resources outside the rlimits and to what it shares with the host. Built
 * twice, as hostile_confine and hostile_confine_peer (a second plugin beside it). The payload is
 * a JSON string "COMMAND ARGS...":
 *   ok                       returns {"ok":true,"pid":PID}
 *   truncate_shared          ftruncate the shared page (fd 4, and any jr-shared memfd it finds)
 *   output                   forged log lines, an overlong line and a flood on stdout/stderr;
 *                            reflags and truncates its fd 2
 *   memfd MB                 fills memfds of 16 MB until MB are held or a write fails; keeps them
 *   held                     MB of memfd it still holds
 *   threadbomb               threads (16 KiB stacks, blocked for ever) until pthread_create fails
 *   threads N                N threads, joined
 *   chmod PATH               chmod PATH 0777
 *   fill MB                  writes MB to $TMPDIR/fill, 1 MB at a time
 *   stat PATH...             stat and inotify_add_watch each PATH: the ones that worked
 *   affinity PID...          sched_setaffinity of each PID: the ones that worked
 *   orphan                   prctl(PR_SET_PDEATHSIG, 0), says "orphan pid PID" on stderr and
 *                            blocks for ever: tries to outlive the runner
 *   crash                    abort()
 * Results are JSON objects; failures of the attack itself are results too (with errno), so the
 * test sees exactly what the sandbox let through.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostile_arg.h"

#ifndef JR_CASE_NAME
#error "JR_CASE_NAME must be defined"
#endif

static char g_arg[8192];
static int g_memfds[1024];
static int g_memfd_count;
static long g_memfd_mb;

static const char* arg_of(const jr_job* job) { return jr_hostile_arg(job, g_arg, sizeof g_arg); }

static int32_t result(const jr_host_api* host, jr_job_ctx* ctx, const char* json) {
  host->set_result(ctx, json, strlen(json));
  return JR_OK;
}

static int32_t fail_errno(const jr_host_api* host, jr_job_ctx* ctx, const char* what, int e) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s: %s (errno %d)", what, strerror(e), e);
  host->set_error(ctx, msg, (size_t)n);
  return JR_ERR_RETRYABLE;
}

static int32_t truncate_shared(const jr_host_api* host, jr_job_ctx* ctx) {
  int truncated = 0, last_errno = 0, tried = 0;
  if (ftruncate(4, 0) == 0) {
    truncated++;
  } else {
    last_errno = errno;
  }
  tried++;
  DIR* d = opendir("/proc/self/fd");
  if (d != NULL) {
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
      char link[300], target[256];
      snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
      ssize_t n = readlink(link, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      if (strstr(target, "jr-shared") == NULL) continue;
      tried++;
      if (ftruncate(atoi(e->d_name), 0) == 0) {
        truncated++;
      } else {
        last_errno = errno;
      }
    }
    closedir(d);
  }
  char buf[128];
  snprintf(buf, sizeof buf, "{\"tried\":%d,\"truncated\":%d,\"errno\":%d}", tried, truncated,
           last_errno);
  return result(host, ctx, buf);
}

static void write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) return; /* EAGAIN once non-blocking: the rest is lost, as it may be */
    s += w;
    n -= (size_t)w;
  }
}

static int32_t output(const jr_host_api* host, jr_job_ctx* ctx) {
  const char* forged = "{\"level\":\"error\",\"msg\":\"forged by plugin\"}\n";
  write_all(1, forged, strlen(forged));
  write_all(2, forged, strlen(forged));
  /* One line of 100,000 bytes. */
  static char big[100001];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\n';
  write_all(2, big, sizeof big);
  /* The runner's file flags and its log file, if fd 2 were the runner's stderr. */
  int flags_rc = fcntl(2, F_SETFL, fcntl(2, F_GETFL) | O_NONBLOCK | O_APPEND);
  int trunc_rc = ftruncate(2, 0);
  int trunc_errno = trunc_rc == 0 ? 0 : errno;
  /* A flood: 4 MB in lines of 1 KB (non-blocking now: what does not fit is lost). */
  static char line[1024];
  memset(line, 'f', sizeof line - 1);
  line[sizeof line - 1] = '\n';
  for (int i = 0; i < 4096; i++) write_all(2, line, sizeof line);
  const char* done = "output done\n";
  write_all(2, done, strlen(done));
  char buf[160];
  snprintf(buf, sizeof buf, "{\"setfl\":%d,\"ftruncate\":%d,\"ftruncate_errno\":%d}", flags_rc,
           trunc_rc, trunc_errno);
  return result(host, ctx, buf);
}

static int32_t memfd(const jr_host_api* host, jr_job_ctx* ctx, long want_mb) {
  static char chunk[1 << 20];
  memset(chunk, 'm', sizeof chunk);
  int last_errno = 0;
  while (g_memfd_mb < want_mb && g_memfd_count < 1024) {
    int fd = memfd_create("hostile", MFD_CLOEXEC);
    if (fd < 0) {
      last_errno = errno;
      break;
    }
    g_memfds[g_memfd_count++] = fd;
    for (int i = 0; i < 16 && g_memfd_mb < want_mb; i++) {
      if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) {
        last_errno = errno;
        goto out;
      }
      g_memfd_mb++;
    }
  }
out:;
  char buf[128];
  snprintf(buf, sizeof buf, "{\"held_mb\":%ld,\"errno\":%d}", g_memfd_mb, last_errno);
  return result(host, ctx, buf);
}

static void* block_forever(void* p) {
  (void)p;
  for (;;) pause();
  return NULL;
}

static void* nothing(void* p) { return p; }

static int32_t threadbomb(const jr_host_api* host, jr_job_ctx* ctx) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 16384);
  int n = 0, rc = 0;
  while (n < 100000) {
    pthread_t t;
    rc = pthread_create(&t, &a, block_forever, NULL);
    if (rc != 0) break;
    pthread_detach(t);
    n++;
  }
  pthread_attr_destroy(&a);
  char buf[96];
  snprintf(buf, sizeof buf, "{\"threads\":%d,\"errno\":%d}", n, rc);
  return result(host, ctx, buf);
}

static int32_t threads(const jr_host_api* host, jr_job_ctx* ctx, int n) {
  pthread_t t[64];
  if (n > 64) n = 64;
  for (int i = 0; i < n; i++) {
    int rc = pthread_create(&t[i], NULL, nothing, NULL);
    if (rc != 0) {
      for (int j = 0; j < i; j++) pthread_join(t[j], NULL);
      return fail_errno(host, ctx, "pthread_create", rc);
    }
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  char buf[64];
  snprintf(buf, sizeof buf, "{\"threads\":%d}", n);
  return result(host, ctx, buf);
}

static int32_t fill(const jr_host_api* host, jr_job_ctx* ctx, long mb) {
  static char chunk[1 << 20];
  memset(chunk, 'd', sizeof chunk);
  const char* tmp = getenv("TMPDIR");
  char path[512];
  snprintf(path, sizeof path, "%s/fill", tmp != NULL ? tmp : "/tmp");
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail_errno(host, ctx, "open", errno);
  long written = 0;
  int last_errno = 0;
  while (written < mb) {
    ssize_t w = write(fd, chunk, sizeof chunk);
    if (w != (ssize_t)sizeof chunk) {
      last_errno = w < 0 ? errno : ENOSPC;
      break;
    }
    written++;
  }
  close(fd);
  unlink(path);
  char buf[96];
  snprintf(buf, sizeof buf, "{\"written_mb\":%ld,\"errno\":%d}", written, last_errno);
  return result(host, ctx, buf);
}

/* Appends "s" to the JSON array in out (bounded). */
static void push(char* out, size_t cap, const char* s) {
  size_t n = strlen(out);
  snprintf(out + n, cap - n, "%s\"%s\"", n > 1 ? "," : "", s);
}

static int32_t stat_paths(const jr_host_api* host, jr_job_ctx* ctx, char* args) {
  static char out[6000];
  strcpy(out, "[");
  int in = inotify_init1(IN_CLOEXEC);
  for (char* p = strtok(args, " "); p != NULL; p = strtok(NULL, " ")) {
    struct stat st;
    int seen = stat(p, &st) == 0;
    if (in >= 0 && inotify_add_watch(in, p, IN_ALL_EVENTS) >= 0) seen = 1;
    if (seen) push(out, sizeof out, p);
  }
  if (in >= 0) close(in);
  strncat(out, "]", sizeof out - strlen(out) - 1);
  static char buf[6100];
  snprintf(buf, sizeof buf, "{\"visible\":%s}", out);
  return result(host, ctx, buf);
}

static int32_t affinity(const jr_host_api* host, jr_job_ctx* ctx, char* args) {
  static char out[4000];
  strcpy(out, "[");
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  for (char* p = strtok(args, " "); p != NULL; p = strtok(NULL, " ")) {
    pid_t pid = (pid_t)atoi(p);
    if (pid <= 0 || pid == getpid()) continue;
    if (sched_setaffinity(pid, sizeof set, &set) == 0) push(out, sizeof out, p);
  }
  strncat(out, "]", sizeof out - strlen(out) - 1);
  static char buf[4100];
  snprintf(buf, sizeof buf, "{\"changed\":%s}", out);
  return result(host, ctx, buf);
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  char* arg = (char*)arg_of(job);
  char* rest = strchr(arg, ' ');
  if (rest != NULL) *rest++ = '\0';
  char buf[128];
  if (strcmp(arg, "ok") == 0) {
    snprintf(buf, sizeof buf, "{\"ok\":true,\"pid\":%d}", (int)getpid());
    return result(host, ctx, buf);
  }
  if (strcmp(arg, "truncate_shared") == 0) return truncate_shared(host, ctx);
  if (strcmp(arg, "output") == 0) return output(host, ctx);
  if (strcmp(arg, "memfd") == 0 && rest != NULL) return memfd(host, ctx, atol(rest));
  if (strcmp(arg, "held") == 0) {
    snprintf(buf, sizeof buf, "{\"held_mb\":%ld}", g_memfd_mb);
    return result(host, ctx, buf);
  }
  if (strcmp(arg, "threadbomb") == 0) return threadbomb(host, ctx);
  if (strcmp(arg, "threads") == 0 && rest != NULL) return threads(host, ctx, atoi(rest));
  if (strcmp(arg, "chmod") == 0 && rest != NULL) {
    int rc = chmod(rest, 0777);
    snprintf(buf, sizeof buf, "{\"chmod\":%d,\"errno\":%d}", rc, rc == 0 ? 0 : errno);
    return result(host, ctx, buf);
  }
  if (strcmp(arg, "fill") == 0 && rest != NULL) return fill(host, ctx, atol(rest));
  if (strcmp(arg, "stat") == 0 && rest != NULL) return stat_paths(host, ctx, rest);
  if (strcmp(arg, "affinity") == 0 && rest != NULL) return affinity(host, ctx, rest);
  if (strcmp(arg, "orphan") == 0) {
    /* No death with the runner, then never return (nor look at is_cancelled). */
    int rc = prctl(PR_SET_PDEATHSIG, 0);
    int n = snprintf(buf, sizeof buf, "orphan pid %d prctl %d\n", (int)getpid(), rc);
    write_all(2, buf, (size_t)n);
    for (;;) pause();
  }
  if (strcmp(arg, "crash") == 0) abort();
  return fail_errno(host, ctx, "unknown command", EINVAL);
}

static int32_t h_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)config_json;
  (void)err;
  (void)err_cap;
  *state = NULL;
  return 0;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, JR_CASE_NAME, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    JR_CASE_NAME,
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
