// Identifier normalization and type validation: "<type>\n<value>" from the input; no crash, no UB.
#include <string>
#include <string_view>

#include "resolver/normalize.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nl = input.find('\n');
  const std::string_view type = nl == std::string_view::npos ? std::string_view("email") : input.substr(0, nl);
  const std::string_view value = nl == std::string_view::npos ? input : input.substr(nl + 1);
  (void)nexus::resolver::IsValidIdentifierType(type);
  for (std::string_view t : {type, std::string_view("email"), std::string_view("phone"), std::string_view("domain"),
                             std::string_view("user_id")}) {
    (void)nexus::resolver::NormalizeIdentifier(t, value);
  }
  return 0;
}
