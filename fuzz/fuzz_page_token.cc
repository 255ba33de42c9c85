// Page tokens, page sizes and entity ids from untrusted query strings. Property: a token that decodes
// re-encodes to a token that decodes to the same position.
#include <cstdlib>
#include <string>

#include "server/request_parse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (auto t = nexus::server::DecodeTimelineToken(input)) {
    auto again = nexus::server::DecodeTimelineToken(nexus::server::EncodeTimelineToken(t->first, t->second));
    if (!again || *again != *t) std::abort();
  }
  if (auto m = nexus::server::DecodeMembershipToken(input)) {
    auto again = nexus::server::DecodeMembershipToken(nexus::server::EncodeMembershipToken(*m));
    if (!again || *again != *m) std::abort();
  }
  int32_t n = -1;
  if (nexus::server::ParsePageSizeParam(input, &n).ok() && (n < 0 || n > 1000000)) std::abort();
  const auto id = nexus::server::CheckEntityId("person_id", input);
  if (id.ok() &&
      (input.empty() || input.size() > nexus::server::kMaxEntityIdBytes || input.find('\0') != std::string::npos)) {
    std::abort();
  }
  if (!id.ok() && id.error_message().find(input.size() > 8 ? input : std::string("\x01\x02")) != std::string::npos)
    std::abort();  // an id is never echoed in its error
  return 0;
}
