#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "nexus/v1/admin.grpc.pb.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"

namespace nexus::storage {
class Database;
}

namespace nexus::server {

/// Operator logic shared by gRPC and HTTP: resolver status, rebuild, quarantine, config reload.
class AdminHandler final {
 public:
  /// `auth` null: key management and the audit log answer FAILED_PRECONDITION.
  AdminHandler(storage::Database& db, ResolverWorker* worker, ProtectionHolder& protection, Metrics& metrics,
               Authenticator* auth = nullptr)
      : db_(db), worker_(worker), protection_(protection), metrics_(metrics), auth_(auth) {}

  grpc::Status GetResolverStatus(const v1::GetResolverStatusRequest& req, v1::ResolverStatus* out);
  /// Starts a rebuild on the resolver thread and returns its RUNNING operation (see admin.proto). Sets
  /// `*already_running` when refused because one runs (HTTP answers 409 for that).
  grpc::Status Rebuild(const v1::RebuildRequest& req, v1::RebuildResponse* out, bool* already_running = nullptr);
  grpc::Status GetRebuildStatus(const v1::GetRebuildStatusRequest& req, v1::RebuildOperation* out);
  grpc::Status ListQuarantinedEdges(const v1::ListQuarantinedEdgesRequest& req, v1::ListQuarantinedEdgesResponse* out);
  grpc::Status ReleaseQuarantinedEdge(const v1::ReleaseQuarantinedEdgeRequest& req,
                                      v1::ReleaseQuarantinedEdgeResponse* out);
  grpc::Status ReloadConfig(const v1::ReloadConfigRequest& req, v1::ReloadConfigResponse* out);
  /// `call` names the creator and receives the audit target (the new key's id).
  grpc::Status CreateApiKey(const v1::CreateApiKeyRequest& req, v1::CreateApiKeyResponse* out, CallContext& call);
  grpc::Status ListApiKeys(const v1::ListApiKeysRequest& req, v1::ListApiKeysResponse* out);
  grpc::Status RevokeApiKey(const v1::RevokeApiKeyRequest& req, v1::RevokeApiKeyResponse* out, CallContext& call);
  grpc::Status ListAuditLog(const v1::ListAuditLogRequest& req, v1::ListAuditLogResponse* out);
  // Link rules and erasure (issue 15; server/unlink_erase.cc). `call` names the caller and takes the audit
  // target (rule or erasure operation id: never an identifier value).
  grpc::Status Unlink(const v1::UnlinkRequest& req, v1::UnlinkResponse* out, CallContext& call);
  grpc::Status ListLinkRules(const v1::ListLinkRulesRequest& req, v1::ListLinkRulesResponse* out);
  grpc::Status RemoveLinkRule(const v1::RemoveLinkRuleRequest& req, v1::UnlinkResponse* out, CallContext& call);
  grpc::Status Erase(const v1::EraseRequest& req, v1::EraseResponse* out, CallContext& call);
  grpc::Status ListSuppressions(const v1::ListSuppressionsRequest& req, v1::ListSuppressionsResponse* out);
  grpc::Status LiftSuppression(const v1::LiftSuppressionRequest& req, v1::LiftSuppressionResponse* out,
                               CallContext& call);

  /// Tests: called on the resolver thread with each progress report of a rebuild, after it was recorded.
  void SetRebuildObserverForTesting(std::function<void(const storage::RebuildProgress&)> observer);

 private:
  /// Runs the rebuild `id` on the resolver thread and records how it ended.
  std::pair<v1::RebuildOperation, grpc::Status> RunRebuild(const std::string& id, storage::ResolverStore& store);

  storage::Database& db_;
  ResolverWorker* worker_;  ///< null when this process does not run the resolver
  ProtectionHolder& protection_;
  Metrics& metrics_;
  Authenticator* auth_;
  std::mutex rebuild_mu_;                        // guards the members below
  bool rebuild_starting_ = false;                ///< a Rebuild call is waiting for its start
  std::optional<v1::RebuildOperation> rebuild_;  ///< the running or the last one
  std::function<void(const storage::RebuildProgress&)> rebuild_observer_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(AdminHandler& h, Metrics& m, Authenticator* auth) : h_(h), m_(m), auth_(auth) {}
  grpc::Status GetResolverStatus(grpc::ServerContext*, const v1::GetResolverStatusRequest* r,
                                 v1::ResolverStatus* o) override;
  grpc::Status Rebuild(grpc::ServerContext*, const v1::RebuildRequest* r, v1::RebuildResponse* o) override;
  grpc::Status GetRebuildStatus(grpc::ServerContext*, const v1::GetRebuildStatusRequest* r,
                                v1::RebuildOperation* o) override;
  grpc::Status ListQuarantinedEdges(grpc::ServerContext*, const v1::ListQuarantinedEdgesRequest* r,
                                    v1::ListQuarantinedEdgesResponse* o) override;
  grpc::Status ReleaseQuarantinedEdge(grpc::ServerContext*, const v1::ReleaseQuarantinedEdgeRequest* r,
                                      v1::ReleaseQuarantinedEdgeResponse* o) override;
  grpc::Status ReloadConfig(grpc::ServerContext*, const v1::ReloadConfigRequest* r,
                            v1::ReloadConfigResponse* o) override;
  grpc::Status CreateApiKey(grpc::ServerContext*, const v1::CreateApiKeyRequest* r,
                            v1::CreateApiKeyResponse* o) override;
  grpc::Status ListApiKeys(grpc::ServerContext*, const v1::ListApiKeysRequest* r, v1::ListApiKeysResponse* o) override;
  grpc::Status RevokeApiKey(grpc::ServerContext*, const v1::RevokeApiKeyRequest* r,
                            v1::RevokeApiKeyResponse* o) override;
  grpc::Status ListAuditLog(grpc::ServerContext*, const v1::ListAuditLogRequest* r,
                            v1::ListAuditLogResponse* o) override;
  grpc::Status Unlink(grpc::ServerContext*, const v1::UnlinkRequest* r, v1::UnlinkResponse* o) override;
  grpc::Status ListLinkRules(grpc::ServerContext*, const v1::ListLinkRulesRequest* r,
                             v1::ListLinkRulesResponse* o) override;
  grpc::Status RemoveLinkRule(grpc::ServerContext*, const v1::RemoveLinkRuleRequest* r, v1::UnlinkResponse* o) override;
  grpc::Status Erase(grpc::ServerContext*, const v1::EraseRequest* r, v1::EraseResponse* o) override;
  grpc::Status ListSuppressions(grpc::ServerContext*, const v1::ListSuppressionsRequest* r,
                                v1::ListSuppressionsResponse* o) override;
  grpc::Status LiftSuppression(grpc::ServerContext*, const v1::LiftSuppressionRequest* r,
                               v1::LiftSuppressionResponse* o) override;

 private:
  AdminHandler& h_;
  Metrics& m_;
  Authenticator* auth_;
};

/// Fills an ApiKey message (never the secret or its hash).
void FillApiKey(const storage::ApiKeyRecord& k, v1::ApiKey* out);

/// Fills a proto Timestamp from microseconds since the epoch.
void SetTimestamp(google::protobuf::Timestamp* ts, int64_t micros);

}  // namespace nexus::server
