// Tests of resolver::Engine without PostgreSQL.
//
// Random core-log streams are resolved four ways and compared:
//   (a) one engine over random batch cuts, its deltas applied to an in-memory "sink" shaped like the tables;
//   (b) one engine over the whole log as a single batch;
//   (c) a deliberately naive oracle that replays the whole log seen so far with explicit sets and maps and
//       states every rule again in plain code (it never calls the engine);
//   (d) an engine loaded from the sink state of (a) after a prefix (the way storage reloads it), continued.
// The same streams also check that deltas list only rows that changed (EngineProperty.DeltasListOnlyChangedRows).
// Named tests pin single rules down in readable form (EngineRules), and loading and releasing (EngineLoad,
// EngineRelease). A failing stream is shrunk greedily and printed as a small log.
//
// Env: NEXUS_SEED (base seed; random when unset, always printed), NEXUS_ENGINE_STREAMS (default 2000),
// NEXUS_ENGINE_STREAM (run only that stream index, e.g. to reproduce a failure).

#include "resolver/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/hash.h"
#include "resolver/protection.h"

namespace nexus::resolver {

// Readable failure output for final column values (found by gtest through ADL).
static void PrintTo(const FinalValue& v, std::ostream* os) {
  if (v.trait_row != 0) {
    *os << "trait row " << v.trait_row;
  } else if (v.identifier_value) {
    *os << "identifier '" << *v.identifier_value << "'";
  } else {
    *os << "NULL";
  }
}

namespace {

using Ident = std::pair<std::string, std::string>;                        // (type, value)
using EventEdge = std::pair<std::string, std::string>;                    // (event_id, edge_id)
using Participation = std::tuple<std::string, std::string, std::string>;  // (event_id, entity_id, role)

constexpr std::array<EntityKind, kKinds> kKindList = {EntityKind::kPerson, EntityKind::kGroup};
constexpr size_t kPersons = 0;
constexpr size_t kGroups = 1;
constexpr char kSalt[] = "engine-test-salt";

// =========================================================================================================
// The log: every core-log row of a stream, with `event` indexing Log::events.
// =========================================================================================================

struct Log {
  std::vector<LogEvent> events;
  std::array<std::vector<LogIdentifier>, kKinds> identifiers;  // in (event, row_id) order
  std::array<std::vector<LogTrait>, kKinds> traits;
  std::vector<LogMembership> memberships;
  std::array<std::set<EventEdge>, kKinds> forced;  // released edges
  ProtectionConfig protection = ProtectionConfig::Unlimited();
};

/// A stream and how it is fed: batch cuts, where engine (d) is reloaded, whether empty batches are mixed in.
struct Case {
  Log log;
  std::vector<bool> batch_start;  // per event: a batch begins here (event 0 always begins one)
  size_t restart_event = 0;       // (d) is loaded before the first batch that begins at or after this event
  bool empty_batches = false;     // apply an empty batch before every batch
};

std::vector<std::pair<size_t, size_t>> Batches(const Case& c) {
  std::vector<std::pair<size_t, size_t>> out;
  const size_t n = c.log.events.size();
  size_t begin = 0;
  for (size_t i = 1; i <= n; ++i) {
    if (i == n || (i < c.batch_start.size() && c.batch_start[i])) {
      out.emplace_back(begin, i);
      begin = i;
    }
  }
  return out;
}

/// The batch of events [begin, end), the way storage selects it.
BatchInput Slice(const Log& log, size_t begin, size_t end) {
  BatchInput in;
  in.events.assign(log.events.begin() + static_cast<std::ptrdiff_t>(begin),
                   log.events.begin() + static_cast<std::ptrdiff_t>(end));
  auto inside = [&](uint32_t e) { return e >= begin && e < end; };
  const auto base = static_cast<uint32_t>(begin);
  for (size_t k = 0; k < kKinds; ++k) {
    for (const auto& r : log.identifiers[k]) {
      if (!inside(r.event)) continue;
      in.identifiers[k].push_back(r);
      in.identifiers[k].back().event -= base;
    }
    for (const auto& t : log.traits[k]) {
      if (!inside(t.event)) continue;
      in.traits[k].push_back(t);
      in.traits[k].back().event -= base;
    }
    in.forced[k] = log.forced[k];
  }
  for (const auto& m : log.memberships) {
    if (!inside(m.event)) continue;
    in.memberships.push_back(m);
    in.memberships.back().event -= base;
  }
  return in;
}

struct RowTime {
  int64_t occurred_us = 0;
  int64_t ingested_us = 0;
  int64_t row_id = 0;
  auto operator<=>(const RowTime&) const = default;
};

/// Rows of the log by event, and the (occurred, ingested, row id) of every trait and membership row.
struct LogIndex {
  explicit LogIndex(const Log& log) {
    const size_t n = log.events.size();
    memberships.resize(n);
    for (size_t k = 0; k < kKinds; ++k) {
      rows[k].resize(n);
      traits[k].resize(n);
      for (size_t i = 0; i < log.identifiers[k].size(); ++i) rows[k][log.identifiers[k][i].event].push_back(i);
      for (size_t i = 0; i < log.traits[k].size(); ++i) {
        const LogTrait& t = log.traits[k][i];
        traits[k][t.event].push_back(i);
        const LogEvent& e = log.events[t.event];
        trait_time[k][t.row_id] = {e.occurred_us, e.ingested_us, t.row_id};
        trait_source[k][t.row_id] = e.source;
        trait_null[k][t.row_id] = t.is_null;
      }
    }
    for (size_t i = 0; i < log.memberships.size(); ++i) {
      const LogMembership& m = log.memberships[i];
      memberships[m.event].push_back(i);
      const LogEvent& e = log.events[m.event];
      membership_time[m.row_id] = {e.occurred_us, e.ingested_us, m.row_id};
    }
  }
  std::array<std::vector<std::vector<size_t>>, kKinds> rows;    // event -> identifier rows, in row order
  std::array<std::vector<std::vector<size_t>>, kKinds> traits;  // event -> trait rows
  std::vector<std::vector<size_t>> memberships;                 // event -> membership rows
  std::array<std::map<int64_t, RowTime>, kKinds> trait_time;
  std::array<std::map<int64_t, std::string>, kKinds> trait_source;  // the row's event's source
  std::array<std::map<int64_t, bool>, kKinds> trait_null;           // the row's value is a JSON null
  std::map<int64_t, RowTime> membership_time;
};

/// The trait rules as resolver/protection.h states them, in plain code (no engine or TraitRule::Rank code):
/// does trait row `a` beat row `b` of the same entity and name?
bool OracleTraitBeats(const TraitRules& rules, const std::string& name, const LogIndex& index, size_t k, int64_t a,
                      int64_t b) {
  auto named = rules.named.find(name);
  const TraitRule& rule = named == rules.named.end() ? rules.default_rule : named->second;
  const RowTime ta = index.trait_time[k].at(a), tb = index.trait_time[k].at(b);
  const bool null_a = index.trait_null[k].at(a), null_b = index.trait_null[k].at(b);
  if (rule.kind == TraitRule::Kind::kFirst) {
    if (null_a != null_b) return null_b;  // a value beats a null; a null never clears
    return ta < tb;                       // earliest
  }
  if (rule.kind == TraitRule::Kind::kPriority) {
    auto rank = [&](const std::string& source) {
      size_t star = rule.sources.size();  // unlisted sources without '*': after every listed one
      for (size_t i = 0; i < rule.sources.size(); ++i) {
        if (rule.sources[i] == source) return i;
        if (rule.sources[i] == "*") star = i;
      }
      return star;
    };
    const size_t ra = rank(index.trait_source[k].at(a)), rb = rank(index.trait_source[k].at(b));
    if (ra != rb) return ra < rb;
  }
  return tb < ta;  // latest
}

// =========================================================================================================
// The resolved state, shaped like the database tables. Filled by the sink (from deltas), the oracle and
// engine snapshots, then compared.
// =========================================================================================================

struct IdentState {
  std::string entity, source;
  int64_t first_us = 0, last_us = 0;
  bool operator==(const IdentState&) const = default;
};
struct EntityState {
  int64_t count = 0;
  BirthKey birth;
  std::string created_by;
  bool operator==(const EntityState&) const = default;
};
struct AliasState {
  std::string new_id, merged_into, event_id, edge_id;
  int64_t count = 0;
  bool operator==(const AliasState&) const = default;
};
struct MembershipState {
  int64_t established_us = 0, role_row_id = 0;
  bool operator==(const MembershipState&) const = default;
};
struct QuarantineState {
  std::string event_id, edge_id, reason;
  std::vector<Ident> identifiers;  // as listed (oracle: the edge's own identifiers, in row order)
  std::vector<std::string> entity_ids;
  bool operator==(const QuarantineState&) const = default;
};

struct KindState {
  std::map<Ident, IdentState> identifiers;
  std::map<std::string, EntityState> entities;
  std::map<std::pair<std::string, std::string>, int64_t> traits;  // (entity, name) -> row id
  std::map<std::string, std::vector<FinalValue>> finals;          // the final columns of the entity row
  std::set<Participation> participants;
  std::map<std::string, AliasState> aliases;  // old id -> alias
  std::vector<QuarantineState> quarantines;
};

struct State {
  std::array<KindState, kKinds> kinds;
  std::map<std::pair<std::string, std::string>, MembershipState> memberships;  // (person, group)
  std::map<int64_t, std::pair<std::string, std::string>> resolved;             // row id -> (person, group)
  /// Oracle only, never compared: how often each situation arose (to keep the generator honest).
  std::map<std::string, int64_t> coverage;
};

std::string Str(const std::string& s) { return s; }
std::string Str(int64_t v) { return std::to_string(v); }
std::string Str(const std::pair<std::string, std::string>& p) { return p.first + ":" + p.second; }
std::string Str(const Participation& p) {
  return "(" + std::get<0>(p) + ", " + std::get<1>(p) + ", '" + std::get<2>(p) + "')";
}
std::string Str(const IdentState& s) {
  return "{entity " + s.entity + ", source " + s.source + ", first " + Str(s.first_us) + ", last " + Str(s.last_us) +
         "}";
}
std::string Str(const EntityState& s) {
  return "{count " + Str(s.count) + ", born (" + Str(s.birth.xid) + ", " + Str(s.birth.edge_row) + ", " +
         Str(s.birth.row) + "), created_by '" + s.created_by + "'}";
}
std::string Str(const AliasState& s) {
  return "{new " + s.new_id + ", merged_into " + s.merged_into + ", by " + s.event_id + "/" + s.edge_id + ", count " +
         Str(s.count) + "}";
}
std::string Str(const MembershipState& s) {
  return "{established " + Str(s.established_us) + ", role row " + Str(s.role_row_id) + "}";
}
std::string Str(const std::vector<FinalValue>& cols) {
  std::string out = "[";
  for (const auto& v : cols) {
    if (out.size() > 1) out += ", ";
    out += v.trait_row != 0     ? "trait#" + Str(v.trait_row)
           : v.identifier_value ? "'" + *v.identifier_value + "'"
                                : "NULL";
  }
  return out + "]";
}
std::string Str(const std::vector<Ident>& ids) {
  std::string out;
  for (const auto& i : ids) out += (out.empty() ? "" : " ") + Str(i);
  return "[" + out + "]";
}
std::string Str(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return "[" + out + "]";
}
std::string Str(const QuarantineState& q) {
  return "{" + q.event_id + "/" + q.edge_id + " '" + q.reason + "' ids " + Str(q.identifiers) + " entities " +
         Str(q.entity_ids) + "}";
}

using Problems = std::vector<std::string>;
constexpr size_t kMaxProblems = 12;

void Add(Problems* out, std::string s) {
  if (out->size() < kMaxProblems) out->push_back(std::move(s));
}

template <typename K, typename V>
void DiffMap(const std::string& what, const std::map<K, V>& a, const std::map<K, V>& b, Problems* out) {
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      Add(out, what + " " + Str(k) + ": only in A " + Str(v));
    } else if (!(it->second == v)) {
      Add(out, what + " " + Str(k) + ": A " + Str(v) + " B " + Str(it->second));
    }
  }
  for (const auto& [k, v] : b) {
    if (!a.count(k)) Add(out, what + " " + Str(k) + ": only in B " + Str(v));
  }
}

template <typename T>
void DiffSet(const std::string& what, const std::set<T>& a, const std::set<T>& b, Problems* out) {
  for (const auto& x : a) {
    if (!b.count(x)) Add(out, what + " " + Str(x) + ": only in A");
  }
  for (const auto& x : b) {
    if (!a.count(x)) Add(out, what + " " + Str(x) + ": only in B");
  }
}

/// The cap an engine's quarantine reason names: "max_entity_size" or "type:<identifier type>".
std::string ReasonClass(const std::string& reason) {
  if (reason.find("max_entity_size") != std::string::npos) return "max_entity_size";
  const size_t open = reason.find("type '");
  if (open == std::string::npos) return "unrecognized reason '" + reason + "'";
  const size_t close = reason.find('\'', open + 6);
  return "type:" + reason.substr(open + 6, close == std::string::npos ? std::string::npos : close - open - 6);
}

/// An engine's quarantine against the oracle's: same event, edge and cap, the same entities and the same
/// identifiers ("of this event's rows": the edge's distinct non-blocked ones), each as a set.
bool QuarantineMatches(const QuarantineState& got, const QuarantineState& want) {
  auto sorted = [](auto v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  return got.event_id == want.event_id && got.edge_id == want.edge_id && ReasonClass(got.reason) == want.reason &&
         sorted(got.entity_ids) == sorted(want.entity_ids) && sorted(got.identifiers) == sorted(want.identifiers);
}

enum class Compare { kExact, kAgainstOracle };

/// Differences between `a` and `b` (with kAgainstOracle, `b` is the oracle's state).
void Diff(const State& a, const State& b, Compare mode, const std::string& label, Problems* out) {
  Problems p;
  for (EntityKind kind : kKindList) {
    const KindState& x = a.kinds[Idx(kind)];
    const KindState& y = b.kinds[Idx(kind)];
    const std::string k = KindName(kind);
    DiffMap(k + " identifier", x.identifiers, y.identifiers, &p);
    DiffMap(k + " entity", x.entities, y.entities, &p);
    DiffMap(k + " trait winner", x.traits, y.traits, &p);
    DiffMap(k + " final row", x.finals, y.finals, &p);
    DiffSet(k + " participant", x.participants, y.participants, &p);
    DiffMap(k + " alias", x.aliases, y.aliases, &p);
    const size_t n = std::max(x.quarantines.size(), y.quarantines.size());
    for (size_t i = 0; i < n; ++i) {
      if (i >= x.quarantines.size()) {
        Add(&p, k + " quarantine #" + std::to_string(i) + ": only in B " + Str(y.quarantines[i]));
      } else if (i >= y.quarantines.size()) {
        Add(&p, k + " quarantine #" + std::to_string(i) + ": only in A " + Str(x.quarantines[i]));
      } else if (mode == Compare::kExact ? !(x.quarantines[i] == y.quarantines[i])
                                         : !QuarantineMatches(x.quarantines[i], y.quarantines[i])) {
        Add(&p,
            k + " quarantine #" + std::to_string(i) + ": A " + Str(x.quarantines[i]) + " B " + Str(y.quarantines[i]));
      }
    }
  }
  DiffMap("membership", a.memberships, b.memberships, &p);
  DiffMap("resolved membership row", a.resolved, b.resolved, &p);
  for (auto& s : p) Add(out, label + ": " + s);
}

/// Table invariants every stored state must satisfy.
void CheckInvariants(const State& s, const std::string& label, Problems* out) {
  for (EntityKind kind : kKindList) {
    const KindState& ks = s.kinds[Idx(kind)];
    const std::string k = std::string(KindName(kind));
    std::map<std::string, int64_t> counts;
    for (const auto& [id, st] : ks.identifiers) {
      if (!ks.entities.count(st.entity))
        Add(out, label + ": " + k + " identifier " + Str(id) + " -> dead " + st.entity);
      ++counts[st.entity];
    }
    for (const auto& [id, e] : ks.entities) {
      if (counts[id] != e.count || e.count == 0) {
        Add(out, label + ": " + k + " entity " + id + " identifier_count " + Str(e.count) + " but " + Str(counts[id]) +
                     " identifiers point to it");
      }
      if (!ks.finals.count(id)) Add(out, label + ": " + k + " entity " + id + " has no final row");
    }
    for (const auto& [key, row] : ks.traits) {
      if (!ks.entities.count(key.first)) Add(out, label + ": " + k + " trait of dead entity " + Str(key));
    }
    for (const auto& [id, cols] : ks.finals) {
      if (!ks.entities.count(id)) Add(out, label + ": " + k + " final row of dead entity " + id);
      if (cols.size() != FinalColumns(kind).size()) Add(out, label + ": " + k + " final row width " + id);
    }
    for (const auto& p : ks.participants) {
      if (!ks.entities.count(std::get<1>(p))) Add(out, label + ": " + k + " participant of dead entity " + Str(p));
    }
    for (const auto& [old_id, a] : ks.aliases) {
      if (!ks.entities.count(a.new_id)) Add(out, label + ": " + k + " alias " + old_id + " -> dead " + a.new_id);
    }
  }
  for (const auto& [key, m] : s.memberships) {
    if (!s.kinds[kPersons].entities.count(key.first) || !s.kinds[kGroups].entities.count(key.second)) {
      Add(out, label + ": membership of a dead entity " + Str(key));
    }
  }
  for (const auto& [row, key] : s.resolved) {
    if (!s.kinds[kPersons].entities.count(key.first) || !s.kinds[kGroups].entities.count(key.second)) {
      Add(out, label + ": resolved membership row " + Str(row) + " of a dead entity " + Str(key));
    }
  }
}

// =========================================================================================================
// The oracle: replays the log from the start with explicit sets, stating each rule of the engine's contract
// in the plainest form. It shares no code with the engine.
// =========================================================================================================

std::string OraclePrefix(EntityKind kind) { return kind == EntityKind::kPerson ? "per_" : "grp_"; }

std::string OracleId(EntityKind kind, const Ident& founder) {
  return OraclePrefix(kind) + StableId128(std::string(kSalt) + '\x1f' + founder.first + '\x1f' + founder.second);
}

struct OracleColumn {
  std::vector<std::string> traits;  // the first one present wins
  std::string identifier_type;      // fallback: the most recently seen identifier of this type ("" none)
};

/// The final columns as the header documents them: persons (email, name, phone, title, timezone), groups
/// (domain, company_name, industry, company_size, shopify_id).
std::vector<OracleColumn> OracleColumns(EntityKind kind) {
  if (kind == EntityKind::kPerson) {
    return {{{"email"}, "email"}, {{"name"}, ""}, {{"phone"}, "phone"}, {{"title"}, ""}, {{"timezone"}, ""}};
  }
  return {{{"domain"}, "domain"},
          {{"company_name", "name"}, ""},
          {{"industry"}, ""},
          {{"company_size"}, ""},
          {{"shopify_id"}, "shopify_id"}};
}

/// An operator's release of a quarantined edge, applied after the log (Engine::ApplyReleased).
struct Release {
  EntityKind kind = EntityKind::kPerson;
  std::string event_id, edge_id;
  std::vector<Ident> identifiers;
  std::vector<std::string> entity_ids;  // the entities the edge would have joined when it was quarantined
};

class NaiveResolver {
 public:
  NaiveResolver(const Log& log, const LogIndex& index) : log_(log), index_(index) {}

  /// The state after the first `n_events` events of the log (then `release`, when given).
  State Run(size_t n_events, const Release* release = nullptr) const {
    Replay r;
    // Events in log order; within an event persons, then groups, then memberships. Births of both kinds draw
    // from one birth_seq counter in this order, which no batch cut can change: "older" is "born first" here.
    // The engine compares BirthKeys instead (positions of the founding rows); the states compare those keys,
    // which the oracle takes from the founding row it saw.
    for (size_t e = 0; e < n_events; ++e) {
      const LogEvent& event = log_.events[e];
      for (EntityKind kind : kKindList) {
        const size_t k = Idx(kind);
        // The event's edges: its non-blocked rows grouped by edge_id, ordered by each edge's first such row.
        std::vector<std::string> order;
        std::map<std::string, std::vector<Ident>> own;
        std::map<std::string, std::vector<int64_t>> own_rows;  // each identifier's first row in the edge
        for (size_t i : index_.rows[k][e]) {
          const LogIdentifier& row = log_.identifiers[k][i];
          if (row.blocked) continue;
          if (!own.count(row.edge_id)) order.push_back(row.edge_id);
          auto& ids = own[row.edge_id];
          const Ident id{row.type, row.value};
          if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
            ids.push_back(id);
            own_rows[row.edge_id].push_back(row.row_id);
          }
        }
        for (const auto& edge_id : order) {
          ApplyEdge(&r, kind, event, edge_id, own[edge_id], own_rows[edge_id]);
        }
        // First occurrence (smallest occurred, ties: the first consumed) and last sighting (largest).
        for (size_t i : index_.rows[k][e]) {
          const LogIdentifier& row = log_.identifiers[k][i];
          if (row.blocked) continue;
          const Ident id{row.type, row.value};
          auto [it, fresh] = r.kinds[k].sightings.try_emplace(id);
          Sighting& s = it->second;
          if (fresh || event.occurred_us < s.first_us) {
            if (!fresh) ++r.coverage["back-dated sighting moves first seen"];
            s.first_us = event.occurred_us;
            s.source = event.source;
          }
          s.last_us = fresh ? event.occurred_us : std::max(s.last_us, event.occurred_us);
        }
      }
      // A membership row resolves when both of its identifiers are resolved once its own event is applied.
      for (size_t i : index_.memberships[e]) {
        const LogMembership& m = log_.memberships[i];
        if (r.kinds[kPersons].entity_of.count({m.person_type, m.person_value}) &&
            r.kinds[kGroups].entity_of.count({m.group_type, m.group_value})) {
          r.resolved_memberships.push_back(i);
          ++r.coverage["membership row resolved"];
        } else {
          ++r.coverage["membership row unresolved"];
        }
      }
    }
    if (release != nullptr) ApplyRelease(&r, *release);
    return Collect(r, n_events);
  }

 private:
  struct Component {
    std::string id;
    int64_t birth_seq = 0;
    BirthKey birth;  // reported (the engine's), never used to decide
    std::string created_by;
    std::set<Ident> members;
  };
  struct Sighting {
    std::string source;
    int64_t first_us = 0, last_us = 0;
  };
  struct Absorption {
    std::string merged_into, event_id, edge_id;
    int64_t count = 0;
    Ident member;  // any identifier of the absorbed component (to find where it ended up)
  };
  struct KindReplay {
    std::map<Ident, std::string> entity_of;
    std::map<std::string, Component> entities;
    std::map<std::string, std::set<Ident>> seen_under;  // edge_id -> every identifier earlier events saw under it
    std::map<Ident, Sighting> sightings;
    std::map<std::string, Absorption> absorbed;
    std::vector<QuarantineState> quarantines;
  };
  struct Replay {
    std::array<KindReplay, kKinds> kinds;
    int64_t next_birth_seq = 1;  // one counter for persons and groups, in log order
    std::vector<size_t> resolved_memberships;
    std::map<std::string, int64_t> coverage;
  };

  static std::string Found(Replay* r, EntityKind kind, const std::vector<Ident>& ids, const std::string& event_id,
                           const BirthKey& birth) {
    KindReplay& kr = r->kinds[Idx(kind)];
    Component c;
    c.id = OracleId(kind, ids.front());
    c.birth_seq = r->next_birth_seq++;
    c.birth = birth;
    c.created_by = event_id;
    for (const auto& id : ids) {
      c.members.insert(id);
      kr.entity_of[id] = c.id;
    }
    const std::string id = c.id;
    EXPECT_FALSE(kr.entities.count(id)) << "oracle: id collision " << id;
    kr.entities[id] = std::move(c);
    return id;
  }

  /// Which cap uniting `joined` (existing entities) and `fresh` (unseen identifiers, one would-be entity)
  /// breaks, or "". A cap breaks when the union holds more than the cap and more than the largest existing
  /// part already held on its own; unseen identifiers never count as "already held".
  std::string BrokenCap(const Caps& caps, const KindReplay& kr, const std::vector<std::string>& joined,
                        const std::vector<Ident>& fresh) const {
    std::vector<const std::set<Ident>*> parts;
    for (const auto& id : joined) parts.push_back(&kr.entities.at(id).members);
    size_t total = fresh.size(), largest = 0;
    for (const auto* p : parts) {
      total += p->size();
      largest = std::max(largest, p->size());
    }
    if (caps.max_entity_size > 0 && static_cast<int64_t>(total) > caps.max_entity_size && total > largest) {
      return "max_entity_size";
    }
    std::set<std::string> types;
    for (const auto& id : fresh) types.insert(id.first);
    for (const auto* p : parts) {
      for (const auto& id : *p) types.insert(id.first);
    }
    for (const auto& type : types) {
      auto it = caps.per_type.find(type);
      const int64_t cap = it == caps.per_type.end() ? caps.default_per_type : it->second;
      if (cap <= 0) continue;
      auto of_type = [&](const auto& ids) {
        return static_cast<int64_t>(
            std::count_if(ids.begin(), ids.end(), [&](const Ident& i) { return i.first == type; }));
      };
      int64_t sum = of_type(fresh), max_part = 0;
      for (const auto* p : parts) {
        sum += of_type(*p);
        max_part = std::max(max_part, of_type(*p));
      }
      if (sum > cap && sum > max_part) return "type:" + type;
    }
    return "";
  }

  void ApplyEdge(Replay* r, EntityKind kind, const LogEvent& event, const std::string& edge_id,
                 const std::vector<Ident>& own, const std::vector<int64_t>& own_rows) const {
    const std::string& event_id = event.event_id;
    KindReplay& kr = r->kinds[Idx(kind)];
    // Where an identifier of this edge is born: (the event's xid, the edge's first row, its first row here).
    auto born_at = [&](const Ident& id) {
      const size_t i = static_cast<size_t>(std::find(own.begin(), own.end(), id) - own.begin());
      return BirthKey{event.xid, own_rows.front(), own_rows.at(i)};
    };
    // "<event_id>#..." (what ingest derives for a mention without an edge_id) is the event's own: it neither
    // sees nor leaves sightings for other events, even ones naming it explicitly.
    const bool local = edge_id.rfind(event_id + "#", 0) == 0;
    const std::set<Ident> prior = local ? std::set<Ident>{} : kr.seen_under[edge_id];
    if (!local) {
      for (const auto& id : own) kr.seen_under[edge_id].insert(id);  // whatever happens to the edge
    } else if (kr.seen_under.count(edge_id)) {
      ++r->coverage["an event's local edge ignores the same edge_id named by another event"];
    }
    std::vector<Ident> fresh;
    std::vector<std::string> joined;
    auto visit = [&](const Ident& id) {
      auto it = kr.entity_of.find(id);
      if (it == kr.entity_of.end()) {
        if (std::find(fresh.begin(), fresh.end(), id) == fresh.end()) fresh.push_back(id);
      } else if (std::find(joined.begin(), joined.end(), it->second) == joined.end()) {
        joined.push_back(it->second);
      }
    };
    for (const auto& id : own) visit(id);
    const size_t joined_by_own = joined.size();
    for (const auto& id : prior) visit(id);
    if (fresh.empty() && joined.size() < 2) return;  // nothing to unite
    auto& coverage = r->coverage;
    if (joined.size() > joined_by_own) ++coverage["edge_id reused by a later event links an entity"];

    const Caps& caps = kind == EntityKind::kPerson ? log_.protection.person_caps : log_.protection.group_caps;
    if (log_.forced[Idx(kind)].count({event_id, edge_id})) {
      if (!BrokenCap(caps, kr, joined, fresh).empty()) ++coverage["released edge over a cap applied"];
    } else {
      const std::string broken = BrokenCap(caps, kr, joined, fresh);
      if (!broken.empty()) {
        ++coverage["quarantine " + std::string(KindName(kind)) + " " + (broken == "max_entity_size" ? broken : "type")];
        if (!prior.empty()) ++coverage["quarantine of a reused edge_id"];
        kr.quarantines.push_back({event_id, edge_id, broken, own, joined});
        for (const auto& id : fresh) Found(r, kind, {id}, event_id, born_at(id));  // each one stands alone
        return;
      }
    }
    // Survivor: more identifiers, then the smaller birth_seq. The unseen identifiers would be born last, so
    // they found their own entity only when strictly larger than every part they join.
    std::string survivor;
    for (const auto& id : joined) {
      if (survivor.empty()) {
        survivor = id;
        continue;
      }
      const Component& c = kr.entities.at(id);
      const Component& s = kr.entities.at(survivor);
      if (c.members.size() == s.members.size()) ++coverage["survivor by birth_seq (equal sizes)"];
      if (c.members.size() > s.members.size() || (c.members.size() == s.members.size() && c.birth_seq < s.birth_seq)) {
        survivor = id;
      }
    }
    if (survivor.empty() || fresh.size() > kr.entities.at(survivor).members.size()) {
      if (!joined.empty()) ++coverage["unseen identifiers outnumber every part: a new entity absorbs"];
      survivor = Found(r, kind, fresh, event_id, born_at(fresh.front()));
    } else {
      for (const auto& id : fresh) {
        kr.entities.at(survivor).members.insert(id);
        kr.entity_of[id] = survivor;
      }
    }
    for (const auto& id : joined) {
      if (id == survivor) continue;
      Component gone = std::move(kr.entities.at(id));
      kr.entities.erase(id);
      kr.absorbed[id] = {survivor, event_id, edge_id, static_cast<int64_t>(gone.members.size()), *gone.members.begin()};
      ++coverage[std::string(KindName(kind)) + " merge"];
      for (const auto& m : gone.members) {
        kr.entities.at(survivor).members.insert(m);
        kr.entity_of[m] = survivor;
      }
    }
  }

  /// A released edge: one merge, without caps, of the entities of its (known) identifiers and of the entities
  /// it would have joined, wherever those ended up. No sightings, no new identifiers.
  static void ApplyRelease(Replay* r, const Release& rel) {
    KindReplay& kr = r->kinds[Idx(rel.kind)];
    std::vector<std::string> joined;
    auto join = [&](const std::string& id) {
      if (std::find(joined.begin(), joined.end(), id) == joined.end()) joined.push_back(id);
    };
    for (const auto& id : rel.identifiers) {
      if (kr.entity_of.count(id)) join(kr.entity_of.at(id));
    }
    for (const auto& id : rel.entity_ids) {
      if (kr.entities.count(id)) join(id);
      if (kr.absorbed.count(id)) join(kr.entity_of.at(kr.absorbed.at(id).member));
    }
    if (joined.size() < 2) return;
    std::string survivor = joined.front();
    for (const auto& id : joined) {
      const Component& c = kr.entities.at(id);
      const Component& s = kr.entities.at(survivor);
      if (c.members.size() > s.members.size() || (c.members.size() == s.members.size() && c.birth_seq < s.birth_seq)) {
        survivor = id;
      }
    }
    for (const auto& id : joined) {
      if (id == survivor) continue;
      Component gone = std::move(kr.entities.at(id));
      kr.entities.erase(id);
      kr.absorbed[id] = {survivor, rel.event_id, rel.edge_id, static_cast<int64_t>(gone.members.size()),
                         *gone.members.begin()};
      for (const auto& m : gone.members) {
        kr.entities.at(survivor).members.insert(m);
        kr.entity_of[m] = survivor;
      }
    }
  }

  State Collect(const Replay& r, size_t n_events) const {
    State out;
    out.coverage = r.coverage;
    for (EntityKind kind : kKindList) {
      const size_t k = Idx(kind);
      const KindReplay& kr = r.kinds[k];
      KindState& ks = out.kinds[k];
      for (const auto& [id, entity] : kr.entity_of) {
        const Sighting& s = kr.sightings.at(id);
        ks.identifiers[id] = {entity, s.source, s.first_us, s.last_us};
      }
      for (const auto& [id, c] : kr.entities) {
        ks.entities[id] = {static_cast<int64_t>(c.members.size()), c.birth, c.created_by};
      }
      // Trait winners: the trait goes to the entity of the first non-blocked identifier row of its
      // (event, edge_id); per (entity, name) the row that beats every other under the name's rule.
      std::map<std::pair<std::string, std::string>, int64_t> best;
      for (size_t e = 0; e < n_events; ++e) {
        for (size_t t : index_.traits[k][e]) {
          const LogTrait& trait = log_.traits[k][t];
          const LogIdentifier* first = nullptr;
          for (size_t i : index_.rows[k][e]) {
            const LogIdentifier& row = log_.identifiers[k][i];
            if (!row.blocked && row.edge_id == trait.edge_id) {
              first = &row;
              break;
            }
          }
          if (first == nullptr) {
            ++out.coverage["trait without a linkable identifier dropped"];
            continue;
          }
          const std::string entity = kr.entity_of.at({first->type, first->value});
          auto [it, fresh] = best.try_emplace({entity, trait.name}, trait.row_id);
          if (fresh) continue;
          const int64_t before = it->second;
          const bool wins = OracleTraitBeats(log_.protection.traits, trait.name, index_, k, trait.row_id, before);
          if (wins) it->second = trait.row_id;
          const bool later = index_.trait_time[k].at(before) < index_.trait_time[k].at(trait.row_id);
          if (!wins && later) ++out.coverage["later trait row loses to an earlier one"];
          const auto& rule = log_.protection.traits.For(trait.name);
          if (!wins && later && rule.kind == TraitRule::Kind::kPriority)
            ++out.coverage["trait: a later row of a lower-priority source loses"];
          if (wins && !later && rule.kind == TraitRule::Kind::kPriority)
            ++out.coverage["trait: an earlier row of a higher-priority source wins"];
          if (!wins && later && rule.kind == TraitRule::Kind::kFirst) ++out.coverage["trait: first value kept"];
          if (wins && index_.trait_null[k].at(trait.row_id)) ++out.coverage["trait: null row clears"];
        }
      }
      for (const auto& [key, row] : best) ks.traits[key] = row;
      // Final columns: the winning trait of the column's name(s), else the identifier of the fallback type
      // with the latest last sighting (ties: the smallest value), else NULL.
      for (const auto& [id, c] : kr.entities) {
        std::vector<FinalValue> cols;
        for (const auto& col : OracleColumns(kind)) {
          FinalValue v;
          for (const auto& name : col.traits) {
            auto it = ks.traits.find({id, name});
            if (it != ks.traits.end() && !index_.trait_null[k].at(it->second)) {  // cleared: as if absent
              v.trait_row = it->second;
              break;
            }
          }
          if (v.trait_row == 0 && !col.identifier_type.empty()) {
            std::optional<std::pair<int64_t, std::string>> latest;
            for (const auto& m : c.members) {
              if (m.first != col.identifier_type) continue;
              const int64_t last = kr.sightings.at(m).last_us;
              if (!latest || last > latest->first || (last == latest->first && m.second < latest->second)) {
                latest = {last, m.second};
              }
            }
            if (latest) v.identifier_value = latest->second;
          }
          cols.push_back(v);
        }
        ks.finals[id] = cols;
      }
      // Participants: one per (event, entity, role) of the non-blocked rows that carry a role.
      for (size_t e = 0; e < n_events; ++e) {
        for (size_t i : index_.rows[k][e]) {
          const LogIdentifier& row = log_.identifiers[k][i];
          if (row.blocked || !row.role) continue;
          ks.participants.emplace(log_.events[e].event_id, kr.entity_of.at({row.type, row.value}), *row.role);
        }
      }
      for (const auto& [old_id, a] : kr.absorbed) {
        ks.aliases[old_id] = {kr.entity_of.at(a.member), a.merged_into, a.event_id, a.edge_id, a.count};
      }
      ks.quarantines = kr.quarantines;
    }
    // Memberships: per (person entity, group entity) of the resolved rows; established is the earliest
    // occurrence, the role row the largest (occurred, ingested, row id).
    std::map<std::pair<std::string, std::string>, std::pair<int64_t, RowTime>> mem;
    for (size_t i : r.resolved_memberships) {
      const LogMembership& m = log_.memberships[i];
      const std::pair<std::string, std::string> key{r.kinds[kPersons].entity_of.at({m.person_type, m.person_value}),
                                                    r.kinds[kGroups].entity_of.at({m.group_type, m.group_value})};
      out.resolved[m.row_id] = key;
      const RowTime when{log_.events[m.event].occurred_us, log_.events[m.event].ingested_us, m.row_id};
      auto [it, fresh] = mem.try_emplace(key, when.occurred_us, when);
      if (!fresh) {
        it->second.first = std::min(it->second.first, when.occurred_us);
        it->second.second = std::max(it->second.second, when);
      }
    }
    for (const auto& [key, v] : mem) out.memberships[key] = {v.first, v.second.row_id};
    return out;
  }

  const Log& log_;
  const LogIndex& index_;
};

// =========================================================================================================
// The sink: applies BatchDeltas the way storage writes them.
//
// Per kind: aliases for every merge; for every absorbed_existing merge, the absorbed entity's identifiers,
// participants, resolved membership rows and aliases are repointed to survivor_id, its trait winners and
// memberships are dropped (kFold: folded into the survivor's, keeping the latest / the earliest
// established_at, like the SQL), its row (with its final columns) is deleted. Then identifier changes and
// entity changes are upserted (a new entity row starts with NULL final columns), trait winners, final rows
// and memberships are written as given (kFold: only when newer, like the SQL), participants and resolved
// memberships inserted. Contract violations (an is_new row that exists, an update of a missing row, ...)
// are recorded as problems.
// =========================================================================================================

class Sink {
 public:
  enum class Mode { kDeltaOnly, kFold };
  Sink(const Log& log, const LogIndex& index, Mode mode, std::string name)
      : log_(&log), index_(&index), mode_(mode), name_(std::move(name)) {}

  const State& state() const { return state_; }
  const Problems& problems() const { return problems_; }
  /// Rows a delta listed as changed that did not change (the header promises changed rows only).
  const Problems& unchanged_rows() const { return unchanged_; }
  void set_name(std::string name) { name_ = std::move(name); }

  void Apply(const BatchDelta& d, size_t first_event, size_t n_events) {
    auto event_id = [&](uint32_t ev) -> std::string {
      if (ev >= n_events) {
        Error("event index " + std::to_string(ev) + " out of the batch");
        return "?";
      }
      return log_->events[first_event + ev].event_id;
    };
    for (EntityKind kind : kKindList) {
      const size_t k = Idx(kind);
      const KindDelta& kd = d.kinds[k];
      KindState& ks = state_.kinds[k];
      const std::string kn = KindName(kind);
      const bool strict = mode_ == Mode::kDeltaOnly;
      std::set<std::string> existed;
      for (const auto& [id, e] : ks.entities) existed.insert(id);
      std::set<std::pair<std::string, std::string>> absorbed_existing;
      for (const MergeRecord& m : kd.merges) {
        if (m.absorbed_existing != (ks.entities.count(m.absorbed_id) > 0)) {
          Error(kn + " merge of " + m.absorbed_id + ": absorbed_existing=" + std::to_string(m.absorbed_existing) +
                " but the entity row " + (m.absorbed_existing ? "does not exist" : "exists"));
        }
        if (!ks.aliases
                 .emplace(m.absorbed_id,
                          AliasState{m.survivor_id, m.merged_into_id, m.event_id, m.edge_id, m.absorbed_count})
                 .second) {
          Error(kn + " entity " + m.absorbed_id + " absorbed twice");
        }
        if (m.absorbed_existing) absorbed_existing.emplace(m.absorbed_id, m.survivor_id);
      }
      const auto listed = kd.AbsorbedExisting();
      if (std::set<std::pair<std::string, std::string>>(listed.begin(), listed.end()) != absorbed_existing) {
        Error(kn + " AbsorbedExisting() does not match the absorbed_existing merges");
      }
      for (const auto& [a, s] : listed) Repoint(kind, a, s);
      int64_t new_identifiers = 0, born = 0;
      std::set<std::string> gained;
      for (const IdentifierChange& c : kd.identifiers) {
        const Ident id{c.type, c.value};
        auto it = ks.identifiers.find(id);
        if (c.is_new == (it != ks.identifiers.end())) {
          Error(kn + " identifier " + Str(id) + " is_new=" + std::to_string(c.is_new) + " but it " +
                (c.is_new ? "exists" : "does not exist"));
        }
        if (strict && !c.is_new && it != ks.identifiers.end() && it->second.source == c.source &&
            it->second.first_us == c.first_us && it->second.last_us == c.last_us) {
          Unchanged(kn + " identifier " + Str(id) + " (first/last seen and source as stored)");
        }
        ks.identifiers[id] = {c.entity_id, c.source, c.first_us, c.last_us};
        if (c.is_new) ++new_identifiers;
        if (c.is_new && existed.count(c.entity_id)) gained.insert(c.entity_id);
      }
      for (const EntityChange& c : kd.entities) {
        auto it = ks.entities.find(c.id);
        if (c.is_new) {
          if (it != ks.entities.end()) Error(kn + " new entity " + c.id + " exists");
          ks.entities[c.id] = {c.identifier_count, c.birth, c.created_by_event_id};
          ks.finals[c.id] = std::vector<FinalValue>(FinalColumns(kind).size());
          ++born;
        } else if (it == ks.entities.end()) {
          Error(kn + " update of missing entity " + c.id);
        } else {
          if (it->second.birth != c.birth) Error(kn + " entity " + c.id + " changed its birth key");
          if (strict && it->second.count == c.identifier_count) {
            Unchanged(kn + " entity " + c.id + " (identifier_count as stored)");
          }
          it->second.count = c.identifier_count;
        }
      }
      for (const TraitWinner& t : kd.traits) {
        auto when = index_->trait_time[k].find(t.row_id);
        if (when == index_->trait_time[k].end()) {
          Error(kn + " trait winner row " + Str(t.row_id) + " is not a trait row");
          continue;
        }
        if (t.row_occurred_us != when->second.occurred_us) {
          Error(kn + " trait winner row " + Str(t.row_id) + " carries occurred_at " + Str(t.row_occurred_us) +
                ", its row has " + Str(when->second.occurred_us));
        }
        auto [it, fresh] = ks.traits.try_emplace({t.entity_id, t.name}, t.row_id);
        if (fresh) continue;
        if (strict && it->second == t.row_id) {
          Unchanged(kn + " trait winner " + t.entity_id + ":" + t.name + " = row " + Str(t.row_id) + " (as stored)");
        }
        if (mode_ == Mode::kDeltaOnly ||
            OracleTraitBeats(log_->protection.traits, t.name, *index_, k, t.row_id, it->second)) {
          it->second = t.row_id;
        }
      }
      for (const Participant& p : kd.participants) ks.participants.emplace(event_id(p.event), p.entity_id, p.role);
      for (const FinalRow& f : kd.finals) {
        if (!ks.finals.count(f.entity_id)) Error(kn + " final row of an entity without a row " + f.entity_id);
        if (f.columns.size() != FinalColumns(kind).size()) Error(kn + " final row width " + f.entity_id);
        if (strict && ks.finals[f.entity_id] == f.columns) {
          Unchanged(kn + " final row " + f.entity_id + " " + Str(f.columns) + " (as stored)");
        }
        ks.finals[f.entity_id] = f.columns;
      }
      for (const QuarantineRecord& q : kd.quarantined) {
        ks.quarantines.push_back({event_id(q.event), q.edge_id, q.reason, q.identifiers, q.entity_ids});
      }
      // The batch's stats, recounted from the delta and the stored rows.
      int64_t accreted = 0;
      for (const auto& id : gained) accreted += ks.entities.count(id) > 0;
      const KindStats& st = kd.stats;
      const std::vector<std::pair<const char*, std::pair<int64_t, int64_t>>> stats = {
          {"born", {st.born, born}},
          {"accreted", {st.accreted, accreted}},
          {"merged", {st.merged, static_cast<int64_t>(kd.merges.size())}},
          {"quarantined", {st.quarantined, static_cast<int64_t>(kd.quarantined.size())}},
          {"identifiers", {st.identifiers, new_identifiers}},
          {"entities_delta",
           {st.entities_delta, static_cast<int64_t>(ks.entities.size()) - static_cast<int64_t>(existed.size())}}};
      for (const auto& [name, v] : stats) {
        if (v.first != v.second) {
          Error(kn + " stats." + name + " = " + Str(v.first) + ", the delta says " + Str(v.second));
        }
      }
    }
    for (const MembershipChange& m : d.memberships) {
      auto when = index_->membership_time.find(m.role_row_id);
      if (when == index_->membership_time.end()) {
        Error("membership role row " + Str(m.role_row_id) + " is not a membership row");
        continue;
      }
      if (m.role_occurred_us != when->second.occurred_us) {
        Error("membership role row " + Str(m.role_row_id) + " carries occurred_at " + Str(m.role_occurred_us) +
              ", its row has " + Str(when->second.occurred_us));
      }
      auto [it, fresh] =
          state_.memberships.try_emplace({m.person_id, m.group_id}, MembershipState{m.established_us, m.role_row_id});
      if (fresh) continue;
      if (mode_ == Mode::kDeltaOnly) {
        it->second = {m.established_us, m.role_row_id};
      } else {
        it->second.established_us = std::min(it->second.established_us, m.established_us);
        if (index_->membership_time.at(it->second.role_row_id) < when->second) it->second.role_row_id = m.role_row_id;
      }
    }
    for (const ResolvedMembership& r : d.resolved_memberships) {
      if (auto when = index_->membership_time.find(r.row_id);
          when == index_->membership_time.end() || when->second.occurred_us != r.occurred_us) {
        Error("resolved membership row " + Str(r.row_id) + " is not a membership row of occurred_at " +
              Str(r.occurred_us));
      }
      if (!state_.resolved.emplace(r.row_id, std::make_pair(r.person_id, r.group_id)).second) {
        Error("membership row " + Str(r.row_id) + " resolved twice");
      }
    }
  }

 private:
  void Error(const std::string& what) { Add(&problems_, name_ + ": delta contract: " + what); }
  void Unchanged(const std::string& what) { Add(&unchanged_, name_ + ": delta lists an unchanged row: " + what); }

  void Repoint(EntityKind kind, const std::string& a, const std::string& s) {
    const size_t k = Idx(kind);
    KindState& ks = state_.kinds[k];
    for (auto& [id, st] : ks.identifiers) {
      if (st.entity == a) st.entity = s;
    }
    for (auto it = ks.traits.begin(); it != ks.traits.end();) {
      if (it->first.first != a) {
        ++it;
        continue;
      }
      if (mode_ == Mode::kFold) {
        auto [slot, fresh] = ks.traits.try_emplace({s, it->first.second}, it->second);
        if (!fresh &&
            OracleTraitBeats(log_->protection.traits, it->first.second, *index_, k, it->second, slot->second)) {
          slot->second = it->second;
        }
      }
      it = ks.traits.erase(it);
    }
    std::set<Participation> parts;
    for (const auto& p : ks.participants) {
      parts.emplace(std::get<0>(p), std::get<1>(p) == a ? s : std::get<1>(p), std::get<2>(p));
    }
    ks.participants = std::move(parts);
    for (auto& [old_id, alias] : ks.aliases) {
      if (alias.new_id == a) alias.new_id = s;
    }
    ks.entities.erase(a);
    ks.finals.erase(a);
    for (auto& [row, key] : state_.resolved) {
      std::string& side = kind == EntityKind::kPerson ? key.first : key.second;
      if (side == a) side = s;
    }
    for (auto it = state_.memberships.begin(); it != state_.memberships.end();) {
      const auto& [p, g] = it->first;
      if ((kind == EntityKind::kPerson ? p : g) != a) {
        ++it;
        continue;
      }
      if (mode_ == Mode::kFold) {
        const std::pair<std::string, std::string> key =
            kind == EntityKind::kPerson ? std::make_pair(s, g) : std::make_pair(p, s);
        const MembershipState m = it->second;
        auto [slot, fresh] = state_.memberships.try_emplace(key, m);
        if (!fresh) {
          slot->second.established_us = std::min(slot->second.established_us, m.established_us);
          if (index_->membership_time.at(slot->second.role_row_id) < index_->membership_time.at(m.role_row_id)) {
            slot->second.role_row_id = m.role_row_id;
          }
        }
      }
      it = state_.memberships.erase(it);
    }
  }

  const Log* log_;
  const LogIndex* index_;
  Mode mode_;
  std::string name_;
  State state_;
  Problems problems_;
  Problems unchanged_;
};

// =========================================================================================================
// Engines: snapshots as states, loading from a stored state, stats.
// =========================================================================================================

State FromSnapshot(const Engine& engine, const std::string& label, Problems* out) {
  const Engine::Snapshot snap = engine.TakeSnapshot();
  State s;
  for (EntityKind kind : kKindList) {
    const size_t k = Idx(kind);
    KindState& ks = s.kinds[k];
    for (const auto& c : snap.identifiers[k]) {
      if (!ks.identifiers.emplace(Ident{c.type, c.value}, IdentState{c.entity_id, c.source, c.first_us, c.last_us})
               .second) {
        Add(out, label + ": snapshot lists identifier " + c.type + ":" + c.value + " twice");
      }
    }
    for (const auto& c : snap.entities[k]) ks.entities[c.id] = {c.identifier_count, c.birth, ""};
    for (const auto& t : snap.traits[k]) ks.traits[{t.entity_id, t.name}] = t.row_id;
    for (const auto& f : snap.finals[k]) ks.finals[f.entity_id] = f.columns;
  }
  for (const auto& m : snap.memberships) s.memberships[{m.person_id, m.group_id}] = {m.established_us, m.role_row_id};
  return s;
}

/// Only what a snapshot holds: no participants, aliases, quarantines, resolved rows or created_by.
State SnapshotView(State s) {
  for (auto& ks : s.kinds) {
    ks.participants.clear();
    ks.aliases.clear();
    ks.quarantines.clear();
    for (auto& [id, e] : ks.entities) e.created_by.clear();
  }
  s.resolved.clear();
  return s;
}

enum class LoadOrder {
  /// Entities, identifiers, edge sightings, then trait winners and memberships.
  kEntitiesFirst,
  /// Only what the header requires ("entities before their identifiers and identifiers before their edge
  /// sightings; trait winners and memberships in any order"): trait winners and memberships are mixed in
  /// anywhere, before the entities too.
  kAnyDocumentedOrder,
};

/// A new engine loaded from a stored state the way storage loads it, after the first `n_events` events:
/// entities, identifiers, edge sightings of every non-blocked identifier row of those events, trait winners
/// and memberships (their times looked up from the log). Each group is loaded in a shuffled order.
std::unique_ptr<Engine> LoadEngine(const State& stored, const Log& log, const LogIndex& index, size_t n_events,
                                   const std::string& label, Problems* out,
                                   LoadOrder order = LoadOrder::kEntitiesFirst) {
  auto engine = std::make_unique<Engine>(kSalt);
  std::mt19937_64 rng(n_events * 7919 + stored.kinds[kPersons].identifiers.size());
  using Calls = std::vector<std::function<void()>>;
  Calls entities, identifiers, sightings, rest;
  for (EntityKind kind : kKindList) {
    const size_t k = Idx(kind);
    // Storage's size hint is an estimate: none, too small or too large must load the same state.
    if (rng() % 4 != 0) {
      auto hint = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, 2 * n + 1)(rng); };
      engine->ReserveForLoad(kind, hint(stored.kinds[k].entities.size()), hint(stored.kinds[k].identifiers.size()));
    }
    for (const auto& [id, e] : stored.kinds[k].entities) {
      entities.push_back([&engine, kind, id, e] { engine->LoadEntity(kind, id, e.count, e.birth); });
    }
    for (const auto& [id, s] : stored.kinds[k].identifiers) {
      identifiers.push_back([&engine, kind, id, s, label, out] {
        if (!engine->LoadIdentifier(kind, id.first, id.second, s.entity, s.source, s.first_us, s.last_us)) {
          Add(out, label + ": LoadIdentifier refused " + Str(id));
        }
      });
    }
    std::set<std::tuple<std::string, std::string, std::string, std::string>> seen;
    for (const auto& r : log.identifiers[k]) {
      if (r.event < n_events && !r.blocked) seen.emplace(log.events[r.event].event_id, r.edge_id, r.type, r.value);
    }
    for (const auto& [event_id, edge, type, value] : seen) {
      sightings.push_back([&engine, kind, event_id, edge, type, value] {
        engine->LoadEdgeSighting(kind, event_id, edge, type, value);
      });
    }
    for (const auto& [key, row] : stored.kinds[k].traits) {
      const RowTime t = index.trait_time[k].at(row);
      const std::string source = index.trait_source[k].at(row);
      const bool is_null = index.trait_null[k].at(row);
      rest.push_back([&engine, kind, key, t, source, is_null] {
        engine->LoadTraitWinner(kind, key.first, key.second, t.occurred_us, t.ingested_us, t.row_id, source, is_null);
      });
    }
  }
  for (const auto& [key, m] : stored.memberships) {
    const RowTime t = index.membership_time.at(m.role_row_id);
    const int64_t established = m.established_us;
    rest.push_back([&engine, key, established, t] {
      engine->LoadMembership(key.first, key.second, established, t.occurred_us, t.ingested_us, t.row_id);
    });
  }
  Calls calls;
  for (Calls* group : {&entities, &identifiers, &sightings, &rest}) {
    std::shuffle(group->begin(), group->end(), rng);
    if (group != &rest || order == LoadOrder::kEntitiesFirst) {
      calls.insert(calls.end(), group->begin(), group->end());
      continue;
    }
    for (auto& call : rest) {
      const auto at = std::uniform_int_distribution<size_t>(0, calls.size())(rng);
      calls.insert(calls.begin() + static_cast<std::ptrdiff_t>(at), call);
    }
  }
  for (auto& call : calls) call();
  engine->FinishLoad();
  return engine;
}

struct StatSums {
  std::array<KindStats, kKinds> sum{};
  void Add(const BatchDelta& d) {
    for (size_t k = 0; k < kKinds; ++k) {
      const KindStats& s = d.kinds[k].stats;
      sum[k].born += s.born;
      sum[k].merged += s.merged;
      sum[k].quarantined += s.quarantined;
      sum[k].identifiers += s.identifiers;
      sum[k].entities_delta += s.entities_delta;
    }
  }
  /// Summed over batches, the stats count what the state holds.
  void Check(const State& want, const std::string& label, Problems* out) const {
    for (EntityKind kind : kKindList) {
      const size_t k = Idx(kind);
      const KindState& ks = want.kinds[k];
      const std::string what = label + ": " + KindName(kind) + " stats summed: ";
      if (sum[k].entities_delta != static_cast<int64_t>(ks.entities.size())) {
        ::nexus::resolver::Add(out, what + "entities_delta " + Str(sum[k].entities_delta) +
                                        " != " + Str(static_cast<int64_t>(ks.entities.size())) + " live entities");
      }
      if (sum[k].identifiers != static_cast<int64_t>(ks.identifiers.size())) {
        ::nexus::resolver::Add(out, what + "identifiers " + Str(sum[k].identifiers) +
                                        " != " + Str(static_cast<int64_t>(ks.identifiers.size())));
      }
      if (sum[k].quarantined != static_cast<int64_t>(ks.quarantines.size())) {
        ::nexus::resolver::Add(out, what + "quarantined " + Str(sum[k].quarantined) +
                                        " != " + Str(static_cast<int64_t>(ks.quarantines.size())));
      }
      if (sum[k].merged != static_cast<int64_t>(ks.aliases.size())) {
        ::nexus::resolver::Add(out, what + "merged " + Str(sum[k].merged) +
                                        " != " + Str(static_cast<int64_t>(ks.aliases.size())) + " absorbed ids");
      }
    }
  }
};

/// The read accessors of an engine against the oracle's state.
void CheckAccessors(const Engine& engine, const Log& log, const State& want, const std::string& label, Problems* out) {
  for (EntityKind kind : kKindList) {
    const size_t k = Idx(kind);
    const KindState& ks = want.kinds[k];
    const std::string kn = KindName(kind);
    if (engine.entity_count(kind) != ks.entities.size()) {
      Add(out, label + ": " + kn + " entity_count " + std::to_string(engine.entity_count(kind)) +
                   " != " + std::to_string(ks.entities.size()));
    }
    if (engine.identifier_count(kind) != ks.identifiers.size()) {
      Add(out, label + ": " + kn + " identifier_count " + std::to_string(engine.identifier_count(kind)) +
                   " != " + std::to_string(ks.identifiers.size()));
    }
    for (const auto& r : log.identifiers[k]) {
      auto it = ks.identifiers.find({r.type, r.value});
      const std::string got = engine.EntityOf(kind, r.type, r.value);
      const std::string expected = it == ks.identifiers.end() ? "" : it->second.entity;
      if (got != expected) {
        Add(out,
            label + ": " + kn + " EntityOf(" + r.type + ":" + r.value + ") = '" + got + "', want '" + expected + "'");
      }
    }
  }
}

/// What a replay (Engine::Report::kReplay) must report of a batch, spelled out: merges, participants, entities
/// born, quarantined edges, resolved memberships and the stats other than `accreted`; then whether any of the parts
/// it leaves out is not empty.
std::string ReplayParts(const BatchDelta& d, bool replay) {
  std::ostringstream o;
  for (const auto& kd : d.kinds) {
    o << "kind\n";
    for (const auto& m : kd.merges) {
      o << "merge " << m.absorbed_id << ' ' << m.merged_into_id << ' ' << m.survivor_id << ' ' << m.event_id << ' '
        << m.edge_id << ' ' << m.absorbed_count << ' ' << m.absorbed_existing << '\n';
    }
    for (const auto& p : kd.participants) o << "participant " << p.event << ' ' << p.entity_id << ' ' << p.role << '\n';
    for (const auto& e : kd.entities) {
      if (e.is_new) o << "born " << e.id << ' ' << e.identifier_count << ' ' << e.created_by_event_id << '\n';
    }
    for (const auto& q : kd.quarantined) {
      o << "quarantined " << q.event << ' ' << q.edge_id << ' ' << q.reason << ' ' << q.identifiers.size();
      for (const auto& id : q.entity_ids) o << ' ' << id;
      o << '\n';
    }
    o << "stats " << kd.stats.born << ' ' << kd.stats.merged << ' ' << kd.stats.quarantined << ' '
      << kd.stats.identifiers << ' ' << kd.stats.entities_delta << '\n';
    if (replay) {
      const bool only_born =
          std::all_of(kd.entities.begin(), kd.entities.end(), [](const EntityChange& e) { return e.is_new; });
      if (!kd.identifiers.empty() || !only_born || !kd.traits.empty() || !kd.finals.empty() || kd.stats.accreted) {
        o << "a part a replay leaves out is not empty\n";
      }
    }
  }
  for (const auto& m : d.resolved_memberships) {
    o << "resolved membership " << m.row_id << ' ' << m.person_id << ' ' << m.group_id << ' ' << m.occurred_us << '\n';
  }
  if (replay && !d.memberships.empty()) o << "memberships in a replay\n";
  return o.str();
}

/// Whether the entity refs of a delta name what its ids name, in `e` right after the Apply that returned it (a
/// rebuild keeps refs and spells them out at the end): the first disagreement, or "".
std::string RefsDisagree(const Engine& e, const BatchDelta& d) {
  std::ostringstream o;
  auto check = [&](EntityKind k, uint32_t ref, const std::string& want, const std::string& what) {
    const std::string got = e.EntityIdAt(k, ref);
    if (got != want) o << what << ": ref " << ref << " is " << got << ", want " << want << '\n';
  };
  for (EntityKind k : {EntityKind::kPerson, EntityKind::kGroup}) {
    const KindDelta& kd = d.kinds[Idx(k)];
    for (const auto& m : kd.merges) {
      check(k, m.absorbed_ref, m.absorbed_id, "merge's absorbed");
      check(k, m.merged_into_ref, m.merged_into_id, "merge's merged_into");
      check(k, e.SurvivorAt(k, m.absorbed_ref), m.survivor_id, "survivor of a merge's absorbed");
    }
    for (const auto& p : kd.participants) {
      check(k, p.entity_ref, p.entity_id, "participant");
      if (e.SurvivorAt(k, p.entity_ref) != p.entity_ref) o << "participant " << p.entity_id << " is not live\n";
    }
    for (const auto& x : kd.entities) check(k, x.ref, x.id, "entity");
  }
  for (const auto& m : d.resolved_memberships) {
    check(EntityKind::kPerson, m.person_ref, m.person_id, "resolved membership's person");
    check(EntityKind::kGroup, m.group_ref, m.group_id, "resolved membership's group");
  }
  return o.str();
}

// =========================================================================================================
// One case: (a) cuts, (b) one batch, (c) oracle, (d) reloaded, (r) a replay of (a)'s cuts. Returns the problems
// (empty: all agree).
// =========================================================================================================

Problems CheckCase(const Case& c, std::map<std::string, int64_t>* coverage = nullptr) {
  Problems out;
  const Log& log = c.log;
  const LogIndex index(log);
  const NaiveResolver oracle(log, index);
  const ProtectionConfig& protection = log.protection;
  const size_t n = log.events.size();
  const BatchInput empty;

  Engine a(kSalt);
  Engine r(kSalt);  // the same cuts, Report::kReplay
  Sink a_sink(log, index, Sink::Mode::kDeltaOnly, "(a) cuts");
  Sink a_fold(log, index, Sink::Mode::kFold, "(a) cuts, folding sink");
  StatSums a_sums;
  std::unique_ptr<Engine> d;
  std::optional<Sink> d_sink;
  size_t d_from = n;
  auto load_d = [&](size_t at) {
    d_from = at;
    d = LoadEngine(a_sink.state(), log, index, at, "(d) reloaded before event " + std::to_string(at), &out,
                   at % 2 == 0 ? LoadOrder::kEntitiesFirst : LoadOrder::kAnyDocumentedOrder);
    d_sink = a_sink;
    d_sink->set_name("(d) reloaded before event " + std::to_string(at));
  };
  auto collect = [&](const Sink& s) {
    for (const auto& p : s.problems()) Add(&out, p);
  };
  const auto batches = Batches(c);
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const auto [b, e] = batches[bi];
    if (!d && b >= c.restart_event) load_d(b);
    if (c.empty_batches) {
      const BatchDelta none = a.Apply(empty, protection);
      a_sink.Apply(none, b, 0);
      a_fold.Apply(none, b, 0);
      a_sums.Add(none);
      if (d) d_sink->Apply(d->Apply(empty, protection), b, 0);
    }
    const BatchInput in = Slice(log, b, e);
    const BatchDelta delta = a.Apply(in, protection);
    const BatchDelta replay = r.Apply(in, protection, Engine::Report::kReplay);
    for (const auto& [engine, got, name] : {std::tuple(&a, &delta, "(a)"), std::tuple(&r, &replay, "(r)")}) {
      if (const std::string bad = RefsDisagree(*engine, *got); !bad.empty()) {
        Add(&out, std::string(name) + " batch #" + std::to_string(bi) + ": entity refs disagree with ids:\n" + bad);
      }
    }
    const std::string replayed = ReplayParts(replay, true);
    if (replayed != ReplayParts(delta, false)) {
      Add(&out, "(r) replay of batch #" + std::to_string(bi) + " reports other merges, participants, births, " +
                    "quarantines or stats than (a), or a part it leaves out:\n" + replayed + "\nwant:\n" +
                    ReplayParts(delta, false));
    }
    a_sink.Apply(delta, b, e - b);
    a_fold.Apply(delta, b, e - b);
    a_sums.Add(delta);
    if (coverage) {
      for (const auto& kd : delta.kinds) {
        for (const auto& m : kd.merges)
          (*coverage)["merge of an entity stored by an earlier batch"] += m.absorbed_existing;
      }
    }
    if (d) d_sink->Apply(d->Apply(in, protection), b, e - b);
    collect(a_sink);
    collect(a_fold);
    if (d) collect(*d_sink);
    // Against the oracle after (at most about 12) intermediate batches and the last one: the oracle replays
    // from the start each time.
    if (bi % (batches.size() / 12 + 1) == 0 || bi + 1 == batches.size()) {
      Diff(a_sink.state(), oracle.Run(e), Compare::kAgainstOracle,
           "(a) cuts after batch #" + std::to_string(bi) + " (events " + std::to_string(b) + ".." +
               std::to_string(e - 1) + ") vs oracle",
           &out);
    }
    if (!out.empty()) return out;  // the first divergence is the useful one
  }
  if (!d) load_d(n);
  const State want = oracle.Run(n);

  Engine whole(kSalt);
  Sink b_sink(log, index, Sink::Mode::kDeltaOnly, "(b) one batch");
  StatSums b_sums;
  const BatchDelta all = whole.Apply(Slice(log, 0, n), protection);
  b_sink.Apply(all, 0, n);
  b_sums.Add(all);

  collect(b_sink);
  collect(*d_sink);
  CheckInvariants(a_sink.state(), "(a) stored state", &out);
  CheckInvariants(a_fold.state(), "(a) stored state, folding sink", &out);
  CheckInvariants(b_sink.state(), "(b) stored state", &out);
  CheckInvariants(d_sink->state(), "(d) stored state", &out);
  Diff(a_fold.state(), a_sink.state(), Compare::kExact, "(a) folding sink vs (a) delta-only sink", &out);
  Diff(b_sink.state(), a_sink.state(), Compare::kExact, "(b) one batch vs (a) cuts", &out);
  Diff(b_sink.state(), want, Compare::kAgainstOracle, "(b) one batch vs oracle", &out);
  Diff(d_sink->state(), want, Compare::kAgainstOracle,
       "(d) reloaded before event " + std::to_string(d_from) + " vs oracle", &out);
  const State want_view = SnapshotView(want);
  Diff(FromSnapshot(a, "(a) snapshot", &out), want_view, Compare::kAgainstOracle, "(a) snapshot vs oracle", &out);
  Diff(FromSnapshot(whole, "(b) snapshot", &out), want_view, Compare::kAgainstOracle, "(b) snapshot vs oracle", &out);
  Diff(FromSnapshot(*d, "(d) snapshot", &out), want_view, Compare::kAgainstOracle, "(d) snapshot vs oracle", &out);
  a_sums.Check(want, "(a)", &out);
  b_sums.Check(want, "(b)", &out);
  CheckAccessors(a, log, want, "(a)", &out);
  CheckAccessors(*d, log, want, "(d)", &out);
  if (const std::string diff = DiffStates(r, a); !diff.empty()) Add(&out, "(r) replay's state vs (a):\n" + diff);

  // (e) An operator releases one quarantined edge on the running engine (a): its delta, stored, must give
  // the oracle's state with that release applied.
  for (EntityKind kind : kKindList) {
    const auto& quarantines = a_sink.state().kinds[Idx(kind)].quarantines;
    if (quarantines.empty()) continue;
    const QuarantineState q = quarantines[n % quarantines.size()];
    const Release release{kind, q.event_id, q.edge_id, q.identifiers, q.entity_ids};
    const std::string label = std::string("(a) after releasing ") + KindName(kind) + " edge " + q.event_id + "/" +
                              q.edge_id + " (ApplyReleased)";
    std::string into;
    const BatchDelta delta = a.ApplyReleased(kind, q.event_id, q.edge_id, q.identifiers, q.entity_ids, &into);
    a_sink.set_name(label);
    a_sink.Apply(delta, 0, 0);
    collect(a_sink);
    const State released = oracle.Run(n, &release);
    CheckInvariants(a_sink.state(), label, &out);
    Diff(a_sink.state(), released, Compare::kAgainstOracle, label + " vs oracle", &out);
    Diff(FromSnapshot(a, label, &out), SnapshotView(released), Compare::kAgainstOracle, label + ", snapshot vs oracle",
         &out);
    const std::string want_into = released.kinds[Idx(kind)].identifiers.at(q.identifiers.front()).entity;
    if (into != want_into) Add(&out, label + ": *entity_id '" + into + "', want '" + want_into + "'");
    if (coverage) ++(*coverage)["release of a quarantined edge"];
    break;  // one release per stream
  }
  if (coverage) {
    for (const auto& [what, n] : want.coverage) (*coverage)[what] += n;
    (*coverage)["reload in the middle of a stream"] += d_from > 0 && d_from < n;
  }
  return out;
}

// =========================================================================================================
// Random streams.
// =========================================================================================================

constexpr int64_t kT0 = 1'700'000'000'000'000;  // microseconds

std::string EventId(size_t i) {
  std::string s = std::to_string(i);
  return "ev" + std::string(s.size() < 3 ? 3 - s.size() : 0, '0') + s;
}

class StreamGenerator {
 public:
  StreamGenerator(uint64_t seed, uint64_t stream) {
    std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(stream),
                      static_cast<uint32_t>(stream >> 32)};
    rng_.seed(seq);
  }

  Case Generate() {
    Case c;
    Log& log = c.log;
    const bool dense = Chance(0.15);  // tiny value spaces: huge components, many quarantines
    emails_ = dense ? Int(2, 6) : Int(12, 40);
    user_ids_ = dense ? Int(1, 3) : Int(3, 10);
    phones_ = dense ? Int(1, 3) : Int(3, 10);
    domains_ = dense ? Int(1, 3) : Int(3, 10);
    shops_ = dense ? Int(1, 2) : Int(2, 6);
    const int n = Chance(0.1) ? Int(0, 5) : Chance(0.1) ? Int(60, 120) : Int(6, 45);
    int64_t occurred = kT0, ingested = kT0;
    for (int i = 0; i < n; ++i) {
      LogEvent e;
      e.event_id = EventId(static_cast<size_t>(i));
      if (!Chance(0.2)) occurred += 1000 * Int(-4, 4);  // back-dated half of the time, equal sometimes
      ingested += 1000 * Int(-1, 2);  // mostly forward; ties and steps back too (row ids stay increasing)
      e.occurred_us = occurred;
      e.ingested_us = ingested;
      e.event_type = Pick(std::vector<std::string>{"identify", "track", "group"});
      e.source = Pick(std::vector<std::string>{"web", "crm", "shop", "app"});
      log.events.push_back(e);
      const auto ev = static_cast<uint32_t>(i);
      AddRows(&log, EntityKind::kPerson, ev);
      AddRows(&log, EntityKind::kGroup, ev);
      AddMemberships(&log, ev);
    }
    AssignTransactions(&log);
    for (EntityKind kind : kKindList) {
      const size_t k = Idx(kind);
      if (log.identifiers[k].empty() || !Chance(0.3)) continue;
      for (int t = Int(1, 3); t > 0; --t) {
        const LogIdentifier& r = Pick(log.identifiers[k]);
        log.forced[k].emplace(log.events[r.event].event_id, r.edge_id);
      }
    }
    log.protection = Protection();
    log.protection.traits = Traits();
    const double cut = Pick(std::vector<double>{0.0, 0.1, 0.3, 0.6, 1.0});
    c.batch_start.assign(static_cast<size_t>(n), false);
    for (size_t i = 0; i < c.batch_start.size(); ++i) c.batch_start[i] = i == 0 || Chance(cut);
    c.restart_event = static_cast<size_t>(Int(0, n));
    c.empty_batches = Chance(0.1);
    return c;
  }

 private:
  /// Groups consecutive events into ingest transactions (LogEvent::xid). Row ids grow in log order within one
  /// transaction only (what ingest guarantees): concurrent transactions draw ids from one sequence, so a later
  /// transaction's rows may have smaller ids. Half of the streams shuffle the transactions' id ranges so.
  void AssignTransactions(Log* log) {
    std::vector<std::pair<size_t, size_t>> txs;  // event ranges
    for (size_t e = 0; e < log->events.size();) {
      const size_t end = std::min(log->events.size(), e + static_cast<size_t>(Int(1, 4)));
      txs.emplace_back(e, end);
      e = end;
    }
    int64_t xid = 700;
    std::vector<size_t> tx_of(log->events.size());
    for (size_t t = 0; t < txs.size(); ++t) {
      xid += Int(1, 3);
      for (size_t e = txs[t].first; e < txs[t].second; ++e) {
        log->events[e].xid = xid;
        tx_of[e] = t;
      }
    }
    if (txs.empty() || Chance(0.5)) return;
    // Every row id of a transaction, then each transaction's ids moved as one block to a shuffled place.
    std::vector<std::vector<int64_t*>> ids(txs.size());
    for (size_t k = 0; k < kKinds; ++k) {
      for (auto& r : log->identifiers[k]) ids[tx_of[r.event]].push_back(&r.row_id);
      for (auto& r : log->traits[k]) ids[tx_of[r.event]].push_back(&r.row_id);
    }
    for (auto& r : log->memberships) ids[tx_of[r.event]].push_back(&r.row_id);
    std::vector<size_t> place(txs.size());
    std::iota(place.begin(), place.end(), 0);
    std::shuffle(place.begin(), place.end(), rng_);
    int64_t next = 1;
    for (size_t t : place) {
      auto& block = ids[t];
      std::sort(block.begin(), block.end(), [](const int64_t* a, const int64_t* b) { return *a < *b; });
      std::vector<int64_t> old;
      for (const int64_t* p : block) old.push_back(*p);
      for (size_t i = 0; i < block.size(); ++i) *block[i] = next + (old[i] - old.front());
      if (!block.empty()) next += old.back() - old.front() + 1;
    }
  }

  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  size_t Weighted(std::initializer_list<double> weights) { return std::discrete_distribution<size_t>(weights)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(Int(0, static_cast<int>(v.size()) - 1))];
  }

  Ident NewIdent(EntityKind kind) {
    if (kind == EntityKind::kPerson) {
      switch (Weighted({45, 20, 20, 12, 3})) {
        case 0:
          return {"email", "p" + std::to_string(Int(0, emails_ - 1)) + "@ex.com"};
        case 1:
          return {"user_id", "u" + std::to_string(Int(0, user_ids_ - 1))};
        case 2:
          return {"phone", "+155500" + std::to_string(10 + Int(0, phones_ - 1))};
        case 3:
          return {"anonymous_id", "anon-" + std::to_string(Int(0, 11))};
        default:  // a type and values both kinds use (kept apart per kind)
          return {"external_id", "x" + std::to_string(Int(0, 3))};
      }
    }
    switch (Weighted({65, 30, 5})) {
      case 0:
        return {"domain", "d" + std::to_string(Int(0, domains_ - 1)) + ".com"};
      case 1:
        return {"shopify_id", "shop" + std::to_string(Int(0, shops_ - 1))};
      default:
        return {"external_id", "x" + std::to_string(Int(0, 3))};
    }
  }

  void AddRows(Log* log, EntityKind kind, uint32_t ev) {
    const bool person = kind == EntityKind::kPerson;
    const size_t k = Idx(kind);
    const std::string& event_id = log->events[ev].event_id;
    const size_t n_edges = person ? Weighted({10, 65, 20, 5}) : Weighted({55, 40, 5});
    std::vector<std::vector<LogIdentifier>> edges(n_edges);
    std::vector<std::string> edge_ids;
    for (size_t j = 0; j < n_edges; ++j) {
      // Reused edge_ids come from small pools; "crm-" ones are shared by both kinds (kept apart per kind).
      const std::string pool = person || Chance(0.5) ? "crm-" : "acct-";
      // Sometimes an explicit edge_id names another event's derived one ("ev003#p0"): local to that event.
      const std::string other = EventId(static_cast<size_t>(Int(0, 8))) + (person ? "#p0" : "#g0");
      const std::string edge_id = Chance(0.3)    ? pool + std::to_string(Int(0, person ? 5 : 3))
                                  : Chance(0.05) ? other
                                                 : event_id + (person ? "#p" : "#g") + std::to_string(j);
      edge_ids.push_back(edge_id);
      const size_t rows = 1 + Weighted({30, 35, 20, 15});
      for (size_t r = 0; r < rows; ++r) {
        LogIdentifier row;
        row.event = ev;
        row.edge_id = edge_id;
        Ident id = r > 0 && Chance(0.12) ? Ident{edges[j].back().type, edges[j].back().value} : NewIdent(kind);
        row.blocked = Chance(0.07);
        if (Chance(0.03)) {  // a value only ever seen blocked
          id = {person ? "email" : "domain", "blocked" + std::to_string(Int(0, 2)) + (person ? "@ex.com" : ".org")};
          row.blocked = true;
        }
        row.type = id.first;
        row.value = id.second;
        if (Chance(0.6)) row.role = Pick(std::vector<std::string>{"actor", "recipient", "owner", ""});
        edges[j].push_back(row);
      }
    }
    std::vector<LogIdentifier> rows;
    if (n_edges >= 2 && Chance(0.3)) {  // rows of the edges interleaved (each edge's rows keep their order)
      std::vector<size_t> next(n_edges, 0);
      for (;;) {
        std::vector<size_t> open;
        for (size_t j = 0; j < n_edges; ++j) {
          if (next[j] < edges[j].size()) open.push_back(j);
        }
        if (open.empty()) break;
        const size_t j = Pick(open);
        rows.push_back(edges[j][next[j]++]);
      }
    } else {
      for (const auto& e : edges) rows.insert(rows.end(), e.begin(), e.end());
    }
    for (auto& row : rows) {
      row.row_id = next_row_++;
      log->identifiers[k].push_back(row);
    }
    const std::vector<std::string> names =
        person ? std::vector<std::string>{"name",         "title",    "email",  "phone", "timezone",
                                          "company_name", "industry", "domain", "other"}
               : std::vector<std::string>{"name",         "company_name", "industry", "domain",
                                          "company_size", "shopify_id",   "title",    "other"};
    for (const auto& edge_id : edge_ids) {
      if (!Chance(0.5)) continue;
      for (int t = Int(1, 3); t > 0; --t) {
        log->traits[k].push_back({ev, next_row_++, edge_id, Pick(names), Chance(0.12)});
      }
    }
    if (Chance(0.04)) log->traits[k].push_back({ev, next_row_++, event_id + "#nothing", Pick(names), Chance(0.1)});
    if (Chance(0.04)) {
      log->traits[k].push_back({ev, next_row_++, "crm-" + std::to_string(Int(0, 5)), Pick(names), Chance(0.1)});
    }
  }

  void AddMemberships(Log* log, uint32_t ev) {
    if (!Chance(0.3)) return;
    auto side = [&](EntityKind kind) -> Ident {
      std::vector<Ident> here;
      for (const auto& r : log->identifiers[Idx(kind)]) {
        if (r.event == ev) here.emplace_back(r.type, r.value);
      }
      if (!here.empty() && Chance(0.7)) return Pick(here);
      if (Chance(0.15)) {  // never in any edge
        return kind == EntityKind::kPerson ? Ident{"email", "ghost" + std::to_string(Int(0, 2)) + "@ex.com"}
                                           : Ident{"domain", "ghost" + std::to_string(Int(0, 2)) + ".org"};
      }
      return NewIdent(kind);
    };
    for (int m = Int(1, 2); m > 0; --m) {
      LogMembership row;
      row.event = ev;
      row.row_id = next_row_++;
      std::tie(row.person_type, row.person_value) = side(EntityKind::kPerson);
      std::tie(row.group_type, row.group_value) = side(EntityKind::kGroup);
      log->memberships.push_back(row);
    }
  }

  ProtectionConfig Protection() {
    ProtectionConfig p = ProtectionConfig::Unlimited();
    switch (Weighted({35, 25, 15, 25})) {
      case 0:
        break;
      case 1:  // tight: quarantines happen
        p.person_caps.per_type = {{"user_id", 1}};
        p.person_caps.default_per_type = 3;
        p.person_caps.max_entity_size = 6;
        p.group_caps.per_type = {{"shopify_id", 1}};
        p.group_caps.default_per_type = 2;
        p.group_caps.max_entity_size = 4;
        break;
      case 2:
        p = ProtectionConfig::Defaults();
        break;
      default:
        p.person_caps.default_per_type = Int(0, 4);
        if (Chance(0.7)) p.person_caps.per_type["user_id"] = Int(1, 2);
        if (Chance(0.3)) p.person_caps.per_type["phone"] = Int(0, 2);
        p.person_caps.max_entity_size = Chance(0.5) ? Int(3, 10) : 0;
        p.group_caps.default_per_type = Int(0, 3);
        p.group_caps.max_entity_size = Chance(0.5) ? Int(2, 6) : 0;
        break;
    }
    return p;
  }

  TraitRule Rule() {
    TraitRule r;
    switch (Weighted({50, 20, 30})) {
      case 0:
        return r;
      case 1:
        r.kind = TraitRule::Kind::kFirst;
        return r;
      default:
        break;
    }
    r.kind = TraitRule::Kind::kPriority;
    std::vector<std::string> sources{"web", "crm", "shop", "app"};
    std::shuffle(sources.begin(), sources.end(), rng_);
    sources.resize(static_cast<size_t>(Int(1, 4)));
    if (Chance(0.5)) sources.insert(sources.begin() + Int(0, static_cast<int>(sources.size())), "*");
    if (Chance(0.1)) sources.push_back("nobody");  // a source that never sends
    r.sources = sources;
    return r;
  }
  TraitRules Traits() {
    TraitRules t;
    if (Chance(0.3)) return t;  // today's rule everywhere
    t.default_rule = Rule();
    for (const char* name : {"name", "title", "company_name", "email", "domain"}) {
      if (Chance(0.4)) t.named[name] = Rule();
    }
    return t;
  }

  std::mt19937_64 rng_;
  int64_t next_row_ = 1;
  int emails_ = 40, user_ids_ = 10, phones_ = 10, domains_ = 10, shops_ = 6;
};

// =========================================================================================================
// Describing and shrinking a failing case.
// =========================================================================================================

std::string Summary(const Case& c) {
  std::ostringstream o;
  o << c.log.events.size() << " events, " << c.log.identifiers[kPersons].size() << "/"
    << c.log.identifiers[kGroups].size() << " person/group identifier rows, " << c.log.traits[kPersons].size() << "/"
    << c.log.traits[kGroups].size() << " trait rows, " << c.log.memberships.size() << " membership rows, "
    << Batches(c).size() << " batches, " << Describe(c.log.protection);
  return o.str();
}

std::string Dump(const Case& c) {
  const Log& log = c.log;
  const LogIndex index(log);
  std::ostringstream o;
  o << "  caps: " << Describe(log.protection) << "\n  batches:";
  for (const auto& [b, e] : Batches(c)) o << " [" << b << "," << e << ")";
  o << "; (d) reloaded before the first batch at or after event " << c.restart_event
    << (c.empty_batches ? "; an empty batch before each" : "") << "\n";
  for (EntityKind kind : kKindList) {
    for (const auto& [ev, edge] : log.forced[Idx(kind)])
      o << "  released " << KindName(kind) << " edge " << ev << "/" << edge << "\n";
  }
  for (size_t e = 0; e < log.events.size(); ++e) {
    const LogEvent& ev = log.events[e];
    o << "  #" << e << " " << ev.event_id << " occurred " << (ev.occurred_us - kT0) / 1000 << "ms ingested "
      << (ev.ingested_us - kT0) / 1000 << "ms source " << ev.source << "\n";
    for (EntityKind kind : kKindList) {
      const size_t k = Idx(kind);
      for (size_t i : index.rows[k][e]) {
        const LogIdentifier& r = log.identifiers[k][i];
        o << "    " << KindName(kind) << " row " << r.row_id << " edge " << r.edge_id << " " << r.type << ":" << r.value
          << (r.role ? " role '" + *r.role + "'" : " no role") << (r.blocked ? " BLOCKED" : "") << "\n";
      }
      for (size_t i : index.traits[k][e]) {
        const LogTrait& t = log.traits[k][i];
        o << "    " << KindName(kind) << " trait row " << t.row_id << " edge " << t.edge_id << " " << t.name
          << (t.is_null ? " = null" : "") << "\n";
      }
    }
    for (size_t i : index.memberships[e]) {
      const LogMembership& m = log.memberships[i];
      o << "    membership row " << m.row_id << " " << m.person_type << ":" << m.person_value << " -> " << m.group_type
        << ":" << m.group_value << "\n";
    }
  }
  return o.str();
}

std::string Join(const Problems& p) {
  std::string out;
  for (const auto& s : p) out += "    " + s + "\n";
  return out;
}

Case WithoutEvent(const Case& c, size_t ev) {
  Case out = c;
  Log& log = out.log;
  log.events.erase(log.events.begin() + static_cast<std::ptrdiff_t>(ev));
  auto fix = [ev](auto& rows) {
    rows.erase(std::remove_if(rows.begin(), rows.end(), [ev](const auto& r) { return r.event == ev; }), rows.end());
    for (auto& r : rows) {
      if (r.event > ev) --r.event;
    }
  };
  for (size_t k = 0; k < kKinds; ++k) {
    fix(log.identifiers[k]);
    fix(log.traits[k]);
  }
  fix(log.memberships);
  if (ev + 1 < out.batch_start.size() && out.batch_start[ev]) out.batch_start[ev + 1] = true;  // keep the cut
  out.batch_start.erase(out.batch_start.begin() + static_cast<std::ptrdiff_t>(ev));
  if (out.restart_event > ev) --out.restart_event;
  return out;
}

/// Greedy shrinking: drops events, rows, releases, cuts and caps while the case still fails.
Case Shrink(Case c, const std::function<Problems(const Case&)>& check) {
  int budget = 3000;
  auto attempt = [&](Case t) {
    if (budget-- <= 0 || check(t).empty()) return false;
    c = std::move(t);
    return true;
  };
  auto drop_each = [&](auto member, size_t k) {
    bool progress = false;
    for (size_t i = (c.log.*member)[k].size(); i-- > 0;) {
      if (i >= (c.log.*member)[k].size()) continue;
      Case t = c;
      (t.log.*member)[k].erase((t.log.*member)[k].begin() + static_cast<std::ptrdiff_t>(i));
      progress |= attempt(std::move(t));
    }
    return progress;
  };
  for (bool progress = true; progress && budget > 0;) {
    progress = false;
    for (size_t i = c.log.events.size(); i-- > 0;) {
      if (i < c.log.events.size()) progress |= attempt(WithoutEvent(c, i));
    }
    for (size_t k = 0; k < kKinds; ++k) {
      progress |= drop_each(&Log::identifiers, k);
      progress |= drop_each(&Log::traits, k);
      while (!c.log.forced[k].empty()) {
        Case t = c;
        t.log.forced[k].clear();
        if (!attempt(std::move(t))) break;
        progress = true;
      }
    }
    for (size_t i = c.log.memberships.size(); i-- > 0;) {
      if (i >= c.log.memberships.size()) continue;
      Case t = c;
      t.log.memberships.erase(t.log.memberships.begin() + static_cast<std::ptrdiff_t>(i));
      progress |= attempt(std::move(t));
    }
    for (size_t i = 1; i < c.batch_start.size(); ++i) {
      if (!c.batch_start[i]) continue;
      Case t = c;
      t.batch_start[i] = false;
      progress |= attempt(std::move(t));
    }
    if (c.empty_batches) {
      Case t = c;
      t.empty_batches = false;
      progress |= attempt(std::move(t));
    }
    if (c.restart_event < c.log.events.size()) {
      Case t = c;
      t.restart_event = c.log.events.size();
      progress |= attempt(std::move(t));
    }
    if (!c.log.protection.person_caps.Unlimited() || !c.log.protection.group_caps.Unlimited()) {
      Case t = c;
      t.log.protection = ProtectionConfig::Unlimited();
      t.log.protection.traits = c.log.protection.traits;
      progress |= attempt(std::move(t));
    }
    if (!(c.log.protection.traits == TraitRules{})) {
      Case t = c;
      t.log.protection.traits = TraitRules{};
      progress |= attempt(std::move(t));
    }
  }
  return c;
}

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr || *v == '\0' ? fallback : std::strtoull(v, nullptr, 10);
}

/// Runs `check` over the random streams of the run's seed; reports (shrunk) failures. Returns the number of
/// streams checked.
uint64_t ForEachStream(const std::function<Problems(const Case&)>& check) {
  std::random_device rd;
  const uint64_t seed = EnvU64("NEXUS_SEED", (static_cast<uint64_t>(rd()) << 32) | rd());
  std::cout << "engine property seed: " << seed << std::endl;
  const uint64_t streams = EnvU64("NEXUS_ENGINE_STREAMS", 2000);
  const uint64_t only = EnvU64("NEXUS_ENGINE_STREAM", UINT64_MAX);
  int failed = 0;
  uint64_t checked = 0;
  for (uint64_t i = 0; i < std::max(streams, only == UINT64_MAX ? 0 : only + 1); ++i) {
    if (only != UINT64_MAX && i != only) continue;
    const Case c = StreamGenerator(seed, i).Generate();
    ++checked;
    const Problems problems = check(c);
    if (problems.empty()) continue;
    const Case small = Shrink(c, check);
    ADD_FAILURE() << "stream " << i << " (rerun: NEXUS_SEED=" << seed << " NEXUS_ENGINE_STREAM=" << i
                  << "): " << Summary(c) << "\n"
                  << Join(problems) << "  shrunk to " << Summary(small) << ":\n"
                  << Join(check(small)) << Dump(small);
    if (++failed == 3) break;  // shrinking is slow; three are plenty
  }
  return failed == 0 && only == UINT64_MAX ? checked : 0;
}

TEST(EngineProperty, RandomStreamsAgreeAcrossCutsReloadsAndTheOracle) {
  std::map<std::string, int64_t> coverage;
  const uint64_t checked = ForEachStream([&](const Case& c) { return CheckCase(c, &coverage); });
  // The generator must keep producing every situation the rules distinguish.
  if (checked < 100) return;
  for (const char* what : {"edge_id reused by a later event links an entity",
                           "released edge over a cap applied",
                           "quarantine person type",
                           "quarantine person max_entity_size",
                           "quarantine group type",
                           "quarantine of a reused edge_id",
                           "survivor by birth_seq (equal sizes)",
                           "unseen identifiers outnumber every part: a new entity absorbs",
                           "person merge",
                           "group merge",
                           "back-dated sighting moves first seen",
                           "membership row resolved",
                           "membership row unresolved",
                           "trait without a linkable identifier dropped",
                           "later trait row loses to an earlier one",
                           "merge of an entity stored by an earlier batch",
                           "reload in the middle of a stream",
                           "release of a quarantined edge",
                           "an event's local edge ignores the same edge_id named by another event",
                           "trait: a later row of a lower-priority source loses",
                           "trait: an earlier row of a higher-priority source wins",
                           "trait: first value kept",
                           "trait: null row clears"}) {
    EXPECT_GE(coverage[what], 3) << "the generator rarely produces: " << what;
  }
  for (const auto& [what, n] : coverage) std::cout << "  coverage: " << what << ": " << n << "\n";
}

/// The header lists only changed rows ("whose identifier_count changed", "changed winners", "final rows whose
/// columns changed", "whose entity-independent values changed"). Extra rows are harmless to storage (the
/// writes are idempotent), so this is kept apart from the correctness property above.
Problems CheckOnlyChangedRowsListed(const Case& c) {
  const LogIndex index(c.log);
  Engine engine(kSalt);
  Sink sink(c.log, index, Sink::Mode::kDeltaOnly, "(a) cuts");
  for (const auto& [b, e] : Batches(c)) sink.Apply(engine.Apply(Slice(c.log, b, e), c.log.protection), b, e - b);
  return sink.unchanged_rows();
}

TEST(EngineProperty, DeltasListOnlyChangedRows) { ForEachStream(CheckOnlyChangedRowsListed); }

// =========================================================================================================
// Named rules, on small scripted logs.
// =========================================================================================================

class Script {
 public:
  /// A new event `occurred_ms` after kT0; ingested times increase by 1 ms per event.
  Script& Event(int64_t occurred_ms, const std::string& source = "web") {
    LogEvent e;
    e.event_id = "e" + std::to_string(log_.events.size() + 1);
    e.occurred_us = kT0 + occurred_ms * 1000;
    e.ingested_us = kT0 + static_cast<int64_t>(log_.events.size() + 1) * 1000;
    e.event_type = "track";
    e.source = source;
    log_.events.push_back(e);
    return *this;
  }
  Script& Person(const std::string& edge, const std::string& type, const std::string& value, bool blocked = false) {
    return Row(kPersons, edge, type, value, blocked);
  }
  Script& Group(const std::string& edge, const std::string& type, const std::string& value) {
    return Row(kGroups, edge, type, value, false);
  }
  int64_t PersonTrait(const std::string& edge, const std::string& name, bool is_null = false) {
    return Trait(kPersons, edge, name, is_null);
  }
  int64_t GroupTrait(const std::string& edge, const std::string& name) { return Trait(kGroups, edge, name); }
  int64_t GroupTraitNull(const std::string& edge, const std::string& name) { return Trait(kGroups, edge, name, true); }
  int64_t Membership(const Ident& person, const Ident& group) {
    LogMembership m;
    m.event = Last();
    m.row_id = next_row_++;
    std::tie(m.person_type, m.person_value) = person;
    std::tie(m.group_type, m.group_value) = group;
    log_.memberships.push_back(m);
    return m.row_id;
  }
  /// Marks an edge of the last event as released by an operator.
  Script& Release(EntityKind kind, const std::string& edge) {
    log_.forced[Idx(kind)].emplace(log_.events.back().event_id, edge);
    return *this;
  }
  Script& Protect(const ProtectionConfig& p) {
    log_.protection = p;
    return *this;
  }
  Script& Rules(const TraitRules& r) {
    log_.protection.traits = r;
    return *this;
  }
  const Log& log() const { return log_; }

 private:
  uint32_t Last() const { return static_cast<uint32_t>(log_.events.size() - 1); }
  Script& Row(size_t k, const std::string& edge, const std::string& type, const std::string& value, bool blocked) {
    LogIdentifier r;
    r.event = Last();
    r.row_id = next_row_++;
    r.edge_id = edge;
    r.type = type;
    r.value = value;
    r.role = "actor";
    r.blocked = blocked;
    log_.identifiers[k].push_back(r);
    return *this;
  }
  int64_t Trait(size_t k, const std::string& edge, const std::string& name, bool is_null = false) {
    log_.traits[k].push_back({Last(), next_row_, edge, name, is_null});
    return next_row_++;
  }

  Log log_;
  int64_t next_row_ = 1;
};

/// One engine over `log`, a batch per event (per_event) or one batch.
std::unique_ptr<Engine> Resolve(const Log& log, bool per_event, std::vector<BatchDelta>* deltas = nullptr) {
  auto engine = std::make_unique<Engine>(kSalt);
  const size_t n = log.events.size();
  for (size_t b = 0; b < n; b = per_event ? b + 1 : n) {
    BatchDelta d = engine->Apply(Slice(log, b, per_event ? b + 1 : n), log.protection);
    if (deltas) deltas->push_back(std::move(d));
  }
  return engine;
}

/// CheckCase over the cuts a scripted log can get: one batch, a batch per event, and a reload before each
/// event.
Problems CheckAllCuts(const Log& log) {
  Problems out;
  const size_t n = log.events.size();
  for (size_t restart = 0; restart <= n; ++restart) {
    for (bool per_event : {false, true}) {
      Case c;
      c.log = log;
      c.batch_start.assign(n, per_event);
      c.restart_event = restart;
      for (const auto& p : CheckCase(c)) Add(&out, p);
    }
  }
  return out;
}

std::optional<int64_t> TraitRow(const Engine& engine, EntityKind kind, const std::string& entity,
                                const std::string& name) {
  const Engine::Snapshot snap = engine.TakeSnapshot();
  for (const auto& t : snap.traits[Idx(kind)]) {
    if (t.entity_id == entity && t.name == name) return t.row_id;
  }
  return std::nullopt;
}

std::optional<FinalValue> FinalOf(const Engine& engine, EntityKind kind, const std::string& entity,
                                  const std::string& column) {
  const auto& cols = FinalColumns(kind);
  const size_t at = static_cast<size_t>(std::find(cols.begin(), cols.end(), column) - cols.begin());
  const Engine::Snapshot snap = engine.TakeSnapshot();
  for (const auto& f : snap.finals[Idx(kind)]) {
    if (f.entity_id == entity && at < f.columns.size()) return f.columns[at];
  }
  return std::nullopt;
}

constexpr EntityKind kPerson = EntityKind::kPerson;
constexpr EntityKind kGroup = EntityKind::kGroup;

TEST(EngineRules, FinalColumnsPrefixesAndIdsAreTheDocumentedOnes) {
  EXPECT_EQ(FinalColumns(kPerson), (std::vector<std::string>{"email", "name", "phone", "title", "timezone"}));
  EXPECT_EQ(FinalColumns(kGroup),
            (std::vector<std::string>{"domain", "company_name", "industry", "company_size", "shopify_id"}));
  EXPECT_STREQ(KindPrefix(kPerson), "per_");
  EXPECT_STREQ(KindPrefix(kGroup), "grp_");
  // Ids as the previous implementation (IdentityGraph::MakeId) derived them: existing databases keep theirs.
  EXPECT_EQ(MakeEntityId(kPerson, kSalt, "email", "a@x.io"), OracleId(kPerson, {"email", "a@x.io"}));
  EXPECT_EQ(MakeEntityId(kGroup, kSalt, "domain", "acme.io"), OracleId(kGroup, {"domain", "acme.io"}));
}

TEST(EngineRules, BackDatedTraitDoesNotOverride) {
  Script s;
  s.Event(2000, "web").Person("x", "email", "a@x.io");
  const int64_t newer = s.PersonTrait("x", "title");
  s.Event(1000, "crm").Person("y", "email", "a@x.io");  // consumed later, occurred earlier
  const int64_t older = s.PersonTrait("y", "title");
  for (bool per_event : {false, true}) {
    SCOPED_TRACE(per_event ? "a batch per event" : "one batch");
    auto engine = Resolve(s.log(), per_event);
    const std::string id = engine->EntityOf(kPerson, "email", "a@x.io");
    EXPECT_EQ(TraitRow(*engine, kPerson, id, "title"), newer);
    EXPECT_NE(TraitRow(*engine, kPerson, id, "title"), older);
    EXPECT_EQ(FinalOf(*engine, kPerson, id, "title"), (FinalValue{newer, std::nullopt}));
    EXPECT_EQ(FinalOf(*engine, kPerson, id, "email"), (FinalValue{0, "a@x.io"}));
    // The back-dated sighting does move the identifier's first occurrence (and its source).
    const auto snap = engine->TakeSnapshot();
    ASSERT_EQ(snap.identifiers[kPersons].size(), 1u);
    EXPECT_EQ(snap.identifiers[kPersons][0].first_us, kT0 + 1000 * 1000);
    EXPECT_EQ(snap.identifiers[kPersons][0].source, "crm");
    EXPECT_EQ(snap.identifiers[kPersons][0].last_us, kT0 + 2000 * 1000);
  }
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
}

TraitRule Latest() { return {}; }
TraitRule First() { return {TraitRule::Kind::kFirst, {}}; }
TraitRule Priority(std::vector<std::string> sources) { return {TraitRule::Kind::kPriority, std::move(sources)}; }

// Every trait rule, as a table: rows of one person's "title" (in log order: occurred ms, source, null?) and
// the row that must win (-1: the trait stays cleared, the final column falls back to NULL). Each case also
// runs through every batch cut and reload against the oracle, and once with the rows split over two entities
// that a later event merges (the winner must compose across the merge).
TEST(EngineRules, TraitRulesTable) {
  struct Row {
    int64_t occurred_ms;
    std::string source;
    bool is_null = false;
  };
  struct TraitCase {
    std::string what;
    TraitRule rule;
    std::vector<Row> rows;
    int winner;  // index into rows; -1: cleared
  };
  const std::vector<TraitCase> cases = {
      {"latest: the newest occurrence wins", Latest(), {{1, "crm"}, {3, "mail"}, {2, "web"}}, 1},
      {"latest: equal occurred_at, the later ingested wins", Latest(), {{5, "crm"}, {5, "mail"}}, 1},
      {"latest: null clears", Latest(), {{1, "crm"}, {2, "mail", true}}, -1},
      {"latest: an older null does not clear", Latest(), {{2, "crm"}, {1, "mail", true}}, 0},
      {"latest: a value after the null sets it again", Latest(), {{1, "crm"}, {2, "mail", true}, {3, "web"}}, 2},
      {"first: the earliest occurrence wins", First(), {{5, "crm"}, {2, "web"}, {9, "mail"}}, 1},
      {"first: a later import does not replace it", First(), {{1, "crm"}, {100, "import"}}, 0},
      {"first: null does not clear", First(), {{1, "crm"}, {2, "mail", true}}, 0},
      {"first: an earlier null does not win over a value", First(), {{2, "crm"}, {1, "mail", true}}, 0},
      {"first: only nulls: cleared", First(), {{2, "crm", true}, {1, "mail", true}}, -1},
      {"priority: the CRM beats a newer mail client",
       Priority({"hubspot", "salesforce", "*"}),
       {{1, "hubspot"}, {5, "mail"}},
       0},
      {"priority: the second source beats '*'",
       Priority({"hubspot", "salesforce", "*"}),
       {{9, "mail"}, {1, "salesforce"}},
       1},
      {"priority: equal rank falls back to latest",
       Priority({"hubspot", "*"}),
       {{2, "hubspot"}, {3, "hubspot"}, {1, "hubspot"}},
       1},
      {"priority: '*' ranks all unlisted sources equally", Priority({"hubspot", "*"}), {{2, "mail"}, {3, "web"}}, 1},
      {"priority: '*' before a listed source", Priority({"*", "import"}), {{2, "mail"}, {3, "import"}}, 0},
      {"priority: without '*' unlisted sources rank last", Priority({"hubspot"}), {{1, "hubspot"}, {3, "web"}}, 0},
      {"priority: a higher-priority null clears", Priority({"hubspot", "*"}), {{5, "mail"}, {1, "hubspot", true}}, -1},
      {"priority: a lower-priority null does not clear",
       Priority({"hubspot", "*"}),
       {{1, "hubspot"}, {5, "mail", true}},
       0},
  };
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.what);
    TraitRules rules;
    rules.named["title"] = tc.rule;
    rules.default_rule = Priority({"mail"});  // must not apply to "title"
    for (bool split : {false, true}) {
      SCOPED_TRACE(split ? "rows on two entities merged at the end" : "rows on one entity");
      Script s;
      s.Rules(rules);
      std::vector<int64_t> rows;
      for (size_t i = 0; i < tc.rows.size(); ++i) {
        const Row& r = tc.rows[i];
        const std::string email = split && i % 2 == 1 ? "b@x.io" : "a@x.io";
        s.Event(r.occurred_ms * 1000, r.source).Person("x", "email", email);
        rows.push_back(s.PersonTrait("x", "title", r.is_null));
      }
      if (split) s.Event(0).Person("m", "email", "a@x.io").Person("m", "email", "b@x.io");
      for (bool per_event : {false, true}) {
        auto engine = Resolve(s.log(), per_event);
        const std::string id = engine->EntityOf(kPerson, "email", "a@x.io");
        const std::optional<FinalValue> final = FinalOf(*engine, kPerson, id, "title");
        if (tc.winner < 0) {
          EXPECT_EQ(final, (FinalValue{0, std::nullopt})) << "cleared: the column falls back to NULL";
          // The stored winner is a null row (it keeps beating what it cleared), or none when only nulls came.
          const auto row = TraitRow(*engine, kPerson, id, "title");
          ASSERT_TRUE(row.has_value());
          const size_t at = static_cast<size_t>(std::find(rows.begin(), rows.end(), *row) - rows.begin());
          ASSERT_LT(at, rows.size());
          EXPECT_TRUE(tc.rows[at].is_null);
        } else {
          EXPECT_EQ(TraitRow(*engine, kPerson, id, "title"), rows[static_cast<size_t>(tc.winner)]);
          EXPECT_EQ(final, (FinalValue{rows[static_cast<size_t>(tc.winner)], std::nullopt}));
        }
      }
      EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
    }
  }
}

// A group's company_name column falls back to the "name" trait when company_name was cleared.
TEST(EngineRules, ClearedTraitFallsBackToTheNextTraitOfTheColumn) {
  Script s;
  s.Event(1).Group("g", "domain", "acme.io");
  const int64_t name = s.GroupTrait("g", "name");
  const int64_t company = s.GroupTrait("g", "company_name");
  s.Event(2).Group("h", "domain", "acme.io");
  s.GroupTraitNull("h", "company_name");
  Engine before(kSalt);
  before.Apply(Slice(s.log(), 0, 1), s.log().protection);
  const std::string g = before.EntityOf(kGroup, "domain", "acme.io");
  EXPECT_EQ(FinalOf(before, kGroup, g, "company_name"), (FinalValue{company, std::nullopt}));
  for (bool per_event : {false, true}) {
    auto e = Resolve(s.log(), per_event);
    EXPECT_EQ(FinalOf(*e, kGroup, g, "company_name"), (FinalValue{name, std::nullopt}));
  }
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
}

// A reload (new rules between batches) applies to rows resolved afterwards: a new row competes with the stored
// winner under the new rule; the stored winner is not re-decided until a rebuild (a fresh engine over the log).
TEST(EngineRules, ChangedRulesApplyToLaterRowsAndARebuildReappliesThem) {
  Script s;
  s.Event(1, "hubspot").Person("x", "email", "a@x.io");
  const int64_t crm = s.PersonTrait("x", "name");
  s.Event(2, "mail").Person("x", "email", "a@x.io");
  const int64_t mail = s.PersonTrait("x", "name");
  s.Event(3, "web").Person("x", "email", "a@x.io");
  const int64_t web = s.PersonTrait("x", "name");
  ProtectionConfig latest = ProtectionConfig::Unlimited();
  ProtectionConfig crm_first = latest;
  crm_first.traits.named["name"] = Priority({"hubspot", "*"});

  Engine running(kSalt);
  running.Apply(Slice(s.log(), 0, 2), latest);
  const std::string id = running.EntityOf(kPerson, "email", "a@x.io");
  EXPECT_EQ(TraitRow(running, kPerson, id, "name"), mail);  // latest
  running.Apply(Slice(s.log(), 2, 3), crm_first);           // reloaded: web (rank '*') vs mail (rank '*'): latest
  EXPECT_EQ(TraitRow(running, kPerson, id, "name"), web);

  Engine rebuilt(kSalt);
  rebuilt.Apply(Slice(s.log(), 0, 3), crm_first);
  EXPECT_EQ(TraitRow(rebuilt, kPerson, id, "name"), crm);
}

TEST(EngineRules, ReusedEdgeIdLinksAcrossEvents) {
  Script s;
  s.Event(1).Person("crm-7", "email", "a@x.io");
  s.Event(2).Person("crm-7", "email", "b@x.io");
  s.Event(3).Person("web-1", "email", "c@x.io");
  s.Event(4).Person("crm-7", "phone", "+15550001");
  for (bool per_event : {false, true}) {
    SCOPED_TRACE(per_event ? "a batch per event" : "one batch");
    auto engine = Resolve(s.log(), per_event);
    const std::string a = engine->EntityOf(kPerson, "email", "a@x.io");
    EXPECT_EQ(engine->EntityOf(kPerson, "email", "b@x.io"), a);
    EXPECT_EQ(engine->EntityOf(kPerson, "phone", "+15550001"), a);
    EXPECT_NE(engine->EntityOf(kPerson, "email", "c@x.io"), a);
    EXPECT_EQ(engine->entity_count(kPerson), 2u);
  }
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");  // includes reloads via LoadEdgeSighting
}

TEST(EngineRules, BlockedIdentifiersNeverLink) {
  Script s;
  s.Event(1).Person("x", "email", "a@x.io").Person("x", "user_id", "shared", /*blocked=*/true);
  s.Event(2).Person("y", "email", "b@x.io").Person("y", "user_id", "shared", /*blocked=*/true);
  s.Event(3).Person("z", "user_id", "shared", /*blocked=*/true);
  const int64_t dropped = s.PersonTrait("z", "name");  // its edge has no linkable identifier
  s.Event(4).Person("w", "email", "c@x.io", /*blocked=*/true).Person("w", "email", "d@x.io");
  const int64_t kept = s.PersonTrait("w", "title");  // goes to the first NON-blocked row's entity
  for (bool per_event : {false, true}) {
    SCOPED_TRACE(per_event ? "a batch per event" : "one batch");
    auto engine = Resolve(s.log(), per_event);
    EXPECT_NE(engine->EntityOf(kPerson, "email", "a@x.io"), engine->EntityOf(kPerson, "email", "b@x.io"));
    EXPECT_EQ(engine->EntityOf(kPerson, "user_id", "shared"), "");
    EXPECT_EQ(engine->EntityOf(kPerson, "email", "c@x.io"), "");
    EXPECT_EQ(TraitRow(*engine, kPerson, engine->EntityOf(kPerson, "email", "d@x.io"), "title"), kept);
    const Engine::Snapshot snap = engine->TakeSnapshot();
    for (const auto& t : snap.traits[kPersons]) EXPECT_NE(t.row_id, dropped);
    EXPECT_EQ(engine->identifier_count(kPerson), 3u);
  }
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
}

TEST(EngineRules, CapQuarantinesAndReleasedEdgeMerges) {
  ProtectionConfig caps = ProtectionConfig::Unlimited();
  caps.person_caps.per_type["user_id"] = 1;
  Script s;
  s.Protect(caps);
  s.Event(1).Person("x", "email", "a@x.io").Person("x", "user_id", "u1");
  s.Event(2).Person("y", "email", "a@x.io").Person("y", "user_id", "u2");
  QuarantineRecord q;
  {
    Engine engine(kSalt);
    const BatchDelta d = engine.Apply(Slice(s.log(), 0, 2), caps);
    const std::string a = engine.EntityOf(kPerson, "email", "a@x.io");
    ASSERT_EQ(d.kinds[kPersons].quarantined.size(), 1u);
    q = d.kinds[kPersons].quarantined[0];
    EXPECT_EQ(q.event, 1u);
    EXPECT_EQ(q.edge_id, "y");
    EXPECT_EQ(ReasonClass(q.reason), "type:user_id") << q.reason;
    EXPECT_EQ(q.entity_ids, std::vector<std::string>{a});
    const std::set<Ident> listed(q.identifiers.begin(), q.identifiers.end());
    EXPECT_EQ(listed, (std::set<Ident>{{"email", "a@x.io"}, {"user_id", "u2"}}));
    // The unseen identifier stands alone.
    const std::string u2 = engine.EntityOf(kPerson, "user_id", "u2");
    EXPECT_NE(u2, "");
    EXPECT_NE(u2, a);
    EXPECT_EQ(engine.entity_count(kPerson), 2u);
    EXPECT_EQ(d.kinds[kPersons].stats.quarantined, 1);

    // An operator releases it later: a merge without caps.
    std::string into;
    const BatchDelta r = engine.ApplyReleased(kPerson, "e2", "y", q.identifiers, q.entity_ids, &into);
    EXPECT_EQ(into, engine.EntityOf(kPerson, "email", "a@x.io"));
    EXPECT_EQ(engine.EntityOf(kPerson, "user_id", "u2"), into);
    ASSERT_EQ(r.kinds[kPersons].merges.size(), 1u);
    EXPECT_TRUE(r.kinds[kPersons].merges[0].absorbed_existing);
    EXPECT_TRUE(r.kinds[kPersons].quarantined.empty());
  }
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");

  // Replayed with the edge released (how a rebuild sees it): applied in place, caps skipped.
  Script released = s;
  released.Release(kPerson, "y");
  for (bool per_event : {false, true}) {
    SCOPED_TRACE(per_event ? "a batch per event" : "one batch");
    std::vector<BatchDelta> deltas;
    auto engine = Resolve(released.log(), per_event, &deltas);
    for (const auto& d : deltas) EXPECT_TRUE(d.kinds[kPersons].quarantined.empty());
    EXPECT_EQ(engine->EntityOf(kPerson, "user_id", "u2"), engine->EntityOf(kPerson, "email", "a@x.io"));
    EXPECT_EQ(engine->entity_count(kPerson), 1u);
  }
  EXPECT_EQ(Join(CheckAllCuts(released.log())), "");
}

TEST(EngineRules, MergeFoldsTraitsAndMemberships) {
  Script s;
  s.Event(1).Person("x", "email", "a@x.io").Person("x", "phone", "+15550001").Group("g", "domain", "acme.io");
  const int64_t old_title = s.PersonTrait("x", "title");
  const int64_t first_membership = s.Membership({"email", "a@x.io"}, {"domain", "acme.io"});
  s.Event(2).Person("y", "email", "b@x.io");
  const int64_t name = s.PersonTrait("y", "name");
  const int64_t new_title = s.PersonTrait("y", "title");
  const int64_t later_membership = s.Membership({"email", "b@x.io"}, {"domain", "acme.io"});
  s.Event(3).Person("z", "email", "a@x.io").Person("z", "email", "b@x.io");

  Engine engine(kSalt);
  engine.Apply(Slice(s.log(), 0, 2), s.log().protection);
  const std::string big = engine.EntityOf(kPerson, "email", "a@x.io");  // 2 identifiers
  const std::string small = engine.EntityOf(kPerson, "email", "b@x.io");
  const std::string group = engine.EntityOf(kGroup, "domain", "acme.io");
  EXPECT_EQ(TraitRow(engine, kPerson, big, "title"), old_title);
  const BatchDelta d = engine.Apply(Slice(s.log(), 2, 3), s.log().protection);
  const KindDelta& p = d.kinds[kPersons];
  ASSERT_EQ(p.merges.size(), 1u);
  EXPECT_EQ(p.merges[0].absorbed_id, small);
  EXPECT_EQ(p.merges[0].survivor_id, big);
  EXPECT_EQ(p.merges[0].merged_into_id, big);
  EXPECT_EQ(p.merges[0].event_id, "e3");
  EXPECT_EQ(p.merges[0].edge_id, "z");
  EXPECT_EQ(p.merges[0].absorbed_count, 1);
  EXPECT_TRUE(p.merges[0].absorbed_existing);
  EXPECT_EQ(p.AbsorbedExisting(), (std::vector<std::pair<std::string, std::string>>{{small, big}}));
  std::map<std::string, int64_t> traits;
  for (const auto& t : p.traits) {
    EXPECT_EQ(t.entity_id, big);
    traits[t.name] = t.row_id;
  }
  EXPECT_EQ(traits, (std::map<std::string, int64_t>{{"name", name}, {"title", new_title}}));
  ASSERT_EQ(d.memberships.size(), 1u);
  EXPECT_EQ(d.memberships[0].person_id, big);
  EXPECT_EQ(d.memberships[0].group_id, group);
  EXPECT_EQ(d.memberships[0].established_us, kT0 + 1000);
  EXPECT_EQ(d.memberships[0].role_row_id, later_membership);
  EXPECT_NE(d.memberships[0].role_row_id, first_membership);
  EXPECT_EQ(FinalOf(engine, kPerson, big, "title"), (FinalValue{new_title, std::nullopt}));
  EXPECT_EQ(FinalOf(engine, kPerson, big, "name"), (FinalValue{name, std::nullopt}));
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
}

// Two entities born in one event: the one whose edge comes first (by its first row) is the older, even when
// its founder's own row comes after the other's. Their equal-size merge later keeps the older one's id.
TEST(EngineRules, BirthOrderFollowsTheEdgeOrderWithinAnEvent) {
  Script s;
  s.Event(1).Person("x", "email", "x@x.io");
  // Edge A (first row: x, known) founds y+w's entity at y's row, after edge B's row of z (born alone).
  s.Event(2)
      .Person("A", "email", "x@x.io")
      .Person("B", "email", "z@x.io")
      .Person("A", "email", "y@x.io")
      .Person("A", "email", "w@x.io");
  s.Event(3).Person("C", "email", "z@x.io").Person("C", "email", "a@x.io");  // accretes to z's entity
  s.Event(4).Person("C", "email", "z@x.io").Person("C", "email", "b@x.io");
  s.Event(5).Person("D", "email", "y@x.io").Person("D", "email", "z@x.io");  // 3 + 3 identifiers
  for (bool per_event : {false, true}) {
    auto e = Resolve(s.log(), per_event);
    const std::string y_id = "per_" + StableId128(std::string(kSalt) + '\x1f' + "email" + '\x1f' + "y@x.io");
    EXPECT_EQ(e->EntityOf(kPerson, "email", "z@x.io"), y_id) << (per_event ? "per event" : "one batch");
    EXPECT_EQ(e->EntityOf(kPerson, "email", "a@x.io"), y_id);
  }
}

TEST(EngineRules, IdsAndBirthOrderAreStableAcrossBatchCuts) {
  Script s;
  s.Event(5).Group("g1", "domain", "acme.io");
  s.Event(4).Person("p1", "email", "a@x.io").Person("p1", "user_id", "u1");
  s.Event(3).Person("p2", "email", "b@x.io").Group("g2", "shopify_id", "shop1");
  s.Event(2).Person("p3", "email", "b@x.io").Person("p3", "phone", "+15550001").Person("p3", "phone", "+15550002");
  s.Event(1).Person("p4", "email", "a@x.io").Person("p4", "phone", "+15550001").Group("g3", "domain", "acme.io");
  s.Event(1).Group("g3", "shopify_id", "shop1");  // reused edge_id of the group kind
  auto fingerprint = [](const Engine& e) {
    std::map<std::string, std::pair<int64_t, BirthKey>> out;  // entity -> (identifier_count, birth key)
    const auto snap = e.TakeSnapshot();
    for (const auto& kind : snap.entities) {
      for (const auto& c : kind) out[c.id] = {c.identifier_count, c.birth};
    }
    for (const auto& kind : snap.identifiers) {
      for (const auto& c : kind) out[c.type + ":" + c.value + "->" + c.entity_id] = {0, BirthKey{}};
    }
    return out;
  };
  auto whole = Resolve(s.log(), false);
  auto per_event = Resolve(s.log(), true);
  EXPECT_EQ(fingerprint(*whole), fingerprint(*per_event));
  // A component's id is derived from its first identifier: b@x.io's entity was founded by the two phones of
  // p3 (larger than b's entity, so born and surviving), shop1's by acme.io (the older of two equal ones).
  auto id = [](const std::string& prefix, const std::string& type, const std::string& value) {
    return prefix + StableId128(std::string(kSalt) + '\x1f' + type + '\x1f' + value);
  };
  EXPECT_EQ(whole->EntityOf(kPerson, "email", "b@x.io"), id("per_", "phone", "+15550001"));
  EXPECT_EQ(whole->EntityOf(kPerson, "email", "a@x.io"), id("per_", "phone", "+15550001"));
  EXPECT_EQ(whole->EntityOf(kGroup, "shopify_id", "shop1"), id("grp_", "domain", "acme.io"));
  EXPECT_EQ(whole->entity_count(kPerson), 1u);
  EXPECT_EQ(whole->entity_count(kGroup), 1u);
  EXPECT_EQ(Join(CheckAllCuts(s.log())), "");
}

TEST(EngineLoad, ReloadedEngineContinuesLikeTheOriginal) {
  Script s;
  s.Event(1).Person("crm-7", "email", "a@x.io").Group("g", "domain", "acme.io");
  const int64_t title = s.PersonTrait("crm-7", "title");
  const int64_t membership = s.Membership({"email", "a@x.io"}, {"domain", "acme.io"});
  s.Event(2).Person("crm-7", "email", "b@x.io");  // links to a@x.io only through the stored sighting
  const Log& log = s.log();
  const LogIndex index(log);
  Sink stored(log, index, Sink::Mode::kDeltaOnly, "stored");
  Engine first(kSalt);
  stored.Apply(first.Apply(Slice(log, 0, 1), log.protection), 0, 1);
  Problems problems;
  auto reloaded = LoadEngine(stored.state(), log, index, 1, "reloaded", &problems);
  EXPECT_EQ(Join(problems), "");
  const std::string a = reloaded->EntityOf(kPerson, "email", "a@x.io");
  EXPECT_EQ(TraitRow(*reloaded, kPerson, a, "title"), title);
  const Engine::Snapshot snap = reloaded->TakeSnapshot();
  ASSERT_EQ(snap.memberships.size(), 1u);
  EXPECT_EQ(snap.memberships[0].role_row_id, membership);
  stored.Apply(reloaded->Apply(Slice(log, 1, 2), log.protection), 1, 1);
  EXPECT_EQ(reloaded->EntityOf(kPerson, "email", "b@x.io"), a);
  EXPECT_EQ(stored.state().kinds[kPersons].identifiers.at({"email", "b@x.io"}).entity, a);
  EXPECT_EQ(Join(stored.problems()), "");
}

// Releasing one quarantined edge (ApplyReleased) must apply that edge only. It links the edge's identifiers
// to what was seen under the edge_id, but an identifier that a LATER event brought under the same edge_id in
// an edge that is itself still quarantined must stay out, as it does when a rebuild replays the log with
// only the released edge forced (which is what storage's Rebuild does with released edges).
TEST(EngineRelease, ReleasingOneEdgeDoesNotApplyALaterQuarantinedOne) {
  ProtectionConfig caps = ProtectionConfig::Unlimited();
  caps.person_caps.per_type["user_id"] = 1;
  Script s;
  s.Protect(caps);
  s.Event(1).Person("crm-7", "email", "a@x.io").Person("crm-7", "user_id", "u1");
  s.Event(2).Person("crm-7", "user_id", "u2");  // quarantined: a second user_id
  s.Event(3).Person("crm-7", "user_id", "u3");  // quarantined too, and stays quarantined

  Engine running(kSalt);
  const BatchDelta d = running.Apply(Slice(s.log(), 0, 3), caps);
  ASSERT_EQ(d.kinds[kPersons].quarantined.size(), 2u);
  const QuarantineRecord& q = d.kinds[kPersons].quarantined[0];
  ASSERT_EQ(q.event, 1u);
  std::string into;
  running.ApplyReleased(kPerson, "e2", q.edge_id, q.identifiers, q.entity_ids, &into);

  Script released = s;
  Log log = released.log();
  log.forced[kPersons].emplace("e2", "crm-7");
  Engine rebuilt(kSalt);
  const BatchDelta r = rebuilt.Apply(Slice(log, 0, 3), caps);
  EXPECT_EQ(r.kinds[kPersons].quarantined.size(), 1u);  // e3's edge is still quarantined

  EXPECT_EQ(into, running.EntityOf(kPerson, "user_id", "u1"));
  EXPECT_EQ(running.EntityOf(kPerson, "user_id", "u2"), into);
  EXPECT_NE(running.EntityOf(kPerson, "user_id", "u3"), into) << "e3's edge was not released";
  for (const char* u : {"u1", "u2", "u3"}) {
    EXPECT_EQ(running.EntityOf(kPerson, "user_id", u), rebuilt.EntityOf(kPerson, "user_id", u)) << u;
  }
  EXPECT_EQ(running.entity_count(kPerson), rebuilt.entity_count(kPerson));
}

// The header: "Entities before their identifiers and identifiers before their edge sightings; trait winners
// and memberships in any order." Trait winners and memberships loaded before their entities must not be lost.
TEST(EngineLoad, TraitWinnersAndMembershipsMayBeLoadedBeforeTheirEntities) {
  Script s;
  s.Event(1).Person("x", "email", "a@x.io").Group("g", "domain", "acme.io");
  const int64_t title = s.PersonTrait("x", "title");
  const int64_t membership = s.Membership({"email", "a@x.io"}, {"domain", "acme.io"});
  const Log& log = s.log();
  const LogIndex index(log);
  Sink stored(log, index, Sink::Mode::kDeltaOnly, "stored");
  Engine first(kSalt);
  stored.Apply(first.Apply(Slice(log, 0, 1), log.protection), 0, 1);
  const std::string person = first.EntityOf(kPerson, "email", "a@x.io");
  const std::string group = first.EntityOf(kGroup, "domain", "acme.io");

  Engine e(kSalt);
  const RowTime t = index.trait_time[kPersons].at(title);
  const RowTime m = index.membership_time.at(membership);
  e.LoadTraitWinner(kPerson, person, "title", t.occurred_us, t.ingested_us, t.row_id, log.events[0].source, false);
  e.LoadMembership(person, group, m.occurred_us, m.occurred_us, m.ingested_us, m.row_id);
  for (EntityKind kind : kKindList) {
    for (const auto& [id, entity] : stored.state().kinds[Idx(kind)].entities) {
      e.LoadEntity(kind, id, entity.count, entity.birth);
    }
    for (const auto& [id, st] : stored.state().kinds[Idx(kind)].identifiers) {
      EXPECT_TRUE(e.LoadIdentifier(kind, id.first, id.second, st.entity, st.source, st.first_us, st.last_us));
    }
  }
  e.FinishLoad();
  EXPECT_EQ(TraitRow(e, kPerson, person, "title"), title);
  EXPECT_EQ(FinalOf(e, kPerson, person, "title"), (FinalValue{title, std::nullopt}));
  EXPECT_EQ(e.TakeSnapshot().memberships.size(), 1u);

  // Property form: reloading the stored state of every random stream in such an order changes nothing.
  Problems problems;
  for (uint64_t i = 0; i < 40 && problems.empty(); ++i) {
    const Case c = StreamGenerator(20240611, i).Generate();
    const LogIndex ci(c.log);
    const NaiveResolver oracle(c.log, ci);
    const State want = oracle.Run(c.log.events.size());
    Problems ignored;
    auto loaded = LoadEngine(want, c.log, ci, c.log.events.size(), "loaded", &problems, LoadOrder::kAnyDocumentedOrder);
    Diff(FromSnapshot(*loaded, "loaded", &ignored), SnapshotView(want), Compare::kAgainstOracle,
         "stream loaded in a documented order vs oracle", &problems);
  }
  EXPECT_EQ(Join(problems), "");
}

}  // namespace
}  // namespace nexus::resolver
