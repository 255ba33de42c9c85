#include "resolver/engine.h"

#include <algorithm>
#include <cassert>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "common/hash.h"
#include "resolver/key_index.h"

namespace nexus::resolver {
namespace {

using detail::KeyIndex;
using detail::kNone;
using detail::ProbeTable;

/// The order of "latest": (occurred_at, _ingested_at, row id).
struct RowKey {
  int64_t occurred_us = 0;
  int64_t ingested_us = 0;
  int64_t row_id = 0;
  bool operator<(const RowKey& o) const {
    return std::tie(occurred_us, ingested_us, row_id) < std::tie(o.occurred_us, o.ingested_us, o.row_id);
  }
};

struct ColumnRule {
  std::string column;
  std::vector<std::string> traits;  // first present wins
  std::string identifier_type;      // fallback ("" = none)
};

const std::vector<ColumnRule>& ColumnRules(EntityKind k) {
  static const std::vector<ColumnRule> kPersons = {{"email", {"email"}, "email"},
                                                   {"name", {"name"}, ""},
                                                   {"phone", {"phone"}, "phone"},
                                                   {"title", {"title"}, ""},
                                                   {"timezone", {"timezone"}, ""}};
  static const std::vector<ColumnRule> kGroups = {{"domain", {"domain"}, "domain"},
                                                  {"company_name", {"company_name", "name"}, ""},
                                                  {"industry", {"industry"}, ""},
                                                  {"company_size", {"company_size"}, ""},
                                                  {"shopify_id", {"shopify_id"}, "shopify_id"}};
  return k == EntityKind::kPerson ? kPersons : kGroups;
}

/// Rows ahead of the one looked up at which each step of KeyIndex::Prefetch is taken (Apply, SplitCheck).
constexpr std::array<size_t, 3> kLookupAhead{24, 16, 8};

/// Interns short strings (types, trait names, sources, roles; a split check's earlier entity ids) to dense ids.
class Interner {
 public:
  uint32_t Id(std::string_view s) {
    if (auto it = index_.find(s); it != index_.end()) return it->second;  // the usual case: no allocation
    auto it = index_.emplace(std::string(s), static_cast<uint32_t>(names_.size())).first;
    names_.push_back(&it->first);
    return it->second;
  }
  uint32_t Find(std::string_view s) const {
    auto it = index_.find(s);
    return it == index_.end() ? kNone : it->second;
  }
  const std::string& Name(uint32_t id) const { return *names_[id]; }

 private:
  struct Hash {
    using is_transparent = void;  // finds by string_view, without a std::string per lookup
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, uint32_t, Hash, std::equal_to<>> index_;
  std::vector<const std::string*> names_;
};

std::string Key(const std::string& type, const std::string& value) {
  std::string k;
  k.reserve(type.size() + value.size() + 1);
  k += type;
  k += '\x1f';
  k += value;
  return k;
}

/// Empties a container and gives its memory back: `c = {}` would pick the initializer_list assignment, which
/// keeps the capacity (an absorbed cluster kept its type counts' buffer, a finished load its staging vectors).
template <class C>
void FreeAll(C& c) {
  C().swap(c);
}

struct Ident {
  uint32_t cluster = 0;  // the cluster it joined (follow parents to the entity)
  uint32_t type = 0;
  uint32_t source = 0;  // of the first occurrence
  uint32_t type_len = 0;
  int64_t first_us = 0;
  int64_t last_us = 0;
};
static_assert(sizeof(Ident) == 32, "one per identifier: keep it packed");

struct TraitWin {
  uint32_t name;
  RowKey key;
  uint32_t source = 0;  // interned source of the row's event
  bool is_null = false;
};

struct Cluster {
  int64_t count = 0;
  BirthKey birth;
  uint32_t parent = 0;
  std::array<char, 26> id{};
  std::vector<std::pair<uint32_t, int64_t>> type_counts;
  std::vector<TraitWin> traits;
  std::vector<std::pair<uint32_t, uint32_t>> latest;  // fallback type -> identifier with the latest sighting
  std::vector<uint32_t> memberships;                  // indices into Impl::mems (may hold dead ones)
};

/// Entity id -> cluster while a state is loaded: a ProbeTable of cluster numbers, compared with the clusters' own
/// 26 id characters, so an id is not copied and a probe touches a slot and its cluster. The
/// unordered_map<std::string, uint32_t> it replaced (a node, a heap string and a division per probe) took ~21% of a
/// graph load's CPU at 1.1M identifiers (perf, 2026-12-05). The last cluster found is tried first: rows often come
/// grouped by entity (a rebuild writes them so; 78% of the identifier rows followed one of the same entity after a
/// rebuild at 1.1M identifiers), and then no probe is needed.
class LoadIds {
 public:
  /// The cluster whose id is `prefix` + `body`, or kNone (also for a malformed id).
  uint32_t Find(std::string_view prefix, std::string_view id, const std::vector<Cluster>& clusters) const {
    if (!WellFormed(prefix, id)) return kNone;
    const std::string_view body = id.substr(prefix.size());
    if (last_ != kNone && Body(clusters[last_]) == body) return last_;
    const uint32_t c = table_.Find(ProbeTable::Hash(body), [&](uint32_t k) { return Body(clusters[k]) == body; });
    if (c != kNone) last_ = c;
    return c;
  }
  /// Adds `cluster`, whose id (in `clusters`) is not held yet.
  void Insert(uint32_t cluster, const std::vector<Cluster>& clusters) {
    table_.Insert(cluster, ProbeTable::Hash(Body(clusters[cluster])));
  }
  /// Room for `more` ids beyond those held, without growing on the way.
  void Reserve(size_t more) { table_.Reserve(more); }
  void Free() {
    table_.Free();
    last_ = kNone;
  }
  static bool WellFormed(std::string_view prefix, std::string_view id) {
    return id.size() == prefix.size() + 26 && id.substr(0, prefix.size()) == prefix;
  }

 private:
  static std::string_view Body(const Cluster& c) { return {c.id.data(), c.id.size()}; }
  ProbeTable table_;
  mutable uint32_t last_ = kNone;
};

struct Mem {
  uint32_t person = 0;  // clusters (roots when live)
  uint32_t group = 0;
  int64_t established_us = 0;
  RowKey role;
  bool dead = false;
};

/// Identifiers earlier events saw under an edge_id, as one representative per component at the time.
struct EdgeReps {
  uint32_t first = kNone;
  uint32_t more = kNone;  // index into KindState::more_reps
};

struct KindState {
  EntityKind kind;
  KeyIndex index;  // the key of idents[i] has id i
  std::vector<Ident> idents;
  std::vector<Cluster> clusters;
  std::unordered_map<std::string, EdgeReps> edges;
  std::vector<std::vector<uint32_t>> more_reps;
  LoadIds load_ids;  // entity id -> cluster, while loading
  size_t live = 0;
  std::vector<uint32_t> fallback_types;  // interned types that feed final columns
  // Link rules: identifier key -> (rule index, side 0|1) of the cannot-link rules naming it; the tags each
  // cluster holds (only clusters holding a rule's identifier, so a side table); suppressed (event, edge) pairs
  // (edge "": every edge of the event).
  std::unordered_map<std::string, std::vector<std::pair<uint32_t, uint8_t>>> rule_keys;
  std::unordered_map<uint32_t, std::vector<std::pair<uint32_t, uint8_t>>> cluster_tags;
  std::map<std::pair<std::string, std::string>, uint32_t> suppressed_edges;
  // Id overrides (SetIdOverrides): birth -> id; the ids they give (reserved); those given so far.
  std::map<BirthKey, std::string> id_overrides;
  std::unordered_set<std::string> reserved_ids, given_ids;
};

}  // namespace

bool IsEventLocalEdge(std::string_view event_id, std::string_view edge_id) {
  return edge_id.size() > event_id.size() && edge_id[event_id.size()] == '#' &&
         edge_id.substr(0, event_id.size()) == event_id;
}

std::string LinkRuleReason(const LinkRule& rule) {
  return (rule.cannot_link ? "cannot-link rule " : "suppressed by link rule ") + std::to_string(rule.rule_id);
}

const char* KindName(EntityKind k) { return k == EntityKind::kPerson ? "person" : "group"; }
const char* KindPrefix(EntityKind k) { return k == EntityKind::kPerson ? "per_" : "grp_"; }

std::string MakeEntityId(EntityKind kind, const std::string& salt, const std::string& type, const std::string& value) {
  std::string material;
  material.reserve(salt.size() + type.size() + value.size() + 2);
  material += salt;
  material += '\x1f';
  material += type;
  material += '\x1f';
  material += value;
  return KindPrefix(kind) + StableId128(material);
}

std::string MakeSplitId(EntityKind kind, const std::string& salt, const std::string& old_id, const BirthKey& birth) {
  return KindPrefix(kind) + StableId128(salt + "\x1fsplit\x1f" + old_id + "\x1f" + std::to_string(birth.xid) + "." +
                                        std::to_string(birth.edge_row) + "." + std::to_string(birth.row));
}

const std::vector<std::string>& FinalColumns(EntityKind kind) {
  static const std::vector<std::string> kPersons = [] {
    std::vector<std::string> v;
    for (const auto& c : ColumnRules(EntityKind::kPerson)) v.push_back(c.column);
    return v;
  }();
  static const std::vector<std::string> kGroups = [] {
    std::vector<std::string> v;
    for (const auto& c : ColumnRules(EntityKind::kGroup)) v.push_back(c.column);
    return v;
  }();
  return kind == EntityKind::kPerson ? kPersons : kGroups;
}

std::vector<std::pair<std::string, std::string>> KindDelta::AbsorbedExisting() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& m : merges) {
    if (m.absorbed_existing) out.emplace_back(m.absorbed_id, m.survivor_id);
  }
  return out;
}

struct Engine::Impl {
  std::string salt;
  Interner types, names, sources;
  std::array<KindState, kKinds> ks;
  std::vector<Mem> mems;
  std::unordered_map<uint64_t, uint32_t> mem_index;  // (person root << 32 | group root) -> mems index

  /// A final row by reference: per column the winning trait row (0: none) and, when there is none, the fallback
  /// identifier (kNone: none). Within a column the type is fixed, so equal keys are equal values; a batch compares
  /// these and spells out (Finals) only the rows that changed.
  struct ColumnKey {
    int64_t trait_row = 0;
    uint32_t ident = kNone;
    bool operator==(const ColumnKey&) const = default;
  };
  static constexpr size_t kMaxColumns = 5;
  using FinalKeys = std::array<ColumnKey, kMaxColumns>;
  bool changes_ = true;  // Apply's Report is kChanges: record what the delta needs

  // ---- per-batch bookkeeping (cleared by BeginBatch) ----
  struct BatchMarks {
    // Existing cluster -> its final row at first touch (Touch); -> its trait winners before their first change
    // (OfferTrait).
    std::unordered_map<uint32_t, FinalKeys> finals_before;
    std::unordered_map<uint32_t, std::vector<TraitWin>> traits_before;
    uint32_t existing_limit = 0;  // clusters below this index existed before the batch (per kind)
    uint32_t ident_limit = 0;     // identifiers from this index on are new in the batch (ids are given in order)
    std::vector<uint32_t> changed_idents;  // existing identifiers whose sightings changed (repeats allowed)
    std::vector<uint32_t> count_changed;   // clusters whose identifier count changed (repeats allowed)
    std::vector<std::pair<uint32_t, uint32_t>> trait_marks;              // (cluster, name)
    std::vector<std::tuple<uint32_t, uint32_t, int64_t>> merges;         // absorbed, merged into, absorbed size
    std::vector<std::pair<std::string, std::string>> merge_edges;        // (event_id, edge_id) per merge
    std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> participants;  // event, cluster, role(name id)
    std::vector<QuarantineRecord> quarantined;
    std::vector<uint32_t> born;
    std::vector<std::string> born_event;
  };
  std::array<BatchMarks, kKinds> marks;
  std::unordered_set<uint32_t> mem_marks;
  std::vector<std::tuple<int64_t, uint32_t, uint32_t, int64_t>> resolved_mems;  // row, person and group cluster, when
  Interner roles;
  struct PendingTrait {
    EntityKind kind;
    std::string entity_id, name;
    RowKey key;
    std::string source;
    bool is_null = false;
  };
  struct PendingMem {
    std::string person_id, group_id;
    int64_t established_us;
    RowKey role;
  };
  std::vector<PendingTrait> pending_traits;  // loaded, attached in FinishLoad
  std::vector<PendingMem> pending_mems;

  explicit Impl(std::string s) : salt(std::move(s)) {
    for (EntityKind k : {EntityKind::kPerson, EntityKind::kGroup}) {
      ks[Idx(k)].kind = k;
      for (const auto& c : ColumnRules(k)) {
        if (!c.identifier_type.empty()) ks[Idx(k)].fallback_types.push_back(types.Id(c.identifier_type));
        column_names[Idx(k)].emplace_back(c.traits.size(), kNone);
        column_types[Idx(k)].push_back(c.identifier_type.empty() ? kNone : types.Id(c.identifier_type));
      }
      assert(ColumnRules(k).size() <= kMaxColumns);
    }
    BeginBatch();
  }

  // ---------------- union-find ----------------
  uint32_t Find(KindState& s, uint32_t c) {
    uint32_t root = c;
    while (s.clusters[root].parent != root) root = s.clusters[root].parent;
    while (s.clusters[c].parent != root) {
      const uint32_t next = s.clusters[c].parent;
      s.clusters[c].parent = root;
      c = next;
    }
    return root;
  }
  uint32_t RootOf(KindState& s, uint32_t ident) { return Find(s, s.idents[ident].cluster); }
  static std::string IdOf(const KindState& s, uint32_t c) {
    std::string out;  // one allocation: prefix + 26 characters
    out.reserve(4 + s.clusters[c].id.size());
    out.append(KindPrefix(s.kind)).append(s.clusters[c].id.data(), s.clusters[c].id.size());
    return out;
  }
  static std::string_view ValueOf(const KindState& s, uint32_t ident) {
    const Ident& i = s.idents[ident];
    return s.index.Key(ident).substr(i.type_len + 1);
  }
  static std::string_view TypeOf(const KindState& s, uint32_t ident) {
    const Ident& i = s.idents[ident];
    return s.index.Key(ident).substr(0, i.type_len);
  }
  uint32_t Lookup(const KindState& s, std::string_view type, std::string_view value) {
    key_.assign(type).append(1, '\x1f').append(value);
    return s.index.Find(key_);
  }
  std::string key_;                                             // scratch for index lookups (no allocation per row)
  std::vector<uint32_t> edge_fresh_, edge_roots_, edge_prior_;  // ApplyEdge's scratch
  std::vector<int64_t> edge_fresh_rows_;
  std::vector<uint32_t> row_idents_;  // ApplyEventRows: the interned identifier of each row (kNone: blocked)

  static int64_t TypeCount(const Cluster& c, uint32_t t) {
    for (const auto& [ty, n] : c.type_counts) {
      if (ty == t) return n;
    }
    return 0;
  }
  static void AddTypeCount(Cluster& c, uint32_t t, int64_t n) {
    for (auto& p : c.type_counts) {
      if (p.first == t) {
        p.second += n;
        return;
      }
    }
    c.type_counts.emplace_back(t, n);
  }

  // ---------------- final columns ----------------
  /// Trait name ids of each column rule (kNone until the name is first seen), per kind.
  std::array<std::vector<std::vector<uint32_t>>, kKinds> column_names;
  std::array<std::vector<uint32_t>, kKinds> column_types;  // interned fallback type per column (kNone: none)

  FinalKeys KeysOf(KindState& s, uint32_t c) {
    const Cluster& cl = s.clusters[c];
    const auto& rules = ColumnRules(s.kind);
    auto& col_names = column_names[Idx(s.kind)];
    FinalKeys out{};
    for (size_t col = 0; col < rules.size(); ++col) {
      ColumnKey& v = out[col];
      for (size_t t = 0; t < rules[col].traits.size(); ++t) {
        uint32_t& n = col_names[col][t];
        if (n == kNone) n = names.Find(rules[col].traits[t]);  // interned ids never change once given
        if (n == kNone) continue;
        auto it = std::find_if(cl.traits.begin(), cl.traits.end(), [&](const TraitWin& w) { return w.name == n; });
        if (it != cl.traits.end() && !it->is_null) {  // a cleared trait counts as absent
          v.trait_row = it->key.row_id;
          break;
        }
      }
      const uint32_t type = column_types[Idx(s.kind)][col];
      if (v.trait_row == 0 && type != kNone) {
        for (const auto& [ty, ident] : cl.latest) {
          if (ty == type) v.ident = ident;
        }
      }
    }
    return out;
  }
  std::vector<FinalValue> Finals(KindState& s, uint32_t c) { return Spell(s, KeysOf(s, c)); }
  std::vector<FinalValue> Spell(const KindState& s, const FinalKeys& keys) const {
    std::vector<FinalValue> out(ColumnRules(s.kind).size());
    for (size_t col = 0; col < out.size(); ++col) {
      out[col].trait_row = keys[col].trait_row;
      if (keys[col].ident != kNone) out[col].identifier_value = std::string(ValueOf(s, keys[col].ident));
    }
    return out;
  }
  /// Call before anything that may change a live cluster's final columns or count. Entities born in the batch
  /// need no record (their row starts all NULL), nor does a replay (Report::kReplay) any.
  void Touch(KindState& s, uint32_t c) {
    auto& m = marks[Idx(s.kind)];
    if (!changes_ || c >= m.existing_limit) return;
    auto [it, fresh] = m.finals_before.try_emplace(c);
    if (fresh) it->second = KeysOf(s, c);
  }

  bool LatestBetter(const KindState& s, uint32_t a, uint32_t b) const {
    const Ident& x = s.idents[a];
    const Ident& y = s.idents[b];
    if (x.last_us != y.last_us) return x.last_us > y.last_us;
    return ValueOf(s, a) < ValueOf(s, b);
  }
  void OfferLatest(KindState& s, Cluster& c, uint32_t ident) {
    const uint32_t t = s.idents[ident].type;
    if (std::find(s.fallback_types.begin(), s.fallback_types.end(), t) == s.fallback_types.end()) return;
    for (auto& [ty, cur] : c.latest) {
      if (ty != t) continue;
      if (cur != ident && LatestBetter(s, ident, cur)) cur = ident;
      return;
    }
    c.latest.emplace_back(t, ident);
  }

  // ---------------- trait rules ----------------
  TraitRules rules;
  std::vector<const TraitRule*> rule_of_name;  // interned name -> its rule (nullptr: not looked up yet)
  void SetRules(const TraitRules& r) {
    if (r == rules) return;
    rules = r;
    rule_of_name.clear();
  }
  const TraitRule& RuleOf(uint32_t name) {
    if (name >= rule_of_name.size()) rule_of_name.resize(static_cast<size_t>(name) + 1, nullptr);
    if (rule_of_name[name] == nullptr) rule_of_name[name] = &rules.For(names.Name(name));
    return *rule_of_name[name];
  }
  /// Whether row `a` beats row `b` (same entity and name) under `rule`: a strict total order on rows.
  bool TraitBeats(const TraitRule& rule, const TraitWin& a, const TraitWin& b) const {
    switch (rule.kind) {
      case TraitRule::Kind::kLatest:
        return b.key < a.key;
      case TraitRule::Kind::kFirst:
        if (a.is_null != b.is_null) return b.is_null;  // any value beats a null
        return a.key < b.key;
      case TraitRule::Kind::kPriority: {
        if (a.source != b.source) {
          const size_t ra = rule.Rank(sources.Name(a.source)), rb = rule.Rank(sources.Name(b.source));
          if (ra != rb) return ra < rb;
        }
        return b.key < a.key;
      }
    }
    return false;
  }

  void OfferTrait(KindState& s, uint32_t c, const TraitWin& row) {
    Cluster& cl = s.clusters[c];
    auto it = std::find_if(cl.traits.begin(), cl.traits.end(), [&](const TraitWin& w) { return w.name == row.name; });
    if (it != cl.traits.end() && (it->key.row_id == row.key.row_id || !TraitBeats(RuleOf(row.name), row, *it))) return;
    if (changes_) {  // the winners before the batch's first change (an entity's winners change only here)
      auto& m = marks[Idx(s.kind)];
      if (c < m.existing_limit) m.traits_before.try_emplace(c, cl.traits);
      m.trait_marks.emplace_back(c, row.name);
    }
    if (it != cl.traits.end()) {
      *it = row;
    } else {
      cl.traits.push_back(row);
    }
  }

  // ---------------- memberships ----------------
  static uint64_t MemKey(uint32_t p, uint32_t g) { return (static_cast<uint64_t>(p) << 32) | g; }
  void OfferMembership(uint32_t p, uint32_t g, int64_t established, const RowKey& role, bool mark) {
    auto [it, fresh] = mem_index.emplace(MemKey(p, g), static_cast<uint32_t>(mems.size()));
    if (fresh) {
      mems.push_back({p, g, established, role, false});
      ks[0].clusters[p].memberships.push_back(it->second);
      ks[1].clusters[g].memberships.push_back(it->second);
      if (mark && changes_) mem_marks.insert(it->second);
      return;
    }
    Mem& m = mems[it->second];
    bool changed = false;
    if (established < m.established_us) {
      m.established_us = established;
      changed = true;
    }
    if (m.role < role) {
      m.role = role;
      changed = true;
    }
    if (changed && mark && changes_) mem_marks.insert(it->second);
  }
  /// Moves the memberships of absorbed cluster `a` (of `kind`) to survivor `s`, folding duplicates.
  void FoldMemberships(EntityKind kind, uint32_t a, uint32_t s) {
    const bool person = kind == EntityKind::kPerson;
    std::vector<uint32_t> list = std::move(ks[Idx(kind)].clusters[a].memberships);
    ks[Idx(kind)].clusters[a].memberships.clear();
    for (uint32_t idx : list) {
      Mem& m = mems[idx];
      if (m.dead || (person ? m.person : m.group) != a) continue;
      mem_index.erase(MemKey(m.person, m.group));
      m.dead = true;
      const Mem copy = m;
      OfferMembership(person ? s : copy.person, person ? copy.group : s, copy.established_us, copy.role, true);
      if (!changes_) continue;
      mem_marks.erase(idx);
      // A folded membership always changes its row (new person/group id), so mark it even if unchanged.
      mem_marks.insert(mem_index.at(MemKey(person ? s : copy.person, person ? copy.group : s)));
    }
  }

  // ---------------- edges ----------------
  /// A new entity of the identifiers `fresh` (unseen until now); the first founds it, born at `birth`.
  uint32_t NewCluster(KindState& s, const std::vector<uint32_t>& fresh, const std::string& event_id,
                      const BirthKey& birth) {
    auto& m = marks[Idx(s.kind)];
    const uint32_t c = static_cast<uint32_t>(s.clusters.size());
    Cluster cl;
    cl.parent = c;
    cl.birth = birth;
    const std::string id = BirthId(s, fresh.front(), birth);
    std::copy(id.begin() + 4, id.end(), cl.id.begin());
    s.clusters.push_back(std::move(cl));
    ++s.live;
    m.born.push_back(c);
    m.born_event.push_back(event_id);
    Touch(s, c);
    for (uint32_t i : fresh) Accrete(s, c, i);
    return c;
  }
  /// The id of a component founded by `founder` at `birth`: its override, else the founder's (see SetIdOverrides).
  std::string BirthId(KindState& s, uint32_t founder, const BirthKey& birth) {
    if (s.id_overrides.empty()) {
      return MakeEntityId(s.kind, salt, std::string(TypeOf(s, founder)), std::string(ValueOf(s, founder)));
    }
    const auto it = s.id_overrides.find(birth);
    if (it == s.id_overrides.end()) {
      std::string id = MakeEntityId(s.kind, salt, std::string(TypeOf(s, founder)), std::string(ValueOf(s, founder)));
      return s.reserved_ids.count(id) ? MakeSplitId(s.kind, salt, id, birth) : id;
    }
    return s.given_ids.insert(it->second).second ? it->second : MakeSplitId(s.kind, salt, it->second, birth);
  }
  void Accrete(KindState& s, uint32_t c, uint32_t ident) {
    s.idents[ident].cluster = c;
    Cluster& cl = s.clusters[c];
    ++cl.count;
    AddTypeCount(cl, s.idents[ident].type, 1);
    OfferLatest(s, cl, ident);
    if (changes_) marks[Idx(s.kind)].count_changed.push_back(c);
    if (!s.rule_keys.empty()) {
      if (auto it = s.rule_keys.find(std::string(s.index.Key(ident))); it != s.rule_keys.end()) {
        auto& tags = s.cluster_tags[c];
        tags.insert(tags.end(), it->second.begin(), it->second.end());
      }
    }
  }

  // ---------------- link rules ----------------
  std::vector<LinkRule> link_rules;
  /// The first link rule the union of `roots` and `fresh` (edge (event_id, edge_id)) would break, or nullptr.
  const LinkRule* RuleViolation(KindState& s, const std::string& event_id, const std::string& edge_id,
                                const std::vector<uint32_t>& roots, const std::vector<uint32_t>& fresh) {
    if (!s.suppressed_edges.empty()) {
      auto it = s.suppressed_edges.find({event_id, edge_id});
      if (it == s.suppressed_edges.end()) it = s.suppressed_edges.find({event_id, std::string()});  // the whole event
      if (it != s.suppressed_edges.end()) return &link_rules[it->second];
    }
    if (s.rule_keys.empty()) return nullptr;
    std::vector<std::pair<uint32_t, uint8_t>> tags;
    for (uint32_t r : roots) {
      if (auto it = s.cluster_tags.find(r); it != s.cluster_tags.end()) {
        tags.insert(tags.end(), it->second.begin(), it->second.end());
      }
    }
    for (uint32_t i : fresh) {
      if (auto it = s.rule_keys.find(std::string(s.index.Key(i))); it != s.rule_keys.end()) {
        tags.insert(tags.end(), it->second.begin(), it->second.end());
      }
    }
    if (tags.size() < 2) return nullptr;
    std::sort(tags.begin(), tags.end());
    for (size_t i = 1; i < tags.size(); ++i) {
      if (tags[i].first == tags[i - 1].first && tags[i].second != tags[i - 1].second) return &link_rules[tags[i].first];
    }
    return nullptr;
  }

  std::string CapViolation(KindState& s, const std::vector<uint32_t>& roots, const std::vector<uint32_t>& fresh,
                           const Caps& caps) {
    if (caps.Unlimited()) return {};
    // The unseen identifiers count as one more side (a component they would found together); fresh
    // identifiers never count as "already over": an edge of two new user_ids breaks a cap of 1.
    int64_t total = static_cast<int64_t>(fresh.size()), largest = 0;
    for (uint32_t r : roots) {
      total += s.clusters[r].count;
      largest = std::max(largest, s.clusters[r].count);
    }
    const size_t sides = roots.size() + (fresh.empty() ? 0 : 1);
    if (caps.max_entity_size > 0 && total > caps.max_entity_size && total > largest) {
      return "would join " + std::to_string(sides) + " parts into " + std::to_string(total) +
             " identifiers (max_entity_size " + std::to_string(caps.max_entity_size) + ")";
    }
    std::vector<std::string> tnames;
    for (uint32_t r : roots) {
      for (const auto& [t, n] : s.clusters[r].type_counts) {
        if (n > 0) tnames.push_back(types.Name(t));
      }
    }
    for (uint32_t i : fresh) tnames.push_back(types.Name(s.idents[i].type));
    std::sort(tnames.begin(), tnames.end());
    tnames.erase(std::unique(tnames.begin(), tnames.end()), tnames.end());
    for (const auto& tn : tnames) {
      const int64_t cap = caps.CapFor(tn);
      if (cap <= 0) continue;
      const uint32_t t = types.Find(tn);
      int64_t sum = 0, max_side = 0;
      for (uint32_t r : roots) {
        const int64_t n = TypeCount(s.clusters[r], t);
        sum += n;
        max_side = std::max(max_side, n);
      }
      for (uint32_t i : fresh) sum += s.idents[i].type == t ? 1 : 0;
      if (sum > cap && sum > max_side) {
        return "would give one entity " + std::to_string(sum) + " identifiers of type '" + tn + "' (cap " +
               std::to_string(cap) + ")";
      }
    }
    return {};
  }

  /// The identifiers of one edge of one event: interned ids, whether each is unseen (no cluster yet), and each
  /// one's first row in the edge (where it is born if it founds an entity).
  struct EdgeRows {
    std::vector<uint32_t> ids;
    std::vector<bool> is_new;
    std::vector<int64_t> rows;
  };

  /// Unites the components of the edge's identifiers (plus the components earlier events saw under the
  /// edge_id). `xid`: the event's ingest transaction (births get their BirthKey from it and the rows).
  void ApplyEdge(KindState& s, const std::string& event_id, int64_t xid, uint32_t event_pos, const std::string& edge_id,
                 const EdgeRows& e, bool force, const Caps& caps, const std::vector<uint32_t>* extra_roots = nullptr) {
    auto& m = marks[Idx(s.kind)];
    const std::vector<uint32_t>& ids = e.ids;
    // Scratch kept from edge to edge (nothing here applies an edge again).
    std::vector<uint32_t>& fresh = edge_fresh_;
    std::vector<uint32_t>& roots = edge_roots_;
    std::vector<int64_t>& fresh_rows = edge_fresh_rows_;
    std::vector<uint32_t>& prior = edge_prior_;
    fresh.clear();
    roots.clear();
    fresh_rows.clear();
    prior.clear();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (e.is_new[i]) {
        fresh.push_back(ids[i]);
        fresh_rows.push_back(e.rows[i]);
        continue;
      }
      const uint32_t r = RootOf(s, ids[i]);
      if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
    }
    if (extra_roots) {  // a released edge: the components recorded when it was quarantined, not the edge_id's
      for (uint32_t c : *extra_roots) {
        const uint32_t r = Find(s, c);
        if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
      }
    } else if (IsEventLocalEdge(event_id, edge_id)) {
      // Only this event's rows: nothing to look up.
    } else if (auto it = s.edges.find(edge_id); it != s.edges.end()) {
      prior.push_back(it->second.first);
      if (it->second.more != kNone) {
        const auto& more = s.more_reps[it->second.more];
        prior.insert(prior.end(), more.begin(), more.end());
      }
    }
    for (uint32_t p : prior) {
      const uint32_t r = RootOf(s, p);
      if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
    }
    if (fresh.empty() && roots.size() < 2) return;

    std::string why;
    if (const LinkRule* rule = RuleViolation(s, event_id, edge_id, roots, fresh)) why = LinkRuleReason(*rule);
    if (why.empty() && !force) why = CapViolation(s, roots, fresh, caps);
    {
      if (!why.empty()) {
        QuarantineRecord q;
        q.event = event_pos;
        q.edge_id = edge_id;
        auto add = [&](uint32_t i) {
          std::pair<std::string, std::string> tv{std::string(TypeOf(s, i)), std::string(ValueOf(s, i))};
          if (std::find(q.identifiers.begin(), q.identifiers.end(), tv) == q.identifiers.end()) {
            q.identifiers.push_back(std::move(tv));
          }
        };
        // This event's identifiers only: what earlier events saw under the edge_id is in entity_ids (which
        // representative identifiers stand for them depends on when the graph was loaded).
        for (uint32_t i : ids) add(i);
        q.reason = std::move(why);
        for (uint32_t r : roots) q.entity_ids.push_back(IdOf(s, r));
        // Sorted: the order of `roots` follows the representatives remembered for an explicit edge_id, which
        // depends on the order the graph was loaded in; the record must not.
        std::sort(q.entity_ids.begin(), q.entity_ids.end());
        m.quarantined.push_back(std::move(q));
        for (size_t i = 0; i < fresh.size(); ++i) {  // the edge is not applied
          NewCluster(s, {fresh[i]}, event_id, {xid, e.rows.front(), fresh_rows[i]});
        }
        return;
      }
    }
    // Survivor: most identifiers, then the oldest. The fresh identifiers form the youngest candidate, which
    // survives only when strictly larger than every existing component; otherwise they simply accrete.
    uint32_t survivor = kNone;
    for (uint32_t r : roots) {
      if (survivor == kNone) {
        survivor = r;
        continue;
      }
      const Cluster& c = s.clusters[r];
      const Cluster& sv = s.clusters[survivor];
      if (c.count > sv.count || (c.count == sv.count && c.birth < sv.birth)) survivor = r;
    }
    if (survivor == kNone || static_cast<int64_t>(fresh.size()) > s.clusters[survivor].count) {
      survivor = NewCluster(s, fresh, event_id, {xid, e.rows.front(), fresh_rows.front()});
      fresh.clear();
    }
    Touch(s, survivor);
    for (uint32_t i : fresh) Accrete(s, survivor, i);
    for (uint32_t r : roots) {
      if (r == survivor) continue;  // an absorbed cluster's rows are dropped, not compared: no Touch
      Cluster& c = s.clusters[r];
      m.merges.emplace_back(r, survivor, c.count);
      m.merge_edges.emplace_back(event_id, edge_id);
      c.parent = survivor;
      --s.live;
      Cluster& sv = s.clusters[survivor];
      sv.count += c.count;
      if (changes_) m.count_changed.push_back(survivor);
      for (const auto& [t, n] : c.type_counts) AddTypeCount(sv, t, n);
      FreeAll(c.type_counts);
      if (!s.cluster_tags.empty()) {
        if (auto it = s.cluster_tags.find(r); it != s.cluster_tags.end()) {
          auto moved = std::move(it->second);
          s.cluster_tags.erase(it);
          auto& tags = s.cluster_tags[survivor];
          tags.insert(tags.end(), moved.begin(), moved.end());
        }
      }
      for (const auto& [t, ident] : c.latest) OfferLatest(s, s.clusters[survivor], ident);
      FreeAll(c.latest);
      std::vector<TraitWin> absorbed_traits;
      absorbed_traits.swap(c.traits);
      for (const auto& w : absorbed_traits) OfferTrait(s, survivor, w);
      FoldMemberships(s.kind, r, survivor);
    }
  }

  void RecordEdgeSighting(KindState& s, const std::string& edge_id, uint32_t ident) {
    auto [it, fresh] = s.edges.try_emplace(edge_id);
    EdgeReps& reps = it->second;
    if (fresh || reps.first == kNone) {
      reps.first = ident;
      return;
    }
    const uint32_t r = RootOf(s, ident);
    if (RootOf(s, reps.first) == r) return;
    if (reps.more != kNone) {
      for (uint32_t o : s.more_reps[reps.more]) {
        if (RootOf(s, o) == r) return;
      }
      s.more_reps[reps.more].push_back(ident);
      return;
    }
    reps.more = static_cast<uint32_t>(s.more_reps.size());
    s.more_reps.push_back({ident});
  }

  /// The edges of the event being applied (ApplyEventRows), in order of their first row; reused from event to
  /// event (an event has a few: allocating maps and vectors for each was a tenth of a rebuild's replay).
  struct EventEdge {
    const std::string* edge_id;
    uint32_t first;  // the first non-blocked identifier of the edge (traits attach to it)
    EdgeRows rows;
  };
  std::vector<EventEdge> event_edges_;  // the first n_event_edges_ are the current event's
  size_t n_event_edges_ = 0;
  std::unordered_map<std::string_view, uint32_t> event_edge_index_;  // only for events with many edges

  static constexpr size_t kScanEdges = 16;
  /// The current event's edge `edge_id` (an index into event_edges_), or kNone.
  uint32_t EventEdgeOf(std::string_view edge_id) const {
    if (n_event_edges_ > kScanEdges) {
      auto it = event_edge_index_.find(edge_id);
      return it == event_edge_index_.end() ? kNone : it->second;
    }
    for (size_t i = 0; i < n_event_edges_; ++i) {
      if (*event_edges_[i].edge_id == edge_id) return static_cast<uint32_t>(i);
    }
    return kNone;
  }
  /// The first non-blocked identifier of the current event's edge `edge_id`, or kNone.
  uint32_t FirstOfEdge(std::string_view edge_id) const {
    const uint32_t e = EventEdgeOf(edge_id);
    return e == kNone ? kNone : event_edges_[e].first;
  }

  /// The identifier rows of one (event, kind): edges, sightings, participants; then FirstOfEdge answers for this
  /// event. `hashes`: each row's ProbeTable::Hash of its key (0 for a blocked row).
  void ApplyEventRows(KindState& s, const BatchInput& in, uint32_t ev, const LogIdentifier* begin,
                      const LogIdentifier* end, const uint32_t* hashes, const Caps& caps) {
    auto& m = marks[Idx(s.kind)];
    const LogEvent& event = in.events[ev];
    n_event_edges_ = 0;
    // Only after an event with many edges: clear() also wipes the buckets, which stay as many as the largest held.
    if (!event_edge_index_.empty()) event_edge_index_.clear();
    const uint32_t interned_here = static_cast<uint32_t>(s.idents.size());  // ids from here on are this event's
    row_idents_.clear();
    for (const LogIdentifier* r = begin; r != end; ++r) {
      if (r->blocked) {
        row_idents_.push_back(kNone);
        continue;
      }
      // Most rows name a known identifier: look up with a reused key buffer, allocate only for new ones.
      key_.assign(r->type).append(1, '\x1f').append(r->value);
      const auto [id, fresh] = s.index.Intern(key_, hashes[r - begin]);
      row_idents_.push_back(id);
      if (fresh) {
        Ident i;
        i.cluster = kNone;
        i.type = types.Id(r->type);
        i.type_len = static_cast<uint32_t>(r->type.size());
        i.source = sources.Id(event.source);
        i.first_us = event.occurred_us;
        i.last_us = event.occurred_us;
        s.idents.push_back(i);
      }
      const uint32_t ident = id;
      uint32_t at = EventEdgeOf(r->edge_id);
      if (at == kNone) {
        at = static_cast<uint32_t>(n_event_edges_++);
        if (event_edges_.size() < n_event_edges_) event_edges_.emplace_back();
        EventEdge& ee = event_edges_[at];
        ee.edge_id = &r->edge_id;
        ee.first = ident;
        ee.rows.ids.clear();
        ee.rows.is_new.clear();
        ee.rows.rows.clear();
        if (n_event_edges_ == kScanEdges + 1) {
          for (uint32_t i = 0; i < n_event_edges_; ++i) event_edge_index_.emplace(*event_edges_[i].edge_id, i);
        } else if (n_event_edges_ > kScanEdges + 1) {
          event_edge_index_.emplace(r->edge_id, at);
        }
      }
      EdgeRows& e = event_edges_[at].rows;
      if (std::find(e.ids.begin(), e.ids.end(), ident) == e.ids.end()) {
        e.ids.push_back(ident);
        e.is_new.push_back(s.idents[ident].cluster == kNone);
        e.rows.push_back(r->row_id);
      }
    }
    const auto& forced = in.forced[Idx(s.kind)];
    for (size_t at = 0; at < n_event_edges_; ++at) {
      const std::string& edge_id = *event_edges_[at].edge_id;
      EdgeRows& e = event_edges_[at].rows;
      // An identifier interned by an earlier edge of this event already has a cluster now.
      for (size_t i = 0; i < e.ids.size(); ++i) e.is_new[i] = s.idents[e.ids[i]].cluster == kNone;
      const bool force = !forced.empty() && forced.count({event.event_id, edge_id}) > 0;
      ApplyEdge(s, event.event_id, event.xid, ev, edge_id, e, force, caps);
      if (!IsEventLocalEdge(event.event_id, edge_id)) {
        for (uint32_t i : e.ids) RecordEdgeSighting(s, edge_id, i);
      }
    }
    // Sightings: first occurrence (ties: the first consumed) and latest.
    for (const LogIdentifier* r = begin; r != end; ++r) {
      if (r->blocked) continue;
      const uint32_t ident = row_idents_[static_cast<size_t>(r - begin)];
      Ident& i = s.idents[ident];
      if (ident < interned_here) {
        const bool earlier = event.occurred_us < i.first_us;
        const bool later = event.occurred_us > i.last_us;
        if (earlier || later) {
          const uint32_t root = RootOf(s, ident);
          Touch(s, root);
          if (earlier) {
            i.first_us = event.occurred_us;
            i.source = sources.Id(event.source);
          }
          if (later) {
            i.last_us = event.occurred_us;
            OfferLatest(s, s.clusters[root], ident);
          }
          if (changes_) m.changed_idents.push_back(ident);
        }
      }
      if (r->role) m.participants.emplace_back(ev, s.idents[ident].cluster, roles.Id(*r->role));
    }
  }

  void BeginBatch() {
    for (auto& s : ks) {
      auto& m = marks[Idx(s.kind)];
      m = BatchMarks{};
      m.existing_limit = static_cast<uint32_t>(s.clusters.size());
      m.ident_limit = static_cast<uint32_t>(s.idents.size());
    }
    mem_marks.clear();
    resolved_mems.clear();
  }

  static void SortUnique(std::vector<uint32_t>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  }

  BatchDelta EndBatch() {
    BatchDelta out;
    for (auto& s : ks) {
      auto& m = marks[Idx(s.kind)];
      KindDelta& d = out.kinds[Idx(s.kind)];
      const uint32_t limit = m.existing_limit;
      const uint32_t idents_end = static_cast<uint32_t>(s.idents.size());
      // Merges, with the final survivor.
      for (size_t i = 0; i < m.merges.size(); ++i) {
        const auto& [absorbed, into, count] = m.merges[i];
        d.merges.push_back({IdOf(s, absorbed), IdOf(s, into), IdOf(s, Find(s, into)), m.merge_edges[i].first,
                            m.merge_edges[i].second, count, absorbed < limit, absorbed, into});
        if (absorbed < limit) --d.stats.entities_delta;
      }
      d.stats.merged = static_cast<int64_t>(m.merges.size());
      d.stats.identifiers = static_cast<int64_t>(idents_end - m.ident_limit);
      // Entities born that survived.
      for (size_t i = 0; i < m.born.size(); ++i) {
        const uint32_t c = m.born[i];
        if (s.clusters[c].parent != c) continue;
        d.entities.push_back({IdOf(s, c), s.clusters[c].count, s.clusters[c].birth, m.born_event[i], true, c});
        ++d.stats.born;
        ++d.stats.entities_delta;
      }
      // Participants, deduplicated per (event, entity, role).
      std::vector<std::tuple<uint32_t, uint32_t, uint32_t>> parts;
      parts.reserve(m.participants.size());
      for (const auto& [ev, c, role] : m.participants) parts.emplace_back(ev, Find(s, c), role);
      std::sort(parts.begin(), parts.end());
      parts.erase(std::unique(parts.begin(), parts.end()), parts.end());
      d.participants.reserve(parts.size());
      for (const auto& [ev, c, role] : parts) d.participants.push_back({ev, IdOf(s, c), roles.Name(role), c});
      d.quarantined = std::move(m.quarantined);
      d.stats.quarantined = static_cast<int64_t>(d.quarantined.size());
      if (!changes_) continue;

      // Identifiers: the new ones (in the order they were first seen), then existing ones whose sightings changed.
      std::vector<uint32_t> gained;
      for (uint32_t i = m.ident_limit; i < idents_end; ++i) {
        const uint32_t root = RootOf(s, i);
        if (root < limit) gained.push_back(root);
        const Ident& id = s.idents[i];
        d.identifiers.push_back({std::string(TypeOf(s, i)), std::string(ValueOf(s, i)), IdOf(s, root),
                                 sources.Name(id.source), id.first_us, id.last_us, true});
      }
      SortUnique(m.changed_idents);
      for (uint32_t i : m.changed_idents) {
        if (i >= m.ident_limit) continue;  // first seen in an earlier event of the batch: listed as new
        const Ident& id = s.idents[i];
        d.identifiers.push_back({std::string(TypeOf(s, i)), std::string(ValueOf(s, i)), IdOf(s, RootOf(s, i)),
                                 sources.Name(id.source), id.first_us, id.last_us, false});
      }
      SortUnique(gained);
      d.stats.accreted = static_cast<int64_t>(gained.size());
      // Existing survivors whose size changed.
      SortUnique(m.count_changed);
      for (uint32_t c : m.count_changed) {
        if (c >= limit || s.clusters[c].parent != c) continue;
        d.entities.push_back({IdOf(s, c), s.clusters[c].count, s.clusters[c].birth, "", false, c});
      }
      // Trait winners that changed, on live entities.
      std::set<std::pair<uint32_t, uint32_t>> tm;
      for (const auto& [c, name] : m.trait_marks) {
        const uint32_t root = Find(s, c);
        tm.emplace(root, name);
      }
      for (const auto& [c, name] : tm) {
        const Cluster& cl = s.clusters[c];
        auto it = std::find_if(cl.traits.begin(), cl.traits.end(), [&](const TraitWin& w) { return w.name == name; });
        if (it == cl.traits.end()) continue;
        // Unchanged when the entity existed and already had this winner (e.g. it won against an absorbed one); an
        // entity that existed and whose winners did not change in the batch has no traits_before.
        if (c < limit) {
          auto b = m.traits_before.find(c);
          if (b == m.traits_before.end()) continue;
          auto was =
              std::find_if(b->second.begin(), b->second.end(), [&](const TraitWin& w) { return w.name == name; });
          if (was != b->second.end() && was->key.row_id == it->key.row_id) continue;
        }
        d.traits.push_back({IdOf(s, c), names.Name(name), it->key.row_id, it->key.occurred_us});
      }
      // Final rows whose values changed: existing entities touched (sorted), then entities born (in order, all
      // after them), whose row starts all NULL.
      std::vector<uint32_t> touched;
      touched.reserve(m.finals_before.size() + m.born.size());
      for (const auto& [c, before] : m.finals_before) touched.push_back(c);
      std::sort(touched.begin(), touched.end());
      touched.insert(touched.end(), m.born.begin(), m.born.end());
      const FinalKeys empty{};
      for (uint32_t c : touched) {
        if (s.clusters[c].parent != c) continue;
        const FinalKeys after = KeysOf(s, c);
        if (after != (c < limit ? m.finals_before.at(c) : empty)) d.finals.push_back({IdOf(s, c), Spell(s, after)});
      }
    }
    // Memberships (mem_marks is empty in a replay).
    std::vector<uint32_t> mm(mem_marks.begin(), mem_marks.end());
    std::sort(mm.begin(), mm.end());
    for (uint32_t i : mm) {
      const Mem& m = mems[i];
      if (m.dead) continue;
      out.memberships.push_back(
          {IdOf(ks[0], m.person), IdOf(ks[1], m.group), m.established_us, m.role.row_id, m.role.occurred_us});
    }
    for (const auto& [row, p, g, occurred] : resolved_mems) {
      const uint32_t pr = Find(ks[0], p), gr = Find(ks[1], g);
      out.resolved_memberships.push_back({row, IdOf(ks[0], pr), IdOf(ks[1], gr), occurred, pr, gr});
    }
    return out;
  }

  template <typename Row>
  static std::vector<std::pair<size_t, size_t>> Ranges(const std::vector<Row>& rows, size_t events) {
    std::vector<std::pair<size_t, size_t>> r(events, {0, 0});
    size_t i = 0;
    while (i < rows.size()) {
      size_t j = i;
      while (j < rows.size() && rows[j].event == rows[i].event) ++j;
      if (rows[i].event < events) r[rows[i].event] = {i, j};
      i = j;
    }
    return r;
  }
};

Engine::Engine(std::string id_salt) : impl_(std::make_unique<Impl>(std::move(id_salt))) {}
Engine::~Engine() = default;

BatchDelta Engine::Apply(const BatchInput& in, const ProtectionConfig& protection, Report report) {
  Impl& x = *impl_;
  x.SetRules(protection.traits);
  x.changes_ = report == Report::kChanges;
  x.BeginBatch();
  // Rows are grouped by event: used in place when in (event, row_id) order, as storage reads them; a sorted
  // copy only when a caller handed them out of order.
  auto in_order = [](const auto& rows, auto* copy) -> const auto& {
    auto less = [](const auto& a, const auto& b) { return std::tie(a.event, a.row_id) < std::tie(b.event, b.row_id); };
    if (std::is_sorted(rows.begin(), rows.end(), less)) return rows;
    *copy = rows;
    std::stable_sort(copy->begin(), copy->end(), less);
    return *copy;
  };
  std::array<std::vector<LogIdentifier>, kKinds> id_copies;
  std::array<std::vector<LogTrait>, kKinds> trait_copies;
  std::vector<LogMembership> mem_copy;
  const std::array<const std::vector<LogIdentifier>*, kKinds> id_rows{&in_order(in.identifiers[0], &id_copies[0]),
                                                                      &in_order(in.identifiers[1], &id_copies[1])};
  const std::array<const std::vector<LogTrait>*, kKinds> trait_rows{&in_order(in.traits[0], &trait_copies[0]),
                                                                    &in_order(in.traits[1], &trait_copies[1])};
  const std::vector<LogMembership>& mems = in_order(in.memberships, &mem_copy);
  const auto& ids = id_rows;
  const auto& traits = trait_rows;
  const size_t n = in.events.size();
  std::array<std::vector<std::pair<size_t, size_t>>, kKinds> id_ranges{Impl::Ranges(*ids[0], n),
                                                                       Impl::Ranges(*ids[1], n)};
  std::array<std::vector<std::pair<size_t, size_t>>, kKinds> trait_ranges{Impl::Ranges(*traits[0], n),
                                                                          Impl::Ranges(*traits[1], n)};
  const auto mem_ranges = Impl::Ranges(mems, n);
  const std::array<const Caps*, kKinds> caps{&protection.person_caps, &protection.group_caps};
  // Each identifier row's key hash, computed once: with it, the engine asks the cache for a row's slot, reference
  // and key bytes a few events before it looks the row up (at 1.1M identifiers nearly every lookup missed the
  // cache three times; the misses were a fifth of a rebuild's replay).
  std::array<std::vector<uint32_t>, kKinds> hashes;
  for (size_t k = 0; k < kKinds; ++k) {
    hashes[k].resize(ids[k]->size());
    for (size_t i = 0; i < ids[k]->size(); ++i) {
      const LogIdentifier& r = (*ids[k])[i];
      if (r.blocked) continue;
      x.key_.assign(r.type).append(1, '\x1f').append(r.value);
      hashes[k][i] = ProbeTable::Hash(x.key_);
    }
  }
  std::array<size_t, kKinds> ahead_at{0, 0};  // rows hinted so far, per kind (its rows are in event order)

  for (uint32_t ev = 0; ev < n; ++ev) {
    const LogEvent& event = in.events[ev];
    for (size_t k = 0; k < kKinds; ++k) {
      KindState& s = x.ks[k];
      const auto [b, e] = id_ranges[k][ev];
      const size_t rows = ids[k]->size();
      for (; ahead_at[k] < std::min(rows, e + kLookupAhead[0]); ++ahead_at[k]) {
        for (size_t step = 0; step < kLookupAhead.size(); ++step) {
          const size_t row = ahead_at[k] + kLookupAhead[step] - kLookupAhead[0];  // may be before b: already looked up
          if (row >= b && row < rows && !(*ids[k])[row].blocked) {
            s.index.Prefetch(hashes[k][row], static_cast<int>(step));
          }
        }
      }
      x.ApplyEventRows(s, in, ev, ids[k]->data() + b, ids[k]->data() + e, hashes[k].data() + b, *caps[k]);
      // Traits attach to the entity of the first non-blocked identifier row of their (event, edge_id).
      const auto [tb, te] = trait_ranges[k][ev];
      for (size_t t = tb; t < te; ++t) {
        const LogTrait& trait = (*traits[k])[t];
        const uint32_t first = x.FirstOfEdge(trait.edge_id);
        if (first == kNone) continue;
        const uint32_t root = x.RootOf(s, first);
        x.Touch(s, root);
        x.OfferTrait(s, root,
                     {x.names.Id(trait.name),
                      {event.occurred_us, event.ingested_us, trait.row_id},
                      x.sources.Id(event.source),
                      trait.is_null});
      }
    }
    // Memberships: both sides must be resolved identifiers at the time of the event.
    const auto [mb, me] = mem_ranges[ev];
    for (size_t i = mb; i < me; ++i) {
      const LogMembership& r = mems[i];
      const uint32_t p = x.Lookup(x.ks[0], r.person_type, r.person_value);
      const uint32_t g = x.Lookup(x.ks[1], r.group_type, r.group_value);
      if (p == kNone || g == kNone || x.ks[0].idents[p].cluster == kNone || x.ks[1].idents[g].cluster == kNone) {
        continue;
      }
      const uint32_t pr = x.RootOf(x.ks[0], p), gr = x.RootOf(x.ks[1], g);
      x.resolved_mems.emplace_back(r.row_id, pr, gr, event.occurred_us);
      x.OfferMembership(pr, gr, event.occurred_us, {event.occurred_us, event.ingested_us, r.row_id}, true);
    }
  }
  return x.EndBatch();
}

BatchDelta Engine::ApplyReleased(EntityKind kind, const std::string& event_id, const std::string& edge_id,
                                 const std::vector<std::pair<std::string, std::string>>& identifiers,
                                 const std::vector<std::string>& entity_ids, std::string* entity_id) {
  Impl& x = *impl_;
  x.changes_ = true;
  x.BeginBatch();
  KindState& s = x.ks[Idx(kind)];
  Impl::EdgeRows e;  // known identifiers only: nothing is born
  std::vector<uint32_t>& ids = e.ids;
  for (const auto& [t, v] : identifiers) {
    const uint32_t i = x.Lookup(s, t, v);
    if (i == kNone || std::find(ids.begin(), ids.end(), i) != ids.end()) continue;
    ids.push_back(i);
    e.is_new.push_back(false);
    e.rows.push_back(0);
  }
  // The entities the edge would have joined, wherever they are now. Ids are not indexed (a release is rare):
  // one pass over the clusters, absorbed ones included.
  std::vector<uint32_t> extra;
  for (const auto& id : entity_ids) {
    const std::string prefix = KindPrefix(kind);
    if (id.size() != prefix.size() + 26 || id.compare(0, prefix.size(), prefix) != 0) continue;
    for (uint32_t c = 0; c < s.clusters.size(); ++c) {
      if (std::equal(s.clusters[c].id.begin(), s.clusters[c].id.end(), id.begin() + 4)) {
        extra.push_back(c);
        break;
      }
    }
  }
  if (!ids.empty()) x.ApplyEdge(s, event_id, 0, 0, edge_id, e, true, Caps{}, &extra);
  BatchDelta d = x.EndBatch();
  if (entity_id) *entity_id = ids.empty() ? "" : Impl::IdOf(s, x.RootOf(s, ids.front()));
  return d;
}

void Engine::ReserveForLoad(EntityKind kind, size_t entities, size_t identifiers) {
  KindState& s = impl_->ks[Idx(kind)];
  s.clusters.reserve(s.clusters.size() + entities);
  s.idents.reserve(s.idents.size() + identifiers);
  s.index.Reserve(identifiers);
  s.load_ids.Reserve(entities);
}

void Engine::LoadEntity(EntityKind kind, std::string_view id, int64_t identifier_count, const BirthKey& birth) {
  (void)identifier_count;  // recounted from the identifiers
  KindState& s = impl_->ks[Idx(kind)];
  const std::string_view prefix = KindPrefix(kind);
  if (!LoadIds::WellFormed(prefix, id)) return;
  if (s.load_ids.Find(prefix, id, s.clusters) != kNone) return;
  const uint32_t c = static_cast<uint32_t>(s.clusters.size());
  Cluster cl;
  cl.parent = c;
  cl.birth = birth;
  std::copy(id.begin() + static_cast<std::ptrdiff_t>(prefix.size()), id.end(), cl.id.begin());
  s.clusters.push_back(std::move(cl));
  s.load_ids.Insert(c, s.clusters);
  ++s.live;
}

bool Engine::LoadIdentifier(EntityKind kind, std::string_view type, std::string_view value, std::string_view entity_id,
                            std::string_view source, int64_t first_us, int64_t last_us) {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  const uint32_t ent = s.load_ids.Find(KindPrefix(kind), entity_id, s.clusters);
  if (ent == kNone) return false;
  x.key_.assign(type).append(1, '\x1f').append(value);
  const auto [id, fresh] = s.index.Intern(x.key_);
  if (!fresh) return false;
  Ident i;
  i.type = x.types.Id(type);
  i.type_len = static_cast<uint32_t>(type.size());
  i.source = x.sources.Id(source);
  i.first_us = first_us;
  i.last_us = last_us;
  s.idents.push_back(i);
  x.marks[Idx(kind)].count_changed.clear();
  x.Accrete(s, ent, id);
  return true;
}

void Engine::LoadEdgeSighting(EntityKind kind, std::string_view event_id, std::string_view edge_id,
                              std::string_view type, std::string_view value) {
  if (IsEventLocalEdge(event_id, edge_id)) return;
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  const uint32_t i = x.Lookup(s, type, value);
  if (i == kNone || s.idents[i].cluster == kNone) return;
  x.RecordEdgeSighting(s, std::string(edge_id), i);
}

void Engine::SetTraitRules(const TraitRules& rules) { impl_->SetRules(rules); }

void Engine::SetLinkRules(const std::vector<LinkRule>& rules) {
  Impl& x = *impl_;
  x.link_rules = rules;
  for (auto& s : x.ks) {
    s.rule_keys.clear();
    s.cluster_tags.clear();
    s.suppressed_edges.clear();
  }
  for (uint32_t r = 0; r < rules.size(); ++r) {
    const LinkRule& rule = rules[r];
    KindState& s = x.ks[Idx(rule.kind)];
    if (!rule.cannot_link) {
      s.suppressed_edges.emplace(std::make_pair(rule.event_id, rule.edge_id), r);
      continue;
    }
    s.rule_keys[Key(rule.a.first, rule.a.second)].emplace_back(r, 0);
    s.rule_keys[Key(rule.b.first, rule.b.second)].emplace_back(r, 1);
  }
  // Identifiers already held (an engine given rules after loading): tag their clusters.
  for (auto& s : x.ks) {
    for (const auto& [key, tags] : s.rule_keys) {
      const uint32_t id = s.index.Find(key);
      if (id == kNone || s.idents[id].cluster == kNone) continue;
      auto& ct = s.cluster_tags[x.RootOf(s, id)];
      ct.insert(ct.end(), tags.begin(), tags.end());
    }
  }
}

void Engine::SetIdOverrides(const std::vector<IdOverride>& overrides) {
  for (auto& s : impl_->ks) {
    s.id_overrides.clear();
    s.reserved_ids.clear();
    s.given_ids.clear();
  }
  for (const auto& o : overrides) impl_->ks[Idx(o.kind)].id_overrides[o.birth] = o.entity_id;
  for (auto& s : impl_->ks) {
    for (const auto& [birth, id] : s.id_overrides) s.reserved_ids.insert(id);
  }
}

std::vector<IdOverride> Engine::SplitIds(EntityKind kind, const std::vector<std::array<std::string, 3>>& before) const {
  SplitCheck check = StartSplitCheck(kind);
  check.Add(before);
  return check.Finish();
}

struct Engine::SplitCheck::State {
  Interner earlier;                                 // earlier ids, numbered in order of first sight
  std::vector<std::pair<uint32_t, uint32_t>> held;  // (earlier id's number, the root holding it now)
  std::vector<uint32_t> hashes;                     // Add's scratch
};

Engine::SplitCheck::SplitCheck(const Engine& engine, EntityKind kind)
    : engine_(&engine), kind_(kind), state_(std::make_unique<State>()) {}
Engine::SplitCheck::SplitCheck(SplitCheck&&) noexcept = default;
Engine::SplitCheck::~SplitCheck() = default;

Engine::SplitCheck Engine::StartSplitCheck(EntityKind kind) const { return SplitCheck(*this, kind); }

void Engine::SplitCheck::Add(const std::vector<std::array<std::string, 3>>& rows) {
  Impl& x = *engine_->impl_;
  KindState& s = x.ks[Idx(kind_)];
  auto& hashes = state_->hashes;
  // Each lookup misses the cache up to three times (KeyIndex::Prefetch): the rows are hashed first, and each
  // step is hinted a few rows ahead, as Apply does.
  hashes.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    x.key_.assign(rows[i][0]).append(1, '\x1f').append(rows[i][1]);
    hashes[i] = ProbeTable::Hash(x.key_);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t step = 0; step < kLookupAhead.size(); ++step) {
      if (i + kLookupAhead[step] < rows.size()) {
        s.index.Prefetch(hashes[i + kLookupAhead[step]], static_cast<int>(step));
      }
    }
    const auto& [type, value, old_id] = rows[i];
    x.key_.assign(type).append(1, '\x1f').append(value);
    const uint32_t id = s.index.Find(x.key_, hashes[i]);
    if (id == kNone || s.idents[id].cluster == kNone) continue;  // erased, or only in blocked rows now
    state_->held.emplace_back(state_->earlier.Id(old_id), x.RootOf(s, id));
  }
}

std::vector<IdOverride> Engine::SplitCheck::Finish() {
  Impl& x = *engine_->impl_;
  KindState& s = x.ks[Idx(kind_)];
  auto& held = state_->held;
  // (earlier id's number, cluster a listed identifier is in now), sorted: an earlier entity's clusters are
  // adjacent and ascending, and the length of each run is how many of its identifiers that cluster holds. One
  // flat vector of integers: with maps of strings and sets instead, about half of this check's ~4 s in a rebuild
  // at 1.1M identifiers went to allocations and string compares.
  std::sort(held.begin(), held.end());
  // The overrides of each earlier id that needs any; put in the order of the earlier ids at the end.
  std::vector<std::pair<const std::string*, std::vector<IdOverride>>> moved;
  std::vector<uint32_t> roots;
  for (size_t at = 0; at < held.size();) {
    const uint32_t earlier = held[at].first;
    const std::string& old_id = state_->earlier.Name(earlier);
    roots.clear();
    // Pure when each of its entities holds only identifiers listed under it (the run == the entity's size).
    bool pure = true;
    while (at < held.size() && held[at].first == earlier) {
      const uint32_t r = held[at].second;
      size_t run = at;
      while (run < held.size() && held[run] == held[at]) ++run;
      pure = pure && static_cast<int64_t>(run - at) == s.clusters[r].count;
      roots.push_back(r);
      at = run;
    }
    if (!pure) continue;  // holds what the earlier entity did not: a merge, decided by the survivor rule
    uint32_t keeper = roots.front();
    for (uint32_t r : roots) {
      const Cluster& a = s.clusters[r];
      const Cluster& b = s.clusters[keeper];
      if (a.count > b.count || (a.count == b.count && a.birth < b.birth)) keeper = r;
    }
    if (Impl::IdOf(s, keeper) == old_id) continue;
    auto& its = moved.emplace_back(&old_id, std::vector<IdOverride>{}).second;
    its.push_back({kind_, s.clusters[keeper].birth, old_id});
    for (uint32_t r : roots) {
      if (r != keeper && Impl::IdOf(s, r) == old_id) {
        its.push_back({kind_, s.clusters[r].birth, MakeSplitId(kind_, x.salt, old_id, s.clusters[r].birth)});
      }
    }
  }
  std::sort(moved.begin(), moved.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
  std::vector<IdOverride> out;
  for (auto& [id, its] : moved) std::move(its.begin(), its.end(), std::back_inserter(out));
  return out;
}

// A trait winner or membership whose entities are loaded already (storage's order) is attached right away; one
// that came first waits for FinishLoad (its strings copied).
void Engine::LoadTraitWinner(EntityKind kind, std::string_view entity_id, std::string_view name, int64_t occurred_us,
                             int64_t ingested_us, int64_t row_id, std::string_view source, bool is_null) {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  const RowKey key{occurred_us, ingested_us, row_id};
  if (const uint32_t c = s.load_ids.Find(KindPrefix(kind), entity_id, s.clusters); c != kNone) {
    x.OfferTrait(s, c, {x.names.Id(name), key, x.sources.Id(source), is_null});
    return;
  }
  x.pending_traits.push_back({kind, std::string(entity_id), std::string(name), key, std::string(source), is_null});
}

void Engine::LoadMembership(std::string_view person_id, std::string_view group_id, int64_t established_us,
                            int64_t role_occurred_us, int64_t role_ingested_us, int64_t role_row_id) {
  Impl& x = *impl_;
  const RowKey role{role_occurred_us, role_ingested_us, role_row_id};
  const uint32_t p = x.ks[0].load_ids.Find(KindPrefix(EntityKind::kPerson), person_id, x.ks[0].clusters);
  const uint32_t g = x.ks[1].load_ids.Find(KindPrefix(EntityKind::kGroup), group_id, x.ks[1].clusters);
  if (p != kNone && g != kNone) {
    x.OfferMembership(p, g, established_us, role, false);
    return;
  }
  x.pending_mems.push_back({std::string(person_id), std::string(group_id), established_us, role});
}

void Engine::FinishLoad() {
  Impl& x = *impl_;
  // Trait winners and memberships loaded before their entities: attach them now.
  for (const auto& t : x.pending_traits) {
    KindState& s = x.ks[Idx(t.kind)];
    if (const uint32_t c = s.load_ids.Find(KindPrefix(t.kind), t.entity_id, s.clusters); c != kNone) {
      x.OfferTrait(s, c, {x.names.Id(t.name), t.key, x.sources.Id(t.source), t.is_null});
    }
  }
  for (const auto& m : x.pending_mems) {
    const uint32_t p = x.ks[0].load_ids.Find(KindPrefix(EntityKind::kPerson), m.person_id, x.ks[0].clusters);
    const uint32_t g = x.ks[1].load_ids.Find(KindPrefix(EntityKind::kGroup), m.group_id, x.ks[1].clusters);
    if (p != kNone && g != kNone) x.OfferMembership(p, g, m.established_us, m.role, false);
  }
  FreeAll(x.pending_traits);
  FreeAll(x.pending_mems);
  for (auto& s : impl_->ks) s.load_ids.Free();
  impl_->BeginBatch();
}

void Engine::Forget(EntityKind kind, const std::vector<std::pair<std::string, std::string>>& identifiers) {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  std::unordered_set<uint32_t> gone;  // identifiers
  std::unordered_set<uint32_t> roots;
  for (const auto& [type, value] : identifiers) {
    const uint32_t i = x.Lookup(s, type, value);
    if (i == kNone) continue;
    gone.insert(i);
    if (s.idents[i].cluster != kNone) roots.insert(x.RootOf(s, i));
  }
  if (gone.empty()) return;
  // Entities absorbed into the forgotten ones keep their ids (ApplyReleased follows them): they go too, as a
  // reload would not have them. One walk over the clusters (linear in their number, no hashing).
  std::vector<uint32_t> dead_clusters(roots.begin(), roots.end());
  for (uint32_t c = 0; c < s.clusters.size(); ++c) {
    uint32_t r = c;
    while (r != kNone && s.clusters[r].parent != r) r = s.clusters[r].parent;
    if (r != kNone && r != c && roots.count(r)) dead_clusters.push_back(c);
  }
  for (uint32_t r : roots) {
    Cluster& cl = s.clusters[r];
    for (uint32_t m : cl.memberships) {
      Mem& mem = x.mems[m];
      if (mem.dead) continue;
      x.mem_index.erase(Impl::MemKey(mem.person, mem.group));
      mem.dead = true;
    }
    s.cluster_tags.erase(r);
    --s.live;
  }
  for (uint32_t c : dead_clusters) {
    Cluster dead;
    dead.parent = kNone;  // not a root, and no id: skipped wherever entities are listed or looked up
    s.clusters[c] = std::move(dead);
  }
  // Edge representatives that are forgotten identifiers: the load gives the edge_ids theirs again.
  for (auto it = s.edges.begin(); it != s.edges.end();) {
    EdgeReps& reps = it->second;
    std::vector<uint32_t> keep;
    if (reps.first != kNone && !gone.count(reps.first)) keep.push_back(reps.first);
    if (reps.more != kNone) {
      for (uint32_t o : s.more_reps[reps.more]) {
        if (!gone.count(o)) keep.push_back(o);
      }
      s.more_reps[reps.more].clear();
    }
    if (keep.empty()) {
      it = s.edges.erase(it);
      continue;
    }
    reps.first = keep.front();
    if (reps.more != kNone) s.more_reps[reps.more].assign(keep.begin() + 1, keep.end());
    ++it;
  }
  for (uint32_t i : gone) {
    Ident& id = s.idents[i];
    id.type_len = 0;
    id.cluster = kNone;
    s.index.Erase(i);
  }
}

bool Engine::LoadExistingEntity(EntityKind kind, std::string_view id, std::string_view type, std::string_view value) {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  if (s.load_ids.Find(KindPrefix(kind), id, s.clusters) != kNone) return true;
  const uint32_t i = x.Lookup(s, type, value);
  if (i == kNone || s.idents[i].cluster == kNone) return false;
  const uint32_t root = x.RootOf(s, i);
  if (Impl::IdOf(s, root) != id) return false;
  s.load_ids.Insert(root, s.clusters);
  return true;
}

std::map<std::string, std::vector<std::string>> Engine::EdgeEntities(EntityKind kind) const {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [edge, reps] : s.edges) {
    std::set<std::string> ids;
    if (reps.first != kNone) ids.insert(Impl::IdOf(s, x.RootOf(s, reps.first)));
    if (reps.more != kNone) {
      for (uint32_t o : s.more_reps[reps.more]) ids.insert(Impl::IdOf(s, x.RootOf(s, o)));
    }
    out[edge].assign(ids.begin(), ids.end());
  }
  return out;
}

std::string Engine::EntityOf(EntityKind kind, const std::string& type, const std::string& value) const {
  KindState& s = impl_->ks[Idx(kind)];
  const uint32_t i = impl_->Lookup(s, type, value);
  if (i == kNone || s.idents[i].cluster == kNone) return {};
  return Impl::IdOf(s, impl_->RootOf(s, i));
}

std::string Engine::EntityIdAt(EntityKind kind, uint32_t ref) const {
  const KindState& s = impl_->ks[Idx(kind)];
  assert(ref < s.clusters.size() && s.clusters[ref].parent != kNone);
  return Impl::IdOf(s, ref);
}

uint32_t Engine::SurvivorAt(EntityKind kind, uint32_t ref) const {
  KindState& s = impl_->ks[Idx(kind)];
  assert(ref < s.clusters.size() && s.clusters[ref].parent != kNone);
  return impl_->Find(s, ref);
}

size_t Engine::identifier_count(EntityKind kind) const { return impl_->ks[Idx(kind)].idents.size(); }
size_t Engine::entity_count(EntityKind kind) const { return impl_->ks[Idx(kind)].live; }

size_t Engine::MemoryBytes() const {
  size_t n = impl_->mems.capacity() * sizeof(Mem) + impl_->mem_index.size() * 32;
  for (const auto& s : impl_->ks) {
    n += s.idents.capacity() * sizeof(Ident) + s.clusters.capacity() * sizeof(Cluster);
    n += s.index.MemoryBytes();
    for (const auto& [k, v] : s.edges) n += k.capacity() + 56;
    for (const auto& c : s.clusters) {
      n += c.type_counts.capacity() * 16 + c.traits.capacity() * sizeof(TraitWin) + c.latest.capacity() * 8 +
           c.memberships.capacity() * 4;
    }
  }
  return n;
}

void Engine::ForEachIdentifier(EntityKind kind, const std::function<void(const IdentifierChange&)>& fn) const {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  IdentifierChange row;
  row.is_new = true;
  for (uint32_t i = 0; i < s.idents.size(); ++i) {
    if (s.idents[i].cluster == kNone) continue;
    const Ident& id = s.idents[i];
    row.type.assign(Impl::TypeOf(s, i));
    row.value.assign(Impl::ValueOf(s, i));
    row.entity_id = Impl::IdOf(s, x.RootOf(s, i));
    row.source = x.sources.Name(id.source);
    row.first_us = id.first_us;
    row.last_us = id.last_us;
    fn(row);
  }
}

void Engine::ForEachEntity(EntityKind kind, bool with_finals, const std::function<void(const EntityState&)>& fn) const {
  Impl& x = *impl_;
  KindState& s = x.ks[Idx(kind)];
  EntityState st;
  for (uint32_t c = 0; c < s.clusters.size(); ++c) {
    const Cluster& cl = s.clusters[c];
    if (cl.parent != c) continue;
    st.entity = {Impl::IdOf(s, c), cl.count, cl.birth, "", true, c};
    st.traits.clear();
    for (const auto& w : cl.traits) {
      st.traits.push_back({st.entity.id, x.names.Name(w.name), w.key.row_id, w.key.occurred_us});
    }
    st.finals.entity_id = st.entity.id;
    if (with_finals) {
      st.finals.columns = x.Finals(s, c);
    } else {
      st.finals.columns.clear();
    }
    fn(st);
  }
}

Engine::Snapshot Engine::TakeSnapshot(bool with_identifiers) const {
  Impl& x = *impl_;
  Snapshot out;
  for (auto& s : x.ks) {
    const size_t k = Idx(s.kind);
    if (with_identifiers) {
      ForEachIdentifier(s.kind, [&](const IdentifierChange& c) { out.identifiers[k].push_back(c); });
    }
    ForEachEntity(s.kind, true, [&](const EntityState& e) {
      out.entities[k].push_back(e.entity);
      out.traits[k].insert(out.traits[k].end(), e.traits.begin(), e.traits.end());
      out.finals[k].push_back(e.finals);
    });
  }
  ForEachMembership([&](const MembershipChange& m) { out.memberships.push_back(m); });
  return out;
}

void Engine::ForEachMembership(const std::function<void(const MembershipChange&)>& fn) const {
  Impl& x = *impl_;
  for (const Mem& m : x.mems) {
    if (m.dead) continue;
    fn({Impl::IdOf(x.ks[0], m.person), Impl::IdOf(x.ks[1], m.group), m.established_us, m.role.row_id,
        m.role.occurred_us});
  }
}

namespace {
/// Every row of an engine's resolved state as a line of text (sorted), for DiffStates.
std::vector<std::string> StateLines(const Engine& e) {
  std::vector<std::string> out;
  const Engine::Snapshot snap = e.TakeSnapshot();
  auto birth = [](const BirthKey& b) {
    return std::to_string(b.xid) + "." + std::to_string(b.edge_row) + "." + std::to_string(b.row);
  };
  for (size_t k = 0; k < kKinds; ++k) {
    const std::string kind = KindName(static_cast<EntityKind>(k));
    for (const auto& x : snap.entities[k]) {
      out.push_back(kind + " entity " + x.id + " n=" + std::to_string(x.identifier_count) + " born " + birth(x.birth));
    }
    for (const auto& x : snap.identifiers[k]) {
      out.push_back(kind + " identifier " + x.type + ":" + x.value + " -> " + x.entity_id + " src=" + x.source +
                    " first=" + std::to_string(x.first_us) + " last=" + std::to_string(x.last_us));
    }
    for (const auto& x : snap.traits[k]) {
      out.push_back(kind + " trait " + x.entity_id + " " + x.name + " row " + std::to_string(x.row_id));
    }
    for (const auto& x : snap.finals[k]) {
      std::string line = kind + " final " + x.entity_id;
      for (const auto& v : x.columns) {
        line += " | " + std::to_string(v.trait_row) + "/" + (v.identifier_value ? *v.identifier_value : "NULL");
      }
      out.push_back(line);
    }
    for (const auto& [edge, ids] : e.EdgeEntities(static_cast<EntityKind>(k))) {
      std::string line = kind + " edge " + edge + " ->";
      for (const auto& id : ids) line += " " + id;
      out.push_back(line);
    }
  }
  for (const auto& m : snap.memberships) {
    out.push_back("membership " + m.person_id + " " + m.group_id + " since " + std::to_string(m.established_us) +
                  " role row " + std::to_string(m.role_row_id));
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::string DiffStates(const Engine& a, const Engine& b, size_t max_lines) {
  const auto la = StateLines(a), lb = StateLines(b);
  std::vector<std::string> only_a, only_b;
  std::set_difference(la.begin(), la.end(), lb.begin(), lb.end(), std::back_inserter(only_a));
  std::set_difference(lb.begin(), lb.end(), la.begin(), la.end(), std::back_inserter(only_b));
  std::string out;
  size_t n = 0;
  for (const auto& l : only_a) {
    if (n++ < max_lines) out += "only in the first: " + l + "\n";
  }
  for (const auto& l : only_b) {
    if (n++ < max_lines) out += "only in the second: " + l + "\n";
  }
  if (n > max_lines) out += std::to_string(n - max_lines) + " more differences\n";
  return out;
}

}  // namespace nexus::resolver
