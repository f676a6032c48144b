// Flow-control subcommands: queue pause|resume|ls, limit set|ls|rm|set-field|rm-field|fields,
// cron ls.
#include <cctype>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_commands.hpp"
#include "cli_common.hpp"
#include "cli_registry.hpp"

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

namespace {

// Rate keys from a payload field (migration 20). The rules are the table's CHECKs, said here
// with the flag's name before the database is asked.
int limit_field(const GlobalFlags& g, const LimitFlags& f) {
  auto printable = [](const std::string& s) {
    for (char c : s) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    }
    return true;
  };
  if (f.action != "fields" && (f.kind.empty() || f.kind.size() > 1024 || !printable(f.kind))) {
    std::cerr << "runner limit " << f.action
              << ": --kind must be 1 to 1024 bytes without control characters\n";
    return kExitUsage;
  }
  if (f.action == "set-field") {
    std::vector<std::string> parts(1);  // the names of the path, empty ones kept
    for (char c : f.field) {
      if (c == '.') {
        parts.emplace_back();
      } else {
        parts.back() += c;
      }
    }
    bool ok = !f.field.empty() && parts.size() <= 8 && printable(f.field);
    for (const auto& p : parts) ok = ok && !p.empty() && p.size() <= 256;
    if (!ok) {
      std::cerr << "runner limit set-field: --field must be a payload field name, or a path of "
                   "up to 8 names joined by dots (customer.id), each 1 to 256 bytes without "
                   "control characters, got '"
                << f.field << "'\n";
      return kExitUsage;
    }
    std::string prefix = f.prefix.empty() ? parts.back() : f.prefix;
    ok = !prefix.empty() && prefix.size() <= 128 && prefix != "queue" && prefix != "kind";
    for (char c : prefix)
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
    if (!ok) {
      std::cerr << "runner limit set-field: the key prefix '" << prefix
                << "' must be 1 to 128 letters, digits, _ . or -, and not queue or kind"
                << (f.prefix.empty() ? " (it defaults to the field's name: give --prefix)" : "")
                << "\n";
      return kExitUsage;
    }
    open_store(build_config(g))->RateKeyFieldSet(f.kind, f.field, prefix);
    std::cout << "jobs of kind " << f.kind << " enqueued without a rate key get " << prefix
              << ":<payload field " << f.field << ">\n";
    return kExitOk;
  }
  auto store = open_store(build_config(g));
  if (f.action == "rm-field") {
    if (!store->RateKeyFieldRemove(f.kind)) {
      std::cerr << "runner limit rm-field: no rate key field is set for kind " << f.kind << "\n";
      return kExitNotFound;
    }
    std::cout << "kind " << f.kind << ": rate keys are no longer taken from the payload\n";
    return kExitOk;
  }
  auto arr = nlohmann::json::parse(store->RateKeyFieldList());
  if (f.json) {
    std::cout << arr.dump(2) << "\n";
  } else {
    std::printf("%-32s %-32s %s\n", "KIND", "FIELD", "PREFIX");
    for (const auto& r : arr) {
      std::printf("%-32s %-32s %s\n", r["kind"].get<std::string>().c_str(),
                  r["field"].get<std::string>().c_str(), r["prefix"].get<std::string>().c_str());
    }
  }
  return kExitOk;
}

}  // namespace

int cmd_limit(const GlobalFlags& g, const LimitFlags& f) {
  if (f.action == "set-field" || f.action == "rm-field" || f.action == "fields") {
    return limit_field(g, f);
  }
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

void register_flow(CLI::App& app, Context& ctx) {
  struct QueueFlags {
    std::string action, name;
  };
  auto qf = std::make_shared<QueueFlags>();
  auto* queue = app.add_subcommand("queue", "pause or resume a queue for every runner");
  queue->fallthrough();
  queue->require_subcommand(1);
  for (const char* a : {"pause", "resume"}) {
    auto* sc = queue->add_subcommand(a, std::string(a) + " a queue");
    sc->fallthrough();
    sc->add_option("queue", qf->name, "queue name")->required();
    sc->callback([qf, a] { qf->action = a; });
  }
  queue->add_subcommand("ls", "list paused queues")->fallthrough()->callback([qf] {
    qf->action = "ls";
  });
  on_parsed(queue, ctx, [&ctx, qf] { return cmd_queue(ctx.g, qf->action, qf->name); });

  auto lf = std::make_shared<LimitFlags>();
  auto* limit = app.add_subcommand("limit", "rate limits enforced at claim time");
  limit->fallthrough();
  limit->require_subcommand(1);
  auto* limit_set = limit->add_subcommand("set", "set a token bucket");
  limit_set->fallthrough();
  limit_set
      ->add_option("--key", lf->key,
                   "queue:NAME, kind:NAME, a rate key (tenant:42) or a default for every "
                   "rate key with a prefix (tenant:*)")
      ->required();
  limit_set->add_option("--rate", lf->rate, "jobs per second")->required();
  limit_set->add_option("--burst", lf->burst, "bucket size (default: max(1, rate))");
  auto* limit_ls = limit->add_subcommand("ls", "list limits");
  limit_ls->fallthrough();
  limit_ls->add_flag("--json", lf->json, "print JSON");
  auto* limit_rm = limit->add_subcommand("rm", "remove a limit");
  limit_rm->fallthrough();
  limit_rm->add_option("--key", lf->key, "queue:NAME, kind:NAME, a rate key or a pattern")
      ->required();
  auto* limit_set_field = limit->add_subcommand(
      "set-field", "give jobs of a kind the rate key PREFIX:<value of a payload field>");
  limit_set_field->fallthrough();
  limit_set_field->add_option("--kind", lf->kind, "the job kind")->required();
  limit_set_field
      ->add_option("--field", lf->field,
                   "the payload field: a top-level name, or a path with dots (customer.id)")
      ->required();
  limit_set_field->add_option(
      "--prefix", lf->prefix,
      "the key's prefix, letters, digits, _ . - (default: the field's last name)");
  auto* limit_rm_field =
      limit->add_subcommand("rm-field", "stop deriving rate keys for a kind's jobs");
  limit_rm_field->fallthrough();
  limit_rm_field->add_option("--kind", lf->kind, "the job kind")->required();
  auto* limit_fields = limit->add_subcommand("fields", "list the kinds whose rate key is a field");
  limit_fields->fallthrough();
  limit_fields->add_flag("--json", lf->json, "print JSON");
  for (auto* sc : {limit_set, limit_ls, limit_rm, limit_set_field, limit_rm_field, limit_fields}) {
    std::string name = sc->get_name();
    sc->callback([lf, name] { lf->action = name; });
  }
  on_parsed(limit, ctx, [&ctx, lf] { return cmd_limit(ctx.g, *lf); });

  auto cron_json = std::make_shared<bool>(false);
  auto* cron = app.add_subcommand("cron", "periodic jobs");
  cron->fallthrough();
  cron->require_subcommand(1);
  auto* cron_ls = cron->add_subcommand("ls", "list periodic jobs with their next run times");
  cron_ls->fallthrough();
  cron_ls->add_flag("--json", *cron_json, "print JSON");
  on_parsed(cron_ls, ctx, [&ctx, cron_json] { return cmd_cron_ls(ctx.g, *cron_json); });
}

}  // namespace jr::cli
