#include "common/hash.h"

namespace nexus {
namespace {
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
}  // namespace

uint64_t StableHash64(std::string_view data, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ Mix(seed + 0x9e3779b97f4a7c15ULL);
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return Mix(h ^ data.size());
}

std::string StableId128(std::string_view data) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // Crockford base32
  const uint64_t hi = StableHash64(data, 1);
  const uint64_t lo = StableHash64(data, 2);
  std::string out(26, '0');
  // 128 bits -> 26 base32 digits (130 bits, top 2 bits zero).
  unsigned __int128 v = (static_cast<unsigned __int128>(hi) << 64) | lo;
  for (int i = 25; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kAlphabet[static_cast<unsigned>(v & 31)];
    v >>= 5;
  }
  return out;
}

}  // namespace nexus
