// PARSE (gumbo), ANALYZE (metrics, RAKE keyphrases) and GENERATE (findings) on fixed documents.
#include <gtest/gtest.h>

#include <algorithm>

#include "fixture_server.hpp"
#include "scan/src/keyphrases.hpp"
#include "scan/src/page_parser.hpp"
#include "scan/src/report.hpp"

namespace {

using scan::PageFacts;

std::vector<std::string> ids(const std::vector<scan::Finding>& f) {
  std::vector<std::string> out;
  for (const auto& x : f) out.push_back(x.id);
  return out;
}

TEST(Parse, ExtractsEverythingFromTheGoodPage) {
  const std::string base = "http://site.example:8080";
  PageFacts p = scan::parse_page(scantest::FixtureServer::good_page(base), base + "/good");
  EXPECT_TRUE(p.has_title);
  EXPECT_EQ(p.title, "Acme Widgets: Durable Garden Tools");
  EXPECT_EQ(p.meta_description, "Acme builds durable garden tools and widgets for home gardeners.");
  EXPECT_EQ(p.canonical, base + "/good");
  EXPECT_EQ(p.robots, "index, follow");
  EXPECT_EQ(p.lang, "en");
  ASSERT_EQ(p.headings.size(), 4u);
  EXPECT_EQ(p.headings[0].level, 1);
  EXPECT_EQ(p.headings[0].text, "Durable garden tools");
  EXPECT_EQ(p.headings[1].level, 2);
  EXPECT_EQ(p.headings[3].level, 3);
  EXPECT_EQ(p.headings[3].text, "Steel trowel");
  // mailto:, javascript: and "#top" are not links to pages.
  EXPECT_EQ(p.links_total, 3);
  EXPECT_EQ(p.links_internal, 2);
  EXPECT_EQ(p.links_external, 1);
  EXPECT_EQ(p.links_nofollow, 1);
  EXPECT_EQ(p.links[0].url, base + "/about");
  EXPECT_EQ(p.links[1].url, base + "/about");  // fragment dropped
  EXPECT_TRUE(p.links[2].nofollow);
  EXPECT_FALSE(p.links[2].internal);
  EXPECT_EQ(p.images_total, 1);
  EXPECT_EQ(p.images_with_alt, 1);
  EXPECT_EQ(p.images[0].src, base + "/img/trowel.png");
  ASSERT_EQ(p.json_ld.size(), 1u);
  EXPECT_TRUE(p.json_ld[0]["valid"].get<bool>());
  EXPECT_EQ(p.json_ld[0]["types"], nlohmann::json::array({"Organization"}));
  EXPECT_EQ(p.open_graph.at("og:title"), "Acme Widgets");
  EXPECT_EQ(p.open_graph.at("og:type"), "website");
  EXPECT_EQ(p.resource_count, 3);  // style.css, app.js, trowel.png
  EXPECT_GT(p.word_count, 300);
  // Script, style and head content are not visible text.
  EXPECT_EQ(p.visible_text.find("color: black"), std::string::npos);
  EXPECT_EQ(p.visible_text.find("schema.org"), std::string::npos);
  EXPECT_EQ(p.visible_text.find("Acme Widgets: Durable"), std::string::npos);
}

TEST(Parse, CountsWordsAltAndBaseHref) {
  PageFacts p = scan::parse_page(
      R"(<html><head><base href="https://cdn.example/sub/"></head><body>
      <p>One two, three!</p><p>  four -- five </p><script>var not_words = 1;</script>
      <img src="a.png"><img src="b.png" alt=""><img src="c.png" alt="A cat">
      <a href="page">x</a><a href="https://other.example/">y</a></body></html>)",
      "https://www.cdn.example/index.html");
  EXPECT_EQ(p.word_count, 7);  // five in the paragraphs, "x" and "y" in the links
  EXPECT_EQ(p.images_total, 3);
  EXPECT_EQ(p.images_without_alt, 1);
  EXPECT_EQ(p.images_with_alt, 2);
  EXPECT_EQ(p.images[0].src, "https://cdn.example/sub/a.png");
  ASSERT_EQ(p.links.size(), 2u);
  EXPECT_EQ(p.links[0].url, "https://cdn.example/sub/page");
  EXPECT_TRUE(p.links[0].internal);  // www. and bare host are one site
  EXPECT_FALSE(p.links[1].internal);
  EXPECT_FALSE(p.has_title);
}

TEST(Parse, RoundTripsThroughJson) {
  PageFacts p = scan::parse_page(scantest::FixtureServer::bad_page(), "http://a.example/bad");
  nlohmann::json j = p;
  PageFacts q = j.get<PageFacts>();
  EXPECT_EQ(nlohmann::json(q), j);
}

TEST(Keyphrases, RakeScoresMultiWordPhrasesFromVisibleText) {
  auto k = scan::extract_keyphrases(
      "Durable garden tools. Durable garden tools, a steel trowel.\n"
      "The steel trowel is forged for years. Garden tools matter.",
      5);
  ASSERT_FALSE(k.empty());
  EXPECT_EQ(k[0].phrase, "durable garden tools");
  EXPECT_EQ(k[0].count, 2);
  auto has = [&](const std::string& ph) {
    return std::any_of(k.begin(), k.end(), [&](const auto& x) { return x.phrase == ph; });
  };
  EXPECT_TRUE(has("steel trowel"));
  // Stop words and punctuation split phrases: no candidate spans "for" or a full stop.
  for (const auto& x : k) {
    EXPECT_EQ(x.phrase.find(" for "), std::string::npos);
    EXPECT_EQ(x.phrase.find("tools durable"), std::string::npos);
  }
}

TEST(Keyphrases, IgnoresNumbersAndStopWordsAndLimits) {
  EXPECT_TRUE(scan::is_stop_word("the"));
  EXPECT_FALSE(scan::is_stop_word("garden"));
  auto k = scan::extract_keyphrases("the 2024 and 42 of a in", 10);
  EXPECT_TRUE(k.empty());
  auto many = scan::extract_keyphrases("alpha. beta. gamma. delta. epsilon.", 3);
  EXPECT_EQ(many.size(), 3u);
}

TEST(Report, BadPageFindingsInSeverityOrder) {
  PageFacts p = scan::parse_page(scantest::FixtureServer::bad_page(), "http://a.example/bad");
  scan::ReportConfig cfg;
  nlohmann::json crawl = {{"bytes", 300}, {"fetch_ms", 12.5}, {"hops", {{{"url", "x"}}}}};
  nlohmann::json a = scan::analyze_page(p, crawl, cfg);
  EXPECT_EQ(a["metrics"]["html_bytes"], 300);
  EXPECT_EQ(a["metrics"]["h1_count"], 2);
  EXPECT_EQ(a["metrics"]["redirects"], 0);
  EXPECT_GT(a["metrics"]["text_to_html_ratio"].get<double>(), 0.0);
  auto f = scan::page_findings(p, a, cfg);
  EXPECT_EQ(ids(f),
            (std::vector<std::string>{"title_missing", "meta_description_missing", "h1_multiple",
                                      "images_missing_alt", "thin_content", "json_ld_invalid",
                                      "canonical_missing", "open_graph_missing"}));
  EXPECT_EQ(f[3].details["count"], 1);

  std::vector<scan::LinkCheck> checks = {{"http://a.example/missing", 404, "broken", ""},
                                         {"http://a.example/about", 200, "ok", ""}};
  scan::add_link_findings(f, checks);
  EXPECT_EQ(f[0].id, "title_missing");
  EXPECT_EQ(f[1].id, "broken_internal_links");
  EXPECT_EQ(f[1].details["links"].size(), 1u);
}

TEST(Report, GoodPageHasNoErrorsAndLengthRulesHaveEdges) {
  const std::string base = "http://site.example";
  PageFacts p = scan::parse_page(scantest::FixtureServer::good_page(base), base + "/good");
  scan::ReportConfig cfg;
  auto a = scan::analyze_page(p, {{"bytes", 5000}, {"fetch_ms", 1.0}}, cfg);
  EXPECT_TRUE(scan::page_findings(p, a, cfg).empty());
  EXPECT_FALSE(a["keyphrases"].empty());
  EXPECT_EQ(a["metrics"]["resource_count"], 3);

  p.title = std::string(60, 't');
  EXPECT_TRUE(scan::page_findings(p, a, cfg).empty());
  p.title = std::string(61, 't');
  EXPECT_EQ(ids(scan::page_findings(p, a, cfg)), std::vector<std::string>{"title_too_long"});
  p.title = "ok";
  p.robots = "NOINDEX, nofollow";
  p.meta_description = std::string(161, 'd');
  EXPECT_EQ(ids(scan::page_findings(p, a, cfg)),
            (std::vector<std::string>{"noindex", "meta_description_too_long"}));
}

}  // namespace
