#include "trace_context.hpp"

#include <cstring>
#include <random>

namespace jr::trace {
namespace {

bool lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool all_zero(std::string_view s) { return s.find_first_not_of('0') == std::string_view::npos; }

std::string hex(uint64_t v, int digits) {
  static const char* d = "0123456789abcdef";
  std::string out(static_cast<size_t>(digits), '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = d[v & 15];
  return out;
}

uint64_t random64() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }()};
  return rng();
}

// splitmix64's finaliser: spreads every input bit over the output.
uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

std::string traceparent_refusal(std::string_view t) {
  if (t.size() != kTraceparentLen) {
    return "must be 55 characters (00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>), has " +
           std::to_string(t.size());
  }
  for (size_t i = 0; i < t.size(); ++i) {
    bool dash = i == 2 || i == 35 || i == 52;
    if (dash ? t[i] != '-' : !lower_hex(t[i])) {
      return "must be 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags> in lowercase hex";
    }
  }
  if (t.substr(0, 2) != "00") return "has version " + std::string(t.substr(0, 2)) + ", not 00";
  if (all_zero(t.substr(3, 32))) return "has an all-zero trace id";
  if (all_zero(t.substr(36, 16))) return "has an all-zero parent id";
  return "";
}

std::optional<TraceParent> parse_traceparent(std::string_view t) {
  if (!traceparent_refusal(t).empty()) return std::nullopt;
  TraceParent p;
  p.trace_id.assign(t.substr(3, 32));
  p.span_id.assign(t.substr(36, 16));
  p.flags = static_cast<uint8_t>(std::stoi(std::string(t.substr(53, 2)), nullptr, 16));
  return p;
}

std::string format_traceparent(const std::string& trace_id, const std::string& span_id,
                               uint8_t flags) {
  return "00-" + trace_id + "-" + span_id + "-" + hex(flags, 2);
}

std::string random_trace_id() {
  uint64_t hi = random64(), lo = random64();
  if ((hi | lo) == 0) lo = 1;
  return hex(hi, 16) + hex(lo, 16);
}

std::string random_span_id() {
  uint64_t v = random64();
  return hex(v == 0 ? 1 : v, 16);
}

std::string job_trace_id(int64_t job_id, double created_at_unix) {
  uint64_t bits = 0;
  static_assert(sizeof bits == sizeof created_at_unix);
  std::memcpy(&bits, &created_at_unix, sizeof bits);
  uint64_t hi = mix(static_cast<uint64_t>(job_id) ^ 0x6a6f6272756e6e72ULL);  // "jobrunnr"
  uint64_t lo = mix(bits ^ mix(static_cast<uint64_t>(job_id)));
  if ((hi | lo) == 0) lo = 1;
  return hex(hi, 16) + hex(lo, 16);
}

AttemptTrace attempt_trace(std::string_view stored, int64_t job_id, double created_at_unix,
                           bool tracing) {
  AttemptTrace a;
  std::optional<TraceParent> parent =
      stored.empty() ? std::nullopt : parse_traceparent(stored);  // checked at enqueue
  if (!tracing) {
    if (parent) a.handed.assign(stored);
    return a;
  }
  a.span_id = random_span_id();
  if (parent) {
    a.trace_id = parent->trace_id;
    a.parent_span_id = parent->span_id;
    a.flags = parent->flags;
  } else {
    a.trace_id = job_trace_id(job_id, created_at_unix);
    a.flags = 1;
  }
  a.record = (a.flags & 1) != 0;
  a.handed = format_traceparent(a.trace_id, a.span_id, a.flags);
  return a;
}

}  // namespace jr::trace
