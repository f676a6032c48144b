// domain_check jobs through the real plugin .so against real servers on 127.0.0.1: dnsmasq for
// DNS, a WHOIS server thread, PostgreSQL for the domains table.
#include <jobrunner/abi.h>

#include <chrono>

#include "test_env.hpp"

namespace {

using dctest::config;
using dctest::entry;
using dctest::env;
using jrtest::PgCluster;
using nlohmann::json;

TEST(DomainCheck, ClassifiesRegisteredAvailableAndInvalidNames) {
  std::string db = dctest::plugin_db("dc");
  jrtest::PluginHost host(dctest::so_path(), config(db));
  std::string long_label(64, 'a');
  json payload = {{"domains",
                   {"taken.test", "Example.TEST.", "free.test", "parked.test", "xn--bcher-kva.test",
                    "-bad.test", "a..test",
                    "b\xc3\xbc"
                    "cher.test",
                    "under_score.test", long_label + ".test", "localhost", "",
                    "xn--99999999999999.test", "ab--cd.test", "1.2.3.4"}}};
  json res = dctest::run_ok(host, payload);

  json taken = entry(res, "taken.test");
  EXPECT_EQ(taken["status"], "registered");
  EXPECT_EQ(taken["method"], "dns");
  EXPECT_EQ(taken["details"]["ns"], json::array({"ns1.test"}));
  EXPECT_GT(taken["latency_ms"].get<double>(), 0.0);
  EXPECT_FALSE(taken["checked_at"].get<std::string>().empty());

  json example = entry(res, "Example.TEST.");
  EXPECT_EQ(example["name"], "example.test");
  EXPECT_EQ(example["status"], "registered");

  json free = entry(res, "free.test");
  EXPECT_EQ(free["status"], "available");
  EXPECT_EQ(free["method"], "whois");
  EXPECT_EQ(free["details"]["dns"], "NXDOMAIN");
  EXPECT_EQ(free["details"]["confirmed"], true);

  json parked = entry(res, "parked.test");  // no delegation, but WHOIS has a record
  EXPECT_EQ(parked["status"], "registered");
  EXPECT_EQ(parked["method"], "whois");

  EXPECT_EQ(entry(res, "xn--bcher-kva.test")["status"], "available");

  std::vector<std::string> invalid = {"-bad.test",
                                      "a..test",
                                      "b\xc3\xbc"
                                      "cher.test",
                                      "under_score.test",
                                      "localhost",
                                      "",
                                      "xn--99999999999999.test",
                                      "ab--cd.test",
                                      "1.2.3.4",
                                      long_label + ".test"};
  for (const std::string& bad : invalid) {
    json e = entry(res, bad);
    EXPECT_EQ(e["status"], "invalid") << bad;
    EXPECT_TRUE(e["method"].is_null()) << bad;
    EXPECT_FALSE(e["reason"].get<std::string>().empty()) << bad;
  }
  EXPECT_NE(entry(res,
                  "b\xc3\xbc"
                  "cher.test")["reason"]
                .get<std::string>()
                .find("punycode"),
            std::string::npos);
  EXPECT_NE(entry(res, long_label + ".test")["reason"].get<std::string>().find("63"),
            std::string::npos);
  EXPECT_EQ(res["summary"],
            json({{"available", 2}, {"registered", 3}, {"invalid", 10}, {"unknown", 0}}));

  // Valid names are in the domains table; invalid ones are not.
  EXPECT_EQ(PgCluster::query_one(db, "SELECT count(*) FROM domains"), "5");
  EXPECT_EQ(PgCluster::query_one(
                db, "SELECT status || '/' || method FROM domains WHERE name = 'taken.test'"),
            "registered/dns");
  EXPECT_EQ(PgCluster::query_one(
                db, "SELECT status || '/' || method FROM domains WHERE name = 'parked.test'"),
            "registered/whois");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT status || '/' || (details->>'confirmed') FROM "
                                 "domains WHERE name = 'free.test'"),
            "available/true");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT details->'ns'->>0 FROM domains "
                                 "WHERE name = 'example.test'"),
            "ns1.test");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT count(*) FROM domains WHERE checked_at > "
                                 "now() - interval '1 minute'"),
            "5");
}

TEST(DomainCheck, EachFailureGetsUnknownWithItsReason) {
  std::string db = dctest::plugin_db("dc");
  jrtest::PluginHost host(dctest::so_path(), config(db));
  auto t0 = std::chrono::steady_clock::now();
  json res = dctest::run_ok(host, {{"domains",
                                    {"hang.slow", "x.sf", "other.zz", "hangwhois.test", "x.gone",
                                     "emptyreply.test", "limited.test", "x.nowhois"}}});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  json hang = entry(res, "hang.slow");  // dnsmasq forwards to a socket that never answers
  EXPECT_EQ(hang["status"], "unknown");
  EXPECT_EQ(hang["reason"], "timeout");
  EXPECT_EQ(hang["method"], "dns");
  EXPECT_GE(hang["latency_ms"].get<double>(), 900.0);  // dns_timeout = 1.0 s
  EXPECT_LT(hang["latency_ms"].get<double>(), 2500.0);

  EXPECT_EQ(entry(res, "x.sf")["reason"], "SERVFAIL");
  EXPECT_EQ(entry(res, "other.zz")["reason"], "REFUSED");
  for (const char* n : {"x.sf", "other.zz"}) EXPECT_EQ(entry(res, n)["status"], "unknown") << n;

  json wh = entry(res, "hangwhois.test");  // NXDOMAIN, then the WHOIS server never replies
  EXPECT_EQ(wh["status"], "unknown");
  EXPECT_EQ(wh["method"], "whois");
  EXPECT_EQ(wh["reason"], "WHOIS timeout");
  EXPECT_GE(wh["latency_ms"].get<double>(), 900.0);
  EXPECT_LT(wh["latency_ms"].get<double>(), 2500.0);

  json gone = entry(res, "x.gone");  // the .gone WHOIS server is a port with nothing on it
  EXPECT_EQ(gone["status"], "unknown");
  EXPECT_EQ(gone["reason"], "WHOIS unreachable");
  EXPECT_NE(gone["details"]["error"].get<std::string>().find("refused"), std::string::npos)
      << gone.dump();

  EXPECT_EQ(entry(res, "emptyreply.test")["reason"], "WHOIS empty reply");
  EXPECT_EQ(entry(res, "limited.test")["reason"], "WHOIS refused");

  json nowhois = entry(res, "x.nowhois");  // NXDOMAIN, no WHOIS server for the TLD
  EXPECT_EQ(nowhois["status"], "available");
  EXPECT_EQ(nowhois["method"], "dns");
  EXPECT_EQ(nowhois["details"]["confirmed"], false);

  EXPECT_EQ(res["summary"]["unknown"], 7);
  // The two slow checks ran side by side, not one after the other.
  EXPECT_LT(secs, 2.5);
  EXPECT_EQ(
      PgCluster::query_one(db, "SELECT details->>'reason' FROM domains WHERE name = 'hang.slow'"),
      "timeout");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT count(*) FROM domains WHERE status = 'unknown'"), "7");
}

TEST(DomainCheck, UnreachableResolverIsUnknownPerDomainNotAJobFailure) {
  std::string db = dctest::plugin_db("dc");
  json cfg = config(db);
  cfg["dns_port"] = dctest::dead_port();
  jrtest::PluginHost host(dctest::so_path(), cfg);
  auto t0 = std::chrono::steady_clock::now();
  json res = dctest::run_ok(host, {{"domains", {"taken.test", "free.test", "bad..name"}}});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const char* n : {"taken.test", "free.test"}) {
    json e = entry(res, n);
    EXPECT_EQ(e["status"], "unknown") << n;
    EXPECT_EQ(e["reason"], "resolver unreachable") << e.dump();
  }
  EXPECT_EQ(entry(res, "bad..name")["status"], "invalid");
  EXPECT_LT(secs, 2.0);  // the refusal is immediate: no waiting for the timeout
}

TEST(DomainCheck, MalformedPayloadsArePermanentErrors) {
  std::string db = dctest::plugin_db("dc");
  json cfg = config(db);
  cfg["max_domains_per_job"] = 3;
  jrtest::PluginHost host(dctest::so_path(), cfg);
  for (const std::string p :
       {"{}", "[]", "not json", R"({"domains": []})", R"({"domains": "a.test"})",
        R"({"domains": ["a.test", 7]})", R"({"domains": ["a.test","b.test","c.test","d.test"]})",
        R"({"names": ["a.test"]})"}) {
    jrtest::JobOutcome out = host.run("domain_check", p);
    EXPECT_EQ(out.status, JR_ERR_PERMANENT) << p;
    EXPECT_FALSE(out.error.empty()) << p;
  }
  jrtest::JobOutcome many =
      host.run("domain_check", R"({"domains": ["a.test","b.test","c.test","d.test"]})");
  EXPECT_NE(many.error.find("max_domains_per_job"), std::string::npos) << many.error;
}

TEST(DomainCheck, ChecksRunConcurrentlyUpToTheLimit) {
  std::string db = dctest::plugin_db("dc");
  dctest::WhoisServer slow_whois({}, 300);  // every reply takes 300 ms
  json cfg = config(db);
  cfg["whois_servers"]["test"] = "127.0.0.1:" + std::to_string(slow_whois.port());
  cfg["max_concurrent_checks"] = 4;
  jrtest::PluginHost host(dctest::so_path(), cfg);
  json names = json::array();
  for (int i = 0; i < 12; ++i) names.push_back("free" + std::to_string(i) + ".test");
  auto t0 = std::chrono::steady_clock::now();
  json res = dctest::run_ok(host, {{"domains", names}});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(res["summary"]["available"], 12);
  EXPECT_EQ(slow_whois.queries(), 12);
  EXPECT_EQ(slow_whois.max_in_flight(), 4);
  EXPECT_GE(secs, 0.85);  // 12 / 4 = 3 waves of 300 ms
  EXPECT_LT(secs, 2.5);   // well under 12 x 300 ms sequentially
}

TEST(DomainCheck, DuplicatesAreCheckedOnceAndRowsAreUpdatedByNewerChecks) {
  std::string db = dctest::plugin_db("dc");
  dctest::WhoisServer whois_a({});
  json cfg = config(db);
  cfg["whois_servers"]["test"] = "127.0.0.1:" + std::to_string(whois_a.port());
  {
    jrtest::PluginHost host(dctest::so_path(), cfg);
    json res = dctest::run_ok(host, {{"domains", {"fresh.test", "FRESH.test", "fresh.test."}}});
    for (const char* n : {"fresh.test", "FRESH.test", "fresh.test."}) {
      EXPECT_EQ(entry(res, n)["status"], "available") << n;
    }
    EXPECT_EQ(whois_a.queries(), 1);
  }
  std::string first = PgCluster::query_one(db, "SELECT checked_at FROM domains");
  PgCluster::exec(db, "UPDATE domains SET recheck_enqueued_at = now()");
  // Later the name is registered: the next check overwrites the row.
  dctest::WhoisServer whois_b({"fresh.test"});
  cfg["whois_servers"]["test"] = "127.0.0.1:" + std::to_string(whois_b.port());
  jrtest::PluginHost host(dctest::so_path(), cfg);
  json res = dctest::run_ok(host, {{"domains", {"fresh.test"}}});
  EXPECT_EQ(entry(res, "fresh.test")["status"], "registered");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT count(*) FROM domains"), "1");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT status FROM domains"), "registered");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT recheck_enqueued_at IS NULL FROM domains"), "t");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT checked_at > '" + first + "' FROM domains"), "t");
  // An older result never overwrites a newer one.
  PgCluster::exec(db, "UPDATE domains SET checked_at = now() + interval '1 day'");
  dctest::run_ok(host, {{"domains", {"fresh.test"}}});
  EXPECT_EQ(PgCluster::query_one(db, "SELECT checked_at > now() FROM domains"), "t");
}

TEST(DomainCheck, DatabaseOutageIsRetryable) {
  json cfg = config("postgresql:///no_such_db?host=/nonexistent");
  jrtest::PluginHost host(dctest::so_path(), cfg);
  jrtest::JobOutcome out = host.run("domain_check", R"({"domains": ["taken.test"]})");
  EXPECT_EQ(out.status, JR_ERR_RETRYABLE);
  EXPECT_NE(out.error.find("domains table"), std::string::npos) << out.error;
}

}  // namespace
