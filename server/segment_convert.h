#pragma once
// Segment tracking API (identify, track, group, alias, page, screen, batch, import) -> our ingest request.
// Pure: no I/O and no clock (the caller passes "now"); the HTTP routes (server/http_segment.cc) and the unit
// tests use it. The mapping is documented in docs/API.md, section "Segment-compatible ingestion": keep both in
// step.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nexus/v1/ingest.pb.h"

namespace google::protobuf {
class Struct;
class Value;
}  // namespace google::protobuf

namespace nexus::server::segment {

/// The message types of the spec ("batch" and "import" only carry lists of them).
const std::vector<std::string>& CallTypes();

struct Options {
  std::string source = "segment";                                 ///< the `source` of every event
  std::vector<std::string> identity_traits = {"email", "phone"};  ///< traits that are identifiers of the user
  /// Identifier types an alias's previousId is stored as. The spec does not say whether it was an anonymousId or
  /// an earlier userId; the default matches anonymous ids only, because the default merge protection allows one
  /// user_id per person (an edge with two user ids is quarantined, not merged).
  std::vector<std::string> previous_id_types = {"anonymous_id"};
  int64_t max_body_bytes = 16 << 20;  ///< decompressed body size
  int64_t max_messages = 1000;        ///< messages in one batch
};

/// Decodes an HTTP body by its Content-Encoding: "" / "identity" as is, "gzip" (what the RudderStack SDK sends)
/// and "deflate" through zlib. The decoded size is capped at `max_bytes` (a small gzip bomb cannot inflate past
/// it). INVALID_ARGUMENT (corrupt data), RESOURCE_EXHAUSTED (too large), UNIMPLEMENTED (another encoding).
grpc::Status DecodeBody(std::string_view body, std::string_view content_encoding, int64_t max_bytes, std::string* out);

/// One parsed request.
struct Request {
  bool batch = false;     ///< /v1/batch or /v1/import: problems are named "batch[i].field", else "field"
  std::string write_key;  ///< the body's "writeKey", "" when absent
  std::vector<google::protobuf::Struct> messages;
};

/// Parses a decoded JSON body for the route `call` ("identify", ..., "batch", "import"). Single calls: the body
/// is the message and its type is the route's. Batches: {"batch": [...], "context": {...}, "writeKey": ...};
/// the batch's context is merged under each message's own. Whole-request errors (INVALID_ARGUMENT): not JSON,
/// not an object, "batch" missing / not a list / empty / an item not an object, more than max_messages.
grpc::Status ParseBody(const std::string& json, std::string_view call, const Options& options, Request* out);

/// Ingest problem path prefixes of one event ("events[0].occurred_at") -> the Segment field they came from
/// ("batch[3].timestamp").
using PathMap = std::vector<std::pair<std::string, std::string>>;

/// A message left out, with its problems ("batch[3].userId: must be a string"); never a value in clear.
struct Rejected {
  int index = 0;
  std::string message_id;  ///< "" when absent or unusable
  std::vector<std::string> problems;
};

struct Converted {
  v1::IngestEventsRequest request;  ///< one event per message that converted
  std::vector<int> message_index;   ///< event k came from message message_index[k]
  std::vector<PathMap> paths;       ///< per event, to rename problems the ingest validation finds
  std::vector<Rejected> rejected;   ///< messages that did not convert, by index
  std::vector<std::string> types;   ///< per message: its type for metrics ("other" when unknown)
};

/// Converts every message; a message that cannot be converted is listed in `rejected` and does not stop the
/// others. `now_us`: occurred_at of messages without timestamp and originalTimestamp.
Converted Convert(const Request& request, const Options& options, int64_t now_us);

/// Renames an ingest problem of a one-event request ("events[0].persons[0].identifiers[1].value: longer than
/// 1024 bytes") to the Segment field it came from ("batch[4].traits.email: longer than 1024 bytes").
std::string RenameProblem(const PathMap& paths, const std::string& problem);

/// Whether a Segment trait value is stored: strings, finite numbers and booleans keep their JSON type, and null
/// clears the trait (as in our own ingest); objects and lists are skipped (docs/API.md).
bool StorableTrait(const google::protobuf::Value& value);

/// A trait value's text, where one is needed (identifiers taken from traits, the composed name, the group's
/// domain): strings as they are, numbers and booleans as their JSON text (3, 2.5, true); false for null,
/// objects and lists.
bool TraitText(const google::protobuf::Value& value, std::string* out);

}  // namespace nexus::server::segment
