// Reliability at the edges (issue 12): undecodable gRPC messages, corrupt stream messages, metric counts of
// in-request duplicates. Raw bytes go through the real gRPC stack, as a broken client would send them.
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>

#include "http_client.h"
#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "nexusd_process.h"
#include "pg_fixture.h"
#include "server/metrics.h"
#include "server/request_parse.h"
#include "server/resolver_worker.h"
#include "storage/database.h"

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

using Clock = std::chrono::steady_clock;

int ParentPid(int pid) {
  const std::string content = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  const auto rp = content.rfind(')');
  if (rp == std::string::npos) return 0;
  int ppid = 0;
  char state = 0;
  std::sscanf(content.c_str() + rp + 2, "%c %d", &state, &ppid);
  return ppid;
}

/// Freezes the test PostgreSQL (postmaster and every child) with SIGSTOP: a database that stops answering, as
/// in a network partition. Thaws (SIGCONT) when destroyed, whatever the test did.
class FrozenDatabase {
 public:
  explicit FrozenDatabase(const std::string& url) {
    // The checkpointer lives as long as the cluster; its parent is the postmaster.
    const std::string cp = QueryScalar(url, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'");
    postmaster_ = cp.empty() ? 0 : ParentPid(std::stoi(cp));
    if (postmaster_ <= 1) return;
    pids_.push_back(postmaster_);
    if (DIR* d = opendir("/proc")) {
      while (dirent* e = readdir(d)) {
        const int pid = std::atoi(e->d_name);
        if (pid > 0 && ParentPid(pid) == postmaster_) pids_.push_back(pid);
      }
      closedir(d);
    }
    for (int pid : pids_) ::kill(pid, SIGSTOP);
  }
  ~FrozenDatabase() { Thaw(); }
  void Thaw() {
    for (int pid : pids_) ::kill(pid, SIGCONT);
    pids_.clear();
  }
  bool frozen() const { return !pids_.empty(); }

 private:
  int postmaster_ = 0;
  std::vector<int> pids_;
};

class EdgesTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    auto cfg = BaseConfig();
    cfg.resolver_enabled = false;
    Configure(cfg);
    StartApp(cfg);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  }
  virtual void Configure(server::Config&) {}
  /// grpc.health.v1.Health/Check for the whole server: 1 SERVING, 2 NOT_SERVING, -1 on error.
  int Health() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::ByteBuffer resp;
    const auto st = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel_.get(),
        grpc::internal::RpcMethod("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC), &ctx,
        Bytes(""), &resp);
    if (!st.ok()) return -1;
    std::vector<grpc::Slice> slices;
    if (!resp.Dump(&slices).ok()) return -1;
    std::string bytes;
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return bytes.size() == 2 && bytes[0] == '\x08' ? bytes[1] : -1;
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

// Item 1: a database that stops answering. Before: /readyz and every request hung until the client's deadline,
// gRPC health said SERVING throughout.
class FrozenDatabaseTest : public EdgesTest {
 protected:
  void Configure(server::Config& c) override { c.db_probe_timeout = std::chrono::milliseconds(1000); }
};

TEST_F(FrozenDatabaseTest, ReadinessHealthAndRequestsAnswerWithinABoundAndRecover) {
  ASSERT_EQ(HttpGet(app_->http_port(), "/readyz").status, 200);
  ASSERT_EQ(Health(), 1);
  auto stub = v1::IngestService::NewStub(channel_);
  FrozenDatabase frozen(url_);
  ASSERT_TRUE(frozen.frozen()) << "cannot find the test PostgreSQL's processes";
  // Readiness turns 503 within probe interval (1 s) + probe timeout (1 s) + slack; every answer is quick.
  const auto start = Clock::now();
  HttpResult ready;
  for (;;) {
    const auto t = Clock::now();
    ready = HttpGet(app_->http_port(), "/readyz");
    EXPECT_LT(Clock::now() - t, std::chrono::milliseconds(500)) << "/readyz took too long";
    if (ready.status == 503 || Clock::now() - start > std::chrono::seconds(6)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(ready.status, 503);
  EXPECT_NE(ready.body.find("database"), std::string::npos) << ready.body;
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(4));
  EXPECT_EQ(Health(), 2);  // NOT_SERVING while the database is down
  // New requests fail fast with UNAVAILABLE instead of waiting for the client's deadline.
  {
    v1::IngestEventsRequest req;
    *req.add_events() = Ev("frozen-1", "f@example.com");
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::IngestEventsResponse resp;
    const auto t = Clock::now();
    const auto st = stub->IngestEvents(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
    EXPECT_LT(Clock::now() - t, std::chrono::seconds(1));
  }
  EXPECT_EQ(Metric("nexus_db_up"), 0);
  frozen.Thaw();
  const auto thawed = Clock::now();
  while (HttpGet(app_->http_port(), "/readyz").status != 200 && Clock::now() - thawed < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(HttpGet(app_->http_port(), "/readyz").status, 200);
  EXPECT_EQ(Health(), 1);
  v1::IngestEventsRequest req;
  *req.add_events() = Ev("thawed-1", "t@example.com");
  grpc::ClientContext ctx;
  v1::IngestEventsResponse resp;
  EXPECT_TRUE(stub->IngestEvents(&ctx, req, &resp).ok());
}

TEST_F(EdgesTest, ConnectionStringGetsTimeoutsUnlessItSetsThemItself) {
  storage::DatabaseOptions o;
  const std::string kv = storage::WithConnectionSettings("host=db dbname=x", o);
  EXPECT_NE(kv.find(" connect_timeout=5"), std::string::npos) << kv;
  EXPECT_NE(kv.find(" keepalives=1"), std::string::npos) << kv;
  EXPECT_NE(kv.find(" tcp_user_timeout=15000"), std::string::npos) << kv;
  const std::string uri = storage::WithConnectionSettings("postgresql://db/x?connect_timeout=9", o);
  EXPECT_NE(uri.find("?connect_timeout=9&keepalives=1"), std::string::npos) << uri;
  EXPECT_EQ(uri.find("connect_timeout=5"), std::string::npos) << uri;
}

// Item 9: a huge body is refused from its Content-Length, before it is read (no memory spent on it).
TEST_F(EdgesTest, OversizedIngestBodyIsRefusedWith413BeforeItIsRead) {
  const auto r = HttpRaw(app_->http_port(),
                         "POST /v1/events:ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         "Content-Length: 59000000\r\n\r\n{\"events\":[");
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("59000000 bytes is over the limit of 16777216 bytes for POST /v1/events:ingest"),
            std::string::npos)
      << r.body;
  // Other routes take small bodies only.
  const auto admin =
      HttpRaw(app_->http_port(), "POST /v1/admin/config:reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
  EXPECT_EQ(admin.status, 413) << admin.body;
}

// Item 10: long URLs and headers got no answer at all (the connection closed).
TEST_F(EdgesTest, LongUrlsAndHeadersGetAnAnswer) {
  const auto url = HttpGet(app_->http_port(), "/v1/persons/p1/timeline?page_token=" + std::string(100000, 'A'));
  EXPECT_EQ(url.status, 414) << url.body;
  EXPECT_NE(url.body.find("URL too long"), std::string::npos) << url.body;
  const auto url9k = HttpGet(app_->http_port(), "/v1/persons/" + std::string(9000, 'p'));
  EXPECT_EQ(url9k.status, 414) << url9k.body;
  const auto hdr = HttpRaw(app_->http_port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'h') +
                                                  "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(hdr.status, 431) << hdr.body;
  const auto garbage = HttpRaw(app_->http_port(), "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.status, 400) << garbage.body;
}

// Item 10: query ids are checked strictly; a NUL used to cut the id short in SQL and return the person.
TEST_F(EdgesTest, QueryIdsWithNulOrHugeLengthAreRejectedAndNotEchoed) {
  auto ingest = v1::IngestService::NewStub(channel_);
  {
    v1::IngestEventsRequest req;
    *req.add_events() = Ev("id-1", "nul@example.com");
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    ASSERT_TRUE(ingest->IngestEvents(&ctx, req, &resp).ok());
  }
  auto query = v1::QueryService::NewStub(channel_);
  auto get = [&](const std::string& id, v1::Person* out) {
    v1::GetPersonRequest r;
    r.set_person_id(id);
    grpc::ClientContext ctx;
    return query->GetPerson(&ctx, r, out);
  };
  v1::Person p;
  const auto nul = get(std::string("p_anything\0junk", 15), &p);
  EXPECT_EQ(nul.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << nul.error_message();
  EXPECT_NE(nul.error_message().find("person_id"), std::string::npos);
  const auto huge = get(std::string(100000, 'z'), &p);
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_LT(huge.error_message().size(), 200u);
  const auto missing = get("p_" + std::string(100, 'y'), &p);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_LT(missing.error_message().size(), 100u) << missing.error_message();
  // Lookup NOT_FOUND does not echo the identifier value (personal data).
  v1::LookupPersonRequest lr;
  lr.set_identifier_type("email");
  lr.set_identifier_value("secret.person@example.com");
  grpc::ClientContext ctx;
  const auto lk = query->LookupPerson(&ctx, lr, &p);
  EXPECT_EQ(lk.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(lk.error_message().find("secret.person"), std::string::npos) << lk.error_message();
  const auto http = HttpGet(app_->http_port(), "/v1/persons/p_x%00junk");
  EXPECT_EQ(http.status, 400) << http.body;
}

// Item 10: lenient numbers, enums and non-standard JSON were accepted.
TEST_F(EdgesTest, AdminListsAndJsonBodiesAreParsedStrictly) {
  for (const char* bad : {"-1", "5abc", "0x10", "1e3", "-2147483648", "%205"}) {
    const auto r = HttpGet(app_->http_port(), std::string("/v1/admin/quarantine?page_size=") + bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.body;
    EXPECT_NE(r.body.find("page_size"), std::string::npos) << r.body;
  }
  EXPECT_EQ(HttpGet(app_->http_port(), "/v1/admin/quarantine?page_size=5").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/v1/persons/p1/timeline?page_size=1e3").status, 400);
  EXPECT_EQ(HttpGet(app_->http_port(), "/v1/admin/quarantine?include_released=maybe").status, 400);
  auto admin = v1::AdminService::NewStub(channel_);
  {
    v1::ListQuarantinedEdgesRequest r;
    r.set_kind(static_cast<v1::EntityKind>(99));
    grpc::ClientContext ctx;
    v1::ListQuarantinedEdgesResponse out;
    EXPECT_EQ(admin->ListQuarantinedEdges(&ctx, r, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::ListQuarantinedEdgesRequest r;
    r.set_page_size(-1);
    grpc::ClientContext ctx;
    v1::ListQuarantinedEdgesResponse out;
    EXPECT_EQ(admin->ListQuarantinedEdges(&ctx, r, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  const std::string event =
      "{\"event_id\":\"j1\",\"occurred_at\":\"2024-01-01T00:00:00Z\",\"event_name\":\"n\",\"event_type\":\"t\","
      "\"source\":\"s\",\"persons\":[{\"identifiers\":[{\"type\":\"email\",\"value\":\"j@example.com\"}]}]}";
  for (const std::string& body :
       {"{'events':[" + event + "]}", "{events:[" + event + "]}", "{\"events\":[" + event + ",]}",
        std::string("{\"events\":[{\"event_id\":\"j2\",\"persons\":[null]}]}")}) {
    const auto r = HttpPost(app_->http_port(), "/v1/events:ingest", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_NE(r.body.find("invalid JSON body"), std::string::npos) << r.body;
  }
  EXPECT_EQ(Events(), 0);
  EXPECT_EQ(HttpPost(app_->http_port(), "/v1/events:ingest", "{\"events\":[" + event + "]}").status, 200);
  // A 400 that names raw non-UTF-8 input is still valid JSON (valid UTF-8).
  const auto raw = HttpPost(app_->http_port(), "/v1/events:ingest", "{\"events\":[{\"event_id\":\"\xff\xfe\"}]}");
  EXPECT_EQ(raw.status, 400);
  EXPECT_TRUE(server::IsValidUtf8(raw.body)) << raw.body;
  EXPECT_TRUE(server::CheckStrictJson(raw.body).ok()) << raw.body;
}

// Item 4: the oldest writing transaction in nexusd's database holds back resolver progress: it is exported. An
// older one in another database of the cluster does not hold it back, and is not exported.
TEST_F(EdgesTest, IdleInTransactionWriterIsExportedWithPidAndAge) {
  pqxx::connection elsewhere(AdminUrl());
  pqxx::work older(elsewhere);
  older.exec("SELECT pg_current_xact_id()");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  pqxx::connection other(url_);
  pqxx::work tx(other);
  const int pid = tx.exec("SELECT pg_backend_pid()")[0][0].as<int>();
  tx.exec("SELECT pg_current_xact_id()");  // takes a transaction id: a writer, now idle in transaction
  const auto start = Clock::now();
  while (Metric("nexus_db_oldest_write_transaction_pid") != pid && Clock::now() - start < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric("nexus_db_oldest_write_transaction_pid"), pid);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_GE(Metric("nexus_db_oldest_write_transaction_age_seconds"), 1.0);
  tx.abort();
  const auto after = Clock::now();
  while (Metric("nexus_db_oldest_write_transaction_pid") == pid && Clock::now() - after < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric("nexus_db_oldest_write_transaction_pid"), 0);
}

// Item 4: a batch that keeps failing was retried every poll interval forever, with no signal.
class ResolverStuckTest : public EdgesTest {
 protected:
  void Configure(server::Config& c) override {
    c.resolver_enabled = true;
    c.resolver_poll_interval = std::chrono::milliseconds(100);
  }
};

TEST_F(ResolverStuckTest, FailingBatchesBackOffAndRaiseTheStuckGauge) {
  EXPECT_EQ(server::ResolverWorker::Backoff(std::chrono::milliseconds(100), 1).count(), 100);
  EXPECT_EQ(server::ResolverWorker::Backoff(std::chrono::milliseconds(100), 4).count(), 800);
  EXPECT_EQ(server::ResolverWorker::Backoff(std::chrono::milliseconds(1000), 40).count(), 60000);
  QueryScalar(url_,
              "CREATE FUNCTION fail_always() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "RAISE EXCEPTION 'injected failure'; END $$");
  QueryScalar(url_,
              "CREATE TRIGGER fail_always BEFORE INSERT ON person_participants FOR EACH STATEMENT EXECUTE "
              "FUNCTION fail_always()");
  auto stub = v1::IngestService::NewStub(channel_);
  v1::IngestEventsRequest req;
  *req.add_events() = Ev("stuck-1", "s@example.com");
  grpc::ClientContext ctx;
  v1::IngestEventsResponse resp;
  ASSERT_TRUE(stub->IngestEvents(&ctx, req, &resp).ok());
  // Backoff 0.1, 0.2, 0.4, 0.8, 1.6 s: five failures take ~3.1 s; without backoff there were ~10 per second.
  const auto start = Clock::now();
  while (Metric("nexus_resolver_stuck") != 1 && Clock::now() - start < std::chrono::seconds(15)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric("nexus_resolver_stuck"), 1);
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(1400));
  const double errors = Metric("nexus_resolver_errors_total");
  EXPECT_GE(errors, server::Metrics::kStuckAfterFailures);
  EXPECT_LE(errors, server::Metrics::kStuckAfterFailures + 1);
  EXPECT_GE(Metric("nexus_resolver_consecutive_failures"), server::Metrics::kStuckAfterFailures);
  QueryScalar(url_, "DROP TRIGGER fail_always ON person_participants");
  const auto fixed = Clock::now();
  while (Metric("nexus_resolver_stuck") != 0 && Clock::now() - fixed < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Metric("nexus_resolver_stuck"), 0);
  EXPECT_EQ(Metric("nexus_resolver_consecutive_failures"), 0);
}

// Item 12: quarantine warnings are aggregated per batch, and explaining an unlinked pair does not scan every
// open quarantined edge.
class QuarantineEdgesTest : public EdgesTest {
 protected:
  void Configure(server::Config& c) override { c.resolver_enabled = true; }
  void Ingest(const v1::IngestEventsRequest& req) {
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    ASSERT_TRUE(v1::IngestService::NewStub(channel_)->IngestEvents(&ctx, req, &resp).ok());
  }
};

/// Captures what the process writes to stderr (the JSON log) while alive.
class StderrCapture {
 public:
  StderrCapture() : path_(ScratchDir() + "/stderr-" + std::to_string(::getpid()) + ".log") {
    std::fflush(stderr);
    saved_ = ::dup(2);
    FILE* f = std::fopen(path_.c_str(), "w");
    ::dup2(::fileno(f), 2);
    std::fclose(f);
  }
  ~StderrCapture() { Stop(); }
  std::string Stop() {
    if (saved_ >= 0) {
      std::fflush(stderr);
      ::dup2(saved_, 2);
      ::close(saved_);
      saved_ = -1;
    }
    std::ifstream in(path_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

 private:
  std::string path_;
  int saved_ = -1;
};

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

TEST_F(QuarantineEdgesTest, OneWarningPerBatchNotPerQuarantinedEdge) {
  v1::IngestEventsRequest req;
  for (int i = 0; i < 40; ++i) {
    v1::Event e = Ev("q" + std::to_string(i), "shared@example.com");
    auto* id = e.mutable_persons(0)->add_identifiers();
    id->set_type("user_id");
    id->set_value("u" + std::to_string(i));  // one entity may hold one user_id: 39 edges are quarantined
    *req.add_events() = e;
  }
  Ingest(req);
  StderrCapture capture;
  ResolveAll();
  const std::string log = capture.Stop();
  EXPECT_GE(std::stoll(QueryScalar(url_, "SELECT count(*) FROM quarantined_edges")), 30);
  EXPECT_EQ(Count(log, "\"msg\":\"edge quarantined\""), 0u) << log.substr(0, 2000);
  EXPECT_GE(Count(log, "\"msg\":\"edges quarantined\""), 1u) << log.substr(0, 2000);
  EXPECT_LE(Count(log, "\"msg\":\"edges quarantined\""), 4u) << log.substr(0, 2000);
}

TEST_F(QuarantineEdgesTest, ExplainOfAnUnlinkedPairUsesTheIndexesNotAScan) {
  v1::IngestEventsRequest req;
  *req.add_events() = Ev("x1", "a@example.com");
  *req.add_events() = Ev("x2", "b@example.com");
  Ingest(req);
  ResolveAll();
  // 60k unrelated open quarantined edges (written directly: the resolver would take minutes).
  QueryScalar(url_,
              "INSERT INTO quarantined_edges (kind, event_id, edge_id, source, occurred_at, identifier_types, "
              "identifier_values, reason, entity_ids) SELECT 'person', 'x1', 'junk' || g, 'edge', now(), "
              "ARRAY['email'], ARRAY['junk' || g || '@example.com'], 'test', ARRAY['p_junk' || g, 'p_other' || g] "
              "FROM generate_series(1, 60000) g");
  QueryScalar(url_, "ANALYZE quarantined_edges");
  auto query = v1::QueryService::NewStub(channel_);
  auto explain = [&] {
    v1::ExplainLinkRequest r;
    r.mutable_a()->set_type("email");
    r.mutable_a()->set_value("a@example.com");
    r.mutable_b()->set_type("email");
    r.mutable_b()->set_value("b@example.com");
    grpc::ClientContext ctx;
    v1::ExplainLinkResponse out;
    const auto t = Clock::now();
    const auto st = query->ExplainPersonLink(&ctx, r, &out);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  explain();  // prepares the statement
  std::vector<double> ms = {explain(), explain(), explain()};
  std::sort(ms.begin(), ms.end());
  // Before: a scan of every open quarantined edge, ~400 ms here; with the GIN pre-filters, a few ms.
  EXPECT_LT(ms[1], 100.0) << "median explain time " << ms[1] << " ms";
}

}  // namespace
}  // namespace nexus::testing
