// The dashboard's files, compiled in by host/ops/ui/embed.cmake (no file is read at run time).
#include <cstring>
#include <string>
#include <vector>

#include "ui_api.hpp"

namespace jr::ops {
namespace {

struct Entry {
  const char* path;
  const char* type;
  const char* body;
};

const Entry kEntries[] = {
#include "jr_ui_assets.inc"
};

}  // namespace

const UiAsset* find_ui_asset(const std::string& path) {
  static const auto assets = [] {
    std::vector<UiAsset> v;
    for (const auto& e : kEntries) v.push_back({e.path, e.type, e.body, std::strlen(e.body)});
    return v;
  }();
  for (const auto& a : assets) {
    if (path == a.path) return &a;
  }
  return nullptr;
}

}  // namespace jr::ops
