#include "common/rfc3339.h"

#include <gtest/gtest.h>

namespace nexus {
namespace {

TEST(Rfc3339, ZonedTimesParseAndTimesAnOffsetMovesOutOfRangeAreRefused) {
  const auto t = ParseRfc3339("2026-05-01T12:00:00Z");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->seconds(), 1777636800);
  EXPECT_EQ(ParseRfc3339("2026-05-01T14:00:00+02:00")->seconds(), 1777636800);
  EXPECT_TRUE(ParseRfc3339("0001-01-01T00:00:00Z").has_value());  // Go's zero time: the earliest valid one
  // protobuf's parser threw (after a failed CHECK) on these: the offset moves them past either end.
  EXPECT_FALSE(ParseRfc3339("0001-01-01T00:00:00+02:00").has_value());
  EXPECT_FALSE(ParseRfc3339("1-01-01T00:00:00+02:00").has_value());
  EXPECT_FALSE(ParseRfc3339("9999-12-31T23:59:59-02:00").has_value());
  EXPECT_FALSE(ParseRfc3339("2026-05-01").has_value());
  EXPECT_FALSE(ParseRfc3339("").has_value());
}

}  // namespace
}  // namespace nexus
