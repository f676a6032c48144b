#include "log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "bounds.hpp"

namespace jr {
namespace {

TEST(Redact, UrlPassword) {
  EXPECT_EQ(log::redact("postgresql://app:s3cr3t@db.example:5432/jobs"),
            "postgresql://app:***@db.example:5432/jobs");
  EXPECT_EQ(log::redact("postgres://app@db/jobs"), "postgres://app@db/jobs");
}

TEST(Redact, KeyValueAndQueryPassword) {
  EXPECT_EQ(log::redact("host=db user=app password=s3cr3t dbname=x"),
            "host=db user=app password=*** dbname=x");
  EXPECT_EQ(log::redact("host=db password='a b c' dbname=x"), "host=db password=*** dbname=x");
  EXPECT_EQ(log::redact("postgresql:///x?host=/tmp&password=s3cr3t&user=u"),
            "postgresql:///x?host=/tmp&password=***&user=u");
}

TEST(Redact, TokensSecretsAndBearer) {
  EXPECT_EQ(log::redact("GET /x?api_key=abc123&y=1"), "GET /x?api_key=***&y=1");
  EXPECT_EQ(log::redact("DB_PASSWORD = hunter2 next"), "DB_PASSWORD = *** next");
  EXPECT_EQ(log::redact("Authorization: Bearer eyJ.abc-_~+/= tail"),
            "Authorization: Bearer *** tail");
  EXPECT_EQ(log::redact("tokens=1 token_type=x"), "tokens=1 token_type=x");  // not secret keys
  EXPECT_EQ(log::redact("secret='' and secret=' a'"), "secret=*** and secret=***");
  EXPECT_EQ(log::redact("password='unterminated"), "password='unterminated");
  EXPECT_EQ(log::redact("a://b:c@d e://f:g@h"), "a://b:***@d e://f:***@h");
  EXPECT_EQ(log::redact("1://b:c@d"), "1://b:c@d");  // no scheme
}

// A JSON log line stays valid JSON: a value ends before an escaped quote or white space.
TEST(Redact, KeepsJsonLinesValid) {
  std::string line = nlohmann::json{{"msg", "conn \"token=abc\" and password=x\ny"}}.dump();
  std::string out = log::redact(line);
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["msg"], "conn \"token=***\" and password=***\ny");
}

// Issue 16 class 6: std::regex recursed per character and crashed on long values. The scan is
// linear: 200,000 letters, and adversarial repetitions, take milliseconds.
TEST(Redact, LongAndAdversarialTextInLinearTime) {
  std::string token = "token=" + std::string(200000, 'a');
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(log::redact(token), "token=***");
  std::string keys;
  for (int i = 0; i < 20000; ++i) keys += "token=";
  EXPECT_EQ(log::redact(keys), "token=***");  // the first value runs to the end
  std::string quotes = "secret=" + std::string(100000, '\'');
  EXPECT_EQ(log::redact(quotes), "secret=***" + std::string(99998, '\''));  // the value ''

  std::string urls;
  for (int i = 0; i < 20000; ++i) urls += "a://b:";
  EXPECT_EQ(log::redact(urls), urls);
  std::string eq(200000, '=');
  EXPECT_EQ(log::redact(eq), eq);
  std::string spaces = "password" + std::string(200000, ' ') + "=x";
  EXPECT_EQ(log::redact(spaces), "password" + std::string(200000, ' ') + "=***");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
}

TEST(Bounds, CutKeepsUtf8AndSaysSo) {
  std::string s = std::string(10, 'a') + "\xc3\xa9" + std::string(100, 'b');  // é at 10-11
  std::string storage;
  EXPECT_EQ(bounds::cut("short", 100, storage), "short");
  std::string_view c = bounds::cut(s, 40, storage);
  EXPECT_LE(c.size(), 40u);
  EXPECT_NE(c.find("[cut: 112 bytes in all]"), std::string_view::npos) << c;
  EXPECT_EQ(bounds::utf8_prefix(s, 11), 10u);  // never inside the two-byte é
  EXPECT_EQ(bounds::utf8_prefix(s, 12), 12u);
  EXPECT_EQ(bounds::enqueue_refusal("k", "{}", ""), "");
  EXPECT_NE(bounds::enqueue_refusal(std::string(129, 'k'), "{}", ""), "");
  EXPECT_NE(bounds::enqueue_refusal("k", std::string(bounds::kEnqueuePayloadMax + 1, ' '), ""), "");
}

TEST(LogLevel, ParsesKnownNamesOnly) {
  EXPECT_EQ(log::parse_level("warn"), log::Level::warn);
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_THROW(log::parse_level("loud"), std::invalid_argument);
}

}  // namespace
}  // namespace jr
