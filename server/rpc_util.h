#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/log.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "storage/database.h"
#include "storage/errors.h"

namespace nexus::server {

/// The one place a storage error becomes a gRPC status (its public message only, never database text).
grpc::Status ToStatus(const storage::StorageError& e);
/// gRPC code name as used in metric labels ("OK", "INVALID_ARGUMENT", ...).
const char* CodeName(grpc::StatusCode code);
/// The HTTP status a gRPC code maps to (NOT_FOUND -> 404, INVALID_ARGUMENT -> 400, ...).
int HttpStatusFor(grpc::StatusCode code);

/// True for the codes whose details stay in the log: the client gets a short, stable message and a request id.
bool IsInternalCode(grpc::StatusCode code);
/// The short message a client gets for an internal code, with the request id appended.
std::string PublicInternalMessage(grpc::StatusCode code, const std::string& request_id);
/// The authorization metadata of a call ("" when absent).
std::string AuthorizationOf(const grpc::ServerContext* ctx);

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

/// Runs one RPC: authenticates and authorizes it against MethodScopes() (when `auth` is set), runs the body
/// with the caller in a CallContext, maps exceptions to a status, writes the audit row of admin-scope methods,
/// hides internal details behind a request id (logged with the cause), records metrics and a debug line.
template <typename F>
grpc::Status HandleRpc(Metrics& metrics, Authenticator* auth, grpc::ServerContext* ctx, std::string_view method,
                       F&& body) {
  const auto start = std::chrono::steady_clock::now();
  grpc::Status status;
  std::string cause;  // internal detail for the log only
  CallContext call;
  bool authorized = false;
  try {
    status = auth ? auth->Check(method, AuthorizationOf(ctx), &call.principal) : grpc::Status::OK;
    authorized = status.ok();
    if (authorized) status = body(call);
  } catch (const storage::StorageError& e) {
    status = ToStatus(e);
    cause = e.what();
  } catch (const std::exception& e) {
    status = grpc::Status(grpc::StatusCode::INTERNAL, "internal error");
    cause = e.what();
  }
  const auto scope = MethodScopes().find(method);
  const bool audited = auth && scope != MethodScopes().end() && scope->second == Scope::kAdmin &&
                       (authorized || status.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  if (audited) {
    WriteAudit(auth->store(), call.principal.key_id, method, call.audit_target, CodeName(status.error_code()));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics.ObserveGrpc(method, CodeName(status.error_code()), secs);
  if (IsInternalCode(status.error_code())) {
    const std::string request_id = NewRequestId();
    if (cause.empty()) cause = status.error_message();
    log::Error("rpc failed", {{"method", std::string(method)},
                              {"code", CodeName(status.error_code())},
                              {"request_id", request_id},
                              {"cause", storage::RedactUrl(cause)},
                              {"duration_s", secs}});
    if (ctx) ctx->AddTrailingMetadata("x-request-id", request_id);
    status = grpc::Status(status.error_code(), PublicInternalMessage(status.error_code(), request_id));
  } else if (log::Enabled(log::Level::kDebug)) {
    log::Debug("rpc", {{"method", std::string(method)},
                       {"code", CodeName(status.error_code())},
                       {"key_id", call.principal.key_id},
                       {"duration_s", secs}});
  }
  return status;
}

}  // namespace nexus::server
