// Pure parts of domain_check: name validation, punycode, config parsing, manifest, and the
// host's env-override path applied to this plugin's manifest.
#include <gtest/gtest.h>

#include <cstdlib>

#include "domain_check/src/config.hpp"
#include "domain_check/src/domain_name.hpp"
#include "harness.hpp"
#include "plugin_loader.hpp"

namespace {

using namespace domain_check;
using nlohmann::json;

TEST(DomainName, AcceptsAndNormalisesValidNames) {
  for (auto [in, out] : std::vector<std::pair<std::string, std::string>>{
           {"example.com", "example.com"},
           {"Example.COM.", "example.com"},
           {"a-b.c0.example.org", "a-b.c0.example.org"},
           {"xn--bcher-kva.example", "xn--bcher-kva.example"},
           {"xn--mnchen-3ya.de", "xn--mnchen-3ya.de"},
           {"example.xn--p1ai", "example.xn--p1ai"},
           {std::string(63, 'a') + ".com", std::string(63, 'a') + ".com"}}) {
    NameCheck c = check_domain_name(in);
    EXPECT_TRUE(c.valid) << in << ": " << c.reason;
    EXPECT_EQ(c.name, out);
  }
}

TEST(DomainName, RejectsInvalidNamesWithAReason) {
  std::string label63(63, 'a');
  std::string long_name = label63 + "." + label63 + "." + label63 + "." + label63 + ".com";
  ASSERT_GT(long_name.size(), 253u);
  for (auto [in, why] :
       std::vector<std::pair<std::string, std::string>>{{"", "empty"},
                                                        {".", "root"},
                                                        {"com", "single label"},
                                                        {"a..com", "empty label"},
                                                        {".a.com", "empty label"},
                                                        {"-a.com", "hyphen"},
                                                        {"a-.com", "hyphen"},
                                                        {"a_b.com", "'_'"},
                                                        {"a b.com", "0x20"},
                                                        {"b\xc3\xbc"
                                                         "cher.de",
                                                         "punycode"},
                                                        {std::string(64, 'a') + ".com", "63"},
                                                        {long_name, "253"},
                                                        {"ab--c.com", "positions 3-4"},
                                                        {"xn--.com", "hyphen"},
                                                        {"xn--99999999999999.com", "punycode"},
                                                        {"xn--abc-.com", "hyphen"},
                                                        {"1.2.3.4", "numeric"}}) {
    NameCheck c = check_domain_name(in);
    EXPECT_FALSE(c.valid) << in;
    EXPECT_NE(c.reason.find(why), std::string::npos) << in << ": " << c.reason;
  }
}

TEST(Punycode, DecodesRfc3492Samples) {
  std::u32string out;
  ASSERT_TRUE(punycode_decode("bcher-kva", out));
  EXPECT_EQ(out, U"b\u00fccher");
  ASSERT_TRUE(punycode_decode("mnchen-3ya", out));
  EXPECT_EQ(out, U"m\u00fcnchen");
  // RFC 3492 7.1 (A) Arabic (Egyptian).
  ASSERT_TRUE(punycode_decode("egbpdaj6bu4bxfgehfvwxn", out));
  EXPECT_EQ(out,
            U"\u0644\u064a\u0647\u0645\u0627\u0628\u062a\u0643\u0644\u0645\u0648\u0634"
            U"\u0639\u0631\u0628\u064a\u061f");
  EXPECT_FALSE(punycode_decode("99999999999999", out));
  EXPECT_FALSE(punycode_decode("a!b", out));
}

TEST(Config, DefaultsAndValidation) {
  Settings s = parse_settings({{"database_url", "postgresql:///x"}});
  EXPECT_EQ(s.dns_timeout, 3.0);
  EXPECT_EQ(s.max_concurrent_checks, 10);
  EXPECT_TRUE(s.enable_idle_recheck);
  EXPECT_EQ(s.idle_threshold_seconds, 60);
  EXPECT_EQ(s.recheck_poll_interval, 30);
  EXPECT_EQ(s.recheck_interval_days, 7);
  EXPECT_EQ(s.recheck_batch_size, 50);
  EXPECT_EQ(s.whois_servers.at("com").host, "whois.verisign-grs.com");
  EXPECT_EQ(resolver_csv(s), "");

  s = parse_settings({{"database_url", "x"},
                      {"dns_server", "127.0.0.1, ::1 ,[::1]:5300,10.0.0.1:53"},
                      {"dns_port", 5353},
                      {"enable_idle_recheck", "false"},
                      {"dns_timeout", "0.5"},
                      {"whois_servers",
                       {{".Test", "127.0.0.1:4343"},
                        {"com", ""},
                        {"dev", {{"server", "whois.example:43"}, {"not_found", {"nothing"}}}}}}});
  EXPECT_EQ(resolver_csv(s), "127.0.0.1:5353,[::1]:5353,[::1]:5300,10.0.0.1:53");
  EXPECT_FALSE(s.enable_idle_recheck);
  EXPECT_EQ(s.dns_timeout, 0.5);
  EXPECT_EQ(s.whois_servers.at("test").port, 4343);
  EXPECT_EQ(s.whois_servers.count("com"), 0u);
  EXPECT_EQ(s.whois_servers.at("dev").not_found, std::vector<std::string>{"nothing"});
  EXPECT_EQ(s.whois_servers.at("test").not_found, default_not_found_patterns());

  for (auto [bad, key] : std::vector<std::pair<json, std::string>>{
           {json::object(), "database_url"},
           {{{"database_url", "x"}, {"dns_timeout", "soon"}}, "dns_timeout"},
           {{{"database_url", "x"}, {"dns_timeout", -1}}, "dns_timeout"},
           {{{"database_url", "x"}, {"max_concurrent_checks", 0}}, "max_concurrent_checks"},
           {{{"database_url", "x"}, {"recheck_batch_size", 2.5}}, "recheck_batch_size"},
           {{{"database_url", "x"}, {"enable_idle_recheck", "maybe"}}, "enable_idle_recheck"},
           {{{"database_url", "x"}, {"dns_server", "resolver.example"}}, "dns_server"},
           {{{"database_url", "x"}, {"whois_servers", {{"test", "h:99999"}}}}, "whois_servers"}}) {
    try {
      parse_settings(bad);
      ADD_FAILURE() << "accepted " << bad.dump();
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  }
}

TEST(Manifest, DeclaresSandboxEnvAndIdleTiming) {
  jr::LoadedPlugin p = jr::load_plugin(jrtest::plugin_dir() + "/libjr_domain_check.so");
  EXPECT_TRUE(p.has_idle);
  ASSERT_EQ(p.kinds.size(), 1u);
  EXPECT_EQ(p.kinds[0].kind, "domain_check");
  EXPECT_EQ(p.kinds[0].default_queue, "domain_checks");
  EXPECT_EQ(p.manifest["sandbox"]["network"], "full");
  EXPECT_EQ(p.manifest["sandbox"]["writable"], json::array());
  EXPECT_EQ(p.manifest["idle"]["threshold_seconds"], 60);
  EXPECT_EQ(p.manifest["idle"]["poll_interval_seconds"], 30);
  for (const char* var :
       {"DOMAIN_CHECKER_DNS_TIMEOUT", "WORKER_MAX_CONCURRENT_CHECKS", "WORKER_ENABLE_IDLE_RECHECK",
        "WORKER_IDLE_THRESHOLD_SECONDS", "WORKER_RECHECK_INTERVAL_DAYS",
        "WORKER_RECHECK_BATCH_SIZE", "WORKER_RECHECK_POLL_INTERVAL", "DOMAIN_CHECKER_DNS_SERVER",
        "DOMAIN_CHECKER_DNS_PORT"}) {
    EXPECT_TRUE(p.manifest["env"].contains(var)) << var;
  }
  // The host copies the variables into the config, typed; the plugin accepts the result.
  setenv("DOMAIN_CHECKER_DNS_TIMEOUT", "0.25", 1);
  setenv("WORKER_ENABLE_IDLE_RECHECK", "false", 1);
  setenv("WORKER_RECHECK_BATCH_SIZE", "7", 1);
  setenv("DOMAIN_CHECKER_DNS_SERVER", "127.0.0.1", 1);
  // As the built-in approval of the shipped plugin grants it (host/sandbox/policy.cpp).
  p.grants.env = p.manifest["env"].get<std::map<std::string, std::string>>();
  json cfg =
      jr::plugin_config_for(p, {{"domain_check", {{"dns_timeout", 2.0}}}}, "postgresql:///x");
  unsetenv("DOMAIN_CHECKER_DNS_TIMEOUT");
  unsetenv("WORKER_ENABLE_IDLE_RECHECK");
  unsetenv("WORKER_RECHECK_BATCH_SIZE");
  unsetenv("DOMAIN_CHECKER_DNS_SERVER");
  Settings s = parse_settings(cfg);
  EXPECT_EQ(s.dns_timeout, 0.25);
  EXPECT_FALSE(s.enable_idle_recheck);
  EXPECT_EQ(s.recheck_batch_size, 7);
  EXPECT_EQ(s.dns_server, "127.0.0.1");
  EXPECT_EQ(s.database_url, "postgresql:///x");
}

}  // namespace
