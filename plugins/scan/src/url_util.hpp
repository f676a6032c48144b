// URL helpers for the scan plugin, built on curl's own URL parser (CURLU) so that what we check
// is exactly what curl fetches. Stateless; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace scan {

// Resolves `ref` (absolute or relative) against `base`; nullopt when it is not an http(s) URL
// (javascript:, mailto:, data:, malformed...). The fragment is dropped.
std::optional<std::string> resolve_url(const std::string& base, std::string_view ref);

// Lower-case host of an absolute URL without brackets, "" when it has none.
std::string url_host(const std::string& url);

// True when both hosts name the same site, ignoring case and a leading "www.".
bool same_site(const std::string& host_a, const std::string& host_b);

}  // namespace scan
