#include "storage/resolver_store.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/log.h"
#include "resolver/identity_graph.h"
#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {

using resolver::IdKey;
using resolver::IdKeyHash;

// Session advisory lock held by the one active resolver across replicas.
constexpr long long kResolverLockKey = 0x6e65787573726573LL;

/// Table and column names of one entity kind, substituted into SQL templates.
struct Kind {
  std::string name;      // person | group
  std::string id;        // person_id | group_id
  std::string entities;  // persons | groups
  std::string prefix;    // per_ | grp_

  /// Replaces {k} {id} {E} in a template.
  std::string Sql(std::string t) const {
    for (const auto& [key, value] : {std::pair<std::string, const std::string*>{"{k}", &name},
                                     {"{id}", &id}, {"{E}", &entities}}) {
      for (size_t p = t.find(key); p != std::string::npos; p = t.find(key, p + value->size())) {
        t.replace(p, key.size(), *value);
      }
    }
    return t;
  }
  std::string Stmt(const char* what) const { return "resolver." + name + "." + what; }
};

const Kind kPerson{"person", "person_id", "persons", "per_"};
const Kind kGroup{"group", "group_id", "groups", "grp_"};

struct BatchEvent {
  std::string event_id;
  std::string xid;
  int64_t occurred_at_us;
  std::string event_type;
  std::string source;
  int64_t ingested_at_us;
};

struct IdRow {
  size_t event_pos;
  int64_t row_id;
  std::string edge_id;
  IdKey key;
  std::optional<std::string> role;
  bool blocked;
  int64_t occurred_at_us;
  std::string source;
};

struct TraitRowDb {
  size_t event_pos;
  int64_t row_id;
  std::string edge_id;
  std::string name;
  std::string value;
  std::string source;
  int64_t occurred_at_us;
  int64_t ingested_at_us;
};

struct MembershipRowDb {
  size_t event_pos;
  int64_t row_id;
  IdKey person;
  IdKey group;
  std::optional<std::string> role;
  std::string source;
  int64_t occurred_at_us;
  int64_t ingested_at_us;
};

/// The state the resolver keeps in resolver_state.
struct State {
  std::string watermark_xid;
  std::string watermark_event_id;
  int64_t next_birth_seq;
  std::string salt;
};

/// What one kind's graph did, ready to write.
struct KindOutcome {
  std::unique_ptr<resolver::IdentityGraph> graph;
  KindStats stats;
};

class BatchRunner {
 public:
  BatchRunner(Database::Impl& impl, pqxx::work& tx, detail::PooledConnection& c) : impl_(impl), tx_(tx), c_(c) {}

  State LoadState() {
    auto r = impl_.Exec(tx_, c_, "resolver.state",
                        "SELECT watermark_xid::text, watermark_event_id, next_birth_seq, id_salt FROM resolver_state");
    return {r[0][0].c_str(), r[0][1].c_str(), r[0][2].as<int64_t>(), r[0][3].c_str()};
  }

  /// Events past the watermark and below the oldest running transaction, in ingest order.
  std::vector<BatchEvent> SelectEvents(const State& s, int64_t max_events) {
    auto r = impl_.Exec(
        tx_, c_, "resolver.select_batch",
        "SELECT e.event_id, e._ingest_xid::text, " NEXUS_TS_TO_US("e.occurred_at") ", e.event_type, e.source, "
        NEXUS_TS_TO_US("e._ingested_at") " FROM events e "
        "WHERE e._ingest_xid >= $1::xid8 AND (e._ingest_xid, e.event_id) > ($1::xid8, $2::text) "
        "  AND e._ingest_xid < pg_snapshot_xmin(pg_current_snapshot()) "
        "ORDER BY e._ingest_xid, e.event_id LIMIT $3",
        s.watermark_xid, s.watermark_event_id, max_events);
    std::vector<BatchEvent> out;
    out.reserve(r.size());
    for (const auto& row : r) {
      out.push_back({row[0].c_str(), row[1].c_str(), row[2].as<int64_t>(), row[3].c_str(), row[4].c_str(),
                     row[5].as<int64_t>()});
    }
    return out;
  }

  void LoadRows(const Kind& k, const std::string& ids_array,
                const std::unordered_map<std::string, size_t>& pos, std::vector<IdRow>* ids,
                std::vector<TraitRowDb>* traits) {
    auto r = impl_.Exec(tx_, c_, k.Stmt("rows"),
                        k.Sql("SELECT event_id, id, edge_id, identifier_type, identifier_value, role, is_blocked, "
                              NEXUS_TS_TO_US("occurred_at") ", source FROM {k}_identifiers "
                              "WHERE event_id = ANY($1::text[])"),
                        ids_array);
    for (const auto& row : r) {
      ids->push_back({pos.at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), {row[3].c_str(), row[4].c_str()},
                      row[5].is_null() ? std::nullopt : std::optional<std::string>(row[5].c_str()),
                      row[6].as<bool>(), row[7].as<int64_t>(), row[8].c_str()});
    }
    std::sort(ids->begin(), ids->end(),
              [](const IdRow& a, const IdRow& b) { return std::tie(a.event_pos, a.row_id) < std::tie(b.event_pos, b.row_id); });
    auto t = impl_.Exec(tx_, c_, k.Stmt("traits"),
                        k.Sql("SELECT event_id, id, edge_id, trait_name, trait_value, source, "
                              NEXUS_TS_TO_US("occurred_at") ", " NEXUS_TS_TO_US("_ingested_at")
                              " FROM {k}_traits WHERE event_id = ANY($1::text[])"),
                        ids_array);
    for (const auto& row : t) {
      traits->push_back({pos.at(row[0].c_str()), row[1].as<int64_t>(), row[2].c_str(), row[3].c_str(),
                         row[4].c_str(), row[5].c_str(), row[6].as<int64_t>(), row[7].as<int64_t>()});
    }
  }

  /// Builds the kind's edges in ingest order, loads what the batch touches, and applies the edges.
  KindOutcome Resolve(const Kind& k, const State& s, const std::vector<BatchEvent>& events,
                      const std::vector<IdRow>& rows, const resolver::Caps& caps, int64_t* next_birth_seq,
                      const std::set<std::pair<std::string, std::string>>& forced) {
    // Edges: (event, edge_id) groups of non-blocked rows, in order of their first row.
    std::vector<resolver::Edge> edges;
    std::map<std::pair<size_t, std::string>, size_t> edge_index;
    for (const auto& r : rows) {
      if (r.blocked) continue;
      auto [it, fresh] = edge_index.emplace(std::make_pair(r.event_pos, r.edge_id), edges.size());
      if (fresh) {
        resolver::Edge e;
        e.event_id = events[r.event_pos].event_id;
        e.edge_id = r.edge_id;
        e.force = forced.count({e.event_id, e.edge_id}) > 0;
        edges.push_back(std::move(e));
      }
      auto& ids = edges[it->second].identifiers;
      if (std::find(ids.begin(), ids.end(), r.key) == ids.end()) ids.push_back(r.key);
    }
    // Identifiers earlier (already applied) events saw under the same edge_ids.
    std::unordered_map<std::string, std::vector<IdKey>> prior;
    {
      std::vector<std::string> edge_ids;
      std::unordered_set<std::string> seen;
      for (const auto& e : edges) {
        if (seen.insert(e.edge_id).second) edge_ids.push_back(e.edge_id);
      }
      if (!edge_ids.empty()) {
        auto r = impl_.Exec(
            tx_, c_, k.Stmt("prior"),
            k.Sql("SELECT DISTINCT i.edge_id, i.identifier_type, i.identifier_value FROM {k}_identifiers i "
                  "JOIN events e ON e.event_id = i.event_id "
                  "WHERE i.edge_id = ANY($1::text[]) AND NOT i.is_blocked "
                  "  AND (e._ingest_xid, e.event_id) <= ($2::xid8, $3::text)"),
            detail::TextArray(edge_ids), s.watermark_xid, s.watermark_event_id);
        for (const auto& row : r) prior[row[0].c_str()].push_back({row[1].c_str(), row[2].c_str()});
      }
    }
    // Everything the batch references, and the entities they belong to now.
    std::vector<std::string> types, values;
    {
      std::unordered_set<IdKey, IdKeyHash> all;
      auto add = [&](const IdKey& id) {
        if (all.insert(id).second) {
          types.push_back(id.type);
          values.push_back(id.value);
        }
      };
      for (const auto& e : edges) {
        for (const auto& id : e.identifiers) add(id);
      }
      for (const auto& [edge, ids] : prior) {
        for (const auto& id : ids) add(id);
      }
    }
    KindOutcome out;
    out.graph = std::make_unique<resolver::IdentityGraph>(k.prefix, s.salt, caps, *next_birth_seq);
    if (!types.empty()) {
      auto known = impl_.Exec(
          tx_, c_, k.Stmt("known"),
          k.Sql("SELECT r.identifier_type, r.identifier_value, r.{id} FROM resolved_{k}_identifiers r "
                "JOIN unnest($1::text[], $2::text[]) AS q(t, v) ON r.identifier_type = q.t AND r.identifier_value = q.v"),
          detail::TextArray(types), detail::TextArray(values));
      std::vector<std::string> entity_ids;
      std::unordered_set<std::string> seen;
      for (const auto& row : known) {
        if (seen.insert(row[2].c_str()).second) entity_ids.push_back(row[2].c_str());
      }
      if (!entity_ids.empty()) {
        const std::string arr = detail::TextArray(entity_ids);
        std::unordered_map<std::string, resolver::ExistingEntity> entities;
        auto er = impl_.Exec(tx_, c_, k.Stmt("entities"),
                             k.Sql("SELECT {id}, identifier_count, birth_seq FROM {E} WHERE {id} = ANY($1::text[])"),
                             arr);
        for (const auto& row : er) {
          entities[row[0].c_str()] = {row[0].c_str(), row[1].as<int64_t>(), row[2].as<int64_t>(), {}};
        }
        if (!caps.Unlimited()) {
          auto tc = impl_.Exec(tx_, c_, k.Stmt("type_counts"),
                               k.Sql("SELECT {id}, identifier_type, count(*) FROM resolved_{k}_identifiers "
                                     "WHERE {id} = ANY($1::text[]) GROUP BY 1, 2"),
                               arr);
          for (const auto& row : tc) entities[row[0].c_str()].type_counts[row[1].c_str()] = row[2].as<int64_t>();
        }
        for (const auto& [id, e] : entities) out.graph->AddExistingEntity(e);
      }
      for (const auto& row : known) out.graph->AddKnownIdentifier({row[0].c_str(), row[1].c_str()}, row[2].c_str());
    }
    // Apply in ingest order; an edge_id reused by later events links to what earlier ones saw under it.
    for (auto& e : edges) {
      auto& seen_on_edge = prior[e.edge_id];
      e.prior = seen_on_edge;
      out.graph->ApplyEdge(e);
      for (const auto& id : e.identifiers) {
        if (std::find(seen_on_edge.begin(), seen_on_edge.end(), id) == seen_on_edge.end()) seen_on_edge.push_back(id);
      }
    }
    *next_birth_seq = out.graph->next_birth_seq();
    return out;
  }

  /// Writes one kind's merges, identifiers, entities, traits, participants and quarantines.
  /// Returns the ids whose final-table row must be refreshed.
  std::vector<std::string> Write(const Kind& k, KindOutcome& o, const std::vector<BatchEvent>& events,
                                 const std::vector<IdRow>& rows, const std::vector<TraitRowDb>& traits) {
    auto& g = *o.graph;
    std::unordered_set<std::string> refresh;
    // 1. Merges: repoint every row of absorbed (pre-existing) entities to the final survivor.
    const auto merges = g.Merges();
    std::vector<std::string> absorbed, survivors;
    for (const auto& m : merges) {
      if (!m.absorbed_existing) continue;
      absorbed.push_back(m.absorbed_id);
      survivors.push_back(m.survivor_id);
    }
    o.stats.merged = static_cast<int64_t>(merges.size());
    if (!absorbed.empty()) {
      const std::string a = detail::TextArray(absorbed), sv = detail::TextArray(survivors);
      const std::string map_cte = "WITH m AS (SELECT * FROM unnest($1::text[], $2::text[]) AS x(absorbed, survivor)) ";
      auto r1 = impl_.Exec(tx_, c_, k.Stmt("repoint_identifiers"),
                           k.Sql(map_cte + "UPDATE resolved_{k}_identifiers r SET {id} = m.survivor FROM m "
                                           "WHERE r.{id} = m.absorbed"),
                           a, sv);
      o.stats.repointed += static_cast<int64_t>(r1.affected_rows());
      impl_.Exec(tx_, c_, k.Stmt("fold_traits"),
                 k.Sql(map_cte +
                       "INSERT INTO resolved_{k}_traits AS t ({id}, trait_name, trait_value, source, occurred_at, "
                       "_ingested_at, trait_row_id) "
                       "SELECT DISTINCT ON (m.survivor, x.trait_name) m.survivor, x.trait_name, x.trait_value, "
                       "x.source, x.occurred_at, x._ingested_at, x.trait_row_id "
                       "FROM resolved_{k}_traits x JOIN m ON x.{id} = m.absorbed "
                       "ORDER BY m.survivor, x.trait_name, x.occurred_at DESC, x._ingested_at DESC, x.trait_row_id DESC "
                       "ON CONFLICT ({id}, trait_name) DO UPDATE SET trait_value = EXCLUDED.trait_value, "
                       "source = EXCLUDED.source, occurred_at = EXCLUDED.occurred_at, "
                       "_ingested_at = EXCLUDED._ingested_at, trait_row_id = EXCLUDED.trait_row_id "
                       "WHERE (EXCLUDED.occurred_at, EXCLUDED._ingested_at, EXCLUDED.trait_row_id) > "
                       "(t.occurred_at, t._ingested_at, t.trait_row_id)"),
                 a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed_traits"),
                 k.Sql("DELETE FROM resolved_{k}_traits WHERE {id} = ANY($1::text[])"), a);
      auto r2 = impl_.Exec(tx_, c_, k.Stmt("repoint_participants"),
                           k.Sql(map_cte +
                                 "INSERT INTO {k}_participants ({k}_participant_id, event_id, {id}, role, occurred_at, "
                                 "event_type, source) "
                                 "SELECT md5(p.event_id || chr(31) || m.survivor || chr(31) || p.role), p.event_id, "
                                 "m.survivor, p.role, p.occurred_at, p.event_type, p.source "
                                 "FROM {k}_participants p JOIN m ON p.{id} = m.absorbed ON CONFLICT DO NOTHING"),
                           a, sv);
      o.stats.repointed += static_cast<int64_t>(r2.affected_rows());
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed_participants"),
                 k.Sql("DELETE FROM {k}_participants WHERE {id} = ANY($1::text[])"), a);
      impl_.Exec(tx_, c_, k.Stmt("repoint_membership_identifiers"),
                 k.Sql(map_cte + "UPDATE resolved_membership_identifiers r SET {id} = m.survivor FROM m "
                                 "WHERE r.{id} = m.absorbed"),
                 a, sv);
      const std::string other = k.name == "person" ? "group_id" : "person_id";
      impl_.Exec(tx_, c_, k.Stmt("fold_memberships"),
                 k.Sql(map_cte +
                       "INSERT INTO memberships AS ms (id, person_id, group_id, role, source, established_at, "
                       "_last_updated, role_occurred_at, role_ingested_at, role_row_id) "
                       "SELECT DISTINCT ON (m.survivor, x." + other + ") "
                       "'mem_' || md5(" + (k.name == "person" ? "m.survivor || chr(31) || x.group_id"
                                                              : "x.person_id || chr(31) || m.survivor") + "), " +
                       (k.name == "person" ? "m.survivor, x.group_id" : "x.person_id, m.survivor") +
                       ", x.role, x.source, min(x.established_at) OVER (PARTITION BY m.survivor, x." + other + "), "
                       "now(), x.role_occurred_at, x.role_ingested_at, x.role_row_id "
                       "FROM memberships x JOIN m ON x.{id} = m.absorbed "
                       "ORDER BY m.survivor, x." + other + ", x.role_occurred_at DESC, x.role_ingested_at DESC, "
                       "x.role_row_id DESC "
                       "ON CONFLICT (person_id, group_id) DO UPDATE SET "
                       "established_at = least(ms.established_at, EXCLUDED.established_at), _last_updated = now(), "
                       "role = CASE WHEN (EXCLUDED.role_occurred_at, EXCLUDED.role_ingested_at, EXCLUDED.role_row_id) > "
                       "(ms.role_occurred_at, ms.role_ingested_at, ms.role_row_id) THEN EXCLUDED.role ELSE ms.role END, "
                       "source = CASE WHEN (EXCLUDED.role_occurred_at, EXCLUDED.role_ingested_at, EXCLUDED.role_row_id) > "
                       "(ms.role_occurred_at, ms.role_ingested_at, ms.role_row_id) THEN EXCLUDED.source ELSE ms.source END, "
                       "role_occurred_at = greatest(ms.role_occurred_at, EXCLUDED.role_occurred_at), "
                       "role_ingested_at = CASE WHEN (EXCLUDED.role_occurred_at, EXCLUDED.role_ingested_at, "
                       "EXCLUDED.role_row_id) > (ms.role_occurred_at, ms.role_ingested_at, ms.role_row_id) "
                       "THEN EXCLUDED.role_ingested_at ELSE ms.role_ingested_at END, "
                       "role_row_id = CASE WHEN (EXCLUDED.role_occurred_at, EXCLUDED.role_ingested_at, "
                       "EXCLUDED.role_row_id) > (ms.role_occurred_at, ms.role_ingested_at, ms.role_row_id) "
                       "THEN EXCLUDED.role_row_id ELSE ms.role_row_id END"),
                 a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed_memberships"),
                 k.Sql("DELETE FROM memberships WHERE {id} = ANY($1::text[])"), a);
      impl_.Exec(tx_, c_, k.Stmt("repoint_aliases"),
                 k.Sql(map_cte + "UPDATE {k}_id_aliases al SET new_id = m.survivor FROM m WHERE al.new_id = m.absorbed"),
                 a, sv);
      impl_.Exec(tx_, c_, k.Stmt("drop_absorbed"), k.Sql("DELETE FROM {E} WHERE {id} = ANY($1::text[])"), a);
      for (const auto& s : survivors) refresh.insert(s);
    }
    if (!merges.empty()) {
      std::vector<std::string> olds, news, intos, evs, edges;
      std::vector<int64_t> counts;
      for (const auto& m : merges) {
        olds.push_back(m.absorbed_id);
        news.push_back(m.survivor_id);
        intos.push_back(m.merged_into_id);
        evs.push_back(m.event_id);
        edges.push_back(m.edge_id);
        counts.push_back(m.absorbed_count);
      }
      impl_.Exec(tx_, c_, k.Stmt("insert_aliases"),
                 k.Sql("INSERT INTO {k}_id_aliases (old_id, new_id, merged_into_id, event_id, edge_id, "
                       "absorbed_identifier_count) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
                       "$4::text[], $5::text[], $6::bigint[]) ON CONFLICT (old_id) DO NOTHING"),
                 detail::TextArray(olds), detail::TextArray(news), detail::TextArray(intos), detail::TextArray(evs),
                 detail::TextArray(edges), detail::Int64Array(counts));
    }

    // 2. Identifiers: earliest occurrence (source, occurred_at) and latest sighting per identifier.
    struct Agg {
      int64_t first_us;
      int64_t first_row;
      std::string source;
      int64_t last_us;
    };
    std::unordered_map<IdKey, Agg, IdKeyHash> agg;
    std::vector<IdKey> order;
    for (const auto& r : rows) {
      if (r.blocked) continue;
      auto [it, fresh] = agg.emplace(r.key, Agg{r.occurred_at_us, r.row_id, r.source, r.occurred_at_us});
      if (fresh) {
        order.push_back(r.key);
        continue;
      }
      Agg& a = it->second;
      if (std::tie(r.occurred_at_us, r.row_id) < std::tie(a.first_us, a.first_row)) {
        a.first_us = r.occurred_at_us;
        a.first_row = r.row_id;
        a.source = r.source;
      }
      a.last_us = std::max(a.last_us, r.occurred_at_us);
    }
    if (!order.empty()) {
      std::vector<std::string> ents, ts, vs, srcs, firsts, lasts;
      for (const auto& key : order) {
        const Agg& a = agg[key];
        ents.push_back(g.EntityOf(key));
        ts.push_back(key.type);
        vs.push_back(key.value);
        srcs.push_back(a.source);
        firsts.push_back(detail::FormatTimestamp(a.first_us));
        lasts.push_back(detail::FormatTimestamp(a.last_us));
        refresh.insert(ents.back());
      }
      impl_.Exec(tx_, c_, k.Stmt("upsert_identifiers"),
                 k.Sql("INSERT INTO resolved_{k}_identifiers AS r ({id}, identifier_type, identifier_value, source, "
                       "occurred_at, last_seen_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
                       "$5::timestamptz[], $6::timestamptz[]) "
                       "ON CONFLICT (identifier_type, identifier_value) DO UPDATE SET {id} = EXCLUDED.{id}, "
                       "source = CASE WHEN EXCLUDED.occurred_at < r.occurred_at THEN EXCLUDED.source ELSE r.source END, "
                       "occurred_at = least(r.occurred_at, EXCLUDED.occurred_at), "
                       "last_seen_at = greatest(r.last_seen_at, EXCLUDED.last_seen_at)"),
                 detail::TextArray(ents), detail::TextArray(ts), detail::TextArray(vs), detail::TextArray(srcs),
                 detail::TextArray(firsts), detail::TextArray(lasts));
    }
    o.stats.identifiers = static_cast<int64_t>(g.NewAssignments().size());

    // 3. Entities: born ones get their row; touched ones their new size.
    {
      std::unordered_map<std::string, std::string> born_by;
      for (const auto& b : g.births()) born_by[b.id] = b.event_id;
      std::vector<std::string> ids, created_by;
      std::vector<int64_t> counts, seqs;
      for (const auto& e : g.TouchedEntities()) {
        ids.push_back(e.id);
        counts.push_back(e.identifier_count);
        seqs.push_back(e.birth_seq);
        created_by.push_back(e.is_new ? born_by[e.id] : "");
        if (e.is_new) ++o.stats.born;
        else if (e.identifier_count > 0) refresh.insert(e.id);
      }
      // accreted: existing survivors that gained identifiers
      std::unordered_set<std::string> gained;
      for (const auto& [key, id] : g.NewAssignments()) gained.insert(id);
      for (const auto& e : g.TouchedEntities()) {
        if (!e.is_new && gained.count(e.id)) ++o.stats.accreted;
      }
      if (!ids.empty()) {
        impl_.Exec(tx_, c_, k.Stmt("upsert_entities"),
                   k.Sql("INSERT INTO {E} AS x ({id}, identifier_count, birth_seq, created_by_event_id) "
                         "SELECT i, n, s, nullif(c, '') FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) "
                         "AS u(i, n, s, c) "
                         "ON CONFLICT ({id}) DO UPDATE SET identifier_count = EXCLUDED.identifier_count"),
                   detail::TextArray(ids), detail::Int64Array(counts), detail::Int64Array(seqs),
                   detail::TextArray(created_by));
      }
    }

    // 4. Traits: the latest value per (entity, trait) by (occurred_at, _ingested_at, row id).
    {
      std::map<std::pair<size_t, std::string>, IdKey> edge_first;
      for (const auto& r : rows) {
        if (!r.blocked) edge_first.emplace(std::make_pair(r.event_pos, r.edge_id), r.key);
      }
      std::map<std::pair<std::string, std::string>, const TraitRowDb*> best;
      for (const auto& t : traits) {
        auto it = edge_first.find({t.event_pos, t.edge_id});
        if (it == edge_first.end()) continue;  // the edge has no linkable identifier
        const std::string entity = g.EntityOf(it->second);
        auto& slot = best[{entity, t.name}];
        if (!slot || std::tie(t.occurred_at_us, t.ingested_at_us, t.row_id) >
                         std::tie(slot->occurred_at_us, slot->ingested_at_us, slot->row_id)) {
          slot = &t;
        }
      }
      if (!best.empty()) {
        std::vector<std::string> ents, names, vals, srcs, occ, ing;
        std::vector<int64_t> rids;
        for (const auto& [key, t] : best) {
          ents.push_back(key.first);
          names.push_back(key.second);
          vals.push_back(t->value);
          srcs.push_back(t->source);
          occ.push_back(detail::FormatTimestamp(t->occurred_at_us));
          ing.push_back(detail::FormatTimestamp(t->ingested_at_us));
          rids.push_back(t->row_id);
          refresh.insert(key.first);
        }
        impl_.Exec(tx_, c_, k.Stmt("upsert_traits"),
                   k.Sql("INSERT INTO resolved_{k}_traits AS t ({id}, trait_name, trait_value, source, occurred_at, "
                         "_ingested_at, trait_row_id) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
                         "$4::text[], $5::timestamptz[], $6::timestamptz[], $7::bigint[]) "
                         "ON CONFLICT ({id}, trait_name) DO UPDATE SET trait_value = EXCLUDED.trait_value, "
                         "source = EXCLUDED.source, occurred_at = EXCLUDED.occurred_at, "
                         "_ingested_at = EXCLUDED._ingested_at, trait_row_id = EXCLUDED.trait_row_id "
                         "WHERE (EXCLUDED.occurred_at, EXCLUDED._ingested_at, EXCLUDED.trait_row_id) > "
                         "(t.occurred_at, t._ingested_at, t.trait_row_id)"),
                   detail::TextArray(ents), detail::TextArray(names), detail::TextArray(vals), detail::TextArray(srcs),
                   detail::TextArray(occ), detail::TextArray(ing), detail::Int64Array(rids));
      }
    }

    // 5. Participants: one row per (event, entity, role).
    {
      std::set<std::tuple<size_t, std::string, std::string>> parts;
      for (const auto& r : rows) {
        if (r.blocked || !r.role) continue;
        parts.insert({r.event_pos, g.EntityOf(r.key), *r.role});
      }
      if (!parts.empty()) {
        std::vector<std::string> evs, ents, roles, occ, types, srcs;
        for (const auto& [pos, ent, role] : parts) {
          const auto& e = events[pos];
          evs.push_back(e.event_id);
          ents.push_back(ent);
          roles.push_back(role);
          occ.push_back(detail::FormatTimestamp(e.occurred_at_us));
          types.push_back(e.event_type);
          srcs.push_back(e.source);
        }
        impl_.Exec(tx_, c_, k.Stmt("insert_participants"),
                   k.Sql("INSERT INTO {k}_participants ({k}_participant_id, event_id, {id}, role, occurred_at, "
                         "event_type, source) SELECT md5(e || chr(31) || i || chr(31) || r), e, i, r, o, t, s "
                         "FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[]) "
                         "AS u(e, i, r, o, t, s) ON CONFLICT DO NOTHING"),
                   detail::TextArray(evs), detail::TextArray(ents), detail::TextArray(roles), detail::TextArray(occ),
                   detail::TextArray(types), detail::TextArray(srcs));
      }
    }

    // 6. Quarantined edges (kept for operators; re-running a batch after a crash inserts nothing twice).
    o.stats.quarantined = static_cast<int64_t>(g.quarantined().size());
    std::unordered_map<std::string, size_t> pos_of;
    for (size_t i = 0; i < events.size(); ++i) pos_of[events[i].event_id] = i;
    for (const auto& q : g.quarantined()) {
      std::vector<std::string> ts, vs;
      for (const auto& id : q.identifiers) {
        ts.push_back(id.type);
        vs.push_back(id.value);
      }
      std::string source;
      int64_t occurred = 0;
      if (auto it = pos_of.find(q.event_id); it != pos_of.end()) {
        source = events[it->second].source;
        occurred = events[it->second].occurred_at_us;
      }
      impl_.Exec(tx_, c_, "resolver.insert_quarantine",
                 "INSERT INTO quarantined_edges (kind, event_id, edge_id, source, occurred_at, identifier_types, "
                 "identifier_values, reason, entity_ids) VALUES ($1, $2, $3, $4, $5::timestamptz, $6::text[], "
                 "$7::text[], $8, $9::text[]) ON CONFLICT (kind, event_id, edge_id) DO NOTHING",
                 k.name, q.event_id, q.edge_id, source, detail::FormatTimestamp(occurred), detail::TextArray(ts),
                 detail::TextArray(vs), q.reason, detail::TextArray(q.entity_ids));
      log::Warn("edge quarantined", {{"kind", k.name}, {"event_id", q.event_id}, {"edge_id", q.edge_id},
                                     {"reason", q.reason}});
    }
    for (const auto& m : merges) refresh.erase(m.absorbed_id);
    return {refresh.begin(), refresh.end()};
  }

  void WriteMemberships(const std::vector<MembershipRowDb>& rows, resolver::IdentityGraph& persons,
                        resolver::IdentityGraph& groups) {
    if (rows.empty()) return;
    std::vector<std::string> rmi_ids, ps, gs, srcs, occ, ing;
    std::vector<std::optional<std::string>> roles;
    std::vector<int64_t> mids;
    struct Best {
      const MembershipRowDb* row;
      int64_t established_us;
    };
    std::map<std::pair<std::string, std::string>, Best> best;
    for (const auto& r : rows) {
      const std::string p = persons.EntityOf(r.person), g = groups.EntityOf(r.group);
      if (p.empty() || g.empty()) continue;  // a side is blocked: no membership
      rmi_ids.push_back("rmi_" + std::to_string(r.row_id));
      mids.push_back(r.row_id);
      ps.push_back(p);
      gs.push_back(g);
      roles.push_back(r.role);
      srcs.push_back(r.source);
      occ.push_back(detail::FormatTimestamp(r.occurred_at_us));
      ing.push_back(detail::FormatTimestamp(r.ingested_at_us));
      auto [it, fresh] = best.emplace(std::make_pair(p, g), Best{&r, r.occurred_at_us});
      if (!fresh) {
        it->second.established_us = std::min(it->second.established_us, r.occurred_at_us);
        if (std::tie(r.occurred_at_us, r.ingested_at_us, r.row_id) >
            std::tie(it->second.row->occurred_at_us, it->second.row->ingested_at_us, it->second.row->row_id)) {
          it->second.row = &r;
        }
      }
    }
    if (mids.empty()) return;
    impl_.Exec(tx_, c_, "resolver.insert_resolved_memberships",
               "INSERT INTO resolved_membership_identifiers (id, membership_identifier_id, person_id, group_id, role, "
               "source, occurred_at, _ingested_at) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], "
               "$4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[]) ON CONFLICT DO NOTHING",
               detail::TextArray(rmi_ids), detail::Int64Array(mids), detail::TextArray(ps), detail::TextArray(gs),
               detail::TextArray(roles), detail::TextArray(srcs), detail::TextArray(occ), detail::TextArray(ing));
    std::vector<std::string> bp, bg, bsrc, best_est, bocc, bing;
    std::vector<std::optional<std::string>> brole;
    std::vector<int64_t> brow;
    for (const auto& [key, b] : best) {
      bp.push_back(key.first);
      bg.push_back(key.second);
      brole.push_back(b.row->role);
      bsrc.push_back(b.row->source);
      best_est.push_back(detail::FormatTimestamp(b.established_us));
      bocc.push_back(detail::FormatTimestamp(b.row->occurred_at_us));
      bing.push_back(detail::FormatTimestamp(b.row->ingested_at_us));
      brow.push_back(b.row->row_id);
    }
    const char* newer =
        "(EXCLUDED.role_occurred_at, EXCLUDED.role_ingested_at, EXCLUDED.role_row_id) > "
        "(ms.role_occurred_at, ms.role_ingested_at, ms.role_row_id)";
    impl_.Exec(tx_, c_, "resolver.upsert_memberships",
               std::string("INSERT INTO memberships AS ms (id, person_id, group_id, role, source, established_at, "
                           "role_occurred_at, role_ingested_at, role_row_id) "
                           "SELECT 'mem_' || md5(p || chr(31) || g), p, g, r, s, e, o, i, n FROM unnest($1::text[], "
                           "$2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[], "
                           "$7::timestamptz[], $8::bigint[]) AS u(p, g, r, s, e, o, i, n) "
                           "ON CONFLICT (person_id, group_id) DO UPDATE SET "
                           "established_at = least(ms.established_at, EXCLUDED.established_at), _last_updated = now(), "
                           "role = CASE WHEN ") + newer + " THEN EXCLUDED.role ELSE ms.role END, "
                           "source = CASE WHEN " + newer + " THEN EXCLUDED.source ELSE ms.source END, "
                           "role_ingested_at = CASE WHEN " + newer + " THEN EXCLUDED.role_ingested_at ELSE ms.role_ingested_at END, "
                           "role_row_id = CASE WHEN " + newer + " THEN EXCLUDED.role_row_id ELSE ms.role_row_id END, "
                           "role_occurred_at = CASE WHEN " + newer + " THEN EXCLUDED.role_occurred_at ELSE ms.role_occurred_at END",
               detail::TextArray(bp), detail::TextArray(bg), detail::TextArray(brole), detail::TextArray(bsrc),
               detail::TextArray(best_est), detail::TextArray(bocc), detail::TextArray(bing), detail::Int64Array(brow));
  }

  /// Recomputes the final-table columns ("most recent" trait, else the most recently seen identifier) of
  /// `ids` in one set-based statement, writing only rows whose values changed.
  void RefreshFinal(const Kind& k, const std::vector<std::string>& ids) {
    if (ids.empty()) return;
    struct Col {
      const char* column;
      std::vector<const char*> traits;  // first present wins
      const char* identifier_type;      // fallback, or nullptr
    };
    const std::vector<Col> cols =
        k.name == "person"
            ? std::vector<Col>{{"email", {"email"}, "email"}, {"name", {"name"}, nullptr},
                               {"phone", {"phone"}, "phone"}, {"title", {"title"}, nullptr},
                               {"timezone", {"timezone"}, nullptr}}
            : std::vector<Col>{{"domain", {"domain"}, "domain"}, {"company_name", {"company_name", "name"}, nullptr},
                               {"industry", {"industry"}, nullptr}, {"company_size", {"company_size"}, nullptr},
                               {"shopify_id", {"shopify_id"}, "shopify_id"}};
    std::string trait_names, id_types, trait_cols, id_cols, set, old_tuple, new_tuple;
    for (const auto& c : cols) {
      std::string expr;
      for (const char* t : c.traits) {
        trait_names += std::string(trait_names.empty() ? "" : ", ") + "'" + t + "'";
        trait_cols += std::string(", max(trait_value) FILTER (WHERE trait_name = '") + t + "') AS t_" + t;
        expr += std::string(expr.empty() ? "" : ", ") + "t.t_" + t;
      }
      if (c.identifier_type) {
        id_types += std::string(id_types.empty() ? "" : ", ") + "'" + c.identifier_type + "'";
        id_cols += std::string(", max(identifier_value) FILTER (WHERE identifier_type = '") + c.identifier_type +
                   "') AS i_" + c.identifier_type;
        expr += std::string(", i.i_") + c.identifier_type;
      }
      const std::string value = "coalesce(" + expr + ")";
      set += std::string(set.empty() ? "" : ", ") + c.column + " = " + value;
      old_tuple += std::string(old_tuple.empty() ? "" : ", ") + "x." + c.column;
      new_tuple += std::string(new_tuple.empty() ? "" : ", ") + value;
    }
    const std::string sql = k.Sql(
        "WITH ids AS (SELECT DISTINCT unnest($1::text[]) AS id), "
        "t AS (SELECT {id}" + trait_cols + " FROM resolved_{k}_traits WHERE {id} = ANY($1::text[]) "
        "      AND trait_name IN (" + trait_names + ") GROUP BY {id}), "
        "latest AS (SELECT DISTINCT ON ({id}, identifier_type) {id}, identifier_type, identifier_value "
        "      FROM resolved_{k}_identifiers WHERE {id} = ANY($1::text[]) AND identifier_type IN (" + id_types + ") "
        "      ORDER BY {id}, identifier_type, last_seen_at DESC, identifier_value), "
        "i AS (SELECT {id}" + id_cols + " FROM latest GROUP BY {id}) "
        "UPDATE {E} x SET " + set + ", _last_updated = now() "
        "FROM ids LEFT JOIN t ON t.{id} = ids.id LEFT JOIN i ON i.{id} = ids.id "
        "WHERE x.{id} = ids.id AND (" + old_tuple + ") IS DISTINCT FROM (" + new_tuple + ")");
    impl_.Exec(tx_, c_, k.Stmt("refresh_final"), sql, detail::TextArray(ids));
  }

  void LoadMemberships(const std::string& ids_array, const std::unordered_map<std::string, size_t>& pos,
                       std::vector<MembershipRowDb>* out) {
    auto r = impl_.Exec(tx_, c_, "resolver.memberships",
                        "SELECT event_id, id, person_identifier_type, person_identifier, group_identifier_type, "
                        "group_identifier, role, source, " NEXUS_TS_TO_US("occurred_at") ", " NEXUS_TS_TO_US("_ingested_at")
                        " FROM membership_identifiers WHERE event_id = ANY($1::text[]) ORDER BY id",
                        ids_array);
    for (const auto& row : r) {
      out->push_back({pos.at(row[0].c_str()), row[1].as<int64_t>(), {row[2].c_str(), row[3].c_str()},
                      {row[4].c_str(), row[5].c_str()},
                      row[6].is_null() ? std::nullopt : std::optional<std::string>(row[6].c_str()), row[7].c_str(),
                      row[8].as<int64_t>(), row[9].as<int64_t>()});
    }
  }

  /// One batch inside the caller's transaction. Returns stats (events == 0: nothing pending).
  BatchStats Run(int64_t max_events, const resolver::ProtectionConfig& protection,
                 const std::set<std::pair<std::string, std::string>>& forced_persons,
                 const std::set<std::pair<std::string, std::string>>& forced_groups) {
    BatchStats stats;
    State s = LoadState();
    const auto events = SelectEvents(s, max_events);
    if (events.empty()) return stats;
    stats.events = static_cast<int64_t>(events.size());
    std::unordered_map<std::string, size_t> pos;
    std::vector<std::string> ids;
    for (size_t i = 0; i < events.size(); ++i) {
      pos[events[i].event_id] = i;
      ids.push_back(events[i].event_id);
    }
    const std::string ids_array = detail::TextArray(ids);
    std::vector<IdRow> prow, grow;
    std::vector<TraitRowDb> ptraits, gtraits;
    std::vector<MembershipRowDb> mrows;
    LoadRows(kPerson, ids_array, pos, &prow, &ptraits);
    LoadRows(kGroup, ids_array, pos, &grow, &gtraits);
    LoadMemberships(ids_array, pos, &mrows);

    int64_t next = s.next_birth_seq;
    KindOutcome po = Resolve(kPerson, s, events, prow, protection.person_caps, &next, forced_persons);
    KindOutcome go = Resolve(kGroup, s, events, grow, protection.group_caps, &next, forced_groups);
    const auto prefresh = Write(kPerson, po, events, prow, ptraits);
    const auto grefresh = Write(kGroup, go, events, grow, gtraits);
    WriteMemberships(mrows, *po.graph, *go.graph);
    RefreshFinal(kPerson, prefresh);
    RefreshFinal(kGroup, grefresh);
    stats.persons = po.stats;
    stats.groups = go.stats;
    const auto& last = events.back();
    impl_.Exec(tx_, c_, "resolver.advance",
               "UPDATE resolver_state SET watermark_xid = $1::xid8, watermark_event_id = $2, "
               "watermark_ingested_at = " NEXUS_US_TO_TS("$3::bigint") ", next_birth_seq = $4, "
               "batches_total = batches_total + 1, last_batch_at = now(), "
               "persons_count = persons_count + $5, groups_count = groups_count + $6",
               last.xid, last.event_id, last.ingested_at_us, next, po.stats.born - CountAbsorbedExisting(*po.graph),
               go.stats.born - CountAbsorbedExisting(*go.graph));
    return stats;
  }

  static int64_t CountAbsorbedExisting(const resolver::IdentityGraph& g) {
    int64_t n = 0;
    for (const auto& m : g.Merges()) n += m.absorbed_existing ? 1 : 0;
    return n;
  }

 private:
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
};

ResolverStore::ResolverStore(Database& db, std::string url)
    : impl_(std::make_unique<Impl>(Impl{db, std::move(url), nullptr, nullptr})) {}

ResolverStore::~ResolverStore() { Release(); }

void ResolverStore::Release() {
  impl_->receiver.reset();
  impl_->session.reset();  // closing the session releases the lock
  holds_lock_ = false;
}

bool ResolverStore::TryAcquireLock() {
  try {
    if (!impl_->session || !impl_->session->conn->is_open()) {
      Release();
      impl_->session = std::make_unique<detail::PooledConnection>();
      impl_->session->conn = impl_->db.impl().Connect();
    }
    pqxx::nontransaction n(*impl_->session->conn);
    holds_lock_ = n.exec("SELECT pg_try_advisory_lock(" + std::to_string(kResolverLockKey) + ")")[0][0].as<bool>();
    n.commit();
    if (holds_lock_ && !impl_->receiver) impl_->receiver = std::make_unique<IngestReceiver>(*impl_->session->conn);
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
/// Runs `fn` in one transaction on the lock session. A broken connection loses the lock.
template <typename F>
void OnSession(ResolverStore::Impl& impl, bool& holds_lock, std::string_view what, F&& fn) {
  if (!holds_lock || !impl.session) throw StorageError(ErrorKind::kUnavailable, "resolver lock not held");
  try {
    pqxx::work tx(*impl.session->conn);
    fn(tx, *impl.session);
    tx.commit();
  } catch (const StorageError&) {
    throw;
  } catch (const std::exception& e) {
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
}  // namespace

BatchStats ResolverStore::RunBatch(int64_t max_events, const resolver::ProtectionConfig& protection) {
  BatchStats stats;
  const auto start = std::chrono::steady_clock::now();
  OnSession(*impl_, holds_lock_, "resolver batch", [&](pqxx::work& tx, detail::PooledConnection& c) {
    BatchRunner runner(impl_->db.impl(), tx, c);
    stats = runner.Run(max_events, protection, {}, {});
  });
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

RebuildStats ResolverStore::Rebuild(const resolver::ProtectionConfig& protection, int64_t chunk_events) {
  RebuildStats out;
  const auto start = std::chrono::steady_clock::now();
  OnSession(*impl_, holds_lock_, "rebuild", [&](pqxx::work& tx, detail::PooledConnection& c) {
    // Edges an operator released stay released: the replay applies them without caps at their place.
    std::set<std::pair<std::string, std::string>> forced_p, forced_g;
    for (const auto& row : tx.exec("SELECT kind, event_id, edge_id FROM quarantined_edges WHERE released_at IS NOT NULL")) {
      (std::string(row[0].c_str()) == "person" ? forced_p : forced_g).insert({row[1].c_str(), row[2].c_str()});
    }
    // DELETE, not TRUNCATE: readers keep seeing the old state until this transaction commits.
    for (const char* table : {"resolved_person_identifiers", "resolved_person_traits", "resolved_group_identifiers",
                              "resolved_group_traits", "resolved_membership_identifiers", "memberships",
                              "person_participants", "group_participants", "persons", "groups",
                              "person_id_aliases", "group_id_aliases"}) {
      tx.exec(std::string("DELETE FROM ") + table);
    }
    tx.exec("DELETE FROM quarantined_edges WHERE released_at IS NULL");
    tx.exec("UPDATE resolver_state SET watermark_xid = '0', watermark_event_id = '', watermark_ingested_at = NULL, "
            "next_birth_seq = 1, persons_count = 0, groups_count = 0");
    BatchRunner runner(impl_->db.impl(), tx, c);
    for (;;) {
      const auto s = runner.Run(chunk_events, protection, forced_p, forced_g);
      if (s.events == 0) break;
      out.events += s.events;
    }
    auto r = tx.exec("SELECT persons_count, groups_count, (SELECT count(*) FROM resolved_person_identifiers) + "
                     "(SELECT count(*) FROM resolved_group_identifiers) FROM resolver_state");
    out.persons = r[0][0].as<int64_t>();
    out.groups = r[0][1].as<int64_t>();
    out.identifiers = r[0][2].as<int64_t>();
  });
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  log::Info("rebuild committed", {{"events", static_cast<long long>(out.events)},
                                  {"persons", static_cast<long long>(out.persons)},
                                  {"groups", static_cast<long long>(out.groups)}, {"seconds", out.seconds}});
  return out;
}

std::string ResolverStore::ReleaseQuarantined(int64_t quarantine_id, const resolver::ProtectionConfig& protection) {
  std::string entity;
  OnSession(*impl_, holds_lock_, "release quarantined edge", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto q = tx.exec("SELECT kind, event_id, edge_id, identifier_types, identifier_values, released_at IS NOT NULL "
                     "FROM quarantined_edges WHERE quarantine_id = " + std::to_string(quarantine_id) + " FOR UPDATE");
    if (q.empty()) {
      throw StorageError(ErrorKind::kNotFound, "quarantined edge " + std::to_string(quarantine_id) + " not found");
    }
    if (q[0][5].as<bool>()) {
      throw StorageError(ErrorKind::kInvalidArgument,
                         "quarantined edge " + std::to_string(quarantine_id) + " was already released");
    }
    const Kind& k = std::string(q[0][0].c_str()) == "person" ? kPerson : kGroup;
    // Identifiers of the edge, as rows of a one-event "batch" whose only effect is the forced merge.
    std::vector<std::string> types, values;
    auto parse = [](const pqxx::field& f, std::vector<std::string>* out) {
      auto arr = f.as_array();
      for (auto v = arr.get_next(); v.first != pqxx::array_parser::done; v = arr.get_next()) {
        if (v.first == pqxx::array_parser::string_value) out->push_back(v.second);
      }
    };
    parse(q[0][3], &types);
    parse(q[0][4], &values);
    BatchRunner runner(impl_->db.impl(), tx, c);
    State s = runner.LoadState();
    BatchEvent ev{q[0][1].c_str(), "0", 0, "", "", 0};
    std::vector<IdRow> rows;
    for (size_t i = 0; i < types.size() && i < values.size(); ++i) {
      rows.push_back({0, 0, q[0][2].c_str(), {types[i], values[i]}, std::nullopt, false, 0, ""});
    }
    int64_t next = s.next_birth_seq;
    resolver::ProtectionConfig unlimited = resolver::ProtectionConfig::Unlimited();
    (void)protection;
    std::set<std::pair<std::string, std::string>> forced{{ev.event_id, q[0][2].c_str()}};
    // The edge's identifiers are all resolved already, so Resolve only merges; rows are not re-written
    // as sightings (occurrence times stay those of the original events).
    KindOutcome o = runner.Resolve(k, s, {ev}, rows, k.name == "person" ? unlimited.person_caps : unlimited.group_caps,
                                   &next, forced);
    const auto refresh = runner.Write(k, o, {ev}, {}, {});
    runner.RefreshFinal(k, refresh);
    entity = types.empty() ? "" : o.graph->EntityOf({types[0], values[0]});
    const int64_t absorbed = BatchRunner::CountAbsorbedExisting(*o.graph);
    tx.exec("UPDATE resolver_state SET next_birth_seq = " + std::to_string(next) + ", " + k.entities +
            "_count = " + k.entities + "_count + " + std::to_string(o.stats.born - absorbed));
    tx.exec("UPDATE quarantined_edges SET released_at = now() WHERE quarantine_id = " + std::to_string(quarantine_id));
    log::Info("quarantined edge released", {{"quarantine_id", static_cast<long long>(quarantine_id)},
                                            {"entity_id", entity}});
  });
  return entity;
}

ResolverStatusInfo ResolverStore::Status(Database& db) {
  ResolverStatusInfo out;
  db.impl().Run("resolver status", [&](pqxx::work& tx, detail::PooledConnection& c) {
    auto r = db.impl().Exec(
        tx, c, "resolver.status",
        "SELECT " NEXUS_TS_TO_US("s.watermark_ingested_at") ", s.watermark_event_id, s.batches_total, "
        NEXUS_TS_TO_US("s.last_batch_at") ", s.persons_count, s.groups_count, "
        "(SELECT count(*) FROM (SELECT 1 FROM events e WHERE e._ingest_xid >= s.watermark_xid AND (e._ingest_xid, e.event_id) > "
        "  (s.watermark_xid, s.watermark_event_id) LIMIT 10000000) p), "
        "coalesce(extract(epoch from now() - (SELECT e._ingested_at FROM events e WHERE e._ingest_xid >= s.watermark_xid AND (e._ingest_xid, e.event_id) > "
        "  (s.watermark_xid, s.watermark_event_id) ORDER BY e._ingest_xid, e.event_id LIMIT 1)), 0)::float8 "
        "FROM resolver_state s");
    const auto& row = r[0];
    if (!row[0].is_null()) out.watermark_ingested_at_us = row[0].as<int64_t>();
    out.watermark_event_id = row[1].c_str();
    out.batches_total = row[2].as<int64_t>();
    if (!row[3].is_null()) out.last_batch_at_us = row[3].as<int64_t>();
    out.persons = row[4].as<int64_t>();
    out.groups = row[5].as<int64_t>();
    out.events_pending = row[6].as<int64_t>();
    out.lag_seconds = std::max(0.0, row[7].as<double>());
  }, 1);
  return out;
}

std::vector<QuarantinedEdgeInfo> ResolverStore::ListQuarantined(Database& db, const std::string& kind,
                                                                bool include_released, int64_t after_id, int limit) {
  std::vector<QuarantinedEdgeInfo> out;
  db.impl().Run("list quarantine", [&](pqxx::work& tx, detail::PooledConnection& c) {
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
      for (size_t i = 0; i < types.size() && i < values.size(); ++i) q.identifiers.emplace_back(types[i], values[i]);
      q.reason = row[8].c_str();
      q.entity_ids = parse(row[9]);
      q.quarantined_at_us = row[10].as<int64_t>();
      q.released = row[11].as<bool>();
      out.push_back(std::move(q));
    }
  }, 1);
  return out;
}

}  // namespace nexus::storage
