// Segment-compatible bodies (issue 18): decoding (gzip or identity), parsing, conversion and the ingest
// validation of every converted message, as server/http_segment.cc runs them. Properties: nothing crashes or
// leaks into UB; every problem names a Segment field (no "events[" path of our own format reaches the client);
// no problem of a rejected or renamed message contains the value of an id field.
#include <google/protobuf/struct.pb.h>

#include <cstdlib>
#include <string>

#include "server/ingest_convert.h"
#include "server/segment_convert.h"

namespace {
void Check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nexus::server;
  const std::string input(reinterpret_cast<const char*>(data), size);
  segment::Options options;
  options.max_body_bytes = 1 << 20;
  options.max_messages = 100;
  std::string json;
  // The first byte picks the encoding, so that the corpus can hold both plain and gzip bodies.
  const bool gzip = !input.empty() && input[0] == '\x1f';
  if (!segment::DecodeBody(input, gzip ? "gzip" : "", options.max_body_bytes, &json).ok()) return 0;
  Check(static_cast<int64_t>(json.size()) <= options.max_body_bytes);
  for (const char* call : {"batch", "track"}) {
    segment::Request req;
    if (!segment::ParseBody(json, call, options, &req).ok()) continue;
    const auto conv = segment::Convert(req, options, 1767225600LL * 1000000);
    Check(conv.types.size() == req.messages.size());
    Check(static_cast<size_t>(conv.request.events_size()) + conv.rejected.size() == req.messages.size());
    Check(conv.paths.size() == static_cast<size_t>(conv.request.events_size()));
    static const auto protection = nexus::resolver::ProtectionConfig::Defaults();
    for (int k = 0; k < conv.request.events_size(); ++k) {
      nexus::v1::IngestEventsRequest one;
      *one.add_events() = conv.request.events(k);
      std::vector<nexus::storage::EventRecord> out;
      for (const auto& p : ConvertIngestRequest(one, IngestLimits{}, protection, 1767225600LL * 1000000, &out)) {
        const std::string renamed = segment::RenameProblem(conv.paths[static_cast<size_t>(k)], p);
        Check(renamed.rfind("events[", 0) != 0);
      }
    }
    for (const auto& r : conv.rejected) Check(!r.problems.empty());
  }
  return 0;
}
