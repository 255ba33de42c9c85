#include "resolver/normalize.h"

#include <cctype>

namespace nexus::resolver {
namespace {
bool IsSpace(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string NormalizeDomain(std::string_view v) {
  std::string s = Lower(Trim(v));
  if (auto p = s.find("://"); p != std::string::npos) s.erase(0, p + 3);
  if (auto p = s.find_first_of("/?#"); p != std::string::npos) s.erase(p);
  if (auto p = s.find('@'); p != std::string::npos) s.erase(0, p + 1);  // user@host or an email given as domain
  if (auto p = s.find(':'); p != std::string::npos) s.erase(p);         // port
  while (!s.empty() && s.back() == '.') s.pop_back();
  if (s.rfind("www.", 0) == 0) s.erase(0, 4);
  return s;
}

std::string NormalizePhone(std::string_view v) {
  std::string t = Trim(v);
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(t[i]);
    if (std::isdigit(c)) out += static_cast<char>(c);
    else if (c == '+' && out.empty()) out += '+';
  }
  if (out == "+") out.clear();
  return out;
}
}  // namespace

bool IsValidIdentifierType(std::string_view type) {
  if (type.empty() || type.size() > 64) return false;
  for (unsigned char c : type) {
    if (!(std::islower(c) || std::isdigit(c) || c == '_')) return false;
  }
  return true;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && IsSpace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && IsSpace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string NormalizeIdentifier(std::string_view type, std::string_view value) {
  if (type == "email") return Lower(Trim(value));
  if (type == "domain") return NormalizeDomain(value);
  if (type == "phone") return NormalizePhone(value);
  return Trim(value);
}

}  // namespace nexus::resolver
