// Page tokens of the query API: round trips, and every malformed token is rejected (never a crash).

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "server/query_service.h"

namespace nexus::server {
namespace {

TEST(QueryTokenTest, TimelineRoundTrip) {
  for (const auto& [us, id] : std::vector<std::pair<int64_t, std::string>>{
           {1714521600000000, "ev-1"}, {0, "a:b:c"}, {-5, "x"}, {253402300799999999, std::string("\xff\x00z", 3)}}) {
    const std::string token = EncodeTimelineToken(us, id);
    EXPECT_EQ(token.find_first_of("+/="), std::string::npos) << token;  // URL-safe
    auto back = DecodeTimelineToken(token);
    ASSERT_TRUE(back.has_value()) << token;
    EXPECT_EQ(back->first, us);
    EXPECT_EQ(back->second, id);
  }
}

TEST(QueryTokenTest, MembershipRoundTrip) {
  auto back = DecodeMembershipToken(EncodeMembershipToken("grp_abc"));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, "grp_abc");
}

TEST(QueryTokenTest, MalformedTokensAreRejected) {
  for (const std::string& bad : std::vector<std::string>{"", "!!!", "a", "dDE6", "dDE6eHg", "dDE6MTI6", EncodeMembershipToken("grp_x"), "bTE6"}) {
    EXPECT_FALSE(DecodeTimelineToken(bad).has_value()) << bad;
  }
  EXPECT_FALSE(DecodeMembershipToken(EncodeTimelineToken(1, "e")).has_value());
  EXPECT_FALSE(DecodeMembershipToken("bTE6").has_value());  // "m1:" with no id
  EXPECT_FALSE(DecodeMembershipToken("***").has_value());
}

}  // namespace
}  // namespace nexus::server
