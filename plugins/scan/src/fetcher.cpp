#include "scan/src/fetcher.hpp"

#include <curl/curl.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <mutex>

namespace scan {

void curl_global_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::vector<IpAddress> SystemResolver::resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0) {
    // EAI_AGAIN: the DNS server failed to answer now; EAI_NONAME and the rest will not change.
    throw FetchError(FetchErrorKind::kCrawl,
                     "could not resolve host '" + host + "': " + gai_strerror(rc), rc == EAI_AGAIN);
  }
  std::vector<IpAddress> out;
  for (addrinfo* p = res; p != nullptr; p = p->ai_next) {
    auto a = IpAddress::from_sockaddr(p->ai_addr);
    if (a && std::find(out.begin(), out.end(), *a) == out.end()) out.push_back(*a);
  }
  freeaddrinfo(res);
  if (out.empty()) throw FetchError(FetchErrorKind::kCrawl, "no address for host '" + host + "'");
  return out;
}

struct Fetcher::Target {
  std::string url;   // normalised by curl's own URL parser
  std::string host;  // without brackets
  int port = 0;
  bool literal = false;  // the host is an IP address
  IpAddress pinned;
};

namespace {

struct UrlHandle {
  CURLU* h = curl_url();
  ~UrlHandle() { curl_url_cleanup(h); }
};

std::string url_part(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, flags) != CURLUE_OK || s == nullptr) return "";
  std::string out(s);
  curl_free(s);
  return out;
}

[[noreturn]] void refuse(const std::string& msg) {
  throw FetchError(FetchErrorKind::kValidation, msg);
}

// State shared with the curl callbacks of one request.
struct Transfer {
  std::string body;
  int64_t max_body = 0;
  bool too_large = false;
  const std::function<bool()>* cancelled = nullptr;
  bool was_cancelled = false;
  IpAddress pinned;
  const std::function<bool(const IpAddress&)>* observer = nullptr;
  std::string socket_refusal;  // set when the open-socket check refused an address
};

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  if (static_cast<int64_t>(t->body.size() + len) > t->max_body) {
    t->too_large = true;
    return 0;  // makes curl fail with CURLE_WRITE_ERROR
  }
  t->body.append(data, len);
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancelled && *t->cancelled && (*t->cancelled)()) {
    t->was_cancelled = true;
    return 1;
  }
  return 0;
}

curl_socket_t on_open_socket(void* user, curlsocktype, curl_sockaddr* addr) {
  auto* t = static_cast<Transfer*>(user);
  auto a = IpAddress::from_sockaddr(&addr->addr);
  if (!a || !(*a == t->pinned)) {
    t->socket_refusal = "connection to " + (a ? a->to_string() : std::string("?")) +
                        " refused: not the checked address " + t->pinned.to_string();
    return CURL_SOCKET_BAD;
  }
  if (t->observer && *t->observer && !(*t->observer)(*a)) {
    t->socket_refusal = "connection to " + a->to_string() + " refused by the connect observer";
    return CURL_SOCKET_BAD;
  }
  return socket(addr->family, addr->socktype, addr->protocol);
}

struct EasyHandle {
  CURL* h = curl_easy_init();
  curl_slist* resolve = nullptr;
  curl_slist* headers = nullptr;
  ~EasyHandle() {
    curl_slist_free_all(resolve);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
  }
};

// curl failures of the connection itself, which another attempt may not meet: refused, reset,
// cut short, a TLS handshake that broke off.
bool transient_curl_error(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool is_redirect(long status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

Fetcher::Fetcher(FetchConfig cfg, std::shared_ptr<Resolver> resolver)
    : cfg_(std::move(cfg)), resolver_(std::move(resolver)) {
  curl_global_once();
  if (!resolver_) resolver_ = std::make_shared<SystemResolver>();
}

Fetcher::Target Fetcher::validate(const std::string& url) const {
  if (url.empty() || url.size() > 2048) refuse("bad URL: empty or longer than 2048 characters");
  UrlHandle u;
  if (u.h == nullptr) throw FetchError(FetchErrorKind::kCrawl, "out of memory");
  if (curl_url_set(u.h, CURLUPART_URL, url.c_str(), CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    refuse("bad URL '" + url + "'");
  }
  std::string scheme = url_part(u.h, CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") {
    refuse("bad URL '" + url + "': only http and https are allowed");
  }
  if (!url_part(u.h, CURLUPART_USER).empty() || !url_part(u.h, CURLUPART_PASSWORD).empty()) {
    refuse("bad URL '" + url + "': credentials in URLs are not allowed");
  }
  if (!url_part(u.h, CURLUPART_ZONEID).empty()) refuse("bad URL '" + url + "': IPv6 zone id");
  Target t;
  t.url = url_part(u.h, CURLUPART_URL);
  t.host = url_part(u.h, CURLUPART_HOST);
  std::string port = url_part(u.h, CURLUPART_PORT, CURLU_DEFAULT_PORT);
  t.port = port.empty() ? 0 : std::stoi(port);
  if (t.host.empty() || t.port <= 0) refuse("bad URL '" + url + "': no host");
  if (t.host.front() == '[') t.host = t.host.substr(1, t.host.size() - 2);

  std::vector<IpAddress> addrs;
  if (auto lit = IpAddress::parse(t.host)) {
    t.literal = true;
    addrs.push_back(*lit);
  } else {
    addrs = resolver_->resolve(t.host);  // the one and only resolution of this hop
    if (addrs.empty()) throw FetchError(FetchErrorKind::kCrawl, "no address for " + t.host);
  }
  if (!cfg_.allow.allows_host(t.host, t.port)) {
    for (const auto& a : addrs) {
      if (cfg_.allow.allows_address(a)) continue;
      AddrClass c = classify(a);
      if (c != AddrClass::kPublic) {
        refuse("refused address " + a.to_string() + " (" + to_string(c) + ") for host '" + t.host +
               "'");
      }
    }
  }
  t.pinned = addrs.front();
  return t;
}

IpAddress Fetcher::check(const std::string& url) const { return validate(url).pinned; }

FetchResult Fetcher::fetch(const std::string& url, Method method,
                           const std::function<bool()>& cancelled) const {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(cfg_.request_timeout_ms);
  FetchResult out;
  std::string next = url;
  for (int hop = 0;; ++hop) {
    Target t = validate(next);
    auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (remaining <= 0) {
      throw FetchError(FetchErrorKind::kCrawl,
                       "timed out after " + std::to_string(cfg_.request_timeout_ms) + " ms", true);
    }
    EasyHandle e;
    if (e.h == nullptr) throw FetchError(FetchErrorKind::kCrawl, "curl_easy_init failed");
    Transfer tr;
    tr.max_body = cfg_.max_body_bytes;
    tr.cancelled = &cancelled;
    tr.pinned = t.pinned;
    tr.observer = &observer_;
    char errbuf[CURL_ERROR_SIZE] = {0};
    CURL* h = e.h;
    curl_easy_setopt(h, CURLOPT_URL, t.url.c_str());
    if (!t.literal) {
      std::string addr = t.pinned.to_string();
      if (t.pinned.family == AF_INET6) addr = "[" + addr + "]";
      std::string entry = t.host + ":" + std::to_string(t.port) + ":" + addr;
      e.resolve = curl_slist_append(e.resolve, entry.c_str());
      curl_easy_setopt(h, CURLOPT_RESOLVE, e.resolve);
    }
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, "");  // ignore *_proxy variables: they would bypass pins
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg_.connect_timeout_ms));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(remaining));
    curl_easy_setopt(h, CURLOPT_USERAGENT, cfg_.user_agent.c_str());
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");  // decoded size is what max_body limits
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(cfg_.max_body_bytes));
    e.headers =
        curl_slist_append(e.headers, "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e.headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &tr);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &tr);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, &on_open_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, &tr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    if (method == Method::kHead) curl_easy_setopt(h, CURLOPT_NOBODY, 1L);

    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
      if (tr.was_cancelled) throw FetchError(FetchErrorKind::kCancelled, "cancelled");
      if (!tr.socket_refusal.empty()) refuse(tr.socket_refusal);
      if (tr.too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        throw FetchError(FetchErrorKind::kCrawl, "response too large: more than " +
                                                     std::to_string(cfg_.max_body_bytes) +
                                                     " bytes (max_body_bytes)");
      }
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        throw FetchError(
            FetchErrorKind::kCrawl,
            "timed out after " + std::to_string(cfg_.request_timeout_ms) + " ms fetching " + t.url,
            true);
      }
      std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      throw FetchError(FetchErrorKind::kCrawl, "fetch of " + t.url + " failed: " + detail,
                       transient_curl_error(rc));
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    out.hops.push_back({t.url, status, t.pinned.to_string()});
    char* redirect = nullptr;
    curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect);
    if (is_redirect(status) && redirect != nullptr && *redirect != '\0') {
      if (hop >= cfg_.max_redirects) {
        throw FetchError(FetchErrorKind::kCrawl, "too many redirects: more than " +
                                                     std::to_string(cfg_.max_redirects) +
                                                     " (max_redirects)");
      }
      next = redirect;
      continue;
    }
    char* ctype = nullptr;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
    out.final_url = t.url;
    out.status = status;
    out.content_type = ctype ? ctype : "";
    out.body = std::move(tr.body);
    out.fetch_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return out;
  }
}

}  // namespace scan
