#include "resolver/explain.h"

#include <algorithm>
#include <deque>
#include <unordered_map>

namespace nexus::resolver {

std::optional<std::vector<PathStep>> ShortestLinkPath(const std::vector<EdgeOccurrence>& occurrences,
                                                      const IdKey& a, const IdKey& b) {
  if (a == b) return std::vector<PathStep>{};
  // Bipartite BFS: identifier nodes and edge_id nodes. For each (edge_id, identifier) remember the
  // occurrence that holds it, to report a real stored edge for every step.
  std::unordered_map<IdKey, int, IdKeyHash> id_node;
  std::unordered_map<std::string, int> edge_node;
  std::vector<IdKey> ids;
  std::vector<std::vector<std::pair<int, size_t>>> id_adj;    // id -> (edge node, occurrence)
  std::vector<std::vector<std::pair<int, size_t>>> edge_adj;  // edge -> (id node, occurrence)
  for (size_t i = 0; i < occurrences.size(); ++i) {
    const auto& occ = occurrences[i];
    auto [eit, enew] = edge_node.emplace(occ.edge_id, static_cast<int>(edge_adj.size()));
    if (enew) edge_adj.emplace_back();
    for (const auto& id : occ.identifiers) {
      auto [iit, inew] = id_node.emplace(id, static_cast<int>(ids.size()));
      if (inew) {
        ids.push_back(id);
        id_adj.emplace_back();
      }
      id_adj[static_cast<size_t>(iit->second)].emplace_back(eit->second, i);
      edge_adj[static_cast<size_t>(eit->second)].emplace_back(iit->second, i);
    }
  }
  auto ia = id_node.find(a), ib = id_node.find(b);
  if (ia == id_node.end() || ib == id_node.end()) return std::nullopt;

  struct Prev {
    int via_edge = -1;
    int from_id = -1;
    size_t occ_to = 0;    // occurrence holding this id under via_edge
  };
  std::vector<Prev> prev(ids.size());
  std::vector<bool> seen_id(ids.size(), false), seen_edge(edge_adj.size(), false);
  std::deque<int> queue{ia->second};
  seen_id[static_cast<size_t>(ia->second)] = true;
  bool found = false;
  while (!queue.empty() && !found) {
    const int cur = queue.front();
    queue.pop_front();
    for (const auto& [edge, occ_unused] : id_adj[static_cast<size_t>(cur)]) {
      if (seen_edge[static_cast<size_t>(edge)]) continue;
      seen_edge[static_cast<size_t>(edge)] = true;
      for (const auto& [next, occ_to] : edge_adj[static_cast<size_t>(edge)]) {
        if (seen_id[static_cast<size_t>(next)]) continue;
        seen_id[static_cast<size_t>(next)] = true;
        prev[static_cast<size_t>(next)] = {edge, cur, occ_to};
        if (next == ib->second) {
          found = true;
          break;
        }
        queue.push_back(next);
      }
      if (found) break;
    }
  }
  if (!found) return std::nullopt;
  std::vector<PathStep> path;
  for (int cur = ib->second; cur != ia->second;) {
    const Prev& p = prev[static_cast<size_t>(cur)];
    // Prefer an occurrence that holds both ends (one stored row set joined them); else the one holding `to`.
    size_t occ = p.occ_to;
    for (const auto& [id, o] : edge_adj[static_cast<size_t>(p.via_edge)]) {
      if (id != cur) continue;
      const auto& holds = occurrences[o].identifiers;
      if (std::find(holds.begin(), holds.end(), ids[static_cast<size_t>(p.from_id)]) != holds.end()) {
        occ = o;
        break;
      }
    }
    path.push_back({occ, ids[static_cast<size_t>(p.from_id)], ids[static_cast<size_t>(cur)]});
    cur = p.from_id;
  }
  std::reverse(path.begin(), path.end());
  return path;
}

}  // namespace nexus::resolver
