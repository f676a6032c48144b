// Shared helpers of the ops end-to-end tests: a runner with its HTTP server on a free loopback
// port (bound to port 0; the port is read from the runner's "http server listening" log line),
// an HTTP client for it, and a scrape of /metrics through the strict parser.
#pragma once

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "prom_parse.hpp"
#include "runner_fixture.hpp"

namespace jrtest {

struct HttpRunner {
  std::unique_ptr<RunnerProcess> proc;
  int port = 0;
  std::unique_ptr<httplib::Client> client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(10, 0);
    c->set_connection_timeout(5, 0);
    return c;
  }
};

// Starts `runner --plugins dir --http 127.0.0.1:0 ...extra` and waits for its HTTP port.
inline HttpRunner start_http_runner(const std::string& plugins,
                                    const std::map<std::string, std::string>& env,
                                    std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--plugins",   plugins,           "--http",
                                   "127.0.0.1:0", "--poll-interval", "200ms"};
  args.insert(args.end(), extra.begin(), extra.end());
  HttpRunner r;
  r.proc = std::make_unique<RunnerProcess>(args, env);
  static const std::regex port_re(R"re("msg":"http server listening".*"port":(\d+))re");
  wait_until(
      [&] {
        std::smatch m;
        std::string log = r.proc->log();
        if (std::regex_search(log, m, port_re)) r.port = std::stoi(m[1].str());
        return r.port > 0 || !r.proc->alive();
      },
      std::chrono::seconds(30));
  EXPECT_GT(r.port, 0) << r.proc->log();
  return r;
}

inline std::map<std::string, double> scrape(const HttpRunner& r) {
  auto res = r.client()->Get("/metrics");
  if (!res || res->status != 200) {
    ADD_FAILURE() << "GET /metrics failed";
    return {};
  }
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  try {
    return parse_prometheus(res->body);
  } catch (const PromParseError& e) {
    ADD_FAILURE() << "invalid exposition: " << e.what() << "\n" << res->body;
    return {};
  }
}

}  // namespace jrtest
