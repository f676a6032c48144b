// ANALYZE and GENERATE steps of the scan plugin: page metrics, keyphrases and the rule-based
// findings (each with an id, a severity and a message). Pure functions over PageFacts and the
// crawl summary; the broken-link check itself lives in pipeline.cpp because it fetches.
// Thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "scan/src/page_parser.hpp"

namespace scan {

struct ReportConfig {
  int title_max_chars = 60;              // longer titles get title_too_long
  int meta_description_max_chars = 160;  // longer descriptions get meta_description_too_long
  int thin_content_words = 300;          // fewer visible words get thin_content
  int max_keyphrases = 10;               // keyphrases kept in the report
  int max_link_checks = 10;              // internal links sampled with HEAD
};

// Severity order: error, warning, info.
struct Finding {
  std::string id;
  std::string severity;
  std::string message;
  nlohmann::json details = nlohmann::json::object();
};
void to_json(nlohmann::json& j, const Finding& f);

// {"metrics": {...}, "keyphrases": [...]} from the page and the crawl summary
// (crawl: {"bytes", "fetch_ms", "hops": [...]}).
nlohmann::json analyze_page(const PageFacts& page, const nlohmann::json& crawl,
                            const ReportConfig& cfg);

// Findings that need no network, most severe first (stable within a severity).
std::vector<Finding> page_findings(const PageFacts& page, const nlohmann::json& analysis,
                                   const ReportConfig& cfg);

// Up to `n` distinct internal link URLs to check, in document order.
std::vector<std::string> sample_internal_links(const PageFacts& page, size_t n);

struct LinkCheck {
  std::string url;
  long status = 0;      // last HTTP status, 0 when the fetch failed
  std::string outcome;  // "ok", "broken", "skipped" (refused by the SSRF guard or unsupported)
  std::string detail;
};

// broken_internal_links when any checked link is broken; appended to `findings`, re-sorted.
void add_link_findings(std::vector<Finding>& findings, const std::vector<LinkCheck>& checks);

void sort_findings(std::vector<Finding>& findings);

}  // namespace scan
