// Ingest request conversion: the edges of timestamps (issue 12 item 11).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

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

}  // namespace
}  // namespace nexus::server
