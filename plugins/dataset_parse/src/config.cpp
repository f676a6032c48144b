#include "dataset_parse/src/config.hpp"

namespace dataset_parse {

namespace {

int64_t get_int(const nlohmann::json& j, const char* key, int64_t def, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end()) return def;
  int64_t v = 0;
  if (it->is_number_integer() || it->is_number_unsigned()) {
    v = it->get<int64_t>();
  } else if (it->is_string()) {
    try {
      size_t pos = 0;
      v = std::stoll(it->get<std::string>(), &pos);
      if (pos != it->get<std::string>().size()) throw std::invalid_argument("trailing text");
    } catch (const std::exception&) {
      throw ConfigError(std::string(key) + ": must be an integer, got " + it->dump());
    }
  } else {
    throw ConfigError(std::string(key) + ": must be an integer, got " + it->dump());
  }
  if (v < lo || v > hi) {
    throw ConfigError(std::string(key) + ": " + std::to_string(v) + " is out of range [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

double get_double(const nlohmann::json& j, const char* key, double def, double lo, double hi) {
  auto it = j.find(key);
  if (it == j.end()) return def;
  if (!it->is_number()) {
    throw ConfigError(std::string(key) + ": must be a number, got " + it->dump());
  }
  double v = it->get<double>();
  if (!(v >= lo && v <= hi)) {
    throw ConfigError(std::string(key) + ": " + it->dump() + " is out of range [" +
                      std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return v;
}

std::string get_string(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) throw ConfigError(std::string(key) + ": must be a string");
  return it->get<std::string>();
}

}  // namespace

Config parse_config(const nlohmann::json& j) {
  if (!j.is_object()) throw ConfigError("the plugin config must be a JSON object");
  Config c;
  c.storage_root = get_string(j, "storage_root");
  c.database_url = get_string(j, "database_url");
  c.batch_size = get_int(j, "batch_size", c.batch_size, 1, 10'000'000);
  c.max_bad_line_ratio = get_double(j, "max_bad_line_ratio", c.max_bad_line_ratio, 0.0, 1.0);
  c.read_buffer_bytes = get_int(j, "read_buffer_bytes", c.read_buffer_bytes, 4096, 64 << 20);
  c.test_fail_after_rows = get_int(j, "test_fail_after_rows", 0, 0, INT64_MAX);
  if (c.database_url.empty()) {
    throw ConfigError("database_url: not set (the runner normally provides its own)");
  }
  return c;
}

}  // namespace dataset_parse
