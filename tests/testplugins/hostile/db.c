/* Hostile plugin for the database red-team test (tests/sandbox/redteam_db_test.cpp): with
 * network = "loopback" it reaches the runner's PostgreSQL socket and tries to get out of its
 * own role. Built twice (see CMakeLists.txt):
 *   hostile_db          requests a database ("database": true): uses the database_url of its
 *                       config and runs every attack below with it;
 *   hostile_db_nogrant  requests none: reports whether its config has a database_url at all.
 * Both also try to log in without a password as the usual privileged roles, and search their
 * whole config text (any key, any nesting) for a secret the test names: the runner's password.
 *
 * The payload is {"arg": "CONNINFO|MARKER|SECRET"} (hostile_arg.h): CONNINFO names the socket and
 * a database (host=... port=... dbname=..., no user), MARKER a file COPY ... TO PROGRAM would
 * create, SECRET the text to look for in the config. The result is a JSON object:
 * {"has_url": bool, "config_has_secret": bool, "connected": bool, "whoami": "...",
 * "attacks": {"name": "OK: <first value>" or "<SQLSTATE>: <message>"}, "no_password":
 * {"user": "refused" or "CONNECTED"}}. The test decides what counts as an escape.
 */
#include <jobrunner/abi.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostile_arg.h"

#ifndef JR_CASE_NAME
#error "JR_CASE_NAME must be defined"
#endif

#if defined(JR_DB_GRANT)
#define JR_MANIFEST "{\"database\": true, \"sandbox\": {\"network\": \"loopback\"}}"
#else
#define JR_MANIFEST "{\"sandbox\": {\"network\": \"loopback\"}}"
#endif

static char g_url[4096];
static int g_has_url;
static char g_config[1 << 20]; /* the whole config text its init got (cut at 1 MiB) */

/* Growing output buffer for the result document. */
struct out {
  char buf[65536];
  size_t len;
};

static void put(struct out* o, const char* s) {
  size_t n = strlen(s);
  if (o->len + n >= sizeof o->buf) n = sizeof o->buf - 1 - o->len;
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  o->buf[o->len] = '\0';
}

/* A JSON string literal of at most 300 bytes of `s`. */
static void put_str(struct out* o, const char* s) {
  char tmp[8];
  put(o, "\"");
  for (size_t i = 0; s[i] != '\0' && i < 300; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)c;
      tmp[2] = '\0';
    } else if (c < 0x20) {
      snprintf(tmp, sizeof tmp, "\\u%04x", c);
    } else {
      tmp[0] = (char)c;
      tmp[1] = '\0';
    }
    put(o, tmp);
  }
  put(o, "\"");
}

/* Runs `sql` and records "OK: <first value>" or "<SQLSTATE>: <message>". */
static void attack(struct out* o, PGconn* c, const char* name, const char* sql, int* first) {
  char text[512];
  PGresult* r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
    snprintf(text, sizeof text, "OK: %s",
             st == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
  } else {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(text, sizeof text, "%s: %s", state ? state : "?????", msg ? msg : PQerrorMessage(c));
  }
  PQclear(r);
  put(o, *first ? "" : ",");
  *first = 0;
  put_str(o, name);
  put(o, ":");
  put_str(o, text);
}

/* Extracts the string value of "database_url" from the config JSON (no escapes expected in a
 * percent-encoded URL; a value with escapes is taken as absent). */
static void find_url(const char* config) {
  const char* k = strstr(config, "\"database_url\"");
  g_has_url = k != NULL;
  g_url[0] = '\0';
  if (k == NULL) return;
  const char* v = strchr(k + 14, '"');
  if (v == NULL) return;
  ++v;
  size_t n = 0;
  while (v[n] != '\0' && v[n] != '"' && v[n] != '\\' && n + 1 < sizeof g_url) {
    g_url[n] = v[n];
    ++n;
  }
  g_url[n] = '\0';
}

static int32_t h_init(const jr_host_api* host, const char* config_json, void** state, char* err,
                      size_t err_cap) {
  (void)host;
  (void)err;
  (void)err_cap;
  *state = NULL;
  snprintf(g_config, sizeof g_config, "%s", config_json);
  find_url(config_json);
  return 0;
}

static int32_t h_handle(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job) {
  (void)state;
  static struct out o;
  char arg[2048], conninfo[2048], marker[1024], sql[4096];
  jr_hostile_arg(job, arg, 1001); /* at most 1000 bytes: every statement below fits its buffer */
  char* bar = strchr(arg, '|');
  char* secret = bar ? strchr(bar + 1, '|') : NULL;
  if (secret) *secret++ = '\0';
  snprintf(marker, sizeof marker, "%s", bar ? bar + 1 : "/tmp/jr-hostile-db-marker");
  if (bar) *bar = '\0';
  snprintf(conninfo, sizeof conninfo, "%s", arg);

  o.len = 0;
  o.buf[0] = '\0';
  put(&o, "{\"has_url\":");
  put(&o, g_has_url ? "true" : "false");
  put(&o, ",\"config_has_secret\":");
  put(&o, secret != NULL && *secret != '\0' && strstr(g_config, secret) != NULL ? "true" : "false");
  int connected = 0;
  if (g_url[0] != '\0') {
    PGconn* c = PQconnectdb(g_url);
    if (PQstatus(c) == CONNECTION_OK) {
      connected = 1;
      int first = 1;
      put(&o, ",\"attacks\":{");
      attack(&o, c, "whoami",
             "SELECT current_user || ' ' || current_schema() || ' ' || "
             "(SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user)",
             &first);
      attack(&o, c, "read_jobs",
             "SELECT coalesce(string_agg(payload::text, ','), '') FROM public.jr_jobs", &first);
      attack(&o, c, "read_jobs_all", "SELECT count(*) FROM public.jr_jobs_all", &first);
      attack(&o, c, "read_done", "SELECT count(*) FROM public.jr_jobs_done", &first);
      attack(&o, c, "update_jobs", "UPDATE public.jr_jobs SET priority = 99", &first);
      attack(&o, c, "enqueue", "SELECT public.jr_enqueue('echo', '{\"forged\": true}')", &first);
      snprintf(sql, sizeof sql, "COPY (SELECT 1) TO PROGRAM 'touch %s'", marker);
      attack(&o, c, "copy_program", sql, &first);
      attack(&o, c, "read_server_file", "SELECT pg_read_file('/etc/hostname')", &first);
      attack(&o, c, "create_role", "CREATE ROLE jr_evil_role LOGIN", &first);
      attack(&o, c, "grant_program", "GRANT pg_execute_server_program TO CURRENT_USER", &first);
      attack(&o, c, "alter_self", "ALTER ROLE CURRENT_USER CREATEROLE", &first);
      attack(&o, c, "read_plugin_roles", "SELECT password FROM public.jr_plugin_roles", &first);
      attack(&o, c, "create_in_public", "CREATE TABLE public.jr_evil_table (x int)", &first);
      attack(&o, c, "create_database", "CREATE DATABASE jr_evil_db", &first);
      attack(&o, c, "read_peer", "SELECT count(*) FROM plugin_hostile_db_peer.secrets", &first);
      attack(&o, c, "own_table",
             "CREATE TABLE IF NOT EXISTS own_table (x int); INSERT INTO own_table VALUES (7); "
             "SELECT sum(x) FROM own_table",
             &first);
      put(&o, "}");
    } else {
      put(&o, ",\"connect_error\":");
      put_str(&o, PQerrorMessage(c));
    }
    PQfinish(c);
  }
  put(&o, ",\"connected\":");
  put(&o, connected ? "true" : "false");
  /* No password at all, as the roles an attacker would guess. */
  put(&o, ",\"no_password\":{");
  static const char* const users[] = {"jobrunner", "jobrunner_admin", "postgres", "root"};
  for (size_t i = 0; i < sizeof users / sizeof users[0]; ++i) {
    snprintf(sql, sizeof sql, "%s user=%s passfile=/nonexistent connect_timeout=5", conninfo,
             users[i]);
    PGconn* c = PQconnectdb(sql);
    put(&o, i ? "," : "");
    put_str(&o, users[i]);
    put(&o, PQstatus(c) == CONNECTION_OK ? ":\"CONNECTED\"" : ":\"refused\"");
    PQfinish(c);
  }
  put(&o, "}}");
  host->set_result(ctx, o.buf, o.len);
  return JR_OK;
}

static const jr_kind_desc kind = {sizeof(jr_kind_desc), 1, JR_CASE_NAME, NULL, 0, NULL};
static const jr_kind_desc* const kinds[] = {&kind};
static const jr_plugin_desc desc = {sizeof(jr_plugin_desc),
                                    JR_ABI_MAJOR,
                                    JR_ABI_MINOR,
                                    JR_CASE_NAME,
                                    "0.1",
                                    kinds,
                                    1,
                                    0,
                                    JR_MANIFEST,
                                    h_init,
                                    h_handle,
                                    NULL,
                                    NULL};

JR_EXPORT const jr_plugin_desc* jr_plugin_entry_v1(uint32_t host_abi_minor) {
  (void)host_abi_minor;
  return &desc;
}
