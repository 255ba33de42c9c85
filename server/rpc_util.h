#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/log.h"
#include "server/metrics.h"
#include "storage/errors.h"

namespace nexus::server {

/// The one place a storage error becomes a gRPC status.
grpc::Status ToStatus(const storage::StorageError& e);
/// gRPC code name as used in metric labels ("OK", "INVALID_ARGUMENT", ...).
const char* CodeName(grpc::StatusCode code);
/// The HTTP status a gRPC code maps to (NOT_FOUND -> 404, INVALID_ARGUMENT -> 400, ...).
int HttpStatusFor(grpc::StatusCode code);

/// The status for a request message that could not be decoded (broken wire format, a string field that is not
/// UTF-8, random bytes): INVALID_ARGUMENT naming the method and message type, never echoing the bytes.
/// Counts it (nexus_grpc_undecodable_messages_total) and writes one warning log line.
grpc::Status UndecodableMessage(Metrics& metrics, std::string_view method, std::string_view type,
                                std::string_view where = {});

/// A server interceptor factory that turns gRPC's own answer to an undecodable unary request (INTERNAL with an
/// empty message, seen by no handler) into UndecodableMessage(): logged, counted, and recorded in the request
/// metrics like any other RPC. Streaming methods decode their messages themselves (see IngestServiceImpl).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeDecodeFailureInterceptorFactory(
    Metrics& metrics);

/// Runs one RPC body: maps exceptions to a status, records metrics and a debug log line.
template <typename F>
grpc::Status HandleRpc(Metrics& metrics, std::string_view method, F&& body) {
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status;
  try {
    status = body();
  } catch (const storage::StorageError& e) {
    status = ToStatus(e);
  } catch (const std::exception& e) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, e.what());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics.ObserveGrpc(method, CodeName(status.error_code()), secs);
  if (status.error_code() == grpc::StatusCode::INTERNAL || status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    log::Error("rpc failed", {{"method", std::string(method)}, {"code", CodeName(status.error_code())},
                              {"cause", status.error_message()}, {"duration_s", secs}});
  } else if (log::Enabled(log::Level::kDebug)) {
    log::Debug("rpc", {{"method", std::string(method)}, {"code", CodeName(status.error_code())}, {"duration_s", secs}});
  }
  return status;
}

}  // namespace nexus::server
