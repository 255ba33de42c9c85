#pragma once

#include <optional>
#include <string>
#include <vector>

#include "resolver/id_key.h"

namespace nexus::resolver {

/// One stored occurrence of an edge: the identifiers one event saw under one edge_id.
struct EdgeOccurrence {
  std::string event_id;
  std::string edge_id;
  std::vector<IdKey> identifiers;
};

/// One step of a link path: `occurrence` (an index into the input) joins `from` and `to`.
struct PathStep {
  size_t occurrence;
  IdKey from;
  IdKey to;
};

/// A shortest path (fewest edges) from `a` to `b`, where identifiers sharing an edge_id are linked
/// (across events too, as the resolver links them). Returns an empty path when a == b and nullopt when
/// they are not connected through `occurrences`. Cost is linear in the size of the input.
std::optional<std::vector<PathStep>> ShortestLinkPath(const std::vector<EdgeOccurrence>& occurrences, const IdKey& a,
                                                      const IdKey& b);

}  // namespace nexus::resolver
