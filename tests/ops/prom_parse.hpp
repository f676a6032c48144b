// A strict parser of the Prometheus text exposition format (0.0.4), for tests: every line is a
// comment, blank, or `name{labels} value`; HELP/TYPE come once per family and before its
// samples; label values use only the \\ \" \n escapes; no series appears twice; histogram
// buckets are cumulative with ascending `le`, end with +Inf, and +Inf equals _count.
#pragma once

#include <map>
#include <stdexcept>
#include <string>

namespace jrtest {

struct PromParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Series key: name{a="x",b="y"} with labels sorted by name -> value. Throws PromParseError.
std::map<std::string, double> parse_prometheus(const std::string& text);

// The value of a series, 0 when absent (counters start at zero).
double prom_value(const std::map<std::string, double>& m, const std::string& key);

}  // namespace jrtest
