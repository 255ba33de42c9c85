#pragma once
// The support page's static files (server/ui/*), embedded into the binary by CMake (generated ui_assets.cc in the
// build directory): nothing is read from disk or fetched from the network at run time.

#include <cstddef>
#include <string_view>
#include <vector>

namespace nexus::server {

struct UiAsset {
  std::string_view name;  ///< file name under server/ui ("index.html")
  std::string_view content;
};

/// Every embedded file, sorted by name.
const std::vector<UiAsset>& UiAssets();

}  // namespace nexus::server
