#include "db_budget.hpp"

#include <algorithm>
#include <stdexcept>

namespace jr {

std::string ConnectionPlan::describe() const {
  std::string s = "lease renewal " + std::to_string(heartbeat);
  if (listen_own() > 0) s += ", LISTEN " + std::to_string(listen);
  if (http > 0) s += ", HTTP " + std::to_string(http);
  if (listen_on_claims) {
    s +=
        ", claims+LISTEN " + std::to_string(claims) + ", completions " + std::to_string(completers);
  } else if (!services_own) {
    s += ", claims+completions+services " + std::to_string(claims);
  } else if (completers == 0) {
    s += ", claims+completions " + std::to_string(claims);
  } else {
    s += ", claims " + std::to_string(claims) + ", completions " + std::to_string(completers);
  }
  if (services_own) s += ", services 1";
  s += " = " + std::to_string(total());
  if (budget > 0) s += " of " + std::to_string(budget);
  return s;
}

int default_max_connections(bool http, bool listen) {
  return 1 + (listen ? 1 : 0) + (http ? 1 : 0) + 2;
}

ConnectionPlan plan_connections(int max_connections, bool http, bool listen,
                                bool listen_may_share) {
  ConnectionPlan p;
  p.listen = listen ? 1 : 0;
  p.http = http ? 1 : 0;
  int fixed = p.heartbeat + p.listen + p.http;
  int minimum = fixed + 1;
  int budget = max_connections > 0 ? max_connections : default_max_connections(http, listen);
  p.budget = budget;
  if (max_connections < 0 || budget < minimum) {
    std::string need = "lease renewal needs 1";
    if (listen) need += ", LISTEN 1";
    if (http) need += ", the HTTP server 1";
    need += ", claims, completions and the other services at least 1 together";
    throw std::invalid_argument("max_connections " + std::to_string(max_connections) +
                                " is too small for this runner: " + need + " (at least " +
                                std::to_string(minimum) + "; the default is " +
                                std::to_string(default_max_connections(http, listen)) + ")");
  }
  int rest = budget - fixed;
  p.claims = 1;
  if (listen && listen_may_share && rest >= 2) {
    // Claims+LISTEN, services, and completions on the rest (at most two): the connection
    // LISTEN would have held goes to completions instead. `rest` counted LISTEN's own.
    p.listen_on_claims = true;
    p.services_own = true;
    p.completers = std::min(rest - 1, 2);
    return p;
  }
  p.services_own = rest >= 2;
  p.completers = rest >= 4 ? 2 : rest == 3 ? 1 : 0;
  return p;
}

SharedStore::SharedStore(std::string url, std::string name)
    : url_(std::move(url)), name_(std::move(name)) {}

void SharedStore::close() {
  std::lock_guard<std::mutex> lock(mu_);
  store_.reset();
}

}  // namespace jr
