// TLS and mutual TLS on both listeners, with certificates generated here by the openssl command line tool.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "http_client.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "tls_certs.h"

namespace nexus::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// HTTP status of `curl` against https://127.0.0.1:port/path ("000" when the connection or handshake failed).
std::string Curl(int port, const std::string& path, const std::string& args) {
  const std::string cmd = "curl -s -o /dev/null -w '%{http_code}' --max-time 5 " + args +
                          " https://127.0.0.1:" + std::to_string(port) + path + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "popen failed";
  std::array<char, 64> buf{};
  std::string out;
  while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
  ::pclose(p);
  return out;
}

grpc::StatusCode CallGrpc(int port, std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port), creds, args);
  auto stub = v1::QueryService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::GetPersonRequest req;
  req.set_person_id("per_x");
  v1::Person out;
  return stub->GetPerson(&ctx, req, &out).error_code();
}

std::shared_ptr<grpc::ChannelCredentials> Tls(const Certs& c, const std::string& ca, const std::string& client = "") {
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = ReadFile(c.Path(ca + ".pem"));
  if (!client.empty()) {
    o.pem_cert_chain = ReadFile(c.Path(client + ".pem"));
    o.pem_private_key = ReadFile(c.Path(client + ".key"));
  }
  return grpc::SslCredentials(o);
}

class TlsTest : public PgTest {};

TEST_F(TlsTest, ServerTlsOnBothListenersPlaintextRefusedReloadOnSighup) {
  Certs certs;
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  auto cfg = BaseConfig();
  cfg.tls_cert = certs.Path("ca-server.pem");
  cfg.tls_key = certs.Path("ca-server.key");
  auto& app = StartApp(cfg);
  // gRPC: a client trusting the CA gets through the handshake (NOT_FOUND is the call's own answer).
  EXPECT_EQ(CallGrpc(app.grpc_port(), Tls(certs, "ca")), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CallGrpc(app.grpc_port(), Tls(certs, "other")), grpc::StatusCode::UNAVAILABLE) << "wrong CA trusted";
  EXPECT_EQ(CallGrpc(app.grpc_port(), grpc::InsecureChannelCredentials()), grpc::StatusCode::UNAVAILABLE)
      << "plaintext accepted on a TLS port";
  // HTTP.
  EXPECT_EQ(Curl(app.http_port(), "/v1/persons/per_x", "--cacert " + certs.Path("ca.pem")), "404");
  EXPECT_EQ(Curl(app.http_port(), "/healthz", "--cacert " + certs.Path("other.pem")), "000");
  EXPECT_ANY_THROW(HttpGet(app.http_port(), "/healthz")) << "plaintext HTTP answered on a TLS port";
  // SIGHUP: a new certificate in the same files is used by new connections.
  ASSERT_EQ(Shell("cp " + certs.Path("other-server.pem") + " " + cfg.tls_cert + " && cp " +
                  certs.Path("other-server.key") + " " + cfg.tls_key),
            0);
  app.ReloadTls();
  EXPECT_EQ(Curl(app.http_port(), "/healthz", "--cacert " + certs.Path("other.pem")), "200");
  EXPECT_EQ(Curl(app.http_port(), "/healthz", "--cacert " + certs.Path("ca.pem")), "000");
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateFromTheConfiguredCa) {
  Certs certs;
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  auto cfg = BaseConfig();
  cfg.tls_cert = certs.Path("ca-server.pem");
  cfg.tls_key = certs.Path("ca-server.key");
  cfg.tls_client_ca = certs.Path("ca.pem");
  auto& app = StartApp(cfg);
  EXPECT_EQ(CallGrpc(app.grpc_port(), Tls(certs, "ca", "ca-client")), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(CallGrpc(app.grpc_port(), Tls(certs, "ca", "other-client")), grpc::StatusCode::UNAVAILABLE)
      << "client certificate from the wrong CA accepted";
  EXPECT_EQ(CallGrpc(app.grpc_port(), Tls(certs, "ca")), grpc::StatusCode::UNAVAILABLE) << "no client certificate";
  const std::string ca = "--cacert " + certs.Path("ca.pem");
  EXPECT_EQ(Curl(app.http_port(), "/healthz",
                 ca + " --cert " + certs.Path("ca-client.pem") + " --key " + certs.Path("ca-client.key")),
            "200");
  EXPECT_EQ(Curl(app.http_port(), "/healthz",
                 ca + " --cert " + certs.Path("other-client.pem") + " --key " + certs.Path("other-client.key")),
            "000");
  EXPECT_EQ(Curl(app.http_port(), "/healthz", ca), "000");
}

TEST_F(TlsTest, UnreadableCertificateStopsStartUp) {
  auto cfg = BaseConfig();
  cfg.tls_cert = ScratchDir() + "/no-such-cert.pem";
  cfg.tls_key = ScratchDir() + "/no-such-key.pem";
  server::App app(cfg);
  try {
    app.Start();
    ADD_FAILURE() << "started with a missing certificate";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-cert.pem"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace nexus::testing
