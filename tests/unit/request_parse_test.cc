// The strict request parsers (issue 12 item 10) and JSON escaping of raw input.
#include "server/request_parse.h"

#include <gtest/gtest.h>

#include "common/log.h"

namespace nexus::server {
namespace {

TEST(StrictJson, AcceptsStandardJson) {
  for (const char* ok : {"{}", "[]", "{\"n\":null,\"a\":[1,-2.5e3,true,false,{\"b\":\"\\u00e9\\n\"}]}", " \"x\" ", "0",
                         "{\"persons\":[{\"identifiers\":[]}]}", "\"caf\xc3\xa9\""}) {
    EXPECT_TRUE(CheckStrictJson(ok).ok()) << ok << ": " << CheckStrictJson(ok).error_message();
  }
}

TEST(StrictJson, RejectsWhatProtobufsParserToleratedNamingTheProblem) {
  const std::pair<const char*, const char*> cases[] = {
      {"{'events':[]}", "object key not in double quotes"},
      {"{events:[]}", "object key not in double quotes"},
      {"{\"events\":[1,]}", "trailing comma"},
      {"{\"events\":[],}", "trailing comma"},
      {"{\"a\":'x'}", "single-quoted"},
      {"{\"persons\":[null]}", "null in a list"},
      {"{\"a\":1} x", "unexpected data after the value"},
      {"{\"a\":01}", "expected ',' or '}'"},
      {"{\"a\":\"\xff\"}", "invalid UTF-8"},
      {"{\"a\":\"\xc0\xaf\"}", "invalid UTF-8"},      // overlong
      {"{\"a\":\"\xed\xa0\x80\"}", "invalid UTF-8"},  // surrogate
      {"{\"a\":\"tab\there\"}", "control character"},
      {"{\"a\":\"\\x41\"}", "bad escape"},
      {"{\"a\":NaN}", "unexpected character"},
      {"", "unexpected end"},
      {"{\"a\":1 /* c */}", "expected ',' or '}'"},
  };
  for (const auto& [body, why] : cases) {
    const auto s = CheckStrictJson(body);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << body;
    EXPECT_NE(s.error_message().find(why), std::string::npos) << body << " -> " << s.error_message();
  }
  std::string deep(kMaxJsonDepth + 1, '[');
  deep += std::string(kMaxJsonDepth + 1, ']');
  EXPECT_NE(CheckStrictJson(deep).error_message().find("nested deeper"), std::string::npos);
}

TEST(PageSizeParam, DigitsOnly) {
  int32_t n = -7;
  ASSERT_TRUE(ParsePageSizeParam("25", &n).ok());
  EXPECT_EQ(n, 25);
  ASSERT_TRUE(ParsePageSizeParam("0", &n).ok());
  EXPECT_EQ(n, 0);
  for (const char* bad : {"-1", "5abc", "0x10", "1e3", "-2147483648", "2147483648", " 5", "+5", "", "1000001",
                          "99999999999999999999", "5.0"}) {
    const auto s = ParsePageSizeParam(bad, &n);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("page_size"), std::string::npos);
  }
}

TEST(BoolParam, TrueFalseOrAnErrorNamingTheField) {
  bool v = false;
  for (const char* yes : {"true", "1"}) {
    v = false;
    ASSERT_TRUE(ParseBoolParam("dry_run", yes, &v).ok());
    EXPECT_TRUE(v) << yes;
  }
  for (const char* no : {"false", "0", ""}) {
    v = true;
    ASSERT_TRUE(ParseBoolParam("dry_run", no, &v).ok());
    EXPECT_FALSE(v) << no;
  }
  for (const char* bad : {"maybe", "TRUE", "yes", "2"}) {
    const auto s = ParseBoolParam("dry_run", bad, &v);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_EQ(s.error_message(), "dry_run: must be true or false");
  }
}

TEST(EntityId, NulControlLengthAndUtf8AreRejectedWithoutEchoingTheId) {
  EXPECT_TRUE(CheckEntityId("person_id", "p_01HZX").ok());
  const std::string with_nul("p_01HZX\0junk", 12);
  EXPECT_NE(CheckEntityId("person_id", with_nul).error_message().find("control character"), std::string::npos);
  const std::string long_id(kMaxEntityIdBytes + 1, 'q');
  const auto s = CheckEntityId("person_id", long_id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().find("qqqq"), std::string::npos) << s.error_message();
  EXPECT_FALSE(CheckEntityId("person_id", "\xff").ok());
  EXPECT_EQ(CheckEntityId("group_id", "").error_message(), "group_id: missing");
  EXPECT_EQ(ShortId(std::string(100, 'a')), std::string(40, 'a') + "...");
}

TEST(JsonEscape, OutputIsAlwaysValidUtf8) {
  EXPECT_TRUE(IsValidUtf8(log::JsonEscape("bad \xff\xfe bytes \xc3")));
  EXPECT_EQ(log::JsonEscape("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(log::JsonEscape(std::string("a\0b", 3)), "a\\u0000b");
  EXPECT_TRUE(CheckStrictJson("\"" + log::JsonEscape("\x80\"\\\x01\xed\xa0\x80") + "\"").ok());
}

}  // namespace
}  // namespace nexus::server
