#include <cctype>
#include <stdexcept>

#include "dataset_parse/src/parsers.hpp"

namespace dataset_parse {

namespace {
std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

void Registry::add(std::unique_ptr<Parser> parser) {
  std::string key = upper(parser->country());
  if (parsers_.count(key)) {
    throw std::invalid_argument("a parser for country '" + key + "' is already registered");
  }
  parsers_.emplace(std::move(key), std::move(parser));
}

const Parser* Registry::find(std::string_view country_code) const {
  auto it = parsers_.find(upper(country_code));
  return it == parsers_.end() ? nullptr : it->second.get();
}

std::vector<std::string> Registry::countries() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : parsers_) out.push_back(k);
  return out;
}

const Registry& Registry::builtin() {
  static const Registry* r = [] {
    auto* reg = new Registry();  // immutable, lives for the process
    reg->add(make_us_ssa_parser());
    reg->add(make_fr_insee_parser());
    return reg;
  }();
  return *r;
}

}  // namespace dataset_parse
