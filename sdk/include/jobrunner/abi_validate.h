/*
 * The checks a plugin descriptor (abi.h) must pass, written once: the host's loader
 * (host/plugin/plugin_loader.cpp) and the SDK's test harness (jobrunner/testing.hpp) both call
 * check_descriptor(), so a plugin that passes its own unit tests loads in the runner, and one
 * the runner refuses fails its unit tests with the same reason.
 *
 * Header-only C++17, no state. A plugin's strings are untrusted: a name is read for at most 129
 * bytes and the manifest for at most kMaxManifestBytes + 1, so unterminated or huge strings
 * cannot make the check read far or take long. What needs a JSON parser (the manifest is an
 * object, its declarations) is the caller's.
 */
#ifndef JOBRUNNER_ABI_VALIDATE_H
#define JOBRUNNER_ABI_VALIDATE_H

#include <jobrunner/abi.h>

#include <cstddef>
#include <cstring>
#include <string>

namespace jobrunner::abi {

inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxManifestBytes = 64 * 1024;
inline constexpr uint32_t kMaxKinds = 1024;

/* A plugin, kind or queue name: [A-Za-z0-9_.:-]{1,128}. */
inline bool valid_name(const char* s) {
  if (s == nullptr) return false;
  size_t n = strnlen(s, kMaxNameBytes + 1);
  if (n == 0 || n > kMaxNameBytes) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = s[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

/* A kind's retry schedule: seconds separated by commas ("60,300,900"; spaces around an item and
 * empty items are ignored), each at most 9 digits. */
inline bool valid_retry_schedule(const char* s) {
  if (s == nullptr) return true;
  size_t n = strnlen(s, 4097);
  if (n > 4096) return false;
  size_t digits = 0;
  bool after_item = false;  // spaces after an item's digits, before the comma
  for (size_t i = 0; i <= n; ++i) {
    char c = i < n ? s[i] : ',';
    if (c == ',') {
      digits = 0;
      after_item = false;
    } else if (c == ' ' || c == '\t') {
      after_item = digits > 0;
    } else if (c >= '0' && c <= '9' && !after_item) {
      if (++digits > 9) return false;
    } else {
      return false;
    }
  }
  return true;
}

/* "" when the descriptor may be loaded, else why not (a sentence without the plugin's file
 * name, which the caller adds). A descriptor with no kinds passes: the host accepts one whose
 * manifest says its kinds come from the operator's config ("config_kinds": true). */
inline std::string check_descriptor(const jr_plugin_desc* d) {
  using std::to_string;
  if (d == nullptr) return "entry point returned no descriptor (the plugin refused this host)";
  if (d->struct_size < JR_PLUGIN_DESC_V1_0_SIZE) {
    return "descriptor struct_size " + to_string(d->struct_size) +
           " is smaller than the ABI v1.0 minimum of " + to_string(JR_PLUGIN_DESC_V1_0_SIZE);
  }
  if (d->abi_major != JR_ABI_MAJOR) {
    return "built for ABI major version " + to_string(d->abi_major) +
           "; this host speaks major version " + to_string(JR_ABI_MAJOR);
  }
  if (!valid_name(d->name)) {
    return "missing or invalid plugin name (1-128 characters of A-Z a-z 0-9 _ . : -)";
  }
  if (d->init == nullptr || d->handle == nullptr) {
    return "descriptor lacks the required init and handle functions";
  }
  if (d->kind_count > 0 && d->kinds == nullptr) return "declares no job kinds";
  if (d->kind_count > kMaxKinds) return "declares too many job kinds";
  for (uint32_t i = 0; i < d->kind_count; ++i) {
    const jr_kind_desc* k = d->kinds[i];
    if (k == nullptr) return "kind #" + to_string(i) + " is NULL";
    if (k->struct_size < JR_KIND_DESC_V1_0_SIZE) {
      return "kind #" + to_string(i) + " struct_size " + to_string(k->struct_size) +
             " is smaller than the ABI v1.0 minimum of " + to_string(JR_KIND_DESC_V1_0_SIZE);
    }
    if (!valid_name(k->kind)) return "kind #" + to_string(i) + " has a missing or invalid name";
    std::string kind = k->kind;
    if (k->default_queue != nullptr && !valid_name(k->default_queue)) {
      return "kind '" + kind + "' has an invalid default queue";
    }
    if (k->timeout_ms < 0) return "kind '" + kind + "' has a negative timeout";
    if (k->max_attempts < 0) return "kind '" + kind + "' has negative max_attempts";
    if (!valid_retry_schedule(k->retry_schedule)) {
      return "kind '" + kind +
             "': invalid retry schedule (expected seconds separated by commas, "
             "e.g. 60,300,900)";
    }
    for (uint32_t j = 0; j < i; ++j) {
      if (std::strcmp(d->kinds[j]->kind, k->kind) == 0) {
        return "declares kind '" + kind + "' twice";
      }
    }
  }
  if (d->manifest_json != nullptr &&
      strnlen(d->manifest_json, kMaxManifestBytes + 1) > kMaxManifestBytes) {
    return "manifest_json is larger than " + to_string(kMaxManifestBytes) + " bytes";
  }
  return "";
}

}  // namespace jobrunner::abi

#endif  // JOBRUNNER_ABI_VALIDATE_H
