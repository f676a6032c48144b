/* Hostile test plugin "hostile_netgrant" (tests/sandbox/remote_db_test.cpp): a loopback plugin
 * with a database grant that tries to reach, from its sandbox, more than its database server.
 * The payload is {"arg": "COMMAND ARG..."}; each command reports what the kernel answered as a
 * JSON result {"errno": N} (0 = it worked), so the test asserts outcomes, not log text.
 *
 *   tcp ADDR PORT        a blocking TCP connect to ADDR:PORT (IPv4 or IPv6 literal)
 *   udp ADDR PORT        a UDP sendto of "ping" to ADDR:PORT
 *   dns NAME             getaddrinfo(NAME): {"errno": 0 or the EAI_ code, "addr": "..."}
 *
 * The manifest asks for a database and network = "loopback"; the test's operator config grants
 * them (a test plugin has no built-in approval). Plain C against abi.h.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jobrunner/abi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hostile_arg.h"

static int32_t report(const jr_host_api* host, jr_job_ctx* ctx, int err, const char* addr) {
  char buf[256];
  int n = snprintf(buf, sizeof buf, "{\"errno\": %d, \"addr\": \"%s\"}", err, addr);
  host->set_result(ctx, buf, (size_t)n);
  return JR_OK;
}

/* ADDR PORT as a sockaddr (v4 or v6); 0 when ADDR is not a literal. */
static socklen_t address(const char* ip, int port, struct sockaddr_storage* a) {
  memset(a, 0, sizeof *a);
  struct sockaddr_in* in = (struct sockaddr_in*)a;
  struct sockaddr_in6* in6 = (struct sockaddr_in6*)a;
  if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    return sizeof *in;
  }
  if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return sizeof *in6;
  }
  return 0;
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  char arg[1024];
  char cmd[32] = "", a1[256] = "", a2[32] = "";
  sscanf(jr_hostile_arg(job, arg, sizeof arg), "%31s %255s %31s", cmd, a1, a2);
  if (strcmp(cmd, "tcp") == 0 || strcmp(cmd, "udp") == 0) {
    struct sockaddr_storage a;
    socklen_t len = address(a1, atoi(a2), &a);
    if (len == 0) return report(host, ctx, EINVAL, a1);
    int udp = cmd[0] == 'u';
    int s = socket(a.ss_family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    int rc = s < 0 ? -1
             : udp ? (sendto(s, "ping", 4, 0, (struct sockaddr*)&a, len) == 4 ? 0 : -1)
                   : connect(s, (struct sockaddr*)&a, len);
    int err = rc == 0 ? 0 : errno;
    if (s >= 0) close(s);
    return report(host, ctx, err, a1);
  }
  if (strcmp(cmd, "dns") == 0) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* res = NULL;
    int rc = getaddrinfo(a1, NULL, &hints, &res);
    char text[INET6_ADDRSTRLEN] = "";
    if (rc == 0 && res != NULL) {
      const void* p = res->ai_family == AF_INET
                          ? (const void*)&((struct sockaddr_in*)res->ai_addr)->sin_addr
                          : (const void*)&((struct sockaddr_in6*)res->ai_addr)->sin6_addr;
      inet_ntop(res->ai_family, p, text, sizeof text);
    }
    if (res != NULL) freeaddrinfo(res);
    return report(host, ctx, rc, text);
  }
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

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 0, "hostile_netgrant", NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {
    sizeof(jr_plugin_desc),
    JR_ABI_MAJOR,
    JR_ABI_MINOR,
    "hostile_netgrant",
    "0.1",
    kinds,
    1,
    0,
    "{\"database\": true, \"sandbox\": {\"network\": \"loopback\"}}",
    h_init,
    h_handle,
    NULL,
    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
