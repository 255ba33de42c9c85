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

TEST(Protection, ClassifyAppliesIdentifierRules) {
  const auto cfg = ProtectionConfig::Defaults();
  auto c = cfg.Classify("email", " Support+EU@Acme.io ");
  EXPECT_EQ(c.value, "support+eu@acme.io");
  ASSERT_TRUE(c.not_linkable);
  EXPECT_EQ(*c.not_linkable, "role account 'support@'");
  EXPECT_FALSE(cfg.Classify("email", "jane@acme.io").not_linkable);
  c = cfg.Classify("domain", "https://www.Gmail.com/");
  EXPECT_EQ(c.value, "gmail.com");
  ASSERT_TRUE(c.not_linkable);
  EXPECT_EQ(*c.not_linkable, "free-mail domain 'gmail.com'");
  EXPECT_FALSE(cfg.Classify("domain", "acme.io").not_linkable);
  EXPECT_FALSE(cfg.Classify("email", "jane@gmail.com").not_linkable);  // free mail is fine for a person's email
  c = cfg.Classify("phone", "415-555-0199");
  EXPECT_EQ(c.value, "+14155550199");
  EXPECT_FALSE(c.not_linkable);
  c = cfg.Classify("phone", "1234567890");
  ASSERT_TRUE(c.not_linkable);
  EXPECT_EQ(*c.not_linkable, "placeholder phone number");
  c = cfg.Classify("phone", "n/a");  // nothing left: the raw value is kept, blocked as empty
  EXPECT_EQ(c.value, "n/a");
  EXPECT_EQ(c.not_linkable.value_or(""), "empty value");
  c = cfg.Classify("user_id", "anonymous");
  EXPECT_TRUE(c.not_linkable);
}

TEST(Protection, ParsesEmailAndFreeMailSections) {
  std::string err;
  auto cfg = ParseProtectionConfig(R"(
[email]
role_account = frontdesk
plus_tag_provider = acme.io
[blocklist]
email = Jane.Doe+x@Gmail.com
phone = 020 7946 0958
[free_mail]
domain = mail.example
)",
                                   &err, "GB");
  ASSERT_TRUE(cfg) << err;
  EXPECT_EQ(cfg->identifiers.default_phone_region, "GB");
  EXPECT_TRUE(cfg->Classify("email", "frontdesk@acme.io").not_linkable);
  EXPECT_EQ(cfg->Classify("email", "jane+x@acme.io").value, "jane@acme.io");
  EXPECT_TRUE(cfg->Classify("domain", "mail.example").not_linkable);
  // Blocklist values are normalized by the file's own rules, even when [email] or the region come first or later.
  EXPECT_TRUE(cfg->Classify("email", "janedoe@gmail.com").not_linkable);
  EXPECT_TRUE(cfg->Classify("phone", "+44 20 7946 0958").not_linkable);
  EXPECT_FALSE(cfg->Classify("phone", "+44 20 7946 0959").not_linkable);

  cfg = ParseProtectionConfig("[email]\nrole_accounts = off\nprovider_rules = off\n[free_mail]\nbuiltin = off\n", &err);
  ASSERT_TRUE(cfg) << err;
  EXPECT_FALSE(cfg->Classify("email", "support@acme.io").not_linkable);
  EXPECT_EQ(cfg->Classify("email", "Jane.Doe+x@gmail.com").value, "jane.doe+x@gmail.com");
  EXPECT_FALSE(cfg->Classify("domain", "gmail.com").not_linkable);

  for (const char* bad :
       {"[email]\nrole_accounts = maybe\n", "[email]\nrole_account = a@b\n", "[email]\nplus_tag_provider = nodot\n",
        "[email]\ncolour = blue\n", "[free_mail]\ndomain = \n", "[free_mail]\nbuiltin = 2\n", "[phones]\nx = 1\n"}) {
    err.clear();
    EXPECT_FALSE(ParseProtectionConfig(bad, &err)) << bad;
    EXPECT_EQ(err.rfind("line ", 0), 0u) << bad << " -> " << err;
  }
}

TEST(Protection, ClassifyFingerprintFollowsWhatDecidesAValue) {
  const std::string base = ProtectionConfig::Defaults().ClassifyFingerprint();
  EXPECT_EQ(ProtectionConfig::Unlimited().ClassifyFingerprint(), base);  // caps act at resolution, not here
  std::string err;
  auto same = ParseProtectionConfig("[person_caps]\nuser_id = 3\n", &err);
  ASSERT_TRUE(same) << err;
  EXPECT_EQ(same->ClassifyFingerprint(), base);
  for (const char* text :
       {"[email]\nrole_accounts = off\n", "[email]\nrole_account = frontdesk\n", "[email]\nprovider_rules = off\n",
        "[email]\nplus_tag_provider = acme.io\n", "[free_mail]\nbuiltin = off\n",
        "[free_mail]\ndomain = mail.example\n", "[blocklist]\nemail = a@b.c\n", "[blocklist]\nemail = /^x@/\n"}) {
    auto cfg = ParseProtectionConfig(text, &err);
    ASSERT_TRUE(cfg) << err;
    EXPECT_NE(cfg->ClassifyFingerprint(), base) << text;
  }
  auto gb = ParseProtectionConfig("", &err, "GB");
  ASSERT_TRUE(gb) << err;
  EXPECT_NE(gb->ClassifyFingerprint(), base);
}

TEST(Protection, ParsesTraitRules) {
  std::string err;
  auto cfg = ParseProtectionConfig(R"(
[traits]
default = latest
name = priority: hubspot, salesforce, *
title = priority:hubspot
signup_date = first
first_seen_source = first
)",
                                   &err);
  ASSERT_TRUE(cfg) << err;
  const TraitRules& t = cfg->traits;
  EXPECT_EQ(t.default_rule.kind, TraitRule::Kind::kLatest);
  EXPECT_EQ(t.For("name").kind, TraitRule::Kind::kPriority);
  EXPECT_EQ(t.For("name").sources, (std::vector<std::string>{"hubspot", "salesforce", "*"}));
  EXPECT_EQ(t.For("title").sources, (std::vector<std::string>{"hubspot"}));
  EXPECT_EQ(t.For("signup_date").kind, TraitRule::Kind::kFirst);
  EXPECT_EQ(t.For("first_seen_source").kind, TraitRule::Kind::kFirst);
  EXPECT_EQ(t.For("anything_else").kind, TraitRule::Kind::kLatest);
  // Ranks: listed in order, '*' for the rest; without '*' the rest rank after every listed source.
  EXPECT_EQ(t.For("name").Rank("hubspot"), 0u);
  EXPECT_EQ(t.For("name").Rank("salesforce"), 1u);
  EXPECT_EQ(t.For("name").Rank("gmail"), 2u);
  EXPECT_EQ(t.For("title").Rank("gmail"), 1u);
  EXPECT_NE(Describe(*cfg).find("name=priority: hubspot, salesforce, *"), std::string::npos) << Describe(*cfg);

  auto d = ParseProtectionConfig("[traits]\ndefault = first\n", &err);
  ASSERT_TRUE(d) << err;
  EXPECT_EQ(d->traits.For("x").kind, TraitRule::Kind::kFirst);
  // Without a [traits] section: today's rule, latest everywhere.
  EXPECT_EQ(ProtectionConfig::Defaults().traits, TraitRules{});
}

TEST(Protection, TraitRuleErrorsNameTheLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[traits]\nname = newest\n", "line 2: trait 'name': unknown trait rule 'newest'"},
      {"[traits]\nname = priority:\n", "line 2: trait 'name': empty source in priority list"},
      {"[traits]\n\nname = priority: a, , b\n", "line 3: trait 'name': empty source in priority list"},
      {"[traits]\nname = priority: a, b, a\n", "line 2: trait 'name': source 'a' listed twice"},
      {"[traits]\nname = first\nname = latest\n", "line 3: trait 'name' already has a rule (line 2)"},
      {"[traits]\ndefault = first\ndefault = latest\n", "line 3: default trait rule already set on line 2"},
      {"[traits]\nname\n", "line 2: expected 'key = value'"},
  };
  for (const auto& [text, want] : cases) {
    std::string err;
    EXPECT_FALSE(ParseProtectionConfig(text, &err)) << text;
    EXPECT_EQ(err.rfind(want, 0), 0u) << "got: " << err;
  }
}

}  // namespace
}  // namespace nexus::resolver
