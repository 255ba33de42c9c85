// Match quality through the real API: phone numbers in any format are one identifier, role accounts and
// free-mail domains do not glue people or groups together, provider rules join one mailbox's addresses, and a
// rebuild applies changed identifier rules to what is already stored.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "resolver/protection.h"
#include "server/app.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"

namespace nexus::testing {
namespace {

using Ids = std::vector<std::pair<std::string, std::string>>;

struct Mention {
  Ids ids;
  std::string role = "contact";
};

v1::Event MakeEvent(
    const std::string& id, const std::vector<Ids>& persons, const std::vector<Ids>& groups = {},
    const std::vector<std::pair<std::pair<std::string, std::string>, std::pair<std::string, std::string>>>&
        memberships = {}) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000);
  e.set_event_name("crm_sync");
  e.set_event_type("crm");
  e.set_source("hubspot");
  auto fill = [](v1::EntityMention* m, const Ids& ids) {
    m->set_role("contact");
    for (const auto& [t, v] : ids) {
      auto* i = m->add_identifiers();
      i->set_type(t);
      i->set_value(v);
    }
  };
  for (const auto& p : persons) fill(e.add_persons(), p);
  for (const auto& g : groups) fill(e.add_groups(), g);
  for (const auto& [person, group] : memberships) {
    auto* ms = e.add_memberships();
    ms->mutable_person()->set_type(person.first);
    ms->mutable_person()->set_value(person.second);
    ms->mutable_group()->set_type(group.first);
    ms->mutable_group()->set_value(group.second);
    ms->set_role("employee");
  }
  return e;
}

class MatchTest : public PgTest {
 protected:
  void Start(const resolver::ProtectionConfig& protection) {
    auto cfg = BaseConfig();
    cfg.resolver_poll_interval = std::chrono::milliseconds(3600 * 1000);  // the test drives it
    StartApp(cfg);
    app_->protection().Set(protection);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel_);
    query_ = v1::QueryService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }
  static resolver::ProtectionConfig Config(const std::string& text, const std::string& region = "US") {
    std::string err;
    auto cfg = resolver::ParseProtectionConfig(text, &err, region);
    EXPECT_TRUE(cfg) << err;
    return cfg ? *cfg : resolver::ProtectionConfig::Defaults();
  }
  v1::IngestEventsResponse Ingest(const std::vector<v1::Event>& events) {
    v1::IngestEventsRequest req;
    for (const auto& e : events) *req.add_events() = e;
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    auto s = ingest_->IngestEvents(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    ResolveAll();
    return resp;
  }
  /// The person an identifier (as a user would type it) resolves to; "" when none.
  std::string Person(const std::string& type, const std::string& value) {
    v1::LookupPersonRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    v1::Person p;
    grpc::ClientContext ctx;
    auto s = query_->LookupPerson(&ctx, req, &p);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return "";
    EXPECT_TRUE(s.ok()) << s.error_message();
    return p.person_id();
  }
  std::string Group(const std::string& type, const std::string& value) {
    v1::LookupGroupRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    v1::Group g;
    grpc::ClientContext ctx;
    auto s = query_->LookupGroup(&ctx, req, &g);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return "";
    EXPECT_TRUE(s.ok()) << s.error_message();
    return g.group_id();
  }
  void Rebuild() {
    v1::RebuildRequest req;
    req.set_wait(true);
    v1::RebuildResponse resp;
    grpc::ClientContext ctx;
    auto s = admin_->Rebuild(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(MatchTest, TwoFormatsOfOnePhoneReachOnePerson) {
  Start(resolver::ProtectionConfig::Defaults());
  Ingest({MakeEvent("p1", {{{"email", "jane@acme.io"}, {"phone", "415-555-0199"}}}),
          MakeEvent("p2", {{{"user_id", "crm-77"}, {"phone", "+1 415 555 0199"}}})});
  const std::string jane = Person("email", "jane@acme.io");
  ASSERT_FALSE(jane.empty());
  EXPECT_EQ(Person("user_id", "crm-77"), jane);
  for (const char* typed : {"(415) 555-0199", "+14155550199", "1 415 555 0199", "415.555.0199"}) {
    EXPECT_EQ(Person("phone", typed), jane) << typed;
  }
  // Stored in E.164, the raw value kept as sent.
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT string_agg(DISTINCT identifier_value, ',') FROM person_identifiers "
                        "WHERE identifier_type = 'phone'"),
            "+14155550199");
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT identifier_value_raw FROM person_identifiers WHERE event_id = 'p1' AND "
                        "identifier_type = 'phone'"),
            "415-555-0199");
}

TEST_F(MatchTest, InvalidAndPlaceholderPhonesAreStoredButLinkNobody) {
  Start(resolver::ProtectionConfig::Defaults());
  const auto resp = Ingest({MakeEvent("x1", {{{"email", "a@acme.io"}, {"phone", "123-456-7890"}}}),
                            MakeEvent("x2", {{{"email", "b@acme.io"}, {"phone", "(123) 456-7890"}}}),
                            MakeEvent("x3", {{{"email", "c@acme.io"}, {"phone", "555-0100"}}}),
                            MakeEvent("x4", {{{"email", "d@acme.io"}, {"phone", "555-0100"}}})});
  EXPECT_EQ(resp.blocked_identifiers(), 4);
  ASSERT_EQ(resp.blocked_size(), 4);
  EXPECT_EQ(resp.blocked(0), "events[0].persons[0].identifiers[1] (phone): placeholder phone number");
  EXPECT_EQ(resp.blocked(2).rfind("events[2].persons[0].identifiers[1] (phone): not a valid phone number", 0), 0u)
      << resp.blocked(2);
  for (const auto& line : resp.blocked()) EXPECT_EQ(line.find("555"), std::string::npos) << "value echoed: " << line;
  EXPECT_NE(Person("email", "a@acme.io"), Person("email", "b@acme.io"));
  EXPECT_NE(Person("email", "c@acme.io"), Person("email", "d@acme.io"));
  EXPECT_EQ(Person("phone", "123-456-7890"), "");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM person_identifiers WHERE identifier_type = 'phone' AND is_blocked"),
            "4");
}

TEST_F(MatchTest, ColleaguesSharingARoleAddressStayApartByDefault) {
  Start(resolver::ProtectionConfig::Unlimited());  // no caps: only the role-account rule can keep them apart
  const auto resp = Ingest({MakeEvent("c1", {{{"user_id", "crm-1"}, {"email", "support@acme.io"}}}),
                            MakeEvent("c2", {{{"user_id", "crm-2"}, {"email", "Support@ACME.io"}}})});
  EXPECT_NE(Person("user_id", "crm-1"), Person("user_id", "crm-2"));
  EXPECT_EQ(Person("email", "support@acme.io"), "");
  ASSERT_EQ(resp.blocked_size(), 2);
  EXPECT_EQ(resp.blocked(1), "events[1].persons[0].identifiers[1] (email): role account 'support@'");
  EXPECT_EQ(QueryScalar(url_, "SELECT blocked_reason FROM person_identifiers WHERE event_id = 'c1' AND is_blocked"),
            "role account 'support@'");
}

TEST_F(MatchTest, RoleAccountRuleCanBeTurnedOffOrExtended) {
  Start(Config("[person_caps]\nuser_id = 0\n[email]\nrole_accounts = off\n"));  // one user_id per person: off
  Ingest({MakeEvent("c1", {{{"user_id", "crm-1"}, {"email", "support@acme.io"}}}),
          MakeEvent("c2", {{{"user_id", "crm-2"}, {"email", "support@acme.io"}}})});
  EXPECT_EQ(Person("user_id", "crm-1"), Person("user_id", "crm-2"));  // the operator asked for it
  app_->protection().Set(Config("[email]\nrole_account = frontdesk\n"));
  Ingest({MakeEvent("c3", {{{"user_id", "crm-3"}, {"email", "frontdesk@acme.io"}}}),
          MakeEvent("c4", {{{"user_id", "crm-4"}, {"email", "frontdesk@acme.io"}}})});
  EXPECT_NE(Person("user_id", "crm-3"), Person("user_id", "crm-4"));
}

TEST_F(MatchTest, OneGmailMailboxIsOnePersonWhateverTheSpelling) {
  Start(resolver::ProtectionConfig::Defaults());
  Ingest({MakeEvent("g1", {{{"email", "Jane.Doe+newsletter@gmail.com"}, {"user_id", "u-1"}}}),
          MakeEvent("g2", {{{"email", "janedoe@googlemail.com"}, {"anonymous_id", "anon-9"}}}),
          MakeEvent("g3", {{{"email", "jane.doe+crm@acme.io"}, {"anonymous_id", "anon-10"}}})});
  const std::string jane = Person("user_id", "u-1");
  ASSERT_FALSE(jane.empty());
  EXPECT_EQ(Person("anonymous_id", "anon-9"), jane);
  EXPECT_EQ(Person("email", "J.A.N.E.D.O.E@gmail.com"), jane);
  // Unknown providers keep their +tags: a company's own routing rules are not ours to guess.
  EXPECT_NE(Person("anonymous_id", "anon-10"), jane);
  EXPECT_EQ(Person("email", "jane.doe@acme.io"), "");
}

TEST_F(MatchTest, FreeMailDomainsFormNoGroupAndImplyNoMembership) {
  Start(resolver::ProtectionConfig::Defaults());
  Ingest({MakeEvent("f1", {{{"email", "bob@gmail.com"}}}, {{{"domain", "gmail.com"}}},
                    {{{"email", "bob@gmail.com"}, {"domain", "gmail.com"}}}),
          MakeEvent("f2", {{{"email", "amy@gmail.com"}}}, {{{"domain", "https://www.Gmail.com"}}},
                    {{{"email", "amy@gmail.com"}, {"domain", "gmail.com"}}}),
          MakeEvent("f3", {{{"email", "amy@acme.io"}}}, {{{"domain", "acme.io"}}},
                    {{{"email", "amy@acme.io"}, {"domain", "acme.io"}}})});
  EXPECT_EQ(Group("domain", "gmail.com"), "");
  EXPECT_FALSE(Group("domain", "acme.io").empty());
  EXPECT_FALSE(Person("email", "bob@gmail.com").empty());  // the person is fine; only the group is refused
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM memberships"), "1");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM groups"), "1");
  EXPECT_EQ(QueryScalar(url_, "SELECT min(blocked_reason) FROM group_identifiers WHERE identifier_value = 'gmail.com'"),
            "free-mail domain 'gmail.com'");
}

TEST_F(MatchTest, RebuildAppliesChangedIdentifierRulesToStoredRows) {
  Start(resolver::ProtectionConfig::Unlimited());
  Ingest({MakeEvent("r1", {{{"user_id", "crm-1"}, {"email", "support@acme.io"}}}),
          MakeEvent("r2", {{{"user_id", "crm-2"}, {"email", "support@acme.io"}}}),
          // A London number written the British way, read in the default region US: invalid, not linked.
          MakeEvent("r3", {{{"user_id", "uk-1"}, {"phone", "020 7946 0958"}}}),
          MakeEvent("r4", {{{"user_id", "uk-2"}, {"phone", "+44 20 7946 0958"}}})});
  ASSERT_NE(Person("user_id", "crm-1"), Person("user_id", "crm-2"));
  ASSERT_NE(Person("user_id", "uk-1"), Person("user_id", "uk-2"));

  // New rules: role accounts link again, and numbers without a country code are British.
  app_->protection().Set(
      Config("[person_caps]\ndefault = 0\nuser_id = 0\nmax_entity_size = 0\n"
             "[email]\nrole_accounts = off\n",
             "GB"));
  Rebuild();
  EXPECT_EQ(Person("user_id", "crm-1"), Person("user_id", "crm-2"));
  EXPECT_EQ(Person("user_id", "uk-1"), Person("user_id", "uk-2"));
  EXPECT_EQ(Person("phone", "+44 20 7946 0958"), Person("user_id", "uk-1"));
  // The core log carries the new verdicts (the raw value is untouched).
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM person_identifiers WHERE is_blocked"), "0");
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT identifier_value || ' ' || identifier_value_raw FROM person_identifiers "
                        "WHERE event_id = 'r3' AND identifier_type = 'phone'"),
            "+442079460958 020 7946 0958");

  // And back: the old rules, another rebuild, the old partition.
  app_->protection().Set(resolver::ProtectionConfig::Unlimited());
  Rebuild();
  EXPECT_NE(Person("user_id", "crm-1"), Person("user_id", "crm-2"));
  EXPECT_NE(Person("user_id", "uk-1"), Person("user_id", "uk-2"));
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM person_identifiers WHERE is_blocked"), "3");
}

}  // namespace
}  // namespace nexus::testing
