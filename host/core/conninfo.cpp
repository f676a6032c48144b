#include "conninfo.hpp"

#include <libpq-fe.h>

#include <stdexcept>

namespace jr::dbauth {

std::map<std::string, std::string> parse_conninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!why.empty() && why.back() == '\n') why.pop_back();
    throw std::invalid_argument("cannot parse the database URL: " + why);
  }
  std::map<std::string, std::string> out;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr && *o->val) out[o->keyword] = o->val;
  }
  PQconninfoFree(opts);
  return out;
}

}  // namespace jr::dbauth
