#include "service.hpp"

#include <stdexcept>
#include <string>

namespace jr::service_check {

namespace {
[[noreturn]] void refuse(std::string_view service, std::string_view setting, const char* rule,
                         double v) {
  throw std::invalid_argument("maintenance service " + std::string(service) + ": " +
                              std::string(setting) + " must be " + rule + " (got " +
                              std::to_string(v) + ")");
}
}  // namespace

// Written so that NaN fails both.
void positive(std::string_view service, std::string_view setting, double v) {
  if (!(v > 0)) refuse(service, setting, "> 0", v);
}

void non_negative(std::string_view service, std::string_view setting, double v) {
  if (!(v >= 0)) refuse(service, setting, ">= 0", v);
}

}  // namespace jr::service_check
