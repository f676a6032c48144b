#include "log.hpp"

#include <gtest/gtest.h>

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

TEST(LogLevel, ParsesKnownNamesOnly) {
  EXPECT_EQ(log::parse_level("warn"), log::Level::warn);
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_THROW(log::parse_level("loud"), std::invalid_argument);
}

}  // namespace
}  // namespace jr
