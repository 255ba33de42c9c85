// Ingest request conversion: the edges of timestamps (issue 12 item 11).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>

#include "server/ingest_service.h"

namespace nexus::server {
namespace {

v1::IngestEventsRequest OneEvent(int64_t seconds, int32_t nanos = 0) {
  v1::IngestEventsRequest req;
  auto* e = req.add_events();
  e->set_event_id("e1");
  e->set_event_name("n");
  e->set_event_type("t");
  e->set_source("s");
  e->mutable_occurred_at()->set_seconds(seconds);
  e->mutable_occurred_at()->set_nanos(nanos);
  auto* id = e->add_persons()->add_identifiers();
  id->set_type("email");
  id->set_value("a@example.com");
  return req;
}

constexpr int64_t kNowUs = 1767225600LL * 1000000;  // 2026-01-01

// seconds * 10^6 used to be computed before the range check: signed overflow (undefined behaviour; the UBSan
// run aborts on it) for |seconds| > 9.2e12.
TEST(IngestConvert, HugeTimestampsAreRejectedWithoutOverflow) {
  for (int64_t s : {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(), int64_t{1} << 62,
                    -(int64_t{1} << 62), int64_t{9300000000000}}) {
    std::vector<storage::EventRecord> out;
    const auto problems =
        ConvertIngestRequest(OneEvent(s), IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
    ASSERT_EQ(problems.size(), 1u) << s;
    EXPECT_NE(problems[0].find("events[0].occurred_at: absurd timestamp"), std::string::npos) << problems[0];
  }
}

TEST(IngestConvert, EdgesOfTheAcceptedRangeConvertExactly) {
  std::vector<storage::EventRecord> out;
  ASSERT_TRUE(ConvertIngestRequest(OneEvent(0, 999999999), IngestLimits{}, resolver::ProtectionConfig::Unlimited(),
                                   kNowUs, &out)
                  .empty());
  EXPECT_EQ(out[0].occurred_at_us, 999999);
  ASSERT_TRUE(
      ConvertIngestRequest(OneEvent(1767225600), IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out)
          .empty());
  EXPECT_EQ(out[0].occurred_at_us, kNowUs);
  EXPECT_FALSE(ConvertIngestRequest(OneEvent(-1), IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out)
                   .empty());
}

// Found by fuzz_ingest_convert: past 200 problems the list ended with a line that named no path, unlike every
// other problem ("<path>: <what>").
TEST(IngestConvert, TruncatedProblemListStillNamesWhereEachLineApplies) {
  v1::IngestEventsRequest req;
  for (int i = 0; i < 150; ++i) {
    auto* e = req.add_events();  // each: event_id, event_name, event_type, source and occurred_at missing
    e->add_persons()->add_identifiers();
  }
  std::vector<storage::EventRecord> out;
  const auto problems =
      ConvertIngestRequest(req, IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
  ASSERT_EQ(problems.size(), 201u);
  for (const auto& p : problems) EXPECT_NE(p.find(": "), std::string::npos) << p;
  EXPECT_EQ(problems.back(), "request: more problems not listed (only the first 200 are)");
}

// Typed trait values (issue 14): strings, numbers, booleans and null are stored with their type; nested objects
// and lists are rejected with the path of the trait, never its value.
TEST(IngestConvert, TypedTraitValuesAreStoredWithTheirType) {
  v1::IngestEventsRequest req = OneEvent(1700000000);
  auto* m = req.mutable_events(0)->mutable_persons(0);
  (*m->mutable_traits())["legacy"] = "text";
  auto& tv = *m->mutable_trait_values();
  tv["age"].set_number_value(42);
  tv["score"].set_number_value(0.1);
  tv["big"].set_number_value(1e21);
  tv["vip"].set_bool_value(true);
  tv["churned"].set_bool_value(false);
  tv["title"].set_null_value(google::protobuf::NULL_VALUE);
  tv["nickname"].set_string_value("");
  std::vector<storage::EventRecord> out;
  const auto problems =
      ConvertIngestRequest(req, IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
  ASSERT_TRUE(problems.empty()) << problems[0];
  struct Want {
    std::optional<std::string> value;
    storage::TraitType type;
  };
  const std::map<std::string, Want> want = {
      {"age", {"42", storage::TraitType::kNumber}},         {"big", {"1e+21", storage::TraitType::kNumber}},
      {"churned", {"false", storage::TraitType::kBoolean}}, {"legacy", {"text", storage::TraitType::kString}},
      {"nickname", {"", storage::TraitType::kString}},  // an empty string is a value, not an unset
      {"score", {"0.1", storage::TraitType::kNumber}},      {"title", {std::nullopt, storage::TraitType::kNull}},
      {"vip", {"true", storage::TraitType::kBoolean}},
  };
  ASSERT_EQ(out[0].person_traits.size(), want.size());
  std::vector<std::string> order;
  for (const auto& t : out[0].person_traits) {
    order.push_back(t.name);
    ASSERT_TRUE(want.count(t.name)) << t.name;
    EXPECT_EQ(t.value, want.at(t.name).value) << t.name;
    EXPECT_EQ(t.type, want.at(t.name).type) << t.name;
  }
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end())) << "rows in name order (deterministic row ids)";
}

TEST(IngestConvert, NestedAndInvalidTraitValuesAreRejectedByPath) {
  struct Case {
    std::function<void(google::protobuf::Value*)> set;
    std::string want;
  };
  const std::vector<Case> cases = {
      {[](google::protobuf::Value* v) {
         (*v->mutable_struct_value()->mutable_fields())["secret"].set_string_value("x");
       },
       "events[0].persons[0].traits[address]: a nested object is not a trait value"},
      {[](google::protobuf::Value* v) { v->mutable_list_value()->add_values()->set_string_value("secret"); },
       "events[0].persons[0].traits[address]: a list is not a trait value"},
      {[](google::protobuf::Value* v) { v->set_number_value(std::numeric_limits<double>::infinity()); },
       "events[0].persons[0].traits[address]: not a finite number"},
      {[](google::protobuf::Value*) {}, "events[0].persons[0].traits[address]: no value"},
  };
  for (const auto& c : cases) {
    v1::IngestEventsRequest req = OneEvent(1700000000);
    c.set(&(*req.mutable_events(0)->mutable_persons(0)->mutable_trait_values())["address"]);
    std::vector<storage::EventRecord> out;
    const auto problems =
        ConvertIngestRequest(req, IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
    ASSERT_EQ(problems.size(), 1u) << c.want;
    EXPECT_EQ(problems[0].rfind(c.want, 0), 0u) << problems[0];
    EXPECT_EQ(problems[0].find("secret"), std::string::npos) << "no trait value in errors: " << problems[0];
  }
  // A name sent both as a string trait and as a typed value.
  v1::IngestEventsRequest req = OneEvent(1700000000);
  (*req.mutable_events(0)->mutable_persons(0)->mutable_traits())["age"] = "41";
  (*req.mutable_events(0)->mutable_persons(0)->mutable_trait_values())["age"].set_number_value(42);
  std::vector<storage::EventRecord> out;
  const auto problems =
      ConvertIngestRequest(req, IngestLimits{}, resolver::ProtectionConfig::Unlimited(), kNowUs, &out);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("events[0].persons[0].traits[age]: set both"), std::string::npos) << problems[0];
  // Both maps count towards the per-mention limit.
  IngestLimits limits;
  limits.max_traits_per_mention = 1;
  req = OneEvent(1700000000);
  (*req.mutable_events(0)->mutable_persons(0)->mutable_traits())["a"] = "1";
  (*req.mutable_events(0)->mutable_persons(0)->mutable_trait_values())["b"].set_bool_value(true);
  EXPECT_EQ(ConvertIngestRequest(req, limits, resolver::ProtectionConfig::Unlimited(), kNowUs, &out).size(), 1u);
}

}  // namespace
}  // namespace nexus::server
