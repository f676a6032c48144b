// A strict parser for the subset of YAML our deployment manifests use, for tests: block
// mappings and sequences indented with spaces, plain / single- / double-quoted scalars, flow
// sequences of scalars, comments. Anything else (tabs, anchors, multi-line scalars, duplicate
// keys, inconsistent indentation) is an error, so a malformed manifest fails the test.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace jrtest {

struct YamlError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One document; integers and true/false become JSON numbers and booleans, the rest strings.
nlohmann::json parse_yaml_lite(const std::string& text);

}  // namespace jrtest
