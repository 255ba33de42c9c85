#pragma once
// RFC 3339 times as protobuf Timestamps, for every reader of times in text (HTTP parameters, Segment messages,
// nexusctl's CSV import).

#include <google/protobuf/timestamp.pb.h>

#include <optional>
#include <string>

namespace nexus {

/// An RFC 3339 time with a zone offset (google::protobuf::util::TimeUtil::FromString's syntax), or nullopt. A time
/// the offset moves outside 0001-01-01T00:00:00Z..9999-12-31T23:59:59Z (e.g. 0001-01-01T00:00:00+02:00) is
/// refused too: protobuf's parser throws on it after a CHECK (a Segment message with one stopped the fuzzer).
std::optional<google::protobuf::Timestamp> ParseRfc3339(const std::string& text);

}  // namespace nexus
