#include "ui_api.hpp"

#include <httplib.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "job_options.hpp"
#include "log.hpp"
#include "server.hpp"
#include "store.hpp"
#include "ui_store.hpp"

#ifndef JR_VERSION
#define JR_VERSION "0.0.0"
#endif

namespace jr::ops {
namespace {

constexpr int kMaxBulk = 10000;  // dead letters per replay or purge request

void reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                  "application/json");
}

void error(httplib::Response& res, int status, const std::string& msg) {
  reply(res, status, {{"error", msg}});
}

// A name-like text (kind, queue, search): at most `max` bytes of valid UTF-8 without control
// characters. Throws std::invalid_argument (400) naming the parameter.
std::string checked_text(const std::string& name, const std::string& v, size_t max) {
  if (v.empty()) throw std::invalid_argument("'" + name + "' must not be empty");
  if (v.size() > max) {
    throw std::invalid_argument("'" + name + "' is longer than " + std::to_string(max) + " bytes");
  }
  for (unsigned char c : v) {
    if (c < 0x20 || c == 0x7f) {
      throw std::invalid_argument("'" + name + "' contains a control character");
    }
  }
  try {
    (void)nlohmann::json(v).dump();  // throws on invalid UTF-8
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument("'" + name + "' is not valid UTF-8");
  }
  return v;
}

std::optional<std::string> param(const httplib::Request& req, const std::string& name,
                                 size_t max = 1024) {
  if (!req.has_param(name.c_str())) return std::nullopt;
  std::string v = req.get_param_value(name.c_str());
  if (v.empty()) return std::nullopt;  // an empty form field: no filter
  return checked_text(name, v, max);
}

std::optional<std::string> time_param(const httplib::Request& req, const std::string& name) {
  auto v = param(req, name, 64);
  if (v && !is_iso8601_time(*v)) {
    throw std::invalid_argument("'" + name + "': '" + *v +
                                "' is not an ISO 8601 time (e.g. 2026-11-24T09:00:00Z)");
  }
  return v;
}

nlohmann::json body_json(const httplib::Request& req) {
  auto j = nlohmann::json::parse(req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw std::invalid_argument("the request body must be a JSON object");
  }
  return j;
}

std::optional<std::string> body_text(const nlohmann::json& j, const std::string& name,
                                     size_t max = 1024) {
  if (!j.contains(name) || j[name].is_null()) return std::nullopt;
  if (!j[name].is_string()) throw std::invalid_argument("'" + name + "' must be a string");
  return checked_text(name, j[name].get<std::string>(), max);
}

// {"ids": [...]} or {"filter": {kind, queue, since, before}, "limit": N}: what a bulk
// dead-letter action applies to. The limit is the count the user confirmed: never more.
DeadLetterFilter bulk_selection(const nlohmann::json& body) {
  DeadLetterFilter f;
  if (body.contains("ids")) {
    const auto& ids = body["ids"];
    if (!ids.is_array() || ids.empty() || ids.size() > kMaxBulk) {
      throw std::invalid_argument("'ids' must be an array of 1 to " + std::to_string(kMaxBulk) +
                                  " job ids");
    }
    for (const auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 1) {
        throw std::invalid_argument("'ids' must hold job ids (integers from 1)");
      }
      f.ids.push_back(id.get<int64_t>());
    }
    f.limit = static_cast<int>(f.ids.size());
    if (body.contains("filter")) throw std::invalid_argument("give 'ids' or 'filter', not both");
    return f;
  }
  if (!body.contains("filter") || !body["filter"].is_object()) {
    throw std::invalid_argument(
        "give 'ids' (the selected dead letters) or 'filter' (kind, queue, since, before) with "
        "'limit' (the count you confirmed)");
  }
  const auto& flt = body["filter"];
  for (auto& [k, v] : flt.items()) {
    if (k != "kind" && k != "queue" && k != "since" && k != "before") {
      throw std::invalid_argument("'filter' has an unknown key '" + k.substr(0, 40) + "'");
    }
  }
  f.kind = body_text(flt, "kind");
  f.queue = body_text(flt, "queue");
  f.since = body_text(flt, "since", 64);
  f.before = body_text(flt, "before", 64);
  for (const auto* t : {&f.since, &f.before}) {
    if (*t && !is_iso8601_time(**t)) throw std::invalid_argument("'" + **t + "' is not ISO 8601");
  }
  if (!body.contains("limit") || !body["limit"].is_number_integer() ||
      body["limit"].get<int64_t>() < 1 || body["limit"].get<int64_t>() > kMaxBulk) {
    throw std::invalid_argument("'limit' (the count you confirmed) must be 1 to " +
                                std::to_string(kMaxBulk));
  }
  f.limit = static_cast<int>(body["limit"].get<int64_t>());
  return f;
}

}  // namespace

void set_security_headers(httplib::Server& http) {
  http.set_default_headers({
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src "
       "'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Cache-Control", "no-store"},
  });
}

void register_dashboard(httplib::Server& s, const DashboardOptions& o, ui::DashboardDb& db,
                        StorePool& pool) {
  using Req = httplib::Request;
  using Res = httplib::Response;
  auto write_ok = [token = o.api_token](const Req& req, Res& res) {
    return authorise_write(token, req, res);
  };

  // ---- the page ----
  s.Get("/ui", [](const Req&, Res& res) { res.set_redirect("/ui/"); });
  s.Get(R"(/ui/([A-Za-z0-9_.-]*))", [](const Req& req, Res& res) {
    std::string name = req.matches[1].str();
    const UiAsset* a = find_ui_asset(name.empty() ? "index.html" : name);
    if (!a) return error(res, 404, "not found");
    res.set_content(a->body, a->size, a->content_type);
  });

  // ---- reads ----
  s.Get("/api/v1/meta", [o](const Req&, Res& res) {
    reply(res, 200,
          {{"version", JR_VERSION},
           {"writes_enabled", !o.api_token.empty()},
           {"dashboard_only", o.dashboard_only},
           {"live_seconds", o.live_seconds},
           {"count_cap", ui::kCountCap},
           {"scan_limit", ui::kScanLimit},
           {"max_bulk", kMaxBulk}});
  });
  s.Get("/api/v1/overview",
        [&db, o](const Req&, Res& res) { reply(res, 200, db.overview(o.live_seconds)); });
  s.Get("/api/v1/jobs", [&db](const Req& req, Res& res) {
    ui::JobFilter f;
    auto state = param(req, "state", 32);
    if (!state) return error(res, 400, "'state' is required (one of the eight job states)");
    f.state = *state;
    f.kind = param(req, "kind");
    f.queue = param(req, "queue");
    f.since = time_param(req, "since");
    f.before = time_param(req, "before");
    f.search = param(req, "q", 200);
    f.cursor = param(req, "cursor", 4096);
    if (auto l = param(req, "limit", 8)) {
      size_t pos = 0;
      int v = 0;
      try {
        v = std::stoi(*l, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != l->size()) throw std::invalid_argument("'limit' must be an integer");
      f.limit = v;
    }
    reply(res, 200, db.jobs(f));
  });
  s.Get(R"(/api/v1/jobs/(\d+)/dependencies)", [&db](const Req& req, Res& res) {
    reply(res, 200, db.dependencies(parse_job_id(req.matches[1].str())));
  });
  s.Get("/api/v1/kinds", [&db](const Req&, Res& res) { reply(res, 200, db.kinds()); });
  s.Get("/api/v1/dlq/count", [&db](const Req& req, Res& res) {
    ui::DeadLetterSelection sel;
    sel.kind = param(req, "kind");
    sel.queue = param(req, "queue");
    sel.since = time_param(req, "since");
    sel.before = time_param(req, "before");
    reply(res, 200, db.dead_letter_count(sel));
  });
  s.Get("/api/v1/limits", [&pool](const Req&, Res& res) {
    reply(res, 200,
          {{"limits",
            nlohmann::json::parse(pool.with([](Store& st) { return st.RateLimitList(); }))}});
  });
  s.Get("/api/v1/locks", [&db](const Req&, Res& res) { reply(res, 200, db.locks()); });
  s.Get("/api/v1/cron", [&db](const Req&, Res& res) { reply(res, 200, db.cron()); });
  s.Get("/api/v1/runners",
        [&db, o](const Req&, Res& res) { reply(res, 200, db.runners(o.live_seconds)); });

  // ---- changes (token + CSRF header) ----
  auto dlq_action = [&pool, write_ok](bool replay) {
    return [&pool, write_ok, replay](const Req& req, Res& res) {
      if (!write_ok(req, res)) return;
      DeadLetterFilter f = bulk_selection(body_json(req));
      if (replay) {
        auto ids = pool.with([&](Store& st) { return st.DeadLetterReplay(f); });
        log::info("dashboard: dead letters replayed", {{"count", ids.size()}});
        reply(res, 200, {{"replayed", ids.size()}, {"ids", ids}});
      } else {
        int n = pool.with([&](Store& st) { return st.DeadLetterPurge(f); });
        log::info("dashboard: dead letters purged", {{"count", n}});
        reply(res, 200, {{"purged", n}});
      }
    };
  };
  s.Post("/api/v1/dlq/replay", dlq_action(true));
  s.Post("/api/v1/dlq/purge", dlq_action(false));

  auto queue_action = [&pool, write_ok](bool pause) {
    return [&pool, write_ok, pause](const Req& req, Res& res) {
      if (!write_ok(req, res)) return;
      auto q = body_text(body_json(req), "queue");
      if (!q) return error(res, 400, "'queue' is required");
      bool changed = true;
      if (pause) {
        pool.with([&](Store& st) { st.QueuePause(*q); });
      } else {
        changed = pool.with([&](Store& st) { return st.QueueResume(*q); });
      }
      log::info(pause ? "dashboard: queue paused" : "dashboard: queue resumed", {{"queue", *q}});
      reply(res, 200, {{"queue", *q}, {"paused", pause}, {"changed", changed}});
    };
  };
  s.Post("/api/v1/queues/pause", queue_action(true));
  s.Post("/api/v1/queues/resume", queue_action(false));

  s.Post("/api/v1/limits", [&pool, write_ok](const Req& req, Res& res) {
    if (!write_ok(req, res)) return;
    auto b = body_json(req);
    auto key = body_text(b, "key");
    if (!key || (key->rfind("queue:", 0) != 0 && key->rfind("kind:", 0) != 0) ||
        key->find(':') + 1 >= key->size()) {
      return error(res, 400, "'key' must be queue:NAME or kind:NAME");
    }
    if (!b.contains("rate") || !b["rate"].is_number() || !(b["rate"].get<double>() > 0) ||
        !std::isfinite(b["rate"].get<double>()) || b["rate"].get<double>() > 1e9) {
      return error(res, 400, "'rate' must be a number of jobs per second above 0 (at most 1e9)");
    }
    double rate = b["rate"].get<double>();
    double burst = std::max(1.0, rate);
    if (b.contains("burst") && !b["burst"].is_null()) {
      if (!b["burst"].is_number() || !(b["burst"].get<double>() >= 1) ||
          !std::isfinite(b["burst"].get<double>()) || b["burst"].get<double>() > 1e9) {
        return error(res, 400, "'burst' must be a number from 1 to 1e9");
      }
      burst = b["burst"].get<double>();
    }
    pool.with([&](Store& st) { st.RateLimitSet(*key, rate, burst); });
    log::info("dashboard: rate limit set", {{"key", *key}, {"rate", rate}, {"burst", burst}});
    reply(res, 200, {{"key", *key}, {"rate", rate}, {"burst", burst}});
  });
  s.Post("/api/v1/limits/remove", [&pool, write_ok](const Req& req, Res& res) {
    if (!write_ok(req, res)) return;
    auto key = body_text(body_json(req), "key");
    if (!key) return error(res, 400, "'key' is required");
    bool removed = pool.with([&](Store& st) { return st.RateLimitRemove(*key); });
    if (!removed) return error(res, 404, "no rate limit with key '" + *key + "'");
    log::info("dashboard: rate limit removed", {{"key", *key}});
    reply(res, 200, {{"key", *key}, {"removed", true}});
  });
}

}  // namespace jr::ops
