#pragma once
// Database test support: one throwaway PostgreSQL cluster per test binary (started by the binary itself,
// in a temp dir, on a private unix socket), and a fresh database per test.
// NEXUS_TEST_DATABASE_URL=<url of a server where we may CREATE DATABASE> uses that server instead.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "server/app.h"
#include "server/config.h"

namespace nexus::testing {

/// libpq connection string of a new, empty, uniquely named database (not migrated).
std::string CreateTestDatabase();
/// Brings the empty database at `url` to schema version `version` the way an older nexusd left it: applies
/// storage/migrations/NNN_*.sql up to that number from the source tree, each recorded in schema_migrations
/// (for tests of a migration's in-place upgrade).
void MigrateThrough(const std::string& url, int version);
/// The server-level (postgres database) connection string.
std::string AdminUrl();
/// The temp directory the cluster lives in (for tests that need scratch space).
std::string ScratchDir();

/// A test with its own migrated database and, on demand, a running nexusd App on ports 0.
class PgTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Config pointing at this test's database; ports 0; resolver on with a long poll (tests call ResolveNow).
  server::Config BaseConfig() const;
  /// Starts an App with `config` (BaseConfig() by default).
  server::App& StartApp();
  server::App& StartApp(const server::Config& config);
  /// ResolveNow until nothing committed is left (ResolveUntilNothingPending). Tests that mean "resolve what is
  /// committed" call this; only a test that holds a transaction open on purpose calls ResolveNow itself.
  void ResolveAll();

  std::string url_;
  std::unique_ptr<server::App> app_;
};

/// Calls `resolve` (which runs batches and returns the events they took) until no committed event of `db` is past
/// the watermark, for at most 30 s (a failure then); returns the events taken. A batch takes only events below the
/// oldest transaction open in this database, which a transaction of the test's own database (an autovacuum
/// ANALYZE) can hold back for a moment: one pass can then stop at an empty batch and leave the last events behind.
int64_t ResolveUntilNothingPending(storage::Database& db, const std::function<int64_t()>& resolve);

/// Runs one SQL statement against `url` and returns the first column of the first row ("" if none).
std::string QueryScalar(const std::string& url, const std::string& sql);
/// Row count of a query.
long long QueryCount(const std::string& url, const std::string& sql);

/// Every table the resolver writes, as sorted text (one line per row) of the columns that are facts of the
/// log (not wall-clock stamps or surrogate keys): incremental resolution must leave exactly what a rebuild does.
std::map<std::string, std::string> DumpResolvedTables(const std::string& url);
/// The first line where two dumps of a table differ ("(equal)" when none), for a readable failure.
std::string FirstDifference(const std::string& incremental, const std::string& rebuilt);

}  // namespace nexus::testing
