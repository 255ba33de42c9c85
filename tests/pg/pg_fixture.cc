#include "pg_fixture.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>
#include <vector>

#include "common/log.h"
#include "server/resolver_worker.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"
#include "storage/migrations.h"
#include "storage/resolver_store.h"

namespace nexus::testing {
namespace {

class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    log::SetLevel(log::Level::kWarn);
    if (const char* url = std::getenv("NEXUS_TEST_DATABASE_URL"); url && *url) {
      admin_url_ = url;
      return;
    }
    char tmpl[] = "/tmp/nexus-pgtest-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    // As root the cluster runs as postgres, which must be able to search our (0700) temp dir; nexusd itself
    // never changes modes outside its data dir.
    std::filesystem::permissions(dir_, std::filesystem::perms::others_exec, std::filesystem::perm_options::add);
    storage::EmbeddedPostgresOptions o;
    o.data_dir = dir_ + "/cluster";
    // Throwaway data: durability off for speed. Connection limit up for concurrent tests.
    o.server_options = {"fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300",
                        "shared_buffers=256MB"};
    cluster_ = std::make_unique<storage::EmbeddedPostgres>(o);
    const std::string url = cluster_->Start();
    admin_url_ = url.substr(0, url.find("dbname=")) + "dbname=postgres user=nexus";
  }
  void TearDown() override {
    if (cluster_) cluster_->Stop();
    cluster_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  std::string admin_url_;
  std::string dir_;
  std::unique_ptr<storage::EmbeddedPostgres> cluster_;
};

ClusterEnvironment* g_env = nullptr;
const bool kRegistered = [] {
  g_env = new ClusterEnvironment();
  ::testing::AddGlobalTestEnvironment(g_env);  // gtest owns it
  return true;
}();

// Every table the resolver writes, with the columns that are facts of the log (not wall-clock stamps or
// surrogate keys).
const std::vector<std::pair<std::string, std::string>> kResolvedTables = {
    {"resolved_person_identifiers", "person_id, identifier_type, identifier_value, source, occurred_at, last_seen_at"},
    {"resolved_group_identifiers", "group_id, identifier_type, identifier_value, source, occurred_at, last_seen_at"},
    // The search tables (migrations 016, 017): kept by triggers and the merge's repoint, redone by a rebuild.
    {"person_identifier_search", "identifier_type, identifier_value, person_id"},
    {"group_identifier_search", "identifier_type, identifier_value, group_id"},
    {"resolved_person_traits",
     "person_id, trait_name, trait_value, value_type, source, occurred_at, _ingested_at, trait_row_id"},
    {"resolved_group_traits",
     "group_id, trait_name, trait_value, value_type, source, occurred_at, _ingested_at, trait_row_id"},
    {"resolved_membership_identifiers",
     "id, membership_identifier_id, person_id, group_id, role, source, occurred_at, _ingested_at"},
    {"memberships",
     "id, person_id, group_id, role, source, established_at, role_occurred_at, role_ingested_at, role_row_id"},
    {"person_participants", "event_id, person_id, role, occurred_at, event_type, source"},
    {"group_participants", "event_id, group_id, role, occurred_at, event_type, source"},
    {"persons",
     "person_id, email, name, phone, title, timezone, identifier_count, birth_xid, birth_edge_row, birth_row, "
     "created_by_event_id"},
    {"groups",
     "group_id, domain, company_name, industry, company_size, shopify_id, identifier_count, birth_xid, birth_edge_row, "
     "birth_row, created_by_event_id"},
    {"person_id_aliases", "old_id, new_id, merged_into_id, event_id, edge_id, absorbed_identifier_count"},
    {"group_id_aliases", "old_id, new_id, merged_into_id, event_id, edge_id, absorbed_identifier_count"},
    {"quarantined_edges",
     "kind, event_id, edge_id, source, occurred_at, identifier_types, identifier_values, reason, entity_ids, "
     "released_at IS NOT NULL"},
    {"resolver_state", "watermark_xid, watermark_event_id, birth_keys_pending, persons_count, groups_count"},
};

}  // namespace

std::string FirstDifference(const std::string& a, const std::string& b) {
  std::istringstream x(a), y(b);
  std::string l, r;
  for (int line = 1;; ++line) {
    const bool more_l = static_cast<bool>(std::getline(x, l)), more_r = static_cast<bool>(std::getline(y, r));
    if (!more_l && !more_r) return "(equal)";
    if (!more_l) l = "(end)";
    if (!more_r) r = "(end)";
    if (l != r) return "line " + std::to_string(line) + ":\n  incremental: " + l + "\n  rebuilt:     " + r;
  }
}

namespace {

std::string WithDbName(const std::string& admin, const std::string& db) {
  const auto p = admin.find("dbname=");
  if (p == std::string::npos) return admin + " dbname=" + db;
  auto end = admin.find(' ', p);
  return admin.substr(0, p) + "dbname=" + db + (end == std::string::npos ? "" : admin.substr(end));
}

}  // namespace

std::string AdminUrl() { return g_env->admin_url_; }
std::string ScratchDir() { return g_env->dir_.empty() ? "/tmp" : g_env->dir_; }

std::string CreateTestDatabase() {
  static std::atomic<int> counter{0};
  const std::string name = "t_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  pqxx::connection c(AdminUrl());
  pqxx::nontransaction n(c);
  n.exec("DROP DATABASE IF EXISTS " + name);
  n.exec("CREATE DATABASE " + name);
  return WithDbName(AdminUrl(), name);
}

void MigrateThrough(const std::string& url, int version) {
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(std::string(NEXUS_SOURCE_DIR) + "/storage/migrations")) {
    const std::string name = f.path().stem().string();
    if (f.path().extension() == ".sql" && std::stoi(name.substr(0, 3)) <= version) files.push_back(f.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(static_cast<int>(files.size()), version) << "migrations 001.." << version << " in the source tree";
  pqxx::connection c(url);
  pqxx::work tx(c);
  tx.exec(
      "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
      "applied_at timestamptz NOT NULL DEFAULT now())");
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream sql;
    sql << in.rdbuf();
    tx.exec(sql.str());
    const std::string name = f.stem().string();
    tx.exec("INSERT INTO schema_migrations (version, name) VALUES (" + name.substr(0, 3) + ", " + tx.quote(name) + ")");
  }
  tx.commit();
}

std::string QueryScalar(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::nontransaction n(c);
  auto r = n.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].c_str();
}

long long QueryCount(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::nontransaction n(c);
  return static_cast<long long>(n.exec(sql).size());
}

std::map<std::string, std::string> DumpResolvedTables(const std::string& url) {
  std::map<std::string, std::string> out;
  for (const auto& [table, cols] : kResolvedTables) {
    out[table] = QueryScalar(url, "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM (SELECT " +
                                      cols + " FROM " + table + ") t");
  }
  return out;
}

void PgTest::SetUp() {
  url_ = CreateTestDatabase();
  storage::Database db({url_, 1, std::chrono::milliseconds(5000)}, nullptr);
  storage::Migrate(db);
}

void PgTest::TearDown() {
  if (app_) app_->Shutdown();
  app_.reset();
}

server::Config PgTest::BaseConfig() const {
  server::Config c;
  c.database_url = url_;
  c.grpc_listen = "127.0.0.1:0";
  c.http_listen = "127.0.0.1:0";
  c.db_pool_size = 8;
  c.resolver_poll_interval = std::chrono::milliseconds(200);
  c.shutdown_grace = std::chrono::milliseconds(2000);
  c.http_threads = 2;
  return c;
}

server::App& PgTest::StartApp() { return StartApp(BaseConfig()); }

void PgTest::ResolveAll() {
  ResolveUntilNothingPending(app_->database(), [&] { return app_->resolver()->ResolveNow(); });
}

int64_t ResolveUntilNothingPending(storage::Database& db, const std::function<int64_t()>& resolve) {
  int64_t total = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    total += resolve();
    const int64_t pending = storage::ResolverStore::Status(db).events_pending;
    if (pending == 0) return total;
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << pending << " committed events stayed unresolved for 30 s";
      return total;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

server::App& PgTest::StartApp(const server::Config& config) {
  app_ = std::make_unique<server::App>(config);
  app_->Start();
  return *app_;
}

}  // namespace nexus::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
