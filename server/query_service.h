#pragma once

#include <grpcpp/grpcpp.h>

#include "nexus/v1/query.grpc.pb.h"
#include "server/metrics.h"
#include "storage/query_store.h"

namespace nexus::server {

/// Query logic shared by gRPC and HTTP.
class QueryHandler final {
 public:
  QueryHandler(storage::QueryStore& store, Metrics& metrics) : store_(store), metrics_(metrics) {}

 private:
  [[maybe_unused]] storage::QueryStore& store_;
  [[maybe_unused]] Metrics& metrics_;
};

class QueryServiceImpl final : public v1::QueryService::Service {
 public:
  QueryServiceImpl(QueryHandler& h, Metrics& m) : h_(h), m_(m) {}

 private:
  [[maybe_unused]] QueryHandler& h_;
  [[maybe_unused]] Metrics& m_;
};

}  // namespace nexus::server
