#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "resolver/explain.h"
#include "resolver/id_key.h"

namespace nexus::storage {

class Database;

/// Which identity graph a query reads: persons or groups (separate tables, same shape).
enum class EntityKind { kPerson, kGroup };

/// A resolved identifier or trait with its provenance.
struct ResolvedValue {
  std::string key;  ///< identifier type or trait name
  std::string value;
  std::string source;
  int64_t occurred_at_us = 0;
  /// Traits: the JSON type of `value` ("string", "number" or "boolean"; cleared traits are not listed).
  std::string value_type = "string";
  /// Identifiers: the latest occurrence (occurred_at_us is the earliest).
  int64_t last_seen_us = 0;
};

/// A person or group as the final tables hold it.
struct EntityProfile {
  std::string id;                             ///< the surviving id
  std::string requested_id;                   ///< set when `redirected`
  bool redirected = false;                    ///< the requested id was merged away into `id`
  std::map<std::string, std::string> fields;  ///< final-table columns by name; NULL columns are absent
  std::vector<ResolvedValue> identifiers;     ///< ordered by (type, value)
  std::vector<ResolvedValue> traits;          ///< ordered by name
  std::vector<std::string> merged_ids;        ///< every alias pointing here, ordered
  int64_t last_updated_us = 0;
};

/// One membership with enough of both sides to show a list.
struct MembershipInfo {
  std::string membership_id;
  std::string person_id;
  std::string person_name;
  std::string person_email;
  std::string group_id;
  std::string group_name;
  std::string group_domain;
  std::string role;
  std::string source;
  int64_t established_at_us = 0;
  int64_t last_updated_us = 0;
};

/// A page of memberships; `next_after` is the other side's id to continue after (empty: last page).
struct MembershipPage {
  std::string resolved_id;
  std::vector<MembershipInfo> items;
  std::string next_after;
};

/// Timeline filter; bounds are microseconds since the epoch, [after, before).
struct TimelineQuery {
  std::optional<int64_t> occurred_after_us;
  std::optional<int64_t> occurred_before_us;
  std::string event_type;  ///< empty: any
  std::string source;      ///< empty: any
  /// Keyset cursor: continue strictly after (older than) this (occurred_at, event_id).
  std::optional<std::pair<int64_t, std::string>> after_key;
  int limit = 50;
};

/// One event on an entity's timeline with every role the entity had in it.
struct TimelineItem {
  std::string event_id;
  int64_t occurred_at_us = 0;
  std::string event_name;
  std::optional<std::string> event_description;
  std::string event_type;
  std::string source;
  std::optional<double> value;
  std::optional<std::string> value_unit;
  std::vector<std::string> roles;
};

struct TimelinePage {
  std::string resolved_id;
  std::vector<TimelineItem> items;
  bool more = false;  ///< another page exists; continue after the last item's key
};

/// Provenance of one edge occurrence (parallel to ExplainData::occurrences).
struct OccurrenceMeta {
  std::string source;
  int64_t occurred_at_us = 0;
};

/// An open quarantined edge (not released).
struct QuarantineRow {
  int64_t quarantine_id = 0;
  std::string event_id;
  std::string edge_id;
  std::string source;
  int64_t occurred_at_us = 0;
  std::vector<resolver::IdKey> identifiers;
  std::string reason;
  std::vector<std::string> entity_ids;
  int64_t quarantined_at_us = 0;
};

/// What "explain" needs, read in one snapshot.
struct ExplainData {
  std::optional<std::string> entity_a;  ///< nullopt: identifier a is not resolved
  std::optional<std::string> entity_b;
  /// When both resolve to one entity: its applied edge occurrences (no blocked rows, no open quarantine).
  std::vector<resolver::EdgeOccurrence> occurrences;
  std::vector<OccurrenceMeta> meta;
  /// When they resolve to different entities: open quarantined edges touching a, b, or both entities.
  std::vector<QuarantineRow> blocked_by;
};

/// One absorbed id.
struct MergeInfo {
  std::string absorbed_id;
  std::string merged_into_id;  ///< the id it was merged into at the time
  int64_t merged_at_us = 0;
  std::string event_id;
  std::string edge_id;
  int64_t absorbed_identifier_count = 0;
};

/// A link-rule change that split an entity or merged parts again (entity_splits, issue 15).
struct SplitInfo {
  int64_t at_us = 0;
  std::string cause;
  int64_t rule_id = 0;
  std::string reason;
  std::string by_key_id;
  std::vector<std::string> before_ids, after_ids;
};

struct EntityHistoryInfo {
  std::string entity_id;
  int64_t created_at_us = 0;
  std::string created_by_event_id;
  std::vector<MergeInfo> merges;  ///< newest first
  std::vector<SplitInfo> splits;  ///< newest first
};

/// Search input; `pattern` and `alt_pattern` are already LIKE-escaped fragments (lower case).
struct SearchQuery {
  std::string text;                    ///< trimmed, lower-cased query (exact and prefix comparisons)
  std::string pattern;                 ///< LIKE-escaped `text`
  std::string alt_pattern;             ///< a second fragment (a phone query's digits); may equal `pattern`
  std::vector<resolver::IdKey> exact;  ///< normalized identifier candidates matched exactly
  std::optional<std::pair<int64_t, std::string>> after;  ///< keyset cursor (score in millionths, entity_id)
  bool prefix_only = false;  ///< match values that start with the query, not fragments inside them
  int limit = 20;
};

struct SearchHitInfo {
  std::string entity_id;
  std::string display_name;
  std::string email;                                         ///< persons: email; groups: domain
  std::vector<std::pair<std::string, std::string>> matched;  ///< (type or "trait:<name>", value), best first
  int64_t score_micros = 0;                                  ///< score in millionths (scores are rounded to 6 places)
};

struct SearchPage {
  std::vector<SearchHitInfo> items;
  bool more = false;
};

struct EntityProfileView {
  EntityProfile entity;
  std::vector<MembershipInfo> memberships;  ///< newest first
  bool memberships_truncated = false;
  int64_t event_count = 0;
};

/// One entity's part in an event.
struct ParticipantInfo {
  EntityKind kind = EntityKind::kPerson;
  std::string entity_id;
  std::string display_name;
  std::string role;
  std::vector<std::pair<std::string, std::string>> identifiers;  ///< what the event carried for it
};

struct EventInfo {
  TimelineItem event;  ///< roles unused
  std::vector<ParticipantInfo> participants;
};

/// Reads resolved persons, groups, memberships, timelines, link explanations and merge history.
/// Read-only; every statement is served by an index (lists are keyset-paginated, never OFFSET).
/// Multi-statement reads run in one REPEATABLE READ snapshot. Unknown ids throw StorageError(kNotFound);
/// a merged-away id resolves to its survivor.
class QueryStore final {
 public:
  explicit QueryStore(Database& db) : db_(db) {}

  EntityProfile GetEntity(EntityKind kind, const std::string& id);
  /// `value` must already be normalized (resolver::NormalizeIdentifier).
  EntityProfile LookupEntity(EntityKind kind, const std::string& type, const std::string& value);
  /// Memberships of a person (ordered by group_id) or members of a group (ordered by person_id),
  /// continuing after `after` (the other side's id; empty: first page).
  MembershipPage ListMemberships(EntityKind kind, const std::string& id, const std::string& after, int limit);
  /// Newest first by (occurred_at, event_id); returns at most q.limit items.
  TimelinePage ListTimeline(EntityKind kind, const std::string& id, const TimelineQuery& q);
  /// Identifiers must already be normalized.
  ExplainData LoadExplain(EntityKind kind, const resolver::IdKey& a, const resolver::IdKey& b);
  EntityHistoryInfo GetHistory(EntityKind kind, const std::string& id);

  /// Ranked search over resolved identifier values and the final tables' name column (persons.name,
  /// groups.company_name). Scores: exact match [4, 5], prefix [2, 3], fragment [0, 1] (tier + pg_trgm
  /// similarity); ties by entity_id. Fragments use ILIKE over trigram indexes; with `prefix_only` (the server
  /// sets it for 2-character queries, which have no trigram of their own) values must start with the query.
  SearchPage Search(EntityKind kind, const SearchQuery& q);
  /// Profile with memberships (newest first, at most `membership_limit`) and the number of events.
  EntityProfileView GetProfile(EntityKind kind, const std::string& id, int membership_limit);
  /// One event with its participants; throws kNotFound.
  EventInfo GetEvent(const std::string& event_id);
  /// Participants of each event (person and group), by event id; `exclude_*` leaves one entity out.
  std::map<std::string, std::vector<ParticipantInfo>> EventParticipants(const std::vector<std::string>& event_ids,
                                                                        EntityKind exclude_kind,
                                                                        const std::string& exclude_id);
  /// A group's timeline including the events of its current members, each event once, newest first; roles are
  /// the group's own (empty when only members took part).
  TimelinePage ListGroupTimelineWithMembers(const std::string& id, const TimelineQuery& q);

 private:
  Database& db_;
};

}  // namespace nexus::storage
