// Access control end to end: every RPC and HTTP route x every kind of credential gives the documented status,
// refused calls write nothing, revocation and expiry, open mode and its limits, the audit log, auth metrics.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "http_client.h"
#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "server/auth.h"
#include "storage/auth_store.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"

namespace nexus::testing {
namespace {

using server::Scope;

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

v1::IngestEventsRequest OneEvent(const std::string& id, const std::string& source) {
  v1::IngestEventsRequest req;
  auto* e = req.add_events();
  e->set_event_id(id);
  e->mutable_occurred_at()->set_seconds(1767225600);
  e->set_event_name("email_sent");
  e->set_event_type("communication");
  e->set_source(source);
  auto* p = e->add_persons();
  p->set_role("sender");
  auto* i = p->add_identifiers();
  i->set_type("email");
  i->set_value(id + "@example.com");
  return req;
}

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out);
  return out;
}

/// One credential of the matrix: the authorization value sent ("" = none) and the scopes it really has.
struct Cred {
  std::string name;
  std::string authorization;
  std::vector<std::string> scopes;  ///< empty: not a usable key
  bool gmail_only = false;
};

enum class Expect { kUnauthenticated, kDenied, kAllowed };

Expect ExpectFor(const Cred& c, Scope need, const std::string& source) {
  if (need == Scope::kOpen) return Expect::kAllowed;
  if (need == Scope::kMetrics)
    return c.authorization.empty() || !c.scopes.empty() ? Expect::kAllowed : Expect::kUnauthenticated;
  if (c.scopes.empty()) return Expect::kUnauthenticated;
  if (std::find(c.scopes.begin(), c.scopes.end(), server::ScopeName(need)) == c.scopes.end()) return Expect::kDenied;
  if (need == Scope::kIngest && c.gmail_only && source != "gmail") return Expect::kDenied;
  return Expect::kAllowed;
}

class AuthTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    db_ = std::make_unique<storage::Database>(storage::DatabaseOptions{url_, 2, std::chrono::milliseconds(5000)},
                                              nullptr);
    store_ = std::make_unique<storage::AuthStore>(*db_);
  }
  void TearDown() override {
    PgTest::TearDown();
    store_.reset();
    db_.reset();
  }

  /// Creates a key through the same code path as the CLI; returns the whole key.
  std::string MakeKey(const std::string& name, std::vector<std::string> scopes, std::vector<std::string> sources = {},
                      std::string* id = nullptr) {
    server::NewApiKey spec;
    spec.name = name;
    spec.scopes = std::move(scopes);
    spec.sources = std::move(sources);
    spec.created_by = "cli";
    storage::ApiKeyRecord rec;
    std::string secret;
    const auto s = server::CreateApiKey(*store_, spec, &rec, &secret);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (id) *id = rec.key_id;
    return secret;
  }

  /// A key that expired a minute ago (stored directly: the API refuses a past expiry).
  std::string MakeExpiredKey() {
    const auto k = server::GenerateApiKey();
    storage::ApiKeyRecord rec;
    rec.key_id = k.key_id;
    rec.name = "expired";
    rec.key_sha256 = k.sha256_hex;
    rec.scopes = {"ingest", "read", "admin"};
    rec.created_by = "cli";
    rec.expires_at_us = NowUs() - 60 * 1000000LL;
    store_->CreateKey(rec);
    return k.secret;
  }

  std::vector<Cred> Creds() {
    std::vector<Cred> c;
    c.push_back({"none", "", {}});
    c.push_back({"malformed", "Basic dXNlcjpwdw==", {}});
    c.push_back({"unknown", "Bearer " + server::GenerateApiKey().secret, {}});
    std::string revoked_id;
    const std::string revoked = MakeKey("revoked", {"ingest", "read", "admin"}, {}, &revoked_id);
    EXPECT_TRUE(store_->RevokeKey(revoked_id));
    c.push_back({"revoked", "Bearer " + revoked, {}});
    c.push_back({"expired", "Bearer " + MakeExpiredKey(), {}});
    // A real key with one character changed: right id, wrong secret.
    std::string forged = MakeKey("forged-base", {"admin"});
    forged.back() = forged.back() == '0' ? '1' : '0';
    c.push_back({"wrong-secret", "Bearer " + forged, {}});
    c.push_back({"read", "Bearer " + MakeKey("reader", {"read"}), {"read"}});
    c.push_back({"ingest", "Bearer " + MakeKey("writer", {"ingest"}), {"ingest"}});
    c.push_back({"ingest-gmail", "bearer " + MakeKey("gmail-writer", {"ingest"}, {"gmail"}), {"ingest"}, true});
    c.push_back({"admin", "Bearer " + MakeKey("admin", {"admin"}, {}, &admin_id_), {"admin"}});
    return c;
  }

  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::AuthStore> store_;
  std::string admin_id_;
};

/// One gRPC method of the matrix: `ok` tells whether the call is expected to pass auth (writes are tagged).
struct Rpc {
  std::string name;
  std::function<grpc::Status(grpc::ClientContext&, const std::string& tag, const std::string& source)> call;
};

TEST_F(AuthTest, GrpcMatrixEveryRpcEveryCredential) {
  const auto creds = Creds();
  std::string victim_id, victim2_id;
  MakeKey("victim", {"read"}, {}, &victim_id);
  MakeKey("victim2", {"read"}, {}, &victim2_id);
  auto& app = StartApp();
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app.grpc_port()), grpc::InsecureChannelCredentials());
  auto ingest = v1::IngestService::NewStub(channel);
  auto query = v1::QueryService::NewStub(channel);
  auto admin = v1::AdminService::NewStub(channel);

  std::vector<Rpc> rpcs;
  rpcs.push_back({"IngestEvents", [&](grpc::ClientContext& ctx, const std::string& tag, const std::string& source) {
                    v1::IngestEventsResponse out;
                    return ingest->IngestEvents(&ctx, OneEvent(tag + "-IngestEvents", source), &out);
                  }});
  rpcs.push_back(
      {"IngestEventStream", [&](grpc::ClientContext& ctx, const std::string& tag, const std::string& source) {
         auto stream = ingest->IngestEventStream(&ctx);
         stream->Write(OneEvent(tag + "-IngestEventStream", source));
         stream->WritesDone();
         v1::IngestEventsResponse out;
         while (stream->Read(&out)) {
         }
         return stream->Finish();
       }});
#define NEXUS_QUERY(Method, Req, Resp, fill)                                                       \
  rpcs.push_back({#Method, [&](grpc::ClientContext& ctx, const std::string&, const std::string&) { \
                    v1::Req req;                                                                   \
                    fill;                                                                          \
                    v1::Resp out;                                                                  \
                    return query->Method(&ctx, req, &out);                                         \
                  }});
  NEXUS_QUERY(GetPerson, GetPersonRequest, Person, req.set_person_id("per_x"))
  NEXUS_QUERY(LookupPerson, LookupPersonRequest, Person,
              (req.set_identifier_type("email"), req.set_identifier_value("a@b.c")))
  NEXUS_QUERY(GetGroup, GetGroupRequest, Group, req.set_group_id("grp_x"))
  NEXUS_QUERY(LookupGroup, LookupGroupRequest, Group,
              (req.set_identifier_type("domain"), req.set_identifier_value("b.c")))
  NEXUS_QUERY(ListPersonMemberships, ListPersonMembershipsRequest, ListMembershipsResponse, req.set_person_id("per_x"))
  NEXUS_QUERY(ListGroupMembers, ListGroupMembersRequest, ListMembershipsResponse, req.set_group_id("grp_x"))
  NEXUS_QUERY(ListPersonTimeline, ListPersonTimelineRequest, TimelineResponse, req.set_person_id("per_x"))
  NEXUS_QUERY(ListGroupTimeline, ListGroupTimelineRequest, TimelineResponse, req.set_group_id("grp_x"))
  NEXUS_QUERY(ExplainPersonLink, ExplainLinkRequest, ExplainLinkResponse,
              (req.mutable_a()->set_type("email"), req.mutable_a()->set_value("a@b.c"),
               req.mutable_b()->set_type("email"), req.mutable_b()->set_value("d@e.f")))
  NEXUS_QUERY(ExplainGroupLink, ExplainLinkRequest, ExplainLinkResponse,
              (req.mutable_a()->set_type("domain"), req.mutable_a()->set_value("b.c"),
               req.mutable_b()->set_type("domain"), req.mutable_b()->set_value("e.f")))
  NEXUS_QUERY(GetPersonHistory, GetPersonHistoryRequest, EntityHistory, req.set_person_id("per_x"))
  NEXUS_QUERY(GetGroupHistory, GetGroupHistoryRequest, EntityHistory, req.set_group_id("grp_x"))
  NEXUS_QUERY(SearchPersons, SearchRequest, SearchResponse, req.set_query("jane"))
  NEXUS_QUERY(SearchGroups, SearchRequest, SearchResponse, req.set_query("acme"))
  NEXUS_QUERY(GetPersonProfile, GetPersonRequest, PersonProfile, req.set_person_id("per_x"))
  NEXUS_QUERY(GetGroupProfile, GetGroupRequest, GroupProfile, req.set_group_id("grp_x"))
  NEXUS_QUERY(GetEvent, GetEventRequest, EventView, req.set_event_id("ev_x"))
#undef NEXUS_QUERY
#define NEXUS_ADMIN(Method, Req, Resp, fill)                                                           \
  rpcs.push_back({#Method, [&](grpc::ClientContext& ctx, const std::string& tag, const std::string&) { \
                    v1::Req req;                                                                       \
                    (void)tag;                                                                         \
                    fill;                                                                              \
                    v1::Resp out;                                                                      \
                    return admin->Method(&ctx, req, &out);                                             \
                  }});
  NEXUS_ADMIN(GetResolverStatus, GetResolverStatusRequest, ResolverStatus, (void)0)
  NEXUS_ADMIN(Rebuild, RebuildRequest, RebuildResponse, (void)0)
  NEXUS_ADMIN(GetRebuildStatus, GetRebuildStatusRequest, RebuildOperation, (void)0)
  NEXUS_ADMIN(ListQuarantinedEdges, ListQuarantinedEdgesRequest, ListQuarantinedEdgesResponse, (void)0)
  NEXUS_ADMIN(ReleaseQuarantinedEdge, ReleaseQuarantinedEdgeRequest, ReleaseQuarantinedEdgeResponse,
              req.set_quarantine_id(999999))
  NEXUS_ADMIN(ReloadConfig, ReloadConfigRequest, ReloadConfigResponse, (void)0)
  NEXUS_ADMIN(CreateApiKey, CreateApiKeyRequest, CreateApiKeyResponse,
              (req.set_name("made-by-" + tag.substr(0, tag.find('-'))), req.add_scopes("read")))
  NEXUS_ADMIN(RevokeApiKey, RevokeApiKeyRequest, RevokeApiKeyResponse,
              req.set_key_id(tag.rfind("ok", 0) == 0 ? victim2_id : victim_id))
  NEXUS_ADMIN(ListApiKeys, ListApiKeysRequest, ListApiKeysResponse, (void)0)
  NEXUS_ADMIN(ListAuditLog, ListAuditLogRequest, ListAuditLogResponse, (void)0)
  NEXUS_ADMIN(Unlink, UnlinkRequest, UnlinkResponse, (void)0)  // INVALID_ARGUMENT once authorized
  NEXUS_ADMIN(ListLinkRules, ListLinkRulesRequest, ListLinkRulesResponse, (void)0)
  NEXUS_ADMIN(RemoveLinkRule, RemoveLinkRuleRequest, UnlinkResponse, req.set_rule_id(999999))
  NEXUS_ADMIN(Erase, EraseRequest, EraseResponse, (req.set_dry_run(true), req.add_targets()->set_entity_id("per_x")))
  NEXUS_ADMIN(ListSuppressions, ListSuppressionsRequest, ListSuppressionsResponse, (void)0)
  NEXUS_ADMIN(LiftSuppression, LiftSuppressionRequest, LiftSuppressionResponse, req.set_id_hash("00"))
#undef NEXUS_ADMIN

  // Every RPC of the services is in the matrix (the scope table test checks the other direction).
  size_t listed = 0;
  for (const auto& [name, scope] : server::MethodScopes()) listed += name.rfind("http:", 0) != 0;
  ASSERT_EQ(rpcs.size(), listed);

  int allowed_ingest = 0, n = 0;
  for (const auto& cred : creds) {
    for (const auto& rpc : rpcs) {
      const Scope need = server::MethodScopes().at(rpc.name);
      for (const std::string source : {"gmail", "hubspot"}) {
        if (source == "hubspot" && need != Scope::kIngest) continue;
        const Expect want = ExpectFor(cred, need, source);
        const std::string tag = std::string(want == Expect::kAllowed ? "ok" : "refused") + "-" + cred.name + "-" +
                                source + "-" + std::to_string(n++);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        if (!cred.authorization.empty()) ctx.AddMetadata("authorization", cred.authorization);
        const grpc::Status s = rpc.call(ctx, tag, source);
        const std::string where = rpc.name + " with " + cred.name + " key, source " + source + ": " +
                                  std::to_string(s.error_code()) + " " + s.error_message();
        switch (want) {
          case Expect::kUnauthenticated:
            EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << where;
            break;
          case Expect::kDenied:
            EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << where;
            if (!(cred.gmail_only && need == Scope::kIngest)) {
              EXPECT_NE(s.error_message().find(std::string("'") + server::ScopeName(need) + "' scope"),
                        std::string::npos)
                  << where;
            } else {
              EXPECT_NE(s.error_message().find("source 'hubspot'"), std::string::npos) << where;
            }
            break;
          case Expect::kAllowed:
            EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << where;
            EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << where;
            if (need == Scope::kIngest) {
              EXPECT_TRUE(s.ok()) << where;
              ++allowed_ingest;
            }
            break;
        }
      }
    }
  }
  // Nothing written by a refused call; everything written by an allowed one.
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id LIKE 'refused-%'"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id LIKE 'ok-%'"),
            std::to_string(allowed_ingest));
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM api_keys WHERE name = 'made-by-refused'"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM api_keys WHERE name = 'made-by-ok'"), "1");
  EXPECT_EQ(QueryScalar(url_, "SELECT revoked_at IS NULL FROM api_keys WHERE key_id = '" + victim_id + "'"), "t");
  EXPECT_EQ(QueryScalar(url_, "SELECT revoked_at IS NULL FROM api_keys WHERE key_id = '" + victim2_id + "'"), "f");
  // No key is stored in clear.
  for (const auto& c : creds) {
    if (c.authorization.size() < 20) continue;
    const std::string key = c.authorization.substr(c.authorization.find(' ') + 1);
    EXPECT_EQ(
        QueryScalar(url_, "SELECT count(*) FROM api_keys WHERE key_sha256 = '" + key + "' OR name = '" + key + "'"),
        "0");
  }
}

struct Route {
  std::string method, target, rpc, body;
};

TEST_F(AuthTest, HttpMatrixEveryRouteEveryCredential) {
  const auto creds = Creds();
  std::string victim_id, victim2_id;
  MakeKey("victim", {"read"}, {}, &victim_id);
  MakeKey("victim2", {"read"}, {}, &victim2_id);
  auto& app = StartApp();
  const int port = app.http_port();
  const std::vector<Route> routes = {
      {"GET", "/healthz", "http:/healthz", ""},
      {"GET", "/readyz", "http:/readyz", ""},
      {"GET", "/metrics", "http:/metrics", ""},
      {"POST", "/v1/events:ingest", "IngestEvents", "INGEST"},
      {"POST", "/v1/track", "http:/segment", "SEGMENT"},
      {"GET", "/v1/persons/per_x", "GetPerson", ""},
      {"GET", "/v1/persons:lookup?identifier_type=email&identifier_value=a%40b.c", "LookupPerson", ""},
      {"GET", "/v1/persons/per_x/memberships", "ListPersonMemberships", ""},
      {"GET", "/v1/persons/per_x/timeline", "ListPersonTimeline", ""},
      {"GET", "/v1/persons:explain?a_type=email&a_value=a%40b.c&b_type=email&b_value=d%40e.f", "ExplainPersonLink", ""},
      {"GET", "/v1/persons/per_x/history", "GetPersonHistory", ""},
      {"GET", "/v1/groups/grp_x", "GetGroup", ""},
      {"GET", "/v1/groups:lookup?identifier_type=domain&identifier_value=b.c", "LookupGroup", ""},
      {"GET", "/v1/groups/grp_x/members", "ListGroupMembers", ""},
      {"GET", "/v1/groups/grp_x/timeline", "ListGroupTimeline", ""},
      {"GET", "/v1/groups:explain?a_type=domain&a_value=b.c&b_type=domain&b_value=e.f", "ExplainGroupLink", ""},
      {"GET", "/v1/groups/grp_x/history", "GetGroupHistory", ""},
      {"GET", "/v1/persons:search?query=jane", "SearchPersons", ""},
      {"GET", "/v1/groups:search?query=acme", "SearchGroups", ""},
      {"GET", "/v1/persons/per_x/profile", "GetPersonProfile", ""},
      {"GET", "/v1/groups/grp_x/profile", "GetGroupProfile", ""},
      {"GET", "/v1/events/ev_x", "GetEvent", ""},
      {"GET", "/ui", "http:/ui", ""},
      {"GET", "/v1/admin/resolver", "GetResolverStatus", ""},
      {"POST", "/v1/admin/resolver:rebuild", "Rebuild", ""},
      {"GET", "/v1/admin/resolver:rebuild", "GetRebuildStatus", ""},
      {"GET", "/v1/admin/quarantine", "ListQuarantinedEdges", ""},
      {"POST", "/v1/admin/quarantine/999999:release", "ReleaseQuarantinedEdge", ""},
      {"POST", "/v1/admin/config:reload", "ReloadConfig", ""},
      {"POST", "/v1/admin/keys", "CreateApiKey", "NEWKEY"},
      {"GET", "/v1/admin/keys", "ListApiKeys", ""},
      {"POST", "/v1/admin/keys/VICTIM:revoke", "RevokeApiKey", ""},
      {"GET", "/v1/admin/audit", "ListAuditLog", ""},
      {"POST", "/v1/admin/link-rules", "Unlink", "{}"},
      {"GET", "/v1/admin/link-rules", "ListLinkRules", ""},
      {"POST", "/v1/admin/link-rules/999999:remove", "RemoveLinkRule", ""},
      {"POST", "/v1/admin/erasures", "Erase", R"({"dry_run":true,"targets":[{"entity_id":"per_x"}]})"},
      {"GET", "/v1/admin/suppressions", "ListSuppressions", ""},
      {"POST", "/v1/admin/suppressions:lift", "LiftSuppression", R"({"id_hash":"00"})"},
  };
  // Every unary RPC has an HTTP route (IngestEventStream is a gRPC stream), plus the 5 HTTP-only routes (the
  // Segment-compatible routes share one entry, /v1/track stands for them; /ui for the support page's files).
  ASSERT_EQ(routes.size(), server::MethodScopes().size() - 1);
  int allowed_ingest = 0, n = 0;
  for (const auto& cred : creds) {
    for (const auto& route : routes) {
      const Scope need = server::MethodScopes().at(route.rpc);
      for (const std::string source : {"gmail", "hubspot"}) {
        // Segment routes: the key decides the source (a gmail-bound key writes gmail), so one pass is enough.
        if (source == "hubspot" && (need != Scope::kIngest || route.body == "SEGMENT")) continue;
        const Expect want = ExpectFor(cred, need, source);
        const std::string tag = std::string(want == Expect::kAllowed ? "ok" : "refused") + "-" + cred.name + "-" +
                                source + "-" + std::to_string(n++);
        std::string body = route.body, target = route.target;
        if (body == "INGEST") body = Json(OneEvent(tag + "-http", source));
        if (body == "SEGMENT") body = R"({"messageId":")" + tag + R"(-segment","userId":"u1","event":"E"})";
        if (body == "NEWKEY")
          body = std::string("{\"name\":\"made-by-") + (want == Expect::kAllowed ? "ok" : "refused") +
                 "\",\"scopes\":[\"read\"]}";
        if (auto p = target.find("VICTIM"); p != std::string::npos) {
          target.replace(p, 6, want == Expect::kAllowed ? victim2_id : victim_id);
        }
        const std::string headers = cred.authorization.empty() ? "" : "Authorization: " + cred.authorization + "\r\n";
        const HttpResult r = HttpCall(port, route.method, target, body, headers);
        const std::string where = route.method + " " + route.target + " with " + cred.name + " key, source " + source +
                                  ": " + std::to_string(r.status) + " " + r.body;
        switch (want) {
          case Expect::kUnauthenticated:
            EXPECT_EQ(r.status, 401) << where;
            EXPECT_NE(r.body.find("UNAUTHENTICATED"), std::string::npos) << where;
            break;
          case Expect::kDenied:
            EXPECT_EQ(r.status, 403) << where;
            if (!(cred.gmail_only && need == Scope::kIngest)) {
              EXPECT_NE(r.body.find(std::string("'") + server::ScopeName(need) + "' scope"), std::string::npos)
                  << where;
            }
            break;
          case Expect::kAllowed:
            EXPECT_NE(r.status, 401) << where;
            EXPECT_NE(r.status, 403) << where;
            if (need == Scope::kIngest) {
              EXPECT_EQ(r.status, 200) << where;
              ++allowed_ingest;
            }
            break;
        }
      }
    }
  }
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id LIKE 'refused-%'"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id LIKE 'ok-%'"),
            std::to_string(allowed_ingest));
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM api_keys WHERE name = 'made-by-refused'"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM api_keys WHERE name = 'made-by-ok'"), "1");
  EXPECT_EQ(QueryScalar(url_, "SELECT revoked_at IS NULL FROM api_keys WHERE key_id = '" + victim_id + "'"), "t");
  EXPECT_EQ(QueryScalar(url_, "SELECT revoked_at IS NULL FROM api_keys WHERE key_id = '" + victim2_id + "'"), "f");
}

TEST_F(AuthTest, HttpPostsNeedJsonContentType) {
  const std::string writer = MakeKey("writer", {"ingest"});
  const std::string admin = MakeKey("admin", {"admin"});
  auto& app = StartApp();
  const std::string body = Json(OneEvent("ctype-1", "gmail"));
  for (const std::string ctype : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}) {
    const auto r = HttpCall(app.http_port(), "POST", "/v1/events:ingest", body,
                            "Authorization: Bearer " + writer + "\r\nContent-Type: " + ctype + "\r\n");
    EXPECT_EQ(r.status, 415) << ctype << ": " << r.body;
    EXPECT_NE(r.body.find("Content-Type must be application/json"), std::string::npos) << r.body;
  }
  const auto reload = HttpCall(app.http_port(), "POST", "/v1/admin/config:reload", "",
                               "Authorization: Bearer " + admin + "\r\nContent-Type: text/plain\r\n");
  EXPECT_EQ(reload.status, 415) << reload.body;
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), "0");
  const auto ok = HttpCall(app.http_port(), "POST", "/v1/events:ingest", body,
                           "Authorization: Bearer " + writer + "\r\nContent-Type: application/json; charset=utf-8\r\n");
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(AuthTest, RevocationAndExpiryWithoutRestart) {
  std::string id_api, id_cli;
  const std::string reader = MakeKey("reader", {"read"}, {}, &id_api);
  const std::string other = MakeKey("reader2", {"read"}, {}, &id_cli);
  const std::string admin = MakeKey("admin", {"admin"});
  auto& app = StartApp();
  const int port = app.http_port();
  auto get = [&](const std::string& key) {
    return HttpCall(port, "GET", "/v1/persons/per_x", "", "Authorization: Bearer " + key + "\r\n").status;
  };
  EXPECT_EQ(get(reader), 404);
  EXPECT_EQ(get(other), 404);  // both cached now
  // Through the admin API of this process: refused at once.
  const auto rev = HttpPost(port, "/v1/admin/keys/" + id_api + ":revoke", "");
  EXPECT_EQ(rev.status, 401) << "a revoke without a key must be refused";
  const auto rev2 =
      HttpCall(port, "POST", "/v1/admin/keys/" + id_api + ":revoke", "", "Authorization: Bearer " + admin + "\r\n");
  ASSERT_EQ(rev2.status, 200) << rev2.body;
  EXPECT_NE(rev2.body.find("revoked_at"), std::string::npos) << rev2.body;
  EXPECT_EQ(get(reader), 401);
  // Behind this process's back (the CLI, another replica): within the cache TTL.
  ASSERT_TRUE(store_->RevokeKey(id_cli));
  const auto deadline = std::chrono::steady_clock::now() + server::Authenticator::kCacheTtl + std::chrono::seconds(2);
  int status = get(other);
  while (status != 401 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    status = get(other);
  }
  EXPECT_EQ(status, 401);
  // Expiry: a key created through the API with an expiry 2 s ahead works, then stops working.
  v1::CreateApiKeyRequest req;
  req.set_name("short-lived");
  req.add_scopes("read");
  req.mutable_expires_at()->set_seconds(NowUs() / 1000000 + 2);
  const auto created = HttpCall(port, "POST", "/v1/admin/keys", Json(req), "Authorization: Bearer " + admin + "\r\n");
  ASSERT_EQ(created.status, 200) << created.body;
  v1::CreateApiKeyResponse resp;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created.body, &resp).ok());
  EXPECT_EQ(resp.secret().rfind("nxk_" + resp.key().key_id() + "_", 0), 0u);
  EXPECT_EQ(get(resp.secret()), 404);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const auto expired =
      HttpCall(port, "GET", "/v1/persons/per_x", "", "Authorization: Bearer " + resp.secret() + "\r\n");
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.body.find("expired"), std::string::npos) << expired.body;
  // Bad key requests name the field.
  const auto bad = HttpCall(port, "POST", "/v1/admin/keys", R"({"name":"x","scopes":["write"]})",
                            "Authorization: Bearer " + admin + "\r\n");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("scopes[0]: unknown scope"), std::string::npos) << bad.body;
  const auto bad2 = HttpCall(port, "POST", "/v1/admin/keys", R"({"name":"x","scopes":["read"],"sources":["gmail"]})",
                             "Authorization: Bearer " + admin + "\r\n");
  EXPECT_EQ(bad2.status, 400);
  EXPECT_NE(bad2.body.find("sources: only keys with the ingest scope"), std::string::npos) << bad2.body;
}

TEST_F(AuthTest, OpenModeOnLoopbackOnlyAndEndsWithTheFirstKey) {
  // Non-loopback with no key: refuses to start, unless told to.
  auto cfg = BaseConfig();
  cfg.http_listen = "0.0.0.0:0";
  {
    server::App app(cfg);
    try {
      app.Start();
      ADD_FAILURE() << "started open on 0.0.0.0";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("--allow-unauthenticated"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("nexusd keys create"), std::string::npos) << e.what();
    }
  }
  cfg.allow_unauthenticated = true;
  {
    server::App app(cfg);
    ASSERT_NO_THROW(app.Start());
    EXPECT_EQ(HttpGet(app.http_port(), "/v1/persons/per_x").status, 404);
    app.Shutdown();
  }
  // Loopback, no keys: open, but a bogus key is not ignored.
  auto& app = StartApp();
  const int port = app.http_port();
  EXPECT_EQ(HttpGet(port, "/v1/persons/per_x").status, 404);
  EXPECT_EQ(HttpCall(port, "GET", "/v1/persons/per_x", "", "Authorization: Bearer nope\r\n").status, 401);
  // The first admin key created through the API ends open mode at once.
  const auto created = HttpPost(port, "/v1/admin/keys", R"({"name":"first-admin","scopes":["admin"]})");
  ASSERT_EQ(created.status, 200) << created.body;
  v1::CreateApiKeyResponse resp;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(created.body, &resp).ok());
  EXPECT_EQ(HttpGet(port, "/v1/persons/per_x").status, 401);
  EXPECT_EQ(HttpGet(port, "/v1/admin/keys").status, 401);
  EXPECT_EQ(HttpCall(port, "GET", "/v1/admin/keys", "", "Authorization: Bearer " + resp.secret() + "\r\n").status, 200);
  EXPECT_EQ(HttpGet(port, "/healthz").status, 200);
  EXPECT_EQ(HttpGet(port, "/readyz").status, 200);
  EXPECT_EQ(HttpGet(port, "/metrics").status, 200);  // open by default
}

TEST_F(AuthTest, MetricsBehindAKeyByFlag) {
  std::string reader_id;
  const std::string reader = MakeKey("reader", {"read"}, {}, &reader_id);
  auto cfg = BaseConfig();
  cfg.metrics_require_key = true;
  auto& app = StartApp(cfg);
  const int port = app.http_port();
  EXPECT_EQ(HttpGet(port, "/metrics").status, 401);
  EXPECT_EQ(HttpCall(port, "GET", "/v1/persons/per_x", "", "Authorization: Bearer " + reader + "\r\n").status, 404);
  EXPECT_EQ(HttpCall(port, "GET", "/v1/admin/keys", "", "Authorization: Bearer " + reader + "\r\n").status, 403);
  const auto scrape = HttpCall(port, "GET", "/metrics", "", "Authorization: Bearer " + reader + "\r\n");
  ASSERT_EQ(scrape.status, 200);
  // Requests by key id and outcome: the id, never the secret.
  EXPECT_NE(scrape.body.find("nexus_auth_requests_total{key_id=\"" + reader_id + "\",outcome=\"ok\"}"),
            std::string::npos)
      << scrape.body.substr(0, 2000);
  EXPECT_NE(scrape.body.find("nexus_auth_requests_total{key_id=\"" + reader_id + "\",outcome=\"denied\"}"),
            std::string::npos);
  EXPECT_NE(scrape.body.find("nexus_auth_requests_total{key_id=\"\",outcome=\"missing\"}"), std::string::npos);
  EXPECT_EQ(scrape.body.find(reader.substr(17)), std::string::npos) << "the secret leaked into /metrics";
}

TEST_F(AuthTest, AuditRowsOfASequenceOfAdminCalls) {
  std::string admin_id, reader_id;
  const std::string admin = MakeKey("admin", {"admin"}, {}, &admin_id);
  const std::string reader = MakeKey("reader", {"read"}, {}, &reader_id);
  auto& app = StartApp();
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app.grpc_port()), grpc::InsecureChannelCredentials());
  auto stub = v1::AdminService::NewStub(channel);
  auto ctx_for = [](const std::string& key) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", "Bearer " + key);
    return ctx;
  };
  {
    auto ctx = ctx_for(admin);
    v1::ReloadConfigResponse out;
    ASSERT_TRUE(stub->ReloadConfig(ctx.get(), v1::ReloadConfigRequest(), &out).ok());
  }
  {
    auto ctx = ctx_for(admin);
    v1::ReleaseQuarantinedEdgeRequest req;
    req.set_quarantine_id(4242);
    v1::ReleaseQuarantinedEdgeResponse out;
    EXPECT_EQ(stub->ReleaseQuarantinedEdge(ctx.get(), req, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  std::string new_id, new_secret;
  {
    auto ctx = ctx_for(admin);
    v1::CreateApiKeyRequest req;
    req.set_name("gmail sync");
    req.add_scopes("ingest");
    req.add_sources("gmail");
    v1::CreateApiKeyResponse out;
    ASSERT_TRUE(stub->CreateApiKey(ctx.get(), req, &out).ok());
    new_id = out.key().key_id();
    new_secret = out.secret();
    EXPECT_EQ(out.key().created_by(), admin_id);
  }
  {
    auto ctx = ctx_for(admin);
    v1::RevokeApiKeyRequest req;
    req.set_key_id(new_id);
    v1::RevokeApiKeyResponse out;
    ASSERT_TRUE(stub->RevokeApiKey(ctx.get(), req, &out).ok());
    EXPECT_TRUE(out.key().has_revoked_at());
  }
  {
    auto ctx = ctx_for(reader);  // refused: audited with the reader's key id
    v1::ReloadConfigResponse out;
    EXPECT_EQ(stub->ReloadConfig(ctx.get(), v1::ReloadConfigRequest(), &out).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;  // no key: refused before any audit (and counted in metrics)
    v1::ReloadConfigResponse out;
    EXPECT_EQ(stub->ReloadConfig(&ctx, v1::ReloadConfigRequest(), &out).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {  // HTTP admin calls land in the same log.
    const auto r = HttpCall(app.http_port(), "POST", "/v1/admin/quarantine/77:release", "",
                            "Authorization: Bearer " + admin + "\r\n");
    EXPECT_EQ(r.status, 404) << r.body;
  }
  auto ctx = ctx_for(admin);
  v1::ListAuditLogRequest req;
  req.set_page_size(5);
  v1::ListAuditLogResponse page1;
  ASSERT_TRUE(stub->ListAuditLog(ctx.get(), req, &page1).ok());
  ASSERT_EQ(page1.entries_size(), 5);
  ASSERT_FALSE(page1.next_page_token().empty());
  auto ctx2 = ctx_for(admin);
  req.set_page_token(page1.next_page_token());
  v1::ListAuditLogResponse page2;
  ASSERT_TRUE(stub->ListAuditLog(ctx2.get(), req, &page2).ok());
  std::vector<std::tuple<std::string, std::string, std::string, std::string>> rows;
  for (const auto* page : {&page1, &page2}) {
    for (const auto& e : page->entries()) rows.emplace_back(e.key_id(), e.operation(), e.target(), e.outcome());
  }
  using Row = std::tuple<std::string, std::string, std::string, std::string>;
  const std::vector<Row> want = {
      {admin_id, "ReleaseQuarantinedEdge", "quarantine:77", "NOT_FOUND"},
      {reader_id, "ReloadConfig", "", "PERMISSION_DENIED"},
      {admin_id, "RevokeApiKey", "key:" + new_id, "OK"},
      {admin_id, "CreateApiKey", "key:" + new_id, "OK"},
      {admin_id, "ReleaseQuarantinedEdge", "quarantine:4242", "NOT_FOUND"},
      {admin_id, "ReloadConfig", "protection-config", "OK"},
  };
  ASSERT_EQ(rows.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(rows[i], want[i]) << "row " << i;
  // No secret anywhere in the audit table.
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT count(*) FROM audit_log WHERE concat_ws(' ', key_id, operation, target, "
                        "outcome) LIKE '%" +
                            new_secret.substr(17) + "%'"),
            "0");
  // The listing call itself is audited too (after the fact).
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM audit_log WHERE operation = 'ListAuditLog'"), "2");
}

TEST(EmbeddedClusterFiles, PrivateWhateverTheUmaskAndPeerOnly) {
  const mode_t old = ::umask(022);
  const std::string dir = ScratchDir() + "/modes-" + std::to_string(::getpid());
  storage::EmbeddedPostgresOptions o;
  o.data_dir = dir;
  o.port = 5499;
  o.server_options = {"fsync=off"};
  {
    storage::EmbeddedPostgres pg(o);
    const std::string url = pg.Start();
    ::umask(old);
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u) << "data dir";
    ASSERT_EQ(::stat((dir + "/postgres.log").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << "log";
    ASSERT_EQ(::stat((dir + "/pgdata").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0077, 0u) << "pgdata";
    std::ifstream hba(dir + "/pgdata/pg_hba.conf");
    std::string line, rules;
    while (std::getline(hba, line)) {
      if (!line.empty() && line[0] != '#') rules += line + "\n";
    }
    EXPECT_EQ(rules, "local all all peer map=nexus\n");
    EXPECT_EQ(QueryScalar(url, "SELECT 1"), "1");  // we (the OS user running nexusd) still get in
    pg.Stop();
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace nexus::testing

namespace nexus::testing {
namespace {

/// Runs the real nexusd binary; returns its exit status, stdout in *out.
int RunNexusd(const std::string& args, std::string* out) {
  const std::string cmd = std::string(NEXUSD_BINARY) + " " + args + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  out->clear();
  while (std::fgets(buf, sizeof buf, p)) *out += buf;
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(AuthTest, KeysCommandCreatesListsAndRevokesOnTheDatabase) {
  const std::string db = "--database-url='" + url_ + "'";
  std::string key, listing, ignored;
  ASSERT_EQ(RunNexusd("keys create --name=first-admin --scopes=admin,read " + db, &key), 0);
  while (!key.empty() && key.back() == '\n') key.pop_back();
  const auto id = server::ParseKeyId(key);
  ASSERT_TRUE(id) << "stdout is the key alone: " << key;
  EXPECT_EQ(RunNexusd("keys create --name=x --scopes=write " + db, &ignored), 2);
  EXPECT_EQ(RunNexusd("keys create --name=x --scopes=read --expires-in=soon " + db, &ignored), 2);
  ASSERT_EQ(RunNexusd("keys list " + db, &listing), 0);
  EXPECT_NE(listing.find(*id), std::string::npos) << listing;
  EXPECT_NE(listing.find("first-admin"), std::string::npos) << listing;
  EXPECT_EQ(listing.find(key.substr(17)), std::string::npos) << "the list shows the secret";
  EXPECT_EQ(QueryScalar(url_, "SELECT key_sha256 FROM api_keys WHERE key_id = '" + *id + "'"), server::Sha256Hex(key));

  auto& app = StartApp();
  EXPECT_EQ(HttpGet(app.http_port(), "/v1/admin/keys").status, 401);
  EXPECT_EQ(HttpCall(app.http_port(), "GET", "/v1/admin/keys", "", "Authorization: Bearer " + key + "\r\n").status,
            200);
  EXPECT_EQ(RunNexusd("keys revoke " + *id + " " + db, &ignored), 0);
  EXPECT_EQ(RunNexusd("keys revoke 000000000000 " + db, &ignored), 1);
  app.auth().Invalidate(*id);  // or wait out the cache (tested in RevocationAndExpiryWithoutRestart)
  EXPECT_EQ(HttpCall(app.http_port(), "GET", "/v1/admin/keys", "", "Authorization: Bearer " + key + "\r\n").status,
            401);
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT string_agg(operation || ' ' || target || ' ' || outcome, ', ' ORDER BY audit_id) "
                        "FROM audit_log WHERE key_id = 'cli' AND outcome = 'OK'"),
            "CreateApiKey key:" + *id + " OK, RevokeApiKey key:" + *id + " OK");
}

}  // namespace
}  // namespace nexus::testing
