#pragma once

#include <string>
#include <vector>

namespace nexus::storage::detail {

struct EmbeddedMigration {
  int version;
  const char* name;
  const char* sql;
};

/// The SQL files of storage/migrations/, compiled in, ordered by version.
const std::vector<EmbeddedMigration>& EmbeddedMigrations();

}  // namespace nexus::storage::detail
