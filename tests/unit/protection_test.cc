#include <gtest/gtest.h>

#include "resolver/protection.h"

namespace nexus::resolver {
namespace {

TEST(Protection, BuiltInJunkValues) {
  for (const char* v : {"anonymous", "GUEST", "Unknown", "undefined", "null", "None", "NaN", "true", "false", "id",
                        "email", "distinct_id", "not_authenticated", "n/a", "[object Object]", "0", "-1", "\"null\"",
                        "'anonymous'", "0000", "----", "00-00", "   "}) {
    EXPECT_TRUE(BuiltInJunkReason(v).has_value()) << v;
  }
  for (const char* v : {"a@x.com", "u1", "+15550100", "10", "null@x.com"}) {
    EXPECT_FALSE(BuiltInJunkReason(v).has_value()) << v;
  }
}

TEST(Protection, ParsesCapsAndBlocklist) {
  std::string err;
  auto cfg = ParseProtectionConfig(R"(
# caps
[person_caps]
default = 3
user_id = 2
max_entity_size = 40
[group_caps]
domain = 4
[blocklist]
email = /^(support|info|noreply)@/
email = Shared@Example.com
* = 12345
)", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->person_caps.CapFor("user_id"), 2);
  EXPECT_EQ(cfg->person_caps.CapFor("phone"), 3);
  EXPECT_EQ(cfg->person_caps.max_entity_size, 40);
  EXPECT_EQ(cfg->group_caps.CapFor("domain"), 4);
  EXPECT_TRUE(cfg->BlockReason("email", "support@acme.io"));
  EXPECT_TRUE(cfg->BlockReason("email", "shared@example.com"));  // normalized like ingest
  EXPECT_TRUE(cfg->BlockReason("user_id", "12345"));
  EXPECT_FALSE(cfg->BlockReason("email", "jane@acme.io"));
}

TEST(Protection, ErrorsNameTheLine) {
  std::string err;
  EXPECT_FALSE(ParseProtectionConfig("[person_caps]\nuser_id = lots\n", &err));
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
  EXPECT_FALSE(ParseProtectionConfig("[blocklist]\nemail = /([/\n", &err));
  EXPECT_NE(err.find("invalid regex"), std::string::npos) << err;
  EXPECT_FALSE(ParseProtectionConfig("[nope]\n", &err));
}

TEST(Protection, DefaultsAreDocumented) {
  auto d = ProtectionConfig::Defaults();
  EXPECT_EQ(d.person_caps.CapFor("user_id"), 1);
  EXPECT_EQ(d.person_caps.CapFor("email"), 10);
  EXPECT_EQ(d.person_caps.max_entity_size, 500);
}

}  // namespace
}  // namespace nexus::resolver
