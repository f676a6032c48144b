#include "kind_owner.hpp"

#include <signal.h>

#include <algorithm>
#include <ctime>
#include <pqxx/pqxx>

#include "log.hpp"
#include "store.hpp"

namespace jr {
namespace {

std::string short_sha(const std::string& s) { return s.empty() ? "(none)" : s.substr(0, 12); }

}  // namespace

std::vector<KindVerdict> claim_kinds(const std::string& database_url,
                                     const std::vector<KindClaim>& claims_in) {
  std::vector<KindClaim> claims = claims_in;
  // One lock order for every runner.
  std::sort(claims.begin(), claims.end(),
            [](const KindClaim& a, const KindClaim& b) { return a.kind < b.kind; });
  std::vector<KindVerdict> out;
  try {
    pqxx::connection c(database_url);
    pqxx::work tx(c);
    for (const auto& k : claims) {
      KindVerdict v;
      v.kind = k.kind;
      std::string sched;
      for (int s : k.retry_schedule) sched += (sched.empty() ? "" : ",") + std::to_string(s);
      std::string timeout = std::to_string(k.timeout_ms);
      std::string attempts = std::to_string(k.max_attempts);
      sched = "{" + sched + "}";
      auto ins = tx.exec_params(
          "INSERT INTO jr_kinds (kind, plugin, plugin_sha256, default_queue, timeout_ms, "
          "max_attempts, retry_schedule) VALUES ($1, $2, $3, $4, $5, $6, $7) "
          "ON CONFLICT (kind) DO NOTHING RETURNING kind",
          k.kind, k.plugin, k.sha256, k.default_queue.empty() ? nullptr : k.default_queue.c_str(),
          k.timeout_ms > 0 ? timeout.c_str() : nullptr,
          k.max_attempts > 0 ? attempts.c_str() : nullptr,
          k.retry_schedule.empty() ? nullptr : sched.c_str());
      if (!ins.empty()) {
        v.message = "kind recorded as served by this plugin";
        v.level = "info";
        out.push_back(std::move(v));
        continue;
      }
      auto row = tx.exec_params(
          "SELECT plugin, coalesce(plugin_sha256, '') FROM jr_kinds WHERE kind = $1 FOR UPDATE",
          k.kind);
      v.previous_plugin = row[0][0].as<std::string>();
      v.previous_sha256 = row[0][1].as<std::string>();
      if (v.previous_plugin == k.plugin) {
        if (v.previous_sha256 != k.sha256) {
          tx.exec_params(
              "UPDATE jr_kinds SET plugin_sha256 = $2, updated_at = now() WHERE kind = $1", k.kind,
              k.sha256);
          v.message = v.previous_sha256.empty()
                          ? "kind's plugin content recorded"
                          : "plugin upgraded: the kind is now served by new content of the same "
                            "plugin";
          v.level = "info";
        }
      } else if (k.replace) {
        tx.exec_params(
            "UPDATE jr_kinds SET plugin = $2, plugin_sha256 = $3, updated_at = now() "
            "WHERE kind = $1",
            k.kind, k.plugin, k.sha256);
        v.message = "kind taken over from another plugin (replace_kinds = true)";
        v.level = "warn";
      } else {
        v.serve = false;
        v.message = "kind refused: it is recorded as served by plugin '" + v.previous_plugin +
                    "' (sha256 " + short_sha(v.previous_sha256) + "), not by '" + k.plugin +
                    "'; set [plugins." + k.plugin + "] replace_kinds = true to take it over";
        v.level = "error";
      }
      out.push_back(std::move(v));
    }
    tx.commit();
  } catch (const pqxx::broken_connection& e) {
    throw StoreError(std::string("database connection lost: ") + e.what(), true);
  } catch (const pqxx::sql_error& e) {
    throw StoreError(std::string("database error: ") + e.what(), true);
  } catch (const StoreError&) {
    throw;
  } catch (const std::exception& e) {
    throw StoreError(std::string("database error: ") + e.what(), true);
  }
  return out;
}

std::optional<std::vector<KindVerdict>> claim_kinds_at_start(const std::string& database_url,
                                                             const std::vector<KindClaim>& claims) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  for (int delay = 250;; delay = std::min(delay * 2, 30000)) {
    try {
      Store::open(database_url)->SchemaMigrate();
      std::vector<KindVerdict> verdicts = claim_kinds(database_url, claims);
      for (size_t i = 0; i < verdicts.size(); ++i) {
        const auto& v = verdicts[i];
        if (v.message.empty()) continue;
        std::string plugin;
        std::string sha;
        for (const auto& c : claims) {
          if (c.kind == v.kind) {
            plugin = c.plugin;
            sha = c.sha256;
          }
        }
        nlohmann::json f = {{"kind", v.kind},
                            {"plugin", plugin},
                            {"sha256", sha},
                            {"recorded_plugin", v.previous_plugin},
                            {"recorded_sha256", v.previous_sha256}};
        if (v.level == "error") {
          log::error(v.message, f);
        } else if (v.level == "warn") {
          log::warn(v.message, f);
        } else {
          log::info(v.message, f);
        }
      }
      return verdicts;
    } catch (const StoreError& e) {
      log::error("database unreachable at start-up; retrying",
                 {{"error", e.what()}, {"retry_in_ms", delay}});
      timespec ts{delay / 1000, (delay % 1000) * 1000000L};
      int sig = sigtimedwait(&set, nullptr, &ts);
      if (sig == SIGINT || sig == SIGTERM) {
        log::info("signal received while waiting for the database; exiting",
                  {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
        return std::nullopt;
      }
    }
  }
}

}  // namespace jr
