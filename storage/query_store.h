#pragma once

namespace nexus::storage {

class Database;

/// Reads resolved persons, groups, memberships and timelines (read-only; served by indexes).
class QueryStore final {
 public:
  explicit QueryStore(Database& db) : db_(db) {}

 private:
  [[maybe_unused]] Database& db_;
};

}  // namespace nexus::storage
