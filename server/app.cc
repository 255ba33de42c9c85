#include "server/app.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <set>

#include "common/log.h"
#include "server/admin_service.h"
#include "server/auth.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "server/ingest_service.h"
#include "server/metrics.h"
#include "server/protection_holder.h"
#include "server/query_service.h"
#include "server/reflection_v1.h"
#include "server/resolver_worker.h"
#include "server/rpc_util.h"
#include "server/version.h"
#include "storage/auth_store.h"
#include "storage/database.h"
#include "storage/db_probe.h"
#include "storage/embedded_postgres.h"
#include "storage/ingest_store.h"
#include "storage/migrations.h"
#include "storage/query_store.h"
#include "storage/replicas.h"

namespace nexus::server {

App::App(Config config) : config_(std::move(config)) {}

App::~App() { Shutdown(); }

bool App::Ready(std::string* why) {
  if (!db_ || !probe_) {
    *why = "starting";
    return false;
  }
  const storage::ProbeResult r = probe_->Current();
  // /readyz is open: the cause (host, user, database names) goes to the log only (the probe logs it).
  if (!r.up) *why = "database unavailable";
  return r.up;
}

void App::Start() {
  metrics_ = std::make_unique<Metrics>(Version(), GitSha());
  protection_ = std::make_unique<ProtectionHolder>(config_.protection_config, config_.default_phone_region);
  log::Info("merge protection", {{"config", resolver::Describe(*protection_->Get())}});

  database_url_ = config_.database_url;
  if (database_url_.empty()) {
    storage::EmbeddedPostgresOptions opts;
    opts.data_dir = config_.data_dir;
    opts.bin_dir = config_.pg_bindir;
    embedded_ = std::make_unique<storage::EmbeddedPostgres>(opts);
    database_url_ = embedded_->Start();
    log::Info("embedded PostgreSQL ready", {{"data_dir", config_.data_dir}, {"psql", embedded_->PsqlCommand()}});
  }
  storage::DatabaseOptions dbo;
  dbo.url = database_url_;
  dbo.pool_size = config_.db_pool_size;
  dbo.connect_timeout = config_.db_connect_timeout;
  dbo.statement_timeout = config_.db_statement_timeout;
  dbo.tcp_user_timeout = config_.db_tcp_user_timeout;
  dbo.transaction_pooler = config_.db_pooler == "transaction";
  db_ = std::make_unique<storage::Database>(dbo, metrics_.get());
  const auto migrated = storage::Migrate(*db_);
  log::Info("database schema current", {{"version", migrated.version},
                                        {"applied_now", static_cast<long long>(migrated.applied.size())},
                                        {"database", storage::RedactUrl(database_url_)}});

  auth_store_ = std::make_unique<storage::AuthStore>(*db_);
  const bool loopback = IsLoopbackListen(config_.grpc_listen) && IsLoopbackListen(config_.http_listen);
  Authenticator::Options auth_opts;
  auth_opts.open_allowed = loopback || config_.allow_unauthenticated;
  auth_opts.metrics_require_key = config_.metrics_require_key;
  if (!auth_store_->AnyUsableKey()) {
    if (!auth_opts.open_allowed) {
      throw std::runtime_error(
          "no API keys exist and a listener is not on loopback (" + config_.grpc_listen + ", " + config_.http_listen +
          "): refusing to serve personal data to anyone who can reach the port. Create a key first "
          "(nexusd keys create --name=admin --scopes=admin with the same database flags), or pass "
          "--allow-unauthenticated");
    }
    log::Warn(loopback ? "no API keys exist: serving WITHOUT authentication on loopback only; create one with "
                         "'nexusd keys create --name=admin --scopes=admin'"
                       : "no API keys exist and --allow-unauthenticated is set: serving WITHOUT authentication",
              {{"grpc", config_.grpc_listen}, {"http", config_.http_listen}});
  }
  auth_ = std::make_unique<Authenticator>(*auth_store_, metrics_.get(), auth_opts);
  ingest_store_ = std::make_unique<storage::IngestStore>(*db_);
  NoteIdentifierRules(*protection_->Get());
  protection_->OnLoaded([this](const resolver::ProtectionConfig& c) { NoteIdentifierRules(c); });
  // Queries read through the replica router: a hot standby within --max-replica-lag, else the primary.
  replicas_ = std::make_unique<storage::ReadReplicas>(
      *db_, dbo, storage::ReadReplicas::Options{config_.read_database_urls, config_.max_replica_lag});
  replicas_->Start();
  query_store_ = std::make_unique<storage::QueryStore>(replicas_->reads());
  if (config_.resolver_enabled) {
    // The resolver's lock session must reach PostgreSQL itself (not a transaction pooler): its own small pool.
    storage::Database* resolver_db = db_.get();
    if (!config_.resolver_database_url.empty()) {
      storage::DatabaseOptions ro = dbo;
      ro.url = config_.resolver_database_url;
      ro.pool_size = 2;
      ro.transaction_pooler = false;
      ro.report_pool = false;
      resolver_db_ = std::make_unique<storage::Database>(ro, metrics_.get());
      resolver_db = resolver_db_.get();
    }
    resolver_ = std::make_unique<ResolverWorker>(
        *resolver_db, resolver_db == db_.get() ? database_url_ : config_.resolver_database_url, *metrics_, *protection_,
        ResolverWorker::Options{config_.resolver_batch_events, config_.resolver_poll_interval,
                                static_cast<int>(config_.log_partition_months_ahead)});
  }
  ResolverWorker* worker = resolver_.get();
  ingest_ = std::make_unique<IngestHandler>(*ingest_store_, *metrics_, config_.limits, *protection_, [worker] {
    if (worker) worker->Wake();
  });
  query_ = std::make_unique<QueryHandler>(*query_store_, *metrics_, protection_.get());
  admin_ = std::make_unique<AdminHandler>(*db_, worker, *protection_, *metrics_, auth_.get());
  ingest_service_ = std::make_unique<IngestServiceImpl>(*ingest_, *metrics_, auth_.get());
  query_service_ = std::make_unique<QueryServiceImpl>(*query_, *metrics_, auth_.get());
  admin_service_ = std::make_unique<AdminServiceImpl>(*admin_, *metrics_, auth_.get());

  // Built (TLS files loaded and checked) before any listener opens: a bad certificate stops start-up.
  segment::Options segment;
  segment.source = config_.segment_source;
  segment.identity_traits = config_.segment_identity_traits;
  segment.previous_id_types = config_.segment_previous_id_types;
  segment.max_body_bytes = config_.limits.max_request_bytes;
  segment.max_messages = config_.limits.max_events_per_request;
  http_api_ = std::make_unique<HttpApi>(
      *metrics_, [this](std::string* why) { return Ready(why); }, ingest_.get(), admin_.get(), query_.get(),
      auth_.get(), segment);
  http_api_->SetCorsOrigins(config_.cors_origins);
  const uint64_t ingest_body = static_cast<uint64_t>(config_.limits.max_request_bytes);
  http_server_ = std::make_unique<HttpServer>(
      config_.http_listen, config_.http_threads, [this](const HttpRequest& r) { return http_api_->Handle(r); },
      HttpTlsOptions{config_.tls_cert, config_.tls_key, config_.tls_client_ca},
      [ingest_body](std::string_view method, std::string_view target) -> uint64_t {
        static const std::set<std::string_view> kIngestRoutes = {"/v1/events:ingest", "/v1/identify", "/v1/track",
                                                                 "/v1/group",         "/v1/alias",    "/v1/page",
                                                                 "/v1/screen",        "/v1/batch",    "/v1/import"};
        const bool ingest = method == "POST" && kIngestRoutes.count(target.substr(0, target.find('?')));
        return ingest ? ingest_body : HttpServer::kDefaultBodyLimit;
      });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config_.grpc_listen, GrpcCredentials(), &grpc_port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.limits.max_request_bytes));
  // gRPC sets SO_REUSEPORT by default: a second nexusd on the same port would bind too and take half of the
  // traffic (half of the lookups hitting a process with another database). Binding must fail instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(ingest_service_.get());
  builder.RegisterService(query_service_.get());
  builder.RegisterService(admin_service_.get());
  // Reflection: gRPC's plugin serves v1alpha (all Debian 1.51 ships); v1 is ours (server/reflection_v1.cc).
  reflection_v1_ = std::make_unique<ReflectionV1Service>(std::vector<std::string>{
      v1::IngestService::service_full_name(), v1::QueryService::service_full_name(),
      v1::AdminService::service_full_name(), "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
      grpc::reflection::v1::ServerReflection::service_full_name()});
  builder.RegisterService(reflection_v1_.get());
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(MakeDecodeFailureInterceptorFactory(*metrics_));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
  }
  grpc_server_ = builder.BuildAndStart();
  if (!grpc_server_ || grpc_port_ == 0) {
    throw std::runtime_error("cannot listen for gRPC on " + config_.grpc_listen + " (address in use or invalid)");
  }
  grpc_server_->GetHealthCheckService()->SetServingStatus(true);  // migrations just ran: the database answers
  probe_ = std::make_unique<storage::DatabaseProbe>(
      *db_, storage::DatabaseProbe::Options{std::chrono::milliseconds(1000), config_.db_probe_timeout},
      [this](const storage::ProbeResult& r, bool changed) {
        metrics_->DatabaseProbe(r.up, r.oldest_writer_pid, r.oldest_writer_age_seconds);
        if (!changed) return;
        if (!stopped_) grpc_server_->GetHealthCheckService()->SetServingStatus(r.up);
        if (r.up)
          log::Info("database answers: ready");
        else
          log::Error("database down: not ready, requests fail fast with UNAVAILABLE", {{"cause", r.why}});
      });
  probe_->Start();
  probe_->AwaitFirstResult(config_.db_probe_timeout);  // so that /readyz is right from the first request

  http_port_ = http_server_->Start();
  if (resolver_) resolver_->Start();
  if (!config_.protection_config.empty() && config_.protection_config_watch.count() > 0) {
    config_watcher_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(watch_mu_);
      while (!watch_cv_.wait_for(lock, config_.protection_config_watch, [this] { return watch_stop_; })) {
        lock.unlock();
        // A rebuild elsewhere may have adopted other rules since: say again which ones this process uses.
        if (!protection_->ReloadIfChanged()) NoteIdentifierRules(*protection_->Get());
        lock.lock();
      }
    });
  }
  log::Info("nexusd serving",
            {{"grpc", config_.grpc_listen.substr(0, config_.grpc_listen.rfind(':') + 1) + std::to_string(grpc_port_)},
             {"http", config_.http_listen.substr(0, config_.http_listen.rfind(':') + 1) + std::to_string(http_port_)},
             {"resolver", config_.resolver_enabled},
             {"tls", config_.tls_cert.empty()        ? "off"
                     : config_.tls_client_ca.empty() ? "on"
                                                     : "mutual"}});
}

std::shared_ptr<grpc::ServerCredentials> App::GrpcCredentials() const {
  if (config_.tls_cert.empty()) return grpc::InsecureServerCredentials();
  // The file watcher re-reads the files every kTlsRefreshSeconds: a renewed certificate needs no restart.
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider =
      config_.tls_client_ca.empty() ? std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
                                          config_.tls_key, config_.tls_cert, kTlsRefreshSeconds)
                                    : std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
                                          config_.tls_key, config_.tls_cert, config_.tls_client_ca, kTlsRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions opts(provider);
  opts.watch_identity_key_cert_pairs();
  if (config_.tls_client_ca.empty()) {
    opts.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    opts.watch_root_certs();
    opts.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(opts);
}

void App::NoteIdentifierRules(const resolver::ProtectionConfig& config) {
  const std::string fingerprint = config.ClassifyFingerprint();
  try {
    const bool stale = ingest_store_->NoteClassifyRules(fingerprint);
    std::lock_guard<std::mutex> lock(rules_mu_);
    if (stale && rules_warned_ != fingerprint) {
      rules_warned_ = fingerprint;
      log::Warn(
          "stored identifiers may have been normalized under other identifier rules (phone region, [email], "
          "[free_mail], blocklist) than this process's: run a rebuild to re-apply the current ones",
          {{"rules", fingerprint}});
    } else if (!stale) {
      rules_warned_.clear();
    }
  } catch (const std::exception& e) {
    log::Warn("could not record the identifier rules in the database (retried at the next config check)",
              {{"cause", e.what()}});
  }
}

void App::ReloadTls() {
  if (config_.tls_cert.empty() || !http_server_) return;
  http_server_->ReloadTls();
  log::Info("TLS certificate reloaded for HTTP (gRPC re-reads the files by itself)", {{"cert", config_.tls_cert}});
}

void App::Shutdown() {
  if (stopped_.exchange(true)) return;
  log::Info("shutting down", {{"grace_ms", static_cast<long long>(config_.shutdown_grace.count())}});
  // First, so that draining never waits for a rebuild: it is cancelled (rolls back at its next check) and
  // queued resolver tasks fail; the batch in progress finishes.
  if (resolver_) resolver_->RequestStop();
  if (config_watcher_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      watch_stop_ = true;
    }
    watch_cv_.notify_all();
    config_watcher_.join();
  }
  if (probe_) probe_->Stop();  // before health goes NOT_SERVING for good
  if (grpc_server_) {
    grpc_server_->GetHealthCheckService()->SetServingStatus(false);
    // Stops accepting; in-flight RPCs get until the deadline, then are cancelled.
    grpc_server_->Shutdown(std::chrono::system_clock::now() + config_.shutdown_grace);
    grpc_server_->Wait();
  }
  if (http_server_) http_server_->Stop(config_.shutdown_grace);
  if (resolver_) resolver_->Stop();
  resolver_.reset();
  resolver_db_.reset();
  if (replicas_) replicas_->Stop();
  db_.reset();
  if (embedded_) embedded_->Stop();
  log::Info("stopped");
}

}  // namespace nexus::server
