#include "server/rpc_util.h"

namespace nexus::server {
namespace {

/// Short method name ("IngestEvents") from the full one ("/nexus.v1.IngestService/IngestEvents").
std::string ShortMethod(const char* full) {
  std::string_view m(full ? full : "");
  const auto slash = m.rfind('/');
  return std::string(slash == std::string_view::npos ? m : m.substr(slash + 1));
}

class DecodeFailureInterceptor final : public grpc::experimental::Interceptor {
 public:
  DecodeFailureInterceptor(Metrics& metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), info_(info), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (info_->type() == grpc::experimental::ServerRpcInfo::Type::UNARY) {
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
          methods->GetRecvMessage() == nullptr) {
        undecodable_ = true;  // gRPC answers INTERNAL with an empty message and never calls the handler
      }
      if (undecodable_ && methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
        const std::string method = ShortMethod(info_->method());
        grpc::Status s = UndecodableMessage(metrics_, method, "request");
        metrics_.ObserveGrpc(method, CodeName(s.error_code()),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
        methods->ModifySendStatus(s);
      }
    }
    methods->Proceed();
  }

 private:
  Metrics& metrics_;
  grpc::experimental::ServerRpcInfo* info_;
  std::chrono::steady_clock::time_point start_;
  bool undecodable_ = false;
};

class DecodeFailureInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit DecodeFailureInterceptorFactory(Metrics& metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    return new DecodeFailureInterceptor(metrics_, info);
  }

 private:
  Metrics& metrics_;
};

}  // namespace

grpc::Status UndecodableMessage(Metrics& metrics, std::string_view method, std::string_view type,
                                std::string_view where) {
  metrics.GrpcUndecodable(method);
  log::Warn("undecodable gRPC message", {{"method", std::string(method)}, {"message", std::string(where)}});
  std::string msg = std::string(method) + ": ";
  if (!where.empty()) msg += std::string(where) + ": ";
  msg += "the " + std::string(type) +
         " message could not be decoded (broken protobuf wire format, wrong message type, or a string field "
         "that is not valid UTF-8)";
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeDecodeFailureInterceptorFactory(
    Metrics& metrics) {
  return std::make_unique<DecodeFailureInterceptorFactory>(metrics);
}

grpc::Status ToStatus(const storage::StorageError& e) {
  const std::string& msg = e.public_message();
  switch (e.kind()) {
    case storage::ErrorKind::kUnavailable:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, msg);
    case storage::ErrorKind::kNotFound:
      return grpc::Status(grpc::StatusCode::NOT_FOUND, msg);
    case storage::ErrorKind::kInvalidArgument:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
    case storage::ErrorKind::kCancelled:  // retryable, so ABORTED (HTTP 409) rather than CANCELLED (client gave up)
      return grpc::Status(grpc::StatusCode::ABORTED, "cancelled, nothing was changed: " + msg);
    case storage::ErrorKind::kInternal:
      break;
  }
  return grpc::Status(grpc::StatusCode::INTERNAL, msg);
}

bool IsInternalCode(grpc::StatusCode code) {
  return code == grpc::StatusCode::INTERNAL || code == grpc::StatusCode::UNAVAILABLE ||
         code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::DATA_LOSS;
}

std::string PublicInternalMessage(grpc::StatusCode code, const std::string& request_id) {
  const char* what =
      code == grpc::StatusCode::UNAVAILABLE ? "service temporarily unavailable, retry later" : "internal error";
  return std::string(what) + " (request id " + request_id + ")";
}

std::string AuthorizationOf(const grpc::ServerContext* ctx) {
  if (!ctx) return "";
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNKNOWN";
  }
}

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::CANCELLED:
      return 499;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

}  // namespace nexus::server
