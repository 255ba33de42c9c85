#include <gtest/gtest.h>

#include "resolver/normalize.h"

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

TEST(Normalize, PhoneKeepsLeadingPlusAndDigits) {
  EXPECT_EQ(NormalizeIdentifier("phone", " +1 (555) 010-9999 "), "+15550109999");
  EXPECT_EQ(NormalizeIdentifier("phone", "555.010.9999"), "5550109999");
  EXPECT_EQ(NormalizeIdentifier("phone", "call me"), "");
}

TEST(Normalize, OtherTypesAreOnlyTrimmed) {
  EXPECT_EQ(NormalizeIdentifier("user_id", "  AbC-12 "), "AbC-12");
}

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
