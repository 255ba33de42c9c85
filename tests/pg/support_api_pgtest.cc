// Support API (issue 16) end to end: search, profiles, GetEvent, group timeline with members, participants on
// timeline entries, identifier last seen, CORS and the /ui files. Events go in through gRPC, the resolver runs
// synchronously, answers are read through gRPC and the HTTP/JSON mirrors against a real PostgreSQL.

#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "server/resolver_worker.h"

namespace nexus::testing {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kT0 = 1714521600LL * 1000000;  // 2024-05-01T00:00:00Z
constexpr int64_t kMinute = 60LL * 1000000;

using Ids = std::vector<std::pair<std::string, std::string>>;

struct Mention {
  Ids ids;
  std::string role = "sender";
  std::map<std::string, std::string> traits{};
};

struct EventSpec {
  std::string id;
  int64_t at_us = kT0;
  std::string type = "email";
  std::string source = "gmail";
  std::vector<Mention> persons{};
  std::vector<Mention> groups{};
  std::vector<std::tuple<std::pair<std::string, std::string>, std::pair<std::string, std::string>, std::string>>
      memberships{};
};

template <typename Msg>
Msg ParseBody(const HttpResult& r) {
  Msg m;
  auto st = google::protobuf::util::JsonStringToMessage(r.body, &m);
  EXPECT_TRUE(st.ok()) << r.body;
  return m;
}

class SupportApiTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    server::Config c = BaseConfig();
    c.cors_origins = {"https://support.example.com"};
    StartApp(c);
    auto channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel);
    query_ = v1::QueryService::NewStub(channel);
  }

  void Ingest(const std::vector<EventSpec>& events) {
    v1::IngestEventsRequest req;
    for (const auto& e : events) {
      auto* ev = req.add_events();
      ev->set_event_id(e.id);
      *ev->mutable_occurred_at() = TimeUtil::MicrosecondsToTimestamp(e.at_us);
      ev->set_event_name(e.type + " " + e.id);
      ev->set_event_type(e.type);
      ev->set_source(e.source);
      auto fill = [](const Mention& m, v1::EntityMention* out) {
        out->set_role(m.role);
        for (const auto& [t, v] : m.ids) {
          auto* id = out->add_identifiers();
          id->set_type(t);
          id->set_value(v);
        }
        for (const auto& [k, v] : m.traits) (*out->mutable_traits())[k] = v;
      };
      for (const auto& p : e.persons) fill(p, ev->add_persons());
      for (const auto& g : e.groups) fill(g, ev->add_groups());
      for (const auto& [p, g, role] : e.memberships) {
        auto* m = ev->add_memberships();
        m->mutable_person()->set_type(p.first);
        m->mutable_person()->set_value(p.second);
        m->mutable_group()->set_type(g.first);
        m->mutable_group()->set_value(g.second);
        m->set_role(role);
      }
    }
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    const grpc::Status s = ingest_->IngestEvents(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.accepted(), static_cast<int64_t>(events.size()));
  }

  void Resolve() { ResolveAll(); }

  std::string PersonId(const std::string& type, const std::string& value) {
    v1::LookupPersonRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    grpc::ClientContext ctx;
    v1::Person out;
    const auto s = query_->LookupPerson(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.person_id();
  }

  std::string GroupId(const std::string& type, const std::string& value) {
    v1::LookupGroupRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    grpc::ClientContext ctx;
    v1::Group out;
    const auto s = query_->LookupGroup(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out.group_id();
  }

  grpc::Status Search(bool persons, const std::string& q, v1::SearchResponse* out, int page_size = 0,
                      const std::string& token = "") {
    v1::SearchRequest req;
    req.set_query(q);
    req.set_page_size(page_size);
    req.set_page_token(token);
    grpc::ClientContext ctx;
    return persons ? query_->SearchPersons(&ctx, req, out) : query_->SearchGroups(&ctx, req, out);
  }

  /// Entity ids of a search through gRPC, first page only.
  std::vector<std::string> SearchIds(const std::string& q, bool persons = true) {
    v1::SearchResponse r;
    const auto s = Search(persons, q, &r);
    EXPECT_TRUE(s.ok()) << q << ": " << s.error_message();
    std::vector<std::string> ids;
    for (const auto& h : r.hits()) ids.push_back(h.entity_id());
    return ids;
  }

  /// Every page of a group timeline (with members) through gRPC.
  std::vector<std::string> GroupTimeline(const std::string& id, int page_size, bool members,
                                         const v1::TimelineFilter& f = {}) {
    std::vector<std::string> out;
    std::string token;
    for (int page = 0; page < 100; ++page) {
      v1::ListGroupTimelineRequest req;
      req.set_group_id(id);
      req.set_page_size(page_size);
      req.set_page_token(token);
      req.set_include_members(members);
      *req.mutable_filter() = f;
      grpc::ClientContext ctx;
      v1::TimelineResponse resp;
      const auto s = query_->ListGroupTimeline(&ctx, req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      EXPECT_LE(resp.events_size(), page_size);
      for (const auto& e : resp.events()) out.push_back(e.event_id());
      token = resp.next_page_token();
      if (token.empty()) break;
    }
    return out;
  }

  int http_port() const { return app_->http_port(); }

  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
};

// ---------------------------------------------------------------------------------------------------------------
// Search

TEST_F(SupportApiTest, SearchRanksExactAbovePrefixAboveFragment) {
  Ingest({EventSpec{.id = "e1", .persons = {{{{"user_id", "ann"}}}}},
          EventSpec{.id = "e2", .persons = {{{{"email", "anna@b.io"}}}}},
          EventSpec{.id = "e3", .persons = {{{{"email", "joanne@c.io"}}}}},
          EventSpec{.id = "e4", .persons = {{{{"email", "zed@d.io"}}}}}});
  Resolve();
  const std::string exact = PersonId("user_id", "ann");
  const std::string prefix = PersonId("email", "anna@b.io");
  const std::string fragment = PersonId("email", "joanne@c.io");

  v1::SearchResponse r;
  ASSERT_TRUE(Search(true, "  ANN ", &r).ok());
  ASSERT_EQ(r.hits_size(), 3) << r.DebugString();
  EXPECT_EQ(r.hits(0).entity_id(), exact);
  EXPECT_EQ(r.hits(1).entity_id(), prefix);
  EXPECT_EQ(r.hits(2).entity_id(), fragment);
  EXPECT_GE(r.hits(0).score(), 4.0);
  EXPECT_GE(r.hits(1).score(), 2.0);
  EXPECT_LT(r.hits(1).score(), 4.0);
  EXPECT_LT(r.hits(2).score(), 2.0);
  EXPECT_EQ(r.hits(0).kind(), v1::ENTITY_KIND_PERSON);
  ASSERT_EQ(r.hits(1).matched_size(), 1);
  EXPECT_EQ(r.hits(1).matched(0).type(), "email");
  EXPECT_EQ(r.hits(1).matched(0).value(), "anna@b.io");
  EXPECT_EQ(r.hits(1).display_name(), "anna@b.io");  // no name: the email
  EXPECT_EQ(r.hits(1).email(), "anna@b.io");

  // The HTTP mirror answers the same, in the same order.
  const auto h = HttpGet(http_port(), "/v1/persons:search?query=ann");
  ASSERT_EQ(h.status, 200) << h.body;
  const auto hr = ParseBody<v1::SearchResponse>(h);
  ASSERT_EQ(hr.hits_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(hr.hits(i).entity_id(), r.hits(i).entity_id());
}

TEST_F(SupportApiTest, SearchByNameTraitAndByFragmentOfAnEmail) {
  Ingest({EventSpec{.id = "e1",
                    .persons = {{{{"email", "jane.doe@acme.io"}}, "sender", {{"name", "Jane Doe"}}},
                                {{{"email", "janet@globex.com"}}, "recipient", {{"name", "Janet Jackson"}}}}}});
  Resolve();
  const std::string jane = PersonId("email", "jane.doe@acme.io");
  const std::string janet = PersonId("email", "janet@globex.com");

  // "jane@acme.io" is not stored; the fragment "doe" still finds Jane by email and name.
  auto ids = SearchIds("doe");
  ASSERT_EQ(ids, std::vector<std::string>{jane});
  v1::SearchResponse r;
  ASSERT_TRUE(Search(true, "jackson", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_EQ(r.hits(0).entity_id(), janet);
  EXPECT_EQ(r.hits(0).display_name(), "Janet Jackson");
  ASSERT_GE(r.hits(0).matched_size(), 1);
  EXPECT_EQ(r.hits(0).matched(0).type(), "trait:name");
  EXPECT_EQ(r.hits(0).matched(0).value(), "Janet Jackson");

  // Both are prefixes of "jane"; an exact name beats both prefixes.
  ids = SearchIds("jane");
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), (std::set<std::string>{jane, janet}));
  ids = SearchIds("Jane Doe");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), jane);
  EXPECT_TRUE(SearchIds("nobody-here").empty());
}

TEST_F(SupportApiTest, SearchNormalizesEmailAndPhoneQueriesLikeLookups) {
  Ingest({EventSpec{.id = "e1", .persons = {{{{"phone", "+1 (415) 555-0101"}}}}},
          EventSpec{.id = "e2", .persons = {{{{"email", "Jane.Doe+news@gmail.com"}}}}}});
  Resolve();
  const std::string phone = PersonId("phone", "+14155550101");
  const std::string gmail = PersonId("email", "janedoe@gmail.com");

  v1::SearchResponse r;
  ASSERT_TRUE(Search(true, "(415) 555-0101", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_EQ(r.hits(0).entity_id(), phone);
  EXPECT_GE(r.hits(0).score(), 4.0);  // exact, after normalization to E.164
  // A raw fragment of the number, written with a separator.
  EXPECT_EQ(SearchIds("555-01"), std::vector<std::string>{phone});
  // Gmail: dots and +tags are one mailbox, as for lookups.
  r.Clear();
  ASSERT_TRUE(Search(true, "J.A.N.E.DOE+other@GMAIL.com", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_EQ(r.hits(0).entity_id(), gmail);
  EXPECT_GE(r.hits(0).score(), 4.0);
  // Matched exactly after normalization and as a fragment: listed once.
  r.Clear();
  ASSERT_TRUE(Search(true, "janedoe@gmail.com", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_EQ(r.hits(0).matched_size(), 1) << r.DebugString();
}

TEST_F(SupportApiTest, TwoCharacterQueriesMatchPrefixesOnly) {
  Ingest({EventSpec{.id = "e1", .persons = {{{{"user_id", "abxy"}}}}},
          EventSpec{.id = "e2", .persons = {{{{"user_id", "xyab"}}}}},
          EventSpec{.id = "e3", .persons = {{{{"user_id", "xyabc"}}}}}});
  Resolve();
  EXPECT_EQ(SearchIds("ab"), std::vector<std::string>{PersonId("user_id", "abxy")});
  // From three characters on, fragments anywhere.
  EXPECT_EQ(SearchIds("abc"), std::vector<std::string>{PersonId("user_id", "xyabc")});
  const auto ids = SearchIds("yab");
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()),
            (std::set<std::string>{PersonId("user_id", "xyab"), PersonId("user_id", "xyabc")}));
}

TEST_F(SupportApiTest, SearchTreatsLikeWildcardsLiterally) {
  Ingest({EventSpec{.id = "e1", .persons = {{{{"user_id", "a_b"}}}}},
          EventSpec{.id = "e2", .persons = {{{{"user_id", "axb"}}}}},
          EventSpec{.id = "e3", .persons = {{{{"user_id", "100%"}}}}}});
  Resolve();
  EXPECT_EQ(SearchIds("a_b"), std::vector<std::string>{PersonId("user_id", "a_b")});
  EXPECT_EQ(SearchIds("00%"), std::vector<std::string>{PersonId("user_id", "100%")});
  EXPECT_TRUE(SearchIds("%%").empty());
}

TEST_F(SupportApiTest, SearchPagesAreKeysetAndCoverEveryHitOnce) {
  std::vector<EventSpec> events;
  for (int i = 0; i < 23; ++i) {
    const std::string n = (i < 10 ? "0" : "") + std::to_string(i);
    // Different similarity per hit (longer values score lower) and ties (same length).
    events.push_back(EventSpec{.id = "e" + n, .persons = {{{{"user_id", "cust-" + n + std::string(i % 4, 'x')}}}}});
  }
  Ingest(events);
  Resolve();
  v1::SearchResponse all;
  ASSERT_TRUE(Search(true, "cust", &all, 100).ok());
  ASSERT_EQ(all.hits_size(), 23);
  EXPECT_TRUE(all.next_page_token().empty());
  for (int i = 1; i < all.hits_size(); ++i) {
    const auto& a = all.hits(i - 1);
    const auto& b = all.hits(i);
    EXPECT_TRUE(a.score() > b.score() || (a.score() == b.score() && a.entity_id() < b.entity_id())) << i;
  }
  // gRPC pages of 5 and HTTP pages of 7 both give the same sequence.
  for (const bool http : {false, true}) {
    std::vector<std::string> paged;
    std::string token;
    for (int page = 0; page < 20; ++page) {
      v1::SearchResponse r;
      if (http) {
        const auto h = HttpGet(http_port(), "/v1/persons:search?query=cust&page_size=7&page_token=" + UrlEncode(token));
        ASSERT_EQ(h.status, 200) << h.body;
        r = ParseBody<v1::SearchResponse>(h);
      } else {
        ASSERT_TRUE(Search(true, "cust", &r, 5, token).ok());
      }
      for (const auto& hit : r.hits()) paged.push_back(hit.entity_id());
      token = r.next_page_token();
      if (token.empty()) break;
    }
    std::vector<std::string> want;
    for (const auto& hit : all.hits()) want.push_back(hit.entity_id());
    EXPECT_EQ(paged, want) << (http ? "http" : "grpc");
  }
}

TEST_F(SupportApiTest, SearchRejectsShortQueriesAndBadPagesNamingTheField) {
  v1::SearchResponse r;
  for (const std::string q : {"", " ", " a ", "\xc3\xa9"}) {
    const auto s = Search(true, q, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << q;
    EXPECT_EQ(s.error_message().rfind("query:", 0), 0u) << s.error_message();
  }
  EXPECT_TRUE(Search(true, "\xc3\xa9\xc3\xa9", &r).ok());  // two characters, four bytes
  EXPECT_EQ(Search(true, std::string(257, 'a'), &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto s = Search(false, "acme", &r, 101);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_size"), std::string::npos);
  s = Search(false, "acme", &r, 0, "not-a-token");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_token"), std::string::npos);
  auto h = HttpGet(http_port(), "/v1/groups:search?query=a");
  EXPECT_EQ(h.status, 400);
  EXPECT_NE(h.body.find("query: at least 2 characters"), std::string::npos) << h.body;
  h = HttpGet(http_port(), "/v1/persons:search");
  EXPECT_EQ(h.status, 400);
  EXPECT_NE(h.body.find("query: missing"), std::string::npos) << h.body;
}

TEST_F(SupportApiTest, SearchGroupsByDomainAndCompanyName) {
  Ingest({EventSpec{.id = "e1",
                    .groups = {{{{"domain", "https://www.acme.io"}}, "account", {{"company_name", "Acme Corp"}}},
                               {{{"domain", "globex.com"}}, "account", {{"company_name", "Globex"}}}}}});
  Resolve();
  const std::string acme = GroupId("domain", "acme.io");
  v1::SearchResponse r;
  ASSERT_TRUE(Search(false, "acme", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_EQ(r.hits(0).entity_id(), acme);
  EXPECT_EQ(r.hits(0).kind(), v1::ENTITY_KIND_GROUP);
  EXPECT_EQ(r.hits(0).display_name(), "Acme Corp");
  EXPECT_EQ(r.hits(0).email(), "acme.io");
  // A URL-looking query is normalized as a domain and matched exactly.
  r.Clear();
  ASSERT_TRUE(Search(false, "https://WWW.acme.io/pricing", &r).ok());
  ASSERT_EQ(r.hits_size(), 1);
  EXPECT_GE(r.hits(0).score(), 4.0);
  const auto h = HttpGet(http_port(), "/v1/groups:search?query=corp");
  ASSERT_EQ(h.status, 200) << h.body;
  const auto hr = ParseBody<v1::SearchResponse>(h);
  ASSERT_EQ(hr.hits_size(), 1);
  EXPECT_EQ(hr.hits(0).entity_id(), acme);
}

// ---------------------------------------------------------------------------------------------------------------
// Profiles, events, timelines

/// Jane (Acme, finance) emails Bob; Bob and Carol (both Acme) meet; Acme itself is named in one deal.
class SupportDataTest : public SupportApiTest {
 protected:
  void SetUp() override {
    SupportApiTest::SetUp();
    if (HasFatalFailure()) return;
    const auto acme = std::make_pair(std::string("domain"), std::string("acme.io"));
    Ingest(
        {EventSpec{.id = "mail-1",
                   .at_us = kT0,
                   .persons = {{{{"email", "jane.doe@acme.io"}, {"user_id", "u-77"}}, "sender", {{"name", "Jane Doe"}}},
                               {{{"email", "bob@acme.io"}}, "recipient", {{"name", "Bob"}}}},
                   .groups = {{{{"domain", "acme.io"}}, "account", {{"company_name", "Acme"}}}},
                   .memberships = {{{"email", "jane.doe@acme.io"}, acme, "finance"},
                                   {{"email", "bob@acme.io"}, acme, "engineer"}}},
         EventSpec{.id = "meet-2",
                   .at_us = kT0 + 2 * kMinute,
                   .type = "meeting",
                   .source = "calendar",
                   .persons = {{{{"email", "bob@acme.io"}}, "organizer"},
                               {{{"email", "carol@acme.io"}}, "attendee", {{"name", "Carol"}}}},
                   .memberships = {{{"email", "carol@acme.io"}, acme, "sales"}}},
         EventSpec{.id = "deal-3",
                   .at_us = kT0 + 3 * kMinute,
                   .type = "sales",
                   .source = "hubspot",
                   .groups = {{{{"domain", "acme.io"}}, "customer"}}},
         EventSpec{.id = "mail-4",
                   .at_us = kT0 + 4 * kMinute,
                   .persons = {{{{"email", "jane.doe@acme.io"}}, "sender"},
                               {{{"email", "outsider@else.com"}}, "recipient"}}}});
    Resolve();
    jane_ = PersonId("email", "jane.doe@acme.io");
    bob_ = PersonId("email", "bob@acme.io");
    carol_ = PersonId("email", "carol@acme.io");
    acme_ = GroupId("domain", "acme.io");
  }
  std::string jane_, bob_, carol_, acme_;
};

TEST_F(SupportDataTest, PersonProfileHasMembershipsEventCountAndIdentifierLastSeen) {
  v1::GetPersonRequest req;
  req.set_person_id(jane_);
  grpc::ClientContext ctx;
  v1::PersonProfile p;
  ASSERT_TRUE(query_->GetPersonProfile(&ctx, req, &p).ok());
  EXPECT_EQ(p.person().person_id(), jane_);
  EXPECT_EQ(p.person().name(), "Jane Doe");
  EXPECT_EQ(p.event_count(), 2);
  ASSERT_EQ(p.memberships_size(), 1);
  EXPECT_EQ(p.memberships(0).group_id(), acme_);
  EXPECT_EQ(p.memberships(0).group_name(), "Acme");
  EXPECT_EQ(p.memberships(0).role(), "finance");
  EXPECT_FALSE(p.memberships_truncated());
  bool email_seen = false;
  for (const auto& id : p.person().identifiers()) {
    EXPECT_FALSE(id.source().empty());
    if (id.type() == "email") {
      email_seen = true;
      EXPECT_EQ(TimeUtil::TimestampToMicroseconds(id.occurred_at()), kT0);
      EXPECT_EQ(TimeUtil::TimestampToMicroseconds(id.last_seen_at()), kT0 + 4 * kMinute);
    } else {
      EXPECT_EQ(TimeUtil::TimestampToMicroseconds(id.last_seen_at()), kT0);
    }
  }
  EXPECT_TRUE(email_seen);
  ASSERT_EQ(p.person().traits_size(), 1);
  EXPECT_EQ(p.person().traits(0).source(), "gmail");

  const auto h = HttpGet(http_port(), "/v1/persons/" + jane_ + "/profile");
  ASSERT_EQ(h.status, 200) << h.body;
  const auto hp = ParseBody<v1::PersonProfile>(h);
  EXPECT_EQ(hp.person().person_id(), jane_);
  EXPECT_EQ(hp.memberships_size(), 1);
  EXPECT_EQ(hp.event_count(), 2);
  EXPECT_NE(h.body.find("\"last_seen_at\""), std::string::npos);
  EXPECT_EQ(HttpGet(http_port(), "/v1/persons/per_nope/profile").status, 404);
}

TEST_F(SupportDataTest, GroupProfileListsMembersWithRolesNewestFirst) {
  v1::GetGroupRequest req;
  req.set_group_id(acme_);
  grpc::ClientContext ctx;
  v1::GroupProfile g;
  ASSERT_TRUE(query_->GetGroupProfile(&ctx, req, &g).ok());
  EXPECT_EQ(g.group().company_name(), "Acme");
  ASSERT_EQ(g.members_size(), 3);
  EXPECT_EQ(g.members(0).person_id(), carol_);  // established last
  EXPECT_EQ(g.members(0).role(), "sales");
  std::map<std::string, std::string> roles;
  for (const auto& m : g.members()) roles[m.person_id()] = m.role();
  EXPECT_EQ(roles, (std::map<std::string, std::string>{{jane_, "finance"}, {bob_, "engineer"}, {carol_, "sales"}}));
  EXPECT_EQ(g.event_count(), 2);  // mail-1 and deal-3 name the company
  const auto h = HttpGet(http_port(), "/v1/groups/" + acme_ + "/profile");
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(ParseBody<v1::GroupProfile>(h).members_size(), 3);
}

TEST_F(SupportDataTest, GetEventListsEveryParticipantWithRolesAndIdentifiers) {
  v1::GetEventRequest req;
  req.set_event_id("mail-1");
  grpc::ClientContext ctx;
  v1::EventView e;
  ASSERT_TRUE(query_->GetEvent(&ctx, req, &e).ok());
  EXPECT_EQ(e.event_type(), "email");
  EXPECT_EQ(e.source(), "gmail");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(e.occurred_at()), kT0);
  std::map<std::string, std::tuple<v1::EntityKind, std::string, std::string, int>> got;  // id -> kind, role, name, ids
  for (const auto& p : e.participants()) {
    got[p.entity_id()] = {p.kind(), p.role(), p.display_name(), p.identifiers_size()};
  }
  ASSERT_EQ(got.size(), 3u) << e.DebugString();
  EXPECT_EQ(got[jane_], std::make_tuple(v1::ENTITY_KIND_PERSON, std::string("sender"), std::string("Jane Doe"), 2));
  EXPECT_EQ(got[bob_], std::make_tuple(v1::ENTITY_KIND_PERSON, std::string("recipient"), std::string("Bob"), 1));
  EXPECT_EQ(got[acme_], std::make_tuple(v1::ENTITY_KIND_GROUP, std::string("account"), std::string("Acme"), 1));

  const auto h = HttpGet(http_port(), "/v1/events/meet-2");
  ASSERT_EQ(h.status, 200) << h.body;
  const auto he = ParseBody<v1::EventView>(h);
  EXPECT_EQ(he.event_id(), "meet-2");
  EXPECT_EQ(he.participants_size(), 2);
  const auto missing = HttpGet(http_port(), "/v1/events/no-such-event");
  EXPECT_EQ(missing.status, 404);
  EXPECT_NE(missing.body.find("not found"), std::string::npos);
  grpc::ClientContext ctx2;
  req.set_event_id("");
  EXPECT_EQ(query_->GetEvent(&ctx2, req, &e).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SupportDataTest, GroupTimelineWithMembersHasEachEventOnceNewestFirst) {
  EXPECT_EQ(GroupTimeline(acme_, 50, false), (std::vector<std::string>{"deal-3", "mail-1"}));
  const std::vector<std::string> want = {"mail-4", "deal-3", "meet-2", "mail-1"};
  EXPECT_EQ(GroupTimeline(acme_, 50, true), want);
  for (int size : {1, 2, 3}) EXPECT_EQ(GroupTimeline(acme_, size, true), want) << size;
  v1::TimelineFilter f;
  f.set_event_type("email");
  EXPECT_EQ(GroupTimeline(acme_, 1, true, f), (std::vector<std::string>{"mail-4", "mail-1"}));

  // Roles are the company's own; the HTTP mirror takes include_members and include_participants.
  const auto h = HttpGet(http_port(),
                         "/v1/groups/" + acme_ + "/timeline?include_members=true&include_participants=1&page_size=10");
  ASSERT_EQ(h.status, 200) << h.body;
  const auto t = ParseBody<v1::TimelineResponse>(h);
  ASSERT_EQ(t.events_size(), 4);
  EXPECT_EQ(t.events(1).event_id(), "deal-3");
  EXPECT_EQ(std::vector<std::string>(t.events(1).roles().begin(), t.events(1).roles().end()),
            std::vector<std::string>{"customer"});
  EXPECT_EQ(t.events(2).roles_size(), 0);  // meet-2: only members took part
  std::set<std::string> meet;
  for (const auto& p : t.events(2).participants()) meet.insert(p.entity_id());
  EXPECT_EQ(meet, (std::set<std::string>{bob_, carol_}));
  EXPECT_EQ(HttpGet(http_port(), "/v1/groups/" + acme_ + "/timeline?include_members=maybe").status, 400);
}

TEST_F(SupportDataTest, PersonTimelineParticipantsAreTheOthers) {
  v1::ListPersonTimelineRequest req;
  req.set_person_id(jane_);
  req.set_include_participants(true);
  grpc::ClientContext ctx;
  v1::TimelineResponse t;
  ASSERT_TRUE(query_->ListPersonTimeline(&ctx, req, &t).ok());
  ASSERT_EQ(t.events_size(), 2);
  EXPECT_EQ(t.events(0).event_id(), "mail-4");
  ASSERT_EQ(t.events(0).participants_size(), 1);
  EXPECT_EQ(t.events(0).participants(0).role(), "recipient");
  EXPECT_EQ(t.events(0).participants(0).display_name(), "outsider@else.com");
  std::set<std::string> others;
  for (const auto& p : t.events(1).participants()) others.insert(p.entity_id());
  EXPECT_EQ(others, (std::set<std::string>{bob_, acme_}));
  // Without the flag, nothing extra.
  grpc::ClientContext ctx2;
  req.set_include_participants(false);
  ASSERT_TRUE(query_->ListPersonTimeline(&ctx2, req, &t).ok());
  for (const auto& e : t.events()) EXPECT_EQ(e.participants_size(), 0);
}

TEST_F(SupportApiTest, MergedAwayIdsRedirectInProfilesAndGroupTimelines) {
  Ingest({EventSpec{.id = "e1", .persons = {{{{"email", "a@x.com"}, {"user_id", "u1"}}}}},
          EventSpec{.id = "e2", .at_us = kT0 + kMinute, .persons = {{{{"email", "b@x.com"}}}}}});
  Resolve();
  const std::string pa = PersonId("email", "a@x.com");
  const std::string pb = PersonId("email", "b@x.com");
  ASSERT_NE(pa, pb);
  Ingest(
      {EventSpec{.id = "e3", .at_us = kT0 + 2 * kMinute, .persons = {{{{"email", "a@x.com"}, {"email", "b@x.com"}}}}}});
  Resolve();
  v1::GetPersonRequest req;
  req.set_person_id(pb);
  grpc::ClientContext ctx;
  v1::PersonProfile p;
  ASSERT_TRUE(query_->GetPersonProfile(&ctx, req, &p).ok());
  EXPECT_EQ(p.person().person_id(), pa);
  EXPECT_TRUE(p.person().redirected());
  EXPECT_EQ(p.person().requested_id(), pb);
  EXPECT_EQ(p.event_count(), 3);
  // The absorbed id's old email is still searchable and finds the survivor.
  EXPECT_EQ(SearchIds("b@x.com"), std::vector<std::string>{pa});
}

// ---------------------------------------------------------------------------------------------------------------
// CORS and the /ui files

TEST_F(SupportApiTest, CorsEchoesOnlyConfiguredOrigins) {
  const int port = http_port();
  auto r = HttpCall(port, "OPTIONS", "/v1/persons:search?query=ab", "",
                    "Origin: https://support.example.com\r\nAccess-Control-Request-Method: GET\r\n"
                    "Access-Control-Request-Headers: authorization\r\n");
  EXPECT_EQ(r.status, 204);
  EXPECT_NE(r.headers.find("access-control-allow-origin: https://support.example.com"), std::string::npos) << r.headers;
  EXPECT_NE(r.headers.find("access-control-allow-headers: authorization, content-type"), std::string::npos);
  r = HttpCall(port, "OPTIONS", "/v1/persons:search?query=ab", "",
               "Origin: https://evil.example.com\r\nAccess-Control-Request-Method: GET\r\n");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.headers.find("access-control-allow-origin"), std::string::npos) << r.headers;
  r = HttpCall(port, "GET", "/v1/persons:search?query=ab", "", "Origin: https://support.example.com\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers.find("access-control-allow-origin: https://support.example.com"), std::string::npos);
  r = HttpCall(port, "GET", "/v1/persons:search?query=ab", "", "Origin: https://evil.example.com\r\n");
  EXPECT_EQ(r.status, 200);  // same-origin policy in the browser keeps the body from the page
  EXPECT_EQ(r.headers.find("access-control-allow-origin"), std::string::npos);
}

TEST_F(PgTest, CorsIsOffByDefault) {
  StartApp();
  const auto r = HttpCall(app_->http_port(), "OPTIONS", "/v1/persons:search?query=ab", "",
                          "Origin: https://support.example.com\r\nAccess-Control-Request-Method: GET\r\n");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers.find("access-control-allow-origin"), std::string::npos);
}

TEST_F(SupportApiTest, UiFilesAreServedWithAStrictContentSecurityPolicy) {
  for (const std::string path : {"/ui", "/ui/", "/ui/index.html"}) {
    const auto r = HttpGet(http_port(), path);
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
    EXPECT_NE(r.body.find("<script src=\"/ui/app.js\""), std::string::npos);
    EXPECT_NE(r.headers.find("content-security-policy: default-src 'none'; script-src 'self'"), std::string::npos)
        << r.headers;
    EXPECT_NE(r.headers.find("x-content-type-options: nosniff"), std::string::npos);
  }
  const auto js = HttpGet(http_port(), "/ui/app.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");
  // Data goes into the page as text only.
  EXPECT_EQ(js.body.find("innerHTML"), std::string::npos);
  EXPECT_EQ(HttpGet(http_port(), "/ui/app.css").content_type, "text/css; charset=utf-8");
  EXPECT_EQ(HttpGet(http_port(), "/ui/secret.txt").status, 404);
}

// ---------------------------------------------------------------------------------------------------------------
// gRPC reflection v1 (ours) next to v1alpha (gRPC's plugin)

TEST_F(SupportApiTest, ReflectionV1ListsServicesAndServesTheirFiles) {
  namespace rv1 = grpc::reflection::v1;
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  auto stub = rv1::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->ServerReflectionInfo(&ctx);
  rv1::ServerReflectionRequest req;
  rv1::ServerReflectionResponse resp;

  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  std::set<std::string> services;
  for (const auto& s : resp.list_services_response().service()) services.insert(s.name());
  for (const std::string want : {"nexus.v1.QueryService", "nexus.v1.IngestService", "nexus.v1.AdminService",
                                 "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_TRUE(services.count(want)) << want;
  }

  // The file declaring QueryService, with its dependencies (types.proto, timestamp.proto, ...).
  req.set_file_containing_symbol("nexus.v1.QueryService");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_TRUE(resp.has_file_descriptor_response()) << resp.DebugString();
  std::set<std::string> files;
  bool search_found = false;
  for (const auto& bytes : resp.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto f;
    ASSERT_TRUE(f.ParseFromString(bytes));
    files.insert(f.name());
    for (const auto& svc : f.service()) {
      for (const auto& m : svc.method()) search_found |= svc.name() == "QueryService" && m.name() == "SearchPersons";
    }
  }
  EXPECT_TRUE(files.count("nexus/v1/query.proto"));
  EXPECT_TRUE(files.count("nexus/v1/types.proto"));
  EXPECT_TRUE(search_found);

  req.set_file_containing_symbol("nexus.v1.NoSuchThing");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.error_response().error_code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace nexus::testing
