#include "storage/resolver_store.h"

#include <malloc.h>  // malloc_trim

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/hash.h"
#include "common/log.h"
#include "resolver/engine.h"
#include "storage/detail/pg.h"
#include "storage/detail/prefetch.h"

// The resolver's database side. Every resolution rule lives in resolver::Engine; this file reads core-log rows
// into the engine's input, writes the engine's deltas, loads the resident graph and runs the rebuild.

namespace nexus::storage {
namespace {

using resolver::EntityKind;
using resolver::Idx;

// Session advisory lock held by the one active resolver across replicas.
constexpr long long kResolverLockKey = 0x6e65787573726573LL;
// Rows fetched per round trip when streaming a table through a cursor.
constexpr int kFetchRows = 50000;

// The horizon of a batch or a rebuild: every event stamped below it is committed or rolled back in the statement's
// snapshot, so a transaction that commits late is never skipped. It is the oldest transaction open in that
// snapshot, skipping those pg_stat_activity shows running in another database (they cannot write this database's
// events), else the snapshot's xmax. With pg_snapshot_xmin alone, one idle transaction of another application
// sharing the cluster froze resolution (docs/OPERATIONS.md), and another test database's transaction held the
// database tests' batches back. A transaction not found there (it ended after the snapshot, or it is prepared)
// still counts: the horizon errs only low. An xid is unique and a backend never changes database, so a stale row of
// pg_stat_activity cannot make it err high. pg_stat_activity gives 32-bit xids: the snapshot's are cut to match.
#define NEXUS_RESOLVER_HORIZON                                                                                       \
  "(SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot())) FROM pg_snapshot_xip(pg_current_snapshot()) x " \
  "WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "                                                              \
  "WHERE a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()) "                               \
  "AND a.backend_xid = (x::text::bigint % 4294967296)::text::xid))"

/// Table and column names of one entity kind, substituted into SQL templates.
struct Kind {
  EntityKind kind;
  std::string name;      // person | group
  std::string id;        // person_id | group_id
  std::string entities;  // persons | groups

  /// Replaces {k} {id} {E} in a template.
  std::string Sql(std::string t) const {
    for (const auto& [key, value] :
         {std::pair<std::string, const std::string*>{"{k}", &name}, {"{id}", &id}, {"{E}", &entities}}) {
      for (size_t p = t.find(key); p != std::string::npos; p = t.find(key, p + value->size())) {
        t.replace(p, key.size(), *value);
      }
    }
    return t;
  }
  std::string Stmt(const char* what) const { return "resolver." + name + "." + what; }
};

const Kind kPerson{EntityKind::kPerson, "person", "person_id", "persons"};
const Kind kGroup{EntityKind::kGroup, "group", "group_id", "groups"};

// ---------------------------------------------------------------------------------------------------------
// Statements. Each is named once; the name is the metric label of nexus_db_query_duration_seconds.
// ---------------------------------------------------------------------------------------------------------
constexpr const char* kStateSql =
    "SELECT watermark_xid::text, watermark_event_id, birth_keys_pending, id_salt FROM resolver_state";
// What a graph load should expect, per kind: entities (the state's exact counts) and identifiers (the planner's
// estimate; -1 before the table was first analyzed), so that the engine reserves its tables once.
constexpr const char* kLoadSizesSql =
    "SELECT persons_count, groups_count, "
    "(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'resolved_person_identifiers'::regclass), "
    "(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'resolved_group_identifiers'::regclass) "
    "FROM resolver_state";
// Events past the watermark and below the horizon, in ingest order.
constexpr const char* kSelectBatchSql =
    "SELECT e.event_id, e._ingest_xid::text, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_type, e.source, "
    NEXUS_TS_TO_US("e._ingested_at") ", e.occurred_at::text FROM events e "
    "WHERE e._ingest_xid >= $1::xid8 AND (e._ingest_xid, e.event_id) > ($1::xid8, $2::text) "
    "  AND e._ingest_xid < " NEXUS_RESOLVER_HORIZON " "
    "ORDER BY e._ingest_xid, e.event_id LIMIT $3";
// Rows of the batch's events, joined on (event_id, occurred_at) so that each event is looked up in its month's
// partition only. A join with unnest, never `= ANY($1)`: under a generic plan a large parameter array becomes a
// linear filter evaluated per row (measured: 6.5 s for one 10,000-event batch).
constexpr const char* kBatchIdentifiersSql =
    "SELECT x.event_id, x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked "
    "FROM unnest($1::text[], $2::timestamptz[]) AS b(event_id, occurred_at) JOIN {k}_identifiers x "
    "ON x.event_id = b.event_id AND x.occurred_at = b.occurred_at ORDER BY x.id";
constexpr const char* kBatchTraitsSql =
    "SELECT x.event_id, x.id, x.edge_id, x.trait_name, x.value_type = 'null' "
    "FROM unnest($1::text[], $2::timestamptz[]) AS b(event_id, occurred_at) JOIN {k}_traits x "
    "ON x.event_id = b.event_id AND x.occurred_at = b.occurred_at ORDER BY x.id";
constexpr const char* kBatchMembershipsSql =
    "SELECT x.event_id, x.id, x.person_identifier_type, x.person_identifier, x.group_identifier_type, "
    "x.group_identifier FROM unnest($1::text[], $2::timestamptz[]) AS b(event_id, occurred_at) "
    "JOIN membership_identifiers x ON x.event_id = b.event_id AND x.occurred_at = b.occurred_at ORDER BY x.id";
// The batch reads run with index probes only (kProbePlansSql, then kDefaultPlansSql). The month being written
// fills from empty within minutes; with its statistics behind it and the cached pages costed as random reads,
// the planner sorted or hashed the whole month (and every other month) for a batch of a few thousand events:
// 1.9 s per read and growing with the month in a steady-ingest run, where one index probe per event in its own
// partition is what the read costs. The delta's writes run the same way (WriteDelta): each is keyed by the
// batch's arrays (thousands of ids) on an indexed column, but with ~9,000 absorbed entities in a 10,000-event
// batch at 1.1M identifiers the planner hashed whole tables instead (2026-12-04: repoint_identifiers built a
// 1.08M-row hash for 14k rows, drop_duplicate_participants hashed and spilled 1.34M participants and scanned
// them again for its EXISTS, 3.7 s) and paid 0.3 s of JIT compilation on top: JIT is off for the same reason.
// Planner settings are per transaction (SET LOCAL): nothing leaks into the pooled session.
constexpr const char* kProbePlansSql =
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
    "SET LOCAL jit = off";
constexpr const char* kDefaultPlansSql =
    "SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_hashjoin TO DEFAULT; "
    "SET LOCAL enable_mergejoin TO DEFAULT; SET LOCAL jit TO DEFAULT";
constexpr const char* kAdvanceSql =
    "UPDATE resolver_state SET watermark_xid = $1::xid8, watermark_event_id = $2, "
    "watermark_ingested_at = " NEXUS_US_TO_TS("$3::bigint") ", "
    "batches_total = batches_total + 1, last_batch_at = now(), "
    "persons_count = persons_count + $4, groups_count = groups_count + $5";

// Merges: rows of absorbed entities move to the survivor. $1 absorbed ids, $2 survivor ids.
constexpr const char* kMergeMap = "WITH m AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(absorbed, survivor)) ";
// The search table holds each identifier's entity too (migration 017): moved in the same statement, by primary key
// (a HOT update there: the id is not indexed).
constexpr const char* kRepointIdentifiersSql =
    ", r AS (UPDATE resolved_{k}_identifiers r SET {id} = m.survivor FROM m WHERE r.{id} = m.absorbed "
    "  RETURNING r.identifier_type, r.identifier_value, r.{id}) "
    "UPDATE {k}_identifier_search s SET {id} = r.{id} FROM r "
    "WHERE s.identifier_type = r.identifier_type AND s.identifier_value = r.identifier_value";
constexpr const char* kDropAbsorbedTraitsSql =
    "DELETE FROM resolved_{k}_traits t USING unnest($1::text[]) AS a(id) WHERE t.{id} = a.id";
// Participant rows of absorbed entities move to the survivor, in one statement that reads them once (two statements
// read them twice; one is no faster, measured 2026-12-05: the row writes are the cost). A row whose (event, role)
// the survivor already has, or that an absorbed sibling with a smaller key also moves to the survivor, is a
// duplicate: deleted; the rest are repointed. Each candidate costs one probe of the timeline index (entity,
// occurred_at, event_id) for its EXISTS (occurred_at is the event's, the same in every participant row of that
// event), and its delete or update one probe of the primary key. Both parts see the rows as they were before the
// statement, and touch disjoint rows.
constexpr const char* kMoveParticipantsSql =
    ", c AS (SELECT p.{k}_participant_id AS pid, m.survivor AS t, (row_number() OVER ("
    "   PARTITION BY m.survivor, p.event_id, p.role ORDER BY p.{k}_participant_id) > 1 OR EXISTS ("
    "   SELECT 1 FROM {k}_participants s WHERE s.{id} = m.survivor AND s.occurred_at = p.occurred_at"
    "   AND s.event_id = p.event_id AND s.role = p.role)) AS dup "
    "   FROM {k}_participants p JOIN m ON p.{id} = m.absorbed), "
    "d AS (DELETE FROM {k}_participants x USING c WHERE c.dup AND x.{k}_participant_id = c.pid) "
    "UPDATE {k}_participants p SET {id} = c.t FROM c WHERE NOT c.dup AND p.{k}_participant_id = c.pid";
constexpr const char* kRepointResolvedMembershipsSql =
    "UPDATE resolved_membership_identifiers r SET {id} = m.survivor FROM m WHERE r.{id} = m.absorbed";
constexpr const char* kDropAbsorbedMembershipsSql =
    "DELETE FROM memberships x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id";
constexpr const char* kRepointAliasesSql =
    "UPDATE {k}_id_aliases al SET new_id = m.survivor FROM m WHERE al.new_id = m.absorbed";
constexpr const char* kDropAbsorbedSql = "DELETE FROM {E} x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id";

constexpr const char* kUpdateIdentifiersSql =
    "UPDATE resolved_{k}_identifiers r SET source = u.s, occurred_at = u.f, last_seen_at = u.l "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS u(t, v, s, f, l) "
    "WHERE r.identifier_type = u.t AND r.identifier_value = u.v";
// Trait winners: the engine picked the row; its value (and value type: a null winner is a cleared trait) comes
// from the core log by row id, from the month partition ({table}) its occurred_at names, as the batch reads.
constexpr const char* kUpsertTraitsSql =
    "INSERT INTO resolved_{k}_traits AS t ({id}, trait_name, trait_value, value_type, source, occurred_at, "
    "_ingested_at, trait_row_id) SELECT u.i, x.trait_name, x.trait_value, x.value_type, x.source, x.occurred_at, "
    "x._ingested_at, x.id FROM unnest($1::text[], $2::bigint[]) AS u(i, r) JOIN {table} x ON x.id = u.r "
    "ON CONFLICT ({id}, trait_name) DO UPDATE SET trait_value = EXCLUDED.trait_value, "
    "value_type = EXCLUDED.value_type, source = EXCLUDED.source, occurred_at = EXCLUDED.occurred_at, "
    "_ingested_at = EXCLUDED._ingested_at, trait_row_id = EXCLUDED.trait_row_id";
constexpr const char* kInsertQuarantineSql =
    "INSERT INTO quarantined_edges (kind, event_id, edge_id, source, occurred_at, identifier_types, "
    "identifier_values, reason, entity_ids) SELECT $1, u.e, u.d, u.s, u.o, "
    "string_to_array(u.t, chr(31)), string_to_array(u.v, chr(31)), u.r, string_to_array(u.n, chr(31)) "
    "FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], "
    "$9::timestamptz[]) AS u(e, d, t, v, r, n, s, o) ON CONFLICT (kind, event_id, edge_id) DO NOTHING";
constexpr const char* kUpsertMembershipsSql =
    "INSERT INTO memberships AS ms (id, person_id, group_id, role, source, established_at, role_occurred_at, "
    "role_ingested_at, role_row_id) SELECT 'mem_' || md5(u.p || chr(31) || u.g), u.p, u.g, x.role, x.source, "
    NEXUS_US_TO_TS("u.e") ", x.occurred_at, x._ingested_at, x.id "
    "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(p, g, e, r) JOIN {table} x ON x.id = u.r "
    "ON CONFLICT (person_id, group_id) DO UPDATE SET role = EXCLUDED.role, source = EXCLUDED.source, "
    "established_at = EXCLUDED.established_at, role_occurred_at = EXCLUDED.role_occurred_at, "
    "role_ingested_at = EXCLUDED.role_ingested_at, role_row_id = EXCLUDED.role_row_id, _last_updated = now()";
constexpr const char* kInsertResolvedMembershipsSql =
    "INSERT INTO resolved_membership_identifiers (id, membership_identifier_id, person_id, group_id, role, source, "
    "occurred_at, _ingested_at) SELECT 'rmi_' || x.id, x.id, u.p, u.g, x.role, x.source, x.occurred_at, "
    "x._ingested_at FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(r, p, g) JOIN {table} x ON x.id = u.r";

/// The final-table columns of an entity row from (trait row, identifier value) per column, as parameters $`first`
/// onward: their unnest arrays and names, and the value expressions. A column's trait row is a winner of the
/// entity, written just before (upsert_traits): its value is read from the entity's resolved traits, by a
/// subquery that runs only when there is a trait row (its `u.r <> 0` is a one-time filter): most columns of a
/// person take an identifier's value, and a LEFT JOIN probed the traits for every column of every row.
struct FinalsSql {
  std::string arrays, names;
  std::vector<std::string> values;  ///< per FinalColumns(kind)
};
FinalsSql FinalsFrom(const Kind& k, int first) {
  FinalsSql f;
  const auto& cols = resolver::FinalColumns(k.kind);
  for (size_t c = 0; c < cols.size(); ++c) {
    const std::string r = "u.r" + std::to_string(c), v = "v" + std::to_string(c);
    const int n = first + 2 * static_cast<int>(c);
    f.arrays += ", $" + std::to_string(n) + "::bigint[], $" + std::to_string(n + 1) + "::text[]";
    f.names += ", r" + std::to_string(c) + ", " + v;
    f.values.push_back(k.Sql("coalesce((SELECT t.trait_value FROM resolved_{k}_traits t WHERE " + r +
                             " <> 0 AND t.{id} = u.i AND t.trait_row_id = " + r + "), u." + v + ")"));
  }
  return f;
}

/// INSERT of the entities born in a batch with their final-table columns, one row version each (a COPY and then
/// an UPDATE of the columns gave most of them two before, 2026-12-04).
std::string InsertEntitiesSql(const Kind& k) {
  const auto& cols = resolver::FinalColumns(k.kind);
  const FinalsSql f = FinalsFrom(k, 7);
  std::string names, values;
  for (size_t c = 0; c < cols.size(); ++c) names += ", " + cols[c], values += ", " + f.values[c];
  return k.Sql("INSERT INTO {E} ({id}, identifier_count, birth_xid, birth_edge_row, birth_row, created_by_event_id" +
               names + ") SELECT u.i, u.n, u.bx, u.be, u.br, u.ev" + values +
               " FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]" +
               f.arrays + ") AS u(i, n, bx, be, br, ev" + f.names + ")");
}

/// UPDATE of the existing entity rows a batch changed, one row version each: the identifier count ($2; -1 keeps
/// it) and, where $3 is true, the final-table columns. Count and columns were two UPDATEs before (2026-12-04): an
/// entity whose count and columns both changed got two row versions.
std::string UpdateEntitiesSql(const Kind& k) {
  const auto& cols = resolver::FinalColumns(k.kind);
  const FinalsSql f = FinalsFrom(k, 4);
  std::string sets = "identifier_count = coalesce(nullif(u.n, -1), x.identifier_count)";
  for (size_t c = 0; c < cols.size(); ++c) {
    sets += ", " + cols[c] + " = CASE WHEN u.f THEN " + f.values[c] + " ELSE x." + cols[c] + " END";
  }
  return k.Sql("UPDATE {E} x SET " + sets + ", _last_updated = CASE WHEN u.f THEN now() ELSE x._last_updated END " +
               "FROM unnest($1::text[], $2::bigint[], $3::boolean[]" + f.arrays + ") AS u(i, n, f" + f.names + ")" +
               " WHERE x.{id} = u.i");
}

/// `sql` with {table} replaced by the month partition `table`_p`month` of the core log (migration 012).
std::string LeafSql(std::string sql, const std::string& table, const std::string& month) {
  sql.replace(sql.find("{table}"), 7, table + "_p" + month);
  return sql;
}

std::string Us(int64_t us) { return detail::FormatTimestamp(us); }

std::string JoinUnit(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += '\x1f';
    out += v[i];
  }
  return out;
}

constexpr const char* kLinkRulesSql =
    "SELECT rule_id, kind, rule_type = 'cannot_link', coalesce(a_type, ''), coalesce(a_value, ''), "
    "coalesce(b_type, ''), coalesce(b_value, ''), coalesce(event_id, ''), coalesce(edge_id, ''), reason, "
    "created_by, " NEXUS_TS_TO_US("created_at") " FROM link_rules";
// The rule with the same content (rule_type, sides or edge), if one exists.
const std::string kFindLinkRuleSql =
    std::string(kLinkRulesSql) +
    " WHERE kind = $1 AND ((rule_type = 'cannot_link' AND a_type = $2 AND a_value = $3 AND b_type = $4 AND "
    "b_value = $5) OR (rule_type = 'suppress_edge' AND event_id = $6 AND coalesce(edge_id, '') = $7))";

LinkRuleInfo LinkRuleFromRow(const pqxx::row& r) {
  LinkRuleInfo i;
  i.rule_id = r[0].as<int64_t>();
  i.kind = r[1].c_str();
  i.cannot_link = r[2].as<bool>();
  i.a = {r[3].c_str(), r[4].c_str()};
  i.b = {r[5].c_str(), r[6].c_str()};
  i.event_id = r[7].c_str();
  i.edge_id = r[8].c_str();
  i.reason = r[9].c_str();
  i.created_by = r[10].c_str();
  i.created_at_us = r[11].as<int64_t>();
  return i;
}

/// The rule as the engine takes it.
resolver::LinkRule EngineRule(const LinkRuleInfo& i) {
  resolver::LinkRule r;
  r.rule_id = i.rule_id;
  r.kind = i.kind == "group" ? EntityKind::kGroup : EntityKind::kPerson;
  r.cannot_link = i.cannot_link;
  r.a = i.a;
  r.b = i.b;
  r.event_id = i.event_id;
  r.edge_id = i.edge_id;
  return r;
}

/// Whether the stored identifier rows may follow other identifier rules than `protection`'s (a changed fingerprint,
/// or marked dirty): then only re-classifying every row from its raw value gives what the current rules give.
bool IdentifierRulesPending(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c,
                            const resolver::ProtectionConfig& protection) {
  const auto r = impl.Exec(tx, c, "resolver.identifier_rules",
                           "SELECT identifier_rules, identifier_rules_dirty FROM resolver_state");
  return r[0][1].as<bool>() || protection.ClassifyFingerprint() != r[0][0].c_str();
}

/// Every link rule, as the engine takes them.
std::vector<resolver::LinkRule> ReadLinkRules(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c) {
  std::vector<resolver::LinkRule> out;
  for (const auto& row : impl.Exec(tx, c, "resolver.link_rules", std::string(kLinkRulesSql) + " ORDER BY rule_id")) {
    out.push_back(EngineRule(LinkRuleFromRow(row)));
  }
  return out;
}

/// Every stored id override (migration 015), oldest first: for one birth the engine keeps the last.
/// `without_rule`: leave out those of that link rule (a preview of its removal).
std::vector<resolver::IdOverride> ReadIdOverrides(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c,
                                                  int64_t without_rule = -1) {
  std::vector<resolver::IdOverride> out;
  for (const auto& r : impl.Exec(tx, c, "resolver.id_overrides",
                                 "SELECT kind, birth_xid, birth_edge_row, birth_row, entity_id FROM "
                                 "entity_id_overrides WHERE coalesce(rule_id, 0) <> $1 ORDER BY override_id",
                                 without_rule)) {
    out.push_back({std::string(r[0].c_str()) == "group" ? EntityKind::kGroup : EntityKind::kPerson,
                   {r[1].as<int64_t>(), r[2].as<int64_t>(), r[3].as<int64_t>()},
                   r[4].c_str()});
  }
  return out;
}

/// An engine configured with the stored link rules and id overrides (before it loads or applies anything).
std::unique_ptr<resolver::Engine> ConfiguredEngine(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c,
                                                   const std::string& salt) {
  auto e = std::make_unique<resolver::Engine>(salt);
  e->SetLinkRules(ReadLinkRules(impl, tx, c));  // before the identifiers: they tag clusters as they load
  e->SetIdOverrides(ReadIdOverrides(impl, tx, c));
  return e;
}

/// Streams the rows of `query` through a cursor, `kFetchRows` at a time: the next block is fetched (on another
/// thread, detail::Prefetch) while `fn` takes the rows of the current one. `fn` must not use `tx`.
template <typename F>
void ForEachRow(pqxx::work& tx, StorageObserver* obs, const std::string& name, const std::string& query, F&& fn) {
  detail::StatementTimer t(obs, name);
  const std::string cursor = "nexus_" + std::to_string(std::hash<std::string>{}(name) % 1000000);
  tx.exec("DECLARE " + cursor + " NO SCROLL CURSOR FOR " + query);
  {
    const std::string fetch = "FETCH FORWARD " + std::to_string(kFetchRows) + " FROM " + cursor;
    detail::Prefetch<pqxx::result> blocks([&](const detail::Prefetch<pqxx::result>::Put& put) {
      for (;;) {
        pqxx::result r = tx.exec(fetch);
        if (r.empty() || !put(std::move(r))) return;
      }
    });
    while (auto r = blocks.Next()) {
      for (const auto& row : *r) fn(row);
    }
  }
  tx.exec("CLOSE " + cursor);
  t.Ok();
}

std::optional<std::string> OptText(const pqxx::field& f) {
  return f.is_null() ? std::nullopt : std::optional<std::string>(f.c_str());
}

struct State {
  std::string watermark_xid;
  std::string watermark_event_id;
  /// Migration 013 left the birth keys of existing entities to the engine: a rebuild must come first.
  bool birth_keys_pending = false;
  std::string salt;
};

struct BatchEvent {
  std::string xid;
  std::string event_id;
  int64_t ingested_us = 0;
};

/// Reads core-log rows and writes engine deltas inside the caller's transaction.
class BatchIo {
 public:
  BatchIo(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c) : impl_(impl), tx_(tx), c_(c) {}

  State LoadState() {
    auto r = impl_.Exec(tx_, c_, "resolver.state", kStateSql);
    return {r[0][0].c_str(), r[0][1].c_str(), r[0][2].as<bool>(), r[0][3].c_str()};
  }

  /// The next batch: events after the watermark and every row they carry.
  std::vector<BatchEvent> ReadBatch(const State& s, int64_t max_events, resolver::BatchInput* in) {
    auto r = impl_.Exec(tx_, c_, "resolver.select_batch", kSelectBatchSql, s.watermark_xid, s.watermark_event_id,
                        max_events);
    std::vector<BatchEvent> events;
    std::unordered_map<std::string, uint32_t> pos;
    std::vector<std::string> ids, occurred;
    for (const auto& row : r) {
      pos.emplace(row[0].c_str(), static_cast<uint32_t>(in->events.size()));
      ids.push_back(row[0].c_str());
      occurred.push_back(row[6].c_str());
      in->events.push_back({row[0].c_str(), row[2].as<int64_t>(), row[5].as<int64_t>(), row[3].c_str(), row[4].c_str(),
                            row[1].as<int64_t>()});
      events.push_back({row[1].c_str(), row[0].c_str(), row[5].as<int64_t>()});
    }
    if (events.empty()) return events;
    const std::string arr = detail::TextArray(ids), occ = detail::TextArray(occurred);
    tx_.exec(kProbePlansSql);
    for (const Kind* k : {&kPerson, &kGroup}) {
      for (const auto& row :
           impl_.Exec(tx_, c_, k->Stmt("batch_identifiers"), k->Sql(kBatchIdentifiersSql), arr, occ)) {
        in->identifiers[Idx(k->kind)].push_back({pos.at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(),
                                                 row[3].c_str(), row[4].c_str(), OptText(row[5]), row[6].as<bool>()});
      }
      for (const auto& row : impl_.Exec(tx_, c_, k->Stmt("batch_traits"), k->Sql(kBatchTraitsSql), arr, occ)) {
        in->traits[Idx(k->kind)].push_back(
            {pos.at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(), row[4].as<bool>()});
      }
    }
    for (const auto& row : impl_.Exec(tx_, c_, "resolver.batch_memberships", kBatchMembershipsSql, arr, occ)) {
      in->memberships.push_back({pos.at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(),
                                 row[4].c_str(), row[5].c_str()});
    }
    tx_.exec(kDefaultPlansSql);
    return events;
  }

  /// Loads the resolved state (everything at or below the watermark) into a new engine.
  std::unique_ptr<resolver::Engine> LoadEngine(const State& s) {
    if (s.birth_keys_pending) {
      throw StorageError(ErrorKind::kInternal, "resolver: the birth keys of migration 013 are not computed yet");
    }
    auto e = ConfiguredEngine(impl_, tx_, c_, s.salt);
    StorageObserver* obs = impl_.observer;
    {
      // At most 2^28 of each (a hint only: a wrong estimate costs memory or regrowth, never correctness).
      const auto r = impl_.Exec(tx_, c_, "resolver.load_sizes", kLoadSizesSql);
      const auto n = [&](int col) {
        return static_cast<size_t>(std::clamp<int64_t>(r[0][col].as<int64_t>(0), 0, 1 << 28));
      };
      e->ReserveForLoad(EntityKind::kPerson, n(0), n(2));
      e->ReserveForLoad(EntityKind::kGroup, n(1), n(3));
    }
    for (const Kind* k : {&kPerson, &kGroup}) {
      const EntityKind kind = k->kind;
      ForEachRow(tx_, obs, k->Stmt("load_entities"),
                 k->Sql("SELECT {id}, identifier_count, birth_xid, birth_edge_row, birth_row FROM {E}"),
                 [&](const pqxx::row& r) {
                   e->LoadEntity(kind, r[0].c_str(), r[1].as<int64_t>(),
                                 {r[2].as<int64_t>(), r[3].as<int64_t>(), r[4].as<int64_t>()});
                 });
      ForEachRow(tx_, obs, k->Stmt("load_identifiers"),
                 k->Sql("SELECT identifier_type, identifier_value, {id}, source, " NEXUS_TS_TO_US(
                     "occurred_at") ", " NEXUS_TS_TO_US("last_seen_at") " FROM resolved_{k}_identifiers"),
                 [&](const pqxx::row& r) {
                   e->LoadIdentifier(kind, r[0].c_str(), r[1].c_str(), r[2].c_str(), r[3].c_str(), r[4].as<int64_t>(),
                                     r[5].as<int64_t>());
                 });
      // Identifiers applied events saw under each edge_id (rows of events past the watermark excluded). Rows of
      // edges local to their event are left out here, as the engine ignores them (resolver::IsEventLocalEdge):
      // only explicit, reusable edge_ids cross the wire. The partial index of explicit edges holds those rows:
      // read through it (kProbePlansSql), not by a scan that tests every row of the log and compiles itself
      // first (JIT); at 1.1M identifiers the cursor's rows came in 0.9 s instead of 1.7 s (2026-12-05).
      tx_.exec_params("SET LOCAL work_mem = '256MB'");
      tx_.exec(kProbePlansSql);
      ForEachRow(tx_, obs, k->Stmt("load_edges"),
                 k->Sql("SELECT i.event_id, i.edge_id, i.identifier_type, i.identifier_value FROM {k}_identifiers i "
                        "WHERE NOT i.is_blocked AND left(i.edge_id, length(i.event_id) + 1) <> i.event_id || '#' "
                        "AND i.event_id NOT IN (SELECT event_id FROM events e "
                        "WHERE e._ingest_xid >= " +
                        tx_.quote(s.watermark_xid) +
                        "::xid8 AND (e._ingest_xid, "
                        "e.event_id) > (" +
                        tx_.quote(s.watermark_xid) + "::xid8, " + tx_.quote(s.watermark_event_id) + "))"),
                 [&](const pqxx::row& r) {
                   e->LoadEdgeSighting(kind, r[0].c_str(), r[1].c_str(), r[2].c_str(), r[3].c_str());
                 });
      tx_.exec(kDefaultPlansSql);
      ForEachRow(tx_, obs, k->Stmt("load_traits"),
                 k->Sql("SELECT {id}, trait_name, " NEXUS_TS_TO_US("occurred_at") ", " NEXUS_TS_TO_US(
                     "_ingested_at") ", trait_row_id, source, value_type = 'null' FROM resolved_{k}_traits"),
                 [&](const pqxx::row& r) {
                   e->LoadTraitWinner(kind, r[0].c_str(), r[1].c_str(), r[2].as<int64_t>(), r[3].as<int64_t>(),
                                      r[4].as<int64_t>(), r[5].c_str(), r[6].as<bool>());
                 });
    }
    ForEachRow(tx_, obs, "resolver.load_memberships",
               "SELECT person_id, group_id, " NEXUS_TS_TO_US("established_at") ", " NEXUS_TS_TO_US(
                   "role_occurred_at") ", " NEXUS_TS_TO_US("role_ingested_at") ", role_row_id FROM memberships",
               [&](const pqxx::row& r) {
                 e->LoadMembership(r[0].c_str(), r[1].c_str(), r[2].as<int64_t>(), r[3].as<int64_t>(),
                                   r[4].as<int64_t>(), r[5].as<int64_t>());
               });
    e->FinishLoad();
    // The blocks were fetched on another thread, whose malloc arena keeps their freed memory: give it back.
    malloc_trim(0);
    return e;
  }

  /// Writes a delta. `events` are the batch's events (participants and quarantines index them).
  void WriteDelta(const resolver::BatchDelta& d, const std::vector<resolver::LogEvent>& events) {
    tx_.exec(kProbePlansSql);  // index probes per batch row (see kProbePlansSql)
    // Merges first, for both kinds: memberships of absorbed entities are dropped before the folded ones land.
    for (const Kind* k : {&kPerson, &kGroup}) WriteMerges(*k, d.kinds[Idx(k->kind)]);
    for (const Kind* k : {&kPerson, &kGroup}) WriteKind(*k, d.kinds[Idx(k->kind)], events);
    WriteMemberships(d);
    tx_.exec(kDefaultPlansSql);
  }

  void Advance(const BatchEvent& last, const resolver::BatchDelta& d) {
    impl_.Exec(tx_, c_, "resolver.advance", kAdvanceSql, last.xid, last.event_id, last.ingested_us,
               d.kinds[0].stats.entities_delta, d.kinds[1].stats.entities_delta);
  }

 private:
  void WriteMerges(const Kind& k, const resolver::KindDelta& d) {
    std::vector<std::string> absorbed, survivors;
    for (const auto& [a, s] : d.AbsorbedExisting()) {
      absorbed.push_back(a);
      survivors.push_back(s);
    }
    if (!absorbed.empty()) {
      const std::string a = detail::TextArray(absorbed), sv = detail::TextArray(survivors);
      const std::string map = kMergeMap;
      impl_.Exec(tx_, c_, k.Stmt("repoint_identifiers"), k.Sql(map + kRepointIdentifiersSql), a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed_traits"), k.Sql(kDropAbsorbedTraitsSql), a);
      impl_.Exec(tx_, c_, k.Stmt("move_participants"), k.Sql(map + kMoveParticipantsSql), a, sv);
      impl_.Exec(tx_, c_, k.Stmt("repoint_membership_identifiers"), k.Sql(map + kRepointResolvedMembershipsSql), a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed_memberships"), k.Sql(kDropAbsorbedMembershipsSql), a);
      impl_.Exec(tx_, c_, k.Stmt("repoint_aliases"), k.Sql(map + kRepointAliasesSql), a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed"), k.Sql(kDropAbsorbedSql), a);
    }
    if (!d.merges.empty()) {
      const std::string stmt_name = k.Stmt("copy_aliases");
      detail::StatementTimer t(impl_.observer, stmt_name);
      pqxx::stream_to s(tx_, k.name + "_id_aliases",
                        std::vector<std::string>{"old_id", "new_id", "merged_into_id", "event_id", "edge_id",
                                                 "absorbed_identifier_count"});
      for (const auto& m : d.merges) {
        s << std::make_tuple(m.absorbed_id, m.survivor_id, m.merged_into_id, m.event_id, m.edge_id, m.absorbed_count);
      }
      s.complete();
      t.Ok();
    }
  }

  void WriteKind(const Kind& k, const resolver::KindDelta& d, const std::vector<resolver::LogEvent>& events) {
    // Identifiers: new ones by COPY, changed ones in one UPDATE.
    std::vector<std::string> ut, uv, us, uf, ul;
    bool any_new = false;
    for (const auto& i : d.identifiers) any_new |= i.is_new;
    if (any_new) {
      const std::string stmt_name = k.Stmt("copy_identifiers");
      detail::StatementTimer t(impl_.observer, stmt_name);
      pqxx::stream_to s(tx_, "resolved_" + k.name + "_identifiers",
                        std::vector<std::string>{k.id, "identifier_type", "identifier_value", "source", "occurred_at",
                                                 "last_seen_at"});
      for (const auto& i : d.identifiers) {
        if (i.is_new) s << std::make_tuple(i.entity_id, i.type, i.value, i.source, Us(i.first_us), Us(i.last_us));
      }
      s.complete();
      t.Ok();
    }
    for (const auto& i : d.identifiers) {
      if (i.is_new) continue;
      ut.push_back(i.type);
      uv.push_back(i.value);
      us.push_back(i.source);
      uf.push_back(Us(i.first_us));
      ul.push_back(Us(i.last_us));
    }
    if (!ut.empty()) {
      impl_.Exec(tx_, c_, k.Stmt("update_identifiers"), k.Sql(kUpdateIdentifiersSql), detail::TextArray(ut),
                 detail::TextArray(uv), detail::TextArray(us), detail::TextArray(uf), detail::TextArray(ul));
    }
    // Trait winners.
    if (!d.traits.empty()) {
      std::map<std::string, std::pair<std::vector<std::string>, std::vector<int64_t>>> by_month;
      for (const auto& t : d.traits) {
        auto& [ti, tr] = by_month[detail::LogMonth(t.row_occurred_us)];
        ti.push_back(t.entity_id);
        tr.push_back(t.row_id);
      }
      for (const auto& [month, rows] : by_month) {
        impl_.ExecUnprepared(tx_, k.Stmt("upsert_traits"), LeafSql(k.Sql(kUpsertTraitsSql), k.name + "_traits", month),
                             detail::TextArray(rows.first), detail::Int64Array(rows.second));
      }
    }
    // Participants of the batch's events (new rows only).
    if (!d.participants.empty()) {
      const std::string stmt_name = k.Stmt("copy_participants");
      detail::StatementTimer t(impl_.observer, stmt_name);
      pqxx::stream_to s(tx_, k.name + "_participants",
                        std::vector<std::string>{"event_id", k.id, "role", "occurred_at", "event_type", "source"});
      for (const auto& p : d.participants) {
        const auto& e = events[p.event];
        s << std::make_tuple(e.event_id, p.entity_id, p.role, Us(e.occurred_us), e.event_type, e.source);
      }
      s.complete();
      t.Ok();
    }
    // Entity rows, after the trait winners their final-table columns read: born ones in one INSERT, changed ones
    // (sizes, columns) in one UPDATE; each row written once.
    WriteEntities(k, d);
    // Quarantined edges.
    if (!d.quarantined.empty()) {
      std::vector<std::string> qe, qd, qt, qv, qr, qn, qs, qo;
      for (const auto& q : d.quarantined) {
        std::vector<std::string> ts, vs;
        for (const auto& [t, v] : q.identifiers) {
          ts.push_back(t);
          vs.push_back(v);
        }
        qe.push_back(events[q.event].event_id);
        qd.push_back(q.edge_id);
        qt.push_back(JoinUnit(ts));
        qv.push_back(JoinUnit(vs));
        qr.push_back(q.reason);
        qn.push_back(JoinUnit(q.entity_ids));
        qs.push_back(events[q.event].source);
        qo.push_back(Us(events[q.event].occurred_us));
      }
      // One line per batch, not per edge (a burst of junk data logged thousands of lines a second): the count,
      // and the first edge as an example; every edge is in quarantined_edges / ListQuarantinedEdges.
      log::Warn("edges quarantined", {{"kind", k.name},
                                      {"count", static_cast<long long>(qe.size())},
                                      {"first_event_id", qe.front()},
                                      {"first_edge_id", qd.front()},
                                      {"first_reason", qr.front()}});
      impl_.Exec(tx_, c_, "resolver.insert_quarantine", kInsertQuarantineSql, k.name, detail::TextArray(qe),
                 detail::TextArray(qd), detail::TextArray(qt), detail::TextArray(qv), detail::TextArray(qr),
                 detail::TextArray(qn), detail::TextArray(qs), detail::TextArray(qo));
    }
  }

  /// Entity rows of a delta: see WriteKind.
  void WriteEntities(const Kind& k, const resolver::KindDelta& d) {
    const size_t ncol = resolver::FinalColumns(k.kind).size();
    if (ncol != 5) throw StorageError(ErrorKind::kInternal, "final tables have five resolved columns");
    std::unordered_map<std::string, int64_t> counts;  // new sizes of existing entities
    for (const auto& e : d.entities) {
      if (!e.is_new) counts.emplace(e.id, e.identifier_count);
    }
    std::unordered_map<std::string, const resolver::FinalRow*> finals;
    for (const auto& f : d.finals) finals[f.entity_id] = &f;
    // Per row: the final-table columns' arrays (trait row, identifier value), empty for a row without them.
    struct Columns {
      std::vector<std::vector<int64_t>> rows;
      std::vector<std::vector<std::optional<std::string>>> vals;
      explicit Columns(size_t n) : rows(n), vals(n) {}
      void Add(const resolver::FinalRow* f) {
        for (size_t c = 0; c < rows.size(); ++c) {
          rows[c].push_back(f ? f->columns[c].trait_row : 0);
          vals[c].push_back(f ? f->columns[c].identifier_value : std::nullopt);
        }
      }
      std::vector<std::string> Arrays() const {
        std::vector<std::string> a;
        for (size_t c = 0; c < rows.size(); ++c) {
          a.push_back(detail::Int64Array(rows[c]));
          a.push_back(detail::TextArray(vals[c]));
        }
        return a;
      }
    };
    auto final_of = [&](const std::string& id) -> const resolver::FinalRow* {
      const auto it = finals.find(id);
      if (it == finals.end()) return nullptr;
      const resolver::FinalRow* f = it->second;
      finals.erase(it);
      return f;
    };
    // Born.
    std::vector<std::string> bi, bev;
    std::vector<int64_t> bn, bx, be, br;
    Columns bc(ncol);
    for (const auto& e : d.entities) {
      if (!e.is_new) continue;
      bi.push_back(e.id);
      bn.push_back(e.identifier_count);
      bx.push_back(e.birth.xid);
      be.push_back(e.birth.edge_row);
      br.push_back(e.birth.row);
      bev.push_back(e.created_by_event_id);
      bc.Add(final_of(e.id));
    }
    if (!bi.empty()) {
      const auto a = bc.Arrays();
      impl_.Exec(tx_, c_, k.Stmt("insert_entities"), InsertEntitiesSql(k), detail::TextArray(bi),
                 detail::Int64Array(bn), detail::Int64Array(bx), detail::Int64Array(be), detail::Int64Array(br),
                 detail::TextArray(bev), a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
    }
    // Changed: final rows (with their size when it changed too), then sizes alone.
    std::vector<std::string> ui;
    std::vector<int64_t> un;
    std::vector<bool> uf;
    Columns uc(ncol);
    auto add = [&](const std::string& id, const resolver::FinalRow* f) {
      const auto it = counts.find(id);
      ui.push_back(id);
      un.push_back(it == counts.end() ? -1 : it->second);
      uf.push_back(f != nullptr);
      uc.Add(f);
      if (it != counts.end()) counts.erase(it);
    };
    for (const auto& f : d.finals) {
      if (finals.count(f.entity_id)) add(f.entity_id, &f);  // not taken by a born row
    }
    for (const auto& e : d.entities) {
      if (counts.count(e.id)) add(e.id, nullptr);
    }
    if (!ui.empty()) {
      const auto a = uc.Arrays();
      impl_.Exec(tx_, c_, k.Stmt("update_entities"), UpdateEntitiesSql(k), detail::TextArray(ui),
                 detail::Int64Array(un), detail::BoolArray(uf), a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
                 a[9]);
    }
  }

  void WriteMemberships(const resolver::BatchDelta& d) {
    if (!d.memberships.empty()) {
      struct Rows {
        std::vector<std::string> p, g;
        std::vector<int64_t> e, r;
      };
      std::map<std::string, Rows> by_month;
      for (const auto& m : d.memberships) {
        Rows& x = by_month[detail::LogMonth(m.role_occurred_us)];
        x.p.push_back(m.person_id);
        x.g.push_back(m.group_id);
        x.e.push_back(m.established_us);
        x.r.push_back(m.role_row_id);
      }
      for (const auto& [month, x] : by_month) {
        impl_.ExecUnprepared(tx_, "resolver.upsert_memberships",
                             LeafSql(kUpsertMembershipsSql, "membership_identifiers", month), detail::TextArray(x.p),
                             detail::TextArray(x.g), detail::Int64Array(x.e), detail::Int64Array(x.r));
      }
    }
    if (!d.resolved_memberships.empty()) {
      struct Rows {
        std::vector<int64_t> r;
        std::vector<std::string> p, g;
      };
      std::map<std::string, Rows> by_month;
      for (const auto& m : d.resolved_memberships) {
        Rows& x = by_month[detail::LogMonth(m.occurred_us)];
        x.r.push_back(m.row_id);
        x.p.push_back(m.person_id);
        x.g.push_back(m.group_id);
      }
      for (const auto& [month, x] : by_month) {
        impl_.ExecUnprepared(tx_, "resolver.insert_resolved_memberships",
                             LeafSql(kInsertResolvedMembershipsSql, "membership_identifiers", month),
                             detail::Int64Array(x.r), detail::TextArray(x.p), detail::TextArray(x.g));
      }
    }
  }

  Database::Impl& impl_;
  pqxx::work& tx_;
  detail::PooledConnection& c_;
};

class IngestReceiver final : public pqxx::notification_receiver {
 public:
  explicit IngestReceiver(pqxx::connection_base& c) : pqxx::notification_receiver(c, "nexus_ingest") {}
  void operator()(const std::string&, int) override { fired = true; }
  bool fired = false;
};

}  // namespace

struct ResolverStore::Impl {
  Database& db;
  std::string url;
  std::unique_ptr<detail::PooledConnection> session;  // holds the advisory lock; LISTENs
  std::unique_ptr<IngestReceiver> receiver;
  std::unique_ptr<resolver::Engine> engine;  // the resident graph; null until loaded, dropped on any error
  double graph_load_seconds = 0;
  // What graph_info() reports, refreshed on the resolver's thread whenever the graph changes (readable anywhere).
  std::atomic<int64_t> info_identifiers{0}, info_bytes{0};
  std::atomic<double> info_load_seconds{0};
  /// Resolved events between two malloc_trim calls of RunBatch, and those since the last.
  static constexpr int64_t kTrimEveryEvents = 100000;
  int64_t events_since_trim = 0;
  std::function<void()> after_commit_hook;  // SetAfterCommitHookForTesting

  Impl(Database& d, std::string u) : db(d), url(std::move(u)) {}
  /// Drops the resident graph (it may hold what the database does not) and gives its memory back to the machine:
  /// malloc kept the freed chunks, and an in-service rebuild, which drops the graph first, started from them
  /// (`bench/run 1m`, 2026-12-05: ~440 MiB resident before the rebuild; ~90 MiB after the drop with the trim).
  void DropGraph() {
    engine.reset();
    malloc_trim(0);
    PublishGraph(0);
  }
  void PublishGraph(int64_t bytes) {
    info_identifiers = engine ? static_cast<int64_t>(engine->identifier_count(EntityKind::kPerson) +
                                                     engine->identifier_count(EntityKind::kGroup))
                              : 0;
    if (bytes >= 0) info_bytes = engine ? bytes : 0;
    info_load_seconds = graph_load_seconds;
  }
};

ResolverStore::GraphInfo ResolverStore::graph_info() const {
  return {impl_->info_identifiers.load(), impl_->info_bytes.load(), impl_->info_load_seconds.load()};
}

ResolverStore::ResolverStore(Database& db, std::string url) : impl_(std::make_unique<Impl>(db, std::move(url))) {}

ResolverStore::~ResolverStore() { Release(); }

void ResolverStore::Release() {
  impl_->DropGraph();
  impl_->receiver.reset();
  impl_->session.reset();  // closing the session releases the lock
  holds_lock_ = false;
}

bool ResolverStore::TryAcquireLock() {
  try {
    if (!impl_->session || !impl_->session->conn->is_open()) {
      Release();
      impl_->session = std::make_unique<detail::PooledConnection>();
      impl_->session->conn = impl_->db.impl().Connect(/*pooled=*/false);  // no statement_timeout: long batches
    }
    pqxx::nontransaction n(*impl_->session->conn);
    holds_lock_ = n.exec("SELECT pg_try_advisory_lock(" + std::to_string(kResolverLockKey) + ")")[0][0].as<bool>();
    n.commit();
    if (holds_lock_ && !impl_->receiver) impl_->receiver = std::make_unique<IngestReceiver>(*impl_->session->conn);
    if (!holds_lock_) impl_->DropGraph();
    return holds_lock_;
  } catch (const std::exception& e) {
    Release();
    log::Warn("resolver lock: database unavailable", {{"cause", e.what()}});
    return false;
  }
}

bool ResolverStore::WaitForIngest(std::chrono::milliseconds timeout) {
  if (!impl_->session || !impl_->receiver) return false;
  impl_->receiver->fired = false;
  try {
    const long secs = static_cast<long>(timeout.count() / 1000);
    const long usecs = static_cast<long>((timeout.count() % 1000) * 1000);
    impl_->session->conn->await_notification(secs, usecs);
  } catch (const std::exception& e) {
    Release();
    throw StorageError(ErrorKind::kUnavailable, std::string("resolver session lost: ") + e.what());
  }
  return impl_->receiver->fired;
}

namespace {
/// Runs `fn` in one transaction on the lock session. Any failure drops the resident graph (it may hold
/// changes the database does not); a broken connection also loses the lock.
template <typename F>
void OnSession(ResolverStore::Impl& impl, bool& holds_lock, std::string_view what, F&& fn) {
  if (!holds_lock || !impl.session) throw StorageError(ErrorKind::kUnavailable, "resolver lock not held");
  try {
    pqxx::work tx(*impl.session->conn);
    fn(tx, *impl.session);
    tx.commit();
  } catch (const StorageError&) {
    impl.DropGraph();
    throw;
  } catch (const std::exception& e) {
    impl.DropGraph();
    std::string kind;
    StorageError mapped = detail::MapException(e, what, &kind);
    if (impl.db.observer()) impl.db.observer()->OnError(kind);
    if (!impl.session->conn->is_open() || dynamic_cast<const pqxx::broken_connection*>(&e)) {
      impl.receiver.reset();
      impl.session.reset();
      holds_lock = false;
    }
    throw mapped;
  }
}

std::unique_ptr<resolver::Engine> RebuildInTx(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                                              const resolver::ProtectionConfig& protection, RebuildStats* stats,
                                              int64_t rule_id = 0);

/// Loads the resident graph when this session has none (after taking the lock, or after an error dropped it).
/// Right after migration 013 the stored entities have no birth keys yet: the graph comes from a rebuild inside
/// `tx` instead (once), and the function returns true (the watermark moved: `s` is stale).
bool EnsureGraph(ResolverStore::Impl& impl, BatchIo& io, const State& s, pqxx::work& tx, detail::PooledConnection& c,
                 const resolver::ProtectionConfig& protection) {
  if (s.birth_keys_pending) {
    log::Info("resolver rebuilding for the birth keys of migration 013");
    RebuildStats stats;
    impl.engine.reset();
    impl.engine = RebuildInTx(impl.db.impl(), tx, c, protection, &stats);
    impl.PublishGraph(static_cast<int64_t>(impl.engine->MemoryBytes()));
    log::Info("resolver birth keys computed",
              {{"events", static_cast<long long>(stats.events)}, {"seconds", stats.seconds}});
    return true;
  }
  if (impl.engine) return false;
  const auto t0 = std::chrono::steady_clock::now();
  impl.engine = io.LoadEngine(s);
  impl.graph_load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto bytes = static_cast<int64_t>(impl.engine->MemoryBytes());
  impl.PublishGraph(bytes);
  log::Info("resolver graph loaded",
            {{"persons", static_cast<long long>(impl.engine->entity_count(EntityKind::kPerson))},
             {"groups", static_cast<long long>(impl.engine->entity_count(EntityKind::kGroup))},
             {"identifiers", static_cast<long long>(impl.engine->identifier_count(EntityKind::kPerson) +
                                                    impl.engine->identifier_count(EntityKind::kGroup))},
             {"bytes", static_cast<long long>(bytes)},
             {"seconds", impl.graph_load_seconds}});
  return false;
}

KindStats ToStats(const resolver::KindStats& s, int64_t repointed) {
  KindStats k;
  k.born = s.born;
  k.accreted = s.accreted;
  k.merged = s.merged;
  k.quarantined = s.quarantined;
  k.identifiers = s.identifiers;
  k.repointed = repointed;
  return k;
}
}  // namespace

BatchStats ResolverStore::RunBatch(int64_t max_events, const resolver::ProtectionConfig& protection) {
  BatchStats stats;
  const auto start = std::chrono::steady_clock::now();
  OnSession(*impl_, holds_lock_, "resolver batch", [&](pqxx::work& tx, detail::PooledConnection& c) {
    BatchIo io(impl_->db.impl(), tx, c);
    const State s = io.LoadState();
    if (EnsureGraph(*impl_, io, s, tx, c, protection)) return;  // the upgrade's rebuild was this batch
    resolver::BatchInput in;
    const auto events = io.ReadBatch(s, max_events, &in);
    if (events.empty()) return;
    stats.events = static_cast<int64_t>(events.size());
    const resolver::BatchDelta d = impl_->engine->Apply(in, protection);
    io.WriteDelta(d, in.events);
    io.Advance(events.back(), d);
    stats.persons = ToStats(d.kinds[0].stats, static_cast<int64_t>(d.kinds[0].AbsorbedExisting().size()));
    stats.groups = ToStats(d.kinds[1].stats, static_cast<int64_t>(d.kinds[1].AbsorbedExisting().size()));
  });
  if (impl_->after_commit_hook && stats.events > 0) impl_->after_commit_hook();
  impl_->PublishGraph(-1);  // identifiers grew; bytes stay those measured at load
  // Batches free what they read and wrote, and so do the handler threads that ingest: malloc keeps it resident. The
  // streamed ingest of 1.1M identifiers peaked at 451-506 MiB (3 runs), 392-395 with a trim every 20,000 events,
  // but its resolving then took 7% longer (3 runs each, bench/ingest-rss.sh, 2026-12-05), more than the trims' own
  // ~30 ms each explain. Every 100,000 events: 399 MiB and no visible cost (1 run).
  impl_->events_since_trim += stats.events;
  if (impl_->events_since_trim >= Impl::kTrimEveryEvents) {
    malloc_trim(0);
    impl_->events_since_trim = 0;
  }
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

std::string ResolverStore::ReleaseQuarantined(int64_t quarantine_id, const resolver::ProtectionConfig& protection) {
  // A released edge is applied without caps; a merge it causes folds trait winners by the current rules.
  std::string entity;
  OnSession(*impl_, holds_lock_, "release quarantined edge", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto q = impl_->db.impl().Exec(
        tx, c, "resolver.quarantine_for_release",
        "SELECT kind, event_id, edge_id, identifier_types, identifier_values, "
        "released_at IS NOT NULL, entity_ids FROM quarantined_edges WHERE quarantine_id = $1 FOR UPDATE",
        quarantine_id);
    if (q.empty()) {
      throw StorageError(ErrorKind::kNotFound, "quarantined edge " + std::to_string(quarantine_id) + " not found");
    }
    if (q[0][5].as<bool>()) {
      throw StorageError(ErrorKind::kInvalidArgument,
                         "quarantined edge " + std::to_string(quarantine_id) + " was already released");
    }
    const Kind& k = std::string(q[0][0].c_str()) == "person" ? kPerson : kGroup;
    auto parse = [](const pqxx::field& f) {
      std::vector<std::string> out;
      auto arr = f.as_array();
      for (auto v = arr.get_next(); v.first != pqxx::array_parser::done; v = arr.get_next()) {
        if (v.first == pqxx::array_parser::string_value) out.push_back(v.second);
      }
      return out;
    };
    const auto types = parse(q[0][3]), values = parse(q[0][4]);
    std::vector<std::pair<std::string, std::string>> ids;
    for (size_t i = 0; i < types.size() && i < values.size(); ++i) ids.emplace_back(types[i], values[i]);
    BatchIo io(impl_->db.impl(), tx, c);
    const State s = io.LoadState();
    EnsureGraph(*impl_, io, s, tx, c, protection);
    impl_->engine->SetTraitRules(protection.traits);
    const resolver::BatchDelta d =
        impl_->engine->ApplyReleased(k.kind, q[0][1].c_str(), q[0][2].c_str(), ids, parse(q[0][6]), &entity);
    io.WriteDelta(d, {});
    impl_->db.impl().Exec(tx, c, "resolver.release_counts",
                          "UPDATE resolver_state SET persons_count = persons_count + $1, "
                          "groups_count = groups_count + $2",
                          d.kinds[0].stats.entities_delta, d.kinds[1].stats.entities_delta);
    impl_->db.impl().Exec(tx, c, "resolver.mark_released",
                          "UPDATE quarantined_edges SET released_at = now() WHERE quarantine_id = $1", quarantine_id);
    log::Info("quarantined edge released",
              {{"quarantine_id", static_cast<long long>(quarantine_id)}, {"entity_id", entity}});
  });
  return entity;
}

// ---------------------------------------------------------------------------------------------------------
// Rebuild: one engine pass over the whole log into shadow tables, swapped in with one short step.
// ---------------------------------------------------------------------------------------------------------
namespace {

// The tables a rebuild replaces. quarantined_edges is rewritten in place (released edges are kept). The search
// tables (migration 016) follow the resolved identifier tables: filled from them, and kept so by their triggers,
// which IndexShadowTables creates once the shadows are loaded.
const std::vector<std::string> kRebuiltTables = {"resolved_person_identifiers",
                                                 "person_identifier_search",
                                                 "group_identifier_search",
                                                 "resolved_person_traits",
                                                 "resolved_group_identifiers",
                                                 "resolved_group_traits",
                                                 "resolved_membership_identifiers",
                                                 "memberships",
                                                 "person_participants",
                                                 "group_participants",
                                                 "persons",
                                                 "groups",
                                                 "person_id_aliases",
                                                 "group_id_aliases"};
}  // namespace

void detail::BeginSnapshot(pqxx::transaction_base& tx) {
  static const std::string sql = [] {
    std::string tables;
    for (const auto& t : kRebuiltTables) tables += (tables.empty() ? "" : ", ") + t;
    return "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; LOCK TABLE " + tables + " IN ACCESS SHARE MODE";
  }();
  tx.exec(sql);
}

namespace {
constexpr const char* kShadow = "_rb";
// The swap takes its ACCESS EXCLUSIVE locks waiting at most this long at a time: a queued lock holds up every new
// reader of the table behind it, so the swap steps aside, lets them through and tries again.
constexpr const char* kSwapLockTimeout = "1s";
// ... for at most this long in all, before the rebuild gives up (rolled back) and says who is in the way.
constexpr auto kSwapGiveUp = std::chrono::minutes(10);
/// Events per engine Apply in a rebuild (RebuildControl::chunk_events overrides it). Two chunks are alive at once
/// (detail::Prefetch), and a chunk with its rows and delta is sizeable: at 25,000 events the chunks in flight were
/// about 90 MiB of the rebuild's peak at 1.1M identifiers (494 -> 403 MiB at 4,000, 3 rounds each). Smaller chunks did
/// not make the reading slower (2026-12-05, issue 11).
constexpr int64_t kRebuildChunkEvents = 4000;
// Rows per FETCH of the rebuild's six interleaved streams (each holds one block).
constexpr int kRebuildFetchRows = 10000;

/// A cursor read one row at a time, with one row of look-ahead.
// Rows sharing an edge with a row of the preview set: the rows of the same (event, edge_id) through the event_id
// index, and, for an explicit edge_id (not local to its event: resolver::IsEventLocalEdge), the rows other events
// sent under it through the partial index of migration 011 (the predicate is the index's, word for word).
#define NEXUS_EXPLICIT_EDGE(t) "left(" t ".edge_id, length(" t ".event_id) + 1) <> " t ".event_id || '#'"
constexpr const char* kPreviewGrowEdgesSql =
    "WITH x AS MATERIALIZED (SELECT DISTINCT x.event_id, x.edge_id FROM preview_ids p JOIN {k}_identifiers x "
    "USING (identifier_type, identifier_value) WHERE NOT x.is_blocked) "
    "INSERT INTO preview_ids SELECT y.identifier_type, y.identifier_value FROM x JOIN {k}_identifiers y "
    "ON y.event_id = x.event_id AND y.edge_id = x.edge_id WHERE NOT y.is_blocked "
    "UNION SELECT y.identifier_type, y.identifier_value FROM x JOIN {k}_identifiers y ON y.edge_id = x.edge_id "
    "WHERE NOT y.is_blocked AND " NEXUS_EXPLICIT_EDGE("x") " AND " NEXUS_EXPLICIT_EDGE("y") " ON CONFLICT DO NOTHING";
#undef NEXUS_EXPLICIT_EDGE
// The closure's events up to the watermark ($1, $2: what batches have resolved), in log order; its rows in them;
// the trait rows of its edges; the membership rows in its events whose side of this kind is in the closure and
// whose other side ({o}) was resolved right after the event (a row of it, not blocked, at or before the event).
// Ingest stores a membership's identifiers as rows of its event, so the closure's events hold every membership
// row that names a closure identifier.
#define NEXUS_UP_TO_WATERMARK(e) "(" e "._ingest_xid, " e ".event_id) <= ($1::xid8, $2::text)"
constexpr const char* kClosureEventsSql =
    "SELECT e.event_id, " NEXUS_TS_TO_US("e.occurred_at") ", " NEXUS_TS_TO_US("e._ingested_at") ", e.event_type, "
    "e.source, e._ingest_xid::text FROM events e WHERE " NEXUS_UP_TO_WATERMARK("e") " AND e.event_id IN "
    "(SELECT x.event_id FROM preview_ids p JOIN {k}_identifiers x USING (identifier_type, identifier_value) "
    "WHERE NOT x.is_blocked) ORDER BY e._ingest_xid, e.event_id";
constexpr const char* kClosureRowsSql =
    "SELECT x.event_id, x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role FROM preview_ids p "
    "JOIN {k}_identifiers x USING (identifier_type, identifier_value) JOIN events e ON e.event_id = x.event_id "
    "AND e.occurred_at = x.occurred_at WHERE " NEXUS_UP_TO_WATERMARK("e") " AND NOT x.is_blocked "
    "ORDER BY e._ingest_xid, e.event_id, x.id";
constexpr const char* kClosureTraitsSql =
    "SELECT t.event_id, t.id, t.edge_id, t.trait_name, t.value_type = 'null' FROM (SELECT DISTINCT x.event_id, "
    "x.edge_id, x.occurred_at FROM preview_ids p JOIN {k}_identifiers x USING (identifier_type, identifier_value) "
    "WHERE NOT x.is_blocked) s JOIN {k}_traits t ON t.event_id = s.event_id AND t.occurred_at = s.occurred_at "
    "AND t.edge_id = s.edge_id JOIN events e ON e.event_id = t.event_id AND e.occurred_at = t.occurred_at "
    "WHERE " NEXUS_UP_TO_WATERMARK("e") " ORDER BY e._ingest_xid, e.event_id, t.id";
constexpr const char* kClosureMembershipsSql =
    "SELECT m.event_id, m.id, m.person_identifier_type, m.person_identifier, m.group_identifier_type, "
    "m.group_identifier FROM (SELECT DISTINCT x.event_id, x.occurred_at FROM preview_ids p JOIN {k}_identifiers x "
    "USING (identifier_type, identifier_value) WHERE NOT x.is_blocked) s JOIN membership_identifiers m ON "
    "m.event_id = s.event_id AND m.occurred_at = s.occurred_at JOIN events e ON e.event_id = m.event_id AND "
    "e.occurred_at = m.occurred_at JOIN preview_ids p ON p.identifier_type = m.{k}_identifier_type AND "
    "p.identifier_value = m.{k}_identifier WHERE " NEXUS_UP_TO_WATERMARK("e") " AND EXISTS (SELECT 1 FROM "
    "{o}_identifiers y JOIN events ye ON ye.event_id = y.event_id AND ye.occurred_at = y.occurred_at WHERE "
    "y.identifier_type = m.{o}_identifier_type AND y.identifier_value = m.{o}_identifier AND NOT y.is_blocked AND "
    "(ye._ingest_xid, ye.event_id) <= (e._ingest_xid, e.event_id)) ORDER BY e._ingest_xid, e.event_id, m.id";
#undef NEXUS_UP_TO_WATERMARK
// The other kind's entities those membership rows name (they do not change: loaded as they are).
constexpr const char* kClosureOtherSideSql =
    "SELECT DISTINCT r.identifier_type, r.identifier_value, r.{o}_id, n.identifier_count, n.birth_xid, "
    "n.birth_edge_row, n.birth_row FROM unnest($1::text[], $2::text[]) AS u(t, v) JOIN resolved_{o}_identifiers r "
    "ON r.identifier_type = u.t AND r.identifier_value = u.v JOIN {O} n ON n.{o}_id = r.{o}_id";

/// Fills the temporary table preview_ids (dropped at commit) with the closure of `seeds` (kind `k`): the
/// identifiers of the entities holding them, closed under every non-blocked row sharing an edge_id with a row of
/// the set (its own event's edge, and an explicit edge_id another event reused) and under the entities those
/// reach, until nothing is added. Blocked rows link nothing. No edge links the closure to anything outside it.
/// Returns the entities its identifiers belong to now, sorted.
std::vector<std::string> BuildClosure(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const Kind& k,
                                      const std::vector<std::pair<std::string, std::string>>& seeds) {
  tx.exec(
      "CREATE TEMP TABLE preview_ids (identifier_type text, identifier_value text, "
      "PRIMARY KEY (identifier_type, identifier_value)) ON COMMIT DROP");
  std::vector<std::string> types, values;
  for (const auto& [t, v] : seeds) {
    types.push_back(t);
    values.push_back(v);
  }
  db.Exec(tx, c, "resolver.preview_seed",
          "INSERT INTO preview_ids SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
          detail::TextArray(types), detail::TextArray(values));
  for (int round = 0;; ++round) {
    if (round > 10000) throw StorageError(ErrorKind::kInternal, "link rule closure does not converge");
    // A temporary table has no statistics until analyzed: without them the planner guesses its size.
    tx.exec("ANALYZE preview_ids");
    const auto grown =
        db.Exec(tx, c, k.Stmt("preview_grow_entities"),
                k.Sql("INSERT INTO preview_ids SELECT r2.identifier_type, r2.identifier_value "
                      "FROM resolved_{k}_identifiers r2 WHERE r2.{id} IN (SELECT DISTINCT r.{id} FROM preview_ids p "
                      "JOIN resolved_{k}_identifiers r USING (identifier_type, identifier_value)) "
                      "ON CONFLICT DO NOTHING"))
            .affected_rows() +
        db.Exec(tx, c, k.Stmt("preview_grow_edges"), k.Sql(kPreviewGrowEdgesSql)).affected_rows();
    if (grown == 0) break;
  }
  std::vector<std::string> current;
  for (const auto& row : db.Exec(tx, c, k.Stmt("preview_current"),
                                 k.Sql("SELECT DISTINCT r.{id} FROM preview_ids p JOIN resolved_{k}_identifiers r "
                                       "USING (identifier_type, identifier_value)"))) {
    current.push_back(row[0].c_str());
  }
  std::sort(current.begin(), current.end());
  return current;
}

/// The closure's part of the log up to the watermark of `st` (see kClosureEventsSql): its events in log order and
/// its identifier rows; with `full` also its trait rows and membership rows, the other kind's entities those name
/// loaded into `engine` (call FinishLoad after). `pos`: event_id -> index in the input.
resolver::BatchInput ReadClosureLog(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const Kind& k,
                                    const State& st, bool full, resolver::Engine* engine,
                                    std::unordered_map<std::string, uint32_t>* pos) {
  const Kind& o = k.kind == EntityKind::kPerson ? kGroup : kPerson;
  auto sql = [&](const char* t) {
    std::string q = k.Sql(t);
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"{o}", o.name}, {"{O}", o.entities}}) {
      for (size_t p = q.find(key); p != std::string::npos; p = q.find(key, p + value.size())) {
        q.replace(p, key.size(), value);
      }
    }
    return q;
  };
  resolver::BatchInput in;
  for (const auto& row :
       db.Exec(tx, c, k.Stmt("closure_events"), sql(kClosureEventsSql), st.watermark_xid, st.watermark_event_id)) {
    pos->emplace(row[0].c_str(), static_cast<uint32_t>(in.events.size()));
    in.events.push_back({row[0].c_str(), row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].c_str(), row[4].c_str(),
                         row[5].as<int64_t>()});
  }
  const size_t ki = Idx(k.kind);
  for (const auto& row :
       db.Exec(tx, c, k.Stmt("closure_rows"), sql(kClosureRowsSql), st.watermark_xid, st.watermark_event_id)) {
    in.identifiers[ki].push_back({pos->at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(),
                                  row[4].c_str(), OptText(row[5]), false});
  }
  for (const auto& row : db.Exec(tx, c, k.Stmt("preview_forced"),
                                 k.Sql("SELECT event_id, edge_id FROM quarantined_edges WHERE kind = '{k}' AND "
                                       "released_at IS NOT NULL"))) {
    in.forced[ki].insert({row[0].c_str(), row[1].c_str()});
  }
  if (!full) return in;
  for (const auto& row :
       db.Exec(tx, c, k.Stmt("closure_traits"), sql(kClosureTraitsSql), st.watermark_xid, st.watermark_event_id)) {
    in.traits[ki].push_back(
        {pos->at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(), row[4].as<bool>()});
  }
  std::vector<std::string> ot, ov;
  for (const auto& row : db.Exec(tx, c, k.Stmt("closure_memberships"), sql(kClosureMembershipsSql), st.watermark_xid,
                                 st.watermark_event_id)) {
    in.memberships.push_back({pos->at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(),
                              row[4].c_str(), row[5].c_str()});
    const bool person = k.kind == EntityKind::kPerson;
    ot.push_back(row[person ? 4 : 2].c_str());
    ov.push_back(row[person ? 5 : 3].c_str());
  }
  if (!ot.empty()) {
    std::set<std::string> loaded;
    for (const auto& row : db.Exec(tx, c, k.Stmt("closure_other_side"), sql(kClosureOtherSideSql),
                                   detail::TextArray(ot), detail::TextArray(ov))) {
      const std::string id = row[2].c_str();
      if (loaded.insert(id).second) {
        engine->LoadEntity(o.kind, id, row[3].as<int64_t>(),
                           {row[4].as<int64_t>(), row[5].as<int64_t>(), row[6].as<int64_t>()});
      }
      engine->LoadIdentifier(o.kind, row[0].c_str(), row[1].c_str(), id, "", 0, 0);
    }
  }
  return in;
}

class CursorStream {
 public:
  CursorStream(pqxx::transaction_base& tx, std::string name, const std::string& query)
      : tx_(tx), name_(std::move(name)) {
    tx_.exec("DECLARE " + name_ + " NO SCROLL CURSOR FOR " + query);
  }
  /// The current row, or nullptr at the end.
  const pqxx::row* Peek() {
    if (pos_ >= static_cast<size_t>(buf_.size()) && !done_) {
      buf_ = tx_.exec("FETCH FORWARD " + std::to_string(kRebuildFetchRows) + " FROM " + name_);
      pos_ = 0;
      done_ = buf_.empty();
      rows_.clear();
      for (const auto& r : buf_) rows_.push_back(r);
    }
    return pos_ < rows_.size() ? &rows_[pos_] : nullptr;
  }
  void Next() { ++pos_; }

 private:
  pqxx::transaction_base& tx_;
  std::string name_;
  pqxx::result buf_;
  std::vector<pqxx::row> rows_;
  size_t pos_ = 0;
  bool done_ = false;
};

// GraphPatch: the trait winners and memberships of the entities $1, as stored; each membership side named by one
// of its identifiers (the engine finds entities by identifier).
constexpr const char* kPatchTraitsSql =
    "SELECT {id}, trait_name, source, " NEXUS_TS_TO_US("occurred_at") ", " NEXUS_TS_TO_US(
        "_ingested_at") ", trait_row_id, value_type = 'null' FROM resolved_{k}_traits WHERE {id} = ANY($1::text[])";
constexpr const char* kPatchMembershipsSql =
    "SELECT m.person_id, m.group_id, " NEXUS_TS_TO_US("m.established_at") ", " NEXUS_TS_TO_US(
        "m.role_occurred_at") ", " NEXUS_TS_TO_US("m.role_ingested_at") ", m.role_row_id, p.identifier_type, "
    "p.identifier_value, g.identifier_type, g.identifier_value FROM memberships m JOIN LATERAL (SELECT "
    "identifier_type, identifier_value FROM resolved_person_identifiers x WHERE x.person_id = m.person_id LIMIT 1) p "
    "ON true JOIN LATERAL (SELECT identifier_type, identifier_value FROM resolved_group_identifiers x WHERE "
    "x.group_id = m.group_id LIMIT 1) g ON true WHERE m.{id} = ANY($1::text[])";

/// What the resident graph needs to take closures re-resolved on their own (issue 15) instead of loading the
/// whole graph again: the closure's identifiers to forget, then what was written for them (read inside the
/// transaction that wrote it; applied to the engine after it commits, see ApplyPatch).
struct GraphPatch {
  struct Trait {
    std::string entity_id, name, source;
    int64_t occurred_us, ingested_us, row_id;
    bool is_null;
  };
  struct Membership {
    std::string person_id, group_id;
    int64_t established_us, role_occurred_us, role_ingested_us, role_row_id;
    std::array<std::string, 4> sides;  // an identifier (type, value) of the person, then of the group
  };
  struct KindPart {
    bool present = false;
    std::vector<std::pair<std::string, std::string>> forget;
    std::vector<resolver::EntityChange> entities;
    std::vector<resolver::IdentifierChange> identifiers;
    std::vector<std::array<std::string, 4>> sightings;  // event_id, edge_id, type, value
    std::vector<Trait> traits;
    std::vector<Membership> memberships;
  };
  std::array<KindPart, resolver::kKinds> kinds;
  std::vector<resolver::LinkRule> rules;
  std::vector<resolver::IdOverride> overrides;
  bool empty() const { return !kinds[0].present && !kinds[1].present; }

  void ApplyTo(resolver::Engine& e) const {
    e.SetLinkRules(rules);
    e.SetIdOverrides(overrides);
    for (size_t k = 0; k < resolver::kKinds; ++k) {
      if (kinds[k].present) e.Forget(static_cast<EntityKind>(k), kinds[k].forget);
    }
    for (size_t k = 0; k < resolver::kKinds; ++k) {
      const EntityKind kind = static_cast<EntityKind>(k);
      for (const auto& x : kinds[k].entities) e.LoadEntity(kind, x.id, x.identifier_count, x.birth);
      for (const auto& x : kinds[k].identifiers) {
        e.LoadIdentifier(kind, x.type, x.value, x.entity_id, x.source, x.first_us, x.last_us);
      }
      for (const auto& x : kinds[k].sightings) e.LoadEdgeSighting(kind, x[0], x[1], x[2], x[3]);
      for (const auto& x : kinds[k].traits) {
        e.LoadTraitWinner(kind, x.entity_id, x.name, x.occurred_us, x.ingested_us, x.row_id, x.source, x.is_null);
      }
    }
    for (const auto& part : kinds) {
      for (const auto& m : part.memberships) {
        e.LoadExistingEntity(EntityKind::kPerson, m.person_id, m.sides[0], m.sides[1]);
        e.LoadExistingEntity(EntityKind::kGroup, m.group_id, m.sides[2], m.sides[3]);
        e.LoadMembership(m.person_id, m.group_id, m.established_us, m.role_occurred_us, m.role_ingested_us,
                         m.role_row_id);
      }
    }
    e.FinishLoad();
  }
};

/// The identifiers of the closure in preview_ids with the entity each resolves to now (type, value, id).
std::vector<std::array<std::string, 3>> ClosureEntities(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                                                        const Kind& k) {
  std::vector<std::array<std::string, 3>> out;
  for (const auto& row : db.Exec(tx, c, k.Stmt("scope_before"),
                                 k.Sql("SELECT p.identifier_type, p.identifier_value, r.{id} FROM preview_ids p "
                                       "JOIN resolved_{k}_identifiers r USING (identifier_type, identifier_value)"))) {
    out.push_back({row[0].c_str(), row[1].c_str(), row[2].c_str()});
  }
  return out;
}

/// Stores id overrides (resolver::Engine::SplitIds) under link rule `rule_id` (0: none, an erasure's). Returns
/// whether there were any.
bool StoreIdOverrides(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const Kind& k,
                      const std::vector<resolver::IdOverride>& added, int64_t rule_id) {
  if (added.empty()) return false;
  std::vector<int64_t> xid, edge_row, row;
  std::vector<std::string> ids;
  for (const auto& o : added) {
    xid.push_back(o.birth.xid);
    edge_row.push_back(o.birth.edge_row);
    row.push_back(o.birth.row);
    ids.push_back(o.entity_id);
  }
  db.Exec(tx, c, k.Stmt("insert_id_overrides"),
          k.Sql("INSERT INTO entity_id_overrides (kind, birth_xid, birth_edge_row, birth_row, entity_id, rule_id) "
                "SELECT '{k}', u.x, u.e, u.r, u.id, nullif($5::bigint, 0) FROM unnest($1::bigint[], $2::bigint[], "
                "$3::bigint[], $4::text[]) WITH ORDINALITY AS u(x, e, r, id, n) ORDER BY u.n"),
          detail::Int64Array(xid), detail::Int64Array(edge_row), detail::Int64Array(row), detail::TextArray(ids),
          rule_id);
  return true;
}

/// Tells RebuildControl::on_backend of a connection for as long as this lives.
class TrackedBackend {
 public:
  TrackedBackend(const RebuildControl& control, const pqxx::connection_base& conn)
      : control_(control), pid_(conn.backendpid()) {
    if (control_.on_backend) control_.on_backend(pid_, true);
  }
  ~TrackedBackend() {
    if (control_.on_backend) control_.on_backend(pid_, false);
  }
  TrackedBackend(const TrackedBackend&) = delete;
  TrackedBackend& operator=(const TrackedBackend&) = delete;

 private:
  const RebuildControl& control_;
  int pid_;
};

class Rebuilder {
 public:
  Rebuilder(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c, const RebuildControl& control)
      : impl_(impl), tx_(tx), c_(c), control_(control) {
    if (control_.side_writer) {
      side_tables_ = {"person_participants", "group_participants"};
      for (const auto& t : side_tables_) rebuilt_.erase(std::find(rebuilt_.begin(), rebuilt_.end(), t));
    }
  }
  ~Rebuilder() { AbandonSideWriter(); }

  // The settings of every transaction that reads the log for a rebuild (the rebuild's own and its second reader's).
  // No JIT, as in the batch writes: every statement here reads or writes the whole log, so each one's estimated
  // cost passes the JIT thresholds, and the read cursors (a nested loop over every month partition) were
  // compiled with inlining and optimization. At 1.1M identifiers the reading phase took 24.0 s instead of
  // 27.4 s (medians of 6 runs per side over two benches: bench/results/rebuild-1100000-2026-12-04-jit-off*.json).
  static constexpr const char* kReadSettingsSql = "SET LOCAL work_mem = '256MB'; SET LOCAL jit = off";

  std::unique_ptr<resolver::Engine> Run(const resolver::ProtectionConfig& protection, RebuildStats* out) {
    try {
      return RunOnce(protection, out);
    } catch (...) {
      AbandonSideWriter();
      throw;
    }
  }

  std::unique_ptr<resolver::Engine> RunOnce(const resolver::ProtectionConfig& protection, RebuildStats* out) {
    tx_.exec(kReadSettingsSql);
    tx_.exec("SET LOCAL maintenance_work_mem = '512MB'");
    BatchIo io(impl_, tx_, c_);
    const State s = io.LoadState();
    // Re-classify identifier rows from their raw values only when the stored data may follow other rules
    // (parsing every phone number again is costly: a rebuild under unchanged rules skips it).
    const std::string fingerprint = protection.ClassifyFingerprint();
    reclassify_ = IdentifierRulesPending(impl_, tx_, c_, protection);
    out->identifier_rules_reapplied = reclassify_;
    const std::string horizon = tx_.exec("SELECT " NEXUS_RESOLVER_HORIZON "::text")[0][0].c_str();
    const std::string below = "_ingest_xid < " + tx_.quote(horizon) + "::xid8";
    progress_.phase = "reading";
    progress_.events_total = tx_.exec("SELECT count(*) FROM events WHERE " + below)[0][0].as<int64_t>();
    // Sized once: growing by doubling would hold up to twice the events, and three times while it moves them.
    events_.reserve(static_cast<size_t>(progress_.events_total));
    Report();

    resolver::BatchInput forced_only;
    for (const auto& row :
         tx_.exec("SELECT kind, event_id, edge_id FROM quarantined_edges WHERE released_at IS NOT NULL")) {
      forced_only.forced[std::string(row[0].c_str()) == "person" ? 0 : 1].insert({row[1].c_str(), row[2].c_str()});
    }
    auto engine = ConfiguredEngine(impl_, tx_, c_, s.salt);
    CreateShadowTables();

    // The log is read and parsed on another thread (detail::Prefetch) while the engine applies the chunk read
    // before it: the reader owns tx_ until it has handed over the last chunk.
    struct Chunk {
      resolver::BatchInput in;
      std::unordered_map<std::string, uint32_t> pos;
      BatchEvent last;
    };
    BatchEvent last;
    bool any = false;
    {
      detail::Prefetch<Chunk> chunks([&](const detail::Prefetch<Chunk>::Put& put) {
        // PostgreSQL sorts each cursor's rows into log order at its first fetch: one sort after another on one
        // connection (5.4 s at 1.1M identifiers, 3.2 s of it the person identifiers), while the engine waits for its
        // first chunk. With control_.second_reader the events and every row table but the person identifiers are
        // read on a second connection, and both halves' first rows are fetched at once: 3.2 s (docs/BENCHMARKS.md).
        // Its snapshot (repeatable read: one for all its cursors) is taken after the horizon, so it holds every row
        // below it. The person identifiers' cursor, declared after, sees no event the second connection does not:
        // a row's event committed with it, before the horizon. So no row waits for an event it cannot find.
        std::unique_ptr<pqxx::connection> side_conn;
        std::optional<TrackedBackend> side_tracked;
        std::unique_ptr<pqxx::transaction<pqxx::repeatable_read>> side;
        if (control_.second_reader) {
          side_conn = impl_.Connect(/*pooled=*/false);
          side_tracked.emplace(control_, *side_conn);
          side = std::make_unique<pqxx::transaction<pqxx::repeatable_read>>(*side_conn, "nexus_rebuild_reader");
          side->exec(kReadSettingsSql);
        }
        pqxx::transaction_base& tx2 = side ? static_cast<pqxx::transaction_base&>(*side) : tx_;
        // Streams of the log in consumption order.
        CursorStream events(
                tx2, "nexus_rb_events",
                // Qualified: an unqualified ORDER BY _ingest_xid would bind to the text output column.
                "SELECT e.event_id, e._ingest_xid::text AS xid_text, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_type, "
                "e.source, " NEXUS_TS_TO_US("e._ingested_at") " FROM events e WHERE e." + below +
                    " ORDER BY e._ingest_xid, e.event_id");
        auto joined = [&](const std::string& cols, const std::string& table) {
          return "SELECT x.event_id, " + cols + " FROM " + table +
                 " x JOIN events e ON e.event_id = x.event_id AND e.occurred_at = x.occurred_at WHERE e." + below +
                 " ORDER BY e._ingest_xid, e.event_id, x.id";
        };
        // With rules to apply again (re-normalization), the raw value and the verdict too; otherwise they are not
        // read: the sort into log order carries every column it returns.
        const std::string id_cols =
            std::string("x.id, x.edge_id, x.identifier_type, x.identifier_value, x.role, x.is_blocked") +
            (reclassify_ ? ", x.identifier_value_raw, coalesce(x.blocked_reason, '')" : "");
        // A hash join (the events below the horizon hashed once) and one sort into log order. Left to itself the
        // planner merge-joins on event_id, which sorts every row of the table once more, on disk at 1M identifiers:
        // twice the time before the first row comes back. Cursors are planned when declared: only these are hashed.
        const char* const kHashOnly = "SET LOCAL enable_mergejoin = off; SET LOCAL enable_nestloop = off";
        const char* const kAnyJoin = "SET LOCAL enable_mergejoin TO DEFAULT; SET LOCAL enable_nestloop TO DEFAULT";
        tx_.exec(kHashOnly);
        if (side) side->exec(kHashOnly);
        CursorStream pids(tx_, "nexus_rb_pids", joined(id_cols, "person_identifiers"));
        CursorStream gids(tx2, "nexus_rb_gids", joined(id_cols, "group_identifiers"));
        const std::string trait_cols = "x.id, x.edge_id, x.trait_name, x.value_type = 'null'";
        CursorStream ptraits(tx2, "nexus_rb_ptraits", joined(trait_cols, "person_traits"));
        CursorStream gtraits(tx2, "nexus_rb_gtraits", joined(trait_cols, "group_traits"));
        CursorStream mems(tx2, "nexus_rb_mems",
                          joined("x.id, x.person_identifier_type, x.person_identifier, x.group_identifier_type, "
                                 "x.group_identifier",
                                 "membership_identifiers"));
        tx_.exec(kAnyJoin);
        if (side) {
          // The first fetch of each cursor runs its sort: the second connection's on another thread meanwhile.
          auto sorted = std::async(std::launch::async, [&] {
            for (CursorStream* st : {&events, &ptraits, &gids, &gtraits, &mems}) st->Peek();
          });
          pids.Peek();
          sorted.get();
        }

        const int64_t chunk_events = control_.chunk_events > 0 ? control_.chunk_events : kRebuildChunkEvents;
        for (;;) {
          Chunk ch;
          resolver::BatchInput& in = ch.in;
          std::unordered_map<std::string, uint32_t>& pos = ch.pos;
          in.forced = forced_only.forced;
          while (static_cast<int64_t>(in.events.size()) < chunk_events) {
            const pqxx::row* r = events.Peek();
            if (!r) break;
            pos.emplace((*r)[0].c_str(), static_cast<uint32_t>(in.events.size()));
            in.events.push_back({(*r)[0].c_str(), (*r)[2].as<int64_t>(), (*r)[5].as<int64_t>(), (*r)[3].c_str(),
                                 (*r)[4].c_str(), (*r)[1].as<int64_t>()});
            ch.last = {(*r)[1].c_str(), (*r)[0].c_str(), (*r)[5].as<int64_t>()};
            events.Next();
          }
          if (in.events.empty()) return;
          // Rows of the chunk's events: each stream is in the same order, so take rows while they belong here.
          auto take = [&](CursorStream& st, auto&& add) {
            for (const pqxx::row* r = st.Peek(); r; st.Next(), r = st.Peek()) {
              auto it = pos.find((*r)[0].c_str());
              if (it == pos.end()) break;
              add(it->second, *r);
            }
          };
          for (size_t k = 0; k < resolver::kKinds; ++k) {
            take(k == 0 ? pids : gids, [&](uint32_t ev, const pqxx::row& r) {
              const std::string type = r[3].c_str();
              if (!reclassify_) {
                in.identifiers[k].push_back(
                    {ev, r[1].as<int64_t>(), r[2].c_str(), type, r[4].c_str(), OptText(r[5]), r[6].as<bool>()});
                return;
              }
              const resolver::NormalizedIdentifier now = protection.Classify(type, r[7].c_str());
              const bool blocked = now.not_linkable.has_value();
              const std::string reason = blocked ? *now.not_linkable : std::string();
              const int64_t row_id = r[1].as<int64_t>();
              if (now.value != r[4].c_str() || blocked != r[6].as<bool>() || reason != r[8].c_str()) {
                renormalized_[k].push_back({row_id, now.value, blocked, reason});
              }
              in.identifiers[k].push_back({ev, row_id, r[2].c_str(), type, now.value, OptText(r[5]), blocked});
            });
            take(k == 0 ? ptraits : gtraits, [&](uint32_t ev, const pqxx::row& r) {
              in.traits[k].push_back({ev, r[1].as<int64_t>(), r[2].c_str(), r[3].c_str(), r[4].as<bool>()});
            });
          }
          take(mems, [&](uint32_t ev, const pqxx::row& r) {
            // Membership rows keep only the normalized values (no raw): normalizing them again is what ingest would
            // give under the current rules (every rule is idempotent on its own output).
            const std::string pt = r[2].c_str(), gt = r[4].c_str();
            std::string pv = r[3].c_str(), gv = r[5].c_str();
            if (reclassify_) pv = protection.Classify(pt, pv).value, gv = protection.Classify(gt, gv).value;
            if (pv != r[3].c_str() || gv != r[5].c_str())
              membership_renormalized_.push_back({r[1].as<int64_t>(), pv, gv});
            in.memberships.push_back({ev, r[1].as<int64_t>(), pt, std::move(pv), gt, std::move(gv)});
          });
          if (!put(std::move(ch))) return;
        }
      });
      while (std::optional<Chunk> ch = chunks.Next()) {
        CheckCancelled();
        any = true;
        last = ch->last;
        const resolver::BatchDelta d = engine->Apply(ch->in, protection, resolver::Engine::Report::kReplay);
        Collect(ch->in, ch->pos, d);
        progress_.events_done += static_cast<int64_t>(ch->in.events.size());
        Report();
      }
    }
    malloc_trim(0);  // the reader's malloc arena keeps the chunks' freed memory
    out->events = progress_.events_done;
    CheckCancelled();
    // The id rule of a split, against the resolved state being replaced: when it moves an id, the caller
    // (RunRebuild) stores the overrides and runs the rebuild again.
    if (check_split_ids_ && FindMovedIds(*engine)) return nullptr;

    progress_.phase = "writing";
    Report();
    out->renormalized = WriteRenormalized();
    WriteTables(*engine, kShadow, std::nullopt);
    CheckCancelled();
    progress_.phase = "indexing";
    Report();
    IndexShadowTables();
    if (side_.valid()) {
      const std::vector<std::string> renames = side_.get();
      renames_.insert(renames_.end(), renames.begin(), renames.end());
      rebuilt_.insert(rebuilt_.end(), side_tables_.begin(), side_tables_.end());
    }
    CheckCancelled();
    progress_.phase = "swapping";
    Report();
    swapping_ = true;
    Swap();
    const int64_t persons = static_cast<int64_t>(engine->entity_count(EntityKind::kPerson));
    const int64_t groups = static_cast<int64_t>(engine->entity_count(EntityKind::kGroup));
    if (any) {
      impl_.Exec(tx_, c_, "resolver.rebuild_state",
                 "UPDATE resolver_state SET watermark_xid = $1::xid8, watermark_event_id = $2, "
                 "watermark_ingested_at = " NEXUS_US_TO_TS("$3::bigint") ", birth_keys_pending = false, "
                 "persons_count = $4, groups_count = $5, batches_total = batches_total + 1, last_batch_at = now()",
                 last.xid, last.event_id, last.ingested_us, persons, groups);
    } else {
      impl_.Exec(
          tx_, c_, "resolver.rebuild_state_empty",
          "UPDATE resolver_state SET watermark_xid = '0', watermark_event_id = '', watermark_ingested_at = NULL, "
          "birth_keys_pending = false, persons_count = 0, groups_count = 0");
    }
    if (reclassify_) {
      impl_.Exec(tx_, c_, "resolver.rebuild_identifier_rules_applied",
                 "UPDATE resolver_state SET identifier_rules = $1, identifier_rules_dirty = false", fingerprint);
    }
    out->persons = persons;
    out->groups = groups;
    out->identifiers = static_cast<int64_t>(engine->identifier_count(EntityKind::kPerson) +
                                            engine->identifier_count(EntityKind::kGroup));
    return engine;
  }

  /// Whether Run compares its result with the resolved tables it replaces (resolver::Engine::SplitIds) and stops
  /// before writing when an id must move (moved_ids() then lists the overrides).
  void CheckSplitIds(bool on) { check_split_ids_ = on; }
  const std::vector<resolver::IdOverride>& moved_ids() const { return moved_; }

  /// Re-resolves, in place, the closure BuildClosure left in preview_ids (kind `k`; `old_ids`: its entities now)
  /// under the stored link rules (issue 15): its part of the log up to the watermark replayed through a fresh
  /// engine, and its rows of the resolved and final tables (entities, identifiers, traits, participants,
  /// memberships, aliases, open quarantines) replaced by the replay's. No edge links the closure to anything
  /// outside it, so the replay gives what a rebuild gives it; cost follows its size. Returns the replay's engine
  /// (its state is the closure's alone).
  /// The id rule of a split (resolver::Engine::SplitIds) decides which part keeps each old id: the overrides it
  /// needs are stored under `rule_id` (0: an erasure's, kept when rules go) before the replay that uses them.
  /// `patch` (may be null) receives what the resident graph needs to take the result (GraphPatch).
  std::unique_ptr<resolver::Engine> RunScoped(const Kind& k, const std::vector<std::string>& old_ids, int64_t rule_id,
                                              const resolver::ProtectionConfig& protection, RebuildStats* out,
                                              GraphPatch* patch) {
    BatchIo io(impl_, tx_, c_);
    const State s = io.LoadState();
    const std::vector<resolver::LinkRule> rules = ReadLinkRules(impl_, tx_, c_);
    std::vector<resolver::IdOverride> overrides = ReadIdOverrides(impl_, tx_, c_);
    auto engine = std::make_unique<resolver::Engine>(s.salt);
    engine->SetLinkRules(rules);
    std::unordered_map<std::string, uint32_t> pos;
    const resolver::BatchInput in = ReadClosureLog(impl_, tx_, c_, k, s, /*full=*/true, engine.get(), &pos);
    engine->FinishLoad();
    const auto added = KeepSplitIds(k, s, in, rules, overrides, rule_id, protection);
    overrides.insert(overrides.end(), added.begin(), added.end());
    engine->SetIdOverrides(overrides);
    const resolver::BatchDelta d = engine->Apply(in, protection, resolver::Engine::Report::kReplay);
    Collect(in, pos, d);
    out->events = static_cast<int64_t>(in.events.size());
    out->identifiers = static_cast<int64_t>(engine->identifier_count(k.kind));

    const std::string ids = detail::TextArray(old_ids);
    auto on_old_ids = [&](const char* what, const std::string& sql) {
      impl_.Exec(tx_, c_, k.Stmt(what), k.Sql(sql), ids);
    };
    // An entity that keeps its id keeps its creation time (a rebuild, which writes every row anew, does not).
    on_old_ids("scope_keep_created",
               "CREATE TEMP TABLE scope_created ON COMMIT DROP AS SELECT x.{id} AS id, x.created_at FROM {E} x "
               "JOIN unnest($1::text[]) AS a(id) ON x.{id} = a.id");
    on_old_ids("scope_drop_identifiers",
               "DELETE FROM resolved_{k}_identifiers x USING unnest($1::text[]) AS a(id) "
               "WHERE x.{id} = a.id");
    on_old_ids("scope_drop_traits",
               "DELETE FROM resolved_{k}_traits x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id");
    on_old_ids("scope_drop_participants",
               "DELETE FROM {k}_participants x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id");
    on_old_ids("scope_drop_memberships",
               "DELETE FROM memberships x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id");
    on_old_ids("scope_drop_resolved_memberships",
               "DELETE FROM resolved_membership_identifiers x USING unnest($1::text[]) AS a(id) WHERE x.{id} = a.id");
    on_old_ids("scope_drop_aliases",
               "DELETE FROM {k}_id_aliases x USING unnest($1::text[]) AS a(id) WHERE x.new_id = a.id");
    on_old_ids("scope_drop_entities", kDropAbsorbedSql);
    impl_.Exec(tx_, c_, k.Stmt("scope_drop_quarantines"),
               k.Sql("DELETE FROM quarantined_edges q USING (SELECT DISTINCT x.event_id, x.edge_id FROM preview_ids p "
                     "JOIN {k}_identifiers x USING (identifier_type, identifier_value) WHERE NOT x.is_blocked) s "
                     "WHERE q.kind = '{k}' AND q.released_at IS NULL AND q.event_id = s.event_id "
                     "AND q.edge_id = s.edge_id"));
    WriteTables(*engine, "", k.kind);
    impl_.Exec(tx_, c_, k.Stmt("scope_restore_created"),
               k.Sql("UPDATE {E} x SET created_at = s.created_at FROM scope_created s WHERE x.{id} = s.id"));
    tx_.exec("DROP TABLE scope_created");
    const int64_t delta = static_cast<int64_t>(engine->entity_count(k.kind)) - static_cast<int64_t>(old_ids.size());
    impl_.Exec(tx_, c_, k.Stmt("scope_counts"), k.Sql("UPDATE resolver_state SET {E}_count = {E}_count + $1"), delta);
    if (patch) FillPatch(k, in, *engine, &patch->kinds[Idx(k.kind)]);
    return engine;
  }

 private:
  struct EventInfo {
    std::string event_id;
    int64_t occurred_us;
    uint32_t type;
    uint32_t source;
  };
  struct PartRow {
    uint32_t event;
    uint32_t entity;
    uint32_t role;
  };
  /// A merge as the alias table records it, by reference (a MergeRecord holds five strings: at 1.1M identifiers
  /// the rebuild kept hundreds of thousands of them until it wrote the aliases).
  struct AliasRow {
    uint32_t absorbed, merged_into;  // the engine's entity refs (Engine::EntityIdAt)
    uint32_t event;                  // events_
    int64_t absorbed_count;
    std::string edge_id;
  };
  static constexpr uint32_t kNoEvent = UINT32_MAX;
  /// The id of the live entity that holds the entity `ref` names (where an absorbed one ended).
  static std::string SurvivorId(const resolver::Engine& engine, EntityKind kind, uint32_t ref) {
    return engine.EntityIdAt(kind, engine.SurvivorAt(kind, ref));
  }

  /// What the resident graph needs of the closure just written (GraphPatch): its identifiers (preview_ids) to
  /// forget; the replay's entities, identifiers and edge sightings; trait winners and memberships as stored.
  void FillPatch(const Kind& k, const resolver::BatchInput& in, const resolver::Engine& replay,
                 GraphPatch::KindPart* out) {
    out->present = true;
    for (const auto& row :
         impl_.Exec(tx_, c_, "resolver.patch_forget", "SELECT identifier_type, identifier_value FROM preview_ids")) {
      out->forget.emplace_back(row[0].c_str(), row[1].c_str());
    }
    const resolver::Engine::Snapshot snap = replay.TakeSnapshot(/*with_identifiers=*/false);
    out->entities = snap.entities[Idx(k.kind)];
    replay.ForEachIdentifier(k.kind, [&](const resolver::IdentifierChange& c) { out->identifiers.push_back(c); });
    for (const auto& r : in.identifiers[Idx(k.kind)]) {
      const std::string& event_id = in.events[r.event].event_id;
      if (r.blocked || resolver::IsEventLocalEdge(event_id, r.edge_id)) continue;
      out->sightings.push_back({event_id, r.edge_id, r.type, r.value});
    }
    std::vector<std::string> ids;
    for (const auto& e : out->entities) ids.push_back(e.id);
    const std::string arr = detail::TextArray(ids);
    for (const auto& r : impl_.Exec(tx_, c_, k.Stmt("patch_traits"), k.Sql(kPatchTraitsSql), arr)) {
      out->traits.push_back({r[0].c_str(), r[1].c_str(), r[2].c_str(), r[3].as<int64_t>(), r[4].as<int64_t>(),
                             r[5].as<int64_t>(), r[6].as<bool>()});
    }
    for (const auto& r : impl_.Exec(tx_, c_, k.Stmt("patch_memberships"), k.Sql(kPatchMembershipsSql), arr)) {
      out->memberships.push_back({r[0].c_str(),
                                  r[1].c_str(),
                                  r[2].as<int64_t>(),
                                  r[3].as<int64_t>(),
                                  r[4].as<int64_t>(),
                                  r[5].as<int64_t>(),
                                  {r[6].c_str(), r[7].c_str(), r[8].c_str(), r[9].c_str()}});
    }
  }

  /// Re-resolves the identifiers of the closure in preview_ids (ids decide nothing else, so traits and
  /// memberships can wait) under `rules` and `overrides`, and stores the id overrides that give each split
  /// entity's id to its largest part. Returns them (empty: every id is right already).
  std::vector<resolver::IdOverride> KeepSplitIds(const Kind& k, const State& s, const resolver::BatchInput& in,
                                                 const std::vector<resolver::LinkRule>& rules,
                                                 const std::vector<resolver::IdOverride>& overrides, int64_t rule_id,
                                                 const resolver::ProtectionConfig& protection) {
    const auto before = ClosureEntities(impl_, tx_, c_, k);
    resolver::Engine probe(s.salt);
    probe.SetLinkRules(rules);
    probe.SetIdOverrides(overrides);
    resolver::BatchInput ids_only;
    ids_only.events = in.events;
    ids_only.identifiers = in.identifiers;
    ids_only.forced = in.forced;
    probe.Apply(ids_only, protection, resolver::Engine::Report::kReplay);
    auto added = probe.SplitIds(k.kind, before);
    StoreIdOverrides(impl_, tx_, c_, k, added, rule_id);
    return added;
  }

  /// Streams each kind's resolved identifiers and asks `engine` which ids its result moves (Engine::SplitCheck:
  /// it keeps 8 bytes per identifier and one copy of each entity id). Returns whether any must move.
  bool FindMovedIds(const resolver::Engine& engine) {
    const auto t0 = std::chrono::steady_clock::now();
    size_t rows = 0;
    for (const Kind* k : {&kPerson, &kGroup}) {
      using Piece = std::vector<std::array<std::string, 3>>;
      // The table in its own order (a sequential scan): the check needs no earlier entity's rows together.
      // Ordered by entity, PostgreSQL walked the entity index over the whole table: at 1.1M identifiers 1.5 s
      // against 0.4 s for the scan (2026-12-06). Pieces are read and copied on another thread while the engine
      // checks the piece before.
      detail::Prefetch<Piece> pieces([&](const detail::Prefetch<Piece>::Put& put) {
        CursorStream old(tx_, "nexus_rb_old_" + k->name,
                         k->Sql("SELECT identifier_type, identifier_value, {id} FROM resolved_{k}_identifiers"));
        Piece piece;
        for (const pqxx::row* r = old.Peek(); r; old.Next(), r = old.Peek()) {
          piece.push_back({(*r)[0].c_str(), (*r)[1].c_str(), (*r)[2].c_str()});
          if (piece.size() >= 10000 && !put(std::exchange(piece, {}))) return;
        }
        tx_.exec("CLOSE nexus_rb_old_" + k->name);
        if (!piece.empty()) put(std::move(piece));
      });
      resolver::Engine::SplitCheck check = engine.StartSplitCheck(k->kind);
      while (std::optional<Piece> piece = pieces.Next()) {
        check.Add(*piece);
        rows += piece->size();
      }
      const auto moved = check.Finish();
      moved_.insert(moved_.end(), moved.begin(), moved.end());
    }
    log::Info("rebuild checked the ids a split would move",
              {{"rows", static_cast<long long>(rows)},
               {"ids_moved", static_cast<long long>(moved_.size())},
               {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
    return !moved_.empty();
  }

  void Report() {
    if (control_.on_progress) control_.on_progress(progress_);
  }
  void CheckCancelled() {
    if (control_.cancelled && control_.cancelled()) {
      throw StorageError(ErrorKind::kCancelled, "rebuild cancelled; nothing was changed");
    }
  }
  uint32_t Intern(std::unordered_map<std::string, uint32_t>& m, std::vector<std::string>& names, const std::string& s) {
    auto [it, fresh] = m.emplace(s, static_cast<uint32_t>(names.size()));
    if (fresh) names.push_back(s);
    return it->second;
  }

  /// Keeps what the final tables need from a chunk's delta: participants, resolved memberships, births,
  /// merges and quarantines (the rest is state, taken from the engine at the end).
  void Collect(const resolver::BatchInput& in, const std::unordered_map<std::string, uint32_t>& pos,
               const resolver::BatchDelta& d) {
    const uint32_t base = static_cast<uint32_t>(events_.size());
    for (const auto& e : in.events) {
      events_.push_back({e.event_id, e.occurred_us, Intern(text_index_, texts_, e.event_type),
                         Intern(text_index_, texts_, e.source)});
    }
    for (size_t k = 0; k < resolver::kKinds; ++k) {
      const auto& kd = d.kinds[k];
      for (const auto& m : kd.merges) {
        aliases_[k].push_back(
            {m.absorbed_ref, m.merged_into_ref, base + pos.at(m.event_id), m.absorbed_count, m.edge_id});
      }
      for (const auto& p : kd.participants) {
        parts_[k].push_back({base + p.event, p.entity_ref, Intern(text_index_, texts_, p.role)});
      }
      for (const auto& e : kd.entities) {
        if (!e.is_new) continue;
        if (born_[k].size() <= e.ref) born_[k].resize(e.ref + 1, kNoEvent);
        born_[k][e.ref] = base + pos.at(e.created_by_event_id);
      }
      for (const auto& q : kd.quarantined) {
        quarantined_[k].push_back(q);
        quarantined_[k].back().event += base;
      }
    }
    for (const auto& m : d.resolved_memberships) rmis_.push_back({m.row_id, m.person_ref, m.group_ref});
  }

  void CreateShadowTables() {
    for (const auto& t : rebuilt_) (void)CreateShadowTable(tx_, t);
  }
  /// Returns the live table's storage parameters, which the shadow takes ("" when none).
  static std::string CreateShadowTable(pqxx::transaction_base& tx, const std::string& t) {
    // A side writer's table (committed on its own) outlives a rebuild that failed after its commit.
    tx.exec("DROP TABLE IF EXISTS " + t + kShadow);
    tx.exec("CREATE TABLE " + t + kShadow + " (LIKE " + t + " INCLUDING DEFAULTS INCLUDING IDENTITY)");
    // LIKE does not copy storage parameters (fillfactor, which keeps the resolver's updates HOT).
    const auto opts = tx.exec("SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = " + tx.quote(t) +
                              "::regclass AND reloptions IS NOT NULL");
    if (opts.empty()) return "";
    tx.exec("ALTER TABLE " + t + kShadow + " SET (" + opts[0][0].as<std::string>() + ")");
    return opts[0][0].as<std::string>();
  }

  void Copy(const std::string& table, std::vector<std::string> cols, const std::string& stmt,
            const std::function<void(pqxx::stream_to&)>& fill) {
    Copy(tx_, table, std::move(cols), stmt, fill);
  }
  void Copy(pqxx::transaction_base& tx, const std::string& table, std::vector<std::string> cols,
            const std::string& stmt, const std::function<void(pqxx::stream_to&)>& fill) {
    detail::StatementTimer t(impl_.observer, stmt);
    pqxx::stream_to s(tx, table, cols);
    fill(s);
    s.complete();
    t.Ok();
  }

  /// The participant tables' shadows are written, indexed and committed on a connection of their own while this
  /// transaction writes and indexes the rest (RebuildControl::side_writer): at 1.1M identifiers they are 1.4M
  /// rows and two indexes, ~4 s, and the rest of the writing leaves a core idle about a third of the time. The
  /// swap renames them in this transaction like the others. The thread never touches the engine (its lookups
  /// compress paths): what it needs of it is taken here.
  void StartSideWriter(const resolver::Engine& engine) {
    std::array<std::vector<std::string>, resolver::kKinds> ids;
    for (size_t ki = 0; ki < resolver::kKinds; ++ki) ids[ki] = NumberParticipants(engine, ki);
    side_ = std::async(std::launch::async, [this, ids = std::move(ids)] { return WriteSide(ids); });
  }

  /// The side writer's transaction: returns what the swap does after renaming its tables (index renames, settings).
  std::vector<std::string> WriteSide(const std::array<std::vector<std::string>, resolver::kKinds>& ids) {
    auto conn = impl_.Connect(/*pooled=*/false);
    TrackedBackend tracked(control_, *conn);
    pqxx::work tx(*conn, "nexus_rebuild_writer");
    tx.exec("SET LOCAL maintenance_work_mem = '512MB'");
    std::vector<std::string> renames;
    for (const Kind* k : {&kPerson, &kGroup}) {
      const size_t ki = Idx(k->kind);
      const std::string t = k->name + "_participants";
      const std::string options = CreateShadowTable(tx, t);
      // Committed before the swap, the table is autovacuum's to take (1.4M rows inserted), and a worker on it made
      // the swap wait for deadlock_timeout until it gave way: off until the swap, which restores the live setting.
      tx.exec("ALTER TABLE " + t + kShadow + " SET (autovacuum_enabled = false)");
      renames.push_back("ALTER TABLE " + t + " RESET (autovacuum_enabled)");
      if (options.find("autovacuum_enabled") != std::string::npos) {
        renames.push_back("ALTER TABLE " + t + " SET (" + options + ")");
      }
      Copy(tx, t + kShadow, {"event_id", k->id, "role", "occurred_at", "event_type", "source"},
           k->Stmt("rebuild_participants"), [&](pqxx::stream_to& s) { StreamParticipants(s, ki, ids[ki]); });
      IndexShadowTable(tx, t, &renames);
    }
    tx.commit();
    side_committed_ = true;
    return renames;
  }

  /// Points kind ki's participants at the live entity that holds theirs, and names it by its position in the ids
  /// returned (ascending by ref, so the rows sort as they would by ref).
  std::vector<std::string> NumberParticipants(const resolver::Engine& engine, size_t ki) {
    const EntityKind kind = static_cast<EntityKind>(ki);
    std::vector<PartRow>& parts = parts_[ki];
    std::vector<uint32_t> refs;
    refs.reserve(parts.size());
    for (auto& p : parts) refs.push_back(p.entity = engine.SurvivorAt(kind, p.entity));
    std::sort(refs.begin(), refs.end());
    refs.erase(std::unique(refs.begin(), refs.end()), refs.end());
    std::vector<std::string> ids;
    ids.reserve(refs.size());
    for (uint32_t r : refs) ids.push_back(engine.EntityIdAt(kind, r));
    for (auto& p : parts) {
      p.entity = static_cast<uint32_t>(std::lower_bound(refs.begin(), refs.end(), p.entity) - refs.begin());
    }
    return ids;
  }

  /// Kind ki's participants, one per (event, entity, role), in event order; then frees them. Each row's entity is
  /// its position in `ids`.
  void StreamParticipants(pqxx::stream_to& s, size_t ki, const std::vector<std::string>& ids) {
    std::vector<PartRow>& parts = parts_[ki];
    std::sort(parts.begin(), parts.end(), [](const PartRow& a, const PartRow& b) {
      return std::tie(a.event, a.entity, a.role) < std::tie(b.event, b.entity, b.role);
    });
    parts.erase(std::unique(parts.begin(), parts.end(),
                            [](const PartRow& a, const PartRow& b) {
                              return a.event == b.event && a.entity == b.entity && a.role == b.role;
                            }),
                parts.end());
    for (const auto& p : parts) {
      const EventInfo& e = events_[p.event];
      s << std::make_tuple(e.event_id, ids[p.entity], texts_[p.role], Us(e.occurred_us), texts_[e.type],
                           texts_[e.source]);
    }
    std::vector<PartRow>().swap(parts);
  }

  /// Waits for the side writer after this transaction failed, and drops what it committed (when the swap has not
  /// begun: after that, this transaction holds the tables' locks until it rolls back, and the next rebuild drops
  /// what is left).
  void AbandonSideWriter() noexcept {
    if (side_.valid()) {
      try {
        side_.get();
      } catch (...) {
      }
    }
    if (!side_committed_ || swapping_) return;
    side_committed_ = false;  // once
    try {
      auto conn = impl_.Connect(/*pooled=*/false);
      pqxx::work tx(*conn, "nexus_rebuild_cleanup");
      // LOCAL: behind a transaction pooler, a session SET would stay on the server session for other clients.
      tx.exec("SET LOCAL lock_timeout = '5s'");
      std::string tables;
      for (const auto& t : side_tables_) tables += (tables.empty() ? "" : ", ") + t + kShadow;
      tx.exec("DROP TABLE IF EXISTS " + tables);
      tx.commit();
    } catch (const std::exception& e) {
      log::Warn("rebuild could not drop its side tables; the next rebuild drops them", {{"error", e.what()}});
    }
  }

  /// Copy into a temporary staging table, then ANALYZE it: without statistics the planner guesses its size (by
  /// hundreds of times) and joins it to the core log by nested loops over every partition (2026-12-04, 1.1M: the
  /// trait winners' insert took 6.5 s that way, 0.4 s with a hash join).
  void Stage(const std::string& table, std::vector<std::string> cols, const std::string& stmt,
             const std::function<void(pqxx::stream_to&)>& fill) {
    Copy(table, std::move(cols), stmt, fill);
    tx_.exec("ANALYZE " + table);
  }

  void Exec(const std::string& stmt, const std::string& sql) { Exec(tx_, stmt, sql); }
  void Exec(pqxx::transaction_base& tx, const std::string& stmt, const std::string& sql) {
    detail::StatementTimer t(impl_.observer, stmt);
    tx.exec(sql);
    t.Ok();
  }

  /// Brings kind k's live search table to the rebuilt identifiers (the shadow resolved table, written) in this
  /// transaction, when at most a tenth of the rows differ: a rebuild mostly gives each identifier the entity it had,
  /// and the search table's trigram index takes longer to build than any other (4.3 s at 1.1M identifiers). Each
  /// changed row goes through that index (about 40 us, docs/BENCHMARKS.md), so a tenth of the rows costs less than
  /// the replacement; when more differ (a first rebuild after an import), the table is replaced like the others.
  /// Readers see the old rows until the rebuild commits. Returns whether it did.
  bool UpdateSearchInPlace(const Kind& k, int64_t identifiers) {
    const std::string search = k.name + "_identifier_search";
    const int64_t cap = identifiers / 10;
    // The differences, both ways (a NULL entity: the value is gone); at most cap + 1 of them are looked for.
    Exec(k.Stmt("rebuild_search_diff"),
         k.Sql("CREATE TEMP TABLE rb_search_diff ON COMMIT DROP AS SELECT identifier_type, identifier_value, r.{id} "
               "FROM resolved_{k}_identifiers" +
               std::string(kShadow) + " r FULL JOIN " + search +
               " s USING (identifier_type, identifier_value) WHERE r.{id} IS DISTINCT FROM s.{id} LIMIT " +
               std::to_string(cap + 1)));
    const int64_t differ = tx_.exec("SELECT count(*) FROM rb_search_diff")[0][0].as<int64_t>();
    const bool in_place = differ <= cap;
    if (in_place) {
      Exec(k.Stmt("rebuild_search_delete"),
           k.Sql("DELETE FROM " + search +
                 " s USING rb_search_diff d WHERE d.{id} IS NULL AND s.identifier_type = d.identifier_type AND "
                 "s.identifier_value = d.identifier_value"));
      Exec(k.Stmt("rebuild_search_upsert"),
           k.Sql("INSERT INTO " + search +
                 " SELECT identifier_type, identifier_value, {id} FROM rb_search_diff WHERE {id} IS NOT NULL "
                 "ON CONFLICT (identifier_type, identifier_value) DO UPDATE SET {id} = EXCLUDED.{id}"));
      tx_.exec("DROP TABLE " + search + kShadow);
      rebuilt_.erase(std::find(rebuilt_.begin(), rebuilt_.end(), search));
    }
    tx_.exec("DROP TABLE rb_search_diff");
    if (in_place) {
      log::Info("rebuild search table updated in place",
                {{"table", search}, {"rows", static_cast<long long>(identifiers)}, {"rows_differing", differ}});
    } else {
      log::Info("rebuild search table replaced: over a tenth of its rows differ",
                {{"table", search}, {"rows", static_cast<long long>(identifiers)}});
    }
    return in_place;
  }

  /// Writes the core-log rows whose normalized value or verdict the current identifier rules changed (same
  /// transaction as the swap: readers see the old values with the old state, the new ones with the new).
  int64_t WriteRenormalized() {
    int64_t n = 0;
    for (const Kind* k : {&kPerson, &kGroup}) {
      auto& rows = renormalized_[static_cast<size_t>(k->kind)];
      if (rows.empty()) continue;
      n += static_cast<int64_t>(rows.size());
      tx_.exec("CREATE TEMP TABLE rb_renorm (i bigint, v text, b boolean, r text) ON COMMIT DROP");
      Stage("rb_renorm", {"i", "v", "b", "r"}, k->Stmt("rebuild_renormalize_stage"), [&](pqxx::stream_to& s) {
        for (const auto& x : rows) {
          s << std::make_tuple(x.row_id, x.value, x.blocked,
                               x.blocked ? std::optional<std::string>(x.reason) : std::optional<std::string>());
        }
      });
      Exec(k->Stmt("rebuild_renormalize"),
           k->Sql("UPDATE {k}_identifiers x SET identifier_value = t.v, is_blocked = t.b, blocked_reason = t.r "
                  "FROM rb_renorm t WHERE x.id = t.i"));
      tx_.exec("DROP TABLE rb_renorm");
      std::vector<Renormalized>().swap(rows);
    }
    if (!membership_renormalized_.empty()) {
      n += static_cast<int64_t>(membership_renormalized_.size());
      tx_.exec("CREATE TEMP TABLE rb_renorm_m (i bigint, p text, g text) ON COMMIT DROP");
      Stage("rb_renorm_m", {"i", "p", "g"}, "resolver.rebuild_renormalize_memberships_stage", [&](pqxx::stream_to& s) {
        for (const auto& [id, p, g] : membership_renormalized_) s << std::make_tuple(id, p, g);
      });
      Exec("resolver.rebuild_renormalize_memberships",
           "UPDATE membership_identifiers x SET person_identifier = t.p, group_identifier = t.g "
           "FROM rb_renorm_m t WHERE x.id = t.i");
      tx_.exec("DROP TABLE rb_renorm_m");
      decltype(membership_renormalized_)().swap(membership_renormalized_);
    }
    return n;
  }

  /// Writes the engine's state and what Collect kept into the tables named `suffix` (kShadow: the shadow tables of
  /// a rebuild; "": the live ones, whose rows of the re-resolved entities the caller deleted), both kinds or
  /// `only` one (the other kind's entities were loaded, not resolved: nothing of them is written).
  void WriteTables(resolver::Engine& engine, const std::string& suffix, std::optional<EntityKind> only) {
    // The engine's state is streamed (ForEachIdentifier, ForEachEntity, ForEachMembership), never held as strings
    // all at once, and what Collect kept is freed as soon as it is written: the rebuild's peak memory is the engine
    // plus that.
    auto release = [](auto& v) { std::decay_t<decltype(v)>().swap(v); };
    const bool side = suffix == kShadow && !side_tables_.empty();
    for (const Kind* k : {&kPerson, &kGroup}) {
      if (only && k->kind != *only) continue;
      const size_t ki = Idx(k->kind);
      int64_t identifiers = 0;
      Copy("resolved_" + k->name + "_identifiers" + suffix,
           {k->id, "identifier_type", "identifier_value", "source", "occurred_at", "last_seen_at"},
           k->Stmt("rebuild_identifiers"), [&](pqxx::stream_to& s) {
             engine.ForEachIdentifier(k->kind, [&](const resolver::IdentifierChange& i) {
               s << std::make_tuple(i.entity_id, i.type, i.value, i.source, Us(i.first_us), Us(i.last_us));
               ++identifiers;
             });
           });
      // The live table's triggers fill its search table; a shadow gets its triggers only after loading.
      if (suffix == kShadow && !(control_.search_in_place && UpdateSearchInPlace(*k, identifiers))) {
        Exec(k->Stmt("rebuild_identifier_search"),
             k->Sql("INSERT INTO {k}_identifier_search" + suffix +
                    " (identifier_type, identifier_value, {id}) SELECT identifier_type, identifier_value, {id} FROM "
                    "resolved_{k}_identifiers" +
                    suffix));
      }
      // Not sooner: the identifiers' COPY keeps both cores busy, and the side writer's COPY with it took as long
      // again (bench/results/rebuild-probes-2026-12-05-side-writer).
      if (side && k == &kPerson) StartSideWriter(engine);
      // Trait winners and final columns take their values from the core log by row id.
      tx_.exec("CREATE TEMP TABLE rb_traits (e text, r bigint) ON COMMIT DROP");
      Stage("rb_traits", {"e", "r"}, k->Stmt("rebuild_traits_stage"), [&](pqxx::stream_to& s) {
        engine.ForEachEntity(k->kind, /*with_finals=*/false, [&](const resolver::Engine::EntityState& e) {
          for (const auto& t : e.traits) s << std::make_tuple(t.entity_id, t.row_id);
        });
      });
      Exec(k->Stmt("rebuild_traits"),
           k->Sql("INSERT INTO resolved_{k}_traits" + suffix +
                  " ({id}, trait_name, trait_value, value_type, source, occurred_at, _ingested_at, trait_row_id) "
                  "SELECT s.e, x.trait_name, x.trait_value, x.value_type, x.source, x.occurred_at, x._ingested_at, "
                  "x.id "
                  "FROM rb_traits s JOIN {k}_traits x ON x.id = s.r"));
      tx_.exec("DROP TABLE rb_traits");
      const auto& cols = resolver::FinalColumns(k->kind);
      std::string stage = "CREATE TEMP TABLE rb_entities (i text, n bigint, bx bigint, be bigint, br bigint, c text";
      std::vector<std::string> stage_cols = {"i", "n", "bx", "be", "br", "c"};
      // Each column's trait value, when it has a trait row, from one join of the entities with their trait winners
      // grouped by entity: with one join per column, the trait table was hashed once per column (at 1.1M
      // identifiers 1.55 s against 0.86 s, docs/BENCHMARKS.md).
      std::string select = "SELECT s.i, s.n, s.bx, s.be, s.br, s.c", values, names;
      for (size_t c = 0; c < cols.size(); ++c) {
        const std::string n = std::to_string(c);
        stage += ", r" + n + " bigint, v" + n + " text";
        stage_cols.push_back("r" + n);
        stage_cols.push_back("v" + n);
        select += ", coalesce(f.v" + n + ", s.v" + n + ")";
        values += ", max(t.trait_value) FILTER (WHERE t.trait_row_id = x.r" + n + ") AS v" + n;
        names += ", " + cols[c];
      }
      const std::string joins = " LEFT JOIN (SELECT t.{id} AS i" + values + " FROM resolved_{k}_traits" + suffix +
                                " t JOIN rb_entities x ON x.i = t.{id} GROUP BY t.{id}) f ON f.i = s.i";
      tx_.exec(stage + ") ON COMMIT DROP");
      Stage("rb_entities", stage_cols, k->Stmt("rebuild_entities_stage"), [&](pqxx::stream_to& s) {
        engine.ForEachEntity(k->kind, /*with_finals=*/true, [&](const resolver::Engine::EntityState& st) {
          const resolver::EntityChange& e = st.entity;
          const resolver::FinalRow* f = &st.finals;
          const uint32_t born = e.ref < born_[ki].size() ? born_[ki][e.ref] : kNoEvent;
          const std::optional<std::string> created =
              born == kNoEvent ? std::nullopt : std::optional<std::string>(events_[born].event_id);
          // Five (trait row, identifier value) pairs: stream them as one row of text.
          std::vector<std::optional<std::string>> v;
          for (const auto& col : f->columns) {
            v.push_back(col.trait_row ? std::optional<std::string>(std::to_string(col.trait_row)) : std::nullopt);
            v.push_back(col.identifier_value);
          }
          s << std::make_tuple(e.id, e.identifier_count, e.birth.xid, e.birth.edge_row, e.birth.row, created, v[0],
                               v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
        });
      });
      Exec(k->Stmt("rebuild_entities"), k->Sql("INSERT INTO {E}" + suffix +
                                               " ({id}, identifier_count, birth_xid, birth_edge_row, birth_row, "
                                               "created_by_event_id" +
                                               names + ") " + select + " FROM rb_entities s" + joins));
      tx_.exec("DROP TABLE rb_entities");
      release(born_[ki]);
      if (!side) {
        Copy(k->name + "_participants" + suffix, {"event_id", k->id, "role", "occurred_at", "event_type", "source"},
             k->Stmt("rebuild_participants"),
             [&](pqxx::stream_to& s) { StreamParticipants(s, ki, NumberParticipants(engine, ki)); });
      }
      Copy(k->name + "_id_aliases" + suffix,
           {"old_id", "new_id", "merged_into_id", "event_id", "edge_id", "absorbed_identifier_count"},
           k->Stmt("rebuild_aliases"), [&](pqxx::stream_to& s) {
             for (const auto& m : aliases_[ki]) {
               s << std::make_tuple(engine.EntityIdAt(k->kind, m.absorbed), SurvivorId(engine, k->kind, m.absorbed),
                                    engine.EntityIdAt(k->kind, m.merged_into), events_[m.event].event_id, m.edge_id,
                                    m.absorbed_count);
             }
             release(aliases_[ki]);
           });
    }
    // Memberships and resolved membership rows take role/source/times from the core log by row id.
    tx_.exec("CREATE TEMP TABLE rb_mem (p text, g text, e bigint, r bigint) ON COMMIT DROP");
    Stage("rb_mem", {"p", "g", "e", "r"}, "resolver.rebuild_memberships_stage", [&](pqxx::stream_to& s) {
      engine.ForEachMembership([&](const resolver::MembershipChange& m) {
        s << std::make_tuple(m.person_id, m.group_id, m.established_us, m.role_row_id);
      });
    });
    Exec("resolver.rebuild_memberships",
         std::string("INSERT INTO memberships") + suffix +
             " (id, person_id, group_id, role, source, established_at, role_occurred_at, role_ingested_at, "
             "role_row_id) SELECT 'mem_' || md5(s.p || chr(31) || s.g), s.p, s.g, x.role, x.source, " +
             NEXUS_US_TO_TS("s.e") +
             ", x.occurred_at, x._ingested_at, x.id FROM rb_mem s "
             "JOIN membership_identifiers x ON x.id = s.r");
    tx_.exec("CREATE TEMP TABLE rb_rmi (r bigint, p text, g text) ON COMMIT DROP");
    Stage("rb_rmi", {"r", "p", "g"}, "resolver.rebuild_resolved_memberships_stage", [&](pqxx::stream_to& s) {
      for (const auto& [row, p, g] : rmis_) {
        s << std::make_tuple(row, SurvivorId(engine, EntityKind::kPerson, p),
                             SurvivorId(engine, EntityKind::kGroup, g));
      }
      release(rmis_);
    });
    Exec("resolver.rebuild_resolved_memberships",
         std::string("INSERT INTO resolved_membership_identifiers") + suffix +
             " (id, membership_identifier_id, person_id, group_id, role, source, occurred_at, _ingested_at) "
             "SELECT 'rmi_' || x.id, x.id, s.p, s.g, x.role, x.source, x.occurred_at, x._ingested_at FROM rb_rmi s "
             "JOIN membership_identifiers x ON x.id = s.r");
    // Quarantines are rewritten in place: open ones are recomputed (a re-resolution of some entities deleted
    // theirs), released ones stay released (and are not recorded again when a link rule now refuses them).
    if (!only) Exec("resolver.rebuild_clear_quarantine", "DELETE FROM quarantined_edges WHERE released_at IS NULL");
    tx_.exec(
        "CREATE TEMP TABLE rb_quarantine (kind text, event_id text, edge_id text, source text, occurred_at "
        "timestamptz, identifier_types text[], identifier_values text[], reason text, entity_ids text[]) "
        "ON COMMIT DROP");
    for (const Kind* k : {&kPerson, &kGroup}) {
      if (only && k->kind != *only) continue;
      Copy("rb_quarantine",
           {"kind", "event_id", "edge_id", "source", "occurred_at", "identifier_types", "identifier_values", "reason",
            "entity_ids"},
           k->Stmt("rebuild_quarantine"), [&](pqxx::stream_to& s) {
             for (const auto& q : quarantined_[Idx(k->kind)]) {
               std::vector<std::string> ts, vs;
               for (const auto& [t, v] : q.identifiers) {
                 ts.push_back(t);
                 vs.push_back(v);
               }
               const EventInfo& e = events_[q.event];
               s << std::make_tuple(k->name, e.event_id, q.edge_id, texts_[e.source], Us(e.occurred_us),
                                    detail::TextArray(ts), detail::TextArray(vs), q.reason,
                                    detail::TextArray(q.entity_ids));
             }
           });
    }
    Exec("resolver.rebuild_quarantine_insert",
         "INSERT INTO quarantined_edges (kind, event_id, edge_id, source, occurred_at, identifier_types, "
         "identifier_values, reason, entity_ids) SELECT * FROM rb_quarantine ON CONFLICT (kind, event_id, edge_id) "
         "DO NOTHING");
    tx_.exec("DROP TABLE rb_quarantine");
  }

  /// The live table's indexes and constraints, recreated on its shadow under temporary names.
  void IndexShadowTables() {
    for (const auto& t : rebuilt_) IndexShadowTable(tx_, t, &renames_);
  }
  void IndexShadowTable(pqxx::transaction_base& tx, const std::string& t, std::vector<std::string>* renames) {
    const std::string shadow = t + kShadow;
    auto idx = tx.exec(
        "SELECT i.relname, pg_get_indexdef(i.oid), c.conname, c.contype FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid "
        "AND c.conrelid = x.indrelid WHERE x.indrelid = " +
        tx.quote(t) + "::regclass");
    for (const auto& row : idx) {
      const std::string name = row[0].c_str();
      std::string def = row[1].c_str();
      const size_t on = def.find(" ON "), using_pos = def.find(" USING ");
      if (on == std::string::npos || using_pos == std::string::npos) {
        throw StorageError(ErrorKind::kInternal, "rebuild: cannot read index definition of " + name);
      }
      def = def.substr(0, def.find(" INDEX ") + 7) + name + kShadow + " ON " + def.substr(on + 4, using_pos - on - 4) +
            kShadow + def.substr(using_pos);
      const auto t0 = std::chrono::steady_clock::now();
      Exec(tx, "resolver.rebuild_index", def);
      // Per index (the phase's metric sums them all): at 1.1M identifiers indexing is a third of a rebuild.
      log::Info(
          "rebuild index built",
          {{"index", name}, {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()}});
      renames->push_back("ALTER INDEX " + name + kShadow + " RENAME TO " + name);
      if (!row[2].is_null()) {
        const std::string type = std::string(row[3].c_str()) == "p" ? "PRIMARY KEY" : "UNIQUE";
        tx.exec("ALTER TABLE " + shadow + " ADD CONSTRAINT " + name + kShadow + " " + type + " USING INDEX " + name +
                kShadow);
      }
    }
    for (const auto& row : tx.exec("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = " +
                                   tx.quote(t) + "::regclass AND contype = 'f'")) {
      tx.exec("ALTER TABLE " + shadow + " ADD CONSTRAINT " + row[0].c_str() + kShadow + " " + row[1].c_str() +
              " NOT VALID");
      renames->push_back("ALTER TABLE " + t + " RENAME CONSTRAINT " + row[0].c_str() + kShadow + " TO " +
                         row[0].c_str());
    }
    // Triggers (names are per table: the shadow's keep theirs), after the load so that it fires none of them.
    for (const auto& row : tx.exec("SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = " +
                                   tx.quote(t) + "::regclass AND NOT tgisinternal")) {
      std::string def = row[1].c_str();
      size_t at = std::string::npos;
      for (const std::string& on : {" ON public." + t + " ", " ON " + t + " "}) {
        if ((at = def.find(on)) != std::string::npos) {
          def.replace(at, on.size(), " ON " + shadow + " ");
          break;
        }
      }
      if (at == std::string::npos) {
        throw StorageError(ErrorKind::kInternal, "rebuild: cannot read trigger definition of " + t);
      }
      tx.exec(def);
    }
    Exec(tx, "resolver.rebuild_analyze", "ANALYZE " + shadow);
  }

  void Swap() {
    detail::StatementTimer timer(impl_.observer, "resolver.rebuild_swap");
    std::string tables;
    for (const auto& t : rebuilt_) tables += (tables.empty() ? "" : ", ") + t;
    LockForSwap(tables);
    for (const auto& t : rebuilt_) {
      tx_.exec("DROP TABLE " + t);
      tx_.exec("ALTER TABLE " + t + kShadow + " RENAME TO " + t);
    }
    for (const auto& r : renames_) tx_.exec(r);
    timer.Ok();
  }

  /// Takes `tables` in ACCESS EXCLUSIVE mode, kSwapLockTimeout at a time (see there), until it has them, the
  /// rebuild is cancelled, or kSwapGiveUp has passed. Readers hold their locks for a snapshot's length
  /// (detail::BeginSnapshot); a session idle in a transaction on one of the tables holds it until it ends.
  void LockForSwap(const std::string& tables) {
    const auto start = std::chrono::steady_clock::now();
    for (int attempt = 1;; ++attempt) {
      try {
        // A subtransaction: libpqxx closes a transaction whose statement failed, but not its parent.
        pqxx::subtransaction lock(tx_, "nexus_swap_lock");
        lock.exec(std::string("SET LOCAL lock_timeout = '") + kSwapLockTimeout + "'");
        lock.exec("LOCK TABLE " + tables + " IN ACCESS EXCLUSIVE MODE");
        lock.exec("SET LOCAL lock_timeout TO DEFAULT");
        lock.commit();
        return;
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "55P03") throw;  // lock_not_available: the timeout; anything else is a failure
      }
      CheckCancelled();
      const auto waited = std::chrono::steady_clock::now() - start;
      if (waited >= kSwapGiveUp) {
        throw StorageError(ErrorKind::kUnavailable,
                           "rebuild: other sessions kept the resolved tables busy for " +
                               std::to_string(std::chrono::duration_cast<std::chrono::seconds>(waited).count()) +
                               " s, so the new ones could not be swapped in (look for sessions idle in a transaction "
                               "in pg_stat_activity); rolled back, nothing was changed");
      }
      if (attempt % 10 == 1) {
        log::Warn("rebuild swap waiting for readers of the resolved tables",
                  {{"attempts", static_cast<long long>(attempt)},
                   {"waited_s", std::chrono::duration<double>(waited).count()}});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the readers queued behind the lock go first
    }
  }

  Database::Impl& impl_;
  pqxx::work& tx_;
  detail::PooledConnection& c_;
  const RebuildControl& control_;
  bool check_split_ids_ = false;
  std::vector<resolver::IdOverride> moved_;
  RebuildProgress progress_;
  std::vector<EventInfo> events_;
  std::unordered_map<std::string, uint32_t> text_index_;
  std::vector<std::string> texts_;
  std::array<std::vector<PartRow>, resolver::kKinds> parts_;
  std::array<std::vector<uint32_t>, resolver::kKinds> born_;  // by entity ref: the event that founded it
  std::array<std::vector<AliasRow>, resolver::kKinds> aliases_;
  std::array<std::vector<resolver::QuarantineRecord>, resolver::kKinds> quarantined_;
  std::vector<std::tuple<int64_t, uint32_t, uint32_t>> rmis_;
  std::vector<std::string> renames_;
  std::vector<std::string> rebuilt_ = kRebuiltTables;  // less the search tables brought up to date in place
  std::vector<std::string> side_tables_;  // written by the side writer (StartSideWriter), swapped in with the rest
  std::future<std::vector<std::string>> side_;
  std::atomic<bool> side_committed_{false};
  bool swapping_ = false;
  struct Renormalized {
    int64_t row_id;
    std::string value;
    bool blocked;
    std::string reason;
  };
  bool reclassify_ = false;
  std::array<std::vector<Renormalized>, resolver::kKinds> renormalized_;
  std::vector<std::tuple<int64_t, std::string, std::string>> membership_renormalized_;
};

/// Cancels a rebuild's statements once its control says so. The rebuild checks RebuildControl::cancelled only
/// between chunks and phases, and one statement can take minutes at scale. A thread polls `cancelled` every
/// 100 ms; from its first true, it cancels every registered backend every 500 ms (PostgreSQL ignores a cancel
/// that arrives between two statements) until the rebuild ends. The rebuild then fails with a query_canceled
/// error and rolls back.
class RebuildCanceller {
 public:
  RebuildCanceller(Database::Impl& db, std::function<bool()> cancelled) : db_(db), cancelled_(std::move(cancelled)) {
    if (cancelled_) thread_ = std::thread([this] { Loop(); });
  }
  ~RebuildCanceller() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void Track(int pid, bool add) {
    std::lock_guard<std::mutex> lock(mu_);
    if (add) {
      pids_.push_back(pid);
    } else {
      pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end());
    }
  }

 private:
  void Loop() {
    std::unique_ptr<pqxx::connection> conn;
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      if (!cancelled_()) {
        cv_.wait_for(lock, std::chrono::milliseconds(100));
        continue;
      }
      std::vector<int> pids = pids_;
      lock.unlock();
      try {
        if (!conn) conn = db_.Connect(/*pooled=*/false);
        pqxx::nontransaction n(*conn);
        std::vector<int64_t> p(pids.begin(), pids.end());
        n.exec_params("SELECT pg_cancel_backend(p::int) FROM unnest($1::bigint[]) AS p", detail::Int64Array(p));
      } catch (const std::exception& e) {
        conn.reset();
        log::Warn("rebuild cancel: could not reach the database; retrying", {{"cause", e.what()}});
      }
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(500));
    }
  }

  Database::Impl& db_;
  std::function<bool()> cancelled_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::vector<int> pids_;
  std::thread thread_;
};

/// A full rebuild (Rebuilder::Run) under the id rule of a split: when its result moves an id (a changed blocklist
/// or cap split an entity whose founder is in a smaller part, or an unlink that could not be re-resolved
/// piecewise), the overrides are stored under link rule `rule_id` (0: none) and the rebuild runs again from a
/// savepoint. So it takes two passes only when an id moves.
std::unique_ptr<resolver::Engine> RunRebuild(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                                             const RebuildControl& control,
                                             const resolver::ProtectionConfig& protection, RebuildStats* stats,
                                             int64_t rule_id) {
  std::vector<resolver::IdOverride> moved;
  tx.exec("SAVEPOINT nexus_rebuild");
  {
    Rebuilder r(db, tx, c, control);
    r.CheckSplitIds(true);
    if (auto engine = r.Run(protection, stats)) {
      tx.exec("RELEASE SAVEPOINT nexus_rebuild");
      return engine;
    }
    moved = r.moved_ids();
  }
  tx.exec("ROLLBACK TO SAVEPOINT nexus_rebuild");
  for (const Kind* k : {&kPerson, &kGroup}) {
    std::vector<resolver::IdOverride> of_kind;
    for (const auto& o : moved) {
      if (o.kind == k->kind) of_kind.push_back(o);
    }
    StoreIdOverrides(db, tx, c, *k, of_kind, rule_id);
  }
  log::Info("rebuild: split entities keep their ids in their largest parts; rebuilding with them",
            {{"overrides", static_cast<long long>(moved.size())}});
  *stats = RebuildStats{};
  Rebuilder again(db, tx, c, control);
  return again.Run(protection, stats);
}

}  // namespace

void ResolverStore::SetAfterCommitHookForTesting(std::function<void()> hook) {
  impl_->after_commit_hook = std::move(hook);
}

std::string ResolverStore::DiffGraphWithDatabase() {
  if (!impl_->engine) return "";
  std::unique_ptr<resolver::Engine> fresh;
  OnSession(*impl_, holds_lock_, "compare the resident graph", [&](pqxx::work& tx, detail::PooledConnection& c) {
    BatchIo io(impl_->db.impl(), tx, c);
    fresh = io.LoadEngine(io.LoadState());
  });
  return resolver::DiffStates(*impl_->engine, *fresh);
}

RebuildStats ResolverStore::Rebuild(const resolver::ProtectionConfig& protection, const RebuildControl& control) {
  RebuildStats out;
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<resolver::Engine> rebuilt;
  // The resident graph is replaced by the rebuilt one; keeping it during the rebuild would hold two graphs at
  // the peak. If the rebuild fails, the next batch loads the graph from the database as after any error.
  impl_->DropGraph();
  try {
    RebuildCanceller canceller(impl_->db.impl(), control.cancelled);
    OnSession(*impl_, holds_lock_, "rebuild", [&](pqxx::work& tx, detail::PooledConnection& c) {
      RebuildControl read_twice = control;
      read_twice.second_reader = true;  // this transaction changes nothing before the rebuild reads the log
      read_twice.search_in_place = true;
      read_twice.side_writer = true;
      read_twice.on_backend = [&](int pid, bool add) { canceller.Track(pid, add); };
      // Untracked when this returns, before the commit: a late cancel must not turn a finished rebuild into none.
      TrackedBackend session(read_twice, *c.conn);
      rebuilt = RunRebuild(impl_->db.impl(), tx, c, read_twice, protection, &out, /*rule_id=*/0);
    });
  } catch (const StorageError& e) {
    // A statement the canceller stopped fails as query_canceled: the rebuild was cancelled, like at a check.
    if (e.kind() != ErrorKind::kCancelled && control.cancelled && control.cancelled()) {
      throw StorageError(ErrorKind::kCancelled, "rebuild cancelled; rolled back, nothing was changed");
    }
    throw;
  }
  impl_->engine = std::move(rebuilt);  // the rebuilt graph is the resident one
  impl_->PublishGraph(impl_->engine ? static_cast<int64_t>(impl_->engine->MemoryBytes()) : 0);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::Info("rebuild committed", {{"events", static_cast<long long>(out.events)},
                                  {"persons", static_cast<long long>(out.persons)},
                                  {"groups", static_cast<long long>(out.groups)},
                                  {"identifier_rules_reapplied", out.identifier_rules_reapplied},
                                  {"renormalized", static_cast<long long>(out.renormalized)},
                                  {"seconds", out.seconds}});
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Link rules and erasure (issue 15). Both change what the log links, then re-resolve inside the same
// transaction with a rebuild: every table follows the change at commit, and a later rebuild gives the same.
// ---------------------------------------------------------------------------------------------------------
namespace {

const Kind& KindNamed(const std::string& name) { return name == "group" ? kGroup : kPerson; }

/// Where (type, value) of kind `k` resolves now ("" when it does not).
std::string ResolvedEntity(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const Kind& k,
                           const std::string& type, const std::string& value) {
  auto r =
      db.Exec(tx, c, k.Stmt("entity_of_identifier"),
              k.Sql("SELECT {id} FROM resolved_{k}_identifiers WHERE identifier_type = $1 AND identifier_value = $2"),
              type, value);
  return r.empty() ? std::string() : std::string(r[0][0].c_str());
}

std::vector<std::string> ParseTextArray(const pqxx::field& f) {
  std::vector<std::string> out;
  auto arr = f.as_array();
  for (auto v = arr.get_next(); v.first != pqxx::array_parser::done; v = arr.get_next()) {
    if (v.first == pqxx::array_parser::string_value) out.push_back(v.second);
  }
  return out;
}

/// Re-resolves every table inside `tx` (the rules and the log as this transaction sees them).
std::unique_ptr<resolver::Engine> RebuildInTx(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                                              const resolver::ProtectionConfig& protection, RebuildStats* stats,
                                              int64_t rule_id) {
  const auto start = std::chrono::steady_clock::now();
  static const RebuildControl kNoControl;
  auto engine = RunRebuild(db, tx, c, kNoControl, protection, stats, rule_id);
  stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return engine;
}

/// The preview of a link-rule change (see LinkRulePreview): the identifiers `seeds` (kind `k`) reach, re-resolved
/// alone under `rules` (the stored ones with the change), up to the watermark as the change itself does. Reads only;
/// its working table is dropped at commit.
LinkRulePreview PreviewLinkRules(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const Kind& k,
                                 const std::vector<std::pair<std::string, std::string>>& seeds,
                                 const std::vector<resolver::LinkRule>& rules, int64_t without_rule,
                                 const resolver::ProtectionConfig& protection) {
  LinkRulePreview out;
  out.current_entity_ids = BuildClosure(db, tx, c, k, seeds);
  BatchIo io(db, tx, c);
  const State st = io.LoadState();
  out.identifier_rules_pending = IdentifierRulesPending(db, tx, c, protection);
  std::vector<resolver::IdOverride> overrides = ReadIdOverrides(db, tx, c, without_rule);
  auto resolve = [&](const resolver::BatchInput& in) {
    auto e = std::make_unique<resolver::Engine>(st.salt);
    e->SetLinkRules(rules);
    e->SetIdOverrides(overrides);
    e->Apply(in, protection, resolver::Engine::Report::kReplay);
    return e;
  };
  std::unordered_map<std::string, uint32_t> pos;
  const resolver::BatchInput in = ReadClosureLog(db, tx, c, k, st, /*full=*/false, nullptr, &pos);
  out.events = static_cast<int64_t>(in.events.size());
  auto resolved = resolve(in);
  // The ids the change would give: the id rule of a split as the change applies it (Rebuilder::KeepSplitIds).
  const auto added = resolved->SplitIds(k.kind, ClosureEntities(db, tx, c, k));
  if (!added.empty()) {
    overrides.insert(overrides.end(), added.begin(), added.end());
    resolved = resolve(in);
  }
  const resolver::Engine& engine = *resolved;

  std::map<std::string, LinkRulePreview::Part> parts;
  for (const auto& row :
       db.Exec(tx, c, "resolver.preview_ids", "SELECT identifier_type, identifier_value FROM preview_ids")) {
    ++out.identifiers;
    const std::string id = engine.EntityOf(k.kind, row[0].c_str(), row[1].c_str());
    if (id.empty()) continue;  // only in blocked rows, or in events past the watermark
    auto& part = parts[id];
    part.entity_id = id;
    part.identifiers.emplace_back(row[0].c_str(), row[1].c_str());
  }
  std::vector<std::string> ids;
  for (const auto& [id, part] : parts) ids.push_back(id);
  std::set<std::string> existing;
  for (const auto& row : db.Exec(tx, c, k.Stmt("preview_existing"),
                                 k.Sql("SELECT {id} FROM {E} WHERE {id} = ANY($1::text[])"), detail::TextArray(ids))) {
    existing.insert(row[0].c_str());
  }
  for (auto& [id, part] : parts) {
    part.existing = existing.count(id) > 0;
    std::sort(part.identifiers.begin(), part.identifiers.end());  // byte order (the query's is the collation's)
    out.parts.push_back(std::move(part));
  }
  std::stable_sort(out.parts.begin(), out.parts.end(),
                   [](const auto& a, const auto& b) { return a.identifiers.size() > b.identifiers.size(); });
  tx.exec("DROP TABLE preview_ids");
  return out;
}

/// Where (type, value) of a preview would resolve ("" when nowhere).
std::string PreviewEntityOf(const LinkRulePreview& p, const std::pair<std::string, std::string>& id) {
  for (const auto& part : p.parts) {
    if (std::binary_search(part.identifiers.begin(), part.identifiers.end(), id)) return part.entity_id;
  }
  return "";
}

/// LinkRuleResult::entity_ids of a dry run: where a and b (or the edge's identifiers, distinct) would resolve.
void FillPreviewEntities(LinkRuleResult& out, const std::vector<std::pair<std::string, std::string>>& seeds) {
  std::vector<std::string> ids;
  for (const auto& id : seeds) ids.push_back(PreviewEntityOf(out.preview, id));
  if (!out.rule.cannot_link) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  out.entity_ids = std::move(ids);
}

/// The identifiers a rule is about: a and b, or the non-blocked rows of its edge (every edge of its event).
std::vector<std::pair<std::string, std::string>> RuleIdentifiers(Database::Impl& db, pqxx::work& tx,
                                                                 detail::PooledConnection& c, const Kind& k,
                                                                 const LinkRuleInfo& r) {
  if (r.cannot_link) return {r.a, r.b};
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& row : db.Exec(tx, c, k.Stmt("link_rule_edge_identifiers"),
                                 k.Sql("SELECT DISTINCT identifier_type, identifier_value FROM {k}_identifiers "
                                       "WHERE event_id = $1 AND ($2 = '' OR edge_id = $2) AND NOT is_blocked "
                                       "ORDER BY 1, 2"),
                                 r.event_id, r.edge_id)) {
    out.emplace_back(row[0].c_str(), row[1].c_str());
  }
  return out;
}

/// The rules and id overrides the resident graph follows after the change (read in its transaction).
void FinishPatch(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, GraphPatch* patch) {
  if (!patch || patch->empty()) return;
  patch->rules = ReadLinkRules(db, tx, c);
  patch->overrides = ReadIdOverrides(db, tx, c);
}

/// After a committed scoped re-resolution: the resident graph forgets the closures and loads what was written for
/// them (cost follows their size, as the re-resolution's). Without a resident graph there is nothing to do (the next
/// batch loads one); if applying fails, the graph is dropped and the next batch loads it from the database.
void ApplyPatch(ResolverStore::Impl& impl, const GraphPatch& patch) {
  if (!impl.engine || patch.empty()) return;
  try {
    patch.ApplyTo(*impl.engine);
    impl.PublishGraph(static_cast<int64_t>(impl.engine->MemoryBytes()));
  } catch (const std::exception& e) {
    log::Warn("resident graph: could not take a re-resolved component; reloading it", {{"cause", e.what()}});
    impl.DropGraph();
  }
}

/// Whether the stored state cannot be re-resolved piecewise: the identifier rules changed since the log was
/// classified, or the birth keys of migration 013 are not computed yet. Re-resolution is then a full rebuild.
bool NeedsFullRebuild(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                      const resolver::ProtectionConfig& protection) {
  BatchIo io(db, tx, c);
  return io.LoadState().birth_keys_pending || IdentifierRulesPending(db, tx, c, protection);
}

/// Re-resolves what a link-rule change affects, inside `tx` (the rules as this transaction sees them): the
/// closure of `seeds` only (Rebuilder::RunScoped), or every table with a full rebuild when `whole_log`
/// (NeedsFullRebuild). Returns the rebuilt engine for a full rebuild, nullptr otherwise (`patch` then says
/// how the resident graph takes the change: ApplyPatch after commit).
/// `before`, `after`: the entities the affected identifiers formed before and after (sorted; for a full rebuild,
/// those of `seeds` only).
std::unique_ptr<resolver::Engine> ReResolve(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c,
                                            const Kind& k,
                                            const std::vector<std::pair<std::string, std::string>>& seeds,
                                            bool whole_log, int64_t rule_id,
                                            const resolver::ProtectionConfig& protection, RebuildStats* stats,
                                            std::vector<std::string>* before, std::vector<std::string>* after,
                                            GraphPatch* patch) {
  auto of_seeds = [&](std::vector<std::string>* out) {
    for (const auto& [t, v] : seeds) {
      const std::string id = ResolvedEntity(db, tx, c, k, t, v);
      if (!id.empty()) out->push_back(id);
    }
    std::sort(out->begin(), out->end());
    out->erase(std::unique(out->begin(), out->end()), out->end());
  };
  if (whole_log) {
    of_seeds(before);
    auto engine = RebuildInTx(db, tx, c, protection, stats, rule_id);
    of_seeds(after);
    return engine;
  }
  const auto start = std::chrono::steady_clock::now();
  *before = BuildClosure(db, tx, c, k, seeds);
  static const RebuildControl kNoControl;
  Rebuilder r(db, tx, c, kNoControl);
  const auto replay = r.RunScoped(k, *before, rule_id, protection, stats, patch);
  FinishPatch(db, tx, c, patch);
  const resolver::Engine::Snapshot snap = replay->TakeSnapshot(/*with_identifiers=*/false);
  for (const auto& e : snap.entities[Idx(k.kind)]) after->push_back(e.id);
  std::sort(after->begin(), after->end());
  tx.exec("DROP TABLE preview_ids");
  stats->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return nullptr;
}

/// Records in entity_splits what a link-rule change did, when it changed which entities the identifiers form.
void RecordSplit(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c, const LinkRuleInfo& rule,
                 const char* cause, const std::string& by, const std::vector<std::string>& before,
                 const std::vector<std::string>& after) {
  if (before == after) return;
  db.Exec(tx, c, "resolver.record_split",
          "INSERT INTO entity_splits (kind, cause, rule_id, reason, by_key_id, before_ids, after_ids) "
          "VALUES ($1, $2, $3, $4, $5, $6::text[], $7::text[])",
          rule.kind, std::string(cause), rule.rule_id, rule.reason, by, detail::TextArray(before),
          detail::TextArray(after));
}

}  // namespace

LinkRuleResult ResolverStore::AddLinkRule(const LinkRuleInfo& in, const resolver::ProtectionConfig& protection,
                                          bool dry_run) {
  if (in.kind != "person" && in.kind != "group") {
    throw StorageError(ErrorKind::kInvalidArgument, "kind: must be person or group");
  }
  LinkRuleResult out;
  std::unique_ptr<resolver::Engine> rebuilt;
  GraphPatch patch;
  OnSession(*impl_, holds_lock_, "add link rule", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto& db = impl_->db.impl();
    const Kind& k = KindNamed(in.kind);
    LinkRuleInfo r = in;
    if (r.reason.empty()) throw StorageError(ErrorKind::kInvalidArgument, "reason: missing (say why they differ)");
    if (r.cannot_link) {
      for (auto [id, name] : {std::pair{&r.a, "a"}, std::pair{&r.b, "b"}}) {
        if (id->first.empty() || id->second.empty()) {
          throw StorageError(ErrorKind::kInvalidArgument, std::string(name) + ": type and value are required");
        }
        id->second = protection.Classify(id->first, id->second).value;
        auto q = db.Exec(tx, c, k.Stmt("link_rule_known_identifier"),
                         k.Sql("SELECT 1 FROM {k}_identifiers WHERE identifier_type = $1 AND identifier_value = $2 "
                               "LIMIT 1"),
                         id->first, id->second);
        if (q.empty()) {
          throw StorageError(ErrorKind::kInvalidArgument, std::string(name) + ": no " + k.name +
                                                              " identifier of type '" + id->first +
                                                              "' with that value in the log");
        }
      }
      if (r.a == r.b) throw StorageError(ErrorKind::kInvalidArgument, "a and b are the same identifier");
      if (r.b < r.a) std::swap(r.a, r.b);
    } else {
      if (r.event_id.empty()) {
        throw StorageError(ErrorKind::kInvalidArgument,
                           "event_id: required for an edge rule (with edge_id for one edge, without for all)");
      }
      // edge_id "": every edge of the event.
      auto q = db.Exec(tx, c, k.Stmt("link_rule_known_edge"),
                       k.Sql("SELECT 1 FROM {k}_identifiers WHERE event_id = $1 AND ($2 = '' OR edge_id = $2) "
                             "LIMIT 1"),
                       r.event_id, r.edge_id);
      if (q.empty()) {
        throw StorageError(ErrorKind::kInvalidArgument,
                           "event '" + r.event_id + "' has no " + k.name + " identifier rows" +
                               (r.edge_id.empty() ? std::string() : " under edge_id '" + r.edge_id + "'"));
      }
    }
    if (dry_run) {
      const auto start = std::chrono::steady_clock::now();
      auto existing = db.Exec(tx, c, "resolver.find_link_rule", kFindLinkRuleSql, r.kind, r.a.first, r.a.second,
                              r.b.first, r.b.second, r.event_id, r.edge_id);
      out.rule = existing.empty() ? r : LinkRuleFromRow(existing[0]);
      auto rules = ReadLinkRules(db, tx, c);
      rules.push_back(EngineRule(r));
      out.dry_run = true;
      const auto seeds = RuleIdentifiers(db, tx, c, k, r);
      out.preview = PreviewLinkRules(db, tx, c, k, seeds, rules, /*without_rule=*/-1, protection);
      FillPreviewEntities(out, seeds);
      out.rebuild.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return;
    }
    auto ins =
        db.Exec(tx, c, "resolver.insert_link_rule",
                "INSERT INTO link_rules (kind, rule_type, a_type, a_value, b_type, b_value, event_id, edge_id, reason, "
                "created_by) VALUES ($1, CASE WHEN $2 THEN 'cannot_link' ELSE 'suppress_edge' END, nullif($3, ''), "
                "nullif($4, ''), nullif($5, ''), nullif($6, ''), nullif($7, ''), nullif($8, ''), $9, $10) "
                "ON CONFLICT DO NOTHING RETURNING rule_id",
                r.kind, r.cannot_link, r.cannot_link ? r.a.first : "", r.cannot_link ? r.a.second : "",
                r.cannot_link ? r.b.first : "", r.cannot_link ? r.b.second : "", r.cannot_link ? "" : r.event_id,
                r.cannot_link ? "" : r.edge_id, r.reason, r.created_by);
    out.created = !ins.empty();
    auto existing = db.Exec(tx, c, "resolver.find_link_rule", kFindLinkRuleSql, r.kind, r.a.first, r.a.second,
                            r.b.first, r.b.second, r.event_id, r.edge_id);
    if (existing.empty()) throw StorageError(ErrorKind::kInternal, "link rule vanished after insert");
    out.rule = LinkRuleFromRow(existing[0]);
    if (out.created) {
      // A full rebuild replaces the resident graph: not holding both at the peak.
      const bool whole_log = NeedsFullRebuild(db, tx, c, protection);
      if (whole_log) impl_->DropGraph();
      std::vector<std::string> before, after;
      rebuilt = ReResolve(db, tx, c, k, RuleIdentifiers(db, tx, c, k, out.rule), whole_log, out.rule.rule_id,
                          protection, &out.rebuild, &before, &after, &patch);
      out.whole_log = rebuilt != nullptr;
      RecordSplit(db, tx, c, out.rule, "link_rule_added", out.rule.created_by, before, after);
    }
    if (out.rule.cannot_link) {
      out.entity_ids = {ResolvedEntity(db, tx, c, k, out.rule.a.first, out.rule.a.second),
                        ResolvedEntity(db, tx, c, k, out.rule.b.first, out.rule.b.second)};
    } else {
      for (const auto& row : db.Exec(tx, c, k.Stmt("link_rule_edge_entities"),
                                     k.Sql("SELECT DISTINCT coalesce(r.{id}, '') FROM {k}_identifiers x "
                                           "LEFT JOIN resolved_{k}_identifiers r ON r.identifier_type = "
                                           "x.identifier_type AND r.identifier_value = x.identifier_value "
                                           "WHERE x.event_id = $1 AND ($2 = '' OR x.edge_id = $2) ORDER BY 1"),
                                     out.rule.event_id, out.rule.edge_id)) {
        out.entity_ids.push_back(row[0].c_str());
      }
    }
  });
  if (rebuilt) {
    impl_->engine = std::move(rebuilt);
    impl_->PublishGraph(static_cast<int64_t>(impl_->engine->MemoryBytes()));
  }
  ApplyPatch(*impl_, patch);
  if (dry_run) {
    log::Info("link rule previewed", {{"kind", out.rule.kind},
                                      {"identifiers", static_cast<long long>(out.preview.identifiers)},
                                      {"events", static_cast<long long>(out.preview.events)},
                                      {"parts", static_cast<long long>(out.preview.parts.size())},
                                      {"seconds", out.rebuild.seconds}});
    return out;
  }
  log::Info("link rule added", {{"rule_id", static_cast<long long>(out.rule.rule_id)},
                                {"kind", out.rule.kind},
                                {"created", out.created},
                                {"whole_log", out.whole_log},
                                {"events", static_cast<long long>(out.rebuild.events)},
                                {"seconds", out.rebuild.seconds}});
  return out;
}

LinkRuleResult ResolverStore::RemoveLinkRule(int64_t rule_id, const resolver::ProtectionConfig& protection,
                                             bool dry_run, const std::string& removed_by) {
  LinkRuleResult out;
  if (dry_run) {
    OnSession(*impl_, holds_lock_, "preview link rule removal", [&](pqxx::work& tx, detail::PooledConnection& c) {
      auto& db = impl_->db.impl();
      const auto start = std::chrono::steady_clock::now();
      auto r = db.Exec(tx, c, "resolver.lookup_link_rule_preview", std::string(kLinkRulesSql) + " WHERE rule_id = $1",
                       rule_id);
      if (r.empty()) throw StorageError(ErrorKind::kNotFound, "link rule " + std::to_string(rule_id) + " not found");
      out.rule = LinkRuleFromRow(r[0]);
      auto rules = ReadLinkRules(db, tx, c);
      rules.erase(
          std::remove_if(rules.begin(), rules.end(), [&](const resolver::LinkRule& x) { return x.rule_id == rule_id; }),
          rules.end());
      out.dry_run = true;
      const Kind& k = KindNamed(out.rule.kind);
      const auto seeds = RuleIdentifiers(db, tx, c, k, out.rule);
      out.preview = PreviewLinkRules(db, tx, c, k, seeds, rules, rule_id, protection);
      FillPreviewEntities(out, seeds);
      out.rebuild.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
    return out;
  }
  std::unique_ptr<resolver::Engine> rebuilt;
  GraphPatch patch;
  OnSession(*impl_, holds_lock_, "remove link rule", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto& db = impl_->db.impl();
    auto r = db.Exec(tx, c, "resolver.lookup_link_rule", std::string(kLinkRulesSql) + " WHERE rule_id = $1 FOR UPDATE",
                     rule_id);
    if (r.empty()) throw StorageError(ErrorKind::kNotFound, "link rule " + std::to_string(rule_id) + " not found");
    out.rule = LinkRuleFromRow(r[0]);
    db.Exec(tx, c, "resolver.delete_link_rule", "DELETE FROM link_rules WHERE rule_id = $1", rule_id);
    // Quarantines the rule caused are open ones of the closure: re-resolving it recomputes them.
    const Kind& k = KindNamed(out.rule.kind);
    std::vector<std::string> before, after;
    const bool whole_log = NeedsFullRebuild(db, tx, c, protection);
    if (whole_log) impl_->DropGraph();
    rebuilt = ReResolve(db, tx, c, k, RuleIdentifiers(db, tx, c, k, out.rule), whole_log, /*rule_id=*/0, protection,
                        &out.rebuild, &before, &after, &patch);
    out.whole_log = rebuilt != nullptr;
    RecordSplit(db, tx, c, out.rule, "link_rule_removed", removed_by, before, after);
    if (out.rule.cannot_link) {
      out.entity_ids = {ResolvedEntity(db, tx, c, k, out.rule.a.first, out.rule.a.second),
                        ResolvedEntity(db, tx, c, k, out.rule.b.first, out.rule.b.second)};
    }
  });
  if (rebuilt) {
    impl_->engine = std::move(rebuilt);
    impl_->PublishGraph(static_cast<int64_t>(impl_->engine->MemoryBytes()));
  }
  ApplyPatch(*impl_, patch);
  log::Info("link rule removed", {{"rule_id", static_cast<long long>(rule_id)},
                                  {"whole_log", out.whole_log},
                                  {"events", static_cast<long long>(out.rebuild.events)},
                                  {"seconds", out.rebuild.seconds}});
  return out;
}

std::vector<LinkRuleInfo> ResolverStore::ListLinkRules(Database& db, int64_t after_id, int limit) {
  std::vector<LinkRuleInfo> out;
  db.impl().Run(
      "list link rules",
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        out.clear();
        for (const auto& row : db.impl().Exec(
                 tx, c, "resolver.list_link_rules",
                 std::string(kLinkRulesSql) + " WHERE rule_id > $1 ORDER BY rule_id LIMIT $2", after_id, limit)) {
          out.push_back(LinkRuleFromRow(row));
        }
      },
      1);
  return out;
}

namespace {

/// The erasure's working sets, as temporary tables of the transaction (dropped at commit).
class Eraser {
 public:
  Eraser(Database::Impl& db, pqxx::work& tx, detail::PooledConnection& c) : db_(db), tx_(tx), c_(c) {}

  /// Resolves one input to the identifiers it erases (added to `ids_`). Returns the outcome.
  EraseOutcome Resolve(const EraseTarget& t, const resolver::ProtectionConfig& protection) {
    EraseOutcome o;
    auto fail = [&](std::string why) {
      o.outcome = "failed";
      o.detail = std::move(why);
      return o;
    };
    std::set<std::pair<std::string, std::string>> found;
    const Kind* k = nullptr;
    if (!t.entity_id.empty()) {
      if (t.entity_id.rfind("per_", 0) == 0) {
        k = &kPerson;
      } else if (t.entity_id.rfind("grp_", 0) == 0) {
        k = &kGroup;
      } else {
        return fail("entity_id: not an entity id (per_... or grp_...)");
      }
      auto a =
          db_.Exec(tx_, c_, k->Stmt("erase_follow_alias"),
                   k->Sql("SELECT coalesce((SELECT new_id FROM {k}_id_aliases WHERE old_id = $1), $1)"), t.entity_id);
      const std::string id = a[0][0].c_str();
      for (const auto& row : db_.Exec(tx_, c_, k->Stmt("erase_entity_identifiers"),
                                      k->Sql("SELECT identifier_type, identifier_value FROM resolved_{k}_identifiers "
                                             "WHERE {id} = $1"),
                                      id)) {
        found.emplace(row[0].c_str(), row[1].c_str());
      }
      if (!found.empty()) o.entity_ids.push_back(id);
    } else {
      if (t.kind != "person" && t.kind != "group") return fail("identifier: kind must be person or group");
      if (t.type.empty() || t.value.empty()) return fail("identifier: type and value are required");
      k = &KindNamed(t.kind);
      const std::string value = protection.Classify(t.type, t.value).value;
      const std::string entity = ResolvedEntity(db_, tx_, c_, *k, t.type, value);
      if (t.whole_entity && !entity.empty()) {
        for (const auto& row : db_.Exec(tx_, c_, k->Stmt("erase_entity_identifiers"),
                                        k->Sql("SELECT identifier_type, identifier_value FROM "
                                               "resolved_{k}_identifiers WHERE {id} = $1"),
                                        entity)) {
          found.emplace(row[0].c_str(), row[1].c_str());
        }
      } else {
        auto q = db_.Exec(tx_, c_, k->Stmt("link_rule_known_identifier"),
                          k->Sql("SELECT 1 FROM {k}_identifiers WHERE identifier_type = $1 AND identifier_value = $2 "
                                 "LIMIT 1"),
                          t.type, value);
        if (!q.empty() || !entity.empty()) found.emplace(t.type, value);
      }
      if (!entity.empty()) o.entity_ids.push_back(entity);
    }
    if (found.empty()) {
      o.outcome = "not_found";
      o.detail = "nothing stored for this input";
      return o;
    }
    o.outcome = "erased";
    o.identifiers = static_cast<int64_t>(found.size());
    for (const auto& f : found) ids_[static_cast<size_t>(k->kind)].insert(f);
    return o;
  }

  bool empty() const { return ids_[0].empty() && ids_[1].empty(); }
  /// The identifiers of kind `k` the inputs erase (after Resolve).
  std::vector<std::pair<std::string, std::string>> Identifiers(EntityKind k) const {
    return {ids_[Idx(k)].begin(), ids_[Idx(k)].end()};
  }

  /// Stages the working sets and counts what would go, per table. Entities affected into `entities`.
  std::map<std::string, int64_t> Stage(std::vector<std::string>* entities) {
    tx_.exec("CREATE TEMP TABLE er_ids (k text, t text, v text) ON COMMIT DROP");
    {
      pqxx::stream_to s(tx_, "er_ids", std::vector<std::string>{"k", "t", "v"});
      for (const Kind* k : {&kPerson, &kGroup}) {
        for (const auto& [t, v] : ids_[static_cast<size_t>(k->kind)]) s << std::make_tuple(k->name, t, v);
      }
      s.complete();
    }
    tx_.exec("ANALYZE er_ids");
    // Each staging table is analyzed at once: without statistics the planner guesses its size and may scan whole
    // log tables where an index lookup per row is what the few rows of one person need. Rows carry occurred_at so
    // that lookups in the partitioned log reach one partition.
    auto stage = [&](const std::string& stmt, const std::string& table, const std::string& select) {
      Exec(stmt, "CREATE TEMP TABLE " + table + " ON COMMIT DROP AS " + select);
      tx_.exec("ANALYZE " + table);
    };
    for (const Kind* k : {&kPerson, &kGroup}) {
      // Rows of erased identifiers; the mentions (event, edge) they make up alone (other rows of such a mention are
      // blocked ones of the same mention); every identifier row of those mentions; their trait rows.
      stage(k->Stmt("erase_stage_rows"), "er_rows_" + k->name,
            k->Sql("SELECT x.id, x.event_id, x.edge_id, x.occurred_at FROM er_ids e JOIN {k}_identifiers x ON "
                   "x.identifier_type = e.t AND x.identifier_value = e.v WHERE e.k = '{k}'"));
      stage(k->Stmt("erase_stage_mentions"), "er_mentions_" + k->name,
            k->Sql("SELECT DISTINCT r.event_id, r.edge_id, r.occurred_at FROM er_rows_{k} r WHERE NOT EXISTS "
                   "(SELECT 1 FROM {k}_identifiers o WHERE o.event_id = r.event_id AND o.occurred_at = r.occurred_at "
                   "AND o.edge_id = r.edge_id AND NOT o.is_blocked AND NOT EXISTS (SELECT 1 FROM er_ids e WHERE "
                   "e.k = '{k}' AND e.t = o.identifier_type AND e.v = o.identifier_value))"));
      stage(k->Stmt("erase_stage_idrows"), "er_idrows_" + k->name,
            k->Sql("SELECT id, occurred_at FROM er_rows_{k} UNION SELECT o.id, o.occurred_at FROM er_mentions_{k} m "
                   "JOIN {k}_identifiers o ON o.event_id = m.event_id AND o.occurred_at = m.occurred_at AND "
                   "o.edge_id = m.edge_id"));
      stage(k->Stmt("erase_stage_traitrows"), "er_traitrows_" + k->name,
            k->Sql("SELECT t.id, t.occurred_at FROM er_mentions_{k} m JOIN {k}_traits t ON t.event_id = m.event_id "
                   "AND t.occurred_at = m.occurred_at AND t.edge_id = m.edge_id"));
    }
    // Events nobody else takes part in (no identifier row of either kind left).
    stage("resolver.erase_stage_events", "er_events",
          "SELECT ev.event_id, ev.occurred_at FROM (SELECT event_id, occurred_at FROM er_rows_person UNION SELECT "
          "event_id, occurred_at FROM er_rows_group) ev WHERE NOT EXISTS (SELECT 1 FROM person_identifiers p WHERE "
          "p.event_id = ev.event_id AND p.occurred_at = ev.occurred_at AND NOT EXISTS (SELECT 1 FROM er_idrows_person "
          "d WHERE d.id = p.id)) AND NOT EXISTS (SELECT 1 FROM group_identifiers g WHERE g.event_id = ev.event_id AND "
          "g.occurred_at = ev.occurred_at AND NOT EXISTS (SELECT 1 FROM er_idrows_group d WHERE d.id = g.id))");
    for (const Kind* k : {&kPerson, &kGroup}) {
      stage(k->Stmt("erase_stage_iddel"), "er_iddel_" + k->name,
            k->Sql("SELECT id, occurred_at FROM er_idrows_{k} UNION SELECT x.id, x.occurred_at FROM er_events e JOIN "
                   "{k}_identifiers x ON x.event_id = e.event_id AND x.occurred_at = e.occurred_at"));
      stage(k->Stmt("erase_stage_traitdel"), "er_traitdel_" + k->name,
            k->Sql("SELECT id, occurred_at FROM er_traitrows_{k} UNION SELECT x.id, x.occurred_at FROM er_events e "
                   "JOIN {k}_traits x ON x.event_id = e.event_id AND x.occurred_at = e.occurred_at"));
      // Entities affected, and those erased whole (every resolved identifier erased).
      stage(k->Stmt("erase_stage_affected"), "er_affected_" + k->name,
            k->Sql("SELECT DISTINCT r.{id} AS id FROM er_ids e JOIN resolved_{k}_identifiers r ON "
                   "r.identifier_type = e.t AND r.identifier_value = e.v WHERE e.k = '{k}'"));
      stage(k->Stmt("erase_stage_gone"), "er_gone_" + k->name,
            k->Sql("SELECT a.id FROM er_affected_{k} a WHERE NOT EXISTS (SELECT 1 FROM resolved_{k}_identifiers r "
                   "WHERE r.{id} = a.id AND NOT EXISTS (SELECT 1 FROM er_ids e WHERE e.k = '{k}' AND "
                   "e.t = r.identifier_type AND e.v = r.identifier_value))"));
    }
    // Membership rows naming an erased identifier (they sit in the events that carry it), and those of deleted
    // events.
    stage("resolver.erase_stage_memberships", "er_memdel",
          "SELECT x.id, x.occurred_at FROM (SELECT event_id, occurred_at FROM er_rows_person UNION SELECT event_id, "
          "occurred_at FROM er_rows_group) ev JOIN membership_identifiers x ON x.event_id = ev.event_id AND "
          "x.occurred_at = ev.occurred_at WHERE EXISTS (SELECT 1 FROM er_ids e WHERE (e.k = 'person' AND "
          "e.t = x.person_identifier_type AND e.v = x.person_identifier) OR (e.k = 'group' AND "
          "e.t = x.group_identifier_type AND e.v = x.group_identifier)) OR (ev.event_id, ev.occurred_at) IN (SELECT "
          "event_id, occurred_at FROM er_events)");

    std::map<std::string, int64_t> counts;
    auto count = [&](const std::string& table, const std::string& sql) {
      const std::string stmt = "resolver.erase_count_" + table;  // the timer keeps a view of it
      detail::StatementTimer t(db_.observer, stmt);
      counts[table] = tx_.exec("SELECT count(*) " + sql)[0][0].as<int64_t>();
      t.Ok();
    };
    count("events", "FROM er_events");
    count("membership_identifiers", "FROM er_memdel");
    count("resolved_membership_identifiers",
          "FROM resolved_membership_identifiers r WHERE r.membership_identifier_id IN (SELECT id FROM er_memdel) OR "
          "r.person_id IN (SELECT id FROM er_gone_person) OR r.group_id IN (SELECT id FROM er_gone_group)");
    count("memberships",
          "FROM memberships m WHERE m.person_id IN (SELECT id FROM er_gone_person) OR m.group_id IN (SELECT id FROM "
          "er_gone_group)");
    for (const Kind* k : {&kPerson, &kGroup}) {
      count(k->name + "_identifiers", "FROM er_iddel_" + k->name);
      count(k->name + "_traits", "FROM er_traitdel_" + k->name);
      count("resolved_" + k->name + "_identifiers",
            k->Sql("FROM er_ids e JOIN resolved_{k}_identifiers r ON r.identifier_type = e.t AND r.identifier_value = "
                   "e.v WHERE e.k = '{k}'"));
      count("resolved_" + k->name + "_traits",
            k->Sql("FROM resolved_{k}_traits t WHERE t.{id} IN (SELECT id FROM er_gone_{k})"));
      count(k->entities, "FROM er_gone_" + k->name);
      count(k->name + "_participants", k->Sql("FROM {k}_participants p WHERE p.{id} IN (SELECT id FROM er_gone_{k})"));
      count(k->name + "_id_aliases", k->Sql("FROM {k}_id_aliases a WHERE a.new_id IN (SELECT id FROM er_gone_{k})"));
      for (const auto& row : tx_.exec("SELECT id FROM er_affected_" + k->name + " ORDER BY id")) {
        entities->push_back(row[0].c_str());
      }
    }
    count("quarantined_edges", QuarantineWhere());
    count("link_rules", LinkRuleWhere());
    count("entity_id_overrides", IdOverrideWhere());
    count("suppressed_identifiers", "FROM er_ids");
    return counts;
  }

  /// Deletes what Stage found and suppresses the erased identifiers under `operation_id`.
  void Delete(const std::string& operation_id) {
    Exec("resolver.erase_quarantine", "DELETE " + QuarantineWhere());
    // The split history of the rules that go, and the erased entities' ids in the rest of it.
    Exec("resolver.erase_split_history",
         "DELETE FROM entity_splits WHERE rule_id IN (SELECT l.rule_id " + LinkRuleWhere() + ")");
    for (const Kind* k : {&kPerson, &kGroup}) {
      Exec(k->Stmt("erase_split_ids"),
           k->Sql("UPDATE entity_splits s SET before_ids = ARRAY(SELECT x FROM unnest(s.before_ids) x WHERE x NOT IN "
                  "(SELECT id FROM er_gone_{k})), after_ids = ARRAY(SELECT x FROM unnest(s.after_ids) x WHERE x NOT IN "
                  "(SELECT id FROM er_gone_{k})) WHERE s.kind = '{k}' AND (s.before_ids || s.after_ids) && "
                  "ARRAY(SELECT id FROM er_gone_{k})"));
    }
    Exec("resolver.erase_id_overrides", "DELETE " + IdOverrideWhere());  // before the rules: a rule's go with it
    Exec("resolver.erase_link_rules", "DELETE " + LinkRuleWhere());
    Exec("resolver.erase_resolved_memberships",
         "DELETE FROM resolved_membership_identifiers WHERE membership_identifier_id IN (SELECT id FROM er_memdel)");
    Exec("resolver.erase_membership_rows",
         "DELETE FROM membership_identifiers x USING er_memdel d WHERE x.id = d.id AND x.occurred_at = d.occurred_at");
    for (const Kind* k : {&kPerson, &kGroup}) {
      Exec(k->Stmt("erase_traits"),
           k->Sql(
               "DELETE FROM {k}_traits x USING er_traitdel_{k} d WHERE x.id = d.id AND x.occurred_at = d.occurred_at"));
      Exec(k->Stmt("erase_identifiers"),
           k->Sql("DELETE FROM {k}_identifiers x USING er_iddel_{k} d WHERE x.id = d.id AND x.occurred_at = "
                  "d.occurred_at"));
    }
    Exec("resolver.erase_events",
         "DELETE FROM events x USING er_events d WHERE x.event_id = d.event_id AND x.occurred_at = d.occurred_at");
    Exec("resolver.erase_event_keys", "DELETE FROM event_keys WHERE event_id IN (SELECT event_id FROM er_events)");
    db_.Exec(tx_, c_, "resolver.erase_suppress",
             "INSERT INTO suppressed_identifiers (kind, id_hash, operation_id) SELECT e.k, " +
                 detail::IdentifierHashSql("e.k", "e.t", "e.v") +
                 ", $1 FROM er_ids e ON CONFLICT (kind, id_hash) DO NOTHING",
             operation_id);
  }

  std::vector<std::string> ErasedHashes() {
    std::vector<std::string> out;
    for (const auto& row :
         tx_.exec("SELECT " + detail::IdentifierHashSql("e.k", "e.t", "e.v") + " FROM er_ids e ORDER BY 1")) {
      out.push_back(row[0].c_str());
    }
    return out;
  }

 private:
  static std::string QuarantineWhere() {
    return "FROM quarantined_edges q WHERE q.event_id IN (SELECT event_id FROM er_events) OR q.identifier_values && "
           "ARRAY(SELECT e.v FROM er_ids e WHERE e.k = q.kind)";
  }
  /// Id overrides giving an erased entity's id, and those of the link rules that go.
  static std::string IdOverrideWhere() {
    return "FROM entity_id_overrides o WHERE (o.kind = 'person' AND o.entity_id IN (SELECT id FROM er_gone_person)) "
           "OR (o.kind = 'group' AND o.entity_id IN (SELECT id FROM er_gone_group)) OR o.rule_id IN (SELECT "
           "l.rule_id " +
           LinkRuleWhere() + ")";
  }
  static std::string LinkRuleWhere() {
    return "FROM link_rules l WHERE EXISTS (SELECT 1 FROM er_ids e WHERE e.k = l.kind AND ((e.t = l.a_type AND "
           "e.v = l.a_value) OR (e.t = l.b_type AND e.v = l.b_value))) OR l.event_id IN (SELECT event_id FROM "
           "er_events)";
  }
  void Exec(const std::string& stmt, const std::string& sql) {
    detail::StatementTimer t(db_.observer, stmt);
    tx_.exec(sql);
    t.Ok();
  }

  Database::Impl& db_;
  pqxx::work& tx_;
  detail::PooledConnection& c_;
  std::array<std::set<std::pair<std::string, std::string>>, resolver::kKinds> ids_;
};

}  // namespace

EraseResult ResolverStore::Erase(const EraseRequest& req, const resolver::ProtectionConfig& protection) {
  if (!req.dry_run && req.request_id.empty()) {
    throw StorageError(ErrorKind::kInvalidArgument, "request_id: required (an idempotency key of your choice)");
  }
  if (req.targets.empty()) throw StorageError(ErrorKind::kInvalidArgument, "targets: at least one is required");
  EraseResult out;
  out.dry_run = req.dry_run;
  std::unique_ptr<resolver::Engine> rebuilt;
  bool changed = false;
  GraphPatch patch;
  OnSession(*impl_, holds_lock_, "erase", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto& db = impl_->db.impl();
    out = EraseResult{};
    out.dry_run = req.dry_run;
    if (!req.dry_run) {
      // Serialize with a concurrent erasure of the same request id (the second waits, then replays).
      db.Exec(tx, c, "resolver.erase_request_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 15))",
              req.request_id);
      auto done =
          db.Exec(tx, c, "resolver.erase_replay",
                  "SELECT operation_id, outcomes, count_tables, count_rows::text[], erased_hashes, " NEXUS_TS_TO_US(
                      "at") " FROM erasures WHERE request_id = $1",
                  req.request_id);
      if (!done.empty()) {
        out.replayed = true;
        out.operation_id = done[0][0].c_str();
        for (const auto& o : ParseTextArray(done[0][1])) out.outcomes.push_back({o, "", {}, 0});
        const auto tables = ParseTextArray(done[0][2]), rows = ParseTextArray(done[0][3]);
        for (size_t i = 0; i < tables.size() && i < rows.size(); ++i) out.counts[tables[i]] = std::stoll(rows[i]);
        out.erased_hashes = ParseTextArray(done[0][4]);
        out.at_us = done[0][5].as<int64_t>();
        return;
      }
      out.operation_id = "erasure-" + StableId128("erasure\x1f" + req.request_id);
    }
    Eraser er(db, tx, c);
    for (const auto& t : req.targets) out.outcomes.push_back(er.Resolve(t, protection));
    if (req.dry_run) {
      for (auto& o : out.outcomes) {
        if (o.outcome == "erased") o.outcome = "would_erase";
      }
    }
    out.counts = er.Stage(&out.entity_ids);
    out.erased_hashes = er.ErasedHashes();
    if (req.dry_run) return;  // only temporary tables were written
    // Ingest that commits while this runs must not slip an erased identifier in: hold new events back until
    // commit (ingest checks the suppression list after inserting its events, so it then sees the new entries).
    tx.exec("LOCK TABLE events IN SHARE MODE");
    if (!er.empty()) {
      // Re-resolve only what the erased identifiers belonged to: each kind's closure (BuildClosure), taken
      // before the rows go (it is then a superset of what the remaining log links), replayed after. Persons
      // first: the groups' replay loads the persons' side as the persons' replay left it.
      BatchIo io(db, tx, c);
      out.whole_log = io.LoadState().birth_keys_pending || IdentifierRulesPending(db, tx, c, protection);
      std::array<std::vector<std::string>, resolver::kKinds> old_ids;
      std::array<bool, resolver::kKinds> scoped{};
      for (const Kind* k : {&kPerson, &kGroup}) {
        const auto seeds = er.Identifiers(k->kind);
        if (out.whole_log || seeds.empty()) continue;
        old_ids[Idx(k->kind)] = BuildClosure(db, tx, c, *k, seeds);
        scoped[Idx(k->kind)] = true;
        tx.exec("ALTER TABLE preview_ids RENAME TO erase_closure_" + k->name);
      }
      er.Delete(out.operation_id);
      if (out.whole_log) impl_->DropGraph();  // replaced by the rebuilt one: not holding both at the peak
      if (!out.whole_log) {
        // The watermark names an event: when it was erased, the last remaining one before it marks the same
        // position (as a rebuild would name it).
        db.Exec(tx, c, "resolver.erase_watermark",
                "UPDATE resolver_state s SET watermark_xid = coalesce(w._ingest_xid, '0'), watermark_event_id = "
                "coalesce(w.event_id, ''), watermark_ingested_at = w._ingested_at FROM resolver_state s0 LEFT JOIN "
                "LATERAL (SELECT e._ingest_xid, e.event_id, e._ingested_at FROM events e WHERE (e._ingest_xid, "
                "e.event_id) <= (s0.watermark_xid, s0.watermark_event_id) ORDER BY e._ingest_xid DESC, "
                "e.event_id DESC LIMIT 1) w ON true WHERE s0.watermark_event_id <> '' AND NOT EXISTS (SELECT 1 FROM "
                "events x WHERE x._ingest_xid = s0.watermark_xid AND x.event_id = s0.watermark_event_id)");
      }
      RebuildStats stats;
      if (out.whole_log) {
        rebuilt = RebuildInTx(db, tx, c, protection, &stats);
        out.events_replayed = stats.events;
      }
      for (const Kind* k : {&kPerson, &kGroup}) {
        if (!scoped[Idx(k->kind)]) continue;
        tx.exec("ALTER TABLE erase_closure_" + k->name + " RENAME TO preview_ids");
        static const RebuildControl kNoControl;
        Rebuilder r(db, tx, c, kNoControl);
        r.RunScoped(*k, old_ids[Idx(k->kind)], /*rule_id=*/0, protection, &stats, &patch);
        out.events_replayed += stats.events;
        tx.exec("DROP TABLE preview_ids");
      }
      FinishPatch(db, tx, c, &patch);
      changed = true;
    }
    std::vector<std::string> inputs, outcomes, tables;
    std::vector<int64_t> rows;
    for (const auto& t : req.targets) {
      inputs.push_back(t.entity_id.empty()
                           ? t.kind + "\x1f" + t.type + "\x1f" + protection.Classify(t.type, t.value).value
                           : "entity\x1f" + t.entity_id);
    }
    for (const auto& o : out.outcomes) outcomes.push_back(o.outcome);
    for (const auto& [t, n] : out.counts) {
      tables.push_back(t);
      rows.push_back(n);
    }
    auto at = db.Exec(
        tx, c, "resolver.erase_record",
        "INSERT INTO erasures (operation_id, request_id, key_id, input_hashes, outcomes, erased_hashes, count_tables, "
        "count_rows, entities) SELECT $1, $2, $3, ARRAY(SELECT " +
            detail::IdentifierHashSql("'input'", "''", "i") +
            " FROM unnest($4::text[]) WITH ORDINALITY AS u(i, n) ORDER BY n), $5::text[], $6::text[], $7::text[], "
            "$8::bigint[], $9 RETURNING " NEXUS_TS_TO_US("at"),
        out.operation_id, req.request_id, req.key_id, detail::TextArray(inputs), detail::TextArray(outcomes),
        detail::TextArray(out.erased_hashes), detail::TextArray(tables), detail::Int64Array(rows),
        static_cast<int64_t>(out.entity_ids.size()));
    out.at_us = at[0][0].as<int64_t>();
  });
  if (rebuilt) {
    impl_->engine = std::move(rebuilt);
    impl_->PublishGraph(static_cast<int64_t>(impl_->engine->MemoryBytes()));
  }
  if (changed) ApplyPatch(*impl_, patch);
  if (!out.dry_run) {
    log::Info("erasure", {{"operation_id", out.operation_id},
                          {"replayed", out.replayed},
                          {"whole_log", out.whole_log},
                          {"events_replayed", static_cast<long long>(out.events_replayed)},
                          {"identifiers", static_cast<long long>(out.erased_hashes.size())},
                          {"entities", static_cast<long long>(out.entity_ids.size())}});
  }
  return out;
}

std::vector<SuppressionInfo> ResolverStore::ListSuppressions(Database& db, const std::string& after_hash, int limit) {
  std::vector<SuppressionInfo> out;
  db.impl().Run(
      "list suppressions",
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        out.clear();
        for (const auto& row : db.impl().Exec(tx, c, "resolver.list_suppressions",
                                              "SELECT kind, id_hash, operation_id, " NEXUS_TS_TO_US(
                                                  "suppressed_at") " FROM suppressed_identifiers "
                                                                   "WHERE id_hash > $1 ORDER BY id_hash, kind LIMIT $2",
                                              after_hash, limit)) {
          out.push_back({row[0].c_str(), row[1].c_str(), row[2].c_str(), row[3].as<int64_t>()});
        }
      },
      1);
  return out;
}

std::string ResolverStore::LiftSuppression(Database& db, const std::string& kind, const std::string& type,
                                           const std::string& value, const std::string& id_hash) {
  if (kind != "person" && kind != "group") {
    throw StorageError(ErrorKind::kInvalidArgument, "kind: must be person or group");
  }
  std::string lifted;
  db.impl().Run(
      "lift suppression",
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        auto r = db.impl().Exec(
            tx, c, "resolver.lift_suppression",
            "DELETE FROM suppressed_identifiers WHERE kind = $1::text AND id_hash = CASE WHEN $2::text = '' THEN "
            "$4::text ELSE " +
                detail::IdentifierHashSql("$1::text", "$2::text", "$3::text") + " END RETURNING id_hash",
            kind, type, value, id_hash);
        lifted = r.empty() ? "" : r[0][0].c_str();
      },
      1);
  if (lifted.empty()) throw StorageError(ErrorKind::kNotFound, "that identifier is not suppressed");
  return lifted;
}

int ResolverStore::EnsureLogPartitions(Database& db, int months_ahead) {
  int created = 0;
  db.impl().Run("log partitions", [&](pqxx::work& tx, detail::PooledConnection& c) {
    created = db.impl()
                  .Exec(tx, c, "resolver.ensure_partitions", "SELECT nexus_ensure_partitions($1)", months_ahead)[0][0]
                  .as<int>();
  });
  return created;
}

ResolverStatusInfo ResolverStore::Status(Database& db, int64_t pending_limit) {
  ResolverStatusInfo out;
  db.impl().Run(
      "resolver status",
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        auto r = db.impl().Exec(tx, c, "resolver.status",
                                "SELECT " NEXUS_TS_TO_US("watermark_ingested_at") ", watermark_event_id, batches_total, "
                                NEXUS_TS_TO_US("last_batch_at") ", persons_count, groups_count, watermark_xid::text "
                                "FROM resolver_state");
        const auto& row = r[0];
        if (!row[0].is_null()) out.watermark_ingested_at_us = row[0].as<int64_t>();
        out.watermark_event_id = row[1].c_str();
        out.batches_total = row[2].as<int64_t>();
        if (!row[3].is_null()) out.last_batch_at_us = row[3].as<int64_t>();
        out.persons = row[4].as<int64_t>();
        out.groups = row[5].as<int64_t>();
        // The backlog, with the watermark as literals: the planner then sees how few events lie past it and
        // walks the _ingest_xid index (with the watermark as an unknown it scanned all events, ~1 s at 1M).
        const std::string wx = tx.quote(row[6].c_str()) + "::xid8", we = tx.quote(out.watermark_event_id);
        const std::string past = "FROM events e WHERE e._ingest_xid >= " + wx + " AND (e._ingest_xid, e.event_id) > (" +
                                 wx + ", " + we + ")";
        detail::StatementTimer t(db.observer(), "resolver.status_backlog");
        auto p = tx.exec("SELECT (SELECT count(*) FROM (SELECT 1 " + past + " LIMIT " +
                         std::to_string(std::max<int64_t>(0, pending_limit)) +
                         ") p), "
                         "coalesce(extract(epoch from now() - (SELECT e._ingested_at " +
                         past + " ORDER BY e._ingest_xid, e.event_id LIMIT 1)), 0)::float8");
        t.Ok();
        out.events_pending = p[0][0].as<int64_t>();
        out.lag_seconds = std::max(0.0, p[0][1].as<double>());
      },
      1);
  return out;
}

std::vector<QuarantinedEdgeInfo> ResolverStore::ListQuarantined(Database& db, const std::string& kind,
                                                                bool include_released, int64_t after_id, int limit) {
  std::vector<QuarantinedEdgeInfo> out;
  db.impl().Run(
      "list quarantine",
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        out.clear();
        auto r = db.impl().Exec(
        tx, c, "resolver.list_quarantine",
        "SELECT quarantine_id, kind, event_id, edge_id, source, " NEXUS_TS_TO_US("occurred_at") ", identifier_types, "
        "identifier_values, reason, entity_ids, " NEXUS_TS_TO_US("quarantined_at") ", released_at IS NOT NULL "
        "FROM quarantined_edges WHERE quarantine_id > $1 AND ($2 = '' OR kind = $2) AND ($3 OR released_at IS NULL) "
        "ORDER BY quarantine_id LIMIT $4",
        after_id, kind, include_released, limit);
        auto parse = [](const pqxx::field& f) {
          std::vector<std::string> v;
          auto arr = f.as_array();
          for (auto x = arr.get_next(); x.first != pqxx::array_parser::done; x = arr.get_next()) {
            if (x.first == pqxx::array_parser::string_value) v.push_back(x.second);
          }
          return v;
        };
        for (const auto& row : r) {
          QuarantinedEdgeInfo q;
          q.quarantine_id = row[0].as<int64_t>();
          q.kind = row[1].c_str();
          q.event_id = row[2].c_str();
          q.edge_id = row[3].c_str();
          q.source = row[4].c_str();
          q.occurred_at_us = row[5].as<int64_t>();
          const auto types = parse(row[6]), values = parse(row[7]);
          for (size_t i = 0; i < types.size() && i < values.size(); ++i)
            q.identifiers.emplace_back(types[i], values[i]);
          q.reason = row[8].c_str();
          q.entity_ids = parse(row[9]);
          q.quarantined_at_us = row[10].as<int64_t>();
          q.released = row[11].as<bool>();
          out.push_back(std::move(q));
        }
      },
      1);
  return out;
}

}  // namespace nexus::storage
