// Segment tracking API -> ingest request (issue 18): every call type, the edge cases the docs promise, and the
// problems a client sees (index and field, never a value).
#include "server/segment_convert.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <string>

#include "server/ingest_convert.h"

namespace nexus::server::segment {
namespace {

constexpr int64_t kNowUs = 1767225600LL * 1000000;  // 2026-01-01T00:00:00Z

Converted ConvertBody(const std::string& call, const std::string& json, const Options& options = {}) {
  Request req;
  const grpc::Status s = ParseBody(json, call, options, &req);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return Convert(req, options, kNowUs);
}

/// "type:value" of every identifier of a mention, in order.
std::vector<std::string> Ids(const v1::EntityMention& m) {
  std::vector<std::string> out;
  for (const auto& id : m.identifiers()) out.push_back(id.type() + ":" + id.value());
  return out;
}

/// The mention's traits as text (typed values rendered; null as "null").
std::map<std::string, std::string> Traits(const v1::EntityMention& m) {
  std::map<std::string, std::string> out(m.traits().begin(), m.traits().end());
  for (const auto& [name, v] : m.trait_values()) {
    std::string text = "null";
    if (!v.has_null_value()) {
      EXPECT_TRUE(TraitText(v, &text)) << name;
    }
    out[name] = text;
  }
  return out;
}

std::string AllProblems(const Converted& c) {
  std::string out;
  for (const auto& r : c.rejected) {
    for (const auto& p : r.problems) out += "[" + std::to_string(r.index) + "] " + p + "\n";
  }
  return out;
}

TEST(SegmentConvert, IdentifyLinksUserIdAnonymousIdAndIdentifyingTraitsOnOneMention) {
  const auto c = ConvertBody("identify", R"({"messageId":"m1","userId":"u1","anonymousId":"a1",
      "timestamp":"2026-05-01T12:00:00.250Z",
      "traits":{"email":"Ann@Example.com","phone":"+49 30 1234","plan":"pro","logins":3,"ratio":2.5,"vip":true,
                "address":{"city":"Berlin"},"tags":["a","b"],"gone":null,"title":"CTO"},
      "context":{"traits":{"plan":"free","timezone":"Europe/Berlin"}}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  const auto& e = c.request.events(0);
  EXPECT_EQ(e.event_id(), "m1");
  EXPECT_EQ(e.event_type(), "identify");
  EXPECT_EQ(e.event_name(), "identify");
  EXPECT_EQ(e.source(), "segment");
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(e.occurred_at()), "2026-05-01T12:00:00.250Z");
  ASSERT_EQ(e.persons_size(), 1);
  EXPECT_EQ(e.persons(0).edge_id(), "");  // derived from the event id: one edge for all of them
  EXPECT_EQ(e.persons(0).role(), "user");
  EXPECT_EQ(Ids(e.persons(0)),
            (std::vector<std::string>{"user_id:u1", "anonymous_id:a1", "email:Ann@Example.com", "phone:+49 30 1234"}));
  // traits win over context.traits; numbers and booleans as JSON text; objects, lists and null are not stored;
  // identifying traits are identifiers, not traits.
  EXPECT_EQ(Traits(e.persons(0)), (std::map<std::string, std::string>{{"gone", "null"},  // null clears
                                                                      {"logins", "3"},
                                                                      {"plan", "pro"},
                                                                      {"ratio", "2.5"},
                                                                      {"timezone", "Europe/Berlin"},
                                                                      {"title", "CTO"},
                                                                      {"vip", "true"}}));
  EXPECT_EQ(e.groups_size(), 0);
  EXPECT_EQ(e.memberships_size(), 0);
  EXPECT_TRUE(c.rejected.empty());
}

TEST(SegmentConvert, IdentityTraitsAreConfigurable) {
  Options o;
  o.identity_traits = {"email"};
  const auto c =
      ConvertBody("identify", R"({"messageId":"m1","userId":"u1","traits":{"email":"a@b.c","phone":"123"}})", o);
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  EXPECT_EQ(Ids(c.request.events(0).persons(0)), (std::vector<std::string>{"user_id:u1", "email:a@b.c"}));
  EXPECT_EQ(Traits(c.request.events(0).persons(0)), (std::map<std::string, std::string>{{"phone", "123"}}));
}

TEST(SegmentConvert, NameFromFirstAndLastNameWhenNotGiven) {
  const auto c =
      ConvertBody("identify", R"({"messageId":"m1","userId":"u1","traits":{"firstName":"Ann","lastName":"Lee"}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  EXPECT_EQ(Traits(c.request.events(0).persons(0)).at("name"), "Ann Lee");
}

TEST(SegmentConvert, AnonymousOnlyTrackWithRevenue) {
  const auto c = ConvertBody("track", R"({"messageId":"m2","anonymousId":"a9","event":"Order Completed",
      "originalTimestamp":"2026-05-01T12:00:00Z","properties":{"revenue":19.99,"currency":"EUR","value":5},
      "traits":{"email":"ignored@example.com"}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  const auto& e = c.request.events(0);
  EXPECT_EQ(e.event_name(), "Order Completed");
  EXPECT_EQ(e.event_type(), "track");
  EXPECT_EQ(google::protobuf::util::TimeUtil::ToString(e.occurred_at()), "2026-05-01T12:00:00Z");
  ASSERT_TRUE(e.has_value());
  EXPECT_DOUBLE_EQ(e.value(), 19.99);  // revenue wins over value
  EXPECT_EQ(e.value_unit(), "EUR");
  // A track's `traits` is not part of the spec: only context.traits describe the user there.
  EXPECT_EQ(Ids(e.persons(0)), (std::vector<std::string>{"anonymous_id:a9"}));
  EXPECT_TRUE(e.persons(0).traits().empty());
}

TEST(SegmentConvert, TrackValueUnits) {
  auto one = [](const std::string& props) {
    auto c = ConvertBody("track", R"({"messageId":"m","userId":"u","event":"E","properties":)" + props + "}");
    EXPECT_EQ(c.request.events_size(), 1) << AllProblems(c);
    return c.request.events_size() ? c.request.events(0) : v1::Event();
  };
  auto e = one(R"({"revenue":10})");
  EXPECT_DOUBLE_EQ(e.value(), 10);
  EXPECT_EQ(e.value_unit(), "USD");  // the spec: revenue without currency is in US dollars
  e = one(R"({"value":3})");
  EXPECT_DOUBLE_EQ(e.value(), 3);
  EXPECT_EQ(e.value_unit(), "");
  e = one(R"({"revenue":"9.50","currency":"GBP"})");
  EXPECT_DOUBLE_EQ(e.value(), 9.5);
  EXPECT_EQ(e.value_unit(), "GBP");
  e = one(R"({"plan":"x"})");
  EXPECT_FALSE(e.has_value());

  const auto bad =
      ConvertBody("track", R"({"messageId":"m","userId":"u","event":"E","properties":{"revenue":"lots"}})");
  EXPECT_EQ(bad.request.events_size(), 0);
  EXPECT_EQ(AllProblems(bad), "[0] properties.revenue: not a number\n");
}

TEST(SegmentConvert, GroupMakesGroupIdentifiersTraitsAndMembership) {
  const auto c = ConvertBody("group", R"({"messageId":"m3","userId":"u1","groupId":"g1",
      "traits":{"name":"Acme","website":"https://www.Acme.com/about","industry":"Tools","employees":120,
                "plan":"enterprise","address":{"city":"X"}}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  const auto& e = c.request.events(0);
  EXPECT_EQ(e.event_type(), "group");
  ASSERT_EQ(e.groups_size(), 1);
  // The domain is normalized by the ingest (like every identifier): the raw value goes in.
  EXPECT_EQ(Ids(e.groups(0)), (std::vector<std::string>{"group_id:g1", "domain:https://www.Acme.com/about"}));
  EXPECT_EQ(Traits(e.groups(0)),
            (std::map<std::string, std::string>{
                {"company_size", "120"}, {"industry", "Tools"}, {"name", "Acme"}, {"plan", "enterprise"}}));
  // The group's traits are not the user's.
  ASSERT_EQ(e.persons_size(), 1);
  EXPECT_EQ(Ids(e.persons(0)), (std::vector<std::string>{"user_id:u1"}));
  EXPECT_TRUE(e.persons(0).traits().empty());
  ASSERT_EQ(e.memberships_size(), 1);
  EXPECT_EQ(e.memberships(0).person().type(), "user_id");
  EXPECT_EQ(e.memberships(0).person().value(), "u1");
  EXPECT_EQ(e.memberships(0).group().type(), "group_id");
  EXPECT_EQ(e.memberships(0).group().value(), "g1");
  EXPECT_EQ(e.memberships(0).role(), "member");
}

TEST(SegmentConvert, GroupWithoutUserIdUsesTheAnonymousId) {
  const auto c =
      ConvertBody("group", R"({"messageId":"m4","anonymousId":"a1","groupId":"g1","traits":{"domain":"acme.com"}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  const auto& e = c.request.events(0);
  ASSERT_EQ(e.memberships_size(), 1);
  EXPECT_EQ(e.memberships(0).person().type(), "anonymous_id");
  EXPECT_EQ(e.memberships(0).person().value(), "a1");
  EXPECT_EQ(Ids(e.groups(0)), (std::vector<std::string>{"group_id:g1", "domain:acme.com"}));

  const auto none = ConvertBody("group", R"({"messageId":"m5","groupId":"g1"})");
  EXPECT_EQ(AllProblems(none), "[0] userId: missing, and so is anonymousId (every message needs one of them)\n");
  const auto nogroup = ConvertBody("group", R"({"messageId":"m6","userId":"u1"})");
  EXPECT_EQ(AllProblems(nogroup), "[0] groupId: missing (group needs the groupId)\n");
}

TEST(SegmentConvert, AliasIsOneEdgeAndPreviousIdTypesAreConfigurable) {
  const std::string chain = R"({"batch":[
      {"type":"alias","messageId":"al1","previousId":"a1","userId":"u1"},
      {"type":"alias","messageId":"al2","previousId":"u1","userId":"u2"}]})";
  // Default: previousId is an anonymous id (anonymous visitor -> known user).
  const auto c = ConvertBody("batch", chain);
  ASSERT_EQ(c.request.events_size(), 2) << AllProblems(c);
  EXPECT_EQ(Ids(c.request.events(0).persons(0)), (std::vector<std::string>{"user_id:u1", "anonymous_id:a1"}));
  EXPECT_EQ(Ids(c.request.events(1).persons(0)), (std::vector<std::string>{"user_id:u2", "anonymous_id:u1"}));
  EXPECT_EQ(c.request.events(0).event_type(), "alias");
  EXPECT_EQ(c.request.events(0).event_name(), "alias");
  // Both types: a chain a1 -> u1 -> u2 shares user_id:u1 between the two edges, so all three link.
  Options both;
  both.previous_id_types = {"anonymous_id", "user_id"};
  const auto b = ConvertBody("batch", chain, both);
  ASSERT_EQ(b.request.events_size(), 2) << AllProblems(b);
  EXPECT_EQ(Ids(b.request.events(0).persons(0)),
            (std::vector<std::string>{"user_id:u1", "anonymous_id:a1", "user_id:a1"}));
  EXPECT_EQ(Ids(b.request.events(1).persons(0)),
            (std::vector<std::string>{"user_id:u2", "anonymous_id:u1", "user_id:u1"}));

  const auto bad = ConvertBody("alias", R"({"messageId":"al3","anonymousId":"a1","userId":"u1"})");
  EXPECT_EQ(AllProblems(bad), "[0] previousId: missing (alias needs userId and previousId)\n");
  const auto bad2 = ConvertBody("alias", R"({"messageId":"al4","previousId":"a1","anonymousId":"a2"})");
  EXPECT_EQ(AllProblems(bad2), "[0] userId: missing (alias needs userId and previousId)\n");
}

TEST(SegmentConvert, PageAndScreenCarryNameAndCategory) {
  const auto c = ConvertBody("batch", R"({"batch":[
      {"type":"page","messageId":"p1","userId":"u1","name":"Pricing","category":"Docs","properties":{"url":"x"}},
      {"type":"screen","messageId":"s1","userId":"u1","properties":{"name":"Settings","category":"App"}},
      {"type":"page","messageId":"p2","userId":"u1"}]})");
  ASSERT_EQ(c.request.events_size(), 3) << AllProblems(c);
  EXPECT_EQ(c.request.events(0).event_name(), "Pricing");
  EXPECT_EQ(c.request.events(0).event_description(), "Docs");
  EXPECT_EQ(c.request.events(0).event_type(), "page");
  EXPECT_EQ(c.request.events(1).event_name(), "Settings");
  EXPECT_EQ(c.request.events(1).event_description(), "App");
  EXPECT_EQ(c.request.events(1).event_type(), "screen");
  EXPECT_EQ(c.request.events(2).event_name(), "page");  // unnamed page
  EXPECT_EQ(c.request.events(2).event_description(), "");
}

TEST(SegmentConvert, TimestampFallbacks) {
  const auto c = ConvertBody("batch", R"({"batch":[
      {"type":"track","event":"A","messageId":"t1","userId":"u","timestamp":"2026-03-01T10:00:00+02:00",
       "originalTimestamp":"2026-01-01T00:00:00Z"},
      {"type":"track","event":"B","messageId":"t2","userId":"u","originalTimestamp":"2026-02-01T00:00:00Z"},
      {"type":"track","event":"C","messageId":"t3","userId":"u"},
      {"type":"track","event":"D","messageId":"t4","userId":"u","timestamp":"yesterday"},
      {"type":"track","event":"E","messageId":"t5","userId":"u","timestamp":1700000000}]})");
  ASSERT_EQ(c.request.events_size(), 3);
  using google::protobuf::util::TimeUtil;
  EXPECT_EQ(TimeUtil::ToString(c.request.events(0).occurred_at()), "2026-03-01T08:00:00Z");
  EXPECT_EQ(TimeUtil::ToString(c.request.events(1).occurred_at()), "2026-02-01T00:00:00Z");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(c.request.events(2).occurred_at()), kNowUs);  // receive time
  EXPECT_EQ(AllProblems(c),
            "[3] batch[3].timestamp: not an ISO 8601 / RFC 3339 time with a zone (e.g. 2026-05-01T12:00:00.000Z)\n"
            "[4] batch[4].timestamp: not an ISO 8601 / RFC 3339 time with a zone (e.g. 2026-05-01T12:00:00.000Z)\n");
}

TEST(SegmentConvert, BadMessagesAreNamedByIndexAndFieldWithoutValuesAndTheOthersConvert) {
  const auto c = ConvertBody("batch", R"({"batch":[
      {"type":"track","event":"ok","messageId":"g1","userId":"u1"},
      {"type":"track","event":"x","userId":"u1"},
      {"event":"x","messageId":"m","userId":"u1"},
      {"type":"purchase","messageId":"m2","userId":"secret-user"},
      {"type":"track","messageId":"m3","userId":{"id":"secret-user"},"event":"x"},
      {"type":"identify","messageId":"m4"},
      {"type":"track","messageId":"m5","userId":"u1"},
      {"type":"identify","messageId":"m6","userId":"u1","traits":"secret-text"},
      {"type":"track","event":"ok2","messageId":7,"userId":42}]})");
  ASSERT_EQ(c.request.events_size(), 2) << AllProblems(c);
  EXPECT_EQ(c.message_index, (std::vector<int>{0, 8}));
  EXPECT_EQ(c.request.events(1).event_id(), "7");  // numeric ids as their text
  EXPECT_EQ(Ids(c.request.events(1).persons(0)), (std::vector<std::string>{"user_id:42"}));
  EXPECT_EQ(AllProblems(c),
            "[1] batch[1].messageId: missing (it becomes the event_id that makes retries idempotent)\n"
            "[2] batch[2].type: missing (identify, track, group, alias, page or screen)\n"
            "[3] batch[3].type: 'purchase' is not one of identify, track, group, alias, page, screen\n"
            "[4] batch[4].userId: must be a string, not an object\n"
            "[5] batch[5].userId: missing, and so is anonymousId (every message needs one of them)\n"
            "[6] batch[6].event: missing (track needs the event name)\n"
            "[7] batch[7].traits: must be an object, not a string\n");
  EXPECT_EQ(AllProblems(c).find("secret"), std::string::npos);
  EXPECT_EQ(c.types, (std::vector<std::string>{"track", "track", "other", "other", "track", "identify", "track",
                                               "identify", "track"}));
  EXPECT_EQ(c.rejected[2].message_id, "m2");  // index 3
}

TEST(SegmentConvert, SingleCallsTakeTheirTypeFromTheRouteAndNameFieldsWithoutPrefix) {
  const auto c = ConvertBody("track", R"({"type":"identify","messageId":"m","userId":"u","event":"Signed Up"})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  EXPECT_EQ(c.request.events(0).event_type(), "track");
  const auto bad = ConvertBody("track", R"({"userId":"u","event":"Signed Up"})");
  EXPECT_EQ(AllProblems(bad), "[0] messageId: missing (it becomes the event_id that makes retries idempotent)\n");
}

TEST(SegmentConvert, IngestProblemsAreRenamedToSegmentFields) {
  Options o;
  o.source = "web";
  const std::string long_id(2000, 'x');
  const auto c = ConvertBody("batch",
                             R"({"batch":[{"type":"identify","messageId":"m","userId":")" + long_id +
                                 R"(","timestamp":"2300-01-01T00:00:00Z","traits":{"email":"a@b.c","bio":"x"}}]})",
                             o);
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  std::vector<storage::EventRecord> out;
  IngestLimits limits;
  limits.max_text_bytes = 16;
  const auto problems = ConvertIngestRequest(c.request, limits, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
  std::vector<std::string> renamed;
  for (const auto& p : problems) renamed.push_back(RenameProblem(c.paths[0], p));
  EXPECT_EQ(renamed, (std::vector<std::string>{
                         "batch[0].timestamp: absurd timestamp (must be between 1970-01-01 and one year from now)",
                         "batch[0].userId: longer than 1024 bytes"}));
}

TEST(SegmentParse, WholeRequestErrors) {
  Options o;
  o.max_messages = 2;
  Request r;
  auto err = [&](const std::string& call, const std::string& body) {
    const grpc::Status s = ParseBody(body, call, o, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << body;
    return s.error_message();
  };
  EXPECT_NE(err("batch", "{\"batch\": [").find("invalid JSON body"), std::string::npos);
  EXPECT_NE(err("track", "{'a': 1}").find("invalid JSON body"), std::string::npos);
  EXPECT_EQ(err("track", "[1,2]"), "invalid JSON body: the body must be a JSON object");
  EXPECT_EQ(err("batch", "{}"), "batch: missing (the body of /v1/batch is {\"batch\": [...]})");
  EXPECT_EQ(err("batch", R"({"batch":{}})"), "batch: must be a list, not an object");
  EXPECT_EQ(err("import", R"({"batch":[]})"), "batch: empty (send at least one message)");
  EXPECT_EQ(err("batch", R"({"batch":[{},{},{}]})"),
            "batch: 3 messages, at most 2 per request (--max-events-per-request)");
  EXPECT_EQ(err("batch", R"({"batch":[{},"x"]})"), "batch[1]: must be an object, not a string");
}

TEST(SegmentParse, WriteKeyAndBatchContext) {
  Request r;
  ASSERT_TRUE(ParseBody(R"({"writeKey":"wk","context":{"traits":{"plan":"a","tier":"b"}},"batch":[
      {"type":"identify","messageId":"m","userId":"u","context":{"traits":{"plan":"c"}}},
      {"type":"identify","messageId":"n","userId":"v","properties":{"list":[1,null]}}]})",
                        "batch", Options{}, &r)
                  .ok());
  EXPECT_EQ(r.write_key, "wk");
  ASSERT_EQ(r.messages.size(), 2u);
  const auto c = Convert(r, Options{}, kNowUs);
  ASSERT_EQ(c.request.events_size(), 2) << AllProblems(c);
  // The message's own context wins as a whole key (its traits replace the batch's traits).
  EXPECT_EQ(Traits(c.request.events(0).persons(0)), (std::map<std::string, std::string>{{"plan", "c"}}));
  EXPECT_EQ(Traits(c.request.events(1).persons(0)), (std::map<std::string, std::string>{{"plan", "a"}, {"tier", "b"}}));
}

std::string Gzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(SegmentDecode, GzipBodies) {
  const std::string json = R"({"batch":[{"type":"track","event":"E","messageId":"m","userId":"u"}]})";
  std::string out;
  ASSERT_TRUE(DecodeBody(Gzip(json), "gzip", 1 << 20, &out).ok());
  EXPECT_EQ(out, json);
  ASSERT_TRUE(DecodeBody(json, "", 1 << 20, &out).ok());
  EXPECT_EQ(out, json);
  ASSERT_TRUE(DecodeBody(json, "identity", 1 << 20, &out).ok());

  // Corrupt, truncated, trailing data, unknown encoding.
  std::string gz = Gzip(json);
  std::string corrupt = gz;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0x55);
  corrupt[13] = static_cast<char>(corrupt[13] ^ 0x55);
  EXPECT_EQ(DecodeBody(corrupt, "gzip", 1 << 20, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(DecodeBody(gz.substr(0, gz.size() / 2), "gzip", 1 << 20, &out).error_message(),
            "body: truncated gzip data");
  EXPECT_EQ(DecodeBody(gz + "xyz", "gzip", 1 << 20, &out).error_message(),
            "body: data after the end of the gzip stream");
  EXPECT_EQ(DecodeBody(json, "gzip", 1 << 20, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(DecodeBody(json, "br", 1 << 20, &out).error_code(), grpc::StatusCode::UNIMPLEMENTED);

  // A bomb: 8 MB of zeros compress to a few KB; the cap stops the inflation.
  const std::string bomb = Gzip(std::string(8 << 20, '0'));
  EXPECT_LT(bomb.size(), 64u * 1024);
  const grpc::Status s = DecodeBody(bomb, "gzip", 1 << 20, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(s.error_message(), "body: more than 1048576 bytes once decompressed");
}

TEST(SegmentTraits, NumbersAndBooleansKeepTheirTypeAndNullClears) {
  const auto c =
      ConvertBody("identify",
                  R"({"messageId":"m1","userId":"u1","traits":{"logins":3,"vip":true,"title":null,"plan":"pro",
                              "address":{"city":"Oslo"},"tags":["a"]}})");
  ASSERT_EQ(c.request.events_size(), 1) << AllProblems(c);
  const auto& tv = c.request.events(0).persons(0).trait_values();
  ASSERT_TRUE(tv.count("logins"));
  EXPECT_TRUE(tv.at("logins").has_number_value());
  EXPECT_EQ(tv.at("logins").number_value(), 3);
  EXPECT_TRUE(tv.at("vip").bool_value());
  EXPECT_TRUE(tv.at("title").has_null_value());
  EXPECT_EQ(tv.at("plan").string_value(), "pro");
  EXPECT_FALSE(tv.count("address"));
  EXPECT_FALSE(tv.count("tags"));
  EXPECT_TRUE(c.request.events(0).persons(0).traits().empty());  // nothing in the text-only map
}

TEST(SegmentTraits, TextOfValues) {
  google::protobuf::Value v;
  std::string out;
  v.set_number_value(3);
  ASSERT_TRUE(TraitText(v, &out));
  EXPECT_EQ(out, "3");
  v.set_number_value(-2.5);
  ASSERT_TRUE(TraitText(v, &out));
  EXPECT_EQ(out, "-2.5");
  v.set_number_value(1e21);
  ASSERT_TRUE(TraitText(v, &out));
  EXPECT_EQ(out, "1e+21");
  v.set_bool_value(false);
  ASSERT_TRUE(TraitText(v, &out));
  EXPECT_EQ(out, "false");
  v.set_string_value("x");
  ASSERT_TRUE(TraitText(v, &out));
  EXPECT_EQ(out, "x");
  v.set_null_value(google::protobuf::NULL_VALUE);
  EXPECT_FALSE(TraitText(v, &out));
  v.mutable_struct_value();
  EXPECT_FALSE(TraitText(v, &out));
  v.mutable_list_value();
  EXPECT_FALSE(TraitText(v, &out));
}

// What the fuzzer found (fuzz/fuzz_segment): a time that its zone offset moves before year 1 made protobuf's
// parser throw out of Convert. It is a problem naming the field, like any time that does not parse.
TEST(SegmentConvert, ATimeOutOfRangeAfterItsOffsetIsAProblemNotACrash) {
  const auto bad = ConvertBody("track", R"({"messageId":"m","userId":"u","event":"E",
      "originalTimestamp":"1-01-01T00:00:00+02:00"})");
  EXPECT_EQ(bad.request.events_size(), 0);
  EXPECT_EQ(AllProblems(bad),
            "[0] originalTimestamp: not an ISO 8601 / RFC 3339 time with a zone (e.g. 2026-05-01T12:00:00.000Z)\n");
}

}  // namespace
}  // namespace nexus::server::segment
