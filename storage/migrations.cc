#include "storage/migrations.h"

#include "common/log.h"
#include "storage/database.h"
#include "storage/detail/migrations_embedded.h"
#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {
// Arbitrary constant shared by every nexusd: the migration lock.
constexpr long long kMigrationLockKey = 0x6e65787573001LL;
}  // namespace

int LatestMigrationVersion() {
  const auto& all = detail::EmbeddedMigrations();
  return all.empty() ? 0 : all.back().version;
}

MigrationResult Migrate(Database& db) {
  MigrationResult result;
  for (const auto& m : detail::EmbeddedMigrations()) {
    db.impl().Run("migrate", [&](pqxx::work& tx, detail::PooledConnection&) {
      tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey) + ")");
      tx.exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          " version integer PRIMARY KEY, name text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      auto done = tx.exec("SELECT 1 FROM schema_migrations WHERE version = " + std::to_string(m.version));
      if (!done.empty()) return;
      tx.exec(m.sql);
      tx.exec("INSERT INTO schema_migrations (version, name) VALUES (" + std::to_string(m.version) + ", " +
              tx.quote(m.name) + ")");
      result.applied.push_back(m.name);
      log::Info("applied migration", {{"version", m.version}, {"name", m.name}});
    }, 1);
    result.version = m.version;
  }
  return result;
}

}  // namespace nexus::storage
