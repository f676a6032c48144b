#include "scan/src/config.hpp"

#include <sstream>
#include <stdexcept>

namespace scan {

namespace {

int64_t get_int(const nlohmann::json& cfg, const char* key, int64_t def, int64_t min, int64_t max) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return def;
  int64_t v = 0;
  if (it->is_number_integer() || it->is_number_unsigned()) {
    v = it->get<int64_t>();
  } else if (it->is_string()) {  // from an environment variable that was not a number
    try {
      size_t used = 0;
      v = std::stoll(it->get<std::string>(), &used);
      if (used != it->get<std::string>().size()) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument(std::string("scan config: ") + key + " must be an integer");
    }
  } else {
    throw std::invalid_argument(std::string("scan config: ") + key + " must be an integer");
  }
  if (v < min || v > max) {
    throw std::invalid_argument(std::string("scan config: ") + key + " must be in [" +
                                std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

std::string get_str(const nlohmann::json& cfg, const char* key, const std::string& def) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return def;
  if (!it->is_string()) {
    throw std::invalid_argument(std::string("scan config: ") + key + " must be a string");
  }
  return it->get<std::string>();
}

// A list of strings, or one comma-separated string (as an environment variable gives it).
std::vector<std::string> get_list(const nlohmann::json& cfg, const char* key) {
  std::vector<std::string> out;
  auto it = cfg.find(key);
  if (it == cfg.end()) return out;
  if (it->is_string()) {
    std::stringstream ss(it->get<std::string>());
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t b = item.find_first_not_of(" \t");
      size_t e = item.find_last_not_of(" \t");
      if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
    }
    return out;
  }
  if (!it->is_array()) {
    throw std::invalid_argument(std::string("scan config: ") + key + " must be a list of strings");
  }
  for (const auto& e : *it) {
    if (!e.is_string()) {
      throw std::invalid_argument(std::string("scan config: ") + key +
                                  " must be a list of strings");
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace

ScanConfig parse_config(const nlohmann::json& cfg) {
  if (!cfg.is_object()) throw std::invalid_argument("scan config must be a JSON object");
  ScanConfig c;
  c.database_url = get_str(cfg, "database_url", "");
  if (c.database_url.empty()) throw std::invalid_argument("scan config: database_url is required");
  const int64_t kDay = 86400;
  c.fetch.connect_timeout_ms = get_int(cfg, "connect_timeout_ms", 5000, 1, 600000);
  c.fetch.request_timeout_ms = get_int(cfg, "request_timeout_ms", 15000, 1, 600000);
  c.fetch.max_redirects = static_cast<int>(get_int(cfg, "max_redirects", 5, 0, 50));
  c.fetch.max_body_bytes = get_int(cfg, "max_body_bytes", 2 * 1024 * 1024, 1, 1LL << 30);
  c.fetch.user_agent = get_str(cfg, "user_agent", c.fetch.user_agent);
  c.fetch.allow = AllowList::parse(get_list(cfg, "allow_hosts"));
  c.link_check_timeout_ms = get_int(cfg, "link_check_timeout_ms", 5000, 1, 600000);
  c.scan_job_ttl_seconds = get_int(cfg, "scan_job_ttl_seconds", kDay, 1, 3650 * kDay);
  c.report.title_max_chars = static_cast<int>(get_int(cfg, "title_max_chars", 60, 1, 10000));
  c.report.meta_description_max_chars =
      static_cast<int>(get_int(cfg, "meta_description_max_chars", 160, 1, 10000));
  c.report.thin_content_words =
      static_cast<int>(get_int(cfg, "thin_content_words", 300, 0, 1000000));
  c.report.max_keyphrases = static_cast<int>(get_int(cfg, "max_keyphrases", 10, 0, 100));
  c.report.max_link_checks = static_cast<int>(get_int(cfg, "max_link_checks", 10, 0, 100));
  c.db_pool_size = static_cast<int>(get_int(cfg, "db_pool_size", 8, 1, 256));
  return c;
}

}  // namespace scan
