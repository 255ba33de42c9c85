#pragma once

#include <string>
#include <vector>

namespace nexus::storage {

class Database;

struct MigrationResult {
  std::vector<std::string> applied;  ///< names applied by this call (empty when already current)
  int version = 0;                   ///< schema version after the call
};

/// Applies the numbered migrations of storage/migrations/ that are missing, each in its own transaction,
/// recorded in schema_migrations. Safe when several processes call it at once (a transaction-level
/// advisory lock serializes them; the second finds the work done).
MigrationResult Migrate(Database& db);

/// The newest migration version compiled into this binary.
int LatestMigrationVersion();

}  // namespace nexus::storage
