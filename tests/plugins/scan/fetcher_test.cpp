// The SSRF-guarded fetcher against a real local server: redirects re-validated hop by hop,
// limits (time, size, redirects), refused addresses and URL forms, and DNS rebinding through an
// injected Resolver (the only stand-in here: no real DNS server can be run for a public name).
#include "scan/src/fetcher.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>

#include "fixture_server.hpp"

namespace {

using scan::FetchConfig;
using scan::Fetcher;
using scan::FetchError;
using scan::FetchErrorKind;
using scan::IpAddress;
using scan::Method;

// Answers from a script: the i-th resolution returns answers[min(i, last)].
class ScriptedResolver : public scan::Resolver {
 public:
  explicit ScriptedResolver(std::vector<std::vector<std::string>> answers)
      : answers_(std::move(answers)) {}
  std::vector<IpAddress> resolve(const std::string& host) override {
    std::lock_guard<std::mutex> lock(mu_);
    hosts_.push_back(host);
    const auto& a = answers_[std::min(calls_++, answers_.size() - 1)];
    std::vector<IpAddress> out;
    for (const auto& s : a) out.push_back(*IpAddress::parse(s));
    return out;
  }
  size_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  std::vector<std::string> hosts() {
    std::lock_guard<std::mutex> lock(mu_);
    return hosts_;
  }

 private:
  std::mutex mu_;
  std::vector<std::vector<std::string>> answers_;
  size_t calls_ = 0;
  std::vector<std::string> hosts_;
};

class FetcherTest : public ::testing::Test {
 protected:
  scantest::FixtureServer server;

  FetchConfig allowed(std::vector<std::string> extra = {}) {
    FetchConfig c;
    c.request_timeout_ms = 5000;
    c.user_agent = "scan-test-agent/2.0";
    extra.push_back("127.0.0.1:" + std::to_string(server.port()));
    c.allow = scan::AllowList::parse(extra);
    return c;
  }

  // Runs f, expecting a FetchError of `kind` whose message contains `needle`.
  template <class F>
  void expect_error(F f, FetchErrorKind kind, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "no error; wanted one containing '" << needle << "'";
    } catch (const FetchError& e) {
      EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
};

TEST_F(FetcherTest, FetchesAllowlistedPageWithUserAgent) {
  Fetcher f(allowed(), nullptr);
  auto r = f.fetch(server.url("/good"), Method::kGet);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("Durable garden tools"), std::string::npos);
  ASSERT_EQ(r.hops.size(), 1u);
  EXPECT_EQ(r.hops[0].address, "127.0.0.1");
  EXPECT_EQ(server.last_user_agent("/good"), "scan-test-agent/2.0");
}

TEST_F(FetcherTest, LoopbackRefusedWithoutAllowlist) {
  Fetcher f(FetchConfig{}, nullptr);
  expect_error([&] { f.fetch(server.url("/good"), Method::kGet); }, FetchErrorKind::kValidation,
               "127.0.0.1 (loopback)");
  EXPECT_EQ(server.hits("/good"), 0);
}

TEST_F(FetcherTest, RefusesPrivateMetadataAndOddUrlForms) {
  Fetcher f(FetchConfig{}, nullptr);
  const std::string port = std::to_string(server.port());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://[::1]:" + port + "/good", "loopback"},
      {"http://[::ffff:127.0.0.1]:" + port + "/good", "loopback"},
      {"http://0.0.0.0:" + port + "/good", "unspecified"},
      {"http://2130706433:" + port + "/good", "loopback"},  // 127.0.0.1 as one number
      {"http://127.1:" + port + "/good", "loopback"},
      {"http://0x7f.0.0.1:" + port + "/good", "loopback"},
      {"http://localhost:" + port + "/good", "loopback"},
      {"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
      {"http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"},
      {"http://[::ffff:169.254.169.254]/", "cloud metadata"},
      {"http://10.0.0.1/", "private"},
      {"http://192.168.1.1/", "private"},
      {"http://100.64.0.1/", "CGNAT"},
      {"http://[fe80::1]/", "link-local"},
      {"http://224.0.0.1/", "multicast"},
      {"http://[64:ff9b::7f00:1]/", "loopback"},
      {"http://[2002:a9fe:a9fe::1]/", "cloud metadata"},
      {"ftp://127.0.0.1/x", "only http and https"},
      {"file:///etc/passwd", "only http and https"},
      {"http://user:pw@127.0.0.1:" + port + "/good", "credentials"},
      {"not a url", "bad URL"},
      {"", "bad URL"},
  };
  for (const auto& [url, why] : cases) {
    SCOPED_TRACE(url);
    const std::string& target = url;  // clang 14 cannot capture a structured binding
    expect_error([&] { f.fetch(target, Method::kGet); }, FetchErrorKind::kValidation, why);
  }
  EXPECT_EQ(server.hits("/good"), 0);
}

TEST_F(FetcherTest, RedirectChainWithinLimitIsFollowed) {
  FetchConfig c = allowed();
  c.max_redirects = 3;
  Fetcher f(c, nullptr);
  auto r = f.fetch(server.url("/redirect/2"), Method::kGet);  // 2 -> 1 -> 0 -> /good
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.final_url, server.url("/good"));
  ASSERT_EQ(r.hops.size(), 4u);
  EXPECT_EQ(r.hops[0].status, 302);
  EXPECT_EQ(r.hops[3].url, server.url("/good"));
}

TEST_F(FetcherTest, RedirectChainPastLimitIsRefused) {
  FetchConfig c = allowed();
  c.max_redirects = 3;
  Fetcher f(c, nullptr);
  expect_error([&] { f.fetch(server.url("/redirect/3"), Method::kGet); }, FetchErrorKind::kCrawl,
               "too many redirects");
  EXPECT_EQ(server.hits("/good"), 0);
  EXPECT_EQ(server.hits("/redirect/0"), 1);  // the 4th request's answer was a 4th redirect
}

TEST_F(FetcherTest, EveryRedirectHopIsRevalidated) {
  Fetcher f(allowed(), nullptr);
  expect_error([&] { f.fetch(server.url("/to-private"), Method::kGet); },
               FetchErrorKind::kValidation, "10.0.0.1 (private)");
  expect_error([&] { f.fetch(server.url("/to-metadata"), Method::kGet); },
               FetchErrorKind::kValidation, "169.254.169.254 (cloud metadata)");
  expect_error([&] { f.fetch(server.url("/to-metadata-v6"), Method::kGet); },
               FetchErrorKind::kValidation, "cloud metadata");
  expect_error([&] { f.fetch(server.url("/to-mapped-loopback"), Method::kGet); },
               FetchErrorKind::kValidation, "loopback");
  // The allowlist entry is 127.0.0.1:PORT: the same server by another name is refused.
  expect_error([&] { f.fetch(server.url("/to-localhost"), Method::kGet); },
               FetchErrorKind::kValidation, "loopback");
  expect_error([&] { f.fetch(server.url("/to-ftp"), Method::kGet); }, FetchErrorKind::kValidation,
               "only http and https");
  EXPECT_EQ(server.hits("/good"), 0);
}

TEST_F(FetcherTest, SlowPageTimesOut) {
  FetchConfig c = allowed();
  c.request_timeout_ms = 300;
  Fetcher f(c, nullptr);
  auto start = std::chrono::steady_clock::now();
  expect_error([&] { f.fetch(server.url("/slow"), Method::kGet); }, FetchErrorKind::kCrawl,
               "timed out after 300 ms");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1200));
}

TEST_F(FetcherTest, HugePageIsTooLargeWithAndWithoutContentLength) {
  FetchConfig c = allowed();
  c.max_body_bytes = 1024 * 1024;
  Fetcher f(c, nullptr);
  expect_error([&] { f.fetch(server.url("/huge"), Method::kGet); }, FetchErrorKind::kCrawl,
               "too large");
  expect_error([&] { f.fetch(server.url("/huge-chunked"), Method::kGet); }, FetchErrorKind::kCrawl,
               "too large");
  EXPECT_EQ(server.hits("/huge-chunked"), 1);
}

TEST_F(FetcherTest, HeadReturnsStatusWithoutBody) {
  Fetcher f(allowed(), nullptr);
  auto r = f.fetch(server.url("/missing"), Method::kHead);
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(server.last_method("/missing"), "HEAD");
}

TEST_F(FetcherTest, CancelStopsATransfer) {
  Fetcher f(allowed(), nullptr);
  expect_error([&] { f.fetch(server.url("/slow"), Method::kGet, [] { return true; }); },
               FetchErrorKind::kCancelled, "cancelled");
}

// Rebinding: the name first resolves to a public-looking address, later to 127.0.0.1. The fetch
// must connect only to the address it checked. The connect observer vetoes the public address so
// no packet leaves the machine; it also proves which address curl tried.
TEST_F(FetcherTest, RebindingCannotSwapTheCheckedAddress) {
  auto resolver = std::make_shared<ScriptedResolver>(
      std::vector<std::vector<std::string>>{{"93.184.216.34"}, {"127.0.0.1"}});
  Fetcher f(FetchConfig{}, resolver);
  std::vector<std::string> connects;
  f.set_connect_observer([&](const IpAddress& a) {
    connects.push_back(a.to_string());
    return false;  // never let a test reach a public address
  });
  const std::string url = "http://rebind.test:" + std::to_string(server.port()) + "/good";
  expect_error([&] { f.fetch(url, Method::kGet); }, FetchErrorKind::kValidation,
               "refused by the connect observer");
  EXPECT_EQ(resolver->calls(), 1u);  // resolved once; curl did not resolve again
  EXPECT_EQ(connects, std::vector<std::string>{"93.184.216.34"});
  // The next resolution answers 127.0.0.1: refused before any connection.
  expect_error([&] { f.fetch(url, Method::kGet); }, FetchErrorKind::kValidation,
               "127.0.0.1 (loopback) for host 'rebind.test'");
  EXPECT_EQ(connects.size(), 1u);
  EXPECT_EQ(server.hits("/good"), 0);
}

TEST_F(FetcherTest, MixedAnswerWithAnyRefusedAddressIsRefused) {
  auto resolver = std::make_shared<ScriptedResolver>(
      std::vector<std::vector<std::string>>{{"93.184.216.34", "127.0.0.1"}});
  Fetcher f(FetchConfig{}, resolver);
  f.set_connect_observer([](const IpAddress&) { return false; });
  expect_error([&] { f.fetch("http://rebind.test/", Method::kGet); }, FetchErrorKind::kValidation,
               "loopback");
}

// With loopback allowlisted by CIDR, a name that only the injected resolver knows reaches the
// local server: curl used the pinned address (it cannot resolve rebind.test itself), and the
// server saw the original Host header.
TEST_F(FetcherTest, PinnedConnectionUsesTheCheckedAddress) {
  auto resolver = std::make_shared<ScriptedResolver>(
      std::vector<std::vector<std::string>>{{"127.0.0.1"}, {"10.9.9.9"}});
  FetchConfig c;
  c.allow = scan::AllowList::parse({"127.0.0.1/32"});
  Fetcher f(c, resolver);
  std::vector<std::string> connects;
  f.set_connect_observer([&](const IpAddress& a) {
    connects.push_back(a.to_string());
    return true;
  });
  const std::string host = "rebind.test:" + std::to_string(server.port());
  auto r = f.fetch("http://" + host + "/good", Method::kGet);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server.last_host("/good"), host);
  EXPECT_EQ(connects, std::vector<std::string>{"127.0.0.1"});
  EXPECT_EQ(resolver->calls(), 1u);
  // Second answer is private and not allowlisted: refused, no new connection.
  expect_error([&] { f.fetch("http://" + host + "/good", Method::kGet); },
               FetchErrorKind::kValidation, "10.9.9.9 (private)");
  EXPECT_EQ(server.hits("/good"), 1);
}

// A redirect to a name is resolved and checked at that hop.
TEST_F(FetcherTest, RedirectToNameResolvingPrivateIsRefused) {
  auto resolver =
      std::make_shared<ScriptedResolver>(std::vector<std::vector<std::string>>{{"10.0.0.5"}});
  Fetcher f(allowed(), resolver);
  expect_error([&] { f.fetch(server.url("/to-rebind"), Method::kGet); },
               FetchErrorKind::kValidation, "10.0.0.5 (private) for host 'rebind.test'");
  EXPECT_EQ(resolver->hosts(), std::vector<std::string>{"rebind.test"});
}

}  // namespace
