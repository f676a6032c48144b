#include "fixture_server.hpp"

#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace scantest {

namespace {

const char* const kParagraph =
    "Acme builds durable garden tools for home gardeners who want steel that lasts. Every "
    "steel trowel is forged, tempered and tested before it leaves the workshop, and every "
    "garden fork carries a lifetime warranty. Home gardeners tell us that durable garden tools "
    "save money over the years, because a forged steel trowel never bends in clay soil. ";

}  // namespace

std::string FixtureServer::good_page(const std::string& base) {
  std::string body;
  for (int i = 0; i < 6; ++i) body += std::string("<p>") + kParagraph + "</p>\n";
  return R"HTML(<!DOCTYPE html><html lang="en"><head>
<title>Acme Widgets: Durable Garden Tools</title>
<meta name="description" content="Acme builds durable garden tools and widgets for home gardeners.">
<link rel="canonical" href="/good">
<meta name="robots" content="index, follow">
<meta property="og:title" content="Acme Widgets">
<meta property="og:type" content="website">
<link rel="stylesheet" href="/style.css">
<script type="application/ld+json">{"@context":"https://schema.org","@type":"Organization","name":"Acme"}</script>
<script src="/app.js"></script>
<style>body { color: black; }</style>
</head><body>
<h1>Durable garden tools</h1>
<h2>Why gardeners choose Acme</h2>
)HTML" + body +
         R"HTML(<h2>Our widgets</h2><h3>Steel trowel</h3>
<img src="/img/trowel.png" alt="Steel trowel">
<p><a href="/about">About us</a> <a href=")HTML" +
         base + R"HTML(/about#team">Team</a>
<a href="https://example.org/partner" rel="nofollow sponsored">Partner</a>
<a href="mailto:hello@example.org">Mail</a> <a href="javascript:void(0)">Menu</a> <a href="#top">Top</a></p>
</body></html>)HTML";
}

std::string FixtureServer::bad_page() {
  return R"(<html><head><script type="application/ld+json">{not json</script></head><body>
<h1>One</h1><h1>Two</h1>
<img src="/a.png"><img src="/b.png" alt="">
<p>Short text here.</p>
<a href="/missing">gone</a> <a href="/about">about</a>
</body></html>)";
}

std::string FixtureServer::staged_page() {
  std::string body;
  for (int i = 0; i < 6; ++i) body += std::string("<p>") + kParagraph + "</p>\n";
  return "<!DOCTYPE html><html lang=\"en\"><head><title>Staged scan page</title></head><body>"
         "<h1>Staged</h1>\n" +
         body +
         "<p><a href=\"/slow-link/1\">one</a> <a href=\"/slow-link/2\">two</a> "
         "<a href=\"/slow-link/3\">three</a></p></body></html>";
}

void FixtureServer::pause(std::chrono::milliseconds d) const {
  auto until = std::chrono::steady_clock::now() + d;
  while (!stopping_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void FixtureServer::record(const std::string& path, const std::string& host, const std::string& ua,
                           const std::string& method) {
  std::lock_guard<std::mutex> lock(mu_);
  hits_[path]++;
  hosts_[path] = host;
  agents_[path] = ua;
  methods_[path] = method;
}

int FixtureServer::hits(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hits_.find(path);
  return it == hits_.end() ? 0 : it->second;
}
std::string FixtureServer::last_host(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hosts_.find(path);
  return it == hosts_.end() ? "" : it->second;
}
std::string FixtureServer::last_user_agent(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find(path);
  return it == agents_.end() ? "" : it->second;
}
std::string FixtureServer::last_method(const std::string& path) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = methods_.find(path);
  return it == methods_.end() ? "" : it->second;
}

FixtureServer::FixtureServer() : server_(std::make_unique<httplib::Server>()) {
  httplib::Server& s = *server_;
  // Recorded before the handler runs, so a client that got its answer sees the hit counted.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response&) {
    record(req.path, req.get_header_value("Host"), req.get_header_value("User-Agent"), req.method);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const std::string html = "text/html; charset=utf-8";
  s.Get("/good", [this, html](const httplib::Request&, httplib::Response& res) {
    res.set_content(good_page(base()), html.c_str());
  });
  s.Get("/bad", [html](const httplib::Request&, httplib::Response& res) {
    res.set_content(bad_page(), html.c_str());
  });
  s.Get("/about", [html](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html><head><title>About</title></head><body>About</body></html>",
                    html.c_str());
  });
  s.Get("/missing", [html](const httplib::Request&, httplib::Response& res) {
    res.status = 404;
    res.set_content("<html><body>not found</body></html>", html.c_str());
  });
  s.Get("/error500", [html](const httplib::Request&, httplib::Response& res) {
    res.status = 500;
    res.set_content("<html><body>oops</body></html>", html.c_str());
  });
  s.Get("/flaky", [this, html](const httplib::Request&, httplib::Response& res) {
    if (flaky_failing_) {
      res.status = 500;
      res.set_content("down", "text/plain");
    } else {
      res.set_content(good_page(base()), html.c_str());
    }
  });
  // A page that never comes (within a minute; cut short when the server stops): a scan of it
  // runs until the host stops it.
  s.Get("/hang", [this, html](const httplib::Request&, httplib::Response& res) {
    pause(std::chrono::seconds(60));
    res.set_content(good_page(base()), html.c_str());
  });
  s.Get("/recovering", [this, html](const httplib::Request&, httplib::Response& res) {
    if (hits("/recovering") <= recovering_after_) {
      res.status = 503;
      res.set_content("<html><body>try again later</body></html>", html.c_str());
    } else {
      res.set_content(good_page(base()), html.c_str());
    }
  });
  s.Get("/slow", [this, html](const httplib::Request&, httplib::Response& res) {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(6000);
    while (!stopping_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    res.set_content(good_page(base()), html.c_str());
  });
  // A page whose scan takes a few seconds at two visible points: the fetch (2 s) and the
  // three internal link checks after the teaser (0.9 s each), so a poller sees RUNNING/CRAWL and
  // TEASER_READY.
  s.Get("/staged", [this, html](const httplib::Request&, httplib::Response& res) {
    pause(std::chrono::milliseconds(2000));
    res.set_content(staged_page(), html.c_str());
  });
  s.Get(R"(/slow-link/(\d+))", [this, html](const httplib::Request&, httplib::Response& res) {
    // 3 links: a link phase of 7.5 s, long enough for a `runner status` poll to see it on a
    // loaded sanitizer run (one poll took over 4 s there), within link_check_timeout_ms 5000.
    pause(std::chrono::milliseconds(2500));
    res.set_content("<html><head><title>Linked</title></head><body>ok</body></html>", html.c_str());
  });
  // Pages in legacy encodings, declared in each of the places a browser looks (and one
  // declaration nobody knows). The bytes are Latin-1 / windows-1252, not UTF-8.
  auto page = [](const std::string& title, const std::string& heading, const std::string& head) {
    return "<!DOCTYPE html><html><head>" + head + "<title>" + title + "</title></head><body><h1>" +
           heading + "</h1><p>Le menu du jour.</p></body></html>";
  };
  s.Get("/latin1", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page("Caf\xe9 Cr\xe8me",
                         "Cr\xe8me br\xfbl\xe9"
                         "e",
                         ""),
                    "text/html; charset=ISO-8859-1");
  });
  s.Get("/cp1252-meta", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page("Prix\xa0: 5 \x80 \x93sp\xe9"
                         "cial\x94",
                         "\x8cuvre", "<meta charset=\"windows-1252\">"),
                    "text/html");
  });
  s.Get("/latin1-http-equiv", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page("D\xe9j\xe0 vu", "Na\xefve",
                         "<!-- <meta charset=\"koi8-r\"> --><meta http-equiv=\"Content-Type\" "
                         "content=\"text/html; charset=iso-8859-1\">"),
                    "text/html");
  });
  s.Get("/header-wins", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page("Caf\xc3\xa9", "Caf\xc3\xa9", "<meta charset=\"iso-8859-1\">"),
                    "text/html; charset=\"utf-8\"");
  });
  s.Get("/unknown-charset", [page](const httplib::Request&, httplib::Response& res) {
    res.set_content(page("Caf\xe9", "Caf\xe9", ""), "text/html; charset=x-klingon");
  });
  s.Get("/huge", [html](const httplib::Request&, httplib::Response& res) {
    std::string body = "<html><body>" + std::string(3 * 1024 * 1024, 'x') + "</body></html>";
    res.set_content(body, html.c_str());
  });
  s.Get("/huge-chunked", [html](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(html.c_str(), [](size_t offset, httplib::DataSink& sink) {
      if (offset >= 3u * 1024 * 1024) {
        sink.done();
        return true;
      }
      std::string chunk(64 * 1024, 'y');
      return sink.write(chunk.data(), chunk.size());
    });
  });
  s.Get("/empty", [html](const httplib::Request&, httplib::Response& res) {
    res.set_content("", html.c_str());
  });
  s.Get("/data.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"hello": "world"})", "application/json");
  });
  s.Get("/no-type", [](const httplib::Request&, httplib::Response& res) {
    res.body = "<html></html>";  // no Content-Type header at all
  });
  s.Get(R"(/redirect/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    int n = std::stoi(req.matches[1]);
    res.status = 302;
    res.set_header("Location", n > 0 ? "/redirect/" + std::to_string(n - 1) : "/good");
  });
  auto redirect_to = [](std::string target) {
    return [target](const httplib::Request&, httplib::Response& res) {
      res.status = 302;
      res.set_header("Location", target);
    };
  };
  s.Get("/to-private", redirect_to("http://10.0.0.1/admin"));
  s.Get("/to-metadata", redirect_to("http://169.254.169.254/latest/meta-data/"));
  s.Get("/to-metadata-v6", redirect_to("http://[fd00:ec2::254]/latest/meta-data/"));
  s.Get("/to-mapped-loopback", redirect_to("http://[::ffff:127.0.0.1]/"));
  s.Get("/to-rebind", [this](const httplib::Request&, httplib::Response& res) {
    res.status = 302;
    res.set_header("Location", "http://rebind.test:" + std::to_string(port_) + "/good");
  });
  s.Get("/to-localhost", [this](const httplib::Request&, httplib::Response& res) {
    res.status = 302;
    res.set_header("Location", "http://localhost:" + std::to_string(port_) + "/good");
  });
  s.Get("/to-ftp", redirect_to("ftp://127.0.0.1/file"));

  port_ = s.bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("fixture server: bind failed");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  for (int i = 0; i < 500 && !server_->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

FixtureServer::~FixtureServer() {
  stopping_ = true;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

ResetServer::ResetServer() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("reset server: cannot listen");
  }
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++connections_;
      // Wait for the request (up to 2 s), then reset instead of answering.
      pollfd r{c, POLLIN, 0};
      if (::poll(&r, 1, 2000) == 1) {
        char buf[4096];
        (void)::recv(c, buf, sizeof buf, 0);
      }
      linger l{1, 0};
      setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ::close(c);
    }
  });
}

ResetServer::~ResetServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(fd_);
}

}  // namespace scantest
