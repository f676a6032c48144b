// Connection strings as libpq reads them. Shared by the host (db_auth, plugin databases) and the
// sandbox's network grants (net_grants, net_guard), which must grant exactly the hosts, ports
// and socket directories libpq will connect to: one parser, libpq's own. No state; thread-safe.
#pragma once

#include <map>
#include <string>

namespace jr::dbauth {

// Parses a libpq connection string (postgresql:// URL or key=value) into the parameters it sets
// (PQconninfoParse: quoting, percent-encoding, IPv6 brackets, and a host= query parameter
// replacing the URL's hosts, as libpq does); throws std::invalid_argument with libpq's message
// when it does not parse.
std::map<std::string, std::string> parse_conninfo(const std::string& conninfo);

}  // namespace jr::dbauth
