/* The argument of a hostile test plugin's job: payloads are JSON objects ({"arg": "TEXT"}, the
 * rule of `runner enqueue` and the API); the SandboxExecutor tests may still pass a bare JSON
 * string ("TEXT"). Either way the TEXT (no escapes inside) is copied into `buf` and returned. */
#ifndef JR_HOSTILE_ARG_H
#define JR_HOSTILE_ARG_H

#include <jobrunner/abi.h>
#include <string.h>

static const char* jr_hostile_arg(const jr_job* job, char* buf, size_t cap) {
  const char* p = job->payload;
  size_t n = job->payload_len;
  if (n > 0 && p[0] == '{') {
    const char* end = p + n;
    const char* k = p;
    /* the value of "arg": the first string after the key and its colon */
    while (k + 5 <= end && memcmp(k, "\"arg\"", 5) != 0) ++k;
    p = k + 5;
    while (p < end && (*p == ' ' || *p == ':')) ++p;
    const char* q = p < end && *p == '"' ? p + 1 : end;
    const char* e = q;
    while (e < end && *e != '"') ++e;
    p = q;
    n = e > q ? (size_t)(e - q) : 0;
  } else if (n >= 2 && p[0] == '"' && p[n - 1] == '"') {
    p++;
    n -= 2;
  }
  if (n >= cap) n = cap - 1;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return buf;
}

#endif
