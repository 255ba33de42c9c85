#pragma once
// gRPC server reflection, protocol v1 (grpc.reflection.v1.ServerReflection). Debian 12's libgrpc++_reflection
// (gRPC 1.51) implements only v1alpha, which app.cc keeps registering; current clients ask for v1 first.
// Answers from the process's generated descriptor pool, like the v1alpha service. Open like v1alpha and health:
// it describes the API, no data.

#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace nexus::server {

class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  /// `services`: the full names list_services answers with.
  explicit ReflectionV1Service(std::vector<std::string> services) : services_(std::move(services)) {}

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  std::vector<std::string> services_;
};

}  // namespace nexus::server
