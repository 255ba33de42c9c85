#include "server/ingest_convert.h"

#include <charconv>
#include <cmath>
#include <map>
#include <set>

#include "resolver/normalize.h"

namespace nexus::server {
namespace {

constexpr int64_t kMinOccurredSeconds = 0;                // 1970-01-01
constexpr int64_t kMaxFutureSeconds = 366LL * 24 * 3600;  // calendars look ahead; a year is plenty

class Problems {
 public:
  void Add(const std::string& path, const std::string& what) {
    if (list_.size() < 200)
      list_.push_back(path + ": " + what);
    else
      truncated_ = true;
  }
  std::vector<std::string> Take() {
    if (truncated_) list_.push_back("request: more problems not listed (only the first 200 are)");
    return std::move(list_);
  }
  bool empty() const { return list_.empty(); }

 private:
  std::vector<std::string> list_;
  bool truncated_ = false;
};

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

void CheckText(Problems& p, const std::string& path, const std::string& v, int64_t max, bool required) {
  if (v.empty()) {
    if (required) p.Add(path, "missing");
    return;
  }
  if (static_cast<int64_t>(v.size()) > max) p.Add(path, "longer than " + std::to_string(max) + " bytes");
  if (HasNul(v)) p.Add(path, "contains a NUL byte");
}

/// Validates and normalizes one identifier; returns false when it is invalid (problem recorded).
bool CheckIdentifier(Problems& p, const std::string& path, const v1::Identifier& id, const IngestLimits& limits,
                     const resolver::ProtectionConfig& protection, resolver::NormalizedIdentifier* normalized) {
  bool ok = true;
  if (id.type().empty()) {
    p.Add(path + ".type", "empty");
    ok = false;
  } else if (!resolver::IsValidIdentifierType(id.type())) {
    p.Add(path + ".type", "'" + id.type().substr(0, 80) + "' must match [a-z0-9_]{1,64}");
    ok = false;
  }
  if (id.value().empty()) {
    p.Add(path + ".value", "empty");
    ok = false;
  } else if (static_cast<int64_t>(id.value().size()) > limits.max_value_bytes) {
    p.Add(path + ".value", "longer than " + std::to_string(limits.max_value_bytes) + " bytes");
    ok = false;
  } else if (HasNul(id.value())) {
    p.Add(path + ".value", "contains a NUL byte");
    ok = false;
  }
  if (ok) *normalized = protection.Classify(id.type(), id.value());
  return ok;
}

/// A typed trait value to its stored form; false (problem recorded, never the value) when it is not one.
bool ConvertTraitValue(Problems& p, const std::string& path, const google::protobuf::Value& v, storage::TraitRow* row) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNullValue:
      row->type = storage::TraitType::kNull;
      row->value = std::nullopt;
      return true;
    case google::protobuf::Value::kNumberValue: {
      if (!std::isfinite(v.number_value())) {
        p.Add(path, "not a finite number");
        return false;
      }
      char buf[64];
      // Shortest form that reads back as the same double: 42 stays "42", 0.1 stays "0.1".
      const auto r = std::to_chars(buf, buf + sizeof buf, v.number_value());
      row->type = storage::TraitType::kNumber;
      row->value = std::string(buf, r.ptr);
      return true;
    }
    case google::protobuf::Value::kBoolValue:
      row->type = storage::TraitType::kBoolean;
      row->value = v.bool_value() ? "true" : "false";
      return true;
    case google::protobuf::Value::kStringValue:
      row->type = storage::TraitType::kString;
      row->value = v.string_value();
      return true;
    case google::protobuf::Value::kStructValue:
      p.Add(path, "a nested object is not a trait value (send a string, number, boolean or null)");
      return false;
    case google::protobuf::Value::kListValue:
      p.Add(path, "a list is not a trait value (send a string, number, boolean or null)");
      return false;
    case google::protobuf::Value::KIND_NOT_SET:
      break;
  }
  p.Add(path, "no value (set one of null, number, bool or string)");
  return false;
}

}  // namespace

std::vector<std::string> ConvertIngestRequest(const v1::IngestEventsRequest& request, const IngestLimits& limits,
                                              const resolver::ProtectionConfig& protection, int64_t now_us,
                                              std::vector<storage::EventRecord>* out) {
  Problems p;
  const int64_t n = request.events_size();
  if (n == 0) p.Add("events", "empty (send at least one event)");
  if (n > limits.max_events_per_request) {
    p.Add("events",
          std::to_string(n) + " events, at most " + std::to_string(limits.max_events_per_request) + " per request");
    return p.Take();
  }
  out->clear();
  out->reserve(static_cast<size_t>(n));
  const int64_t max_us = now_us + kMaxFutureSeconds * 1000000;
  for (int i = 0; i < request.events_size(); ++i) {
    const v1::Event& ev = request.events(i);
    const std::string ep = "events[" + std::to_string(i) + "]";
    storage::EventRecord rec;
    CheckText(p, ep + ".event_id", ev.event_id(), limits.max_value_bytes, true);
    CheckText(p, ep + ".event_name", ev.event_name(), limits.max_value_bytes, true);
    CheckText(p, ep + ".event_type", ev.event_type(), limits.max_value_bytes, true);
    CheckText(p, ep + ".source", ev.source(), limits.max_value_bytes, true);
    CheckText(p, ep + ".event_description", ev.event_description(), limits.max_text_bytes, false);
    CheckText(p, ep + ".value_unit", ev.value_unit(), limits.max_value_bytes, false);
    if (!ev.has_occurred_at()) {
      p.Add(ep + ".occurred_at", "missing");
    } else {
      const auto& ts = ev.occurred_at();
      if (ts.nanos() < 0 || ts.nanos() > 999999999) {
        p.Add(ep + ".occurred_at", "nanos out of range");
      } else {
        // Range check first: seconds * 10^6 overflows int64 for |seconds| > 9.2e12 (undefined behaviour).
        if (ts.seconds() < kMinOccurredSeconds || ts.seconds() > max_us / 1000000) {
          p.Add(ep + ".occurred_at", "absurd timestamp (must be between 1970-01-01 and one year from now)");
        } else {
          rec.occurred_at_us = ts.seconds() * 1000000 + ts.nanos() / 1000;
        }
      }
    }
    if (ev.has_value() && !std::isfinite(ev.value())) p.Add(ep + ".value", "not a finite number");
    const int64_t mentions = ev.persons_size() + ev.groups_size();
    if (mentions > limits.max_mentions_per_event) {
      p.Add(ep, std::to_string(mentions) + " persons + groups, at most " +
                    std::to_string(limits.max_mentions_per_event) + " per event");
    }
    if (ev.memberships_size() > limits.max_memberships_per_event) {
      p.Add(ep + ".memberships", std::to_string(ev.memberships_size()) + " memberships, at most " +
                                     std::to_string(limits.max_memberships_per_event) + " per event");
    }
    rec.event_id = ev.event_id();
    rec.event_name = ev.event_name();
    if (!ev.event_description().empty()) rec.event_description = ev.event_description();
    rec.event_type = ev.event_type();
    rec.source = ev.source();
    if (ev.has_value()) rec.value = ev.value();
    if (!ev.value_unit().empty()) rec.value_unit = ev.value_unit();

    std::set<std::pair<std::string, std::string>> seen_persons, seen_groups;
    auto mentions_of = [&](const google::protobuf::RepeatedPtrField<v1::EntityMention>& list, const char* field,
                           const char* tag, std::vector<storage::IdentifierRow>* ids,
                           std::vector<storage::TraitRow>* traits,
                           std::set<std::pair<std::string, std::string>>* seen) {
      for (int m = 0; m < list.size(); ++m) {
        const v1::EntityMention& mention = list.Get(m);
        const std::string mp = ep + "." + field + "[" + std::to_string(m) + "]";
        CheckText(p, mp + ".edge_id", mention.edge_id(), limits.max_value_bytes, false);
        CheckText(p, mp + ".role", mention.role(), limits.max_value_bytes, false);
        const std::string edge =
            mention.edge_id().empty() ? ev.event_id() + "#" + tag + std::to_string(m) : mention.edge_id();
        if (mention.identifiers_size() == 0) p.Add(mp + ".identifiers", "empty (a mention needs an identifier)");
        if (mention.identifiers_size() > limits.max_identifiers_per_mention) {
          p.Add(mp + ".identifiers", std::to_string(mention.identifiers_size()) + " identifiers, at most " +
                                         std::to_string(limits.max_identifiers_per_mention));
          continue;
        }
        for (int k = 0; k < mention.identifiers_size(); ++k) {
          const auto& id = mention.identifiers(k);
          resolver::NormalizedIdentifier norm;
          if (!CheckIdentifier(p, mp + ".identifiers[" + std::to_string(k) + "]", id, limits, protection, &norm))
            continue;
          storage::IdentifierRow row;
          row.edge_id = edge;
          row.type = id.type();
          row.value = norm.value;
          row.raw_value = id.value();
          row.role = mention.role();
          row.path = mp + ".identifiers[" + std::to_string(k) + "]";
          if (norm.not_linkable) {
            row.blocked = true;
            row.blocked_reason = *norm.not_linkable;
          }
          seen->insert({row.type, row.value});
          ids->push_back(std::move(row));
        }
        const int64_t n_traits = mention.traits_size() + mention.trait_values_size();
        if (n_traits > limits.max_traits_per_mention) {
          p.Add(mp + ".traits",
                std::to_string(n_traits) + " traits, at most " + std::to_string(limits.max_traits_per_mention));
          continue;
        }
        // map order is unspecified: sort by name so stored row order (and tie-breaks) are deterministic.
        // String traits (field `traits`) and typed ones (`trait_values`, JSON "traits") together.
        std::map<std::string, storage::TraitRow> sorted;
        for (const auto& [name, value] : mention.traits())
          sorted[name] = {edge, name, value, storage::TraitType::kString};
        for (const auto& [name, value] : mention.trait_values()) {
          const std::string tp = mp + ".traits[" + name.substr(0, 64) + "]";
          if (sorted.count(name)) {
            p.Add(tp, "set both as a string trait and as a typed trait value (send it once)");
            continue;
          }
          storage::TraitRow row{edge, name, std::nullopt, storage::TraitType::kNull};
          if (ConvertTraitValue(p, tp, value, &row)) sorted[name] = std::move(row);
        }
        for (auto& [name, row] : sorted) {
          const std::string tp = mp + ".traits[" + name.substr(0, 64) + "]";
          if (name.empty())
            p.Add(mp + ".traits", "empty trait name");
          else
            CheckText(p, tp, name, limits.max_value_bytes, true);
          // An empty string is a value (it replaces the previous one); only null unsets.
          if (row.type == storage::TraitType::kString) CheckText(p, tp, *row.value, limits.max_text_bytes, false);
          traits->push_back(std::move(row));
        }
      }
    };
    mentions_of(ev.persons(), "persons", "p", &rec.person_identifiers, &rec.person_traits, &seen_persons);
    mentions_of(ev.groups(), "groups", "g", &rec.group_identifiers, &rec.group_traits, &seen_groups);

    for (int m = 0; m < ev.memberships_size(); ++m) {
      const auto& ms = ev.memberships(m);
      const std::string mp = ep + ".memberships[" + std::to_string(m) + "]";
      resolver::NormalizedIdentifier pn, gn;
      const bool pok = CheckIdentifier(p, mp + ".person", ms.person(), limits, protection, &pn);
      const bool gok = CheckIdentifier(p, mp + ".group", ms.group(), limits, protection, &gn);
      CheckText(p, mp + ".role", ms.role(), limits.max_value_bytes, false);
      if (!pok || !gok) continue;
      storage::MembershipRow row{ms.person().type(), pn.value, ms.group().type(), gn.value,
                                 ms.role().empty() ? std::nullopt : std::optional<std::string>(ms.role())};
      // A membership names identifiers the event may not mention: store them too (own edge, no role), so
      // that both sides always resolve to an entity.
      auto imply = [&](const v1::Identifier& id, const resolver::NormalizedIdentifier& norm,
                       std::vector<storage::IdentifierRow>* ids, std::set<std::pair<std::string, std::string>>* seen,
                       const char* side) {
        if (seen->count({id.type(), norm.value})) return;
        storage::IdentifierRow r;
        r.edge_id = ev.event_id() + "#m" + std::to_string(m) + side;
        r.type = id.type();
        r.value = norm.value;
        r.raw_value = id.value();
        r.path = mp + "." + (side[0] == 'p' ? "person" : "group");
        if (norm.not_linkable) {
          r.blocked = true;
          r.blocked_reason = *norm.not_linkable;
        }
        seen->insert({r.type, r.value});
        ids->push_back(std::move(r));
      };
      imply(ms.person(), pn, &rec.person_identifiers, &seen_persons, "p");
      imply(ms.group(), gn, &rec.group_identifiers, &seen_groups, "g");
      rec.memberships.push_back(std::move(row));
    }
    out->push_back(std::move(rec));
  }
  return p.Take();
}

}  // namespace nexus::server
