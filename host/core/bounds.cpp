#include "bounds.hpp"

#include "error_kind.hpp"

namespace jr::bounds {

size_t utf8_prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s.size();
  size_t k = max;
  // s[k] is the first byte left out: while it continues a sequence, the sequence started inside
  // the prefix; step back to its lead byte (at most 3 steps: longer runs are not UTF-8).
  for (int i = 0; i < 3 && k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80; ++i) --k;
  if ((static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) return max;  // not UTF-8: cut anywhere
  return k;
}

std::string_view cut(std::string_view s, size_t max, std::string& storage) {
  if (s.size() <= max) return s;
  std::string marker = " [cut: " + std::to_string(s.size()) + " bytes in all]";
  size_t head = max > marker.size() ? utf8_prefix(s, max - marker.size()) : 0;
  storage.assign(s.data(), head);
  storage += marker;
  if (storage.size() > max) storage.resize(utf8_prefix(storage, max));
  return storage;
}

std::string error_kind_refusal(std::string_view kind) {
  if (kind.empty() || kind.size() > kErrorKindMax) {
    return "error kind must be 1 to " + std::to_string(kErrorKindMax) + " bytes, got " +
           std::to_string(kind.size());
  }
  if (kind[0] < 'a' || kind[0] > 'z') return "error kind must start with a lowercase letter";
  for (char c : kind) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      return "error kind may hold only a-z, 0-9 and _";
    }
  }
  // Every kind the host records itself (engine, sandbox, rescuer, expirer, shutdown).
  if (error_kind_from(kind)) {
    return "error kind '" + std::string(kind) + "' is reserved for the host";
  }
  return "";
}

std::string enqueue_refusal(std::string_view kind, std::string_view payload,
                            std::string_view options) {
  auto too_long = [](const char* what, size_t n, size_t limit) {
    return std::string(what) + " of " + std::to_string(n) + " bytes exceeds the limit of " +
           std::to_string(limit) + " bytes";
  };
  if (kind.empty()) return "the kind is empty";
  if (kind.size() > kEnqueueKindMax) return too_long("kind", kind.size(), kEnqueueKindMax);
  if (payload.size() > kEnqueuePayloadMax) {
    return too_long("payload", payload.size(), kEnqueuePayloadMax);
  }
  if (options.size() > kEnqueueOptionsMax) {
    return too_long("options", options.size(), kEnqueueOptionsMax);
  }
  return "";
}

}  // namespace jr::bounds
