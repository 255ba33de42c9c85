#include "storage/query_store.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {

using detail::FormatTimestamp;
using detail::PooledConnection;

/// A named statement; the name doubles as the metric label.
struct Stmt {
  std::string name;
  std::string sql;
};

/// Statement templates shared by persons and groups: "@E" becomes person/group, "@T" persons/groups,
/// "@FIELDS" the final table's display columns (prefixed "t.").
struct Templates {
  const char* name;
  const char* sql;
};

using FieldNames = std::array<const char*, 5>;
constexpr FieldNames kPersonFields = {"email", "name", "phone", "title", "timezone"};
constexpr FieldNames kGroupFields = {"domain", "company_name", "industry", "company_size", "shopify_id"};

// The id asked for if it is current, else the survivor it was merged into (aliases point at the final id).
#define NEXUS_RESOLVE_ID                                                      \
  "(SELECT x.id, x.redirected FROM ("                                         \
  " SELECT @E_id AS id, false AS redirected, 0 AS o FROM @T WHERE @E_id = $1" \
  " UNION ALL"                                                                \
  " SELECT new_id, true, 1 FROM @E_id_aliases WHERE old_id = $1) x"           \
  " ORDER BY x.o LIMIT 1)"

constexpr Templates kResolve{"query_@E_resolve_id", "SELECT r.id FROM " NEXUS_RESOLVE_ID " r"};
constexpr Templates kProfile{
    "query_@E_profile", "SELECT r.redirected, t.@E_id, " NEXUS_TS_TO_US(
                            "t._last_updated") ", @FIELDS FROM " NEXUS_RESOLVE_ID " r JOIN @T t ON t.@E_id = r.id"};
constexpr Templates kLookup{
    "query_@E_lookup",
    "SELECT @E_id FROM resolved_@E_identifiers WHERE identifier_type = $1 AND identifier_value = $2"};
constexpr Templates kIdentifiers{
    "query_@E_identifiers",
    "SELECT identifier_type, identifier_value, source, " NEXUS_TS_TO_US("occurred_at") ", " NEXUS_TS_TO_US(
        "last_seen_at") " FROM resolved_@E_identifiers WHERE @E_id = $1 ORDER BY identifier_type, identifier_value"};
constexpr Templates kTraits{
    "query_@E_traits",
    "SELECT trait_name, trait_value, source, " NEXUS_TS_TO_US("occurred_at")
    ", value_type FROM resolved_@E_traits WHERE @E_id = $1 AND value_type <> 'null' ORDER BY trait_name"};
constexpr Templates kMergedIds{"query_@E_merged_ids",
                               "SELECT old_id FROM @E_id_aliases WHERE new_id = $1 ORDER BY old_id"};
// Keyset page of a timeline: one row per event (all the entity's roles), newest first. The upper bound
// is a row comparison on the index columns, so page N is one index range scan like page 1. Events are joined
// on (event_id, occurred_at): the partition key lets each lookup touch one month of the log (migration 012), and
// the window repeated on e.occurred_at (PostgreSQL does not carry ranges across a join's equality) prunes, when
// the statement starts, every month outside [from, min(to, cursor)].
constexpr Templates kTimeline{
    "query_@E_timeline",
    "SELECT e.event_id, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_name, e.event_description, e.event_type,"
    " e.source, e.value::float8, e.value_unit, p.roles"
    " FROM (SELECT pp.event_id, pp.occurred_at,"
    "   coalesce(array_agg(pp.role ORDER BY pp.role) FILTER (WHERE pp.role <> ''), '{}'::text[]) AS roles"
    "  FROM @E_participants pp"
    "  WHERE pp.@E_id = $1"
    "   AND pp.occurred_at >= $2::timestamptz AND pp.occurred_at < $3::timestamptz"
    "   AND (pp.occurred_at, pp.event_id) < ($4::timestamptz, $5::text)"
    "   AND ($6::text = '' OR pp.event_type = $6::text) AND ($7::text = '' OR pp.source = $7::text)"
    "  GROUP BY pp.occurred_at, pp.event_id"
    "  ORDER BY pp.occurred_at DESC, pp.event_id DESC"
    "  LIMIT $8) p"
    " JOIN events e ON e.event_id = p.event_id AND e.occurred_at = p.occurred_at"
    "  AND e.occurred_at >= $2::timestamptz AND e.occurred_at < $3::timestamptz AND e.occurred_at <= $4::timestamptz"
    " ORDER BY p.occurred_at DESC, p.event_id DESC"};
// Applied edge occurrences of an entity: rows of its identifiers, not blocked, not in an open quarantine.
constexpr Templates kOccurrences{
    "query_@E_edge_occurrences",
    "SELECT pi.event_id, pi.edge_id, pi.identifier_type, pi.identifier_value, pi.source, "
    NEXUS_TS_TO_US("pi.occurred_at")
    " FROM resolved_@E_identifiers r"
    " JOIN @E_identifiers pi ON pi.identifier_type = r.identifier_type AND pi.identifier_value = r.identifier_value"
    " WHERE r.@E_id = $1 AND NOT pi.is_blocked"
    "  AND NOT EXISTS (SELECT 1 FROM quarantined_edges q WHERE q.kind = '@E' AND q.event_id = pi.event_id"
    "   AND q.edge_id = pi.edge_id AND q.released_at IS NULL)"
    " ORDER BY pi.event_id, pi.edge_id, pi.id"};
// Open quarantined edges holding identifier a or b, or whose entities (followed through aliases) are
// both entity a and entity b.
constexpr Templates kBlockedBy{
    "query_@E_blocked_by",
    "SELECT q.quarantine_id, q.event_id, q.edge_id, q.source, " NEXUS_TS_TO_US("q.occurred_at") ","
    " q.identifier_types, q.identifier_values, q.reason, q.entity_ids, " NEXUS_TS_TO_US("q.quarantined_at")
    " FROM quarantined_edges q"
    " WHERE q.kind = '@E' AND q.released_at IS NULL"
    // Array-overlap pre-filters first (GIN indexes, migration 004), then the exact conditions.
    "  AND ((q.identifier_values && ARRAY[$2, $4]::text[]"
    "        AND EXISTS (SELECT 1 FROM unnest(q.identifier_types, q.identifier_values) AS u(t, v)"
    "                    WHERE (u.t = $1 AND u.v = $2) OR (u.t = $3 AND u.v = $4)))"
    "   OR (q.entity_ids && (SELECT array_agg(i) FROM (SELECT $5::text UNION ALL SELECT $6::text UNION ALL"
    "                         SELECT old_id FROM @E_id_aliases WHERE new_id IN ($5, $6)) ids(i))"
    "       AND (SELECT count(DISTINCT coalesce(a.new_id, x.id)) FROM unnest(q.entity_ids) AS x(id)"
    "            LEFT JOIN @E_id_aliases a ON a.old_id = x.id"
    "            WHERE coalesce(a.new_id, x.id) IN ($5, $6)) = 2))"
    " ORDER BY q.quarantine_id LIMIT 100"};
constexpr Templates kCreated{
    "query_@E_created",
    "SELECT " NEXUS_TS_TO_US("created_at") ", coalesce(created_by_event_id, '') FROM @T WHERE @E_id = $1"};
constexpr Templates kSplits{
    "query_@E_splits",
    "SELECT " NEXUS_TS_TO_US("at") ", cause, rule_id, reason, by_key_id, before_ids, after_ids FROM entity_splits"
    " WHERE kind = '@E' AND (before_ids || after_ids) @> ARRAY[$1::text] ORDER BY split_id DESC LIMIT 100"};
constexpr Templates kMerges{
    "query_@E_merges",
    "SELECT old_id, merged_into_id, " NEXUS_TS_TO_US("merged_at") ", coalesce(event_id, ''),"
    " coalesce(edge_id, ''), absorbed_identifier_count"
    " FROM @E_id_aliases WHERE new_id = $1 ORDER BY merged_at DESC, old_id DESC"};

// Search: exact normalized identifiers (primary key), identifier values and the name column by fragment (trigram
// GIN indexes, migration 008; the identifier values' moved to @E_identifier_search in migration 016, which holds each
// value's entity since migration 017: a fragment is found and attributed without the resolved table). Per entity the
// best match scores; tiers keep exact > prefix > fragment. $1/$2 exact (types, values), $3 the lower-cased query, $4/$5
// LIKE-escaped fragments, ($6, $7) the keyset cursor, $8 the limit, $9 '%' (fragments) or '' (prefixes only: short
// queries, whose padded word-start trigrams the index can use, where a 2-character fragment has no trigram and would
// read the whole index).
#define NEXUS_SEARCH_SCORE(col)                                    \
  "CASE WHEN lower(" col                                           \
  ") = $3 THEN 5.0"                                                \
  " WHEN lower(" col ") LIKE $4 || '%' THEN 2.0 + similarity(" col \
  ", $3)"                                                          \
  " ELSE similarity(" col ", $3) END"
constexpr Templates kSearch{
    "query_@E_search",
    "WITH m AS ("
    " SELECT r.@E_id AS id, r.identifier_type AS t, r.identifier_value AS v, 5.0::float8 AS s"
    "  FROM unnest($1::text[], $2::text[]) AS n(t, v)"
    "  JOIN resolved_@E_identifiers r ON r.identifier_type = n.t AND r.identifier_value = n.v"
    " UNION ALL"
    " SELECT f.@E_id, f.identifier_type, f.identifier_value, " NEXUS_SEARCH_SCORE("f.identifier_value")
    "  FROM @E_identifier_search f"
    "  WHERE f.identifier_value ILIKE $9 || $4 || '%' OR f.identifier_value ILIKE $9 || $5 || '%'"
    " UNION ALL"
    " SELECT t.@E_id, 'trait:@NAME', t.@NAME, " NEXUS_SEARCH_SCORE("t.@NAME")
    "  FROM @T t WHERE t.@NAME ILIKE $9 || $4 || '%' OR t.@NAME ILIKE $9 || $5 || '%'"
    // A value can match twice (exactly after normalization and as a fragment): once, with its best score.
    "), u AS (SELECT id, t, v, max(s) AS s FROM m GROUP BY id, t, v"
    "), best AS ("
    " SELECT id, round(max(s)::numeric, 6) AS score,"
    "  (array_agg(t ORDER BY s DESC, t, v))[1:5] AS ts, (array_agg(v ORDER BY s DESC, t, v))[1:5] AS vs"
    " FROM u GROUP BY id)"
    " SELECT b.id, b.score, b.ts, b.vs, coalesce(e.@NAME, ''), coalesce(e.@MAIL, ''),"
    "  coalesce((SELECT i.identifier_value FROM resolved_@E_identifiers i WHERE i.@E_id = b.id"
    "            ORDER BY i.identifier_type, i.identifier_value LIMIT 1), '')"
    " FROM best b JOIN @T e ON e.@E_id = b.id"
    " WHERE b.score < $6::numeric OR (b.score = $6::numeric AND b.id > $7)"
    " ORDER BY b.score DESC, b.id LIMIT $8"};
#undef NEXUS_SEARCH_SCORE
constexpr Templates kEventCount{"query_@E_event_count",
                                "SELECT count(DISTINCT event_id) FROM @E_participants WHERE @E_id = $1"};

#undef NEXUS_RESOLVE_ID

// Memberships differ by side (ordering column and index), so they are written out per kind.
#define NEXUS_MEMBERSHIP_COLUMNS \
  "SELECT m.id, m.person_id, coalesce(p.name, ''), coalesce(p.email, ''), m.group_id,"             \
  " coalesce(g.company_name, ''), coalesce(g.domain, ''), coalesce(m.role, ''), m.source, "        \
  NEXUS_TS_TO_US("m.established_at") ", " NEXUS_TS_TO_US("m._last_updated")                       \
  " FROM memberships m LEFT JOIN persons p ON p.person_id = m.person_id"                           \
  " LEFT JOIN groups g ON g.group_id = m.group_id"
const Stmt kPersonMemberships{"query_person_memberships", NEXUS_MEMBERSHIP_COLUMNS
                              " WHERE m.person_id = $1 AND m.group_id > $2 ORDER BY m.group_id LIMIT $3"};
const Stmt kGroupMembers{"query_group_members", NEXUS_MEMBERSHIP_COLUMNS
                         " WHERE m.group_id = $1 AND m.person_id > $2 ORDER BY m.person_id LIMIT $3"};
// Profiles: newest first.
const Stmt kPersonRecentMemberships{"query_person_recent_memberships", NEXUS_MEMBERSHIP_COLUMNS
                                    " WHERE m.person_id = $1 ORDER BY m.established_at DESC, m.group_id LIMIT $2"};
const Stmt kGroupRecentMembers{"query_group_recent_members", NEXUS_MEMBERSHIP_COLUMNS
                               " WHERE m.group_id = $1 ORDER BY m.established_at DESC, m.person_id LIMIT $2"};
#undef NEXUS_MEMBERSHIP_COLUMNS

const Stmt kEvent{"query_event",
                  "SELECT e.event_id, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_name, e.event_description,"
                  " e.event_type, e.source, e.value::float8, e.value_unit FROM event_keys k"
                  " JOIN events e ON e.event_id = k.event_id AND e.occurred_at = k.occurred_at WHERE k.event_id = $1"};
// Participants of events, from the core log's identifier rows with a role (rows without one are implied by a
// membership, as in the engine) and the entity each non-blocked identifier resolved to. The participant tables
// have no event index (migration 003 dropped it to cut resolver write cost); person_identifiers has one.
const Stmt kEventParticipants{
    "query_event_participants",
    "SELECT 0 AS k, x.event_id, r.person_id AS id, x.role, x.identifier_type, x.identifier_value,"
    "  coalesce(nullif(p.name, ''), nullif(p.email, ''), '') AS label"
    " FROM person_identifiers x"
    " JOIN resolved_person_identifiers r ON r.identifier_type = x.identifier_type"
    "  AND r.identifier_value = x.identifier_value"
    " LEFT JOIN persons p ON p.person_id = r.person_id"
    " WHERE x.event_id = ANY($1::text[]) AND x.role IS NOT NULL AND NOT x.is_blocked"
    " UNION ALL"
    " SELECT 1, x.event_id, r.group_id, x.role, x.identifier_type, x.identifier_value,"
    "  coalesce(nullif(g.company_name, ''), nullif(g.domain, ''), '')"
    " FROM group_identifiers x"
    " JOIN resolved_group_identifiers r ON r.identifier_type = x.identifier_type"
    "  AND r.identifier_value = x.identifier_value"
    " LEFT JOIN groups g ON g.group_id = r.group_id"
    " WHERE x.event_id = ANY($1::text[]) AND x.role IS NOT NULL AND NOT x.is_blocked"
    " ORDER BY 2, 1, 3, 4, 5, 6"};
// A group's timeline with its current members' events: the newest $8 events of the group and of each member
// (each an index range scan on the timeline index that stops after $8 events), merged, each event once. Roles
// are the group's (max() picks the group branch's array: '{}' sorts below any other).
#define NEXUS_TIMELINE_FILTER                                                   \
  " AND pp.occurred_at >= $2::timestamptz AND pp.occurred_at < $3::timestamptz" \
  " AND (pp.occurred_at, pp.event_id) < ($4::timestamptz, $5::text)"            \
  " AND ($6::text = '' OR pp.event_type = $6::text) AND ($7::text = '' OR pp.source = $7::text)"
const Stmt kGroupTimelineWithMembers{
    "query_group_timeline_with_members",
    "SELECT e.event_id, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_name, e.event_description, e.event_type,"
    " e.source, e.value::float8, e.value_unit, p.roles"
    " FROM (SELECT u.event_id, u.occurred_at, max(u.roles) AS roles FROM ("
    "   SELECT g.event_id, g.occurred_at, g.roles FROM ("
    "    SELECT pp.event_id, pp.occurred_at,"
    "     coalesce(array_agg(pp.role ORDER BY pp.role) FILTER (WHERE pp.role <> ''), '{}'::text[]) AS roles"
    "    FROM group_participants pp WHERE pp.group_id = $1" NEXUS_TIMELINE_FILTER
    "    GROUP BY pp.occurred_at, pp.event_id ORDER BY pp.occurred_at DESC, pp.event_id DESC LIMIT $8) g"
    "   UNION ALL"
    "   SELECT x.event_id, x.occurred_at, '{}'::text[] FROM memberships m CROSS JOIN LATERAL ("
    "    SELECT pp.event_id, pp.occurred_at FROM person_participants pp WHERE pp.person_id = m.person_id"
    NEXUS_TIMELINE_FILTER
    "    GROUP BY pp.occurred_at, pp.event_id ORDER BY pp.occurred_at DESC, pp.event_id DESC LIMIT $8) x"
    "   WHERE m.group_id = $1) u"
    "  GROUP BY u.occurred_at, u.event_id ORDER BY u.occurred_at DESC, u.event_id DESC LIMIT $8) p"
    " JOIN events e ON e.event_id = p.event_id AND e.occurred_at = p.occurred_at"
    "  AND e.occurred_at >= $2::timestamptz AND e.occurred_at < $3::timestamptz AND e.occurred_at <= $4::timestamptz"
    " ORDER BY p.occurred_at DESC, p.event_id DESC"};
#undef NEXUS_TIMELINE_FILTER

const char* Noun(EntityKind k) { return k == EntityKind::kPerson ? "person" : "group"; }

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

Stmt Expand(const Templates& t, EntityKind k) {
  std::string fields;
  const auto& cols = k == EntityKind::kPerson ? kPersonFields : kGroupFields;
  for (const char* c : cols) {
    if (!fields.empty()) fields += ", ";
    fields += std::string("t.") + c;
  }
  Stmt s{t.name, t.sql};
  for (std::string* p : {&s.name, &s.sql}) {
    ReplaceAll(*p, "@FIELDS", fields);
    ReplaceAll(*p, "@NAME", k == EntityKind::kPerson ? "name" : "company_name");
    ReplaceAll(*p, "@MAIL", k == EntityKind::kPerson ? "email" : "domain");
    ReplaceAll(*p, "@T", k == EntityKind::kPerson ? "persons" : "groups");
    ReplaceAll(*p, "@E", Noun(k));
  }
  return s;
}

/// Every templated statement for one kind, expanded once.
struct KindStatements {
  Stmt resolve, profile, lookup, identifiers, traits, merged_ids, timeline, occurrences, blocked_by, created, merges,
      splits, search, event_count;
  explicit KindStatements(EntityKind k)
      : resolve(Expand(kResolve, k)),
        profile(Expand(kProfile, k)),
        lookup(Expand(kLookup, k)),
        identifiers(Expand(kIdentifiers, k)),
        traits(Expand(kTraits, k)),
        merged_ids(Expand(kMergedIds, k)),
        timeline(Expand(kTimeline, k)),
        occurrences(Expand(kOccurrences, k)),
        blocked_by(Expand(kBlockedBy, k)),
        created(Expand(kCreated, k)),
        merges(Expand(kMerges, k)),
        splits(Expand(kSplits, k)),
        search(Expand(kSearch, k)),
        event_count(Expand(kEventCount, k)) {}
};

const KindStatements& For(EntityKind k) {
  static const KindStatements person(EntityKind::kPerson);
  static const KindStatements group(EntityKind::kGroup);
  return k == EntityKind::kPerson ? person : group;
}

std::vector<std::string> ParseTextArray(const pqxx::field& f) {
  std::vector<std::string> out;
  if (f.is_null()) return out;
  pqxx::array_parser parser = f.as_array();
  for (;;) {
    auto [junction, value] = parser.get_next();
    if (junction == pqxx::array_parser::done) break;
    if (junction == pqxx::array_parser::string_value) out.push_back(std::move(value));
    if (junction == pqxx::array_parser::null_value) out.emplace_back();
  }
  return out;
}

/// One consistent snapshot for multi-statement reads (detail::BeginSnapshot: never half a rebuild's swap).
void Snapshot(pqxx::work& tx) { detail::BeginSnapshot(tx); }

StorageError NotFound(EntityKind k, const std::string& id) {
  // Ids are bounded by the server (128 bytes); cut them anyway so an error never carries a huge value.
  const std::string shown = id.size() > 40 ? id.substr(0, 40) + "..." : id;
  return StorageError(ErrorKind::kNotFound, std::string(Noun(k)) + " " + shown + " not found");
}

/// The current id for `id` (itself or the survivor it was merged into); throws kNotFound.
std::string ResolveId(Database::Impl& impl, pqxx::work& tx, PooledConnection& c, EntityKind k, const std::string& id) {
  const Stmt& s = For(k).resolve;
  auto r = impl.Exec(tx, c, s.name, s.sql, id);
  if (r.empty()) throw NotFound(k, id);
  return r[0][0].as<std::string>();
}

/// Loads the whole profile of `id` (redirecting through aliases); throws kNotFound.
EntityProfile LoadProfile(Database::Impl& impl, pqxx::work& tx, PooledConnection& c, EntityKind k,
                          const std::string& id) {
  const KindStatements& st = For(k);
  auto r = impl.Exec(tx, c, st.profile.name, st.profile.sql, id);
  if (r.empty()) throw NotFound(k, id);
  EntityProfile p;
  p.redirected = r[0][0].as<bool>();
  p.id = r[0][1].as<std::string>();
  if (p.redirected) p.requested_id = id;
  p.last_updated_us = r[0][2].as<int64_t>();
  const auto& cols = k == EntityKind::kPerson ? kPersonFields : kGroupFields;
  for (size_t i = 0; i < cols.size(); ++i) {
    const auto& f = r[0][static_cast<int>(3 + i)];
    if (!f.is_null()) p.fields[cols[i]] = f.as<std::string>();
  }
  for (const auto& row : impl.Exec(tx, c, st.identifiers.name, st.identifiers.sql, p.id)) {
    ResolvedValue v{row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<int64_t>()};
    v.last_seen_us = row[4].as<int64_t>();
    p.identifiers.push_back(std::move(v));
  }
  for (const auto& row : impl.Exec(tx, c, st.traits.name, st.traits.sql, p.id)) {
    p.traits.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                        row[3].as<int64_t>(), row[4].as<std::string>()});
  }
  for (const auto& row : impl.Exec(tx, c, st.merged_ids.name, st.merged_ids.sql, p.id)) {
    p.merged_ids.push_back(row[0].as<std::string>());
  }
  return p;
}

std::optional<std::string> EntityOf(Database::Impl& impl, pqxx::work& tx, PooledConnection& c, EntityKind k,
                                    const std::string& type, const std::string& value) {
  const Stmt& s = For(k).lookup;
  auto r = impl.Exec(tx, c, s.name, s.sql, type, value);
  if (r.empty()) return std::nullopt;
  return r[0][0].as<std::string>();
}

}  // namespace

EntityProfile QueryStore::GetEntity(EntityKind kind, const std::string& id) {
  EntityProfile out;
  db_.impl().Run(For(kind).profile.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = LoadProfile(db_.impl(), tx, c, kind, id);
  });
  return out;
}

EntityProfile QueryStore::LookupEntity(EntityKind kind, const std::string& type, const std::string& value) {
  EntityProfile out;
  db_.impl().Run(For(kind).lookup.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    auto id = EntityOf(db_.impl(), tx, c, kind, type, value);
    if (!id) {
      throw StorageError(ErrorKind::kNotFound,
                         std::string("no ") + Noun(kind) + " has this " + type + " identifier");  // value not echoed
    }
    out = LoadProfile(db_.impl(), tx, c, kind, *id);
    out.redirected = false;
    out.requested_id.clear();
  });
  return out;
}

MembershipPage QueryStore::ListMemberships(EntityKind kind, const std::string& id, const std::string& after,
                                           int limit) {
  MembershipPage out;
  const Stmt& s = kind == EntityKind::kPerson ? kPersonMemberships : kGroupMembers;
  db_.impl().Run(s.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = MembershipPage{};
    out.resolved_id = ResolveId(db_.impl(), tx, c, kind, id);
    auto r = db_.impl().Exec(tx, c, s.name, s.sql, out.resolved_id, after, limit + 1);
    for (const auto& row : r) {
      if (static_cast<int>(out.items.size()) == limit) {
        const auto& last = out.items.back();
        out.next_after = kind == EntityKind::kPerson ? last.group_id : last.person_id;
        break;
      }
      MembershipInfo m;
      m.membership_id = row[0].as<std::string>();
      m.person_id = row[1].as<std::string>();
      m.person_name = row[2].as<std::string>();
      m.person_email = row[3].as<std::string>();
      m.group_id = row[4].as<std::string>();
      m.group_name = row[5].as<std::string>();
      m.group_domain = row[6].as<std::string>();
      m.role = row[7].as<std::string>();
      m.source = row[8].as<std::string>();
      m.established_at_us = row[9].as<int64_t>();
      m.last_updated_us = row[10].as<int64_t>();
      out.items.push_back(std::move(m));
    }
  });
  return out;
}

TimelinePage QueryStore::ListTimeline(EntityKind kind, const std::string& id, const TimelineQuery& q) {
  TimelinePage out;
  const Stmt& s = For(kind).timeline;
  const std::string lower = q.occurred_after_us ? FormatTimestamp(*q.occurred_after_us) : "-infinity";
  const std::string upper = q.occurred_before_us ? FormatTimestamp(*q.occurred_before_us) : "infinity";
  // Without a cursor: ('infinity', '') is above every finite key.
  const std::string key_ts = q.after_key ? FormatTimestamp(q.after_key->first) : "infinity";
  const std::string key_id = q.after_key ? q.after_key->second : "";
  db_.impl().Run(s.name, [&](pqxx::work& tx, PooledConnection& c) {
    out = TimelinePage{};
    out.resolved_id = ResolveId(db_.impl(), tx, c, kind, id);
    auto r = db_.impl().Exec(tx, c, s.name, s.sql, out.resolved_id, lower, upper, key_ts, key_id, q.event_type,
                             q.source, q.limit + 1);
    for (const auto& row : r) {
      if (static_cast<int>(out.items.size()) == q.limit) {
        out.more = true;
        break;
      }
      TimelineItem it;
      it.event_id = row[0].as<std::string>();
      it.occurred_at_us = row[1].as<int64_t>();
      it.event_name = row[2].as<std::string>();
      if (!row[3].is_null()) it.event_description = row[3].as<std::string>();
      it.event_type = row[4].as<std::string>();
      it.source = row[5].as<std::string>();
      if (!row[6].is_null()) it.value = row[6].as<double>();
      if (!row[7].is_null()) it.value_unit = row[7].as<std::string>();
      it.roles = ParseTextArray(row[8]);
      out.items.push_back(std::move(it));
    }
  });
  return out;
}

ExplainData QueryStore::LoadExplain(EntityKind kind, const resolver::IdKey& a, const resolver::IdKey& b) {
  ExplainData out;
  const KindStatements& st = For(kind);
  db_.impl().Run(st.occurrences.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = ExplainData{};
    out.entity_a = EntityOf(db_.impl(), tx, c, kind, a.type, a.value);
    out.entity_b = EntityOf(db_.impl(), tx, c, kind, b.type, b.value);
    if (!out.entity_a || !out.entity_b) return;
    if (*out.entity_a == *out.entity_b) {
      auto r = db_.impl().Exec(tx, c, st.occurrences.name, st.occurrences.sql, *out.entity_a);
      for (const auto& row : r) {
        const std::string event_id = row[0].as<std::string>();
        const std::string edge_id = row[1].as<std::string>();
        if (out.occurrences.empty() || out.occurrences.back().event_id != event_id ||
            out.occurrences.back().edge_id != edge_id) {
          out.occurrences.push_back({event_id, edge_id, {}});
          out.meta.push_back({row[4].as<std::string>(), row[5].as<int64_t>()});
        }
        resolver::IdKey key{row[2].as<std::string>(), row[3].as<std::string>()};
        auto& ids = out.occurrences.back().identifiers;
        if (std::find(ids.begin(), ids.end(), key) == ids.end()) ids.push_back(std::move(key));
      }
      return;
    }
    auto r = db_.impl().Exec(tx, c, st.blocked_by.name, st.blocked_by.sql, a.type, a.value, b.type, b.value,
                             *out.entity_a, *out.entity_b);
    for (const auto& row : r) {
      QuarantineRow q;
      q.quarantine_id = row[0].as<int64_t>();
      q.event_id = row[1].as<std::string>();
      q.edge_id = row[2].as<std::string>();
      q.source = row[3].as<std::string>();
      q.occurred_at_us = row[4].as<int64_t>();
      const auto types = ParseTextArray(row[5]);
      const auto values = ParseTextArray(row[6]);
      for (size_t i = 0; i < types.size() && i < values.size(); ++i) q.identifiers.push_back({types[i], values[i]});
      q.reason = row[7].as<std::string>();
      q.entity_ids = ParseTextArray(row[8]);
      q.quarantined_at_us = row[9].as<int64_t>();
      out.blocked_by.push_back(std::move(q));
    }
  });
  return out;
}

EntityHistoryInfo QueryStore::GetHistory(EntityKind kind, const std::string& id) {
  EntityHistoryInfo out;
  const KindStatements& st = For(kind);
  db_.impl().Run(st.merges.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = EntityHistoryInfo{};
    out.entity_id = ResolveId(db_.impl(), tx, c, kind, id);
    auto created = db_.impl().Exec(tx, c, st.created.name, st.created.sql, out.entity_id);
    if (created.empty()) throw NotFound(kind, id);
    out.created_at_us = created[0][0].as<int64_t>();
    out.created_by_event_id = created[0][1].as<std::string>();
    for (const auto& row : db_.impl().Exec(tx, c, st.merges.name, st.merges.sql, out.entity_id)) {
      out.merges.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>(),
                            row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<int64_t>()});
    }
    for (const auto& row : db_.impl().Exec(tx, c, st.splits.name, st.splits.sql, out.entity_id)) {
      out.splits.push_back({row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<int64_t>(),
                            row[3].as<std::string>(), row[4].as<std::string>(), ParseTextArray(row[5]),
                            ParseTextArray(row[6])});
    }
  });
  return out;
}

namespace {

TimelineItem ReadTimelineItem(const pqxx::row& row, bool with_roles) {
  TimelineItem it;
  it.event_id = row[0].as<std::string>();
  it.occurred_at_us = row[1].as<int64_t>();
  it.event_name = row[2].as<std::string>();
  if (!row[3].is_null()) it.event_description = row[3].as<std::string>();
  it.event_type = row[4].as<std::string>();
  it.source = row[5].as<std::string>();
  if (!row[6].is_null()) it.value = row[6].as<double>();
  if (!row[7].is_null()) it.value_unit = row[7].as<std::string>();
  if (with_roles) it.roles = ParseTextArray(row[8]);
  return it;
}

MembershipInfo ReadMembership(const pqxx::row& row) {
  MembershipInfo m;
  m.membership_id = row[0].as<std::string>();
  m.person_id = row[1].as<std::string>();
  m.person_name = row[2].as<std::string>();
  m.person_email = row[3].as<std::string>();
  m.group_id = row[4].as<std::string>();
  m.group_name = row[5].as<std::string>();
  m.group_domain = row[6].as<std::string>();
  m.role = row[7].as<std::string>();
  m.source = row[8].as<std::string>();
  m.established_at_us = row[9].as<int64_t>();
  m.last_updated_us = row[10].as<int64_t>();
  return m;
}

/// Rows of kEventParticipants grouped into one participant per (event, kind, entity, role), in row order.
std::map<std::string, std::vector<ParticipantInfo>> GroupParticipants(const pqxx::result& r, EntityKind exclude_kind,
                                                                      const std::string& exclude_id) {
  std::map<std::string, std::vector<ParticipantInfo>> out;
  for (const auto& row : r) {
    const EntityKind kind = row[0].as<int>() == 0 ? EntityKind::kPerson : EntityKind::kGroup;
    const std::string event_id = row[1].as<std::string>();
    const std::string entity_id = row[2].as<std::string>();
    if (kind == exclude_kind && entity_id == exclude_id) continue;
    const std::string role = row[3].as<std::string>();
    auto& list = out[event_id];
    if (list.empty() || list.back().kind != kind || list.back().entity_id != entity_id || list.back().role != role) {
      ParticipantInfo p;
      p.kind = kind;
      p.entity_id = entity_id;
      p.role = role;
      p.display_name = row[6].as<std::string>();
      list.push_back(std::move(p));
    }
    std::pair<std::string, std::string> id{row[4].as<std::string>(), row[5].as<std::string>()};
    auto& ids = list.back().identifiers;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(std::move(id));
  }
  for (auto& [event, list] : out) {
    for (auto& p : list) {
      if (p.display_name.empty() && !p.identifiers.empty()) p.display_name = p.identifiers.front().second;
    }
  }
  return out;
}

/// A score in millionths as the numeric literal PostgreSQL compares with (scores are rounded to 6 places).
std::string ScoreText(int64_t micros) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%lld.%06lld", micros < 0 ? "-" : "",
                static_cast<long long>(std::llabs(micros) / 1000000),
                static_cast<long long>(std::llabs(micros) % 1000000));
  return buf;
}

}  // namespace

SearchPage QueryStore::Search(EntityKind kind, const SearchQuery& q) {
  SearchPage out;
  const Stmt& s = For(kind).search;
  std::vector<std::string> types, values;
  for (const auto& k : q.exact) {
    types.push_back(k.type);
    values.push_back(k.value);
  }
  const std::string score = q.after ? ScoreText(q.after->first) : "Infinity";
  const std::string after_id = q.after ? q.after->second : "";
  db_.impl().Run(s.name, [&](pqxx::work& tx, PooledConnection& c) {
    out = SearchPage{};
    // The fragments are parameters: a generic plan cannot know they are selective and may scan the tables.
    tx.exec("SET LOCAL plan_cache_mode = force_custom_plan");
    auto r =
        db_.impl().Exec(tx, c, s.name, s.sql, detail::TextArray(types), detail::TextArray(values), q.text, q.pattern,
                        q.alt_pattern, score, after_id, q.limit + 1, std::string(q.prefix_only ? "" : "%"));
    for (const auto& row : r) {
      if (static_cast<int>(out.items.size()) == q.limit) {
        out.more = true;
        break;
      }
      SearchHitInfo h;
      h.entity_id = row[0].as<std::string>();
      h.score_micros = std::llround(row[1].as<double>() * 1e6);
      const auto ts = ParseTextArray(row[2]);
      const auto vs = ParseTextArray(row[3]);
      for (size_t i = 0; i < ts.size() && i < vs.size(); ++i) h.matched.emplace_back(ts[i], vs[i]);
      h.display_name = row[4].as<std::string>();
      h.email = row[5].as<std::string>();
      if (h.display_name.empty()) h.display_name = h.email.empty() ? row[6].as<std::string>() : h.email;
      out.items.push_back(std::move(h));
    }
  });
  return out;
}

EntityProfileView QueryStore::GetProfile(EntityKind kind, const std::string& id, int membership_limit) {
  EntityProfileView out;
  const KindStatements& st = For(kind);
  const Stmt& ms = kind == EntityKind::kPerson ? kPersonRecentMemberships : kGroupRecentMembers;
  db_.impl().Run(st.profile.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = EntityProfileView{};
    out.entity = LoadProfile(db_.impl(), tx, c, kind, id);
    for (const auto& row : db_.impl().Exec(tx, c, ms.name, ms.sql, out.entity.id, membership_limit + 1)) {
      if (static_cast<int>(out.memberships.size()) == membership_limit) {
        out.memberships_truncated = true;
        break;
      }
      out.memberships.push_back(ReadMembership(row));
    }
    auto n = db_.impl().Exec(tx, c, st.event_count.name, st.event_count.sql, out.entity.id);
    out.event_count = n[0][0].as<int64_t>();
  });
  return out;
}

EventInfo QueryStore::GetEvent(const std::string& event_id) {
  EventInfo out;
  db_.impl().Run(kEvent.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = EventInfo{};
    auto r = db_.impl().Exec(tx, c, kEvent.name, kEvent.sql, event_id);
    if (r.empty()) {
      const std::string shown = event_id.size() > 40 ? event_id.substr(0, 40) + "..." : event_id;
      throw StorageError(ErrorKind::kNotFound, "event " + shown + " not found");
    }
    out.event = ReadTimelineItem(r[0], false);
    auto p = db_.impl().Exec(tx, c, kEventParticipants.name, kEventParticipants.sql,
                             detail::TextArray(std::vector<std::string>{event_id}));
    auto grouped = GroupParticipants(p, EntityKind::kPerson, "");
    out.participants = std::move(grouped[event_id]);
  });
  return out;
}

std::map<std::string, std::vector<ParticipantInfo>> QueryStore::EventParticipants(
    const std::vector<std::string>& event_ids, EntityKind exclude_kind, const std::string& exclude_id) {
  std::map<std::string, std::vector<ParticipantInfo>> out;
  if (event_ids.empty()) return out;
  db_.impl().Run(kEventParticipants.name, [&](pqxx::work& tx, PooledConnection& c) {
    auto r = db_.impl().Exec(tx, c, kEventParticipants.name, kEventParticipants.sql, detail::TextArray(event_ids));
    out = GroupParticipants(r, exclude_kind, exclude_id);
  });
  return out;
}

TimelinePage QueryStore::ListGroupTimelineWithMembers(const std::string& id, const TimelineQuery& q) {
  TimelinePage out;
  const Stmt& s = kGroupTimelineWithMembers;
  const std::string lower = q.occurred_after_us ? FormatTimestamp(*q.occurred_after_us) : "-infinity";
  const std::string upper = q.occurred_before_us ? FormatTimestamp(*q.occurred_before_us) : "infinity";
  const std::string key_ts = q.after_key ? FormatTimestamp(q.after_key->first) : "infinity";
  const std::string key_id = q.after_key ? q.after_key->second : "";
  db_.impl().Run(s.name, [&](pqxx::work& tx, PooledConnection& c) {
    Snapshot(tx);
    out = TimelinePage{};
    out.resolved_id = ResolveId(db_.impl(), tx, c, EntityKind::kGroup, id);
    auto r = db_.impl().Exec(tx, c, s.name, s.sql, out.resolved_id, lower, upper, key_ts, key_id, q.event_type,
                             q.source, q.limit + 1);
    for (const auto& row : r) {
      if (static_cast<int>(out.items.size()) == q.limit) {
        out.more = true;
        break;
      }
      out.items.push_back(ReadTimelineItem(row, true));
    }
  });
  return out;
}

}  // namespace nexus::storage
