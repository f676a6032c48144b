// Pages in legacy encodings, served by the fixture server and scanned by the real plugin .so
// (in-process or sandboxed, as the ctest variant says) against a real PostgreSQL: the charset the
// page declares (Content-Type header, <meta charset>, <meta http-equiv>) is honoured, so a
// Latin-1 title reads "Café Crème" in the report and the scan_jobs row, not "Caf\ufffd
// Cr\ufffdme". Plus the decoder's own rules (precedence, labels, replacement).
#include "scan/src/charset.hpp"

#include <gtest/gtest.h>
#include <jobrunner/abi.h>

#include "plugin_host.hpp"
#include "scan_test_util.hpp"

namespace {

using nlohmann::json;

class ScanCharsetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The plugin's own role and schema (what a runner hands it).
    db = jrtest::plugin_database(jrtest::PgCluster::get().create_database("scancs"), "scan").url;
    host = std::make_unique<jrtest::PluginHost>(jrtest::plugin_dir() + "/libjr_scan.so",
                                                scantest::plugin_config(db, server));
  }
  json scan_ok(const std::string& id, const std::string& path) {
    last = host->run("scan", scantest::payload(id, server.url(path)));
    EXPECT_EQ(last.status, JR_OK) << last.error;
    return last.result.empty() ? json::object() : json::parse(last.result);
  }
  std::string row_title(const std::string& id) {
    return scantest::q(db,
                       "SELECT result->'page'->>'title' FROM scan_jobs WHERE id = '" + id + "'");
  }

  scantest::FixtureServer server;
  std::string db;
  std::unique_ptr<jrtest::PluginHost> host;
  jrtest::JobOutcome last;
};

TEST_F(ScanCharsetTest, Latin1DeclaredInTheContentTypeHeaderIsDecoded) {
  json r = scan_ok("cs-latin1", "/latin1");
  EXPECT_EQ(r["page"]["title"], "Caf\xc3\xa9 Cr\xc3\xa8me");
  EXPECT_EQ(r["page"]["headings"][0]["text"],
            "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
            "e");
  EXPECT_EQ(r["charset"], "WINDOWS-1252");
  EXPECT_EQ(row_title("cs-latin1"), "Café Crème");
}

TEST_F(ScanCharsetTest, Windows1252DeclaredByMetaCharsetIsDecoded) {
  json r = scan_ok("cs-1252", "/cp1252-meta");
  // 0x80 is the euro sign and 0x93/0x94 curly quotes in windows-1252 (C1 controls in Latin-1).
  EXPECT_EQ(r["page"]["title"],
            "Prix\xc2\xa0: 5 \xe2\x82\xac \xe2\x80\x9csp\xc3\xa9"
            "cial\xe2\x80\x9d");
  EXPECT_EQ(r["page"]["headings"][0]["text"], "\xc5\x92uvre");
  EXPECT_EQ(row_title("cs-1252"), "Prix\xc2\xa0: 5 € “spécial”");
}

TEST_F(ScanCharsetTest, MetaHttpEquivIsHonouredAndACommentedOutMetaIsNot) {
  json r = scan_ok("cs-equiv", "/latin1-http-equiv");
  EXPECT_EQ(r["page"]["title"], "D\xc3\xa9j\xc3\xa0 vu");
  EXPECT_EQ(r["page"]["headings"][0]["text"], "Na\xc3\xafve");
}

TEST_F(ScanCharsetTest, TheHeaderWinsOverMeta) {
  json r = scan_ok("cs-header", "/header-wins");
  EXPECT_EQ(r["page"]["title"], "Caf\xc3\xa9");  // UTF-8 as the header says, not Latin-1 "CafÃ©"
  EXPECT_EQ(r["charset"], "UTF-8");
}

TEST_F(ScanCharsetTest, AnUnknownCharsetFallsBackToUtf8WithReplacementAndIsLogged) {
  json r = scan_ok("cs-unknown", "/unknown-charset");
  EXPECT_EQ(r["page"]["title"], "Caf\xef\xbf\xbd");
  EXPECT_EQ(r["charset"], "UTF-8");
  bool logged = false;
  for (const auto& l : last.logs) {
    logged = logged || l.find(
                           "unknown charset 'x-klingon' declared in the Content-Type header; "
                           "decoded as UTF-8 with replacement characters") != std::string::npos;
  }
  EXPECT_TRUE(logged);
}

TEST(ScanCharset, DecoderRules) {
  using scan::decode_page;
  EXPECT_EQ(scan::charset_from_content_type("text/html; charset=\"ISO-8859-1\""), "ISO-8859-1");
  EXPECT_EQ(scan::charset_from_content_type("text/html;charset=utf-8;q=1"), "utf-8");
  EXPECT_EQ(scan::charset_from_content_type("text/html"), "");
  EXPECT_EQ(scan::charset_from_meta("<html><head><META CHARSET=latin1>"), "latin1");
  EXPECT_EQ(scan::charset_from_meta("<meta content='text/html; charset=koi8-r' "
                                    "http-equiv=content-type>"),
            "koi8-r");
  EXPECT_EQ(scan::charset_from_meta("<p title='<meta charset=koi8-r>'>x</p>"), "");
  EXPECT_EQ(scan::charset_from_meta(std::string(1100, ' ') + "<meta charset=latin1>"), "");

  scan::DecodedPage bom =
      decode_page("\xEF\xBB\xBF<p>Caf\xc3\xa9</p>", "text/html; charset=latin1");
  EXPECT_EQ(bom.text, "<p>Caf\xc3\xa9</p>");
  EXPECT_EQ(bom.source, "bom");
  scan::DecodedPage koi = decode_page("<meta charset=koi8-r>\xf0\xd2\xc9\xd7\xc5\xd4", "text/html");
  EXPECT_EQ(koi.encoding, "KOI8-R");
  EXPECT_EQ(koi.text.substr(koi.text.find('>') + 1),
            "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
  scan::DecodedPage bad = decode_page(
      "a\xff"
      "b",
      "text/html");  // UTF-8 by default
  EXPECT_EQ(bad.text,
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(bad.replaced, 1u);
  scan::DecodedPage meta16 = decode_page("<meta charset=utf-16>Caf\xc3\xa9", "text/html");
  EXPECT_EQ(meta16.encoding, "UTF-8");
  scan::DecodedPage sneaky = decode_page("x", "text/html; charset=utf-8//TRANSLIT");
  EXPECT_EQ(sneaky.encoding, "UTF-8");
  EXPECT_FALSE(sneaky.fallback.empty());
}

}  // namespace
