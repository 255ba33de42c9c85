#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace nexus {

/// A stable 64-bit hash (FNV-1a followed by a splitmix finalizer). Stable across builds and platforms:
/// used for ids that must not change between runs, never for security.
uint64_t StableHash64(std::string_view data, uint64_t seed = 0);

/// A 26-character lower-case base32 rendering of a 128-bit stable hash of `data`.
std::string StableId128(std::string_view data);

}  // namespace nexus
