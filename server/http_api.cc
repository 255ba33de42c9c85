#include "server/http_api.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>

#include "common/log.h"
#include "nexus/v1/admin.pb.h"
#include "nexus/v1/ingest.pb.h"
#include "server/admin_service.h"
#include "server/ingest_service.h"
#include "server/request_parse.h"
#include "server/rpc_util.h"
#include "server/ui_assets.h"
#include "storage/database.h"
#include "storage/errors.h"
#include "storage/replicas.h"

namespace nexus::server {

std::string HttpApi::ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

HttpResponse HttpApi::Error(const grpc::Status& status) {
  HttpResponse r;
  r.status = HttpStatusFor(status.error_code());
  r.body = std::string("{\"code\":\"") + CodeName(status.error_code()) + "\",\"message\":\"" +
           log::JsonEscape(status.error_message()) + "\"}";
  return r;
}

grpc::Status ParseJson(const std::string& body, google::protobuf::Message* m) {
  // protobuf's JSON parser accepts single quotes, unquoted keys and trailing commas, and drops `null` list items.
  if (auto s = CheckStrictJson(body); !s.ok()) return s;
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(body, m, opts);
  if (!st.ok()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "invalid JSON body: " + std::string(st.message()));
  }
  return grpc::Status::OK;
}

HttpApi::HttpApi(Metrics& metrics, ReadyCheck ready, IngestHandler* ingest, AdminHandler* admin, QueryHandler* query,
                 Authenticator* auth, segment::Options segment)
    : metrics_(metrics),
      ready_(std::move(ready)),
      ingest_(ingest),
      admin_(admin),
      query_(query),
      auth_(auth),
      segment_(std::move(segment)) {
  Add("GET", "/healthz", "http:/healthz", [](const HttpRequest&, const PathParams&, CallContext&) {
    return HttpResponse{200, "text/plain", "ok\n"};
  });
  Add("GET", "/readyz", "http:/readyz", [this](const HttpRequest&, const PathParams&, CallContext&) {
    std::string why;
    if (ready_ && ready_(&why)) return HttpResponse{200, "text/plain", "ready\n"};
    return HttpResponse{503, "text/plain", "not ready: " + why + "\n"};
  });
  Add("GET", "/metrics", "http:/metrics", [this](const HttpRequest&, const PathParams&, CallContext&) {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.Scrape()};
  });
  if (ingest_) {
    Add("POST", "/v1/events:ingest", "IngestEvents",
        [this](const HttpRequest& req, const PathParams&, CallContext& call) {
          v1::IngestEventsRequest in;
          if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
          return JsonCall<v1::IngestEventsResponse>(
              [&](v1::IngestEventsResponse* out) { return ingest_->Ingest(in, out, &call.principal); });
        });
    AddSegmentRoutes();
  }
  if (admin_) {
    Add("GET", "/v1/admin/resolver", "GetResolverStatus", [this](const HttpRequest&, const PathParams&, CallContext&) {
      return JsonCall<v1::ResolverStatus>(
          [&](v1::ResolverStatus* out) { return admin_->GetResolverStatus(v1::GetResolverStatusRequest(), out); });
    });
    Add("POST", "/v1/admin/resolver:rebuild", "Rebuild",
        [this](const HttpRequest& req, const PathParams&, CallContext& call) {
          v1::RebuildRequest in;  // body optional: {"wait": true}
          if (!req.body.empty()) {
            if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
          }
          v1::RebuildResponse out;
          bool already_running = false;
          const grpc::Status s = admin_->Rebuild(in, &out, &already_running);
          if (!out.operation().operation_id().empty())
            call.audit_target = "operation:" + out.operation().operation_id();
          if (s.ok()) return HttpResponse{200, "application/json", ToJson(out)};
          HttpResponse r = Error(s);
          if (already_running) r.status = 409;  // FAILED_PRECONDITION is 400 elsewhere; a running one is a conflict
          return r;
        });
    Add("GET", "/v1/admin/resolver:rebuild", "GetRebuildStatus",
        [this](const HttpRequest&, const PathParams&, CallContext&) {
          return JsonCall<v1::RebuildOperation>(
              [&](v1::RebuildOperation* out) { return admin_->GetRebuildStatus(v1::GetRebuildStatusRequest(), out); });
        });
    Add("GET", "/v1/admin/quarantine", "ListQuarantinedEdges",
        [this](const HttpRequest& req, const PathParams&, CallContext&) {
          v1::ListQuarantinedEdgesRequest in;
          if (auto it = req.query.find("kind"); it != req.query.end()) {
            if (it->second == "person")
              in.set_kind(v1::ENTITY_KIND_PERSON);
            else if (it->second == "group")
              in.set_kind(v1::ENTITY_KIND_GROUP);
            else if (!it->second.empty())
              return Error(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kind: must be person or group"));
          }
          if (auto it = req.query.find("include_released"); it != req.query.end()) {
            bool v = false;
            if (auto s = ParseBoolParam("include_released", it->second, &v); !s.ok()) return Error(s);
            in.set_include_released(v);
          }
          if (auto it = req.query.find("page_size"); it != req.query.end()) {
            int32_t n = 0;
            if (auto s = ParsePageSizeParam(it->second, &n); !s.ok()) return Error(s);
            in.set_page_size(n);
          }
          if (auto it = req.query.find("page_token"); it != req.query.end()) in.set_page_token(it->second);
          return JsonCall<v1::ListQuarantinedEdgesResponse>(
              [&](v1::ListQuarantinedEdgesResponse* out) { return admin_->ListQuarantinedEdges(in, out); });
        });
    Add("POST", "/v1/admin/quarantine/{id}:release", "ReleaseQuarantinedEdge",
        [this](const HttpRequest&, const PathParams& p, CallContext& call) {
          v1::ReleaseQuarantinedEdgeRequest in;
          call.audit_target = "quarantine:" + p.at("id").substr(0, 32);
          const std::string& id = p.at("id");
          if (id.empty() || id.size() > 18 || id.find_first_not_of("0123456789") != std::string::npos) {
            return Error(
                grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "quarantine id: must be a positive whole number"));
          }
          in.set_quarantine_id(std::stoll(id));
          return JsonCall<v1::ReleaseQuarantinedEdgeResponse>(
              [&](v1::ReleaseQuarantinedEdgeResponse* out) { return admin_->ReleaseQuarantinedEdge(in, out); });
        });
    Add("POST", "/v1/admin/config:reload", "ReloadConfig",
        [this](const HttpRequest&, const PathParams&, CallContext& call) {
          call.audit_target = "protection-config";
          return JsonCall<v1::ReloadConfigResponse>(
              [&](v1::ReloadConfigResponse* out) { return admin_->ReloadConfig(v1::ReloadConfigRequest(), out); });
        });
    Add("POST", "/v1/admin/keys", "CreateApiKey", [this](const HttpRequest& req, const PathParams&, CallContext& call) {
      v1::CreateApiKeyRequest in;
      if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
      return JsonCall<v1::CreateApiKeyResponse>(
          [&](v1::CreateApiKeyResponse* out) { return admin_->CreateApiKey(in, out, call); });
    });
    Add("GET", "/v1/admin/keys", "ListApiKeys", [this](const HttpRequest&, const PathParams&, CallContext&) {
      return JsonCall<v1::ListApiKeysResponse>(
          [&](v1::ListApiKeysResponse* out) { return admin_->ListApiKeys(v1::ListApiKeysRequest(), out); });
    });
    Add("POST", "/v1/admin/keys/{id}:revoke", "RevokeApiKey",
        [this](const HttpRequest&, const PathParams& p, CallContext& call) {
          v1::RevokeApiKeyRequest in;
          in.set_key_id(p.at("id"));
          return JsonCall<v1::RevokeApiKeyResponse>(
              [&](v1::RevokeApiKeyResponse* out) { return admin_->RevokeApiKey(in, out, call); });
        });
    Add("GET", "/v1/admin/audit", "ListAuditLog", [this](const HttpRequest& req, const PathParams&, CallContext&) {
      v1::ListAuditLogRequest in;
      if (auto it = req.query.find("page_size"); it != req.query.end()) {
        int32_t n = 0;
        if (auto s = ParsePageSizeParam(it->second, &n); !s.ok()) return Error(s);
        in.set_page_size(n);
      }
      if (auto it = req.query.find("page_token"); it != req.query.end()) in.set_page_token(it->second);
      return JsonCall<v1::ListAuditLogResponse>(
          [&](v1::ListAuditLogResponse* out) { return admin_->ListAuditLog(in, out); });
    });
    // Link rules and erasure (issue 15).
    Add("POST", "/v1/admin/link-rules", "Unlink", [this](const HttpRequest& req, const PathParams&, CallContext& call) {
      v1::UnlinkRequest in;
      if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
      return JsonCall<v1::UnlinkResponse>([&](v1::UnlinkResponse* out) { return admin_->Unlink(in, out, call); });
    });
    Add("GET", "/v1/admin/link-rules", "ListLinkRules",
        [this](const HttpRequest& req, const PathParams&, CallContext&) {
          v1::ListLinkRulesRequest in;
          if (auto it = req.query.find("page_size"); it != req.query.end()) {
            int32_t n = 0;
            if (auto s = ParsePageSizeParam(it->second, &n); !s.ok()) return Error(s);
            in.set_page_size(n);
          }
          if (auto it = req.query.find("page_token"); it != req.query.end()) in.set_page_token(it->second);
          return JsonCall<v1::ListLinkRulesResponse>(
              [&](v1::ListLinkRulesResponse* out) { return admin_->ListLinkRules(in, out); });
        });
    Add("POST", "/v1/admin/link-rules/{id}:remove", "RemoveLinkRule",
        [this](const HttpRequest& req, const PathParams& p, CallContext& call) {
          const std::string& id = p.at("id");
          if (id.empty() || id.size() > 18 || id.find_first_not_of("0123456789") != std::string::npos) {
            return Error(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rule id: must be a positive whole number"));
          }
          v1::RemoveLinkRuleRequest in;
          in.set_rule_id(std::stoll(id));
          if (auto it = req.query.find("dry_run"); it != req.query.end()) {
            bool v = false;
            if (auto s = ParseBoolParam("dry_run", it->second, &v); !s.ok()) return Error(s);
            in.set_dry_run(v);
          }
          return JsonCall<v1::UnlinkResponse>(
              [&](v1::UnlinkResponse* out) { return admin_->RemoveLinkRule(in, out, call); });
        });
    Add("POST", "/v1/admin/erasures", "Erase", [this](const HttpRequest& req, const PathParams&, CallContext& call) {
      v1::EraseRequest in;
      if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
      return JsonCall<v1::EraseResponse>([&](v1::EraseResponse* out) { return admin_->Erase(in, out, call); });
    });
    Add("GET", "/v1/admin/suppressions", "ListSuppressions",
        [this](const HttpRequest& req, const PathParams&, CallContext&) {
          v1::ListSuppressionsRequest in;
          if (auto it = req.query.find("page_size"); it != req.query.end()) {
            int32_t n = 0;
            if (auto s = ParsePageSizeParam(it->second, &n); !s.ok()) return Error(s);
            in.set_page_size(n);
          }
          if (auto it = req.query.find("page_token"); it != req.query.end()) in.set_page_token(it->second);
          return JsonCall<v1::ListSuppressionsResponse>(
              [&](v1::ListSuppressionsResponse* out) { return admin_->ListSuppressions(in, out); });
        });
    Add("POST", "/v1/admin/suppressions:lift", "LiftSuppression",
        [this](const HttpRequest& req, const PathParams&, CallContext& call) {
          v1::LiftSuppressionRequest in;
          if (auto s = ParseJson(req.body, &in); !s.ok()) return Error(s);
          return JsonCall<v1::LiftSuppressionResponse>(
              [&](v1::LiftSuppressionResponse* out) { return admin_->LiftSuppression(in, out, call); });
        });
  }
  if (query_) {
    AddQueryRoutes();
    AddUiRoutes();
  }
}

void HttpApi::AddUiRoutes() {
  // Static files only; the page calls the API with the key the user enters (sessionStorage), so the files
  // themselves need none. The policy allows nothing but this origin's own files and API.
  auto serve = [](const std::string& name) {
    for (const auto& a : UiAssets()) {
      if (a.name != name) continue;
      HttpResponse r;
      const auto dot = name.rfind('.');
      const std::string ext = dot == std::string::npos ? "" : name.substr(dot + 1);
      r.content_type = ext == "html"  ? "text/html; charset=utf-8"
                       : ext == "js"  ? "text/javascript; charset=utf-8"
                       : ext == "css" ? "text/css; charset=utf-8"
                       : ext == "svg" ? "image/svg+xml"
                                      : "application/octet-stream";
      r.body = std::string(a.content);
      r.headers = {{"Content-Security-Policy",
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
                   {"X-Content-Type-Options", "nosniff"},
                   {"Referrer-Policy", "no-referrer"},
                   {"X-Frame-Options", "DENY"},
                   {"Cache-Control", "no-cache"}};
      return r;
    }
    return HttpResponse{404, "application/json", "{\"code\":\"NOT_FOUND\",\"message\":\"no such file under /ui\"}"};
  };
  Add("GET", "/ui", "http:/ui",
      [serve](const HttpRequest&, const PathParams&, CallContext&) { return serve("index.html"); });
  Add("GET", "/ui/", "http:/ui",
      [serve](const HttpRequest&, const PathParams&, CallContext&) { return serve("index.html"); });
  Add("GET", "/ui/{file}", "http:/ui",
      [serve](const HttpRequest&, const PathParams& p, CallContext&) { return serve(p.at("file")); });
}

bool HttpApi::Cors(const HttpRequest& request, HttpResponse* response) const {
  if (cors_origins_.empty()) return false;
  const auto o = request.headers.find("origin");
  if (o == request.headers.end()) return false;
  const bool allowed = std::find(cors_origins_.begin(), cors_origins_.end(), o->second) != cors_origins_.end();
  const bool preflight = request.method == "OPTIONS" && request.headers.count("access-control-request-method") != 0;
  if (preflight) {
    if (!allowed) {
      *response = HttpResponse{403, "application/json",
                               "{\"code\":\"PERMISSION_DENIED\",\"message\":\"origin not allowed (--cors-origins)\"}"};
      response->headers = {{"Vary", "Origin"}};
      return true;
    }
    *response = HttpResponse{204, "text/plain", ""};
    response->headers = {{"Access-Control-Allow-Origin", o->second},
                         {"Access-Control-Allow-Methods", "GET, POST"},
                         {"Access-Control-Allow-Headers", "authorization, content-type"},
                         {"Access-Control-Max-Age", "600"},
                         {"Vary", "Origin"}};
    return true;
  }
  response->headers.emplace_back("Vary", "Origin");
  if (allowed) response->headers.emplace_back("Access-Control-Allow-Origin", o->second);
  return false;
}

void HttpApi::Add(std::string method, std::string pattern, std::string rpc, RouteFn fn, bool own_auth) {
  routes_.push_back({std::move(method), std::move(pattern), std::move(rpc), std::move(fn), own_auth});
}

std::vector<std::string> HttpApi::RouteMethods() const {
  std::vector<std::string> out;
  for (const auto& r : routes_) out.push_back(r.rpc);
  return out;
}

namespace {
/// The media type of a Content-Type header, lower-cased, without parameters ("application/json").
std::string MediaType(const std::string& content_type) {
  std::string out;
  for (char c : content_type.substr(0, content_type.find(';'))) {
    if (c != ' ' && c != '\t') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string Header(const HttpRequest& req, const char* name) {
  auto it = req.headers.find(name);
  return it == req.headers.end() ? std::string() : it->second;
}

/// The "code" of an error body ({"code":"X",...}), for the audit outcome; "OK" for a success.
std::string OutcomeOf(const HttpResponse& r) {
  if (r.status < 400) return "OK";
  const std::string tag = "\"code\":\"";
  const auto p = r.body.find(tag);
  if (p == std::string::npos) return "HTTP_" + std::to_string(r.status);
  const auto e = r.body.find('"', p + tag.size());
  return r.body.substr(p + tag.size(), e - p - tag.size());
}
}  // namespace

bool HttpApi::Match(const std::string& pattern, const std::string& path, PathParams* params) {
  // Segment-wise match; "{name}" matches one segment up to '/' or, when followed by ":verb", up to ':'.
  size_t pi = 0, si = 0;
  while (pi < pattern.size() && si <= path.size()) {
    if (pattern[pi] == '{') {
      const size_t close = pattern.find('}', pi);
      const std::string name = pattern.substr(pi + 1, close - pi - 1);
      const char stop = close + 1 < pattern.size() ? pattern[close + 1] : '\0';
      size_t end = si;
      while (end < path.size() && path[end] != '/' && (stop != ':' || path[end] != ':')) ++end;
      if (end == si) return false;
      (*params)[name] = path.substr(si, end - si);
      si = end;
      pi = close + 1;
      continue;
    }
    if (si >= path.size() || pattern[pi] != path[si]) return false;
    ++pi;
    ++si;
  }
  return pi == pattern.size() && si == path.size();
}

HttpResponse HttpApi::Handle(const HttpRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  HttpResponse response;
  if (Cors(request, &response)) {
    metrics_.ObserveHttp("cors-preflight", response.status,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    return response;
  }
  HttpResponse cors;
  Cors(request, &cors);
  std::string route_label = "unmatched";
  bool path_matched = false;
  const Route* found = nullptr;
  PathParams params;
  for (const auto& r : routes_) {
    PathParams p;
    if (!Match(r.pattern, request.path, &p)) continue;
    path_matched = true;
    if (r.method == request.method) {
      found = &r;
      params = std::move(p);
      break;
    }
  }
  std::string cause;  // internal detail for the log only
  if (found) {
    route_label = found->pattern;
    CallContext call;
    bool authorized = false;
    grpc::Status auth_status;
    try {
      if (auth_ && !found->own_auth)
        auth_status = auth_->Check(found->rpc, Header(request, "authorization"), &call.principal);
      authorized = auth_status.ok();
      if (found->own_auth) {
        response = found->fn(request, params, call);
      } else if (!authorized) {
        response = Error(auth_status);
      } else if (request.method == "POST" && MediaType(Header(request, "content-type")) != "application/json") {
        // Browsers may post text/plain or form bodies cross-site without a preflight; JSON needs one.
        response = Error(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "Content-Type must be application/json"));
        response.status = 415;
      } else {
        storage::TakeReadInfo();  // a query route reports where it read (read replicas: storage/replicas.h)
        uint64_t min_lsn = 0;
        const std::string lsn_text = Header(request, storage::kMinLsnHeader);
        if (!lsn_text.empty() && !storage::ParseLsn(lsn_text, &min_lsn)) {
          response = Error(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                        std::string(storage::kMinLsnHeader) +
                                            ": not a WAL position like 16/B374D848 (send an ingest's commit_lsn)"));
        } else {
          storage::ScopedMinLsn read_after(min_lsn);
          response = found->fn(request, params, call);
          if (const auto info = storage::TakeReadInfo(); !info.served_by.empty()) {
            response.headers.emplace_back(storage::kReadFromHeader, info.served_by);
            response.headers.emplace_back(storage::kResolvedThroughHeader, info.resolved_through);
          }
        }
      }
    } catch (const storage::StorageError& e) {
      response = Error(ToStatus(e));
      cause = e.what();
    } catch (const std::exception& e) {
      response = Error(grpc::Status(grpc::StatusCode::INTERNAL, "internal error"));
      cause = e.what();
    }
    const auto scope = MethodScopes().find(found->rpc);
    if (auth_ && scope != MethodScopes().end() && scope->second == Scope::kAdmin &&
        (authorized || auth_status.error_code() == grpc::StatusCode::PERMISSION_DENIED)) {
      WriteAudit(auth_->store(), call.principal.key_id, found->rpc, call.audit_target, OutcomeOf(response));
    }
  } else if (path_matched) {
    response = HttpResponse{405, "application/json",
                            "{\"code\":\"UNIMPLEMENTED\",\"message\":\"method " + request.method + " not allowed on " +
                                log::JsonEscape(request.path) + "\"}"};
  } else {
    response = HttpResponse{404, "application/json",
                            "{\"code\":\"NOT_FOUND\",\"message\":\"no route " + log::JsonEscape(request.path) + "\"}"};
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.ObserveHttp(route_label, response.status, secs);
  if (response.status >= 500 && response.status != 501 && found && found->rpc != "http:/readyz") {
    // Details stay in the log; the client gets a short message and the request id to quote.
    const std::string request_id = NewRequestId();
    log::Error("http request failed", {{"route", route_label},
                                       {"status", response.status},
                                       {"request_id", request_id},
                                       {"cause", storage::RedactUrl(cause.empty() ? response.body : cause)}});
    const auto code = response.status == 503 ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::INTERNAL;
    response.body = std::string("{\"code\":\"") + CodeName(code) + "\",\"message\":\"" +
                    PublicInternalMessage(code, request_id) + "\",\"request_id\":\"" + request_id + "\"}";
  } else if (log::Enabled(log::Level::kDebug)) {
    log::Debug("http",
               {{"method", request.method}, {"route", route_label}, {"status", response.status}, {"duration_s", secs}});
  }
  for (auto& h : cors.headers) response.headers.push_back(std::move(h));
  return response;
}

}  // namespace nexus::server
