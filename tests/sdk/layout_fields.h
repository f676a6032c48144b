/* Every field of ABI v1.0, in declaration order: the prefix that no later minor version may
 * move. X(type, field) is expanded once per field. */
#ifndef JR_TESTS_SDK_LAYOUT_FIELDS_H
#define JR_TESTS_SDK_LAYOUT_FIELDS_H

/* clang-format off */
#define JR_LAYOUT_V1_0_FIELDS(X)                                                             \
  X(jr_job, struct_size) X(jr_job, reserved0) X(jr_job, id) X(jr_job, kind)                  \
  X(jr_job, queue) X(jr_job, payload) X(jr_job, payload_len) X(jr_job, attempt)              \
  X(jr_job, max_attempts) X(jr_job, deadline_ms)                                             \
  X(jr_host_api, struct_size) X(jr_host_api, abi_minor) X(jr_host_api, log)                  \
  X(jr_host_api, progress) X(jr_host_api, set_result) X(jr_host_api, set_error)              \
  X(jr_host_api, snooze) X(jr_host_api, is_cancelled) X(jr_host_api, enqueue)                \
  X(jr_host_api, get_extension)                                                              \
  X(jr_kind_desc, struct_size) X(jr_kind_desc, max_attempts) X(jr_kind_desc, kind)           \
  X(jr_kind_desc, default_queue) X(jr_kind_desc, timeout_ms) X(jr_kind_desc, retry_schedule) \
  X(jr_plugin_desc, struct_size) X(jr_plugin_desc, abi_major) X(jr_plugin_desc, abi_minor)   \
  X(jr_plugin_desc, name) X(jr_plugin_desc, version) X(jr_plugin_desc, kinds)                \
  X(jr_plugin_desc, kind_count) X(jr_plugin_desc, reserved0)                                 \
  X(jr_plugin_desc, manifest_json) X(jr_plugin_desc, init) X(jr_plugin_desc, handle)         \
  X(jr_plugin_desc, shutdown)
/* clang-format on */

#define JR_LAYOUT_COUNT_ONE(type, field) +1
/* Number of entries in a layout array: the v1.0 fields plus 4 struct sizes. */
#define JR_LAYOUT_SIZE (0 JR_LAYOUT_V1_0_FIELDS(JR_LAYOUT_COUNT_ONE) + 4)

#endif
