#include "resolver/identity_graph.h"

#include <algorithm>
#include <functional>

#include "common/hash.h"

namespace nexus::resolver {

size_t IdKeyHash::operator()(const IdKey& k) const noexcept {
  const size_t h1 = std::hash<std::string>{}(k.type);
  const size_t h2 = std::hash<std::string>{}(k.value);
  return h2 ^ (h1 + 0x9e3779b97f4a7c15ULL + (h2 << 6) + (h2 >> 2));
}

IdentityGraph::IdentityGraph(std::string id_prefix, std::string id_salt, Caps caps, int64_t next_birth_seq)
    : prefix_(std::move(id_prefix)),
      salt_(std::move(id_salt)),
      caps_(std::move(caps)),
      track_types_(!caps_.Unlimited()),
      next_birth_seq_(next_birth_seq) {}

std::string IdentityGraph::MakeId(const std::string& prefix, const std::string& salt, const IdKey& founder) {
  std::string material;
  material.reserve(salt.size() + founder.type.size() + founder.value.size() + 2);
  material += salt;
  material += '\x1f';
  material += founder.type;
  material += '\x1f';
  material += founder.value;
  return prefix + StableId128(material);
}

int IdentityGraph::Find(int c) const {
  int root = c;
  while (clusters_[static_cast<size_t>(root)].parent != root) root = clusters_[static_cast<size_t>(root)].parent;
  while (clusters_[static_cast<size_t>(c)].parent != root) {  // path compression
    const int next = clusters_[static_cast<size_t>(c)].parent;
    clusters_[static_cast<size_t>(c)].parent = root;
    c = next;
  }
  return root;
}

void IdentityGraph::AddExistingEntity(const ExistingEntity& e) {
  if (entity_index_.count(e.id)) return;
  Cluster c;
  c.parent = static_cast<int>(clusters_.size());
  c.id = e.id;
  c.count = e.identifier_count;
  c.birth_seq = e.birth_seq;
  c.existing = true;
  if (track_types_) c.type_counts.assign(e.type_counts.begin(), e.type_counts.end());
  entity_index_.emplace(e.id, c.parent);
  clusters_.push_back(std::move(c));
}

void IdentityGraph::AddKnownIdentifier(const IdKey& id, const std::string& entity_id) {
  auto it = entity_index_.find(entity_id);
  if (it == entity_index_.end()) return;  // caller contract: entity first
  index_.emplace(id, it->second);
}

int64_t IdentityGraph::TypeCount(const Cluster& c, const std::string& type) {
  for (const auto& [t, n] : c.type_counts) {
    if (t == type) return n;
  }
  return 0;
}

std::string IdentityGraph::CapViolation(const std::vector<int>& roots, const std::vector<IdKey>& fresh) const {
  // The unseen identifiers count as one more side (a component they would found together).
  Cluster candidate;
  candidate.count = static_cast<int64_t>(fresh.size());
  for (const auto& id : fresh) AddTypeCount(candidate, id.type, 1);
  std::vector<const Cluster*> sides;
  for (int r : roots) sides.push_back(&clusters_[static_cast<size_t>(r)]);
  if (!fresh.empty()) sides.push_back(&candidate);
  // A union breaks a cap when it exceeds it and no existing side already did on its own (fresh identifiers
  // never count as "already over": an edge of two new user_ids breaks a cap of 1).
  int64_t total = 0, largest = 0;
  for (const Cluster* c : sides) {
    total += c->count;
    if (c != &candidate) largest = std::max(largest, c->count);
  }
  if (caps_.max_entity_size > 0 && total > caps_.max_entity_size && total > largest) {
    return "would join " + std::to_string(sides.size()) + " parts into " + std::to_string(total) +
           " identifiers (max_entity_size " + std::to_string(caps_.max_entity_size) + ")";
  }
  std::vector<std::string> types;
  for (const Cluster* c : sides) {
    for (const auto& [t, n] : c->type_counts) {
      if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
    }
  }
  std::sort(types.begin(), types.end());
  for (const auto& t : types) {
    const int64_t cap = caps_.CapFor(t);
    if (cap <= 0) continue;
    int64_t sum = 0, max_side = 0;
    for (const Cluster* c : sides) {
      const int64_t n = TypeCount(*c, t);
      sum += n;
      if (c != &candidate) max_side = std::max(max_side, n);
    }
    if (sum > cap && sum > max_side) {
      return "would give one entity " + std::to_string(sum) + " identifiers of type '" + t + "' (cap " +
             std::to_string(cap) + ")";
    }
  }
  return {};
}

void IdentityGraph::ApplyEdge(const Edge& e) {
  // Identifiers the graph has never seen form one candidate component; seen ones bring their components.
  std::vector<IdKey> fresh;
  std::vector<int> roots;
  auto visit = [&](const IdKey& id) {
    auto it = index_.find(id);
    if (it == index_.end()) {
      if (std::find(fresh.begin(), fresh.end(), id) == fresh.end()) fresh.push_back(id);
      return;
    }
    const int r = Find(it->second);
    if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
  };
  for (const auto& id : e.identifiers) visit(id);
  for (const auto& id : e.prior) visit(id);
  for (int r : roots) clusters_[static_cast<size_t>(r)].touched = true;
  if (fresh.empty() && roots.size() < 2) return;

  if (!e.force && track_types_) {
    std::string why = CapViolation(roots, fresh);
    if (!why.empty()) {
      Quarantine q{e.event_id, e.edge_id, e.identifiers, std::move(why), {}};
      for (const auto& id : e.prior) {
        if (std::find(q.identifiers.begin(), q.identifiers.end(), id) == q.identifiers.end())
          q.identifiers.push_back(id);
      }
      for (int r : roots) q.entity_ids.push_back(clusters_[static_cast<size_t>(r)].id);
      quarantined_.push_back(std::move(q));
      // The edge is not applied: each unseen identifier stands alone.
      for (const auto& id : fresh) NewCluster({id}, e.event_id);
      return;
    }
  }

  // Survivor: most identifiers, then the oldest (smallest birth_seq). The candidate is the youngest, so it
  // survives only when strictly larger than every existing component; otherwise it is never born and its
  // identifiers simply accrete.
  int survivor = -1;
  for (int r : roots) {
    if (survivor < 0) {
      survivor = r;
      continue;
    }
    const auto& c = clusters_[static_cast<size_t>(r)];
    const auto& s = clusters_[static_cast<size_t>(survivor)];
    if (c.count > s.count || (c.count == s.count && c.birth_seq < s.birth_seq)) survivor = r;
  }
  if (survivor < 0 || static_cast<int64_t>(fresh.size()) > clusters_[static_cast<size_t>(survivor)].count) {
    survivor = NewCluster(fresh, e.event_id);
    fresh.clear();
  }
  auto& s = clusters_[static_cast<size_t>(survivor)];
  for (const auto& id : fresh) {
    index_.emplace(id, survivor);
    new_ids_.push_back(id);
    ++s.count;
    if (track_types_) AddTypeCount(s, id.type, 1);
  }
  for (int r : roots) {
    if (r == survivor) continue;
    auto& c = clusters_[static_cast<size_t>(r)];
    merges_.push_back({c.id, s.id, {}, e.event_id, e.edge_id, c.count, c.existing});
    merge_survivor_nodes_.push_back(survivor);
    c.parent = survivor;
    s.count += c.count;
    if (track_types_) {
      for (const auto& [t, n] : c.type_counts) AddTypeCount(s, t, n);
      c.type_counts.clear();
      c.type_counts.shrink_to_fit();
    }
  }
}

int IdentityGraph::NewCluster(const std::vector<IdKey>& ids, const std::string& event_id) {
  Cluster c;
  c.parent = static_cast<int>(clusters_.size());
  c.id = MakeId(prefix_, salt_, ids.front());
  c.count = static_cast<int64_t>(ids.size());
  c.birth_seq = next_birth_seq_++;
  c.touched = true;
  births_.push_back({c.id, c.birth_seq, ids.front(), event_id});
  entity_index_.emplace(c.id, c.parent);
  for (const auto& id : ids) {
    index_.emplace(id, c.parent);
    new_ids_.push_back(id);
    if (track_types_) AddTypeCount(c, id.type, 1);
  }
  clusters_.push_back(std::move(c));
  return static_cast<int>(clusters_.size()) - 1;
}

void IdentityGraph::AddTypeCount(Cluster& c, const std::string& type, int64_t n) {
  auto it = std::find_if(c.type_counts.begin(), c.type_counts.end(), [&](const auto& p) { return p.first == type; });
  if (it == c.type_counts.end()) c.type_counts.emplace_back(type, n);
  else it->second += n;
}

std::string IdentityGraph::EntityOf(const IdKey& id) const {
  auto it = index_.find(id);
  if (it == index_.end()) return {};
  return clusters_[static_cast<size_t>(Find(it->second))].id;
}

std::vector<Merge> IdentityGraph::Merges() const {
  std::vector<Merge> out = merges_;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].survivor_id = clusters_[static_cast<size_t>(Find(merge_survivor_nodes_[i]))].id;
  }
  return out;
}

std::vector<EntitySummary> IdentityGraph::TouchedEntities() const {
  std::vector<EntitySummary> out;
  for (size_t i = 0; i < clusters_.size(); ++i) {
    const auto& c = clusters_[i];
    if (c.parent != static_cast<int>(i) || !c.touched) continue;
    out.push_back({c.id, c.count, c.birth_seq, !c.existing});
  }
  return out;
}

std::vector<std::pair<IdKey, std::string>> IdentityGraph::NewAssignments() const {
  std::vector<std::pair<IdKey, std::string>> out;
  out.reserve(new_ids_.size());
  for (const auto& id : new_ids_) out.emplace_back(id, EntityOf(id));
  return out;
}

}  // namespace nexus::resolver
