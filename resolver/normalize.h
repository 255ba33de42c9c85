#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nexus::resolver {

/// True when `type` matches [a-z0-9_]{1,64}.
bool IsValidIdentifierType(std::string_view type);

/// Trims ASCII white space at both ends.
std::string Trim(std::string_view s);

/// Normalizes an identifier value so that the same person is the same identifier everywhere:
/// every value is trimmed; 'email' is lower-cased; 'domain' is lower-cased without scheme, 'www.', path,
/// port or trailing dot; 'phone' is reduced to '+' and digits. Other types are only trimmed.
/// Returns an empty string when nothing is left (the caller reports it as empty).
std::string NormalizeIdentifier(std::string_view type, std::string_view value);

}  // namespace nexus::resolver
