// Ingest conversion of any decodable IngestEventsRequest (the gRPC path). Properties: every problem names a
// path and says what is wrong; a request without problems yields one record per event, each timestamp in range.
#include <cstdlib>
#include <string>

#include "server/ingest_convert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nexus::v1::IngestEventsRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  static const auto protection = nexus::resolver::ProtectionConfig::Defaults();
  nexus::server::IngestLimits limits;
  limits.max_events_per_request = 50;  // keep iterations fast
  const int64_t now_us = 1767225600LL * 1000000;
  std::vector<nexus::storage::EventRecord> out;
  const auto problems = nexus::server::ConvertIngestRequest(req, limits, protection, now_us, &out);
  for (const auto& p : problems) {
    if (p.find(": ") == std::string::npos) std::abort();
  }
  if (problems.empty()) {
    if (static_cast<int>(out.size()) != req.events_size()) std::abort();
    for (const auto& r : out) {
      if (r.occurred_at_us < 0 || r.occurred_at_us > now_us + 367LL * 24 * 3600 * 1000000) std::abort();
    }
  }
  return 0;
}
