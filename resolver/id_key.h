#pragma once

#include <compare>
#include <cstddef>
#include <string>

namespace nexus::resolver {

/// A normalized identifier: (type, value).
struct IdKey {
  std::string type;
  std::string value;
  bool operator==(const IdKey&) const = default;
  auto operator<=>(const IdKey&) const = default;
};
struct IdKeyHash {
  size_t operator()(const IdKey& k) const noexcept;
};

}  // namespace nexus::resolver
