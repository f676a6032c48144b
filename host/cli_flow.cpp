// Flow-control subcommands: queue pause|resume|ls, limit set|ls|rm, cron ls.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "cli_common.hpp"

namespace jr::cli {

int cmd_queue(const GlobalFlags& g, const std::string& action, const std::string& queue) {
  auto store = open_store(build_config(g));
  if (action == "pause") {
    store->QueuePause(queue);
    std::cout << "queue " << queue << " paused: no runner claims from it until resumed\n";
  } else if (action == "resume") {
    bool was = store->QueueResume(queue);
    std::cout << "queue " << queue << (was ? " resumed\n" : " was not paused\n");
  } else {
    for (const auto& q : store->QueuePaused()) std::cout << q << "  paused\n";
  }
  return kExitOk;
}

int cmd_limit(const GlobalFlags& g, const LimitFlags& f) {
  if (f.action != "ls") {
    // queue:NAME, kind:NAME, a rate key (tenant:42) or a default for rate keys (tenant:*).
    bool named = f.key.rfind("queue:", 0) == 0 || f.key.rfind("kind:", 0) == 0;
    size_t star = f.key.find('*');
    bool ok = f.key.size() > (named ? f.key.find(':') + 1 : 0) && f.key.size() <= 1024 &&
              (star == std::string::npos || (!named && star == f.key.size() - 1));
    for (char c : f.key) ok = ok && static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
    if (!ok) {
      std::cerr << "runner limit: --key must be queue:NAME, kind:NAME, a rate key (tenant:42) or "
                   "a default for rate keys ending in * (tenant:*), got '"
                << f.key << "'\n";
      return kExitUsage;
    }
  }
  auto store = open_store(build_config(g));
  if (f.action == "set") {
    if (f.rate <= 0) {
      std::cerr << "runner limit set: --rate must be positive\n";
      return kExitUsage;
    }
    double burst = f.burst > 0 ? f.burst : std::max(1.0, f.rate);
    store->RateLimitSet(f.key, f.rate, burst);
    std::cout << "limit " << f.key << ": " << f.rate << " jobs/s, burst " << burst << "\n";
  } else if (f.action == "rm") {
    if (!store->RateLimitRemove(f.key)) {
      std::cerr << "runner limit rm: no limit on " << f.key << "\n";
      return kExitNotFound;
    }
    std::cout << "limit " << f.key << " removed\n";
  } else {
    auto arr = nlohmann::json::parse(store->RateLimitList());
    if (f.json) {
      std::cout << arr.dump(2) << "\n";
    } else {
      std::printf("%-32s %10s %8s %8s\n", "KEY", "RATE/S", "BURST", "TOKENS");
      for (const auto& l : arr) {
        std::printf("%-32s %10.3f %8.1f %8.1f\n", l["key"].get<std::string>().c_str(),
                    l["rate"].get<double>(), l["burst"].get<double>(), l["tokens"].get<double>());
      }
    }
  }
  return kExitOk;
}

int cmd_cron_ls(const GlobalFlags& g, bool json) {
  auto store = open_store(build_config(g));
  auto arr = nlohmann::json::parse(store->CronList());
  if (json) {
    std::cout << arr.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-28s %-16s %-10s %-24s %-34s %s\n", "NAME", "SCHEDULE", "TIMEZONE", "KIND",
              "NEXT RUN", "LAST RUN");
  for (const auto& c : arr) {
    auto s = [&](const char* k) {
      return c[k].is_null() ? std::string("-")
                            : (c[k].is_string() ? c[k].get<std::string>() : c[k].dump());
    };
    std::printf("%-28s %-16s %-10s %-24s %-34s %s\n", s("name").c_str(), s("schedule").c_str(),
                s("timezone").c_str(), s("kind").c_str(), s("next_run_at").c_str(),
                s("last_run_at").c_str());
  }
  return kExitOk;
}

}  // namespace jr::cli
