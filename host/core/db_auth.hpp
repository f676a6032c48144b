// Database credentials the runner creates: random passwords, their SCRAM-SHA-256 verifiers (so a
// password never travels in SQL text, where a server log could keep it), libpq password files
// (0600, owned by the runner's user), and building a libpq URL for another role on the server
// and database of a given URL. Pure functions and file I/O; thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "conninfo.hpp"

namespace jr::dbauth {

// 24 bytes from the kernel's CSPRNG (getrandom), as 48 hex digits: safe in URLs, password files
// and SQL literals without escaping. Throws std::runtime_error if the kernel cannot supply them.
std::string random_password();

// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 7677; 4096 iterations and a
// random 16-byte salt, the server's defaults): "SCRAM-SHA-256$4096:salt$StoredKey:ServerKey".
// `ALTER ROLE ... PASSWORD '<verifier>'` stores it as is. `password` must be ASCII (SASLprep is
// then the identity), as random_password() gives.
std::string scram_verifier(const std::string& password);

// The password for `user` in the libpq password file `path` (a "*:*:*:user:password" line), or
// nullopt when the file or the line is missing.
std::optional<std::string> read_passfile(const std::string& path, const std::string& user);

// Writes `path` as a libpq password file holding one line for `user`, mode 0600, atomically
// (a temporary file renamed over it). Throws std::runtime_error naming the path on failure.
void write_passfile(const std::string& path, const std::string& user, const std::string& password);

// The password stored for `user` in `path`; when there is none, a new random one is written there
// first. Returns it.
std::string load_or_create_passfile(const std::string& path, const std::string& user);

// parse_conninfo (libpq's parser): conninfo.hpp.

// A postgresql:// URL for `user`/`password` on the same server and database as `base` (host,
// hostaddr, port, dbname and the TLS and timeout settings are kept; user, password, passfile,
// service and client certificates are not: they are the base role's credentials). `fallback`
// fills parameters `base` leaves to the environment or libpq's defaults (e.g. the host, port and
// database a live connection actually reached), since the plugin's worker has none of them.
std::string url_for_role(const std::string& base, const std::string& user,
                         const std::string& password,
                         const std::map<std::string, std::string>& fallback = {});

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string url_encode(const std::string& s);

}  // namespace jr::dbauth
