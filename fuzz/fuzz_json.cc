// JSON bodies: the strict syntax check, then protobuf's JSON parser and the ingest conversion, as the HTTP ingest
// route runs them. Property: JsonEscape of any bytes, quoted, is strict JSON (so every error body is valid JSON).
#include <google/protobuf/util/json_util.h>

#include <cstdlib>
#include <string>

#include "common/log.h"
#include "server/ingest_convert.h"
#include "server/request_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string quoted = "\"" + nexus::log::JsonEscape(input) + "\"";
  if (!nexus::server::CheckStrictJson(quoted).ok()) std::abort();
  const grpc::Status st = nexus::server::CheckStrictJson(input);
  if (!st.ok()) {
    if (st.error_message().empty() || st.error_code() != grpc::StatusCode::INVALID_ARGUMENT) std::abort();
    return 0;
  }
  nexus::v1::IngestEventsRequest req;
  google::protobuf::util::JsonParseOptions opts;
  if (!google::protobuf::util::JsonStringToMessage(input, &req, opts).ok()) return 0;
  std::vector<nexus::storage::EventRecord> out;
  static const auto protection = nexus::resolver::ProtectionConfig::Defaults();
  (void)nexus::server::ConvertIngestRequest(req, nexus::server::IngestLimits{}, protection, 1767225600LL * 1000000,
                                            &out);
  return 0;
}
