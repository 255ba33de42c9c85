#include "server/request_parse.h"

#include <array>
#include <cctype>

namespace nexus::server {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding.
std::string Base64UrlEncode(const std::string& in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    acc = (acc << 8) | ch;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> bits) & 0x3f];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 0x3f];
  return out;
}

std::optional<std::string> Base64UrlDecode(const std::string& in) {
  std::array<int, 256> value{};
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(kAlphabet[i])] = i;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    const int v = value[ch];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // A canonical encoding leaves fewer than 6 zero bits over.
  if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

constexpr char kTimelinePrefix[] = "t1:";
constexpr char kMembershipPrefix[] = "m1:";
constexpr char kSearchPrefix[] = "s1:";

grpc::Status Invalid(std::string msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(msg)); }

/// Length of the UTF-8 sequence starting at s[i], 0 when invalid.
size_t Utf8SeqLen(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  uint32_t cp = 0;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;  // overlong
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

class JsonChecker {
 public:
  JsonChecker(std::string_view s, bool null_in_lists) : s_(s), null_in_lists_(null_in_lists) {}

  grpc::Status Run() {
    Ws();
    if (!Value(0)) return Invalid("invalid JSON body: " + error_ + " at byte " + std::to_string(pos_));
    Ws();
    if (pos_ != s_.size())
      return Invalid("invalid JSON body: unexpected data after the value at byte " + std::to_string(pos_));
    return grpc::Status::OK;
  }

 private:
  bool Fail(std::string what) {
    if (error_.empty()) error_ = std::move(what);
    return false;
  }
  void Ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Fail("unexpected character");
    pos_ += word.size();
    return true;
  }
  bool Value(int depth) {
    if (pos_ >= s_.size()) return Fail("unexpected end");
    if (depth >= kMaxJsonDepth && (s_[pos_] == '{' || s_[pos_] == '[')) {
      return Fail("nested deeper than " + std::to_string(kMaxJsonDepth));
    }
    switch (s_[pos_]) {
      case '{':
        return Object(depth + 1);
      case '[':
        return Array(depth + 1);
      case '"':
        return String();
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return Number();
        if (s_[pos_] == '\'') return Fail("single-quoted string (JSON strings use double quotes)");
        return Fail("unexpected character");
    }
  }
  bool Object(int depth) {
    ++pos_;
    Ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    for (;;) {
      Ws();
      if (pos_ >= s_.size()) return Fail("unexpected end");
      if (s_[pos_] != '"') return Fail(s_[pos_] == '}' ? "trailing comma" : "object key not in double quotes");
      if (!String()) return false;
      Ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Fail("expected ':'");
      ++pos_;
      Ws();
      if (!Value(depth)) return false;
      Ws();
      if (pos_ >= s_.size()) return Fail("unexpected end");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }
  bool Array(int depth) {
    ++pos_;
    Ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      Ws();
      if (pos_ < s_.size() && s_[pos_] == ']') return Fail("trailing comma");
      if (!null_in_lists_ && s_.substr(pos_, 4) == "null") return Fail("null in a list");
      if (!Value(depth)) return false;
      Ws();
      if (pos_ >= s_.size()) return Fail("unexpected end");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }
  bool String() {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Fail("control character in a string (escape it)");
      if (c == '\\') {
        if (pos_ + 1 >= s_.size()) return Fail("unexpected end");
        const char e = s_[pos_ + 1];
        if (e == 'u') {
          for (size_t k = 2; k < 6; ++k) {
            if (pos_ + k >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[pos_ + k])))
              return Fail("bad \\u escape");
          }
          pos_ += 6;
        } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
          pos_ += 2;
        } else {
          return Fail("bad escape");
        }
        continue;
      }
      const size_t n = Utf8SeqLen(s_, pos_);
      if (n == 0) return Fail("invalid UTF-8");
      pos_ += n;
    }
    return Fail("unterminated string");
  }
  bool Number() {
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size()) return Fail("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else if (s_[pos_] >= '1' && s_[pos_] <= '9') {
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    } else {
      return Fail("bad number");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) return Fail("bad number");
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[pos_]))) return Fail("bad number");
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    return true;
  }

  std::string_view s_;
  bool null_in_lists_ = false;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

bool IsValidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SeqLen(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

grpc::Status CheckStrictJson(std::string_view body, bool allow_null_in_lists) {
  return JsonChecker(body, allow_null_in_lists).Run();
}

grpc::Status ParsePageSizeParam(std::string_view text, int32_t* out) {
  if (text.empty() || text.size() > 7) {
    return Invalid("page_size: must be a whole number from 0 to 1000000 (decimal digits only)");
  }
  int32_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return Invalid("page_size: must be a whole number from 0 to 1000000 (decimal digits only)");
    v = v * 10 + (c - '0');
  }
  if (v > 1000000) return Invalid("page_size: must be a whole number from 0 to 1000000 (decimal digits only)");
  *out = v;
  return grpc::Status::OK;
}

grpc::Status ParseBoolParam(std::string_view field, std::string_view text, bool* out) {
  if (text == "true" || text == "1") {
    *out = true;
  } else if (text == "false" || text == "0" || text.empty()) {
    *out = false;
  } else {
    return Invalid(std::string(field) + ": must be true or false");
  }
  return grpc::Status::OK;
}

grpc::Status CheckEntityId(std::string_view field, std::string_view id) {
  const std::string f(field);
  if (id.empty()) return Invalid(f + ": missing");
  if (id.size() > kMaxEntityIdBytes) {
    return Invalid(f + ": longer than " + std::to_string(kMaxEntityIdBytes) + " bytes (" + std::to_string(id.size()) +
                   ")");
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) return Invalid(f + ": contains a control character (NUL, newline, ...)");
  }
  if (!IsValidUtf8(id)) return Invalid(f + ": not valid UTF-8");
  return grpc::Status::OK;
}

std::string EncodeTimelineToken(int64_t occurred_at_us, const std::string& event_id) {
  return Base64UrlEncode(kTimelinePrefix + std::to_string(occurred_at_us) + ":" + event_id);
}

namespace {
/// "<prefix><int64>:<id>" in base64url; nullopt when malformed.
std::optional<std::pair<int64_t, std::string>> DecodeKeyToken(const std::string& token, std::string_view prefix) {
  if (token.size() > kMaxPageTokenBytes) return std::nullopt;
  auto raw = Base64UrlDecode(token);
  if (!raw || raw->rfind(prefix, 0) != 0) return std::nullopt;
  const std::string rest = raw->substr(prefix.size());
  const size_t colon = rest.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= rest.size()) return std::nullopt;
  // Strict: an optional '-' and 1..19 digits (no spaces, '+', hex); stoll cannot overflow then except at the
  // very edge, which the catch covers.
  const std::string num = rest.substr(0, colon);
  const size_t digits_from = num[0] == '-' ? 1 : 0;
  if (num.size() == digits_from || num.size() - digits_from > 19 ||
      num.find_first_not_of("0123456789", digits_from) != std::string::npos) {
    return std::nullopt;
  }
  int64_t us = 0;
  try {
    us = std::stoll(num);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return std::make_pair(us, rest.substr(colon + 1));
}

}  // namespace

std::optional<std::pair<int64_t, std::string>> DecodeTimelineToken(const std::string& token) {
  return DecodeKeyToken(token, kTimelinePrefix);
}

std::string EncodeSearchToken(int64_t score_micros, const std::string& entity_id) {
  return Base64UrlEncode(kSearchPrefix + std::to_string(score_micros) + ":" + entity_id);
}

std::optional<std::pair<int64_t, std::string>> DecodeSearchToken(const std::string& token) {
  return DecodeKeyToken(token, kSearchPrefix);
}

std::string EncodeMembershipToken(const std::string& after_id) { return Base64UrlEncode(kMembershipPrefix + after_id); }

std::optional<std::string> DecodeMembershipToken(const std::string& token) {
  if (token.size() > kMaxPageTokenBytes) return std::nullopt;
  auto raw = Base64UrlDecode(token);
  if (!raw || raw->rfind(kMembershipPrefix, 0) != 0 || raw->size() == sizeof(kMembershipPrefix) - 1) {
    return std::nullopt;
  }
  return raw->substr(sizeof(kMembershipPrefix) - 1);
}

std::string ShortId(std::string_view id) {
  constexpr size_t kKeep = 40;
  if (id.size() <= kKeep) return std::string(id);
  size_t cut = kKeep;
  while (cut > 0 && (static_cast<unsigned char>(id[cut]) & 0xC0) == 0x80) --cut;
  return std::string(id.substr(0, cut)) + "...";
}

}  // namespace nexus::server
