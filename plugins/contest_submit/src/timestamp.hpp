// RFC 3339 timestamps <-> microseconds since the Unix epoch (UTC), for submission times.
// Pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace contest {

// Parses "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" ('T' may also be 't' or a space,
// 'Z' may be 'z'; digits after the sixth fractional one are dropped). Years 0001-9999. Returns
// nullopt for anything else, including impossible dates such as 2023-02-29.
std::optional<int64_t> parse_timestamp(std::string_view text);

// "YYYY-MM-DDTHH:MM:SS.ffffffZ", which parse_timestamp and PostgreSQL both read back exactly.
std::string format_timestamp(int64_t micros);

}  // namespace contest
