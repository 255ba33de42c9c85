#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "server/auth.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/segment_convert.h"

namespace google::protobuf {
class Message;
}

namespace nexus::server {

class IngestHandler;
class AdminHandler;
class QueryHandler;

/// Path parameters captured by a route pattern ("/v1/persons/{id}" -> {"id": ...}).
using PathParams = std::map<std::string, std::string>;

/// The HTTP/JSON API: routes, proto3 JSON mapping, gRPC code -> HTTP status, metrics per route.
class HttpApi final {
 public:
  using ReadyCheck = std::function<bool(std::string* why)>;
  /// `auth` null: no access control and no audit (tests of the routes alone). `segment`: the Segment-compatible
  /// routes' default source, identifying traits and limits (their source is replaced per request by a key bound
  /// to exactly one source).
  HttpApi(Metrics& metrics, ReadyCheck ready, IngestHandler* ingest, AdminHandler* admin, QueryHandler* query,
          Authenticator* auth = nullptr, segment::Options segment = {});

  /// Authenticates (MethodScopes() by the route's RPC), requires Content-Type: application/json on POST,
  /// runs the route, audits admin routes, hides internal error details behind a request id.
  HttpResponse Handle(const HttpRequest& request);
  /// The MethodScopes() key of every route (tests: each must be in the table).
  std::vector<std::string> RouteMethods() const;
  /// Browser origins allowed cross-origin (exact match; empty: CORS off). Call before serving.
  void SetCorsOrigins(std::vector<std::string> origins) { cors_origins_ = std::move(origins); }

  /// Renders a message in the proto3 JSON mapping (proto field names, defaults printed).
  static std::string ToJson(const google::protobuf::Message& m);
  /// An error body: {"code": "...", "message": "..."} with the mapped HTTP status.
  static HttpResponse Error(const grpc::Status& status);

 private:
  using RouteFn = std::function<HttpResponse(const HttpRequest&, const PathParams&, CallContext&)>;
  struct Route {
    std::string method;
    std::string pattern;  ///< segments; "{name}" captures one segment
    std::string rpc;      ///< the MethodScopes() key: the mirrored RPC or "http:/<route>"
    RouteFn fn;
    bool own_auth = false;  ///< the route authenticates itself (and checks the content type) with `rpc`'s scope
  };
  void Add(std::string method, std::string pattern, std::string rpc, RouteFn fn, bool own_auth = false);
  void AddQueryRoutes();
  /// GET /ui and /ui/{file}: the support page (server/ui, embedded).
  void AddUiRoutes();
  /// CORS: answers a preflight (OPTIONS with Access-Control-Request-Method), else adds the allow headers to
  /// `response` when the request's Origin is listed. Returns true when it answered a preflight.
  bool Cors(const HttpRequest& request, HttpResponse* response) const;
  /// POST /v1/{identify,track,group,alias,page,screen,batch,import} (server/http_segment.cc).
  void AddSegmentRoutes();
  HttpResponse HandleSegment(const std::string& call, const HttpRequest& req, CallContext& ctx);
  static bool Match(const std::string& pattern, const std::string& path, PathParams* params);

  Metrics& metrics_;
  ReadyCheck ready_;
  IngestHandler* ingest_;
  AdminHandler* admin_;
  QueryHandler* query_;
  Authenticator* auth_;
  segment::Options segment_;
  std::vector<Route> routes_;
  std::vector<std::string> cors_origins_;
};

/// Parses a JSON body into `m` (proto3 JSON mapping); INVALID_ARGUMENT with the parser's message on error.
grpc::Status ParseJson(const std::string& body, google::protobuf::Message* m);

/// Runs a unary handler for HTTP: the result as JSON or the mapped error.
template <typename Resp, typename F>
HttpResponse JsonCall(F&& call) {
  Resp resp;
  grpc::Status s = call(&resp);
  if (!s.ok()) return HttpApi::Error(s);
  return HttpResponse{200, "application/json", HttpApi::ToJson(resp)};
}

}  // namespace nexus::server
