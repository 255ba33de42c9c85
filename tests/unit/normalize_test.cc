#include "resolver/normalize.h"

#include <gtest/gtest.h>

#include <vector>

namespace nexus::resolver {
namespace {

TEST(Normalize, EmailIsTrimmedAndLowerCased) {
  EXPECT_EQ(NormalizeIdentifier("email", "  John.Smith@Example.COM \t"), "john.smith@example.com");
}

TEST(Normalize, DomainLosesSchemeWwwPathPortAndTrailingDot) {
  EXPECT_EQ(NormalizeIdentifier("domain", "https://www.Example.com/about?x=1"), "example.com");
  EXPECT_EQ(NormalizeIdentifier("domain", "WWW.ACME.IO."), "acme.io");
  EXPECT_EQ(NormalizeIdentifier("domain", "http://shop.acme.io:8080/"), "shop.acme.io");
  EXPECT_EQ(NormalizeIdentifier("domain", "acme.io"), "acme.io");
}

TEST(Normalize, PhonesBecomeE164WithTheDefaultRegion) {
  struct Case {
    const char* region;
    const char* in;
    const char* want;
  };
  const IdentifierRules us;
  for (const Case& c : std::vector<Case>{
           {"US", "415-555-0199", "+14155550199"},
           {"US", "+1 415 555 0199", "+14155550199"},
           {"US", "(415) 555-0199", "+14155550199"},
           {"US", " 1-415-555-0199 ", "+14155550199"},
           {"US", "+44 20 7946 0958", "+442079460958"},  // a country code wins over the default region
           {"GB", "020 7946 0958", "+442079460958"},
           {"GB", "+1 415 555 0199", "+14155550199"},
           {"DE", "030 901820", "+4930901820"},
           {"FR", "01 42 68 53 00", "+33142685300"},
           {"US", "+1 650 253 0000 ext. 123", "+16502530000;ext=123"},  // extensions stay apart
           {"US", "650-253-0000 x 7", "+16502530000;ext=7"},
       }) {
    IdentifierRules r;
    r.default_phone_region = c.region;
    const auto got = NormalizeIdentifierChecked("phone", c.in, r);
    EXPECT_EQ(got.value, c.want) << c.in << " in " << c.region;
    EXPECT_FALSE(got.not_linkable) << c.in << " in " << c.region << ": " << got.not_linkable.value_or("");
  }
}

TEST(Normalize, InvalidAndPlaceholderPhonesAreStoredButNotLinkable) {
  const IdentifierRules us;
  struct Case {
    const char* in;
    const char* value;  // what is stored
    const char* why;    // start of the reason
  };
  for (const Case& c : std::vector<Case>{
           {"1234567890", "+11234567890", "placeholder phone number"},
           {"+1 555 555 5555", "+15555555555", "placeholder phone number"},
           {"(000) 000-0000", "+10000000000", "placeholder phone number"},
           {"9876543210", "+19876543210", "placeholder phone number"},
           {"020 7946 0958", "+102079460958", "not a valid phone number"},  // a UK number read as US
           {"555-0100", "+15550100", "not a valid phone number"},           // too few digits for the US
           {"+999 1234 5678", "+99912345678", "no valid country code"},
           {"12", "+112", "not a valid phone number"},
           {"call me maybe 5", "5", "not a phone number"},
       }) {
    const auto got = NormalizeIdentifierChecked("phone", c.in, us);
    EXPECT_EQ(got.value, c.value) << c.in;
    ASSERT_TRUE(got.not_linkable) << c.in;
    EXPECT_EQ(got.not_linkable->rfind(c.why, 0), 0u) << c.in << ": " << *got.not_linkable;
  }
  EXPECT_EQ(NormalizeIdentifier("phone", "call me"), "");  // nothing left: the caller reports it empty
}

TEST(Normalize, EmailProviderRules) {
  const IdentifierRules rules;
  struct Case {
    const char* in;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {"Jane.Doe+news@Gmail.com", "janedoe@gmail.com"},
           {"j.a.n.e.doe@googlemail.com", "janedoe@gmail.com"},
           {"jane+work@outlook.com", "jane@outlook.com"},
           {"jane+work@icloud.com", "jane@icloud.com"},
           {"jane.doe+crm@acme.io", "jane.doe+crm@acme.io"},  // a company's own rules are unknown: kept
           {"+tag@gmail.com", "+tag@gmail.com"},              // nothing before the tag: kept as is
           {"no-at-sign", "no-at-sign"},
       }) {
    EXPECT_EQ(NormalizeIdentifier("email", c.in, rules), c.want) << c.in;
  }
  IdentifierRules off;
  off.provider_rules = false;
  EXPECT_EQ(NormalizeIdentifier("email", "Jane.Doe+news@Gmail.com", off), "jane.doe+news@gmail.com");
  IdentifierRules extra;
  extra.plus_tag_providers.insert("acme.io");
  EXPECT_EQ(NormalizeIdentifier("email", "jane.doe+crm@acme.io", extra), "jane.doe@acme.io");
}

TEST(Normalize, RoleAccountsAndFreeMailDomains) {
  IdentifierRules rules;
  for (const char* local : {"support", "info", "sales", "billing", "noreply", "no-reply", "admin", "hello", "contact",
                            "team", "support+eu"}) {
    EXPECT_TRUE(rules.IsRoleAccount(local)) << local;
  }
  EXPECT_FALSE(rules.IsRoleAccount("jane"));
  EXPECT_FALSE(rules.IsRoleAccount("supportive"));
  rules.extra_role_accounts.insert("frontdesk");
  EXPECT_TRUE(rules.IsRoleAccount("frontdesk"));
  rules.role_accounts = false;
  EXPECT_FALSE(rules.IsRoleAccount("support"));

  IdentifierRules mail;
  for (const char* d : {"gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me"}) {
    EXPECT_TRUE(mail.IsFreeMailDomain(d)) << d;
  }
  EXPECT_FALSE(mail.IsFreeMailDomain("acme.io"));
  mail.extra_free_mail_domains.insert("mail.example");
  EXPECT_TRUE(mail.IsFreeMailDomain("mail.example"));
  mail.free_mail_builtin = false;
  EXPECT_FALSE(mail.IsFreeMailDomain("gmail.com"));
  EXPECT_TRUE(mail.IsFreeMailDomain("mail.example"));
}

TEST(Normalize, PhoneRegions) {
  EXPECT_TRUE(IsKnownPhoneRegion("US"));
  EXPECT_TRUE(IsKnownPhoneRegion("GB"));
  EXPECT_FALSE(IsKnownPhoneRegion("XX"));
  EXPECT_FALSE(IsKnownPhoneRegion("us"));  // the flag upper-cases before asking
}

TEST(Normalize, OtherTypesAreOnlyTrimmed) { EXPECT_EQ(NormalizeIdentifier("user_id", "  AbC-12 "), "AbC-12"); }

TEST(Normalize, IdentifierTypeGrammar) {
  EXPECT_TRUE(IsValidIdentifierType("email"));
  EXPECT_TRUE(IsValidIdentifierType("shopify_id2"));
  EXPECT_FALSE(IsValidIdentifierType(""));
  EXPECT_FALSE(IsValidIdentifierType("Email"));
  EXPECT_FALSE(IsValidIdentifierType("e-mail"));
  EXPECT_FALSE(IsValidIdentifierType(std::string(65, 'a')));
  EXPECT_TRUE(IsValidIdentifierType(std::string(64, 'a')));
}

}  // namespace
}  // namespace nexus::resolver
