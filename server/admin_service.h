#pragma once

#include <grpcpp/grpcpp.h>

#include "nexus/v1/admin.grpc.pb.h"
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
  AdminHandler(storage::Database& db, ResolverWorker* worker, ProtectionHolder& protection)
      : db_(db), worker_(worker), protection_(protection) {}

  grpc::Status GetResolverStatus(const v1::GetResolverStatusRequest& req, v1::ResolverStatus* out);
  grpc::Status Rebuild(const v1::RebuildRequest& req, v1::RebuildResponse* out);
  grpc::Status ListQuarantinedEdges(const v1::ListQuarantinedEdgesRequest& req, v1::ListQuarantinedEdgesResponse* out);
  grpc::Status ReleaseQuarantinedEdge(const v1::ReleaseQuarantinedEdgeRequest& req,
                                      v1::ReleaseQuarantinedEdgeResponse* out);
  grpc::Status ReloadConfig(const v1::ReloadConfigRequest& req, v1::ReloadConfigResponse* out);

 private:
  storage::Database& db_;
  ResolverWorker* worker_;  ///< null when this process does not run the resolver
  ProtectionHolder& protection_;
};

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  AdminServiceImpl(AdminHandler& h, Metrics& m) : h_(h), m_(m) {}
  grpc::Status GetResolverStatus(grpc::ServerContext*, const v1::GetResolverStatusRequest* r,
                                 v1::ResolverStatus* o) override;
  grpc::Status Rebuild(grpc::ServerContext*, const v1::RebuildRequest* r, v1::RebuildResponse* o) override;
  grpc::Status ListQuarantinedEdges(grpc::ServerContext*, const v1::ListQuarantinedEdgesRequest* r,
                                    v1::ListQuarantinedEdgesResponse* o) override;
  grpc::Status ReleaseQuarantinedEdge(grpc::ServerContext*, const v1::ReleaseQuarantinedEdgeRequest* r,
                                      v1::ReleaseQuarantinedEdgeResponse* o) override;
  grpc::Status ReloadConfig(grpc::ServerContext*, const v1::ReloadConfigRequest* r,
                            v1::ReloadConfigResponse* o) override;

 private:
  AdminHandler& h_;
  Metrics& m_;
};

/// Fills a proto Timestamp from microseconds since the epoch.
void SetTimestamp(google::protobuf::Timestamp* ts, int64_t micros);

}  // namespace nexus::server
