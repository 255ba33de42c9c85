#include "common/rfc3339.h"

#include <google/protobuf/util/time_util.h>

#include <exception>

namespace nexus {

std::optional<google::protobuf::Timestamp> ParseRfc3339(const std::string& text) {
  google::protobuf::Timestamp ts;
  try {
    if (!google::protobuf::util::TimeUtil::FromString(text, &ts)) return std::nullopt;
  } catch (const std::exception&) {  // out of range after the offset (a failed CHECK throws)
    return std::nullopt;
  }
  return ts;
}

}  // namespace nexus
