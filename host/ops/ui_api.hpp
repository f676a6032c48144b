// The web dashboard on the runner's HTTP server (and on `runner ui`): the page at /ui (HTML, CSS
// and JavaScript compiled into the binary, host/ops/ui/) and the JSON endpoints it reads and
// writes under /api/v1, usable without the page (docs/operations.md, "Dashboard API").
//
// Security: reads are open (bind loopback, or put the port behind your network policy); every
// change is a POST that needs the API token (authorise_write in server.hpp: Bearer token, and the
// X-Jobrunner-CSRF header the page sets, which a cross-site form cannot send). Every response
// carries a strict Content-Security-Policy (scripts and styles from this origin only, no inline
// script or style, no framing), X-Content-Type-Options: nosniff and no-store caching; JSON is
// encoded with invalid UTF-8 replaced (U+FFFD), and the page inserts every value as text.
//
// Threading: handlers run on httplib's pool; DashboardDb and StorePool are thread-safe.
#pragma once

#include <string>

namespace httplib {
class Server;
}

namespace jr::ops {

class StorePool;
namespace ui {
class DashboardDb;
}

struct DashboardOptions {
  std::string api_token;        // empty: the page is read-only and says why
  double live_seconds = 30;     // runners silent longer are not shown (one lease)
  bool dashboard_only = false;  // `runner ui`: no jobs served by this process
};

// Headers every response of the server carries (set once as the server's default headers).
void set_security_headers(httplib::Server& http);

// Registers /ui and the dashboard's endpoints. `db` and `pool` must outlive the server.
void register_dashboard(httplib::Server& http, const DashboardOptions& opts, ui::DashboardDb& db,
                        StorePool& pool);

// An embedded file of host/ops/ui ("index.html", "app.js", ...); nullptr when there is none.
struct UiAsset {
  const char* path;
  const char* content_type;
  const char* body;
  size_t size;
};
const UiAsset* find_ui_asset(const std::string& path);

}  // namespace jr::ops
