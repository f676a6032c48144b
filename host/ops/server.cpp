#include "server.hpp"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "job_options.hpp"
#include "log.hpp"
#include "ui_api.hpp"
#include "ui_store.hpp"
#include "workflow.hpp"

namespace jr::ops {

std::pair<std::string, int> parse_listen_address(const std::string& text) {
  std::string host = "127.0.0.1";
  std::string port = text;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      throw std::invalid_argument("bad HTTP address '" + text + "' (expected [ADDR]:PORT)");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else if (auto colon = text.rfind(':'); colon != std::string::npos) {
    if (colon > 0) host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  size_t pos = 0;
  int p = -1;
  try {
    p = std::stoi(port, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (port.empty() || pos != port.size() || p < 0 || p > 65535) {
    throw std::invalid_argument("bad HTTP address '" + text +
                                "' (expected PORT or ADDR:PORT, e.g. 9090 or 127.0.0.1:9090)");
  }
  return {host, p};
}

std::unique_ptr<Store> StorePool::take() {
  std::unique_lock<std::mutex> lock(mu_);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    while (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      if (!s->LostWhileIdle()) return s;
      --open_;  // its backend is gone (killed, server restarted): open another
    }
    if (max_open_ == 0 || open_ < max_open_) break;
    if (cv_.wait_until(lock, until) == std::cv_status::timeout && idle_.empty() &&
        open_ >= max_open_) {
      throw StoreError("all " + std::to_string(max_open_) +
                           " database connection(s) of the HTTP server are busy "
                           "(max_connections); try again",
                       true);
    }
  }
  ++open_;
  lock.unlock();
  try {
    return Store::open(url_);
  } catch (...) {
    lock.lock();
    --open_;
    lock.unlock();
    cv_.notify_one();
    throw;
  }
}

void StorePool::give(std::unique_ptr<Store> s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < max_idle_) {
      idle_.push_back(std::move(s));
    } else {
      --open_;
    }
  }
  cv_.notify_one();
}

void StorePool::drop(std::unique_ptr<Store> s) {
  s.reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
  }
  cv_.notify_one();
}

namespace {

void json_reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Text from plugins may hold invalid UTF-8: replaced (U+FFFD), never a failed response.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                  "application/json");
}

void error_reply(httplib::Response& res, int status, const std::string& msg) {
  json_reply(res, status, {{"error", msg}});
}

// The {id} of a path; an id beyond 2^63-1 is a bad request (std::invalid_argument: 400).
int64_t path_id(const httplib::Request& req) { return parse_job_id(req.matches[1].str()); }

// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
bool same(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

}  // namespace

bool authorise_write(const std::string& api_token, const httplib::Request& req,
                     httplib::Response& res) {
  if (api_token.empty()) {
    error_reply(res, 403,
                "state-changing endpoints are disabled: no API token is configured (set "
                "RUNNER_API_TOKEN, or api_token in the config file, and restart the runner)");
    return false;
  }
  std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.rfind(prefix, 0) != 0 || !same(h.substr(prefix.size()), api_token)) {
    res.set_header("WWW-Authenticate", "Bearer");
    error_reply(res, 401,
                h.empty() ? "missing Authorization: Bearer <token> header" : "invalid API token");
    return false;
  }
  if (req.get_header_value("X-Jobrunner-CSRF").empty()) {
    error_reply(res, 403,
                "missing X-Jobrunner-CSRF header: state-changing requests must carry it (any "
                "value), which a page of another site cannot make a browser send");
    return false;
  }
  return true;
}

Server::Server(ServerOptions opts, StorePool& pool, const Registry& registry,
               std::function<Readiness()> ready)
    : opts_(std::move(opts)),
      pool_(pool),
      registry_(registry),
      ready_(std::move(ready)),
      http_(std::make_unique<httplib::Server>()),
      dashboard_(std::make_unique<ui::DashboardDb>(pool.url(), 4, &pool)) {
  routes();
}

Server::~Server() { stop(); }

void Server::start() {
  auto [host, port] = parse_listen_address(opts_.listen);
  host_ = host;
  if (port == 0) {
    port_ = http_->bind_to_any_port(host);
    if (port_ < 0) throw std::runtime_error("cannot bind the HTTP server to " + host + ":0");
  } else {
    if (!http_->bind_to_port(host, port)) {
      throw std::runtime_error("cannot bind the HTTP server to " + opts_.listen +
                               " (address in use, or not an address of this machine)");
    }
    port_ = port;
  }
  listener_done_ = false;
  thread_ = std::thread([this] {
    http_->listen_after_bind();
    listener_done_ = true;
  });
  // httplib's stop() only acts on a server that is already listening: a stop that came before
  // the thread reached its accept loop was lost, and join() in stop() waited for ever (a runner
  // stopped during start-up never exited). Return only once the loop runs (or ended).
  while (!http_->is_running() && !listener_done_) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  log::info("http server listening",
            {{"address", host_}, {"port", port_}, {"api_writes", !opts_.api_token.empty()}});
}

void Server::stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void Server::routes() {
  auto& s = *http_;
  s.set_read_timeout(5, 0);
  s.set_write_timeout(5, 0);
  s.set_payload_max_length(1 << 20);
  s.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        error_reply(res, res.status,
                    res.status == 404 ? "not found" : "HTTP " + std::to_string(res.status));
        return httplib::Server::HandlerResponse::Handled;
      }));
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, const std::exception_ptr& ep) {
        std::string msg = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const StoreError& e) {
          error_reply(res, e.transient() ? 503 : 400, log::redact(e.what()));
          return;
        } catch (const std::invalid_argument& e) {  // bad input found by a handler
          error_reply(res, 400, e.what());
          return;
        } catch (const std::exception& e) {
          msg = e.what();
        }
        error_reply(res, 500, log::redact(msg));
      });

  auto authorised = [this](const httplib::Request& req, httplib::Response& res) {
    return authorise_write(opts_.api_token, req, res);
  };

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry_.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    json_reply(res, 200, {{"status", "ok"}});
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    Readiness r = ready_ ? ready_() : Readiness{};
    if (r.ready) {
      try {
        if (!pool_.with([](Store& st) { return st.Ping(); })) {
          r.ready = false;
          r.reason = "database unreachable";
        }
      } catch (const StoreError& e) {
        r.ready = false;
        r.reason = std::string("database unreachable: ") + log::redact(e.what());
      }
    }
    nlohmann::json body = r.details.is_object() ? r.details : nlohmann::json::object();
    if (r.ready) {
      body["status"] = "ready";
      json_reply(res, 200, body);
    } else {
      body["status"] = "not ready";
      body["reason"] = r.reason;
      json_reply(res, 503, body);
    }
  });

  s.Post("/api/v1/jobs", [this, authorised](const httplib::Request& req, httplib::Response& res) {
    if (!authorised(req, res)) return;
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    if (body.is_discarded()) return error_reply(res, 400, "the request body is not valid JSON");
    // W3C Trace Context: the `traceparent` header is the job option of that name (checked by the
    // same parser: a bad one is a 400 naming it).
    if (req.has_header("traceparent") && body.is_object()) {
      std::string tp = req.get_header_value("traceparent");
      if (body.contains("traceparent") && body["traceparent"] != tp) {
        return error_reply(res, 400,
                           "'traceparent' is given both as a header and in the body, differently");
      }
      body["traceparent"] = tp;
    }
    JobInsertParams p;
    try {
      p = job_from_json(body);
    } catch (const std::invalid_argument& e) {
      return error_reply(res, 400, e.what());
    }
    auto [r, view] = pool_.with([&](Store& st) {
      JobInsertResult ins = st.JobInsertEx(p);
      return std::make_pair(ins, st.JobGet(ins.id));
    });
    nlohmann::json out = {{"id", r.id}, {"inserted", r.inserted}, {"replaced", r.replaced}};
    if (view) {
      auto j = nlohmann::json::parse(view->json);
      for (const char* k : {"kind", "queue", "state", "priority", "run_at"}) {
        if (j.contains(k)) out[k] = j[k];
      }
    }
    json_reply(res, r.inserted ? 201 : 200, out);
  });

  s.Get(R"(/api/v1/jobs/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    int64_t id = path_id(req);
    auto [view, hooks] = pool_.with([&](Store& st) {
      auto v = st.JobGet(id);
      return std::make_pair(v, v ? st.WebhookForJob(id) : std::string("[]"));
    });
    if (!view) return error_reply(res, 404, "no job with id " + std::to_string(id));
    auto j = nlohmann::json::parse(view->json);
    if (j.contains("options") && j["options"].contains("webhook")) {  // may carry a token
      j["options"]["webhook"] = log::redact(j["options"].value("webhook", ""));
    }
    auto wh = nlohmann::json::parse(hooks);
    for (auto& d : wh) d["url"] = log::redact(d.value("url", ""));
    if (!wh.empty()) j["webhook"] = wh;
    json_reply(res, 200, j);
  });

  s.Get("/api/v1/queues", [this](const httplib::Request&, httplib::Response& res) {
    auto [depths, paused] =
        pool_.with([](Store& st) { return std::make_pair(st.QueueDepths(), st.QueuePaused()); });
    nlohmann::json d = nlohmann::json::parse(depths);
    nlohmann::json out = nlohmann::json::object();
    for (const auto& q : paused) {
      if (!d.contains(q)) d[q] = nlohmann::json::object();
    }
    for (auto& [queue, states] : d.items()) {
      nlohmann::json row = {
          {"waiting", 0}, {"scheduled", 0}, {"available", 0}, {"running", 0}, {"retryable", 0}};
      for (auto& [st, n] : states.items()) row[st] = n;
      row["paused"] = std::find(paused.begin(), paused.end(), queue) != paused.end();
      out[queue] = row;
    }
    json_reply(res, 200, {{"queues", out}});
  });

  s.Post(R"(/api/v1/jobs/(\d+)/retry)",
         [this, authorised](const httplib::Request& req, httplib::Response& res) {
           if (!authorised(req, res)) return;
           int64_t id = path_id(req);
           auto [ok, view] = pool_.with([&](Store& st) {
             bool r = st.JobRetry(id);
             return std::make_pair(r, r ? std::optional<JobView>() : st.JobGet(id));
           });
           if (ok) return json_reply(res, 200, {{"id", id}, {"state", "available"}});
           if (!view) return error_reply(res, 404, "no job with id " + std::to_string(id));
           std::string state = nlohmann::json::parse(view->json).value("state", "?");
           error_reply(res, 409,
                       "job " + std::to_string(id) + " is " + state +
                           "; only dead-lettered, cancelled, scheduled or retryable jobs can be "
                           "retried");
         });

  s.Post(R"(/api/v1/jobs/(\d+)/cancel)", [this, authorised](const httplib::Request& req,
                                                            httplib::Response& res) {
    if (!authorised(req, res)) return;
    int64_t id = path_id(req);
    CancelResult r = pool_.with([&](Store& st) { return st.JobCancel(id); });
    switch (r) {
      case CancelResult::cancelled:
        return json_reply(res, 200, {{"id", id}, {"state", "cancelled"}});
      case CancelResult::requested:
        return json_reply(res, 202, {{"id", id}, {"state", "running"}, {"cancel_requested", true}});
      case CancelResult::already_finished:
        return error_reply(res, 409, "job " + std::to_string(id) + " has already finished");
      case CancelResult::not_found:
        break;
    }
    error_reply(res, 404, "no job with id " + std::to_string(id));
  });

  // Batches (docs/job-model.md "Batches"). The request is checked by the one job-options
  // parser (kind, options, every payload, each callback) before jr_batch_enqueue(), which holds
  // the batch rules (an empty batch, options a member cannot have).
  s.Post("/api/v1/batches",
         [this, authorised](const httplib::Request& req, httplib::Response& res) {
           if (!authorised(req, res)) return;
           nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
           if (body.is_discarded())
             return error_reply(res, 400, "the request body is not valid JSON");
           try {
             check_batch_request(body);
             auto spec = [&](const char* k) {
               return body.contains(k) ? body[k].dump() : std::string("null");
             };
             std::string doc = pool_.with([&](Store& st) {
               return st.BatchEnqueue(body["kind"].get<std::string>(), body["payloads"].dump(),
                                      body.value("options", nlohmann::json::object()).dump(),
                                      spec("on_complete"), spec("on_failure"));
             });
             json_reply(res, 201, nlohmann::json::parse(doc));
           } catch (const std::invalid_argument& e) {
             error_reply(res, 400, e.what());
           }
         });

  s.Get(R"(/api/v1/batches/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    int64_t id = path_id(req);
    auto doc = pool_.with([&](Store& st) { return st.BatchStatus(id); });
    if (!doc) return error_reply(res, 404, "no batch with id " + std::to_string(id));
    json_reply(res, 200, nlohmann::json::parse(*doc));
  });

  // Workflows (docs/job-model.md "Workflows"): checked before the database, as the CLI does.
  s.Post("/api/v1/workflows",
         [this, authorised](const httplib::Request& req, httplib::Response& res) {
           if (!authorised(req, res)) return;
           nlohmann::json doc = nlohmann::json::parse(req.body, nullptr, false);
           if (doc.is_discarded())
             return error_reply(res, 400, "the request body is not valid JSON");
           try {
             check_workflow(doc);
           } catch (const WorkflowError& e) {
             return error_reply(res, 400, e.what());
           }
           std::string out;
           try {
             out = pool_.with([&](Store& st) { return st.WorkflowEnqueue(doc.dump()); });
           } catch (const StoreError& e) {
             if (e.transient()) throw;
             return error_reply(res, 400, log::redact(e.what()));  // a step the database refused
           }
           json_reply(res, 201, nlohmann::json::parse(out));
         });
  s.Get(R"(/api/v1/workflows/(\d+))", [this](const httplib::Request& req, httplib::Response& res) {
    int64_t id = path_id(req);
    auto w = pool_.with([&](Store& st) { return st.WorkflowStatus(id); });
    if (!w) return error_reply(res, 404, "no workflow with id " + std::to_string(id));
    json_reply(res, 200, nlohmann::json::parse(*w));
  });
  // A page of a job's parents' results: ?offset=N (default 0), ?max_bytes=M (1024 to 4 MiB).
  s.Get(R"(/api/v1/jobs/(\d+)/parent_results)", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
    int64_t id = path_id(req);
    auto number = [&](const char* name, int64_t dflt, int64_t lo, int64_t hi) {
      if (!req.has_param(name)) return dflt;
      std::string v = req.get_param_value(name);
      int64_t n = -1;
      if (!v.empty() && v.size() <= 12 && v.find_first_not_of("0123456789") == std::string::npos) {
        n = std::stoll(v);
      }
      if (n < lo || n > hi) {
        throw std::invalid_argument("'" + std::string(name) + "' must be an integer from " +
                                    std::to_string(lo) + " to " + std::to_string(hi));
      }
      return n;
    };
    int64_t offset = number("offset", 0, 0, static_cast<int64_t>(kMaxWorkflowSteps) + 1);
    int64_t max_bytes = number("max_bytes", kParentResultsPageBytes, 1024, kParentResultsPageBytes);
    auto page = pool_.with([&](Store& st) {
      return st.JobParentResults(id, offset, max_bytes, kParentResultsPageCount);
    });
    if (!page) return error_reply(res, 404, "no job with id " + std::to_string(id));
    res.status = 200;
    res.set_content(*page, "application/json");
  });

  // The web dashboard: /ui and its JSON endpoints (host/ops/ui_api.cpp).
  set_security_headers(s);
  DashboardOptions d;
  d.api_token = opts_.api_token;
  d.live_seconds = opts_.live_seconds;
  d.dashboard_only = opts_.dashboard_only;
  register_dashboard(s, d, *dashboard_, pool_);
}
}  // namespace jr::ops
