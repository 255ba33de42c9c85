#pragma once
// The resolution engine: every rule that turns the core event log into resolved identities lives here, once.
// Pure logic: no I/O, no clock, no threads. storage/ feeds it rows and writes what it returns.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "resolver/protection.h"

namespace nexus::resolver {

enum class EntityKind : uint8_t { kPerson = 0, kGroup = 1 };
inline constexpr size_t kKinds = 2;
inline constexpr size_t Idx(EntityKind k) { return static_cast<size_t>(k); }
/// "person" | "group"
const char* KindName(EntityKind k);
/// "per_" | "grp_"
const char* KindPrefix(EntityKind k);
/// The id a component founded by identifier (type, value) gets: KindPrefix + StableId128(salt, type, value).
std::string MakeEntityId(EntityKind kind, const std::string& salt, const std::string& type, const std::string& value);

struct BirthKey;
/// The id a split gives the part that would otherwise keep `old_id` when a larger part keeps it (Engine::SplitIds),
/// and a component whose founder's id another entity holds by an override: KindPrefix + StableId128(salt, "split",
/// old_id, birth). Derived, so a rebuild gives the same.
std::string MakeSplitId(EntityKind kind, const std::string& salt, const std::string& old_id, const BirthKey& birth);

/// Whether `edge_id` is local to event `event_id`: of the form "<event_id>#<anything>", the form ingest derives
/// for a mention sent without an edge_id. A local edge links only what its own event says: it neither links to
/// nor is remembered for other events, even one that names the same string explicitly. So the engine keeps no
/// memory for the edges of ordinary mentions, only for explicit edge_ids a source may reuse.
bool IsEventLocalEdge(std::string_view event_id, std::string_view edge_id);

// ---------------------------------------------------------------------------------------------------------
// Input: core-log rows of one batch.
// ---------------------------------------------------------------------------------------------------------

/// One event, in the order the resolver consumes the log ((_ingest_xid, event_id) order).
struct LogEvent {
  std::string event_id;
  int64_t occurred_us = 0;
  int64_t ingested_us = 0;
  std::string event_type;
  std::string source;
  int64_t xid = 0;  ///< the ingest transaction that wrote it (_ingest_xid)
};

/// One row of person_identifiers / group_identifiers. `event` indexes BatchInput::events.
struct LogIdentifier {
  uint32_t event = 0;
  int64_t row_id = 0;
  std::string edge_id;
  std::string type;
  std::string value;                ///< normalized
  std::optional<std::string> role;  ///< nullopt: implied by a membership (no participant row)
  bool blocked = false;
};

/// One row of person_traits / group_traits. The value stays in the database: the engine picks winners by row
/// (its source is the event's); it only needs to know whether the value is a JSON null (an unset).
struct LogTrait {
  uint32_t event = 0;
  int64_t row_id = 0;
  std::string edge_id;
  std::string name;
  bool is_null = false;
};

/// One row of membership_identifiers. The role stays in the database: the engine picks the winning row.
struct LogMembership {
  uint32_t event = 0;
  int64_t row_id = 0;
  std::string person_type, person_value;
  std::string group_type, group_value;
};

/// Everything one batch consumes. Rows of each vector are in (event, row_id) order.
/// Row ids of one table grow in log order within one ingest transaction (ingest writes a transaction's rows in
/// event_id order): BirthKey relies on it.
struct BatchInput {
  std::vector<LogEvent> events;
  std::array<std::vector<LogIdentifier>, kKinds> identifiers;
  std::array<std::vector<LogTrait>, kKinds> traits;
  std::vector<LogMembership> memberships;
  /// (event_id, edge_id) pairs an operator released: applied without checking caps.
  std::array<std::set<std::pair<std::string, std::string>>, kKinds> forced;
};

// ---------------------------------------------------------------------------------------------------------
// Output: what changed, ready to write. Entity ids are the public `per_`/`grp_` ids.
// ---------------------------------------------------------------------------------------------------------

/// A resolved identifier that is new or whose entity-independent values changed (first/last seen).
/// Identifiers that only moved because their entity was absorbed are NOT listed: see KindDelta::absorbed.
struct IdentifierChange {
  std::string type, value;
  std::string entity_id;
  std::string source;  ///< of the earliest occurrence (ties: the first consumed)
  int64_t first_us = 0;
  int64_t last_us = 0;
  bool is_new = false;
};

/// Where an entity was born: the row of the log that founded it, as (ingest xid, first row of the founding edge
/// in its event, the founder's first row in that edge). Within one ingest transaction row ids follow the log
/// order (BatchInput), so comparing keys compares when the entities were born, as the engine consumed the log:
/// smaller is older. A position in the log rather than a counter of births, so that a component re-resolved on
/// its own (an unlink) gets the key a rebuild of the whole log gives it.
struct BirthKey {
  int64_t xid = 0;
  int64_t edge_row = 0;
  int64_t row = 0;
  auto operator<=>(const BirthKey&) const = default;
};

/// An id an entity gets at birth instead of its founder's (Engine::SetIdOverrides): the entity of `kind` born at
/// `birth` gets `entity_id`. Storage keeps them (entity_id_overrides) for the splits that made them.
struct IdOverride {
  EntityKind kind = EntityKind::kPerson;
  BirthKey birth;
  std::string entity_id;
};

/// An entity row to insert (is_new) or whose identifier_count changed.
struct EntityChange {
  std::string id;
  int64_t identifier_count = 0;
  BirthKey birth;
  std::string created_by_event_id;  ///< set when is_new
  bool is_new = false;
  uint32_t ref = 0;  ///< the entity's ref (Engine::EntityIdAt)
};

/// `absorbed_id` was merged into `merged_into_id` by (event_id, edge_id); `survivor_id` is where it ended up
/// after the whole batch. Absorbed entities that existed before the batch have rows to repoint and delete.
struct MergeRecord {
  std::string absorbed_id, merged_into_id, survivor_id;
  std::string event_id, edge_id;
  int64_t absorbed_count = 0;
  bool absorbed_existing = false;
  uint32_t absorbed_ref = 0, merged_into_ref = 0;  ///< refs of absorbed_id and merged_into_id (Engine::EntityIdAt)
};

/// The winning trait row of (entity, trait name) under the trait rules. A null winner (the row's value is a
/// JSON null) is stored like any other: the trait is cleared, and the row keeps beating what it cleared.
struct TraitWinner {
  std::string entity_id;
  std::string name;
  int64_t row_id = 0;
  int64_t row_occurred_us = 0;  ///< the row's occurred_at (its event's): with row_id, its key in the core log
};

/// A participant row: the entity took part in the event with a role ('' for none).
struct Participant {
  uint32_t event = 0;  ///< index into the batch's events
  std::string entity_id;
  std::string role;
  uint32_t entity_ref = 0;  ///< the ref of entity_id (Engine::EntityIdAt)
};

/// One final-table column's value: the value of trait row `trait_row` when non-zero, else `identifier_value`
/// (empty optional: NULL).
struct FinalValue {
  int64_t trait_row = 0;
  std::optional<std::string> identifier_value;
  bool operator==(const FinalValue&) const = default;
};
/// The final-table row of an entity whose column values changed; a new entity (whose row starts all NULL) is
/// listed only when some column is not NULL. `columns` follows FinalColumns(kind).
struct FinalRow {
  std::string entity_id;
  std::vector<FinalValue> columns;
};

/// An edge not applied because it would break a cap.
struct QuarantineRecord {
  uint32_t event = 0;
  std::string edge_id;
  std::vector<std::pair<std::string, std::string>> identifiers;  ///< (type, value) of this event's rows
  std::string reason;
  std::vector<std::string> entity_ids;  ///< the entities it would have joined, at the time (sorted)
};

struct KindStats {
  int64_t born = 0;            ///< entities born in the batch that survived it
  int64_t accreted = 0;        ///< existing entities that gained identifiers
  int64_t merged = 0;          ///< entities absorbed (existing or born in the batch)
  int64_t quarantined = 0;     ///< edges not applied
  int64_t identifiers = 0;     ///< identifiers first seen
  int64_t entities_delta = 0;  ///< change in the number of live entities
};

struct KindDelta {
  std::vector<IdentifierChange> identifiers;
  std::vector<EntityChange> entities;
  std::vector<MergeRecord> merges;        ///< in order; storage repoints rows of absorbed_existing ones
  std::vector<TraitWinner> traits;        ///< changed winners (after merges are folded)
  std::vector<Participant> participants;  ///< new rows (the batch's events only)
  std::vector<FinalRow> finals;           ///< final rows whose columns changed
  std::vector<QuarantineRecord> quarantined;
  KindStats stats;
  /// Existing entities absorbed in the batch (their rows are repointed to `survivor_id`, then deleted).
  std::vector<std::pair<std::string, std::string>> AbsorbedExisting() const;
};

/// A membership whose established_at or winning role row changed, or that is new.
struct MembershipChange {
  std::string person_id, group_id;
  int64_t established_us = 0;    ///< earliest occurrence
  int64_t role_row_id = 0;       ///< membership_identifiers row of the current role
  int64_t role_occurred_us = 0;  ///< that row's occurred_at (with role_row_id, its key in the core log)
};

/// A membership_identifiers row whose two sides resolved (resolved_membership_identifiers).
struct ResolvedMembership {
  int64_t row_id = 0;
  std::string person_id, group_id;
  int64_t occurred_us = 0;                 ///< the row's occurred_at (with row_id, its key in the core log)
  uint32_t person_ref = 0, group_ref = 0;  ///< refs of person_id and group_id (Engine::EntityIdAt)
};

struct BatchDelta {
  std::array<KindDelta, kKinds> kinds;
  std::vector<MembershipChange> memberships;  ///< memberships of absorbed entities are folded into these
  std::vector<ResolvedMembership> resolved_memberships;
};

/// The final-table columns of a kind, in FinalRow::columns order: persons (email, name, phone, title,
/// timezone), groups (domain, company_name, industry, company_size, shopify_id). Each is the winning trait of
/// its name(s) (a null winner counts as absent), else (email, phone, domain, shopify_id) the most recently seen
/// identifier of that type (latest last_seen_at; of two seen last at the same time, the smaller value, bytewise).
const std::vector<std::string>& FinalColumns(EntityKind kind);

/// An operator's rule against a link (issue 15), stored in link_rules and honoured by every resolution path
/// (incremental batches, loading, rebuilds):
/// - cannot-link: identifiers `a` and `b` (type, normalized value) never end up in one entity. An edge whose
///   union would hold both (directly or through the components it joins) is quarantined with the rule as reason.
/// - suppressed edge: the edge (event_id, edge_id) is never applied (quarantined with the rule as reason); an empty
///   edge_id suppresses every edge of the event ("this event's links are wrong"). A link that another event also
///   asserts stays: rules act on what one event says, never on the link itself.
struct LinkRule {
  int64_t rule_id = 0;
  EntityKind kind = EntityKind::kPerson;
  bool cannot_link = true;  ///< false: a suppressed edge
  std::pair<std::string, std::string> a, b;
  std::string event_id, edge_id;
};
/// The quarantine reason of an edge refused by `rule`: "cannot-link rule 12" / "suppressed by link rule 12" (no
/// identifier values: reasons are shown and logged).
std::string LinkRuleReason(const LinkRule& rule);

// ---------------------------------------------------------------------------------------------------------
// The engine.
// ---------------------------------------------------------------------------------------------------------

/// Resident, incremental identity resolution over both kinds (persons and groups).
///
/// Holds the identity graph in memory: identifiers interned to dense integers, union-find over entities,
/// per-entity projections (id, size, birth order, type counts, trait winners, latest identifier of the
/// final-table types), memberships and the identifiers seen under each edge_id. Apply() consumes one batch
/// of core-log rows and returns what changed.
///
/// Rules (each lives here once):
/// - An edge is the non-blocked identifier rows of one (event, edge_id); an edge_id reused by a later event
///   also links to every component earlier events saw under it, unless it is local to either event
///   (IsEventLocalEdge). Edges apply in log order.
/// - An edge unites the components of its identifiers unless that breaks a cap (then it is quarantined and
///   its unseen identifiers each stand alone); released edges skip the caps. A union breaks a cap when its
///   total is over the cap and larger than its largest existing part (a part already over a lowered cap is
///   not split, but nothing joins it); unseen identifiers never count as a part already over.
/// - A membership row resolves when both of its identifiers are resolved right after its own event.
/// - Survivor of a union: more identifiers, then older (smaller BirthKey). A new component's id is
///   KindPrefix + StableId128(salt, its first identifier), unless an id override names its birth (SetIdOverrides).
/// - A split entity's id goes to its part with the most identifiers (SplitIds), ties to the older.
/// - An identifier's first occurrence: smallest occurred_at, ties to the first consumed; last seen: largest.
/// - Trait winner per (entity, name): by the name's TraitRule (ProtectionConfig::traits), where "latest" is the
///   largest (occurred_at, _ingested_at, row id) and a row's source is its event's: kLatest the latest row;
///   kFirst the earliest non-null row (a null row only wins when there is no value); kPriority the row with
///   the best source rank, equal ranks the latest. A null row that wins clears the trait. Each rule is a total
///   order, so the winner is the same whatever the batch cuts and merge order. Rules act here, at resolution:
///   a changed rule applies to rows resolved afterwards (against the winners already chosen) and a rebuild
///   re-applies it to the whole log.
/// - Membership role: largest (occurred_at, _ingested_at, row id).
/// - A trait belongs to the entity of the first non-blocked identifier row of its (event, edge_id).
/// - Participants: one per (event, entity, role) for rows with a role; memberships: per (person, group)
///   with the earliest occurrence as established_at.
/// Every decision depends only on the log order, never on batch boundaries: any cut of the log into batches
/// gives the same state, the same ids and, summed, the same rows.
///
/// - Link rules (LinkRule): an edge that a suppressed-edge rule names, or whose union would put both sides of a
///   cannot-link rule in one entity, is quarantined with the rule as reason (its unseen identifiers each stand
///   alone, as for caps); rules bind released edges too. Set them before loading or applying anything.
///
/// Limits: it only adds edges (components never split: undoing a merge, i.e. adding a rule, means resolving
/// again with the rule, which storage does by replaying the affected component through a fresh engine; the
/// resident engine then forgets that component and loads the result: Forget).
/// Apply() mutates the state before the caller has stored the delta: if storing fails, throw the engine
/// away and load a new one from the database. Not thread-safe.
class Engine final {
 public:
  explicit Engine(std::string id_salt);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// What Apply reports. kChanges: the whole BatchDelta, for storage to apply to the resolved tables. kReplay:
  /// only what a replay of the log cannot take from the state at its end: merges, participants, entities born
  /// (EntityChange::is_new), quarantined edges and resolved memberships; identifiers, other entity changes, trait
  /// winners, final rows, memberships and KindStats::accreted stay empty (a rebuild writes those from
  /// TakeSnapshot and ForEachIdentifier). The state after Apply is the same in both.
  enum class Report { kChanges, kReplay };

  /// Resolves one batch with the given merge protection and trait rules. Never throws for data reasons.
  BatchDelta Apply(const BatchInput& batch, const ProtectionConfig& protection, Report report = Report::kChanges);

  /// The link rules (see LinkRule). Call before loading or applying anything: clusters already formed are not
  /// re-checked (a rule added later takes effect through a rebuild).
  void SetLinkRules(const std::vector<LinkRule>& rules);

  /// Ids given at birth instead of the founder's (see IdOverride); for the same (kind, birth) a later entry wins.
  /// An id an override gives is reserved for it: a component whose founder's id it is (the part a split took it
  /// from) is born with MakeSplitId(that id, its birth) instead, and so is a second birth given the same id. Ids
  /// of entities already held are not changed. Call before Apply.
  void SetIdOverrides(const std::vector<IdOverride>& overrides);

  /// The id rule of a split (issue 15). `before`: identifiers (type, value) of kind `kind` with the entity id each
  /// had before this engine resolved them again without some links. For each earlier entity whose identifiers
  /// now form entities holding nothing else (a split, or an entity that lost some), the one with the most
  /// identifiers (ties: the older) must keep the earlier id. An entity holding identifiers not listed, or listed
  /// under another earlier entity, is a merge: the survivor rule decides. So `before` may be given in pieces, each
  /// holding every identifier of the earlier entities it names. Returns the overrides that make a
  /// replay under the current ones give that: its birth -> the earlier id, and the birth of the part that holds
  /// the earlier id now -> MakeSplitId(earlier id, its birth). Empty when every id is already right.
  std::vector<IdOverride> SplitIds(EntityKind kind, const std::vector<std::array<std::string, 3>>& before) const;

  /// SplitIds over identifiers given one at a time, in any order: an earlier entity's identifiers need not come
  /// together. What a rebuild uses to check the whole resolved table it replaces without having it sorted by entity
  /// (an index scan over the table) or holding its strings: it keeps one copy of each earlier id and 8 bytes per
  /// identifier. Finish gives what SplitIds gives for the same identifiers, in the same order. The engine must
  /// not change between Start and Finish.
  class SplitCheck {
   public:
    /// Rows of (type, value, earlier id).
    void Add(const std::vector<std::array<std::string, 3>>& rows);
    std::vector<IdOverride> Finish();

    SplitCheck(SplitCheck&&) noexcept;
    ~SplitCheck();

   private:
    friend class Engine;
    struct State;
    SplitCheck(const Engine& engine, EntityKind kind);
    const Engine* engine_;
    EntityKind kind_;
    std::unique_ptr<State> state_;
  };
  SplitCheck StartSplitCheck(EntityKind kind) const;

  /// The trait rules used from now on (Apply sets those of its ProtectionConfig; ApplyReleased and loading use
  /// the last ones set, the built-in "latest" at first).
  void SetTraitRules(const TraitRules& rules);

  /// Applies a quarantined edge an operator released, as a merge without caps: its identifiers and the
  /// entities it would have joined when it was quarantined (QuarantineRecord::entity_ids, followed to where
  /// they are now). Identifiers later events brought under the same edge_id are not part of it, as in a
  /// rebuild that forces this edge. Its identifiers are not sightings (first/last seen and participants stay
  /// those of the original events); unknown ones are ignored. `*entity_id`: where the edge ended ("" if none).
  BatchDelta ApplyReleased(EntityKind kind, const std::string& event_id, const std::string& edge_id,
                           const std::vector<std::pair<std::string, std::string>>& identifiers,
                           const std::vector<std::string>& entity_ids, std::string* entity_id);

  // --- Loading a resolved state (from the database). Entities before their identifiers and identifiers
  // before their edge sightings; trait winners and memberships in any order. Then FinishLoad(). ---
  /// Optional, before loading: room for about `entities` entities and `identifiers` identifiers of `kind` (the
  /// counts storage expects), so that the load does not grow and copy its tables on the way. Only a hint.
  void ReserveForLoad(EntityKind kind, size_t entities, size_t identifiers);
  void LoadEntity(EntityKind kind, std::string_view id, int64_t identifier_count, const BirthKey& birth);
  /// `entity_id` must have been loaded. Returns false (and ignores the row) when it was not.
  bool LoadIdentifier(EntityKind kind, std::string_view type, std::string_view value, std::string_view entity_id,
                      std::string_view source, int64_t first_us, int64_t last_us);
  /// An identifier (already loaded) that applied event `event_id` saw under `edge_id` (ignored when the edge is
  /// local to that event; storage may leave those rows out).
  void LoadEdgeSighting(EntityKind kind, std::string_view event_id, std::string_view edge_id, std::string_view type,
                        std::string_view value);
  /// A stored trait winner: its row's time, source (its event's) and whether its value is a JSON null.
  void LoadTraitWinner(EntityKind kind, std::string_view entity_id, std::string_view name, int64_t occurred_us,
                       int64_t ingested_us, int64_t row_id, std::string_view source, bool is_null);
  void LoadMembership(std::string_view person_id, std::string_view group_id, int64_t established_us,
                      int64_t role_occurred_us, int64_t role_ingested_us, int64_t role_row_id);
  void FinishLoad();

  // --- Re-loading part of the graph: after storage re-resolved a closure on its own (issue 15), the resident
  // engine takes what it wrote for that closure instead of loading everything again. ---
  /// Forgets the entities of `kind` holding any of `identifiers` (every identifier of those entities must be
  /// listed) with their memberships, trait winners and final values, and the identifiers themselves (unseen from
  /// now on, also as representatives of an edge_id). Then load what storage wrote for them as above (LoadEntity,
  /// LoadIdentifier, LoadEdgeSighting, LoadTraitWinner, LoadMembership, LoadExistingEntity for the other side of
  /// memberships) and call FinishLoad. Call between batches only.
  void Forget(EntityKind kind, const std::vector<std::pair<std::string, std::string>>& identifiers);
  /// While loading: lets LoadMembership name an entity this engine holds already, found by one of its identifiers.
  /// Returns false (and does nothing) unless (type, value) belongs to an entity with id `id`.
  bool LoadExistingEntity(EntityKind kind, std::string_view id, std::string_view type, std::string_view value);
  /// For tests and checks: the entities the identifiers remembered under each explicit edge_id are in now (sorted,
  /// distinct), by edge_id.
  std::map<std::string, std::vector<std::string>> EdgeEntities(EntityKind kind) const;

  // --- Reading the state. ---
  /// Entities by ref: every entity the engine holds, live or absorbed, has a ref, a dense number given at its birth
  /// (or load) and never given to another; deltas carry it beside the id. A caller that must follow entities over
  /// many batches (a rebuild: participants and merges of the whole log) keeps refs instead of ids and spells
  /// them out at the end. A ref stays valid until Forget drops its entity.
  /// The id of the entity `ref` names (absorbed or not).
  std::string EntityIdAt(EntityKind kind, uint32_t ref) const;
  /// The ref of the live entity that holds entity `ref` now (`ref` itself while it is live).
  uint32_t SurvivorAt(EntityKind kind, uint32_t ref) const;
  /// The entity id of an identifier, or "" when unseen.
  std::string EntityOf(EntityKind kind, const std::string& type, const std::string& value) const;
  size_t identifier_count(EntityKind kind) const;
  size_t entity_count(EntityKind kind) const;  ///< live entities
  /// Approximate bytes held (for the RSS budget and metrics).
  size_t MemoryBytes() const;

  /// The complete resolved state, as the rows of the resolved and final tables (for a rebuild and tests).
  /// Participants and resolved memberships are not state: they come from the deltas.
  struct Snapshot {
    std::array<std::vector<IdentifierChange>, kKinds> identifiers;  ///< is_new = true for all
    std::array<std::vector<EntityChange>, kKinds> entities;
    std::array<std::vector<TraitWinner>, kKinds> traits;
    std::array<std::vector<FinalRow>, kKinds> finals;
    std::vector<MembershipChange> memberships;
  };
  /// `with_identifiers` false leaves Snapshot::identifiers empty: a caller that can consume them one at a time
  /// (ForEachIdentifier) need not hold them all as strings at once.
  Snapshot TakeSnapshot(bool with_identifiers = true) const;
  /// Every resolved identifier of a kind, as a row of resolved_<kind>_identifiers, in interning order.
  void ForEachIdentifier(EntityKind kind, const std::function<void(const IdentifierChange&)>& fn) const;
  /// One live entity as TakeSnapshot lists it: its row (is_new = true), its trait winners and, when asked for, its
  /// final row (else `finals.columns` is empty).
  struct EntityState {
    EntityChange entity;
    std::vector<TraitWinner> traits;
    FinalRow finals;
  };
  /// Every live entity of a kind, one at a time (the argument is reused: copy what must outlive the call), in the
  /// engine's order: a writer need not hold them all as strings at once.
  void ForEachEntity(EntityKind kind, bool with_finals, const std::function<void(const EntityState&)>& fn) const;
  /// Every membership (between live entities), as TakeSnapshot lists them.
  void ForEachMembership(const std::function<void(const MembershipChange&)>& fn) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// For tests and checks: where two engines' resolved states differ (entities with sizes and birth keys,
/// identifiers with first/last seen and source, trait winners, final values, memberships, the entities under each
/// explicit edge_id), as up to `max_lines` lines; "" when they agree. Order of interning does not matter.
std::string DiffStates(const Engine& a, const Engine& b, size_t max_lines = 10);

}  // namespace nexus::resolver
