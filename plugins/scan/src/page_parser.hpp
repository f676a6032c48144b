// PARSE step of the scan plugin: turns an HTML document (gumbo) into PageFacts: title, meta
// description, canonical, robots, heading outline, links, images, word count, JSON-LD blocks,
// Open Graph tags, resource count and the visible text used by the keyphrase extractor.
// Pure function over its input; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace scan {

struct Heading {
  int level = 0;  // 1..6
  std::string text;
};

struct Link {
  std::string url;  // absolute
  std::string text;
  bool internal = false;
  bool nofollow = false;
};

struct Image {
  std::string src;  // absolute when resolvable, else as written
  std::string alt;
  bool has_alt = false;  // the attribute is present (alt="" marks a decorative image)
};

struct PageFacts {
  bool has_title = false;
  std::string title;
  bool has_meta_description = false;
  std::string meta_description;
  std::string canonical;  // absolute, "" when none
  std::string robots;     // meta robots content, "" when none
  std::string lang;
  std::vector<Heading> headings;  // document order
  std::vector<Link> links;        // at most kMaxLinks kept
  int64_t links_total = 0, links_internal = 0, links_external = 0, links_nofollow = 0;
  std::vector<Image> images;  // at most kMaxImages kept
  int64_t images_total = 0, images_with_alt = 0, images_without_alt = 0;
  int64_t word_count = 0;
  int64_t text_bytes = 0;      // bytes of visible text (whitespace collapsed)
  int64_t resource_count = 0;  // distinct scripts, stylesheets, images, frames, media
  nlohmann::json json_ld = nlohmann::json::array();  // [{valid, types, data|error}]
  std::map<std::string, std::string> open_graph;     // og:* property -> content
  std::string visible_text;  // block boundaries as newlines; at most kMaxText bytes

  static constexpr size_t kMaxLinks = 1000;
  static constexpr size_t kMaxImages = 500;
  static constexpr size_t kMaxText = 256 * 1024;
};

// Parses `html` fetched from `page_url` (relative URLs resolve against it, or <base href>).
PageFacts parse_page(const std::string& html, const std::string& page_url);

void to_json(nlohmann::json& j, const PageFacts& p);
void from_json(const nlohmann::json& j, PageFacts& p);

}  // namespace scan
