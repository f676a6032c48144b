/* Hostile test plugins for the sandbox tests: one misbehaviour per plugin, chosen by JR_CASE at
 * build time (see CMakeLists.txt), plus a well-behaved plugin (JR_CASE_GOOD) that exercises what
 * the sandbox must still allow. The payload is a JSON string: its text, unquoted, is the
 * argument (a path, a port, a sub-command). Plain C against abi.h so each case builds in a blink.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hostile_arg.h"

#ifndef JR_CASE_NAME
#error "JR_CASE_NAME must be defined"
#endif

static char g_arg[4096];
static int g_ctor_errno = -1;

static const char* arg_of(const jr_job* job) { return jr_hostile_arg(job, g_arg, sizeof g_arg); }

static int32_t fail_errno(const jr_host_api* host, jr_job_ctx* ctx, const char* what, int e) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s: %s (errno %d)", what, strerror(e), e);
  host->log(ctx, JR_LOG_WARN, msg, (size_t)n);
  host->set_error(ctx, msg, (size_t)n);
  return JR_ERR_RETRYABLE;
}

static int32_t ok_json(const jr_host_api* host, jr_job_ctx* ctx, const char* json) {
  host->set_result(ctx, json, strlen(json));
  return JR_OK;
}

#if defined(JR_CASE_CTOR_ABORT)
__attribute__((constructor)) static void misbehave(void) { abort(); }
#elif defined(JR_CASE_CTOR_SHADOW)
__attribute__((constructor)) static void misbehave(void) {
  int fd = open("/etc/shadow", O_RDONLY);
  g_ctor_errno = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
}
#endif

struct thread_arg {
  const jr_host_api* host;
  jr_job_ctx* ctx;
  int n;
};

static void* thread_main(void* p) {
  struct thread_arg* a = (struct thread_arg*)p;
  char msg[64];
  int n = snprintf(msg, sizeof msg, "hello from thread %d", a->n);
  a->host->log(a->ctx, JR_LOG_INFO, msg, (size_t)n);
  return NULL;
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  const char* arg = arg_of(job);
  char buf[256];
#if defined(JR_CASE_SEGV)
  (void)arg;
  (void)buf;
  static volatile uintptr_t bad_address = 8; /* volatile: no -Warray-bounds at -O2 */
  *(volatile int*)bad_address = 1;
  return JR_OK;
#elif defined(JR_CASE_ABORT)
  (void)arg;
  (void)buf;
  abort();
#elif defined(JR_CASE_SPIN)
  (void)arg;
  (void)buf;
  for (volatile unsigned long i = 0; i != ~0UL; i++) {
  }
  return JR_OK;
#elif defined(JR_CASE_IGNORE_CANCEL)
  (void)arg;
  (void)buf;
  for (volatile int forever = 1; forever;) usleep(10000); /* never asks is_cancelled */
  return JR_OK;
#elif defined(JR_CASE_FORKBOMB)
  (void)arg;
  (void)buf;
  int forked = 0;
  for (int i = 0; i < 1000; i++) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    if (p < 0) return fail_errno(host, ctx, "fork", errno);
    forked++;
  }
  snprintf(buf, sizeof buf, "{\"forked\":%d}", forked);
  return ok_json(host, ctx, buf);
#elif defined(JR_CASE_EXEC)
  (void)buf;
  execl("/bin/sh", "sh", "-c", arg, (char*)NULL);
  return fail_errno(host, ctx, "execl", errno);
#elif defined(JR_CASE_READ_FILE)
  int fd = open(arg, O_RDONLY);
  if (fd < 0) return fail_errno(host, ctx, "open for reading", errno);
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  snprintf(buf, sizeof buf, "{\"read\":%zd}", n);
  return ok_json(host, ctx, buf);
#elif defined(JR_CASE_WRITE_FILE)
  int fd = open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return fail_errno(host, ctx, "open for writing", errno);
  ssize_t n = write(fd, "pwned\n", 6);
  close(fd);
  snprintf(buf, sizeof buf, "{\"wrote\":%zd}", n);
  return ok_json(host, ctx, buf);
#elif defined(JR_CASE_CONNECT)
  /* "PORT": TCP connect to 127.0.0.1:PORT. "MODE ADDR PORT" (IPv4 ADDR): MODE tcp = connect,
   * udp = sendto with the address, msg = sendmsg with the address, bind = bind to it, listen =
   * listen on an unbound TCP socket. */
  char mode[16] = "tcp", addr[64] = "127.0.0.1";
  int port = 0;
  if (sscanf(arg, "%15s %63s %d", mode, addr, &port) != 3) {
    snprintf(mode, sizeof mode, "tcp");
    snprintf(addr, sizeof addr, "127.0.0.1");
    port = atoi(arg);
  }
  int dgram = strcmp(mode, "udp") == 0 || strcmp(mode, "msg") == 0;
  int s = socket(AF_INET, dgram ? SOCK_DGRAM : SOCK_STREAM, 0);
  if (s < 0) return fail_errno(host, ctx, "socket", errno);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, addr, &a.sin_addr);
  int rc;
  if (strcmp(mode, "udp") == 0) {
    rc = sendto(s, "ping", 4, 0, (struct sockaddr*)&a, sizeof a) == 4 ? 0 : -1;
  } else if (strcmp(mode, "msg") == 0) {
    struct iovec v = {(void*)"ping", 4};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_name = &a;
    m.msg_namelen = sizeof a;
    m.msg_iov = &v;
    m.msg_iovlen = 1;
    rc = sendmsg(s, &m, 0) == 4 ? 0 : -1;
  } else if (strcmp(mode, "bind") == 0) {
    rc = bind(s, (struct sockaddr*)&a, sizeof a);
  } else if (strcmp(mode, "listen") == 0) {
    rc = listen(s, 4);
  } else {
    rc = connect(s, (struct sockaddr*)&a, sizeof a);
  }
  if (rc != 0) {
    int e = errno;
    close(s);
    return fail_errno(host, ctx,
                      dgram ? (mode[0] == 'u' ? "sendto" : "sendmsg")
                            : (strcmp(mode, "tcp") == 0 ? "connect" : mode),
                      e);
  }
  if (strcmp(mode, "tcp") == 0) {
    /* The connection is real: say hello through it (a plain write on the connected socket). */
    if (write(s, "hello", 5) != 5) {
      int e = errno;
      close(s);
      return fail_errno(host, ctx, "write", e);
    }
  }
  close(s);
  return ok_json(host, ctx, "{\"connected\":true}");
#elif defined(JR_CASE_BIG_RESULT)
  (void)arg;
  (void)buf;
  size_t n = (size_t)17 << 20;
  char* big = malloc(n);
  if (big == NULL) return fail_errno(host, ctx, "malloc", ENOMEM);
  memset(big, 'x', n);
  big[0] = '"';
  big[n - 1] = '"';
  host->set_result(ctx, big, n);
  free(big);
  return JR_OK;
#elif defined(JR_CASE_GARBAGE)
  (void)arg;
  (void)buf;
  unsigned char junk[64];
  memset(junk, 0xAB, sizeof junk);
  if (write(3, junk, sizeof junk) < 0) return fail_errno(host, ctx, "write", errno);
  return ok_json(host, ctx, "{\"garbage\":true}");
#elif defined(JR_CASE_GARBAGE_TYPE)
  (void)arg;
  (void)buf;
  unsigned char frame[8] = {0, 0, 0, 0, 0x39, 0x05, 0, 0}; /* empty frame of type 1337 */
  if (write(3, frame, sizeof frame) < 0) return fail_errno(host, ctx, "write", errno);
  return ok_json(host, ctx, "{\"garbage\":true}");
#elif defined(JR_CASE_CLOSE_IPC)
  (void)arg;
  (void)buf;
  close(3);
  return ok_json(host, ctx, "{\"closed\":true}");
#elif defined(JR_CASE_CTOR_ABORT) || defined(JR_CASE_CTOR_SHADOW)
  (void)arg;
  snprintf(buf, sizeof buf, "{\"ctor_errno\":%d}", g_ctor_errno);
  return ok_json(host, ctx, buf);
#elif defined(JR_CASE_GOOD)
  if (strcmp(arg, "threads") == 0) {
    pthread_t t[4];
    struct thread_arg a[4];
    for (int i = 0; i < 4; i++) {
      a[i].host = host;
      a[i].ctx = ctx;
      a[i].n = i;
      if (pthread_create(&t[i], NULL, thread_main, &a[i]) != 0) {
        return fail_errno(host, ctx, "pthread_create", errno);
      }
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    return ok_json(host, ctx, "{\"threads\":4}");
  }
  if (strcmp(arg, "enqueue") == 0) {
    int64_t id = 0;
    if (host->enqueue(ctx, "echo", "{\"x\":1}", 7, "{\"queue\":\"q\"}", &id) != 0) {
      return fail_errno(host, ctx, "enqueue", EIO);
    }
    snprintf(buf, sizeof buf, "{\"id\":%lld}", (long long)id);
    return ok_json(host, ctx, buf);
  }
  if (strcmp(arg, "progress") == 0) {
    host->progress(ctx, 50.0, "halfway");
    host->log(ctx, JR_LOG_INFO, "made progress", 13);
    return ok_json(host, ctx, "{\"progress\":true}");
  }
  if (strcmp(arg, "snooze") == 0) {
    host->snooze(ctx, 7.5);
    return JR_SNOOZE;
  }
  if (strcmp(arg, "permanent") == 0) {
    host->set_error(ctx, "bad input", 9);
    return JR_ERR_PERMANENT;
  }
  if (strcmp(arg, "cancel_wait") == 0) {
    while (!host->is_cancelled(ctx)) usleep(5000);
    return JR_CANCELLED;
  }
  if (strcmp(arg, "scratch") == 0) {
    const char* tmp = getenv("TMPDIR");
    if (tmp == NULL) return fail_errno(host, ctx, "TMPDIR unset", ENOENT);
    snprintf(buf, sizeof buf, "%s/file.txt", tmp);
    int fd = open(buf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return fail_errno(host, ctx, "open scratch", errno);
    if (write(fd, "ok", 2) != 2) return fail_errno(host, ctx, "write scratch", errno);
    close(fd);
    return ok_json(host, ctx, "{\"scratch\":true}");
  }
  /* For the batch tests (several jobs on one worker): which worker ran it, a crash of one job,
   * a job of a given length that honours cancellation, and one that ignores it. */
  if (strcmp(arg, "pid") == 0) {
    host->log(ctx, JR_LOG_INFO, "ran pid", 7);
    snprintf(buf, sizeof buf, "{\"pid\":%d}", (int)getpid());
    return ok_json(host, ctx, buf);
  }
  if (strcmp(arg, "crash") == 0) abort();
  if (strcmp(arg, "deadline") == 0) { /* how long jr_job.deadline_ms leaves from the start */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    snprintf(buf, sizeof buf, "{\"left_ms\":%lld}",
             job->deadline_ms > 0 ? (long long)job->deadline_ms - now : -1LL);
    return ok_json(host, ctx, buf);
  }
  if (strncmp(arg, "sleep_", 6) == 0) {
    long ms = strtol(arg + 6, NULL, 10);
    for (long waited = 0; waited < ms; waited += 5) {
      if (host->is_cancelled(ctx)) return JR_CANCELLED;
      usleep(5000);
    }
    snprintf(buf, sizeof buf, "{\"pid\":%d}", (int)getpid());
    return ok_json(host, ctx, buf);
  }
  if (strcmp(arg, "hang") == 0) {
    for (;;) usleep(100000); /* ignores cancellation */
  }
  if (strcmp(arg, "env") == 0) {
    extern char** environ;
    int n = 0;
    for (char** e = environ; *e != NULL; e++) n++;
    snprintf(buf, sizeof buf, "{\"env\":%d,\"uid\":%d}", n, (int)getuid());
    return ok_json(host, ctx, buf);
  }
  if (strcmp(arg, "fds") == 0) {
    int open_fds = 0;
    for (int fd = 0; fd < 1024; fd++) {
      if (fcntl(fd, F_GETFD) >= 0) open_fds++;
    }
    snprintf(buf, sizeof buf, "{\"fds\":%d}", open_fds);
    return ok_json(host, ctx, buf);
  }
  return ok_json(host, ctx, job->payload);
#else
#error "unknown JR_CASE"
#endif
}

static int32_t h_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  *state = NULL;
  if (strstr(config_json, "\"refuse_init\"") != NULL) {
    snprintf(err, err_cap, "init refused on purpose");
    return 1;
  }
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
