// Access control without a database: the method -> scope table covers every RPC, key format and hashing,
// password redaction in every connection-string form, and what a client sees of an internal error.
#include "server/auth.h"

#include <gtest/gtest.h>

#include <set>

#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "server/config.h"
#include "server/rpc_util.h"
#include "storage/database.h"

namespace nexus::server {
namespace {

TEST(MethodScopes, EveryRpcOfEveryServiceHasAScope) {
  std::set<std::string> rpcs;
  // Every service of every proto file of the API (a new service in these files is covered too).
  int services = 0;
  for (const auto* file : {v1::IngestEventsRequest::descriptor()->file(), v1::GetPersonRequest::descriptor()->file(),
                           v1::RebuildRequest::descriptor()->file()}) {
    for (int s = 0; s < file->service_count(); ++s, ++services) {
      const auto* desc = file->service(s);
      for (int i = 0; i < desc->method_count(); ++i) {
        const std::string name = desc->method(i)->name();
        EXPECT_TRUE(rpcs.insert(name).second) << name << " exists in two services: the table is keyed by name";
        EXPECT_TRUE(MethodScopes().count(name))
            << desc->full_name() << "/" << name << " has no scope in MethodScopes()";
      }
    }
  }
  EXPECT_EQ(services, 3);
  // And the table names nothing that is not an RPC or an HTTP-only route.
  for (const auto& [name, scope] : MethodScopes()) {
    EXPECT_TRUE(rpcs.count(name) || name.rfind("http:/", 0) == 0) << name << " is not an RPC";
  }
  EXPECT_EQ(MethodScopes().at("IngestEvents"), Scope::kIngest);
  EXPECT_EQ(MethodScopes().at("ExplainPersonLink"), Scope::kRead);
  EXPECT_EQ(MethodScopes().at("ReleaseQuarantinedEdge"), Scope::kAdmin);
  EXPECT_EQ(MethodScopes().at("http:/healthz"), Scope::kOpen);
}

TEST(ApiKeys, FormatIdAndHash) {
  const GeneratedKey a = GenerateApiKey(), b = GenerateApiKey();
  EXPECT_NE(a.secret, b.secret);
  EXPECT_NE(a.key_id, b.key_id);
  EXPECT_EQ(a.secret.rfind("nxk_" + a.key_id + "_", 0), 0u) << a.secret;
  EXPECT_EQ(a.secret.size(), 4u + 12 + 1 + 64);
  ASSERT_TRUE(ParseKeyId(a.secret));
  EXPECT_EQ(*ParseKeyId(a.secret), a.key_id);
  EXPECT_EQ(a.sha256_hex, Sha256Hex(a.secret));
  EXPECT_EQ(a.sha256_hex.find(a.secret), std::string::npos);
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_FALSE(ParseKeyId(""));
  EXPECT_FALSE(ParseKeyId("nxk_short_abc"));
  EXPECT_FALSE(ParseKeyId("xyz" + a.secret.substr(3)));
  std::string upper = a.secret;
  upper[5] = 'G';
  EXPECT_FALSE(ParseKeyId(upper));
}

TEST(ApiKeys, PrincipalScopesAndSources) {
  Principal p;
  p.key_id = "0123456789ab";
  p.scopes = {"ingest"};
  p.sources = {"gmail"};
  EXPECT_TRUE(p.Has(Scope::kIngest));
  EXPECT_FALSE(p.Has(Scope::kRead));
  EXPECT_FALSE(p.Has(Scope::kAdmin));
  EXPECT_TRUE(p.Has(Scope::kMetrics));  // any valid key
  EXPECT_TRUE(p.MayWriteSource("gmail"));
  EXPECT_FALSE(p.MayWriteSource("hubspot"));
  p.sources.clear();
  EXPECT_TRUE(p.MayWriteSource("hubspot"));
}

TEST(Listen, Loopback) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:8080"));
  EXPECT_TRUE(IsLoopbackListen("127.1.2.3:0"));
  EXPECT_TRUE(IsLoopbackListen("localhost:50051"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:8080"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:8080"));
  EXPECT_FALSE(IsLoopbackListen("[::]:8080"));
  EXPECT_FALSE(IsLoopbackListen("10.0.0.5:8080"));
}

TEST(Redaction, EveryUrlForm) {
  using storage::RedactUrl;
  struct Case {
    std::string in, secret, must_keep;
  };
  const std::vector<Case> cases = {
      {"postgresql://nexus:s3cret@db.internal:5432/nexus", "s3cret", "db.internal:5432/nexus"},
      {"postgres://nexus:p%40ss@db/nexus?sslmode=require", "p%40ss", "sslmode=require"},
      {"postgresql://nexus@db/nexus?password=s3cret&sslmode=require", "s3cret", "sslmode=require"},
      {"postgresql://db/nexus?sslmode=require&password=s3cret", "s3cret", "sslmode=require"},
      {"postgresql://db/nexus?PASSWORD=s3cret", "s3cret", "postgresql://db/nexus"},
      {"host=db port=5432 user=nexus password=s3cret dbname=nexus", "s3cret", "dbname=nexus"},
      {"host=db password = s3cret dbname=nexus", "s3cret", "dbname=nexus"},
      {"host=db password='s3 cr\\'et' dbname=nexus", "cr\\'et", "dbname=nexus"},
      {"host=db sslpassword=s3cret dbname=nexus", "s3cret", "dbname=nexus"},
      {"postgresql://u:pw1@h/db?password=pw2", "pw", "postgresql://u:"},
  };
  for (const auto& c : cases) {
    const std::string out = RedactUrl(c.in);
    EXPECT_EQ(out.find(c.secret), std::string::npos) << c.in << " -> " << out;
    EXPECT_NE(out.find(c.must_keep), std::string::npos) << c.in << " -> " << out;
    EXPECT_NE(out.find("***"), std::string::npos) << c.in << " -> " << out;
  }
  EXPECT_EQ(RedactUrl("host=/tmp/run dbname=nexus user=nexus"), "host=/tmp/run dbname=nexus user=nexus");
  EXPECT_EQ(RedactUrl("postgresql://nexus@db/nexus"), "postgresql://nexus@db/nexus");
}

TEST(Errors, InternalDetailsStayInTheLog) {
  Metrics metrics("test", "test");
  const grpc::Status s = HandleRpc(metrics, nullptr, nullptr, "GetPerson", [](CallContext&) -> grpc::Status {
    throw storage::StorageError(storage::ErrorKind::kUnavailable, "cannot connect to PostgreSQL",
                                "at host=db.internal port=5432 user=nexus dbname=prod: FATAL: role missing");
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message().find("db.internal"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find("FATAL"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("request id "), std::string::npos) << s.error_message();

  const grpc::Status c = HandleRpc(metrics, nullptr, nullptr, "GetPerson", [](CallContext&) -> grpc::Status {
    throw storage::StorageError(storage::ErrorKind::kInvalidArgument, "ingest: rejected by a database constraint",
                                "ERROR: duplicate key value violates unique constraint \"events_pkey\"");
  });
  EXPECT_EQ(c.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(c.error_message(), "ingest: rejected by a database constraint");
}

}  // namespace
}  // namespace nexus::server

namespace nexus::server {
namespace {

TEST(TlsConfig, CertAndKeyGoTogetherAndMtlsNeedsTls) {
  auto only_cert = ParseConfig({"--tls-cert=/x.pem"}, {});
  ASSERT_FALSE(only_cert.config);
  EXPECT_NE(only_cert.error.find("--tls-cert and --tls-key go together"), std::string::npos) << only_cert.error;
  auto ca_only = ParseConfig({"--tls-client-ca=/ca.pem"}, {});
  ASSERT_FALSE(ca_only.config);
  EXPECT_NE(ca_only.error.find("--tls-client-ca needs --tls-cert"), std::string::npos) << ca_only.error;
  auto ok = ParseConfig({"--tls-cert=/c.pem", "--tls-key=/k.pem", "--allow-unauthenticated"},
                        {"NEXUS_TLS_CLIENT_CA=/ca.pem", "NEXUS_METRICS_REQUIRE_KEY=true"});
  ASSERT_TRUE(ok.config) << ok.error;
  EXPECT_EQ(ok.config->tls_client_ca, "/ca.pem");
  EXPECT_TRUE(ok.config->allow_unauthenticated);
  EXPECT_TRUE(ok.config->metrics_require_key);
}

}  // namespace
}  // namespace nexus::server
