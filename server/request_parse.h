#pragma once
// One strict parser per request concept (JSON bodies, page sizes, entity ids), shared by gRPC and HTTP.
// Each returns OK or INVALID_ARGUMENT naming the field; none echoes the offending value in full.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace nexus::server {

/// Longest entity id a query accepts (ids nexusd hands out are far shorter).
constexpr size_t kMaxEntityIdBytes = 128;
/// Deepest nesting of a JSON body.
constexpr int kMaxJsonDepth = 64;

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

/// Checks that `body` is one RFC 8259 JSON value and nothing else: double-quoted strings and keys only, no
/// trailing commas, no comments, valid UTF-8, depth at most kMaxJsonDepth, and no `null` inside a list (a
/// list of messages cannot hold one; protobuf's parser dropped it silently). The error names the byte offset.
/// `allow_null_in_lists`: for bodies parsed as google.protobuf.Struct (free-form JSON such as Segment
/// messages), where a null list item is kept as a null value.
grpc::Status CheckStrictJson(std::string_view body, bool allow_null_in_lists = false);

/// A page_size query parameter: decimal digits only (no sign, spaces, hex, exponent, suffix), 0..1,000,000.
grpc::Status ParsePageSizeParam(std::string_view text, int32_t* out);

/// A boolean query parameter `field`: "true" / "1" or "false" / "0" / "" (absent counts as false).
grpc::Status ParseBoolParam(std::string_view field, std::string_view text, bool* out);

/// An entity id (person_id, group_id): present, at most kMaxEntityIdBytes, valid UTF-8, no control characters
/// (a NUL used to truncate the id silently in SQL and return another entity).
grpc::Status CheckEntityId(std::string_view field, std::string_view id);

/// Longest page token accepted (tokens nexusd hands out are far shorter).
constexpr size_t kMaxPageTokenBytes = 1024;

/// Opaque keyset page tokens (base64url of a versioned key). A token is a position, not a snapshot:
/// later pages never repeat or skip rows that existed when the first page was read.
std::string EncodeTimelineToken(int64_t occurred_at_us, const std::string& event_id);
/// nullopt when the token is malformed.
std::optional<std::pair<int64_t, std::string>> DecodeTimelineToken(const std::string& token);
/// Search pages: (score in millionths, entity_id).
std::string EncodeSearchToken(int64_t score_micros, const std::string& entity_id);
std::optional<std::pair<int64_t, std::string>> DecodeSearchToken(const std::string& token);
std::string EncodeMembershipToken(const std::string& after_id);
std::optional<std::string> DecodeMembershipToken(const std::string& token);

/// `id` cut to 40 bytes (at a UTF-8 boundary) with "..." when longer: for error messages.
std::string ShortId(std::string_view id);

}  // namespace nexus::server
