// Decoding a fetched page to UTF-8 before it is parsed (gumbo reads UTF-8 only). The encoding is
// chosen as HTML5 does (WHATWG "determine the character encoding", simplified): a byte order
// mark, else the Content-Type header's charset, else a <meta charset> or
// <meta http-equiv="Content-Type" content="...; charset=..."> in the first 1024 bytes, else
// UTF-8. Labels are mapped as the WHATWG Encoding standard maps them where it matters (latin1,
// iso-8859-1, us-ascii -> windows-1252; a <meta> saying utf-16 -> UTF-8), then converted with
// glibc iconv. Bytes invalid in the chosen encoding become U+FFFD; an encoding iconv does not
// know falls back to UTF-8 with replacement, and the caller is told (to log it).
// Pure functions; thread-safe (each call opens its own iconv descriptor).
#pragma once

#include <string>
#include <string_view>

namespace scan {

struct DecodedPage {
  std::string text;      // valid UTF-8, no byte order mark
  std::string encoding;  // what was used: "UTF-8", "WINDOWS-1252", "SHIFT_JIS", ...
  std::string source;    // where it came from: "bom", "http", "meta" or "default"
  std::string declared;  // the label as declared ("" for bom/default)
  // Set when the declared label was not usable and UTF-8 was used instead: why.
  std::string fallback;
  size_t replaced = 0;  // bytes (or sequences) replaced by U+FFFD
};

// The charset parameter of a Content-Type value ("" when none), unquoted and trimmed.
std::string charset_from_content_type(std::string_view content_type);

// The charset a <meta> element declares within the first 1024 bytes of `html` ("" when none).
std::string charset_from_meta(std::string_view html);

// Decodes `body` (as fetched, with its Content-Type header value) to UTF-8.
DecodedPage decode_page(std::string_view body, std::string_view content_type);

}  // namespace scan
