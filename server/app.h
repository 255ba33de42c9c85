#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>

#include "resolver/protection.h"
#include "server/config.h"

namespace nexus::storage {
class AuthStore;
class Database;
class ReadReplicas;
class DatabaseProbe;
class EmbeddedPostgres;
class IngestStore;
class QueryStore;
}  // namespace nexus::storage

namespace nexus::server {

class Authenticator;
class Metrics;
class ProtectionHolder;
class ResolverWorker;
class IngestHandler;
class IngestServiceImpl;
class QueryHandler;
class QueryServiceImpl;
class AdminHandler;
class AdminServiceImpl;
class ReflectionV1Service;
class HttpApi;
class HttpServer;

/// The whole service, wired: database (or embedded PostgreSQL), migrations, stores, gRPC and HTTP
/// servers, resolver worker. main() and the end-to-end tests both build one of these.
class App final {
 public:
  explicit App(Config config);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  /// Starts everything; throws std::runtime_error with a clear message when something cannot start.
  void Start();
  /// Graceful stop: cancel a running rebuild, stop accepting, drain in-flight RPCs (bounded by shutdown_grace),
  /// let the resolver finish its batch, stop the embedded PostgreSQL.
  void Shutdown();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  const std::string& database_url() const { return database_url_; }
  storage::Database& database() { return *db_; }
  Metrics& metrics() { return *metrics_; }
  ProtectionHolder& protection() { return *protection_; }
  /// Null when --resolver=false.
  ResolverWorker* resolver() { return resolver_.get(); }
  AdminHandler& admin() { return *admin_; }
  Authenticator& auth() { return *auth_; }
  /// Answers from the database probe's last result, without touching the database: bounded by
  /// --db-probe-timeout even when the database stops answering. gRPC health follows the same state.
  bool Ready(std::string* why);
  /// Re-reads the TLS files for HTTP (SIGHUP); throws, keeping the old ones, when they cannot be loaded.
  void ReloadTls();
  /// How often gRPC's certificate watcher re-reads the TLS files.
  static constexpr unsigned kTlsRefreshSeconds = 10;

 private:
  std::shared_ptr<grpc::ServerCredentials> GrpcCredentials() const;
  /// Tells the database which identifier rules this process ingests with (a rebuild re-applies them when the
  /// stored data follows others); warns once per rules change when the stored data is stale.
  void NoteIdentifierRules(const resolver::ProtectionConfig& config);

  Config config_;
  std::string database_url_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::atomic<bool> stopped_{false};
  std::unique_ptr<storage::EmbeddedPostgres> embedded_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<ProtectionHolder> protection_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::ReadReplicas> replicas_;  ///< query reads (before query_store_, which uses it)
  std::unique_ptr<storage::Database> resolver_db_;   ///< --resolver-database-url; null: the resolver uses db_
  std::unique_ptr<storage::AuthStore> auth_store_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<storage::DatabaseProbe> probe_;
  std::unique_ptr<storage::IngestStore> ingest_store_;
  std::unique_ptr<storage::QueryStore> query_store_;
  std::unique_ptr<ResolverWorker> resolver_;
  std::unique_ptr<IngestHandler> ingest_;
  std::unique_ptr<QueryHandler> query_;
  std::unique_ptr<AdminHandler> admin_;
  std::unique_ptr<IngestServiceImpl> ingest_service_;
  std::unique_ptr<QueryServiceImpl> query_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpApi> http_api_;
  std::unique_ptr<HttpServer> http_server_;
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  bool watch_stop_ = false;
  std::thread config_watcher_;  ///< --protection-config-watch
  std::mutex rules_mu_;
  std::string rules_warned_;  ///< fingerprint last warned about; guarded by rules_mu_
};

}  // namespace nexus::server
