#include "resolver/protection.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <sstream>

#include "common/hash.h"
#include "resolver/normalize.h"

namespace nexus::resolver {
namespace {
std::string Lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

constexpr std::array<std::string_view, 17> kJunkWords = {"anonymous",
                                                         "guest",
                                                         "unknown",
                                                         "undefined",
                                                         "null",
                                                         "none",
                                                         "nan",
                                                         "true",
                                                         "false",
                                                         "id",
                                                         "email",
                                                         "distinct_id",
                                                         "not_authenticated",
                                                         "n/a",
                                                         "[object object]",
                                                         "0",
                                                         "-1"};

std::string Unquote(std::string s) {
  while (s.size() >= 2 && ((s.front() == '"' && s.back() == '"') || (s.front() == '\'' && s.back() == '\''))) {
    s = Trim(std::string_view(s).substr(1, s.size() - 2));
  }
  return s;
}
}  // namespace

std::optional<std::string> BuiltInJunkReason(std::string_view normalized_value) {
  const std::string v = Unquote(Lower(Trim(normalized_value)));
  if (v.empty()) return std::string("empty value");
  for (auto w : kJunkWords) {
    if (v == w) return "junk value '" + std::string(w) + "'";
  }
  if (std::all_of(v.begin(), v.end(), [](char c) { return c == '0'; })) return std::string("only zeros");
  if (std::all_of(v.begin(), v.end(), [](char c) { return c == '-'; })) return std::string("only dashes");
  if (std::all_of(v.begin(), v.end(), [](char c) { return c == '0' || c == '-'; }))
    return std::string("only zeros and dashes");
  return std::nullopt;
}

bool Caps::Unlimited() const {
  if (default_per_type > 0 || max_entity_size > 0) return false;
  return std::all_of(per_type.begin(), per_type.end(), [](const auto& kv) { return kv.second <= 0; });
}

ProtectionConfig ProtectionConfig::Defaults() {
  ProtectionConfig c;
  c.person_caps.default_per_type = 10;
  c.person_caps.per_type = {{"user_id", 1}, {"anonymous_id", 50}};
  c.person_caps.max_entity_size = 500;
  c.group_caps.default_per_type = 20;
  c.group_caps.max_entity_size = 1000;
  return c;
}

ProtectionConfig ProtectionConfig::Unlimited() { return ProtectionConfig{}; }

std::optional<std::string> ProtectionConfig::BlockReason(const std::string& type, const std::string& value) const {
  if (auto r = BuiltInJunkReason(value)) return r;
  if (type == "email") {
    const auto at = value.rfind('@');
    if (at != std::string::npos && at > 0 && identifiers.IsRoleAccount(std::string_view(value).substr(0, at))) {
      std::string local = value.substr(0, at);
      if (auto plus = local.find('+'); plus != std::string::npos && plus > 0) local.erase(plus);
      return "role account '" + local + "@'";
    }
  } else if (type == "domain" && identifiers.IsFreeMailDomain(value)) {
    return "free-mail domain '" + value + "'";
  }
  for (const std::string& key : {type, std::string("*")}) {
    if (auto it = blocked_values.find(key); it != blocked_values.end()) {
      for (const auto& v : it->second) {
        if (v == value) return std::string("on the blocklist (exact value for '") + key + "')";
      }
    }
    if (auto it = blocked_patterns.find(key); it != blocked_patterns.end()) {
      for (const auto& p : it->second) {
        if (std::regex_search(value, p.re)) return "blocklist pattern /" + p.source + "/";
      }
    }
  }
  return std::nullopt;
}

size_t TraitRule::Rank(std::string_view source) const {
  size_t star = sources.size();
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i] == source) return i;
    if (sources[i] == "*") star = i;
  }
  return star;
}

std::string Describe(const TraitRule& rule) {
  switch (rule.kind) {
    case TraitRule::Kind::kLatest:
      return "latest";
    case TraitRule::Kind::kFirst:
      return "first";
    case TraitRule::Kind::kPriority:
      break;
  }
  std::string out = "priority:";
  for (size_t i = 0; i < rule.sources.size(); ++i) out += (i ? ", " : " ") + rule.sources[i];
  return out;
}

namespace {
/// Parses the right-hand side of a [traits] setting; on error returns false with *why set.
bool ParseTraitRule(const std::string& value, TraitRule* rule, std::string* why) {
  if (value == "latest") {
    *rule = {TraitRule::Kind::kLatest, {}};
    return true;
  }
  if (value == "first") {
    *rule = {TraitRule::Kind::kFirst, {}};
    return true;
  }
  const std::string prefix = "priority:";
  if (value.compare(0, prefix.size(), prefix) != 0) {
    *why = "unknown trait rule '" + value + "' (expected latest, first or priority: <source>, ..., *)";
    return false;
  }
  rule->kind = TraitRule::Kind::kPriority;
  rule->sources.clear();
  std::string_view rest = std::string_view(value).substr(prefix.size());
  while (true) {
    const size_t comma = rest.find(',');
    const std::string source = Trim(rest.substr(0, comma));
    if (source.empty()) {
      *why = "empty source in priority list '" + value + "'";
      return false;
    }
    if (std::find(rule->sources.begin(), rule->sources.end(), source) != rule->sources.end()) {
      *why = "source '" + source + "' listed twice in priority list";
      return false;
    }
    rule->sources.push_back(source);
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  return true;
}
}  // namespace

NormalizedIdentifier ProtectionConfig::Classify(const std::string& type, std::string_view raw) const {
  NormalizedIdentifier out = NormalizeIdentifierChecked(type, raw, identifiers);
  if (!out.not_linkable) out.not_linkable = BlockReason(type, out.value);
  if (out.value.empty()) out.value = Trim(raw);
  return out;
}

std::string ProtectionConfig::ClassifyFingerprint() const {
  std::ostringstream o;
  const IdentifierRules& r = identifiers;
  o << "v" << kIdentifierRulesVersion << "|region=" << r.default_phone_region << "|role=" << r.role_accounts
    << "|prov=" << r.provider_rules << "|free=" << r.free_mail_builtin;
  auto list = [&](const char* name, const std::set<std::string>& v) {
    o << "|" << name << "=";
    for (const auto& x : v) o << x.size() << ":" << x;
  };
  list("roles", r.extra_role_accounts);
  list("plus", r.plus_tag_providers);
  list("freemail", r.extra_free_mail_domains);
  for (const auto& [type, values] : blocked_values) {
    o << "|bv:" << type << "=";
    for (const auto& v : values) o << v.size() << ":" << v;
  }
  for (const auto& [type, patterns] : blocked_patterns) {
    o << "|bp:" << type << "=";
    for (const auto& p : patterns) o << p.source.size() << ":" << p.source;
  }
  return "v" + std::to_string(kIdentifierRulesVersion) + "-" + StableId128(o.str());
}

std::optional<ProtectionConfig> ParseProtectionConfig(std::string_view text, std::string* error,
                                                      std::string_view default_phone_region) {
  ProtectionConfig cfg = ProtectionConfig::Defaults();
  cfg.identifiers.default_phone_region = std::string(default_phone_region);
  std::vector<std::pair<std::string, std::string>> exact;  // (key, value): normalized once the rules are known
  std::string section;
  std::istringstream in{std::string(text)};
  std::string raw;
  int lineno = 0;
  std::map<std::string, int> trait_lines;  // [traits] key -> line it was set on
  auto fail = [&](const std::string& why) {
    if (error) *error = "line " + std::to_string(lineno) + ": " + why;
    return std::nullopt;
  };
  while (std::getline(in, raw)) {
    ++lineno;
    std::string line = Trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line.front() == '[') {
      if (line.back() != ']') return fail("unterminated section header '" + line + "'");
      section = Trim(std::string_view(line).substr(1, line.size() - 2));
      if (section != "person_caps" && section != "group_caps" && section != "blocklist" && section != "email" &&
          section != "free_mail" && section != "traits")
        return fail("unknown section [" + section +
                    "] (expected person_caps, group_caps, blocklist, email, free_mail or traits)");
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) return fail("expected 'key = value', got '" + line + "'");
    const std::string key = Trim(std::string_view(line).substr(0, eq));
    const std::string value = Trim(std::string_view(line).substr(eq + 1));
    if (section.empty()) return fail("setting '" + key + "' outside of a section");
    if (key.empty()) return fail("empty key");
    if (section == "traits") {
      TraitRule rule;
      std::string why;
      if (!ParseTraitRule(value, &rule, &why)) return fail("trait '" + key + "': " + why);
      if (key == "default") {
        if (trait_lines.count(key))
          return fail("default trait rule already set on line " + std::to_string(trait_lines[key]));
        cfg.traits.default_rule = rule;
      } else {
        if (trait_lines.count(key))
          return fail("trait '" + key + "' already has a rule (line " + std::to_string(trait_lines[key]) + ")");
        cfg.traits.named[key] = rule;
      }
      trait_lines[key] = lineno;
      continue;
    }
    if (section == "blocklist") {
      if (key != "*" && !IsValidIdentifierType(key))
        return fail("blocklist key '" + key + "' is not an identifier type ([a-z0-9_]{1,64}) or '*'");
      if (value.size() >= 2 && value.front() == '/' && value.back() == '/') {
        const std::string src = value.substr(1, value.size() - 2);
        try {
          cfg.blocked_patterns[key].push_back({src, std::regex(src, std::regex::ECMAScript | std::regex::icase)});
        } catch (const std::regex_error& e) {
          return fail("invalid regex /" + src + "/: " + e.what());
        }
      } else {
        if (value.empty()) return fail("empty blocklist value for '" + key + "'");
        exact.emplace_back(key, value);
      }
      continue;
    }
    auto on_off = [&](bool* out) -> bool {
      if (value == "on" || value == "true")
        *out = true;
      else if (value == "off" || value == "false")
        *out = false;
      else
        return false;
      return true;
    };
    auto lower_word = [&](std::string* out) -> bool {
      *out = value;
      for (auto& ch : *out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return !out->empty() && out->find_first_of(" \t@") == std::string::npos;
    };
    if (section == "email") {
      std::string word;
      if (key == "role_accounts" || key == "provider_rules") {
        if (!on_off(key == "role_accounts" ? &cfg.identifiers.role_accounts : &cfg.identifiers.provider_rules))
          return fail("'" + key + "' must be on or off, got '" + value + "'");
      } else if (key == "role_account") {
        if (!lower_word(&word))
          return fail("role_account needs a local part without '@' or spaces, got '" + value + "'");
        cfg.identifiers.extra_role_accounts.insert(word);
      } else if (key == "plus_tag_provider") {
        if (!lower_word(&word) || word.find('.') == std::string::npos)
          return fail("plus_tag_provider needs a mail domain such as example.com, got '" + value + "'");
        cfg.identifiers.plus_tag_providers.insert(word);
      } else {
        return fail("unknown [email] setting '" + key +
                    "' (expected role_accounts, role_account, provider_rules or plus_tag_provider)");
      }
      continue;
    }
    if (section == "free_mail") {
      std::string word;
      if (key == "builtin") {
        if (!on_off(&cfg.identifiers.free_mail_builtin))
          return fail("'builtin' must be on or off, got '" + value + "'");
      } else if (key == "domain") {
        if (!lower_word(&word) || word.find('.') == std::string::npos)
          return fail("[free_mail] domain needs a domain such as example.com, got '" + value + "'");
        cfg.identifiers.extra_free_mail_domains.insert(word);
      } else {
        return fail("unknown [free_mail] setting '" + key + "' (expected builtin or domain)");
      }
      continue;
    }
    Caps& caps = section == "person_caps" ? cfg.person_caps : cfg.group_caps;
    int64_t n = 0;
    try {
      size_t used = 0;
      n = std::stoll(value, &used);
      if (used != value.size() || n < 0) throw std::invalid_argument("x");
    } catch (const std::exception&) {
      return fail("'" + key + "' needs a whole number >= 0 (0 = unlimited), got '" + value + "'");
    }
    if (key == "default")
      caps.default_per_type = n;
    else if (key == "max_entity_size")
      caps.max_entity_size = n;
    else if (IsValidIdentifierType(key))
      caps.per_type[key] = n;
    else
      return fail("'" + key + "' is not an identifier type, 'default' or 'max_entity_size'");
  }
  for (const auto& [key, value] : exact) {
    cfg.blocked_values[key].push_back(key == "*" ? Trim(value) : NormalizeIdentifier(key, value, cfg.identifiers));
  }
  return cfg;
}

std::string Describe(const ProtectionConfig& c) {
  std::ostringstream o;
  auto caps = [&](const char* name, const Caps& k) {
    o << name << "{default=" << k.default_per_type << ", max_entity_size=" << k.max_entity_size;
    for (const auto& [t, n] : k.per_type) o << ", " << t << "=" << n;
    o << "}";
  };
  caps("person_caps", c.person_caps);
  o << " ";
  caps("group_caps", c.group_caps);
  size_t values = 0, patterns = 0;
  for (const auto& [t, v] : c.blocked_values) values += v.size();
  for (const auto& [t, v] : c.blocked_patterns) patterns += v.size();
  o << " blocklist{values=" << values << ", patterns=" << patterns << "}";
  const IdentifierRules& r = c.identifiers;
  o << " identifiers{phone_region=" << r.default_phone_region << ", role_accounts="
    << (r.role_accounts ? "on(+" + std::to_string(r.extra_role_accounts.size()) + ")" : std::string("off"))
    << ", provider_rules=" << (r.provider_rules ? "on" : "off")
    << ", plus_tag_providers=" << r.plus_tag_providers.size()
    << ", free_mail=" << (r.free_mail_builtin ? "builtin" : "off") << "+" << r.extra_free_mail_domains.size() << "}";
  o << " traits{default=" << Describe(c.traits.default_rule);
  for (const auto& [name, rule] : c.traits.named) o << ", " << name << "=" << Describe(rule);
  o << "}";
  return o.str();
}

}  // namespace nexus::resolver
