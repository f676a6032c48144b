/* Hostile test plugin "hostile_netguard": a loopback plugin that tries to get the host's network
 * guard to act for it with more than its own rights, or to reach past the guard through the
 * system calls seccomp allows. The payload is a JSON string "COMMAND ARG..." (or an object
 * {"cmd": "COMMAND ARG..."}): each command
 * reports what the kernel answered as a JSON result (errno 0 = it worked), so the tests assert
 * on outcomes, not on log text. Plain C against abi.h.
 *
 *   bind_tcp ADDR PORT          bind a TCP socket (PORT 80: a privileged port)
 *   unix_bind PATH              create a unix socket file at PATH
 *   unix_connect PATH           connect to the unix socket PATH and write "hi"
 *   unspec_sendto ADDR PORT     UDP sendto an IPv4 address labelled AF_UNSPEC
 *   netlink_route               RTM_NEWROUTE 192.0.2.0/24 dev lo (through a guarded sendto)
 *   sockopts                    setsockopt: refused source routing and friends, allowed basics
 *   rthdr_cmsg PORT             sendmsg to [::1]:PORT with an IPv6 routing header as ancillary data
 *   prctl                       prctl options that must be refused, and ones that must work
 *   affinity PID                sched_setaffinity/sched_getaffinity on PID and on itself
 *   ioctl                       allowed and refused ioctl requests, fcntl F_SETOWN
 *   getaddrinfo NAME            getaddrinfo(NAME, AI_ADDRCONFIG): works without netlink
 *   flood ADDR PORT             connect, then guarded sends of 64 KiB until one fails
 *   flood_and_udp ADDR TPORT UPORT
 *                               a thread floods a never-reading TCP peer at TPORT; once it is
 *                               stuck in a guarded send, this thread sends "ping" to UDP UPORT
 *                               and connects to TPORT, and returns (the flood stays stuck)
 *   flood_threads ADDR PORT N   N threads each flood their own connection to a never-reading
 *                               peer; once all are stuck or failed (and the refused ones were
 *                               restarted one by one until one is refused again), reports how
 *                               many failed with EAGAIN (the guard's bound on waiting calls)
 *   send_big ADDR PORT KIB MS   connect, set SO_SNDTIMEO to MS (0: none), then one blocking
 *                               guarded sendmsg of KIB KiB (byte i is i * 7 mod 256); reports
 *                               what it returned
 *   pdeathsig_hold              clear PR_SET_PDEATHSIG, report it in a log line, then wait
 *                               for cancellation (a worker that outlives its runner shows here)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jobrunner/abi.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char g_arg[4096];

/* The command: the payload's JSON string, or the "cmd" string of a payload object
 * ({"cmd": "bind_tcp 127.0.0.1 80"}, what `runner enqueue` accepts). No escapes are needed. */
static const char* arg_of(const jr_job* job) {
  size_t n = job->payload_len;
  const char* p = job->payload;
  const char* key = memmem(p, n, "\"cmd\"", 5);
  if (n > 0 && p[0] == '{' && key != NULL) {
    const char* open = memchr(key + 5, '"', n - (size_t)(key + 5 - p));
    const char* close = open ? memchr(open + 1, '"', n - (size_t)(open + 1 - p)) : NULL;
    if (open != NULL && close != NULL) {
      p = open + 1;
      n = (size_t)(close - p);
    }
  } else if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
    p++;
    n -= 2;
  }
  if (n >= sizeof g_arg) n = sizeof g_arg - 1;
  memcpy(g_arg, p, n);
  g_arg[n] = '\0';
  return g_arg;
}

static int32_t result(const jr_host_api* host, jr_job_ctx* ctx, const char* json) {
  host->set_result(ctx, json, strlen(json));
  return JR_OK;
}

static int32_t errno_result(const jr_host_api* host, jr_job_ctx* ctx, int rc) {
  char buf[64];
  snprintf(buf, sizeof buf, "{\"errno\":%d}", rc == 0 ? 0 : errno);
  return result(host, ctx, buf);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int inet4(const char* addr, int port, struct sockaddr_in* a) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  return inet_pton(AF_INET, addr, &a->sin_addr) == 1 ? 0 : -1;
}

/* Appends "name":errno (0 when rc == 0) to buf. */
static void add(char* buf, size_t cap, const char* name, int rc) {
  size_t n = strlen(buf);
  snprintf(buf + n, cap - n, "%s\"%s\":%d", n > 1 ? "," : "", name, rc == 0 ? 0 : errno);
}

static int32_t cmd_sockopts(const jr_host_api* host, jr_job_ctx* ctx) {
  char buf[1024] = "{";
  int s4 = socket(AF_INET, SOCK_DGRAM, 0);
  int s6 = socket(AF_INET6, SOCK_DGRAM, 0);
  int t4 = socket(AF_INET, SOCK_STREAM, 0);
  if (s4 < 0 || s6 < 0 || t4 < 0) return errno_result(host, ctx, -1);
  /* Loose source route through 192.0.2.1 (NOP, LSRR len 7 ptr 4, one address). */
  unsigned char lsrr[8] = {1, 0x83, 7, 4, 192, 0, 2, 1};
  add(buf, sizeof buf, "ip_options", setsockopt(s4, IPPROTO_IP, IP_OPTIONS, lsrr, sizeof lsrr));
  /* A segment routing header (type 4) whose one segment is 2001:db8::1: packets to ::1 would
   * first go there. */
  unsigned char srh[24] = {0, 2, 4, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8,
                           0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0,    1};
  add(buf, sizeof buf, "ipv6_rthdr", setsockopt(s6, IPPROTO_IPV6, IPV6_RTHDR, srh, sizeof srh));
  int four = AF_INET;
  add(buf, sizeof buf, "ipv6_addrform",
      setsockopt(s6, IPPROTO_IPV6, IPV6_ADDRFORM, &four, sizeof four));
  add(buf, sizeof buf, "tcp_ulp", setsockopt(t4, IPPROTO_TCP, TCP_ULP, "tls", 3));
  int one = 1;
  add(buf, sizeof buf, "so_reuseport", setsockopt(t4, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one));
  add(buf, sizeof buf, "ip_freebind", setsockopt(s4, IPPROTO_IP, IP_FREEBIND, &one, sizeof one));
  /* What real clients set keeps working. */
  add(buf, sizeof buf, "tcp_nodelay", setsockopt(t4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  add(buf, sizeof buf, "so_keepalive", setsockopt(t4, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
  int idle = 30;
  add(buf, sizeof buf, "tcp_keepidle",
      setsockopt(t4, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle));
  int size = 65536;
  add(buf, sizeof buf, "so_rcvbuf", setsockopt(s4, SOL_SOCKET, SO_RCVBUF, &size, sizeof size));
  struct timeval tv = {5, 0};
  add(buf, sizeof buf, "so_sndtimeo", setsockopt(t4, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv));
  add(buf, sizeof buf, "ip_recverr", setsockopt(s4, IPPROTO_IP, IP_RECVERR, &one, sizeof one));
  add(buf, sizeof buf, "ipv6_v6only", setsockopt(s6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
  /* Socket kinds: raw and ICMP sockets are refused; netlink too. */
  int raw = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  add(buf, sizeof buf, "sock_raw", raw < 0 ? -1 : 0);
  int ping = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  add(buf, sizeof buf, "sock_ping", ping < 0 ? -1 : 0);
  int nl = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  add(buf, sizeof buf, "sock_netlink", nl < 0 ? -1 : 0);
  int pk = socket(AF_PACKET, SOCK_DGRAM, 0);
  add(buf, sizeof buf, "sock_packet", pk < 0 ? -1 : 0);
  int fds[] = {s4, s6, t4, raw, ping, nl, pk};
  for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
    if (fds[i] >= 0) close(fds[i]);
  }
  strncat(buf, "}", sizeof buf - strlen(buf) - 1);
  return result(host, ctx, buf);
}

static int32_t cmd_rthdr_cmsg(const jr_host_api* host, jr_job_ctx* ctx, int port) {
  int s = socket(AF_INET6, SOCK_DGRAM, 0);
  if (s < 0) return errno_result(host, ctx, -1);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((uint16_t)port);
  a.sin6_addr = in6addr_loopback;
  unsigned char srh[24] = {0, 2, 4, 0, 0, 0, 0, 0, 0x20, 0x01, 0x0d, 0xb8,
                           0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0,    1};
  char control[CMSG_SPACE(sizeof srh)];
  memset(control, 0, sizeof control);
  struct iovec v = {(void*)"ping", 4};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_name = &a;
  m.msg_namelen = sizeof a;
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_RTHDR;
  c->cmsg_len = CMSG_LEN(sizeof srh);
  memcpy(CMSG_DATA(c), srh, sizeof srh);
  int rc = sendmsg(s, &m, 0) < 0 ? -1 : 0;
  int32_t r = errno_result(host, ctx, rc);
  close(s);
  return r;
}

static int32_t cmd_netlink_route(const jr_host_api* host, jr_job_ctx* ctx) {
  char buf[256];
  int s = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  if (s < 0) {
    snprintf(buf, sizeof buf, "{\"socket_errno\":%d}", errno);
    return result(host, ctx, buf);
  }
  struct {
    struct nlmsghdr nh;
    struct rtmsg rt;
    char attrs[64];
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_type = RTM_NEWROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  req.nh.nlmsg_seq = 1;
  req.rt.rtm_family = AF_INET;
  req.rt.rtm_dst_len = 24;
  req.rt.rtm_table = RT_TABLE_MAIN;
  req.rt.rtm_protocol = RTPROT_STATIC;
  req.rt.rtm_scope = RT_SCOPE_LINK;
  req.rt.rtm_type = RTN_UNICAST;
  size_t len = NLMSG_LENGTH(sizeof req.rt);
  struct rtattr* dst = (struct rtattr*)((char*)&req + NLMSG_ALIGN(len));
  dst->rta_type = RTA_DST;
  dst->rta_len = RTA_LENGTH(4);
  unsigned char prefix[4] = {192, 0, 2, 0};
  memcpy(RTA_DATA(dst), prefix, 4);
  len = NLMSG_ALIGN(len) + RTA_ALIGN(dst->rta_len);
  struct rtattr* oif = (struct rtattr*)((char*)&req + len);
  oif->rta_type = RTA_OIF;
  oif->rta_len = RTA_LENGTH(4);
  int lo = (int)if_nametoindex("lo");
  if (lo == 0) lo = 1;
  memcpy(RTA_DATA(oif), &lo, 4);
  len += RTA_ALIGN(oif->rta_len);
  req.nh.nlmsg_len = (unsigned)len;
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  if (sendto(s, &req, len, 0, (struct sockaddr*)&kernel, sizeof kernel) < 0) {
    snprintf(buf, sizeof buf, "{\"socket_errno\":0,\"send_errno\":%d}", errno);
    close(s);
    return result(host, ctx, buf);
  }
  char reply[1024];
  struct timeval tv = {2, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ssize_t n = recv(s, reply, sizeof reply, 0);
  int ack = -1;
  if (n >= (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
    struct nlmsghdr* h = (struct nlmsghdr*)reply;
    if (h->nlmsg_type == NLMSG_ERROR) ack = -((struct nlmsgerr*)NLMSG_DATA(h))->error;
  }
  snprintf(buf, sizeof buf, "{\"socket_errno\":0,\"send_errno\":0,\"ack_errno\":%d}", ack);
  close(s);
  return result(host, ctx, buf);
}

static int32_t cmd_prctl(const jr_host_api* host, jr_job_ctx* ctx) {
  char buf[1024] = "{";
  add(buf, sizeof buf, "set_pdeathsig_0", prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0));
  add(buf, sizeof buf, "set_dumpable_1", prctl(PR_SET_DUMPABLE, 1, 0, 0, 0));
  add(buf, sizeof buf, "set_ptracer_any",
      prctl(PR_SET_PTRACER, (unsigned long)PR_SET_PTRACER_ANY, 0, 0, 0));
  add(buf, sizeof buf, "set_child_subreaper", prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0));
  add(buf, sizeof buf, "set_keepcaps", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
  add(buf, sizeof buf, "set_seccomp", prctl(PR_SET_SECCOMP, 1 /* strict */, 0, 0, 0));
  add(buf, sizeof buf, "set_name", prctl(PR_SET_NAME, (unsigned long)"hostile", 0, 0, 0));
  char name[17] = {0};
  add(buf, sizeof buf, "get_name", prctl(PR_GET_NAME, (unsigned long)name, 0, 0, 0));
  int sig = -1;
  add(buf, sizeof buf, "get_pdeathsig", prctl(PR_GET_PDEATHSIG, (unsigned long)&sig, 0, 0, 0));
  size_t n = strlen(buf);
  snprintf(buf + n, sizeof buf - n, ",\"pdeathsig\":%d}", sig);
  return result(host, ctx, buf);
}

static int32_t cmd_affinity(const jr_host_api* host, jr_job_ctx* ctx, int pid) {
  char buf[256] = "{";
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  add(buf, sizeof buf, "set_other", sched_setaffinity(pid, sizeof one, &one));
  cpu_set_t got;
  add(buf, sizeof buf, "get_other", sched_getaffinity(pid, sizeof got, &got));
  add(buf, sizeof buf, "get_self", sched_getaffinity(0, sizeof got, &got));
  add(buf, sizeof buf, "set_self", sched_setaffinity(0, sizeof got, &got));
  strncat(buf, "}", sizeof buf - strlen(buf) - 1);
  return result(host, ctx, buf);
}

static int32_t cmd_ioctl(const jr_host_api* host, jr_job_ctx* ctx) {
  char buf[512] = "{";
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1, avail = 0;
  add(buf, sizeof buf, "fionbio", ioctl(s, FIONBIO, &one));
  add(buf, sizeof buf, "fionread", ioctl(s, FIONREAD, &avail));
  add(buf, sizeof buf, "fioclex", ioctl(s, FIOCLEX));
  char c = 'x';
  add(buf, sizeof buf, "tiocsti", ioctl(0, TIOCSTI, &c));
  add(buf, sizeof buf, "fioasync", ioctl(s, FIOASYNC, &one));
  add(buf, sizeof buf, "isatty_errno_enotty", isatty(0) ? -1 : (errno == ENOTTY ? 0 : -1));
  add(buf, sizeof buf, "f_setown_self", fcntl(s, F_SETOWN, getpid()));
  add(buf, sizeof buf, "f_setown_other", fcntl(s, F_SETOWN, 1));
  close(s);
  strncat(buf, "}", sizeof buf - strlen(buf) - 1);
  return result(host, ctx, buf);
}

static int32_t cmd_getaddrinfo(const jr_host_api* host, jr_job_ctx* ctx, const char* name) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int rc = getaddrinfo(name, "80", &hints, &res);
  int n = 0;
  for (struct addrinfo* p = res; p != NULL; p = p->ai_next) n++;
  if (res != NULL) freeaddrinfo(res);
  char buf[128];
  snprintf(buf, sizeof buf, "{\"rc\":%d,\"addresses\":%d}", rc, n);
  return result(host, ctx, buf);
}

/* Connects a TCP socket to ADDR:PORT (a guarded connect); -1 with errno on failure. */
static int tcp_to(const char* addr, int port) {
  struct sockaddr_in a;
  if (inet4(addr, port, &a) != 0) {
    errno = EINVAL;
    return -1;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  if (connect(s, (struct sockaddr*)&a, sizeof a) != 0) {
    int e = errno;
    close(s);
    errno = e;
    return -1;
  }
  return s;
}

/* Guarded sends (sendmsg always goes to the guard) of 64 KiB until one fails. */
struct flood {
  int fd;
  atomic_long calls; /* sendmsg calls entered */
  atomic_long sends; /* and returned */
  atomic_int err;
};

static void* flood_main(void* p) {
  struct flood* f = (struct flood*)p;
  static char chunk[65536];
  struct iovec v = {chunk, sizeof chunk};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  for (;;) {
    atomic_fetch_add(&f->calls, 1);
    if (sendmsg(f->fd, &m, 0) < 0) {
      atomic_store(&f->err, errno);
      return NULL;
    }
    atomic_fetch_add(&f->sends, 1);
  }
}

static int32_t cmd_flood(const jr_host_api* host, jr_job_ctx* ctx, const char* addr, int port) {
  struct flood f;
  f.fd = tcp_to(addr, port);
  if (f.fd < 0) return errno_result(host, ctx, -1);
  atomic_init(&f.calls, 0);
  atomic_init(&f.sends, 0);
  atomic_init(&f.err, 0);
  flood_main(&f);
  char buf[96];
  snprintf(buf, sizeof buf, "{\"errno\":%d,\"sends\":%ld}", atomic_load(&f.err),
           atomic_load(&f.sends));
  close(f.fd);
  return result(host, ctx, buf);
}

static int32_t cmd_flood_and_udp(const jr_host_api* host, jr_job_ctx* ctx, const char* addr,
                                 int tport, int uport) {
  static struct flood f; /* the stuck thread keeps using it after this job returns */
  f.fd = tcp_to(addr, tport);
  if (f.fd < 0) return errno_result(host, ctx, -1);
  atomic_init(&f.calls, 0);
  atomic_init(&f.sends, 0);
  atomic_init(&f.err, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, flood_main, &f) != 0) return errno_result(host, ctx, -1);
  pthread_detach(t);
  /* Stuck: inside a send that has not returned for 300 ms (the peer's buffers are full). */
  int64_t since = now_ms(), start = since;
  long last = -1;
  while (now_ms() - start < 20000 && atomic_load(&f.err) == 0) {
    long calls = atomic_load(&f.calls), sends = atomic_load(&f.sends);
    if (sends != last || calls == sends) {
      last = sends;
      since = now_ms();
    } else if (now_ms() - since >= 300) {
      break;
    }
    usleep(10000);
  }
  int64_t t0 = now_ms();
  struct sockaddr_in u;
  inet4(addr, uport, &u);
  int us = socket(AF_INET, SOCK_DGRAM, 0);
  int udp = sendto(us, "ping", 4, 0, (struct sockaddr*)&u, sizeof u) == 4 ? 0 : errno;
  close(us);
  int c = tcp_to(addr, tport);
  int conn = c >= 0 ? 0 : errno;
  if (c >= 0) close(c);
  char buf[160];
  snprintf(buf, sizeof buf,
           "{\"flood_calls\":%ld,\"flood_sends\":%ld,\"flood_errno\":%d,\"udp\":%d,"
           "\"connect\":%d,\"ms\":%lld}",
           atomic_load(&f.calls), atomic_load(&f.sends), atomic_load(&f.err), udp, conn,
           (long long)(now_ms() - t0));
  return result(host, ctx, buf);
}

static int32_t cmd_flood_threads(const jr_host_api* host, jr_job_ctx* ctx, const char* addr,
                                 int port, int n) {
  static struct flood f[64]; /* stuck threads keep using them after this job returns */
  if (n < 1 || n > 64) n = 64;
  for (int i = 0; i < n; i++) {
    f[i].fd = tcp_to(addr, port);
    if (f[i].fd < 0) return errno_result(host, ctx, -1);
    atomic_init(&f[i].calls, 0);
    atomic_init(&f[i].sends, 0);
    atomic_init(&f[i].err, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, flood_main, &f[i]) != 0) return errno_result(host, ctx, -1);
    pthread_detach(t);
  }
  /* Settled: every thread failed or sits in a send, and no send returned for 300 ms. */
  long last = -1;
  int64_t since = now_ms(), start = since;
  while (now_ms() - start < 20000) {
    long total = 0;
    int settled = 1;
    for (int i = 0; i < n; i++) {
      long calls = atomic_load(&f[i].calls), sends = atomic_load(&f[i].sends);
      total += sends;
      if (atomic_load(&f[i].err) == 0 && calls == sends) settled = 0;
    }
    if (total != last || !settled) {
      last = total;
      since = now_ms();
    } else if (now_ms() - since >= 300) {
      break;
    }
    usleep(10000);
  }
  /* Top up: a call that waited only for a moment (its peer's buffers were still filling) may
   * have counted against the bound when another thread was refused, so fewer than the bound can
   * be stuck now. Restart the refused floods one at a time, each until it is stuck or refused;
   * the first refusal means the bound is reached with every waiting call truly stuck. */
  for (int i = 0; i < n; i++) {
    if (atomic_load(&f[i].err) != EAGAIN) continue;
    atomic_store(&f[i].err, 0);
    atomic_store(&f[i].calls, 0);
    atomic_store(&f[i].sends, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, flood_main, &f[i]) != 0) return errno_result(host, ctx, -1);
    pthread_detach(t);
    long seen = -1;
    int64_t quiet = now_ms(), begin = quiet;
    while (now_ms() - begin < 20000 && atomic_load(&f[i].err) == 0) {
      long calls = atomic_load(&f[i].calls), sends = atomic_load(&f[i].sends);
      if (sends != seen || calls == sends) {
        seen = sends;
        quiet = now_ms();
      } else if (now_ms() - quiet >= 300) {
        break;
      }
      usleep(10000);
    }
    if (atomic_load(&f[i].err) != 0) break;
  }
  int eagain = 0, other = 0, stuck = 0;
  for (int i = 0; i < n; i++) {
    int e = atomic_load(&f[i].err);
    if (e == EAGAIN) {
      eagain++;
    } else if (e != 0) {
      other++;
    } else {
      stuck++;
    }
  }
  /* The guard still answers while its waiting threads are all taken. */
  int c = tcp_to(addr, port);
  int conn = c >= 0 ? 0 : errno;
  if (c >= 0) close(c);
  char buf[128];
  snprintf(buf, sizeof buf, "{\"eagain\":%d,\"other\":%d,\"stuck\":%d,\"connect\":%d}", eagain,
           other, stuck, conn);
  return result(host, ctx, buf);
}

static int32_t cmd_send_big(const jr_host_api* host, jr_job_ctx* ctx, const char* addr, int port,
                            int kib, int ms) {
  int s = tcp_to(addr, port);
  if (s < 0) return errno_result(host, ctx, -1);
  if (ms > 0) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  size_t n = (size_t)kib << 10;
  unsigned char* data = malloc(n);
  if (data == NULL) return errno_result(host, ctx, -1);
  for (size_t i = 0; i < n; i++) data[i] = (unsigned char)(i * 7);
  struct iovec v = {data, n};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &v;
  m.msg_iovlen = 1;
  int64_t t0 = now_ms();
  ssize_t sent = sendmsg(s, &m, 0);
  int e = sent < 0 ? errno : 0;
  char buf[128];
  snprintf(buf, sizeof buf, "{\"sent\":%zd,\"errno\":%d,\"ms\":%lld}", sent, e,
           (long long)(now_ms() - t0));
  free(data);
  close(s);
  return result(host, ctx, buf);
}

static int32_t cmd_pdeathsig_hold(const jr_host_api* host, jr_job_ctx* ctx) {
  int rc = prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  char msg[96];
  int n = snprintf(msg, sizeof msg, "pdeathsig cleared: rc %d errno %d pid %d", rc,
                   rc == 0 ? 0 : errno, (int)getpid());
  host->log(ctx, JR_LOG_INFO, msg, (size_t)n);
  while (!host->is_cancelled(ctx)) usleep(10000);
  return JR_CANCELLED;
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  const char* arg = arg_of(job);
  char cmd[32] = "", a1[512] = "", a2[64] = "", a3[64] = "";
  sscanf(arg, "%31s %511s %63s %63s", cmd, a1, a2, a3);
  if (strcmp(cmd, "bind_tcp") == 0) {
    struct sockaddr_in a;
    inet4(a1, atoi(a2), &a);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int rc = bind(s, (struct sockaddr*)&a, sizeof a);
    int32_t r = errno_result(host, ctx, rc);
    close(s);
    return r;
  }
  if (strcmp(cmd, "unix_bind") == 0 || strcmp(cmd, "unix_connect") == 0) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    size_t n = strnlen(a1, sizeof a.sun_path - 1); /* longer paths are cut: the test's are short */
    memcpy(a.sun_path, a1, n);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    int rc;
    if (cmd[5] == 'b') {
      rc = bind(s, (struct sockaddr*)&a, sizeof a);
    } else {
      rc = connect(s, (struct sockaddr*)&a, sizeof a);
      if (rc == 0 && write(s, "hi", 2) != 2) rc = -1;
    }
    int32_t r = errno_result(host, ctx, rc);
    close(s);
    return r;
  }
  if (strcmp(cmd, "unspec_sendto") == 0) {
    struct sockaddr_in a;
    inet4(a1, atoi(a2), &a);
    a.sin_family = AF_UNSPEC; /* Linux UDP treats it as AF_INET */
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int rc = sendto(s, "ping", 4, 0, (struct sockaddr*)&a, sizeof a) == 4 ? 0 : -1;
    int32_t r = errno_result(host, ctx, rc);
    close(s);
    return r;
  }
  if (strcmp(cmd, "netlink_route") == 0) return cmd_netlink_route(host, ctx);
  if (strcmp(cmd, "sockopts") == 0) return cmd_sockopts(host, ctx);
  if (strcmp(cmd, "rthdr_cmsg") == 0) return cmd_rthdr_cmsg(host, ctx, atoi(a1));
  if (strcmp(cmd, "prctl") == 0) return cmd_prctl(host, ctx);
  if (strcmp(cmd, "affinity") == 0) return cmd_affinity(host, ctx, atoi(a1));
  if (strcmp(cmd, "ioctl") == 0) return cmd_ioctl(host, ctx);
  if (strcmp(cmd, "getaddrinfo") == 0) return cmd_getaddrinfo(host, ctx, a1);
  if (strcmp(cmd, "flood") == 0) return cmd_flood(host, ctx, a1, atoi(a2));
  if (strcmp(cmd, "flood_and_udp") == 0) {
    return cmd_flood_and_udp(host, ctx, a1, atoi(a2), atoi(a3));
  }
  if (strcmp(cmd, "flood_threads") == 0) {
    return cmd_flood_threads(host, ctx, a1, atoi(a2), atoi(a3));
  }
  if (strcmp(cmd, "send_big") == 0) {
    char a4[16] = "0";
    sscanf(arg, "%*s %*s %*s %*s %15s", a4);
    return cmd_send_big(host, ctx, a1, atoi(a2), atoi(a3), atoi(a4));
  }
  if (strcmp(cmd, "pdeathsig_hold") == 0) return cmd_pdeathsig_hold(host, ctx);
  host->set_error(ctx, "unknown command", 15);
  return JR_ERR_PERMANENT;
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

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "hostile_netguard", NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {
    sizeof(jr_plugin_desc),
    JR_ABI_MAJOR,
    JR_ABI_MINOR,
    "hostile_netguard",
    "0.1",
    kinds,
    1,
    0,
    "{\"sandbox\": {\"network\": \"loopback\", \"memory_mb\": 256}}",
    h_init,
    h_handle,
    NULL,
    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
