#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "resolver/normalize.h"

namespace nexus::resolver {

/// Why an identifier value is blocked from linking, or nullopt when it may link.
/// Built-in junk: empty/blank values; 'anonymous', 'guest', 'unknown', 'undefined', 'null', 'none', 'nan',
/// 'true', 'false', 'id', 'email', 'distinct_id', 'not_authenticated', 'n/a', '[object Object]', '0', '-1'
/// (case-insensitive, also in quotes); values made only of zeros or dashes.
std::optional<std::string> BuiltInJunkReason(std::string_view normalized_value);

/// Limits on what one entity may hold. 0 means unlimited.
struct Caps {
  int64_t default_per_type = 0;             ///< distinct identifiers of one type, unless overridden below
  std::map<std::string, int64_t> per_type;  ///< identifier type -> cap
  int64_t max_entity_size = 0;              ///< distinct identifiers of all types
  int64_t CapFor(const std::string& type) const {
    auto it = per_type.find(type);
    return it == per_type.end() ? default_per_type : it->second;
  }
  bool Unlimited() const;
};

/// How the winning value of one trait name is chosen among the rows of an entity (engine rule; see Engine).
/// Every rule is a total order on rows, so the winner does not depend on the order rows arrive or entities
/// merge. "Latest" is the largest (occurred_at, _ingested_at, row id); "earliest" the smallest.
struct TraitRule {
  enum class Kind : uint8_t {
    kLatest,    ///< the latest row wins (a null row clears the trait)
    kFirst,     ///< the earliest non-null row wins; null rows never win over a value (they do not clear)
    kPriority,  ///< the row of the best-ranked source wins; equal rank: the latest (a null row clears)
  };
  Kind kind = Kind::kLatest;
  /// kPriority: sources, best first. "*" ranks every source not listed; without "*" unlisted sources rank
  /// after all listed ones.
  std::vector<std::string> sources;
  /// The rank of `source` under kPriority (smaller is better).
  size_t Rank(std::string_view source) const;
  bool operator==(const TraitRule&) const = default;
};

/// Trait rules per trait name, and the rule of every other name.
struct TraitRules {
  TraitRule default_rule;                  ///< built-in: latest
  std::map<std::string, TraitRule> named;  ///< trait name -> rule
  const TraitRule& For(const std::string& name) const {
    auto it = named.find(name);
    return it == named.end() ? default_rule : it->second;
  }
  bool operator==(const TraitRules&) const = default;
};

/// "latest" | "first" | "priority: a, b, *"
std::string Describe(const TraitRule& rule);

/// Merge protection: operator blocklist (exact values and regexes per identifier type) and caps; and the
/// trait rules (they live in the same file and reload the same way).
struct ProtectionConfig {
  struct Pattern {
    std::string source;  ///< the regex as written
    std::regex re;
  };
  std::map<std::string, std::vector<std::string>> blocked_values;  ///< type -> exact normalized values
  std::map<std::string, std::vector<Pattern>> blocked_patterns;    ///< type ('*' = any) -> regexes
  Caps person_caps;
  Caps group_caps;
  IdentifierRules identifiers;  ///< normalization and role/free-mail rules ([email], [free_mail], phone region)
  TraitRules traits;            ///< how a trait's winning value is picked ([traits])

  /// Defaults: persons user_id 1, anonymous_id 50, other types 10, at most 500 identifiers;
  /// groups: 20 of a type, at most 1000 identifiers. No blocklist.
  static ProtectionConfig Defaults();
  /// No caps, no blocklist (built-in junk values are always blocked).
  static ProtectionConfig Unlimited();

  /// Why (type, normalized value) is blocked, or nullopt: built-in junk, the blocklist, a role-account email
  /// (identifiers.role_accounts) or a free-mail `domain` (identifiers.IsFreeMailDomain).
  std::optional<std::string> BlockReason(const std::string& type, const std::string& value) const;

  /// What ingest (and a rebuild, from the raw value) stores for an identifier as received: its normalized value
  /// and, when it must not link, why (the value's own verdict, e.g. an invalid phone, else BlockReason). An empty
  /// normalized value is blocked as "empty value" and keeps the trimmed raw value, so nothing is lost.
  NormalizedIdentifier Classify(const std::string& type, std::string_view raw) const;

  /// Identifies everything Classify depends on (identifier rules, blocklist, the built-in lists' version): two
  /// configs with the same fingerprint classify every value alike. A rebuild re-applies the rules to stored rows
  /// only when the stored data may have been classified under another fingerprint.
  std::string ClassifyFingerprint() const;
};

/// Bumped whenever a built-in list or a normalization rule changes in code (stored rows then need a rebuild).
inline constexpr int kIdentifierRulesVersion = 1;

/// Parses the merge-protection config file. Format, one setting per line, '#' comments:
///   [person_caps] / [group_caps]   then   default = 10 | max_entity_size = 500 | <type> = <n>
///   [blocklist]                    then   <type|*> = <exact value>  or  <type|*> = /<regex>/
///   [email]                        then   role_accounts = on|off | role_account = <local part>
///                                         provider_rules = on|off | plus_tag_provider = <domain>
///   [free_mail]                    then   builtin = on|off | domain = <domain>
///   [traits]                       then   default | <trait name> = latest | first | priority: <source>, ..., *
/// Sections start from the built-in defaults (Defaults()); blocklist values are normalized with the file's
/// identifier rules and `default_phone_region`. On error returns nullopt and sets *error to a message naming
/// the line.
std::optional<ProtectionConfig> ParseProtectionConfig(std::string_view text, std::string* error,
                                                      std::string_view default_phone_region = "US");

/// A human-readable one-line summary (for logs and the reload RPC).
std::string Describe(const ProtectionConfig& config);

}  // namespace nexus::resolver
