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

int IdentityGraph::NodeFor(const IdKey& id, const std::string& event_id) {
  if (auto it = index_.find(id); it != index_.end()) return it->second;
  Cluster c;
  c.parent = static_cast<int>(clusters_.size());
  c.id = MakeId(prefix_, salt_, id);
  c.count = 1;
  c.birth_seq = next_birth_seq_++;
  c.touched = true;
  if (track_types_) c.type_counts.emplace_back(id.type, 1);
  births_.push_back({c.id, c.birth_seq, id, event_id});
  entity_index_.emplace(c.id, c.parent);
  index_.emplace(id, c.parent);
  new_ids_.push_back(id);
  clusters_.push_back(std::move(c));
  return static_cast<int>(clusters_.size()) - 1;
}

int64_t IdentityGraph::TypeCount(const Cluster& c, const std::string& type) {
  for (const auto& [t, n] : c.type_counts) {
    if (t == type) return n;
  }
  return 0;
}

std::string IdentityGraph::CapViolation(const std::vector<int>& roots) const {
  int64_t total = 0, largest = 0;
  for (int r : roots) {
    total += clusters_[static_cast<size_t>(r)].count;
    largest = std::max(largest, clusters_[static_cast<size_t>(r)].count);
  }
  // A merge breaks a cap only when the union exceeds it and no single side already did.
  if (caps_.max_entity_size > 0 && total > caps_.max_entity_size && total > largest) {
    return "would join " + std::to_string(roots.size()) + " entities into " + std::to_string(total) +
           " identifiers (max_entity_size " + std::to_string(caps_.max_entity_size) + ")";
  }
  std::vector<std::string> types;
  for (int r : roots) {
    for (const auto& [t, n] : clusters_[static_cast<size_t>(r)].type_counts) {
      if (std::find(types.begin(), types.end(), t) == types.end()) types.push_back(t);
    }
  }
  std::sort(types.begin(), types.end());
  for (const auto& t : types) {
    const int64_t cap = caps_.CapFor(t);
    if (cap <= 0) continue;
    int64_t sum = 0, max_side = 0;
    for (int r : roots) {
      const int64_t n = TypeCount(clusters_[static_cast<size_t>(r)], t);
      sum += n;
      max_side = std::max(max_side, n);
    }
    if (sum > cap && sum > max_side) {
      return "would give one entity " + std::to_string(sum) + " identifiers of type '" + t + "' (cap " +
             std::to_string(cap) + ")";
    }
  }
  return {};
}

void IdentityGraph::ApplyEdge(const Edge& e) {
  std::vector<int> roots;
  roots.reserve(e.identifiers.size() + e.prior.size());
  auto add = [&](const IdKey& id) {
    const int r = Find(NodeFor(id, e.event_id));
    if (std::find(roots.begin(), roots.end(), r) == roots.end()) roots.push_back(r);
  };
  for (const auto& id : e.identifiers) add(id);
  for (const auto& id : e.prior) add(id);
  for (int r : roots) clusters_[static_cast<size_t>(r)].touched = true;
  if (roots.size() < 2) return;

  if (!e.force && track_types_) {
    std::string why = CapViolation(roots);
    if (!why.empty()) {
      Quarantine q{e.event_id, e.edge_id, e.identifiers, std::move(why), {}};
      for (const auto& id : e.prior) {
        if (std::find(q.identifiers.begin(), q.identifiers.end(), id) == q.identifiers.end())
          q.identifiers.push_back(id);
      }
      for (int r : roots) q.entity_ids.push_back(clusters_[static_cast<size_t>(r)].id);
      quarantined_.push_back(std::move(q));
      return;
    }
  }

  // Survivor: most identifiers, then the oldest (smallest birth_seq).
  int survivor = roots.front();
  for (int r : roots) {
    const auto& c = clusters_[static_cast<size_t>(r)];
    const auto& s = clusters_[static_cast<size_t>(survivor)];
    if (c.count > s.count || (c.count == s.count && c.birth_seq < s.birth_seq)) survivor = r;
  }
  auto& s = clusters_[static_cast<size_t>(survivor)];
  for (int r : roots) {
    if (r == survivor) continue;
    auto& c = clusters_[static_cast<size_t>(r)];
    merges_.push_back({c.id, s.id, {}, e.event_id, e.edge_id, c.count, c.existing});
    merge_survivor_nodes_.push_back(survivor);
    c.parent = survivor;
    s.count += c.count;
    if (track_types_) {
      for (const auto& [t, n] : c.type_counts) {
        auto it = std::find_if(s.type_counts.begin(), s.type_counts.end(), [&](const auto& p) { return p.first == t; });
        if (it == s.type_counts.end()) s.type_counts.emplace_back(t, n);
        else it->second += n;
      }
      c.type_counts.clear();
      c.type_counts.shrink_to_fit();
    }
  }
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
