// Shared state of the domain_check test binary: one dnsmasq + WHOIS server + odd UDP servers for
// the whole process (started on first use, stopped at exit), and helpers to build plugin configs
// and read job results. Used from the test thread only.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "harness.hpp"
#include "net_servers.hpp"
#include "plugin_host.hpp"

namespace dctest {

// The loopback servers (tests/support/net_servers.hpp), under the names these tests use.
using namespace jrtest::net;
using TestDns = LoopbackDns;
inline int dead_port() { return free_port(); }

struct Env {
  SilentUdp silent;      // upstream for *.slow: never answers
  ServfailUdp servfail;  // upstream for *.sf: SERVFAIL
  int whois_dead_port = dead_port();
  WhoisServer whois{{"parked.test", "held.test"}};
  // Zones: .test with two registered names in it, and two TLDs where every name is NXDOMAIN.
  TestDns dns{{"test", "taken.test", "example.test", "gone", "nowhois"},
              {{"slow", silent.port()}, {"sf", servfail.port()}}};
};

Env& env();

inline std::string so_path() { return jrtest::plugin_dir() + "/libjr_domain_check.so"; }

// A fresh database's role and schema for the plugin (what a runner hands it): the plugin's
// config and the test's own queries of the domains table both use this URL.
inline std::string plugin_db(const std::string& prefix) {
  return jrtest::plugin_database(jrtest::PgCluster::get().create_database(prefix), "domain_check")
      .url;
}

// A config pointing at the shared fixtures: .test -> the WHOIS server, .gone -> a dead port.
inline nlohmann::json config(const std::string& db_url) {
  return {{"database_url", db_url},
          {"dns_server", "127.0.0.1"},
          {"dns_port", env().dns.port()},
          {"dns_timeout", 1.0},
          {"whois_timeout", 1.0},
          {"whois_servers",
           {{"test", "127.0.0.1:" + std::to_string(env().whois.port())},
            {"gone", "127.0.0.1:" + std::to_string(env().whois_dead_port)}}}};
}

// The result entry for `input` in a job result document (fails the test when absent).
inline nlohmann::json entry(const nlohmann::json& result, const std::string& input) {
  for (const auto& d : result.at("domains")) {
    if (d.at("input") == input) return d;
  }
  ADD_FAILURE() << "no result for " << input << " in " << result.dump();
  return nlohmann::json::object();
}

// Runs one job and returns the parsed result (asserting success).
nlohmann::json run_ok(jrtest::PluginHost& host, const nlohmann::json& payload);

}  // namespace dctest
