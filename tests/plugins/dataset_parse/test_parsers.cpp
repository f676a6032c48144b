// The parser registry and the two built-in layouts (US SSA, FR INSEE), line by line.
#include <gtest/gtest.h>

#include "dataset_parse/src/parsers.hpp"

using namespace dataset_parse;

namespace {

struct Parsed {
  LineResult result;
  NameRow row;
  std::string reason;
};

Parsed parse(FileParser& fp, std::string_view line) {
  Parsed p;
  p.result = fp.parse_line(line, p.row, p.reason);
  return p;
}

TEST(Registry, FindsBuiltInParsersByCountryCaseInsensitively) {
  const Registry& r = Registry::builtin();
  ASSERT_NE(r.find("US"), nullptr);
  EXPECT_EQ(r.find("us"), r.find("US"));
  EXPECT_EQ(r.find("US")->format(), "us-ssa-yob");
  ASSERT_NE(r.find("fr"), nullptr);
  EXPECT_EQ(r.find("FR")->format(), "fr-insee-nat");
  EXPECT_EQ(r.find("ZZ"), nullptr);
  EXPECT_EQ(r.find(""), nullptr);
  EXPECT_EQ(r.countries(), (std::vector<std::string>{"FR", "US"}));
}

TEST(Registry, RefusesASecondParserForACountry) {
  Registry r;
  r.add(make_us_ssa_parser());
  EXPECT_THROW(r.add(make_us_ssa_parser()), std::invalid_argument);
}

TEST(UsParser, FileNameMustBeYobYyyyTxt) {
  auto p = make_us_ssa_parser();
  EXPECT_NO_THROW(p->begin("yob2023.txt"));
  EXPECT_NO_THROW(p->begin("yob1880.txt"));
  for (const char* bad : {"yob23.txt", "yob2023.csv", "YOB2023.txt", "names2023.txt", "yob1700.txt",
                          "yob2023.txt.gz", "yobABCD.txt", "nat2022.csv", ""}) {
    EXPECT_THROW(p->begin(bad), FormatError) << bad;
  }
  try {
    p->begin("names.txt");
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("invalid filename 'names.txt'"), std::string::npos);
  }
}

TEST(UsParser, ParsesLinesTakesTheYearFromTheFileNameAndRanksBySex) {
  auto fp = make_us_ssa_parser()->begin("yob2023.txt");
  auto a = parse(*fp, "Olivia,F,15270");
  ASSERT_EQ(a.result, LineResult::kRow);
  EXPECT_EQ(a.row.name, "Olivia");
  EXPECT_EQ(a.row.sex, 'F');
  EXPECT_EQ(a.row.count, 15270);
  EXPECT_EQ(a.row.year, 2023);
  EXPECT_EQ(a.row.rank, 1);
  EXPECT_EQ(parse(*fp, "Emma,F,13527").row.rank, 2);
  EXPECT_EQ(parse(*fp, "Ava,F,13527").row.rank, 2);   // tie shares the rank
  EXPECT_EQ(parse(*fp, "Mia,F,100").row.rank, 4);     // competition ranking skips 3
  EXPECT_EQ(parse(*fp, "Liam,M,20802").row.rank, 1);  // M has its own ranking
  EXPECT_EQ(parse(*fp, "Noah,M,18995").row.rank, 2);
}

TEST(UsParser, RejectsMalformedLinesWithAReason) {
  auto fp = make_us_ssa_parser()->begin("yob2023.txt");
  struct Case {
    const char* line;
    const char* why;
  } cases[] = {
      {"Olivia,F", "expected 3"},
      {"Olivia,F,1,2", "found more"},
      {"Olivia;F;10", "expected 3"},
      {"Olivia,X,10", "sex must be F or M"},
      {"Olivia,f,10", "sex must be F or M"},
      {"Olivia,F,ten", "count must be a positive"},
      {"Olivia,F,0", "count must be a positive"},
      {"Olivia,F,-3", "count must be a positive"},
      {"Olivia,F,99999999999", "count must be a positive"},
      {",F,10", "name must be 1 to 64"},
      {"Jean-Luc,M,10", "ASCII letters only"},
      {"Zoë,F,10", "ASCII letters only"},
      {"Olivia,F, 10", "count must be a positive"},
  };
  for (const auto& c : cases) {
    auto p = parse(*fp, c.line);
    EXPECT_EQ(p.result, LineResult::kReject) << c.line;
    EXPECT_NE(p.reason.find(c.why), std::string::npos) << c.line << " -> " << p.reason;
  }
}

TEST(FrParser, FileNameMustBeNatYyyyCsv) {
  auto p = make_fr_insee_parser();
  EXPECT_NO_THROW(p->begin("nat2022.csv"));
  EXPECT_THROW(p->begin("dpt2022.csv"), FormatError);
  EXPECT_THROW(p->begin("nat2022.txt"), FormatError);
  EXPECT_THROW(p->begin("yob2022.txt"), FormatError);
}

TEST(FrParser, RequiresTheHeader) {
  auto fp = make_fr_insee_parser()->begin("nat2022.csv");
  EXPECT_THROW(parse(*fp, "1;MARIE;1950;100"), FormatError);
  auto ok = make_fr_insee_parser()->begin("nat2022.csv");
  EXPECT_EQ(parse(*ok, "SEXE;PREUSUEL;ANNAIS;NOMBRE").result, LineResult::kHeader);
}

TEST(FrParser, ParsesRowsSkipsAggregatesAndRejectsBadLines) {
  auto fp = make_fr_insee_parser()->begin("nat2022.csv");
  ASSERT_EQ(parse(*fp, "sexe;preusuel;annais;nombre").result, LineResult::kHeader);
  auto a = parse(*fp, "2;CL\xC3\x89MENCE;1998;4120");
  ASSERT_EQ(a.result, LineResult::kRow);
  EXPECT_EQ(a.row.name, "CL\xC3\x89MENCE");
  EXPECT_EQ(a.row.sex, 'F');
  EXPECT_EQ(a.row.year, 1998);
  EXPECT_EQ(a.row.count, 4120);
  EXPECT_EQ(a.row.rank, 0);
  EXPECT_EQ(parse(*fp, "1;LUCAS;2005;11000").row.sex, 'M');
  auto rare = parse(*fp, "1;_PRENOMS_RARES;1950;5123");
  EXPECT_EQ(rare.result, LineResult::kSkip);
  EXPECT_NE(rare.reason.find("_PRENOMS_RARES"), std::string::npos);
  auto xxxx = parse(*fp, "2;MARIE;XXXX;71");
  EXPECT_EQ(xxxx.result, LineResult::kSkip);
  EXPECT_NE(xxxx.reason.find("XXXX"), std::string::npos);
  EXPECT_EQ(parse(*fp, "3;MARIE;1950;10").result, LineResult::kReject);
  EXPECT_EQ(parse(*fp, "1;MARIE;2030;10").result, LineResult::kReject);  // after the edition
  EXPECT_EQ(parse(*fp, "1;MARIE;1950").result, LineResult::kReject);
  EXPECT_EQ(parse(*fp, "1;MA\xC3;1950;10").result, LineResult::kReject);   // truncated UTF-8
  EXPECT_EQ(parse(*fp, "1;MA\tRIE;1950;10").result, LineResult::kReject);  // control char
}

}  // namespace
