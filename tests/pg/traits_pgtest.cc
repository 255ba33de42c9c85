// Trait rules (issue 14) end to end (and migration 006 on an existing database): events go in over HTTP/JSON (and
// gRPC), the rules come from a real config file, the resolver runs synchronously (ResolveNow) and profiles are read
// back over HTTP and gRPC.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "server/app.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"
#include "storage/database.h"
#include "storage/migrations.h"

namespace nexus::testing {
namespace {

constexpr char kRules[] = R"([traits]
default = latest
name = priority: hubspot, salesforce, *
signup_date = first
)";

class TraitsTest : public PgTest {
 protected:
  void Start(const std::string& rules = kRules) {
    config_path_ = ScratchDir() + "/traits-" + std::to_string(::getpid()) + "-" +
                   ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".conf";
    WriteRules(rules);
    auto cfg = BaseConfig();
    cfg.protection_config = config_path_;
    cfg.protection_config_watch = std::chrono::milliseconds(0);
    StartApp(cfg);
    auto channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel);
    query_ = v1::QueryService::NewStub(channel);
  }
  void WriteRules(const std::string& rules) { std::ofstream(config_path_, std::ios::trunc) << rules; }

  /// One event over HTTP: `traits_json` is the JSON object of the person's traits.
  HttpResult Post(const std::string& event_id, const std::string& at, const std::string& source,
                  const std::string& traits_json, const std::string& email = "jane@acme.io") {
    const std::string body = R"({"events": [{"event_id": ")" + event_id + R"(", "occurred_at": ")" + at +
                             R"(", "event_name": "n", "event_type": "t", "source": ")" + source +
                             R"(", "persons": [{"identifiers": [{"type": "email", "value": ")" + email +
                             R"("}], "traits": )" + traits_json + "}]}]}";
    return HttpPost(app_->http_port(), "/v1/events:ingest", body);
  }
  void Ingest(const std::string& event_id, const std::string& at, const std::string& source,
              const std::string& traits_json) {
    const HttpResult r = Post(event_id, at, source, traits_json);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  void Resolve() { ResolveAll(); }

  /// The profile over HTTP, as JSON text and parsed.
  v1::Person Profile(std::string* json = nullptr) {
    const HttpResult r = HttpGet(
        app_->http_port(), "/v1/persons:lookup?identifier_type=email&identifier_value=" + UrlEncode("jane@acme.io"));
    EXPECT_EQ(r.status, 200) << r.body;
    if (json) *json = r.body;
    v1::Person p;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &p).ok()) << r.body;
    return p;
  }
  static std::optional<v1::ResolvedTrait> TraitOf(const v1::Person& p, const std::string& name) {
    for (const auto& t : p.traits()) {
      if (t.name() == name) return t;
    }
    return std::nullopt;
  }

  std::string config_path_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
};

TEST_F(TraitsTest, CrmNameWinsOverTheMailClientsNewerDisplayNameByPriority) {
  Start();
  Ingest("crm-1", "2026-01-01T10:00:00Z", "hubspot", R"({"name": "Jane Doe"})");
  Ingest("mail-1", "2026-03-01T10:00:00Z", "gmail", R"({"name": "Jane D."})");
  Resolve();
  v1::Person p = Profile();
  auto name = TraitOf(p, "name");
  ASSERT_TRUE(name);
  EXPECT_EQ(name->value().string_value(), "Jane Doe");
  EXPECT_EQ(name->text_value(), "Jane Doe");
  EXPECT_EQ(name->source(), "hubspot");
  EXPECT_EQ(name->occurred_at().seconds(), 1767261600);  // 2026-01-01T10:00:00Z
  EXPECT_EQ(p.name(), "Jane Doe") << "the final-table column follows the rule too";
  // A newer value from the same (top) source still replaces it: equal rank falls back to latest.
  Ingest("crm-2", "2026-04-01T10:00:00Z", "hubspot", R"({"name": "Jane Doe-Smith"})");
  // A lower-priority source ranked above '*' loses too.
  Ingest("sf-1", "2026-05-01T10:00:00Z", "salesforce", R"({"name": "J. Doe"})");
  Resolve();
  p = Profile();
  EXPECT_EQ(TraitOf(p, "name")->text_value(), "Jane Doe-Smith");
  EXPECT_EQ(p.name(), "Jane Doe-Smith");
}

TEST_F(TraitsTest, ALaterImportDoesNotReplaceAFirstWinsTrait) {
  Start();
  Ingest("crm-1", "2024-02-01T00:00:00Z", "hubspot", R"({"signup_date": "2024-02-01", "title": "CFO"})");
  Resolve();
  Ingest("import-1", "2026-06-01T00:00:00Z", "csv_import", R"({"signup_date": "2026-06-01", "title": "CEO"})");
  // An older value arriving late does win under `first`.
  Ingest("old-1", "2023-05-01T00:00:00Z", "legacy", R"({"signup_date": "2023-05-01"})");
  Resolve();
  const v1::Person p = Profile();
  ASSERT_TRUE(TraitOf(p, "signup_date"));
  EXPECT_EQ(TraitOf(p, "signup_date")->text_value(), "2023-05-01");
  EXPECT_EQ(TraitOf(p, "signup_date")->source(), "legacy");
  EXPECT_EQ(TraitOf(p, "title")->text_value(), "CEO") << "title keeps the default rule (latest)";
}

TEST_F(TraitsTest, NullClearsATraitAndAnEmptyStringIsAValue) {
  Start();
  Ingest("e1", "2026-01-01T00:00:00Z", "crm", R"({"title": "CFO", "timezone": "Europe/Paris", "nickname": "JD"})");
  Resolve();
  ASSERT_EQ(Profile().title(), "CFO");
  Ingest("e2", "2026-02-01T00:00:00Z", "crm", R"({"title": null, "nickname": ""})");
  Resolve();
  std::string json;
  v1::Person p = Profile(&json);
  EXPECT_FALSE(TraitOf(p, "title")) << json;
  EXPECT_EQ(p.title(), "") << "the final column falls back as if the trait were absent";
  EXPECT_EQ(QueryScalar(url_, "SELECT coalesce(title, '<NULL>') FROM persons"), "<NULL>");
  EXPECT_EQ(TraitOf(p, "timezone")->text_value(), "Europe/Paris");
  ASSERT_TRUE(TraitOf(p, "nickname")) << "an empty string stays a value";
  EXPECT_EQ(TraitOf(p, "nickname")->value().string_value(), "");
  // An older value arriving late does not bring the cleared title back; a newer one sets it again.
  Ingest("e0", "2025-06-01T00:00:00Z", "crm", R"({"title": "Intern"})");
  Resolve();
  EXPECT_FALSE(TraitOf(Profile(), "title"));
  Ingest("e3", "2026-03-01T00:00:00Z", "crm", R"({"title": "CEO"})");
  Resolve();
  EXPECT_EQ(Profile().title(), "CEO");
}

TEST_F(TraitsTest, NumbersAndBooleansComeBackWithTheirJsonType) {
  Start();
  Ingest("e1", "2026-01-01T00:00:00Z", "crm", R"({"age": 42, "score": 0.25, "vip": true, "churned": false})");
  Resolve();
  std::string json;
  const v1::Person p = Profile(&json);
  EXPECT_NE(json.find(R"("value":42)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("value":true)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("value":0.25)"), std::string::npos) << json;
  ASSERT_TRUE(TraitOf(p, "age"));
  EXPECT_EQ(TraitOf(p, "age")->value().kind_case(), google::protobuf::Value::kNumberValue);
  EXPECT_EQ(TraitOf(p, "age")->value().number_value(), 42);
  EXPECT_EQ(TraitOf(p, "age")->text_value(), "42");
  EXPECT_EQ(TraitOf(p, "vip")->value().kind_case(), google::protobuf::Value::kBoolValue);
  EXPECT_TRUE(TraitOf(p, "vip")->value().bool_value());
  EXPECT_FALSE(TraitOf(p, "churned")->value().bool_value());
  EXPECT_EQ(QueryScalar(url_, "SELECT value_type FROM person_traits WHERE trait_name = 'age'"), "number");
  // The same over gRPC, sent with the typed map; string traits in the old map still work next to it.
  v1::IngestEventsRequest req;
  auto* e = req.add_events();
  e->set_event_id("g1");
  e->mutable_occurred_at()->set_seconds(1767312000);  // 2026-01-02
  e->set_event_name("n");
  e->set_event_type("t");
  e->set_source("crm");
  auto* m = e->add_persons();
  auto* id = m->add_identifiers();
  id->set_type("email");
  id->set_value("jane@acme.io");
  (*m->mutable_traits())["title"] = "CFO";
  (*m->mutable_trait_values())["age"].set_number_value(43);
  grpc::ClientContext ctx;
  v1::IngestEventsResponse resp;
  ASSERT_TRUE(ingest_->IngestEvents(&ctx, req, &resp).ok());
  Resolve();
  v1::LookupPersonRequest lr;
  lr.set_identifier_type("email");
  lr.set_identifier_value("jane@acme.io");
  grpc::ClientContext qctx;
  v1::Person g;
  ASSERT_TRUE(query_->LookupPerson(&qctx, lr, &g).ok());
  EXPECT_EQ(TraitOf(g, "age")->value().number_value(), 43);
  EXPECT_EQ(TraitOf(g, "title")->value().string_value(), "CFO");
}

TEST_F(TraitsTest, ANestedObjectIsRejectedWithAClearErrorAndNothingIsWritten) {
  Start();
  const HttpResult r = Post("e1", "2026-01-01T00:00:00Z", "crm", R"({"name": "Jane", "address": {"city": "Lyon"}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("events[0].persons[0].traits[address]: a nested object is not a trait value"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(r.body.find("Lyon"), std::string::npos) << "no trait value in errors: " << r.body;
  const HttpResult l = Post("e1", "2026-01-01T00:00:00Z", "crm", R"({"tags": ["a", "b"]})");
  EXPECT_EQ(l.status, 400) << l.body;
  EXPECT_NE(l.body.find("traits[tags]: a list is not a trait value"), std::string::npos) << l.body;
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM person_traits"), "0");
}

TEST_F(TraitsTest, AfterChangingTheRulesARebuildGivesTheDataTheNewRules) {
  Start("[traits]\ndefault = latest\n");
  Ingest("crm-1", "2026-01-01T10:00:00Z", "hubspot", R"({"name": "Jane Doe", "signup_date": "2026-01-01"})");
  Ingest("mail-1", "2026-03-01T10:00:00Z", "gmail", R"({"name": "Jane D.", "signup_date": "2026-03-01"})");
  Resolve();
  EXPECT_EQ(Profile().name(), "Jane D.");
  EXPECT_EQ(TraitOf(Profile(), "signup_date")->text_value(), "2026-03-01");

  WriteRules(kRules);
  const HttpResult reload = HttpPost(app_->http_port(), "/v1/admin/config:reload", "{}");
  ASSERT_EQ(reload.status, 200) << reload.body;
  Resolve();
  EXPECT_EQ(Profile().name(), "Jane D.") << "a reload alone does not re-decide stored winners";

  const HttpResult rb = HttpPost(app_->http_port(), "/v1/admin/resolver:rebuild", R"({"wait": true})");
  ASSERT_EQ(rb.status, 200) << rb.body;
  const v1::Person p = Profile();
  EXPECT_EQ(p.name(), "Jane Doe");
  EXPECT_EQ(TraitOf(p, "name")->source(), "hubspot");
  EXPECT_EQ(TraitOf(p, "signup_date")->text_value(), "2026-01-01");

  // Rows resolved after the reload follow the new rules incrementally too, and agree with a rebuild.
  Ingest("mail-2", "2026-04-01T10:00:00Z", "gmail", R"({"name": "JD", "title": null})");
  Resolve();
  EXPECT_EQ(Profile().name(), "Jane Doe");
  const auto incremental = DumpResolvedTables(url_);
  ASSERT_EQ(HttpPost(app_->http_port(), "/v1/admin/resolver:rebuild", R"({"wait": true})").status, 200);
  const auto rebuilt = DumpResolvedTables(url_);
  for (const auto& [table, rows] : rebuilt) {
    EXPECT_EQ(incremental.at(table), rows) << table << ": " << FirstDifference(incremental.at(table), rows);
  }
}

// Migration 006 upgrades a database in place: rows written before it stay strings with their values, and the new
// constraint ties value_type 'null' to a NULL value.
TEST(TraitsMigration, ExistingDatabaseUpgradesInPlace) {
  const std::string url = CreateTestDatabase();
  MigrateThrough(url, 5);
  {
    pqxx::connection c(url);
    pqxx::work tx(c);
    tx.exec(
        "INSERT INTO events (event_id, occurred_at, event_name, event_type, source) "
        "VALUES ('e1', now(), 'n', 't', 'crm')");
    tx.exec(
        "INSERT INTO person_traits (event_id, edge_id, trait_name, trait_value, source, occurred_at) "
        "VALUES ('e1', 'e1#p0', 'title', 'CFO', 'crm', now())");
    tx.exec(
        "INSERT INTO resolved_person_traits (person_id, trait_name, trait_value, source, occurred_at, _ingested_at, "
        "trait_row_id) VALUES ('per_x', 'title', 'CFO', 'crm', now(), now(), 1)");
    tx.commit();
  }
  storage::Database db({url, 1, std::chrono::milliseconds(5000)}, nullptr);
  const storage::MigrationResult result = storage::Migrate(db);
  ASSERT_FALSE(result.applied.empty());
  EXPECT_EQ(result.applied.front(), "006_typed_trait_values");  // later migrations may follow it
  EXPECT_EQ(QueryScalar(url, "SELECT trait_value || ':' || value_type FROM person_traits"), "CFO:string");
  EXPECT_EQ(QueryScalar(url, "SELECT trait_value || ':' || value_type FROM resolved_person_traits"), "CFO:string");
  pqxx::connection c(url);
  {
    pqxx::work tx(c);
    tx.exec(
        "INSERT INTO person_traits (event_id, edge_id, trait_name, trait_value, value_type, source, occurred_at) "
        "VALUES ('e1', 'e1#p0', 'title', NULL, 'null', 'crm', now())");
    tx.commit();
  }
  pqxx::work tx(c);
  EXPECT_THROW(tx.exec("INSERT INTO person_traits (event_id, edge_id, trait_name, trait_value, source, occurred_at) "
                       "VALUES ('e1', 'e1#p0', 'title', NULL, 'crm', now())"),
               pqxx::check_violation);
}

}  // namespace
}  // namespace nexus::testing
