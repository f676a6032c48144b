// WHOIS replies that are not clean UTF-8 (Latin-1, a UTF-8 character cut by the excerpt's byte
// limit, a NUL byte) from the real WHOIS test server, through the plugin .so: every name of the
// job is stored, the evidence is valid UTF-8. Before the fix one such reply made the store throw
// and the whole job (every name in it) was retried and dead-lettered. Also: a row the database
// refuses costs only its own name (DomainStore against a real PostgreSQL).
#include <jobrunner/abi.h>

#include "domain_check/src/domain_store.hpp"
#include "domain_check/src/utf8_text.hpp"
#include "test_env.hpp"

namespace {

using dctest::config;
using dctest::entry;
using jrtest::PgCluster;
using nlohmann::json;

TEST(DomainCheckEncoding, Latin1AndCutUtf8WhoisRepliesAreStoredWithEveryOtherName) {
  std::string db = dctest::plugin_db("dcenc");
  jrtest::PluginHost host(dctest::so_path(), config(db));
  jrtest::JobOutcome out = host.run(
      "domain_check",
      json{{"domains", {"latin1.test", "cututf8.test", "nulbyte.test", "taken.test", "free.test"}}}
          .dump());
  ASSERT_EQ(out.status, JR_OK) << out.error;
  json res = json::parse(out.result);

  json latin1 = entry(res, "latin1.test");
  EXPECT_EQ(latin1["status"], "registered");
  std::string excerpt = latin1["details"]["whois_excerpt"];
  EXPECT_NE(excerpt.find("Registrant: Soci\xc3\xa9t\xc3\xa9 G\xc3\xa9n\xc3\xa9rale"),
            std::string::npos)
      << excerpt;

  json cut = entry(res, "cututf8.test");
  EXPECT_EQ(cut["status"], "registered");
  std::string cut_excerpt = cut["details"]["whois_excerpt"];
  EXPECT_TRUE(domain_check::is_valid_utf8(cut_excerpt));
  EXPECT_EQ(cut_excerpt.size(), 199u);  // the character at 199-200 does not fit in 200 bytes
  EXPECT_EQ(cut_excerpt.back(), 'x');

  std::string nul_excerpt = entry(res, "nulbyte.test")["details"]["whois_excerpt"];
  EXPECT_NE(nul_excerpt.find("Remarks: ab"), std::string::npos) << nul_excerpt;

  EXPECT_EQ(entry(res, "taken.test")["status"], "registered");
  EXPECT_EQ(entry(res, "free.test")["status"], "available");
  EXPECT_EQ(res["summary"]["unknown"], 0);

  EXPECT_EQ(PgCluster::query_one(db, "SELECT count(*) FROM domains"), "5");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT details->>'whois_excerpt' LIKE '%Société Générale%' "
                                 "FROM domains WHERE name = 'latin1.test'"),
            "t");
  EXPECT_EQ(PgCluster::query_one(db,
                                 "SELECT octet_length(details->>'whois_excerpt') FROM domains "
                                 "WHERE name = 'cututf8.test'"),
            "199");
}

TEST(DomainCheckEncoding, BytesAreDecodedAsWindows1252AndCutOnCharacterBoundaries) {
  using domain_check::to_utf8;
  using domain_check::utf8_prefix;
  EXPECT_EQ(to_utf8("Soci\xe9t\xe9"), "Soci\xc3\xa9t\xc3\xa9");
  EXPECT_EQ(to_utf8("already \xc3\xa9 \xf0\x9f\x98\x80 fine"),
            "already \xc3\xa9 \xf0\x9f\x98\x80 fine");
  EXPECT_EQ(to_utf8("\x80"), "\xe2\x82\xac");          // windows-1252 euro sign
  EXPECT_EQ(to_utf8("\x81"), "\xef\xbf\xbd");          // undefined there: U+FFFD
  EXPECT_EQ(to_utf8("\xc0\xaf"), "\xc3\x80\xc2\xaf");  // an overlong is two Latin-1 bytes
  EXPECT_EQ(to_utf8("\xed\xa0\x80").size(), 7u);       // a surrogate is not kept as UTF-8
  EXPECT_EQ(to_utf8(std::string("a\0b", 3)), "ab");
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 3), "ab");
  EXPECT_EQ(utf8_prefix("ab\xc3\xa9", 4), "ab\xc3\xa9");
  EXPECT_EQ(utf8_prefix("\xf0\x9f\x98\x80", 3), "");
  json j = {{"k\xff", {"v\xe9", 1}}};
  domain_check::make_storable(j);
  EXPECT_EQ(j.dump(), "{\"k\xc3\xbf\":[\"v\xc3\xa9\",1]}");
}

TEST(DomainCheckEncoding, ARowTheDatabaseRefusesCostsOnlyItsOwnName) {
  std::string db = dctest::plugin_db("dcenc");
  domain_check::DomainStore store(db, 1);
  auto result = [](const std::string& name, const std::string& checked_at) {
    domain_check::DomainResult r;
    r.input = r.name = name;
    r.status = "registered";
    r.method = "whois";
    r.checked_at = checked_at;
    return r;
  };
  std::vector<domain_check::DomainResult> rs = {
      result("a.test", "2024-05-01T10:00:00.000Z"), result("b.test", "not a time"),
      result("c.test", "2024-05-01T10:00:00.000Z"), result("d.test", "2024-05-01T10:00:00.000Z")};
  rs[3].details["whois_excerpt"] = "raw \xe9 bytes";  // given to the store without decoding
  domain_check::UpsertReport rep = store.upsert(rs);
  ASSERT_EQ(rep.failed.size(), 1u);
  EXPECT_EQ(rep.failed.begin()->first, "b.test");
  EXPECT_NE(rep.failed.begin()->second.find("not a time"), std::string::npos)
      << rep.failed.begin()->second;
  EXPECT_EQ(rep.written, 4u);
  EXPECT_EQ(PgCluster::query_one(
                db, "SELECT string_agg(name || '=' || status, ',' ORDER BY name) FROM domains"),
            "a.test=registered,b.test=unknown,c.test=registered,d.test=registered");
  EXPECT_EQ(PgCluster::query_one(db, "SELECT details->>'reason' FROM domains WHERE name='b.test'"),
            "not stored");
  EXPECT_EQ(
      PgCluster::query_one(db, "SELECT details->>'whois_excerpt' FROM domains WHERE name='d.test'"),
      "raw \xc3\xa9 bytes");
}

}  // namespace
