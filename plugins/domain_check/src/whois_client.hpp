// A blocking RFC 3912 WHOIS query (TCP: send "name\r\n", read until the server closes) with a
// hard deadline, on the calling thread. Stateless; safe from any thread.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <string>
#include <vector>

#include "domain_check/src/dns_client.hpp"

namespace domain_check {

struct WhoisReply {
  enum Status { kOk, kUnreachable, kTimeout, kCancelled, kError } status = kError;
  std::string text;    // the reply (possibly truncated to max_bytes)
  std::string detail;  // why, for failures (errno text)
};

// Tries each address in turn until one connects; the whole exchange ends by timeout_s.
WhoisReply whois_query(const ResolvedHost& server, const std::string& query, double timeout_s,
                       size_t max_bytes, const CancelFn& cancelled);

// Case-insensitive substring search.
bool contains_nocase(const std::string& haystack, const std::string& needle);

}  // namespace domain_check
