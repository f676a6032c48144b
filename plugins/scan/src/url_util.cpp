#include "scan/src/url_util.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>

namespace scan {

namespace {

struct Url {
  CURLU* h = curl_url();
  ~Url() { curl_url_cleanup(h); }
};

std::string get(CURLU* u, CURLUPart part) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, 0) != CURLUE_OK || s == nullptr) return "";
  std::string out(s);
  curl_free(s);
  return out;
}

std::string strip_www(std::string h) {
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (h.rfind("www.", 0) == 0) h = h.substr(4);
  return h;
}

}  // namespace

std::optional<std::string> resolve_url(const std::string& base, std::string_view ref) {
  // Trim the ASCII whitespace browsers ignore around attribute URLs.
  while (!ref.empty() && std::isspace(static_cast<unsigned char>(ref.front())))
    ref.remove_prefix(1);
  while (!ref.empty() && std::isspace(static_cast<unsigned char>(ref.back()))) ref.remove_suffix(1);
  if (ref.empty() || ref.front() == '#' || ref.size() > 2048) return std::nullopt;
  Url u;
  if (u.h == nullptr) return std::nullopt;
  if (curl_url_set(u.h, CURLUPART_URL, base.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    return std::nullopt;
  }
  std::string r(ref);
  if (curl_url_set(u.h, CURLUPART_URL, r.c_str(), CURLU_NON_SUPPORT_SCHEME | CURLU_URLENCODE) !=
      CURLUE_OK) {
    return std::nullopt;
  }
  std::string scheme = get(u.h, CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") return std::nullopt;
  curl_url_set(u.h, CURLUPART_FRAGMENT, nullptr, 0);
  std::string out = get(u.h, CURLUPART_URL);
  if (out.empty()) return std::nullopt;
  return out;
}

std::string url_host(const std::string& url) {
  Url u;
  if (u.h == nullptr) return "";
  if (curl_url_set(u.h, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    return "";
  }
  std::string h = get(u.h, CURLUPART_HOST);
  if (h.size() >= 2 && h.front() == '[') h = h.substr(1, h.size() - 2);
  std::transform(h.begin(), h.end(), h.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return h;
}

bool same_site(const std::string& host_a, const std::string& host_b) {
  return !host_a.empty() && strip_www(host_a) == strip_www(host_b);
}

}  // namespace scan
