// Ingest through a real gRPC channel and real HTTP against a real PostgreSQL; migrations.
#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <pqxx/pqxx>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "pg_fixture.h"
#include "storage/database.h"
#include "storage/migrations.h"

namespace nexus::testing {
namespace {

v1::Event Rich(const std::string& id) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1767225600);  // 2026-01-01
  e.set_event_name("meeting_held");
  e.set_event_description("Quarterly review");
  e.set_event_type("calendar");
  e.set_source("gcal");
  e.set_value(12.5);
  e.set_value_unit("minutes");
  auto* p = e.add_persons();
  p->set_role("organizer");
  auto* i1 = p->add_identifiers();
  i1->set_type("email");
  i1->set_value("  Jane.Doe@ACME.io ");
  auto* i2 = p->add_identifiers();
  i2->set_type("phone");
  i2->set_value("+1 (415) 555-1234");
  auto* i3 = p->add_identifiers();
  i3->set_type("user_id");
  i3->set_value(" U-77 ");
  (*p->mutable_traits())["name"] = "Jane Doe";
  (*p->mutable_traits())["title"] = "CFO";
  auto* g = e.add_groups();
  auto* gi = g->add_identifiers();
  gi->set_type("domain");
  gi->set_value("https://www.ACME.io/about");
  (*g->mutable_traits())["company_name"] = "Acme";
  auto* m = e.add_memberships();
  m->mutable_person()->set_type("email");
  m->mutable_person()->set_value("jane.doe@acme.io");
  m->mutable_group()->set_type("domain");
  m->mutable_group()->set_value("acme.io");
  m->set_role("finance");
  return e;
}

class IngestTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    auto cfg = BaseConfig();
    cfg.resolver_enabled = false;  // pure ingest
    StartApp(cfg);
    stub_ = v1::IngestService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials()));
  }
  grpc::Status Ingest(const std::vector<v1::Event>& evs, v1::IngestEventsResponse* resp) {
    v1::IngestEventsRequest req;
    for (const auto& e : evs) *req.add_events() = e;
    grpc::ClientContext ctx;
    return stub_->IngestEvents(&ctx, req, resp);
  }
  long long Count(const std::string& t) { return std::stoll(QueryScalar(url_, "SELECT count(*) FROM " + t)); }
  std::unique_ptr<v1::IngestService::Stub> stub_;
};

TEST_F(IngestTest, BatchLandsInEveryTableWithNormalizedValues) {
  v1::IngestEventsResponse resp;
  ASSERT_TRUE(Ingest({Rich("ev-1")}, &resp).ok());
  EXPECT_EQ(resp.accepted(), 1);
  EXPECT_EQ(resp.duplicates(), 0);
  EXPECT_EQ(Count("events"), 1);
  EXPECT_EQ(
      QueryScalar(url_, "SELECT event_description || '|' || value || '|' || value_unit || '|' || source FROM events"),
      "Quarterly review|12.5|minutes|gcal");
  EXPECT_EQ(Count("person_identifiers"), 3);
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT identifier_value || '|' || identifier_value_raw || '|' || role || '|' || edge_id "
                        "FROM person_identifiers WHERE identifier_type = 'email'"),
            "jane.doe@acme.io|  Jane.Doe@ACME.io |organizer|ev-1#p0");
  EXPECT_EQ(QueryScalar(url_, "SELECT identifier_value FROM person_identifiers WHERE identifier_type = 'phone'"),
            "+14155551234");
  EXPECT_EQ(QueryScalar(url_, "SELECT identifier_value FROM person_identifiers WHERE identifier_type = 'user_id'"),
            "U-77");
  EXPECT_EQ(QueryScalar(url_, "SELECT identifier_value FROM group_identifiers"), "acme.io");
  EXPECT_EQ(Count("person_traits"), 2);
  EXPECT_EQ(Count("group_traits"), 1);
  EXPECT_EQ(QueryScalar(
                url_, "SELECT person_identifier || '|' || group_identifier || '|' || role FROM membership_identifiers"),
            "jane.doe@acme.io|acme.io|finance");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(DISTINCT _ingested_at) FROM person_identifiers"), "1");
}

TEST_F(IngestTest, ResentBatchAddsNothingAndReportsDuplicates) {
  v1::IngestEventsResponse r1, r2;
  ASSERT_TRUE(Ingest({Rich("a"), Rich("b")}, &r1).ok());
  ASSERT_TRUE(Ingest({Rich("a"), Rich("b"), Rich("c")}, &r2).ok());
  EXPECT_EQ(r2.accepted(), 1);
  EXPECT_EQ(r2.duplicates(), 2);
  EXPECT_THAT(std::vector<std::string>(r2.duplicate_event_ids().begin(), r2.duplicate_event_ids().end()),
              ::testing::UnorderedElementsAre("a", "b"));
  EXPECT_EQ(Count("events"), 3);
  EXPECT_EQ(Count("person_identifiers"), 9);
}

TEST_F(IngestTest, OneBadEventWritesNothingAndNamesEveryBadField) {
  v1::Event bad = Rich("bad");
  bad.clear_occurred_at();
  bad.mutable_persons(0)->mutable_identifiers(1)->set_value("");
  bad.mutable_persons(0)->mutable_identifiers(2)->set_type("User-Id");
  v1::IngestEventsResponse resp;
  auto s = Ingest({Rich("good"), bad}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("events[1].occurred_at: missing"), std::string::npos) << s.error_message();
  EXPECT_NE(s.error_message().find("events[1].persons[0].identifiers[1].value: empty"), std::string::npos);
  EXPECT_NE(s.error_message().find("events[1].persons[0].identifiers[2].type"), std::string::npos);
  EXPECT_EQ(Count("events"), 0);
  EXPECT_EQ(Count("person_identifiers"), 0);
}

TEST_F(IngestTest, LimitsAndAbsurdTimestampsAreRejected) {
  v1::Event e = Rich("old");
  e.mutable_occurred_at()->set_seconds(-5);
  v1::IngestEventsResponse resp;
  auto s = Ingest({e}, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("events[0].occurred_at: absurd"), std::string::npos);
  std::vector<v1::Event> many(1001, Rich("x"));
  s = Ingest(many, &resp);
  EXPECT_NE(s.error_message().find("at most 1000 per request"), std::string::npos);
}

TEST_F(IngestTest, StreamAcknowledgesEachBatchOnceCommitted) {
  grpc::ClientContext ctx;
  auto stream = stub_->IngestEventStream(&ctx);
  for (int b = 0; b < 5; ++b) {
    v1::IngestEventsRequest req;
    for (int i = 0; i < 10; ++i) *req.add_events() = Rich("s" + std::to_string(b) + "_" + std::to_string(i));
    ASSERT_TRUE(stream->Write(req));
    v1::IngestEventsResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.accepted(), 10);
    // acknowledged => committed and visible to anyone
    EXPECT_EQ(Count("events"), (b + 1) * 10);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(IngestTest, HttpJsonGivesTheSameResultAsGrpc) {
  v1::IngestEventsRequest req;
  *req.add_events() = Rich("h1");
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(req, &json).ok());
  auto r = HttpPost(app_->http_port(), "/v1/events:ingest", json);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":\"1\""), std::string::npos) << r.body;
  r = HttpPost(app_->http_port(), "/v1/events:ingest", json);
  EXPECT_NE(r.body.find("\"duplicates\":\"1\""), std::string::npos) << r.body;
  EXPECT_EQ(Count("person_identifiers"), 3);
  r = HttpPost(app_->http_port(), "/v1/events:ingest", "{\"events\": [ {\"event_id\": ");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("invalid JSON body"), std::string::npos) << r.body;
  r = HttpPost(app_->http_port(), "/v1/events:ingest", "{\"events\":[{\"event_id\":\"x\"}]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("events[0].occurred_at: missing"), std::string::npos) << r.body;
}

TEST_F(IngestTest, HealthAndReadiness) {
  EXPECT_EQ(HttpGet(app_->http_port(), "/healthz").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/readyz").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/nope").status, 404);
}

class MigrationTest : public ::testing::Test {};

TEST_F(MigrationTest, AppliedTwiceAndConcurrentlyFromTwoProcesses) {
  const std::string url = CreateTestDatabase();
  // Two processes migrate the same empty database at the same time.
  std::vector<pid_t> kids;
  for (int i = 0; i < 2; ++i) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        storage::Database db({url, 1, std::chrono::milliseconds(5000)}, nullptr);
        storage::Migrate(db);
        _exit(0);
      } catch (...) {
        _exit(1);
      }
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a concurrent migration failed";
  }
  storage::Database db({url, 1, std::chrono::milliseconds(5000)}, nullptr);
  auto again = storage::Migrate(db);
  EXPECT_TRUE(again.applied.empty());
  EXPECT_TRUE(db.IsMigrated());
  // Each migration once (versions may have gaps: branches number theirs independently).
  size_t files = 0;
  for (const auto& f : std::filesystem::directory_iterator(std::string(NEXUS_SOURCE_DIR) + "/storage/migrations")) {
    files += f.path().extension() == ".sql";
  }
  EXPECT_EQ(QueryScalar(url, "SELECT count(*) FROM schema_migrations"), std::to_string(files));
  EXPECT_EQ(QueryScalar(url, "SELECT max(version) FROM schema_migrations"),
            std::to_string(storage::LatestMigrationVersion()));
  for (const char* t : {"events", "person_identifiers", "person_traits", "group_identifiers", "group_traits",
                        "membership_identifiers", "resolved_person_identifiers", "resolved_person_traits",
                        "resolved_group_identifiers", "resolved_group_traits", "resolved_membership_identifiers",
                        "persons", "groups", "memberships", "person_participants", "group_participants"}) {
    EXPECT_EQ(QueryScalar(url, std::string("SELECT to_regclass('") + t + "') IS NOT NULL"), "t") << t;
  }
}

}  // namespace
}  // namespace nexus::testing
