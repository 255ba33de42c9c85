#include "pg_fixture.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <pqxx/pqxx>

#include "common/log.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"
#include "storage/migrations.h"

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
