#include "storage/ingest_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <tuple>
#include <unordered_set>

#include "common/log.h"
#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {

constexpr const char* kInsertEvents = "ingest.insert_events";
constexpr const char* kCommitLsn = "ingest.commit_lsn";
constexpr const char* kCommitLsnSql = "SELECT pg_current_wal_insert_lsn()::text";
// event_keys holds the uniqueness of event_id (events is partitioned by occurred_at, migration 012): an event
// whose key is new is inserted, one whose key exists is a duplicate (a retry, or a concurrent batch that won).
constexpr const char* kInsertEventsSql =
    "WITH u AS (SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], "
    "$7::numeric[], $8::text[]) AS u(event_id, occurred_at, event_name, event_description, event_type, source, "
    "value, value_unit)), "
    "k AS (INSERT INTO event_keys (event_id, occurred_at) SELECT event_id, occurred_at FROM u "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id) "
    "INSERT INTO events (event_id, occurred_at, event_name, event_description, event_type, source, value, "
    "value_unit) SELECT u.* FROM u JOIN k USING (event_id) RETURNING event_id";

std::string FormatDouble(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::optional<std::string> Opt(const std::optional<std::string>& s) { return s; }

}  // namespace

void IngestStore::EnsureMonths(const std::vector<const EventRecord*>& events) {
  std::set<std::string> wanted;  // "YYYYMM"
  for (const auto* e : events) wanted.insert(detail::LogMonth(e->occurred_at_us));
  if (wanted.empty()) return;
  auto& impl = db_.impl();
  std::vector<std::string> missing;
  impl.Run("log partitions", [&](pqxx::work& tx, detail::PooledConnection& c) {
    missing.clear();
    for (const auto& row : impl.Exec(tx, c, "ingest.missing_partitions",
                                     "SELECT m FROM unnest($1::text[]) AS m WHERE to_regclass('events_p' || m) IS NULL",
                                     detail::TextArray(std::vector<std::string>(wanted.begin(), wanted.end())))) {
      missing.push_back(row[0].c_str());
    }
  });
  for (const auto& m : missing) {
    int created = 0;
    impl.Run("log partition", [&](pqxx::work& tx, detail::PooledConnection& c) {
      created = impl.Exec(tx, c, "ingest.create_partition", "SELECT nexus_ensure_month(to_date($1, 'YYYYMM'))", m)[0][0]
                    .as<int>();
    });
    if (created > 0) log::Info("core log month created", {{"month", m}, {"partitions", created}});
  }
}

IngestResult IngestStore::Ingest(const std::vector<EventRecord>& events) {
  IngestResult result;
  // Duplicates inside the batch: the first occurrence wins. Insert in event_id order so that two
  // concurrent batches with overlapping ids lock rows in the same order (no deadlock).
  std::vector<const EventRecord*> order;
  std::unordered_set<std::string> seen;
  std::vector<std::string> dup_in_batch;
  for (const auto& e : events) {
    if (seen.insert(e.event_id).second)
      order.push_back(&e);
    else
      dup_in_batch.push_back(e.event_id);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->event_id < b->event_id; });

  std::vector<std::string> ids, names, types, sources, occurred;
  std::vector<std::optional<std::string>> descriptions, values, units;
  for (const auto* e : order) {
    ids.push_back(e->event_id);
    occurred.push_back(detail::FormatTimestamp(e->occurred_at_us));
    names.push_back(e->event_name);
    descriptions.push_back(Opt(e->event_description));
    types.push_back(e->event_type);
    sources.push_back(e->source);
    values.push_back(e->value ? std::optional<std::string>(FormatDouble(*e->value)) : std::nullopt);
    units.push_back(Opt(e->value_unit));
  }
  const std::string a_ids = detail::TextArray(ids), a_occ = detail::TextArray(occurred),
                    a_names = detail::TextArray(names), a_desc = detail::TextArray(descriptions),
                    a_types = detail::TextArray(types), a_src = detail::TextArray(sources),
                    a_val = detail::TextArray(values), a_units = detail::TextArray(units);

  EnsureMonths(order);
  auto& impl = db_.impl();
  impl.Run("ingest", [&](pqxx::work& tx, detail::PooledConnection& c) {
    result = IngestResult{};
    const auto start = std::chrono::steady_clock::now();
    if (order.empty()) return;
    auto r = impl.Exec(tx, c, kInsertEvents, kInsertEventsSql, a_ids, a_occ, a_names, a_desc, a_types, a_src, a_val,
                       a_units);
    std::unordered_set<std::string> inserted;
    for (const auto& row : r) inserted.insert(row[0].c_str());
    result.accepted = static_cast<int64_t>(inserted.size());
    result.rows_by_table["events"] = result.accepted;
    for (const auto* e : order) {
      if (!inserted.count(e->event_id)) result.duplicate_event_ids.push_back(e->event_id);
    }
    // Erased identifiers stay out (suppression list, issue 15). Checked after the events were inserted: an
    // erasure holds new events back (LOCK events) until it commits, so this statement then sees its entries.
    // The first sub-select makes the check free while nothing is suppressed.
    std::set<std::tuple<char, std::string, std::string>> suppressed;  // ('p'|'g', type, value)
    std::set<std::tuple<char, std::string, std::string>> dead_edges;  // (kind, event_id, edge_id) left empty
    std::unordered_set<std::string> dropped;                          // events left without identifiers
    if (!inserted.empty()) {
      std::vector<std::string> sk, st, sv;
      for (const auto* e : order) {
        if (!inserted.count(e->event_id)) continue;
        for (const auto& row : e->person_identifiers)
          sk.push_back("person"), st.push_back(row.type), sv.push_back(row.value);
        for (const auto& row : e->group_identifiers)
          sk.push_back("group"), st.push_back(row.type), sv.push_back(row.value);
      }
      if (!sk.empty()) {
        auto r =
            impl.Exec(tx, c, "ingest.suppressed",
                      "SELECT DISTINCT u.k, u.t, u.v FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, t, v) "
                      "WHERE (SELECT EXISTS (SELECT 1 FROM suppressed_identifiers)) AND EXISTS (SELECT 1 FROM "
                      "suppressed_identifiers s WHERE s.kind = u.k AND s.id_hash = " +
                          detail::IdentifierHashSql("u.k", "u.t", "u.v") + ")",
                      detail::TextArray(sk), detail::TextArray(st), detail::TextArray(sv));
        for (const auto& row : r) suppressed.emplace(row[0].c_str()[0], row[1].c_str(), row[2].c_str());
      }
      if (!suppressed.empty()) {
        for (const auto* e : order) {
          if (!inserted.count(e->event_id)) continue;
          size_t rows = 0, gone = 0;
          for (auto [kind, member] :
               {std::pair{'p', &EventRecord::person_identifiers}, std::pair{'g', &EventRecord::group_identifiers}}) {
            std::set<std::string> live, hit;  // edges with a row that stays linkable / with a suppressed row
            for (const IdentifierRow& row : e->*member) {
              ++rows;
              if (suppressed.count({kind, row.type, row.value})) {
                ++gone;
                hit.insert(row.edge_id);
              } else if (!row.blocked) {
                live.insert(row.edge_id);
              }
            }
            for (const auto& edge : hit) {
              if (!live.count(edge)) dead_edges.emplace(kind, e->event_id, edge);
            }
          }
          if (rows > 0 && gone == rows) dropped.insert(e->event_id);
        }
      }
    }
    auto keep_row = [&](char kind, const EventRecord& e, const IdentifierRow& row) {
      if (dropped.count(e.event_id) || suppressed.count({kind, row.type, row.value})) {
        ++result.suppressed_identifiers;
        return false;
      }
      return !dead_edges.count({kind, e.event_id, row.edge_id});  // blocked rows of an erased mention go too
    };
    if (!inserted.empty()) {
      auto write_identifiers = [&](const char* table, auto member) {
        detail::StatementTimer t(impl.observer,
                                 table[0] == 'p' ? "ingest.copy_person_identifiers" : "ingest.copy_group_identifiers");
        int64_t n = 0;
        pqxx::stream_to s(tx, table,
                          std::vector<std::string>{"event_id", "edge_id", "identifier_type", "identifier_value",
                                                   "identifier_value_raw", "role", "source", "occurred_at",
                                                   "is_blocked", "blocked_reason"});
        for (const auto* e : order) {
          if (!inserted.count(e->event_id)) continue;
          const std::string ts = detail::FormatTimestamp(e->occurred_at_us);
          for (const IdentifierRow& row : e->*member) {
            if (!suppressed.empty() && !keep_row(table[0], *e, row)) continue;
            s << std::make_tuple(e->event_id, row.edge_id, row.type, row.value, row.raw_value, row.role, e->source, ts,
                                 row.blocked,
                                 row.blocked ? std::optional<std::string>(row.blocked_reason) : std::nullopt);
            ++n;
            if (row.blocked) ++result.blocked_identifiers;
          }
        }
        s.complete();
        t.Ok();
        result.rows_by_table[table] = n;
      };
      auto write_traits = [&](const char* table, auto member) {
        detail::StatementTimer t(impl.observer,
                                 table[0] == 'p' ? "ingest.copy_person_traits" : "ingest.copy_group_traits");
        int64_t n = 0;
        pqxx::stream_to s(tx, table,
                          std::vector<std::string>{"event_id", "edge_id", "trait_name", "trait_value", "value_type",
                                                   "source", "occurred_at"});
        for (const auto* e : order) {
          if (!inserted.count(e->event_id)) continue;
          const std::string ts = detail::FormatTimestamp(e->occurred_at_us);
          for (const TraitRow& row : e->*member) {
            if (!suppressed.empty() &&
                (dropped.count(e->event_id) || dead_edges.count({table[0], e->event_id, row.edge_id}))) {
              continue;
            }
            s << std::make_tuple(e->event_id, row.edge_id, row.name, row.value, TraitTypeName(row.type), e->source, ts);
            ++n;
          }
        }
        s.complete();
        t.Ok();
        result.rows_by_table[table] = n;
      };
      write_identifiers("person_identifiers", &EventRecord::person_identifiers);
      write_traits("person_traits", &EventRecord::person_traits);
      write_identifiers("group_identifiers", &EventRecord::group_identifiers);
      write_traits("group_traits", &EventRecord::group_traits);
      {
        detail::StatementTimer t(impl.observer, "ingest.copy_membership_identifiers");
        int64_t n = 0;
        pqxx::stream_to s(
            tx, "membership_identifiers",
            std::vector<std::string>{"event_id", "person_identifier", "person_identifier_type", "group_identifier",
                                     "group_identifier_type", "role", "source", "occurred_at"});
        for (const auto* e : order) {
          if (!inserted.count(e->event_id)) continue;
          const std::string ts = detail::FormatTimestamp(e->occurred_at_us);
          for (const MembershipRow& m : e->memberships) {
            if (!suppressed.empty() &&
                (dropped.count(e->event_id) || suppressed.count({'p', m.person_type, m.person_value}) ||
                 suppressed.count({'g', m.group_type, m.group_value}))) {
              continue;
            }
            s << std::make_tuple(e->event_id, m.person_value, m.person_type, m.group_value, m.group_type, m.role,
                                 e->source, ts);
            ++n;
          }
        }
        s.complete();
        t.Ok();
        result.rows_by_table["membership_identifiers"] = n;
      }
      if (!dropped.empty()) {
        std::vector<std::string> gone(dropped.begin(), dropped.end());
        impl.Exec(tx, c, "ingest.drop_suppressed_events",
                  "WITH d AS (DELETE FROM events WHERE event_id = ANY($1::text[]) RETURNING event_id) "
                  "DELETE FROM event_keys WHERE event_id IN (SELECT event_id FROM d)",
                  detail::TextArray(gone));
        result.suppressed_events = static_cast<int64_t>(gone.size());
      }
      tx.exec("NOTIFY nexus_ingest");
    }
    result.commit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  });
  // Read-your-writes on replicas: a WAL position at or after this batch's commit record (read after the commit
  // returned; the insert position only grows), which a replica must have replayed to show the batch.
  impl.Run(
      kCommitLsn,
      [&](pqxx::work& tx, detail::PooledConnection& c) {
        result.commit_lsn = impl.Exec(tx, c, kCommitLsn, kCommitLsnSql)[0][0].c_str();
      },
      1);
  for (auto& d : dup_in_batch) result.duplicate_event_ids.push_back(std::move(d));
  return result;
}

bool IngestStore::NoteClassifyRules(const std::string& fingerprint) {
  bool stale = false;
  auto& impl = db_.impl();
  impl.Run("note identifier rules", [&](pqxx::work& tx, detail::PooledConnection& c) {
    // A database without events has nothing to re-classify: it simply follows these rules from now on.
    impl.Exec(tx, c, "ingest.adopt_identifier_rules",
              "UPDATE resolver_state SET identifier_rules = $1, identifier_rules_dirty = false "
              "WHERE identifier_rules IS DISTINCT FROM $1 AND NOT EXISTS (SELECT 1 FROM events)",
              fingerprint);
    impl.Exec(tx, c, "ingest.mark_identifier_rules",
              "UPDATE resolver_state SET identifier_rules_dirty = true "
              "WHERE identifier_rules IS DISTINCT FROM $1 AND NOT identifier_rules_dirty",
              fingerprint);
    auto r = impl.Exec(tx, c, "ingest.identifier_rules_dirty", "SELECT identifier_rules_dirty FROM resolver_state");
    stale = r[0][0].as<bool>();
  });
  return stale;
}

}  // namespace nexus::storage
