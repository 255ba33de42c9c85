#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace nexus::resolver {

/// True when `type` matches [a-z0-9_]{1,64}.
bool IsValidIdentifierType(std::string_view type);

/// Trims ASCII white space at both ends.
std::string Trim(std::string_view s);

/// The operator-controlled rules identifier values are normalized and judged by (the [email] and [free_mail]
/// sections of the protection config, and --default-phone-region). They act at ingest; a rebuild re-applies them
/// to every stored row (from the raw value as received).
struct IdentifierRules {
  /// ISO 3166 region for phone numbers written without a country code ("415-555-0199" -> +1 in "US").
  std::string default_phone_region = "US";
  /// Emails whose local part (before any +tag) is a role account ("support@", "info@", ...) do not link.
  bool role_accounts = true;
  std::set<std::string> extra_role_accounts;  ///< added to BuiltInRoleAccounts()
  /// Provider rules: Gmail ignores dots and +tags (and googlemail.com is gmail.com); the +tag of an address at a
  /// plus_tag_providers domain is dropped. Off: addresses are only trimmed and lower-cased.
  bool provider_rules = true;
  std::set<std::string> plus_tag_providers;  ///< starts as BuiltInPlusTagProviders()
  /// Free-mail and generic domains never form or join a group through a `domain` identifier.
  bool free_mail_builtin = true;
  std::set<std::string> extra_free_mail_domains;

  IdentifierRules();
  bool IsRoleAccount(std::string_view local_part) const;
  bool IsFreeMailDomain(std::string_view domain) const;
};

/// Built-in role-account local parts (support, info, sales, billing, noreply, admin, hello, contact, team, ...).
const std::set<std::string>& BuiltInRoleAccounts();
/// Built-in free-mail and generic mail domains (gmail.com, outlook.com, yahoo.com, ...).
const std::set<std::string>& BuiltInFreeMailDomains();
/// Providers whose +tag addresses reach the same mailbox (besides Gmail, which also ignores dots).
const std::set<std::string>& BuiltInPlusTagProviders();

/// A normalized identifier value, and why it must not link when the value itself says so (a phone number
/// libphonenumber cannot parse or judges invalid, a placeholder number). Blocklists, role accounts and free-mail
/// domains are judged later (ProtectionConfig::Classify).
struct NormalizedIdentifier {
  std::string value;
  std::optional<std::string> not_linkable;
};

/// Normalizes an identifier value so that the same person is the same identifier everywhere:
/// every value is trimmed; 'email' is lower-cased, then the provider rules apply (Gmail dots and +tags,
/// googlemail.com -> gmail.com, +tags of plus_tag_providers); 'domain' is lower-cased without scheme, 'www.',
/// path, port or trailing dot; 'phone' is parsed by libphonenumber with the default region and written in E.164
/// ("+14155550199"), with ";ext=123" when it has an extension; a number it cannot parse or judges invalid keeps
/// '+' and its digits and is not linkable, as is a placeholder (one digit repeated, 1234567890, ...).
/// Other types are only trimmed. An empty value means nothing was left (the caller reports it as empty).
NormalizedIdentifier NormalizeIdentifierChecked(std::string_view type, std::string_view value,
                                                const IdentifierRules& rules);
/// NormalizeIdentifierChecked's value (for lookups: the same normalization as ingest).
std::string NormalizeIdentifier(std::string_view type, std::string_view value, const IdentifierRules& rules);
/// With the default rules.
std::string NormalizeIdentifier(std::string_view type, std::string_view value);

/// Whether libphonenumber knows `region` (e.g. "US", "GB", "DE").
bool IsKnownPhoneRegion(std::string_view region);

}  // namespace nexus::resolver
