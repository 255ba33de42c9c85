#include "resolver/normalize.h"

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumberutil.h>

#include <algorithm>
#include <cctype>

namespace nexus::resolver {
namespace {
namespace pn = i18n::phonenumbers;

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

std::string NormalizeEmail(std::string_view v, const IdentifierRules& rules) {
  std::string s = Lower(Trim(v));
  const auto at = s.rfind('@');
  if (!rules.provider_rules || at == std::string::npos || at == 0) return s;
  std::string local = s.substr(0, at), domain = s.substr(at + 1);
  const bool gmail = domain == "gmail.com" || domain == "googlemail.com";
  if (gmail || rules.plus_tag_providers.count(domain)) {
    // "+tag" addresses reach the same mailbox; an address that is only a tag keeps it (nothing would be left).
    if (auto plus = local.find('+'); plus != std::string::npos && plus > 0) local.erase(plus);
  }
  if (gmail) {
    std::string undotted;
    std::copy_if(local.begin(), local.end(), std::back_inserter(undotted), [](char c) { return c != '.'; });
    if (!undotted.empty()) local = std::move(undotted);
    domain = "gmail.com";
  }
  return local + "@" + domain;
}

/// '+' (only in front) and the digits: what is kept of a number libphonenumber rejects.
std::string DigitsOnly(std::string_view t) {
  std::string out;
  for (unsigned char c : t) {
    if (std::isdigit(c))
      out += static_cast<char>(c);
    else if (c == '+' && out.empty())
      out += '+';
  }
  if (out == "+") out.clear();
  return out;
}

/// A number people type when they do not want to give theirs: one digit repeated, or a run of consecutive digits
/// (1234567890, 0123456789, 9876543210, and their prefixes of 7 digits or more).
bool IsPlaceholderNumber(const std::string& national) {
  if (national.empty()) return true;
  if (std::all_of(national.begin(), national.end(), [&](char c) { return c == national[0]; })) return true;
  if (national.size() < 7) return false;
  static const std::string kUp = "12345678901234567890", kUp0 = "0123456789012345678", kDown = "98765432109876543210";
  for (const std::string* run : {&kUp, &kUp0, &kDown}) {
    if (run->compare(0, national.size(), national) == 0) return true;
  }
  return false;
}

const pn::PhoneNumberUtil& Phones() {
  static const pn::PhoneNumberUtil* util = [] {
    pn::PhoneNumberUtil* u = pn::PhoneNumberUtil::GetInstance();
    u->SetLogger(new pn::NullLogger());  // it would print parse failures (personal data) to stdout
    return u;
  }();
  return *util;
}

NormalizedIdentifier NormalizePhone(std::string_view v, const IdentifierRules& rules) {
  const std::string t = Trim(v);
  NormalizedIdentifier out;
  out.value = DigitsOnly(t);
  if (out.value.empty()) return out;  // nothing left: reported as empty
  const auto& util = Phones();
  pn::PhoneNumber number;
  const auto err = util.Parse(t, rules.default_phone_region, &number);
  if (err != pn::PhoneNumberUtil::NO_PARSING_ERROR) {
    switch (err) {
      case pn::PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
        out.not_linkable = "no valid country code (default region " + rules.default_phone_region + ")";
        break;
      case pn::PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
      case pn::PhoneNumberUtil::TOO_SHORT_NSN:
        out.not_linkable = "too short to be a phone number";
        break;
      case pn::PhoneNumberUtil::TOO_LONG_NSN:
        out.not_linkable = "too long to be a phone number";
        break;
      default:
        out.not_linkable = "not a phone number";
    }
    return out;
  }
  std::string national;
  util.GetNationalSignificantNumber(number, &national);
  std::string e164;
  util.Format(number, pn::PhoneNumberUtil::E164, &e164);
  if (number.has_extension() && !number.extension().empty()) e164 += ";ext=" + number.extension();
  out.value = e164;
  if (IsPlaceholderNumber(national)) {
    out.not_linkable = "placeholder phone number";
  } else if (!util.IsValidNumber(number)) {
    std::string region;
    util.GetRegionCodeForNumber(number, &region);
    out.not_linkable =
        "not a valid phone number" + (region.empty() || region == "ZZ"
                                          ? std::string(" for country code +") + std::to_string(number.country_code())
                                          : " in region " + region);
  }
  return out;
}

const IdentifierRules& DefaultRules() {
  static const IdentifierRules rules;
  return rules;
}
}  // namespace

const std::set<std::string>& BuiltInRoleAccounts() {
  static const std::set<std::string> k = {
      "abuse",         "accounting",   "accounts",   "admin",      "administrator", "billing",
      "bookings",      "careers",      "compliance", "contact",    "customercare",  "customerservice",
      "do-not-reply",  "donotreply",   "enquiries",  "feedback",   "finance",       "hello",
      "help",          "helpdesk",     "hostmaster", "hr",         "info",          "inquiries",
      "invoices",      "it",           "jobs",       "legal",      "mail",          "mailer-daemon",
      "marketing",     "media",        "newsletter", "no-reply",   "no_reply",      "noreply",
      "notifications", "office",       "orders",     "postmaster", "press",         "privacy",
      "recruiting",    "reservations", "root",       "sales",      "security",      "service",
      "support",       "team",         "webmaster"};
  return k;
}

const std::set<std::string>& BuiltInFreeMailDomains() {
  static const std::set<std::string> k = {
      "126.com",        "163.com",    "aol.com",     "att.net",      "comcast.net",    "fastmail.com", "free.fr",
      "gmail.com",      "gmx.com",    "gmx.de",      "gmx.net",      "googlemail.com", "hey.com",      "hotmail.co.uk",
      "hotmail.com",    "hotmail.fr", "icloud.com",  "libero.it",    "live.com",       "mac.com",      "mail.com",
      "mail.ru",        "me.com",     "msn.com",     "orange.fr",    "outlook.com",    "pm.me",        "proton.me",
      "protonmail.com", "qq.com",     "t-online.de", "tutanota.com", "verizon.net",    "web.de",       "yahoo.co.uk",
      "yahoo.com",      "yahoo.fr",   "yandex.com",  "yandex.ru",    "ymail.com",      "zoho.com"};
  return k;
}

const std::set<std::string>& BuiltInPlusTagProviders() {
  static const std::set<std::string> k = {"fastmail.com", "hey.com",        "hotmail.com", "icloud.com",
                                          "live.com",     "me.com",         "outlook.com", "pm.me",
                                          "proton.me",    "protonmail.com", "zoho.com"};
  return k;
}

IdentifierRules::IdentifierRules() : plus_tag_providers(BuiltInPlusTagProviders()) {}

bool IdentifierRules::IsRoleAccount(std::string_view local_part) const {
  if (!role_accounts) return false;
  std::string local(local_part);
  if (auto plus = local.find('+'); plus != std::string::npos && plus > 0) local.erase(plus);
  return BuiltInRoleAccounts().count(local) > 0 || extra_role_accounts.count(local) > 0;
}

bool IdentifierRules::IsFreeMailDomain(std::string_view domain) const {
  const std::string d(domain);
  return (free_mail_builtin && BuiltInFreeMailDomains().count(d) > 0) || extra_free_mail_domains.count(d) > 0;
}

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

NormalizedIdentifier NormalizeIdentifierChecked(std::string_view type, std::string_view value,
                                                const IdentifierRules& rules) {
  if (type == "email") return {NormalizeEmail(value, rules), std::nullopt};
  if (type == "domain") return {NormalizeDomain(value), std::nullopt};
  if (type == "phone") return NormalizePhone(value, rules);
  return {Trim(value), std::nullopt};
}

std::string NormalizeIdentifier(std::string_view type, std::string_view value, const IdentifierRules& rules) {
  return NormalizeIdentifierChecked(type, value, rules).value;
}

std::string NormalizeIdentifier(std::string_view type, std::string_view value) {
  return NormalizeIdentifier(type, value, DefaultRules());
}

bool IsKnownPhoneRegion(std::string_view region) {
  std::set<std::string> regions;
  Phones().GetSupportedRegions(&regions);
  return regions.count(std::string(region)) > 0;
}

}  // namespace nexus::resolver
