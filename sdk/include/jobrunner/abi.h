/*
 * jobrunner plugin ABI, major version 1. This C header is the whole contract between the
 * `runner` host and a handler plugin; sdk/include/jobrunner/plugin.hpp is an optional
 * header-only C++ layer on top of it.
 *
 * Versioning
 *   - A plugin exports exactly one symbol, `jr_plugin_entry_v1`. A future incompatible ABI gets
 *     a new symbol (`jr_plugin_entry_v2`), so a host can serve both.
 *   - Every struct that crosses the boundary starts with `uint32_t struct_size`, set by whoever
 *     fills it in to `sizeof` of the struct as *it* was compiled. Fields are only ever appended
 *     (a minor version bump); a reader must never touch a field that lies beyond `struct_size`.
 *     Use JR_HAS_FIELD() for that check.
 *   - The host refuses a plugin whose descriptor is smaller than the v1.0 descriptor or whose
 *     major version is not 1. A plugin announcing a newer minor version than the host knows is
 *     accepted: the host simply ignores the trailing fields it does not know.
 *
 * Ownership
 *   - Everything passed into a call (strings, structs, buffers) is borrowed and valid only until
 *     that call returns. Copy what you need to keep.
 *   - The plugin never hands the host memory to free. Output (results, logs, error text) is
 *     copied by the host before the host function returns.
 *   - The descriptor returned by the entry point, and everything it points to, must stay valid
 *     for the life of the process (static storage). Plugins are never unloaded.
 *
 * Errors
 *   - Nothing is thrown across the boundary; every function here is `noexcept` in C++ terms.
 *   - `handle` returns a jr_status that classifies the outcome. Error text travels through
 *     `host->set_error` (copied by the host). `init` writes its error text into a caller-owned
 *     buffer.
 *
 * Threading
 *   - `init` is called once, before any other function, from one thread.
 *   - `handle` may be called concurrently from several host threads (at most the plugin's
 *     configured concurrency), each with its own `jr_job_ctx`. Plugin state shared between
 *     calls must be thread-safe.
 *   - Host functions that take a `jr_job_ctx*` may be called from any thread, but only while the
 *     `handle` (or `idle`) call that received that ctx is still running.
 *   - `idle` is never called concurrently with itself, in this process or any other runner
 *     sharing the database (the host holds a database-wide lock around it).
 *   - `shutdown` is called once, after every other call has returned.
 */
#ifndef JOBRUNNER_ABI_H
#define JOBRUNNER_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JR_ABI_MAJOR 1
#define JR_ABI_MINOR 1

/* True when a struct filled in by the other side is large enough to contain `field`. */
#define JR_HAS_FIELD(ptr, type, field) \
  ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type*)0)->field))

/* Outcome of one attempt, returned by `handle`. */
typedef enum jr_status {
  JR_OK = 0,            /* success; the result (if any) was given with set_result */
  JR_ERR_RETRYABLE = 1, /* transient failure: retried with backoff while attempts remain */
  JR_ERR_PERMANENT = 2, /* will never succeed (bad input...): straight to the dead letter queue */
  JR_SNOOZE = 3,        /* run again later (see host->snooze) without using up an attempt */
  JR_CANCELLED = 4      /* the handler stopped because cancellation was requested */
} jr_status;

/* Log levels for host->log. */
typedef enum jr_log_level {
  JR_LOG_DEBUG = 0,
  JR_LOG_INFO = 1,
  JR_LOG_WARN = 2,
  JR_LOG_ERROR = 3
} jr_log_level;

/* Opaque per-call context owned by the host. */
typedef struct jr_job_ctx jr_job_ctx;

/* The job handed to `handle`. All pointers are borrowed for the duration of the call. */
typedef struct jr_job {
  uint32_t struct_size;
  uint32_t reserved0;
  int64_t id;
  const char* kind;    /* NUL-terminated */
  const char* queue;   /* NUL-terminated */
  const char* payload; /* JSON text, NUL-terminated; payload_len excludes the NUL */
  size_t payload_len;
  int32_t attempt; /* 1 for the first attempt */
  int32_t max_attempts;
  int64_t deadline_ms; /* Unix time in ms after which the attempt times out; 0 = none */
} jr_job;

/* Functions the host offers to a plugin. Append-only: check JR_HAS_FIELD before calling a
 * function added in a later minor version. Every function returns 0 on success and a negative
 * value on failure unless stated otherwise. */
typedef struct jr_host_api {
  uint32_t struct_size;
  uint32_t abi_minor; /* the host's JR_ABI_MINOR */

  /* A log line attributed to the job (ctx may be NULL outside a job). */
  void (*log)(jr_job_ctx* ctx, int32_t level, const char* msg, size_t msg_len);
  /* Progress of the running job: percent in [0, 100] and an optional step name (may be NULL). */
  int32_t (*progress)(jr_job_ctx* ctx, double percent, const char* step);
  /* The job's result document (JSON text). Later calls replace earlier ones. */
  int32_t (*set_result)(jr_job_ctx* ctx, const char* json, size_t json_len);
  /* Error text for a failed attempt; kept in the job's error history. */
  int32_t (*set_error)(jr_job_ctx* ctx, const char* msg, size_t msg_len);
  /* Delay for a JR_SNOOZE outcome, in seconds. */
  int32_t (*snooze)(jr_job_ctx* ctx, double seconds);
  /* 1 when the host asks the job to stop (cancel, timeout, shutdown), else 0. */
  int32_t (*is_cancelled)(jr_job_ctx* ctx);
  /* Enqueue another job. options_json may be NULL or a JSON object with the keys accepted by
   * `runner enqueue` (queue, priority, delay_seconds, max_attempts, timeout_seconds, ...).
   * On success writes the new job id to *out_id (which may be NULL). */
  int32_t (*enqueue)(jr_job_ctx* ctx, const char* kind, const char* payload_json,
                     size_t payload_len, const char* options_json, int64_t* out_id);
  /* Extension lookup by string id; NULL when the host does not provide it. */
  const void* (*get_extension)(const char* id);
} jr_host_api;

/* Extension JR_EXT_ERROR_KIND (host->get_extension(JR_EXT_ERROR_KIND); NULL on hosts before
 * it): names the kind of a failed attempt, recorded as the attempt's error_kind instead of
 * "error" (JR_ERR_RETRYABLE) or "permanent" (JR_ERR_PERMANENT), shown by `runner status`, the
 * API and the dashboard, and counted in metrics. A kind is 1-32 bytes of [a-z0-9_] starting
 * with a letter and is not one of the host's own kinds (timeout, oom, crash, cancelled,
 * protocol, error, permanent, ...); a refused kind returns -1, is logged, and changes nothing.
 * Call it during `handle`, like set_error; a later call replaces an earlier one. */
#define JR_EXT_ERROR_KIND "jr.error_kind.v1"
typedef struct jr_error_kind_ext {
  uint32_t struct_size;
  uint32_t reserved;
  int32_t (*set_error_kind)(jr_job_ctx* ctx, const char* kind, size_t kind_len);
} jr_error_kind_ext;

/* Extension JR_EXT_TRACE (host->get_extension(JR_EXT_TRACE); NULL on hosts before it): the W3C
 * traceparent of the running attempt, so the handler's own spans (made with its own tracing
 * SDK) join the job's trace. With an OpenTelemetry exporter configured on the runner it names
 * the attempt's span (the runner's span is the parent of the handler's); without one it is the
 * traceparent the producer stored with the job, passed through. get_traceparent copies the
 * 55-byte text "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>" and a NUL into buf (cap
 * at least JR_TRACEPARENT_SIZE) and returns 55; it returns 0 (buf[0] = NUL when cap > 0) when
 * the attempt has no trace, and -1 when cap is too small or an argument is NULL. Call it
 * during `handle`, from any thread, like set_error. */
#define JR_EXT_TRACE "jr.trace.v1"
#define JR_TRACEPARENT_SIZE 56 /* 55 characters and the NUL */
typedef struct jr_trace_ext {
  uint32_t struct_size;
  uint32_t reserved;
  int32_t (*get_traceparent)(jr_job_ctx* ctx, char* buf, size_t cap);
} jr_trace_ext;
/* Extension JR_EXT_PARENT_RESULTS (host->get_extension(JR_EXT_PARENT_RESULTS); NULL on hosts
 * before it): the results of the running job's parents (the jobs in its depends_on, such as the
 * steps a workflow step depends on), one page per call. `receive` is called once, during the
 * call, with the page as JSON text (borrowed: copy what you keep):
 *   {"job_id": J, "total": N, "offset": O, "count": C, "next_offset": O + C or null,
 *    "parents": [{"job_id", "step", "kind", "state", "result"}, ...]}
 * Parents come in ascending job id; "step" is the parent's workflow step name (or null);
 * "state" is "completed" for a parent that completed ("missing" once pruned). A page holds at
 * most 1,000 parents and 4 MiB of JSON text, and at least one parent: one whose result alone is
 * larger comes with "result": null, "result_omitted": true, "result_bytes": N. Call again with
 * offset = next_offset until next_offset is null (an offset past the end gives an empty page).
 * Returns 0 after `receive` was called, -1 otherwise (no job context, more than 10,000 calls in
 * one attempt, the database unreachable: the reason is logged). Call it during `handle`. */
#define JR_EXT_PARENT_RESULTS "jr.parent_results.v1"
typedef struct jr_parent_results_ext {
  uint32_t struct_size;
  uint32_t reserved;
  int32_t (*parent_results)(jr_job_ctx* ctx, uint32_t offset,
                            void (*receive)(void* user, const char* json, size_t json_len),
                            void* user);
} jr_parent_results_ext;

/* One job kind served by a plugin, with its defaults (0 or NULL = host default). */
typedef struct jr_kind_desc {
  uint32_t struct_size;
  int32_t max_attempts;
  const char* kind;           /* required, [A-Za-z0-9_.:-]{1,128} */
  const char* default_queue;  /* queue used by `enqueue` when none is given */
  int64_t timeout_ms;         /* per-attempt timeout */
  const char* retry_schedule; /* e.g. "60,300,900" seconds; NULL = exponential with jitter */
} jr_kind_desc;

/* The plugin descriptor returned by the entry point. Must live for the whole process. */
typedef struct jr_plugin_desc {
  uint32_t struct_size;
  uint16_t abi_major;               /* must be JR_ABI_MAJOR */
  uint16_t abi_minor;               /* the JR_ABI_MINOR the plugin was compiled against */
  const char* name;                 /* required, unique among loaded plugins */
  const char* version;              /* free-form, e.g. "1.2.0" */
  const jr_kind_desc* const* kinds; /* array of kind_count pointers */
  uint32_t kind_count;
  uint32_t reserved0;
  /* Optional JSON object with the plugin's manifest: sandbox policy and other metadata, e.g.
   * {"sandbox": {"network": "none", "memory_mb": 256}}. May be NULL. */
  const char* manifest_json;

  /* Called once before anything else. config_json is this plugin's section of the host
   * configuration as a JSON object (never NULL). On failure return non-zero and write a
   * NUL-terminated message of at most err_cap bytes into err. */
  int32_t (*init)(const jr_host_api* host, const char* config_json, void** state, char* err,
                  size_t err_cap);
  /* Runs one attempt of one job. */
  int32_t (*handle)(void* state, const jr_host_api* host, jr_job_ctx* ctx, const jr_job* job);
  /* Called once at process exit, after every other call has returned. May be NULL. */
  void (*shutdown)(void* state);
  /* ---- added in minor version 1 (a v1.0 descriptor ends here) ---- */
  /* Optional (may be NULL): called when the plugin's queues have been idle for a while, under a
   * database-wide lock. It may enqueue work through host->enqueue with the given ctx. Returns
   * the number of jobs enqueued or a negative value on error. */
  int32_t (*idle)(void* state, const jr_host_api* host, jr_job_ctx* ctx);
} jr_plugin_desc;

/* Size of a v1.0 descriptor: the smallest the host accepts. */
#define JR_PLUGIN_DESC_V1_0_SIZE offsetof(jr_plugin_desc, idle)
/* Size of a v1.0 kind descriptor. */
#define JR_KIND_DESC_V1_0_SIZE (offsetof(jr_kind_desc, retry_schedule) + sizeof(const char*))
/* Size of a v1.0 job. */
#define JR_JOB_V1_0_SIZE (offsetof(jr_job, deadline_ms) + sizeof(int64_t))

/* The one exported symbol. `host_abi_minor` tells the plugin which minor version the host
 * speaks. Returns NULL if the plugin cannot work with this host. */
typedef const jr_plugin_desc* (*jr_plugin_entry_v1_fn)(uint32_t host_abi_minor);

#define JR_PLUGIN_ENTRY_SYMBOL "jr_plugin_entry_v1"

#if defined(_WIN32)
#define JR_EXPORT __declspec(dllexport)
#else
#define JR_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* JOBRUNNER_ABI_H */
