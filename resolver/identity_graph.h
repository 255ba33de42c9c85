#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "resolver/protection.h"

namespace nexus::resolver {

/// A normalized identifier: (type, value).
struct IdKey {
  std::string type;
  std::string value;
  bool operator==(const IdKey&) const = default;
  auto operator<=>(const IdKey&) const = default;
};
struct IdKeyHash {
  size_t operator()(const IdKey& k) const noexcept;
};

/// One edge in ingest order: the identifiers one event saw together under one edge_id, plus the identifiers
/// earlier events saw under the same edge_id (so an edge_id reused by a source keeps linking).
struct Edge {
  std::string event_id;
  std::string edge_id;
  std::vector<IdKey> identifiers;  ///< this event's rows of the edge, distinct, in row order; never blocked ones
  std::vector<IdKey> prior;        ///< seen under the same edge_id by earlier (already applied) events
  bool force = false;              ///< apply without checking caps (an operator-released edge)
};

/// An entity that exists before this batch, as far as the batch needs it.
struct ExistingEntity {
  std::string id;
  int64_t identifier_count = 0;
  int64_t birth_seq = 0;
  std::map<std::string, int64_t> type_counts;  ///< needed only when caps are set
};

struct Birth {
  std::string id;
  int64_t birth_seq = 0;
  IdKey founder;
  std::string event_id;
};

/// `absorbed_id` was merged into `merged_into_id` by (event_id, edge_id); `survivor_id` is where it ends up
/// after every merge of the batch.
struct Merge {
  std::string absorbed_id;
  std::string merged_into_id;
  std::string survivor_id;
  std::string event_id;
  std::string edge_id;
  int64_t absorbed_count = 0;
  bool absorbed_existing = false;  ///< the absorbed entity existed before this batch
};

/// An edge not applied because it would break a cap.
struct Quarantine {
  std::string event_id;
  std::string edge_id;
  std::vector<IdKey> identifiers;
  std::string reason;
  std::vector<std::string> entity_ids;  ///< the entities it would have joined, at the time
};

/// The final state of an entity the batch touched.
struct EntitySummary {
  std::string id;
  int64_t identifier_count = 0;
  int64_t birth_seq = 0;
  bool is_new = false;  ///< born in this batch
};

/// Exact, incremental connected components over identifiers with stable ids (union-find, no hop limit).
///
/// Feed it the entities and identifier assignments the batch touches, then the batch's edges in ingest
/// order. Each edge unites the components of its identifiers unless that would break a cap (then it is
/// quarantined). When components unite, the one with more identifiers keeps its id (ties: the older, i.e.
/// smaller birth_seq); a new component's id is derived from its first identifier and a per-installation salt.
/// Every decision depends only on the order of edges, never on batch boundaries: applying a log in any cut
/// of batches gives the same partition and the same ids as applying it at once.
class IdentityGraph final {
 public:
  IdentityGraph(std::string id_prefix, std::string id_salt, Caps caps, int64_t next_birth_seq);
  IdentityGraph(const IdentityGraph&) = delete;
  IdentityGraph& operator=(const IdentityGraph&) = delete;

  void AddExistingEntity(const ExistingEntity& e);
  /// `entity_id` must have been added with AddExistingEntity.
  void AddKnownIdentifier(const IdKey& id, const std::string& entity_id);

  void ApplyEdge(const Edge& e);

  /// The current entity of an identifier, or "" if the graph has never seen it.
  std::string EntityOf(const IdKey& id) const;
  bool Knows(const IdKey& id) const { return index_.count(id) > 0; }

  const std::vector<Birth>& births() const { return births_; }
  const std::vector<Quarantine>& quarantined() const { return quarantined_; }
  /// Every merge of the batch, in order, with survivor_id resolved to the final survivor.
  std::vector<Merge> Merges() const;
  /// Every live entity the batch touched (existing or new), with final counts.
  std::vector<EntitySummary> TouchedEntities() const;
  /// Identifiers first seen in this batch -> final entity id, in first-seen order.
  std::vector<std::pair<IdKey, std::string>> NewAssignments() const;
  int64_t next_birth_seq() const { return next_birth_seq_; }
  size_t identifier_count() const { return index_.size(); }

  /// The id a component founded by `founder` gets.
  static std::string MakeId(const std::string& prefix, const std::string& salt, const IdKey& founder);

 private:
  struct Cluster {
    int parent = 0;
    std::string id;
    int64_t count = 0;
    int64_t birth_seq = 0;
    bool existing = false;
    bool touched = false;
    std::vector<std::pair<std::string, int64_t>> type_counts;  // kept only when caps are set
  };
  int Find(int c) const;
  int NewCluster(const std::vector<IdKey>& ids, const std::string& event_id);
  std::string CapViolation(const std::vector<int>& roots, const std::vector<IdKey>& fresh) const;
  static void AddTypeCount(Cluster& c, const std::string& type, int64_t n);
  static int64_t TypeCount(const Cluster& c, const std::string& type);

  std::string prefix_;
  std::string salt_;
  Caps caps_;
  bool track_types_;
  int64_t next_birth_seq_;
  mutable std::vector<Cluster> clusters_;
  std::unordered_map<std::string, int> entity_index_;
  std::unordered_map<IdKey, int, IdKeyHash> index_;
  std::vector<IdKey> new_ids_;
  std::vector<Birth> births_;
  std::vector<Merge> merges_;
  std::vector<int> merge_survivor_nodes_;
  std::vector<Quarantine> quarantined_;
};

}  // namespace nexus::resolver
