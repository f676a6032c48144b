// Small, allocation-free helpers shared by the line parsers. Pure functions; any thread.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace dataset_parse::util {

// Splits `line` on `sep` into at most N fields; returns the number of fields found (N + 1 means
// "more than N").
template <size_t N>
size_t split(std::string_view line, char sep, std::string_view (&out)[N]) {
  size_t n = 0;
  size_t start = 0;
  for (;;) {
    size_t pos = line.find(sep, start);
    std::string_view f =
        line.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start);
    if (n == N) return N + 1;
    out[n++] = f;
    if (pos == std::string_view::npos) return n;
    start = pos + 1;
  }
}

// A decimal integer made only of digits (no sign, no spaces) in [lo, hi].
inline bool parse_int(std::string_view s, int64_t lo, int64_t hi, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.front() == '-' || s.front() == '+') {
    return false;
  }
  if (v < lo || v > hi) return false;
  *out = v;
  return true;
}

// True when `s` is valid UTF-8 without control characters (< 0x20, 0x7f).
inline bool printable_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* e = p + s.size();
  while (p < e) {
    unsigned char c = *p;
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) return false;
      ++p;
      continue;
    }
    int len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || e - p < len) return false;
    uint32_t cp = c & (0x7f >> len);
    for (int i = 1; i < len; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    p += len;
  }
  return true;
}

// Quoted, shortened excerpt of bad input for an error message.
inline std::string excerpt(std::string_view s, size_t max = 40) {
  std::string out = "'";
  for (char c : s.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  if (s.size() > max) out += "...";
  return out + "'";
}

// Parses "<prefix>YYYY<suffix>" and returns YYYY, or -1.
inline int year_in_name(std::string_view name, std::string_view prefix, std::string_view suffix) {
  if (name.size() != prefix.size() + 4 + suffix.size()) return -1;
  if (name.substr(0, prefix.size()) != prefix) return -1;
  if (name.substr(prefix.size() + 4) != suffix) return -1;
  int64_t y = 0;
  if (!parse_int(name.substr(prefix.size(), 4), 0, 9999, &y)) return -1;
  return static_cast<int>(y);
}

}  // namespace dataset_parse::util
