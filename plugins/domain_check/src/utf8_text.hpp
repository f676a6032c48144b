// Making untrusted bytes (WHOIS replies, server and system messages) storable as JSON text:
// valid UTF-8 without NUL, which is all nlohmann::json::dump() and PostgreSQL's jsonb accept.
// A WHOIS server may answer in Latin-1 / windows-1252 (`Soci\xe9t\xe9`) or mix encodings, and a
// byte-count cut may split a character; both used to make the whole job's store throw.
// Pure functions; safe from any thread.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace domain_check {

// Valid UTF-8 sequences are kept as they are; every byte that does not start one is read as
// windows-1252 (a superset of Latin-1's printable range: 0xE9 -> U+00E9 "é", 0x80 -> U+20AC),
// bytes that encoding leaves undefined become U+FFFD, and NUL bytes are dropped.
std::string to_utf8(std::string_view bytes);

// True when `s` is valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// The longest prefix of the valid UTF-8 `s` that is at most `max_bytes` long and ends on a
// character boundary.
std::string utf8_prefix(std::string_view s, size_t max_bytes);

// Applies to_utf8 to every string in `j` (object keys included), recursively.
void make_storable(nlohmann::json& j);

}  // namespace domain_check
