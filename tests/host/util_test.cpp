#include "util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <thread>
#include <vector>

#include "process.hpp"

namespace jr {
namespace {

TEST(Duration, ParsesUnits) {
  EXPECT_DOUBLE_EQ(parse_duration_seconds("250ms"), 0.25);
  EXPECT_DOUBLE_EQ(parse_duration_seconds("30s"), 30);
  EXPECT_DOUBLE_EQ(parse_duration_seconds("5m"), 300);
  EXPECT_DOUBLE_EQ(parse_duration_seconds("2h"), 7200);
  EXPECT_DOUBLE_EQ(parse_duration_seconds("1d"), 86400);
  EXPECT_DOUBLE_EQ(parse_duration_seconds("1.5"), 1.5);
}

TEST(Duration, RejectsGarbageWithTheText) {
  for (const char* bad : {"", "abc", "5 parsecs", "-3s", "10x"}) {
    try {
      parse_duration_seconds(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << e.what();
    }
  }
}

TEST(SplitList, TrimsAndDropsEmpty) {
  EXPECT_EQ(split_list(" a, b ,,c "), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(split_list("").empty());
}

TEST(PgArray, QuotesSpecialCharacters) {
  EXPECT_EQ(pg_text_array({"a", "b\"c", "d\\e", "x,y"}), R"({"a","b\"c","d\\e","x,y"})");
  EXPECT_EQ(pg_int_array({1, -2, 3}), "{1,-2,3}");
  EXPECT_EQ(pg_text_array({}), "{}");
}

TEST(RetrySchedule, ParsesAndRejects) {
  EXPECT_EQ(parse_retry_schedule("60, 300,900"), (std::vector<int>{60, 300, 900}));
  EXPECT_THROW(parse_retry_schedule("60,soon"), std::invalid_argument);
  EXPECT_THROW(parse_retry_schedule("-1"), std::invalid_argument);
}

TEST(RetryDelay, ExplicitScheduleThenItsLastEntry) {
  std::vector<int> s = {60, 300, 900};
  EXPECT_EQ(retry_delay_seconds(s, 1, 0.3), 60);
  EXPECT_EQ(retry_delay_seconds(s, 2, 0.3), 300);
  EXPECT_EQ(retry_delay_seconds(s, 3, 0.3), 900);
  EXPECT_EQ(retry_delay_seconds(s, 7, 0.3), 900);
}

TEST(RetryDelay, ExponentialWithJitterIsBoundedAndGrows) {
  for (int attempt = 1; attempt <= 12; ++attempt) {
    double base = std::min(3600.0, std::pow(2.0, attempt - 1));
    EXPECT_GE(retry_delay_seconds({}, attempt, 0.0), base * 0.5);
    EXPECT_LE(retry_delay_seconds({}, attempt, 1.0), base);
  }
  EXPECT_LE(retry_delay_seconds({}, 100, 1.0), 3600);
  EXPECT_LT(retry_delay_seconds({}, 2, 1.0), retry_delay_seconds({}, 5, 0.0));
}

TEST(WorkerId, IsUniquePerCall) { EXPECT_NE(make_worker_id(), make_worker_id()); }

}  // namespace
}  // namespace jr

TEST(Util, UtcTimestampIsPostgresJsonTextToTheMicrosecond) {
  EXPECT_EQ(jr::utc_timestamp(0), "1970-01-01T00:00:00.000000+00:00");
  EXPECT_EQ(jr::utc_timestamp(1796599855.25), "2026-12-06T23:30:55.250000+00:00");
  // Rounded to the microsecond, carried into the second.
  EXPECT_EQ(jr::utc_timestamp(59.9999996), "1970-01-01T00:01:00.000000+00:00");
  EXPECT_EQ(jr::utc_timestamp(-0.5), "1969-12-31T23:59:59.500000+00:00");
}

TEST(Util, ErrnoMessageNamesWhatFailedAndTheCurrentErrno) {
  errno = ENOENT;
  EXPECT_EQ(jr::errno_message("mkdir /x"), "mkdir /x: No such file or directory");
  // errno is read after the argument is built, as every caller builds it.
  errno = EACCES;
  std::string dir = "/y";
  EXPECT_EQ(jr::errno_message("cannot move to " + dir), "cannot move to /y: Permission denied");
}

TEST(Process, FindUserAndGroupAreReentrantLookups) {
  auto root = jr::find_user("root");
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->uid, 0u);
  EXPECT_EQ(root->gid, 0u);
  EXPECT_FALSE(jr::find_user("jr-no-such-user-here").has_value());
  EXPECT_EQ(jr::find_group("root").value_or(99), 0u);
  EXPECT_FALSE(jr::find_group("jr-no-such-group-here").has_value());
  // From several threads at once (getpwnam's static result would be shared by all of them).
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto r = jr::find_user(i % 2 ? "root" : "nobody");
        if (!r || (i % 2 ? r->uid != 0 : r->uid == 0)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}
