#include "scan/src/report.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "scan/src/keyphrases.hpp"

namespace scan {

namespace {

int rank(const std::string& severity) {
  if (severity == "error") return 0;
  if (severity == "warning") return 1;
  return 2;
}

// Characters, not bytes: count UTF-8 lead bytes.
int64_t chars(const std::string& s) {
  return std::count_if(s.begin(), s.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

}  // namespace

void to_json(nlohmann::json& j, const Finding& f) {
  j = {{"id", f.id}, {"severity", f.severity}, {"message", f.message}, {"details", f.details}};
}

void sort_findings(std::vector<Finding>& findings) {
  std::stable_sort(findings.begin(), findings.end(), [](const Finding& a, const Finding& b) {
    return rank(a.severity) < rank(b.severity);
  });
}

nlohmann::json analyze_page(const PageFacts& page, const nlohmann::json& crawl,
                            const ReportConfig& cfg) {
  int64_t html_bytes = crawl.value("bytes", int64_t{0});
  double ratio = html_bytes > 0 ? 100.0 * static_cast<double>(page.text_bytes) /
                                      static_cast<double>(html_bytes)
                                : 0.0;
  int64_t hops = crawl.contains("hops") ? static_cast<int64_t>(crawl["hops"].size()) : 1;
  int h1 = static_cast<int>(std::count_if(page.headings.begin(), page.headings.end(),
                                          [](const Heading& h) { return h.level == 1; }));
  nlohmann::json metrics = {{"html_bytes", html_bytes},
                            {"fetch_ms", std::round(crawl.value("fetch_ms", 0.0) * 10) / 10},
                            {"redirects", std::max<int64_t>(0, hops - 1)},
                            {"resource_count", page.resource_count},
                            {"text_bytes", page.text_bytes},
                            {"text_to_html_ratio", std::round(ratio * 100) / 100},  // percent
                            {"word_count", page.word_count},
                            {"headings", page.headings.size()},
                            {"h1_count", h1},
                            {"links",
                             {{"total", page.links_total},
                              {"internal", page.links_internal},
                              {"external", page.links_external},
                              {"nofollow", page.links_nofollow}}},
                            {"images",
                             {{"total", page.images_total},
                              {"with_alt", page.images_with_alt},
                              {"without_alt", page.images_without_alt}}},
                            {"json_ld_blocks", page.json_ld.size()},
                            {"open_graph_tags", page.open_graph.size()}};
  nlohmann::json kp = nlohmann::json::array();
  for (const auto& k : extract_keyphrases(page.visible_text,
                                          static_cast<size_t>(std::max(0, cfg.max_keyphrases)))) {
    kp.push_back(
        {{"phrase", k.phrase}, {"score", std::round(k.score * 100) / 100}, {"count", k.count}});
  }
  return {{"metrics", metrics}, {"keyphrases", kp}};
}

std::vector<Finding> page_findings(const PageFacts& page, const nlohmann::json& analysis,
                                   const ReportConfig& cfg) {
  std::vector<Finding> out;
  const nlohmann::json& m = analysis.at("metrics");
  if (!page.has_title || page.title.empty()) {
    out.push_back({"title_missing", "error", "The page has no <title>.", {}});
  } else if (chars(page.title) > cfg.title_max_chars) {
    out.push_back({"title_too_long",
                   "warning",
                   "The title is " + std::to_string(chars(page.title)) +
                       " characters; keep it "
                       "under " +
                       std::to_string(cfg.title_max_chars) + ".",
                   {{"length", chars(page.title)}, {"max", cfg.title_max_chars}}});
  }
  if (!page.has_meta_description || page.meta_description.empty()) {
    out.push_back({"meta_description_missing", "warning", "The page has no meta description.", {}});
  } else if (chars(page.meta_description) > cfg.meta_description_max_chars) {
    out.push_back({"meta_description_too_long",
                   "info",
                   "The meta description is " + std::to_string(chars(page.meta_description)) +
                       " characters; search engines cut it near " +
                       std::to_string(cfg.meta_description_max_chars) + ".",
                   {{"length", chars(page.meta_description)}}});
  }
  int h1 = m.at("h1_count").get<int>();
  if (h1 == 0) {
    out.push_back({"h1_missing", "warning", "The page has no <h1> heading.", {}});
  } else if (h1 > 1) {
    out.push_back({"h1_multiple",
                   "warning",
                   "The page has " + std::to_string(h1) + " <h1> headings; use one.",
                   {{"count", h1}}});
  }
  if (page.images_without_alt > 0) {
    nlohmann::json srcs = nlohmann::json::array();
    for (const auto& im : page.images) {
      if (!im.has_alt && srcs.size() < 10) srcs.push_back(im.src);
    }
    out.push_back({"images_missing_alt",
                   "warning",
                   std::to_string(page.images_without_alt) + " of " +
                       std::to_string(page.images_total) + " images have no alt attribute.",
                   {{"count", page.images_without_alt}, {"examples", srcs}}});
  }
  if (page.word_count < cfg.thin_content_words) {
    out.push_back({"thin_content",
                   "warning",
                   "Only " + std::to_string(page.word_count) + " words of visible text (under " +
                       std::to_string(cfg.thin_content_words) + ").",
                   {{"word_count", page.word_count}, {"min", cfg.thin_content_words}}});
  }
  if (page.canonical.empty()) {
    out.push_back({"canonical_missing", "info", "The page declares no canonical URL.", {}});
  }
  std::string robots = page.robots;
  std::transform(robots.begin(), robots.end(), robots.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (robots.find("noindex") != std::string::npos) {
    out.push_back({"noindex",
                   "warning",
                   "The robots meta tag keeps the page out of search.",
                   {{"robots", page.robots}}});
  }
  int invalid_ld = 0;
  for (const auto& b : page.json_ld) invalid_ld += b.value("valid", true) ? 0 : 1;
  if (invalid_ld > 0) {
    out.push_back({"json_ld_invalid",
                   "warning",
                   std::to_string(invalid_ld) + " JSON-LD block(s) are not valid JSON.",
                   {{"count", invalid_ld}}});
  }
  if (page.open_graph.empty()) {
    out.push_back(
        {"open_graph_missing", "info", "No Open Graph tags (og:title, og:image...).", {}});
  }
  sort_findings(out);
  return out;
}

std::vector<std::string> sample_internal_links(const PageFacts& page, size_t n) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& l : page.links) {
    if (out.size() >= n) break;
    if (l.internal && seen.insert(l.url).second) out.push_back(l.url);
  }
  return out;
}

void add_link_findings(std::vector<Finding>& findings, const std::vector<LinkCheck>& checks) {
  nlohmann::json broken = nlohmann::json::array();
  for (const auto& c : checks) {
    if (c.outcome == "broken") {
      broken.push_back({{"url", c.url}, {"status", c.status}, {"detail", c.detail}});
    }
  }
  if (!broken.empty()) {
    findings.push_back({"broken_internal_links",
                        "error",
                        std::to_string(broken.size()) + " of " + std::to_string(checks.size()) +
                            " sampled internal links are broken.",
                        {{"links", broken}, {"checked", checks.size()}}});
  }
  sort_findings(findings);
}

}  // namespace scan
