// Reliability at the edges (issue 12): undecodable gRPC messages, corrupt stream messages, metric counts of
// in-request duplicates. Raw bytes go through the real gRPC stack, as a broken client would send them.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"

namespace nexus::testing {
namespace {

v1::Event Ev(const std::string& id, const std::string& email) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000);
  e.set_event_name("signup");
  e.set_event_type("signup");
  e.set_source("edge");
  auto* i = e.add_persons()->add_identifiers();
  i->set_type("email");
  i->set_value(email);
  return e;
}

grpc::ByteBuffer Bytes(const std::string& data) {
  grpc::Slice slice(data.data(), data.size());
  return grpc::ByteBuffer(&slice, 1);
}

/// A valid IngestEventsRequest whose event_id is not UTF-8 (same length as "ev-b", so the framing stays right).
std::string BadUtf8Request() {
  v1::IngestEventsRequest req;
  *req.add_events() = Ev("ev-b", "b@example.com");
  std::string wire = req.SerializeAsString();
  const auto at = wire.find("ev-b");
  wire.replace(at, 2, "\xff\xfe");
  return wire;
}

class EdgesTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    auto cfg = BaseConfig();
    cfg.resolver_enabled = false;
    StartApp(cfg);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  }
  grpc::Status RawUnary(const std::string& method, const std::string& body) {
    grpc::ClientContext ctx;
    grpc::ByteBuffer resp;
    return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel_.get(), grpc::internal::RpcMethod(method.c_str(), grpc::internal::RpcMethod::NORMAL_RPC), &ctx,
        Bytes(body), &resp);
  }
  /// Value of one sample line of /metrics ("name{labels}"), -1 when absent.
  double Metric(const std::string& series) {
    const auto body = HttpGet(app_->http_port(), "/metrics").body;
    const auto at = body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(body.substr(at + series.size() + 2));
  }
  long long Events() { return QueryCount(url_, "SELECT 1 FROM events"); }
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(EdgesTest, UndecodableUnaryRequestsAreInvalidArgumentCountedAndNamed) {
  const std::string ingest = "/nexus.v1.IngestService/IngestEvents";
  for (const std::string& body : {std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11),
                                  std::string("\x0a\x7f\x01", 3),  // field 1, length 127, 1 byte present
                                  BadUtf8Request()}) {
    const auto st = RawUnary(ingest, body);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
    EXPECT_NE(st.error_message().find("IngestEvents"), std::string::npos) << st.error_message();
    EXPECT_NE(st.error_message().find("could not be decoded"), std::string::npos) << st.error_message();
  }
  const auto q = RawUnary("/nexus.v1.QueryService/GetPerson", std::string("\x0a\x02\xc3\x28", 4));
  EXPECT_EQ(q.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << q.error_message();
  EXPECT_EQ(Events(), 0);
  EXPECT_EQ(Metric("nexus_grpc_undecodable_messages_total{method=\"IngestEvents\"}"), 3);
  EXPECT_EQ(Metric("nexus_grpc_undecodable_messages_total{method=\"GetPerson\"}"), 1);
  EXPECT_EQ(Metric("nexus_grpc_requests_total{code=\"INVALID_ARGUMENT\",method=\"IngestEvents\"}"), 3);
}

TEST_F(EdgesTest, StreamWithOnlyACorruptMessageEndsWithAnError) {
  grpc::ClientContext ctx;
  auto rw = std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel_.get(),
          grpc::internal::RpcMethod("/nexus.v1.IngestService/IngestEventStream",
                                    grpc::internal::RpcMethod::BIDI_STREAMING),
          &ctx));
  rw->Write(Bytes(std::string("\xff\xff\xff\xff", 4)));
  rw->WritesDone();
  grpc::ByteBuffer ack;
  EXPECT_FALSE(rw->Read(&ack));
  const auto st = rw->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("stream message 1"), std::string::npos) << st.error_message();
  EXPECT_EQ(Metric("nexus_grpc_undecodable_messages_total{method=\"IngestEventStream\"}"), 1);
}

TEST_F(EdgesTest, GoodBatchThenCorruptOneEndsWithAnErrorAfterOneAck) {
  grpc::ClientContext ctx;
  auto rw = std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel_.get(),
          grpc::internal::RpcMethod("/nexus.v1.IngestService/IngestEventStream",
                                    grpc::internal::RpcMethod::BIDI_STREAMING),
          &ctx));
  v1::IngestEventsRequest good;
  *good.add_events() = Ev("ev-a", "a@example.com");
  ASSERT_TRUE(rw->Write(Bytes(good.SerializeAsString())));
  grpc::ByteBuffer ack;
  ASSERT_TRUE(rw->Read(&ack));
  v1::IngestEventsResponse resp;
  ASSERT_TRUE(grpc::SerializationTraits<v1::IngestEventsResponse>::Deserialize(&ack, &resp).ok());
  EXPECT_EQ(resp.accepted(), 1);
  rw->Write(Bytes(BadUtf8Request()));
  rw->WritesDone();
  EXPECT_FALSE(rw->Read(&ack));
  const auto st = rw->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("stream message 2"), std::string::npos) << st.error_message();
  EXPECT_EQ(Events(), 1);  // the acknowledged batch stays committed, the corrupt one wrote nothing
}

TEST_F(EdgesTest, TypedStreamStillWorksEndToEnd) {
  auto stub = v1::IngestService::NewStub(channel_);
  grpc::ClientContext ctx;
  auto stream = stub->IngestEventStream(&ctx);
  for (int b = 0; b < 2; ++b) {
    v1::IngestEventsRequest req;
    *req.add_events() = Ev("s" + std::to_string(b), "s@example.com");
    ASSERT_TRUE(stream->Write(req));
    v1::IngestEventsResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.accepted(), 1);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(EdgesTest, InRequestDuplicateCountsOneAcceptedAndOneDuplicate) {
  auto stub = v1::IngestService::NewStub(channel_);
  v1::IngestEventsRequest req;
  *req.add_events() = Ev("dup-1", "d@example.com");
  *req.add_events() = Ev("dup-1", "d@example.com");
  grpc::ClientContext ctx;
  v1::IngestEventsResponse resp;
  ASSERT_TRUE(stub->IngestEvents(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.accepted(), 1);
  EXPECT_EQ(Metric("nexus_ingest_events_total{result=\"accepted\",source=\"edge\"}"), 1);
  EXPECT_EQ(Metric("nexus_ingest_events_total{result=\"duplicate\",source=\"edge\"}"), 1);
}

}  // namespace
}  // namespace nexus::testing
