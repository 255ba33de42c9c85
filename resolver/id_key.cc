#include "resolver/id_key.h"

#include <functional>

namespace nexus::resolver {

size_t IdKeyHash::operator()(const IdKey& k) const noexcept {
  const size_t h1 = std::hash<std::string>{}(k.type);
  const size_t h2 = std::hash<std::string>{}(k.value);
  return h2 ^ (h1 + 0x9e3779b97f4a7c15ULL + (h2 << 6) + (h2 >> 2));
}

}  // namespace nexus::resolver
