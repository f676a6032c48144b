/*
 * Compile-time checks of the jobrunner plugin ABI (abi.h). Including this header in any C11 or
 * C++ translation unit fails the build if the compiler lays out an ABI struct differently from
 * the published x86_64 layout, so a plugin built with another compiler (clang vs gcc), another
 * language (C vs C++) or other flags cannot silently disagree with the host.
 *
 * The numbers below are the contract for ABI v1.1 on x86_64 (LP64, System V). They only ever
 * grow: a minor version appends fields, so existing offsets never change. On other targets only
 * the layout-independent rules are checked (struct_size first, append-only v1.0 prefix sizes).
 *
 * No code and no state: nothing here exists at run time. Safe to include from any thread.
 */
#ifndef JOBRUNNER_ABI_CHECKS_H
#define JOBRUNNER_ABI_CHECKS_H

#include <jobrunner/abi.h>

#ifdef __cplusplus
#define JR_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define JR_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Rules that hold on every target. */
JR_ABI_ASSERT(offsetof(jr_job, struct_size) == 0, "jr_job must start with struct_size");
JR_ABI_ASSERT(offsetof(jr_host_api, struct_size) == 0, "jr_host_api must start with struct_size");
JR_ABI_ASSERT(offsetof(jr_kind_desc, struct_size) == 0, "jr_kind_desc must start with struct_size");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, struct_size) == 0,
              "jr_plugin_desc must start with struct_size");
JR_ABI_ASSERT(JR_PLUGIN_DESC_V1_0_SIZE < sizeof(jr_plugin_desc),
              "the v1.1 descriptor appends to the v1.0 one");
JR_ABI_ASSERT(JR_KIND_DESC_V1_0_SIZE <= sizeof(jr_kind_desc), "kind descriptor is append-only");
JR_ABI_ASSERT(JR_JOB_V1_0_SIZE <= sizeof(jr_job), "jr_job is append-only");
JR_ABI_ASSERT(JR_ABI_MAJOR == 1, "these checks describe ABI major version 1");
JR_ABI_ASSERT(JR_OK == 0 && JR_ERR_RETRYABLE == 1 && JR_ERR_PERMANENT == 2 && JR_SNOOZE == 3 &&
                  JR_CANCELLED == 4,
              "jr_status values are part of the ABI");
JR_ABI_ASSERT(JR_LOG_DEBUG == 0 && JR_LOG_INFO == 1 && JR_LOG_WARN == 2 && JR_LOG_ERROR == 3,
              "jr_log_level values are part of the ABI");

#if defined(__x86_64__) && defined(__LP64__)
/* jr_job (v1.0 = v1.1) */
JR_ABI_ASSERT(sizeof(jr_job) == 64, "jr_job size");
JR_ABI_ASSERT(offsetof(jr_job, reserved0) == 4, "jr_job.reserved0");
JR_ABI_ASSERT(offsetof(jr_job, id) == 8, "jr_job.id");
JR_ABI_ASSERT(offsetof(jr_job, kind) == 16, "jr_job.kind");
JR_ABI_ASSERT(offsetof(jr_job, queue) == 24, "jr_job.queue");
JR_ABI_ASSERT(offsetof(jr_job, payload) == 32, "jr_job.payload");
JR_ABI_ASSERT(offsetof(jr_job, payload_len) == 40, "jr_job.payload_len");
JR_ABI_ASSERT(offsetof(jr_job, attempt) == 48, "jr_job.attempt");
JR_ABI_ASSERT(offsetof(jr_job, max_attempts) == 52, "jr_job.max_attempts");
JR_ABI_ASSERT(offsetof(jr_job, deadline_ms) == 56, "jr_job.deadline_ms");
JR_ABI_ASSERT(JR_JOB_V1_0_SIZE == 64, "v1.0 jr_job size");

/* jr_host_api (v1.0 = v1.1) */
JR_ABI_ASSERT(sizeof(jr_host_api) == 72, "jr_host_api size");
JR_ABI_ASSERT(offsetof(jr_host_api, abi_minor) == 4, "jr_host_api.abi_minor");
JR_ABI_ASSERT(offsetof(jr_host_api, log) == 8, "jr_host_api.log");
JR_ABI_ASSERT(offsetof(jr_host_api, progress) == 16, "jr_host_api.progress");
JR_ABI_ASSERT(offsetof(jr_host_api, set_result) == 24, "jr_host_api.set_result");
JR_ABI_ASSERT(offsetof(jr_host_api, set_error) == 32, "jr_host_api.set_error");
JR_ABI_ASSERT(offsetof(jr_host_api, snooze) == 40, "jr_host_api.snooze");
JR_ABI_ASSERT(offsetof(jr_host_api, is_cancelled) == 48, "jr_host_api.is_cancelled");
JR_ABI_ASSERT(offsetof(jr_host_api, enqueue) == 56, "jr_host_api.enqueue");
JR_ABI_ASSERT(offsetof(jr_host_api, get_extension) == 64, "jr_host_api.get_extension");

/* jr_kind_desc (v1.0 = v1.1) */
JR_ABI_ASSERT(sizeof(jr_kind_desc) == 40, "jr_kind_desc size");
JR_ABI_ASSERT(offsetof(jr_kind_desc, max_attempts) == 4, "jr_kind_desc.max_attempts");
JR_ABI_ASSERT(offsetof(jr_kind_desc, kind) == 8, "jr_kind_desc.kind");
JR_ABI_ASSERT(offsetof(jr_kind_desc, default_queue) == 16, "jr_kind_desc.default_queue");
JR_ABI_ASSERT(offsetof(jr_kind_desc, timeout_ms) == 24, "jr_kind_desc.timeout_ms");
JR_ABI_ASSERT(offsetof(jr_kind_desc, retry_schedule) == 32, "jr_kind_desc.retry_schedule");
JR_ABI_ASSERT(JR_KIND_DESC_V1_0_SIZE == 40, "v1.0 jr_kind_desc size");

/* jr_plugin_desc (v1.1 appended `idle`) */
JR_ABI_ASSERT(sizeof(jr_plugin_desc) == 80, "jr_plugin_desc size");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, abi_major) == 4, "jr_plugin_desc.abi_major");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, abi_minor) == 6, "jr_plugin_desc.abi_minor");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, name) == 8, "jr_plugin_desc.name");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, version) == 16, "jr_plugin_desc.version");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, kinds) == 24, "jr_plugin_desc.kinds");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, kind_count) == 32, "jr_plugin_desc.kind_count");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, reserved0) == 36, "jr_plugin_desc.reserved0");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, manifest_json) == 40, "jr_plugin_desc.manifest_json");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, init) == 48, "jr_plugin_desc.init");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, handle) == 56, "jr_plugin_desc.handle");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, shutdown) == 64, "jr_plugin_desc.shutdown");
JR_ABI_ASSERT(offsetof(jr_plugin_desc, idle) == 72, "jr_plugin_desc.idle (added in v1.1)");
JR_ABI_ASSERT(JR_PLUGIN_DESC_V1_0_SIZE == 72, "v1.0 jr_plugin_desc size");
JR_ABI_ASSERT(sizeof(jr_error_kind_ext) == 16, "jr_error_kind_ext size");
JR_ABI_ASSERT(offsetof(jr_error_kind_ext, set_error_kind) == 8, "jr_error_kind_ext.set_error_kind");
JR_ABI_ASSERT(sizeof(jr_parent_results_ext) == 16, "jr_parent_results_ext size");
JR_ABI_ASSERT(offsetof(jr_parent_results_ext, parent_results) == 8,
              "jr_parent_results_ext.parent_results");
#endif /* x86_64 */

#endif /* JOBRUNNER_ABI_CHECKS_H */
