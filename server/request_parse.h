#pragma once
// One strict parser per request concept (JSON bodies, page sizes, entity ids), shared by gRPC and HTTP.
// Each returns OK or INVALID_ARGUMENT naming the field; none echoes the offending value in full.

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <string>
#include <string_view>

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
grpc::Status CheckStrictJson(std::string_view body);

/// A page_size query parameter: decimal digits only (no sign, spaces, hex, exponent, suffix), 0..1,000,000.
grpc::Status ParsePageSizeParam(std::string_view text, int32_t* out);

/// An entity id (person_id, group_id): present, at most kMaxEntityIdBytes, valid UTF-8, no control characters
/// (a NUL used to truncate the id silently in SQL and return another entity).
grpc::Status CheckEntityId(std::string_view field, std::string_view id);

/// `id` cut to 40 bytes (at a UTF-8 boundary) with "..." when longer: for error messages.
std::string ShortId(std::string_view id);

}  // namespace nexus::server
