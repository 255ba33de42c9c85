// Query API end to end: events go in through a real gRPC IngestService channel, the resolver runs
// synchronously (ResolveNow), and answers are read back through a real gRPC QueryService channel and
// real HTTP/JSON against a real PostgreSQL.

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "server/resolver_worker.h"

namespace nexus::testing {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int64_t kT0 = 1714521600LL * 1000000;  // 2024-05-01T00:00:00Z in microseconds
constexpr int64_t kMinute = 60LL * 1000000;

struct Mention {
  std::vector<std::pair<std::string, std::string>> ids;
  std::string role;
  std::map<std::string, std::string> traits;
  std::string edge_id;
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

void FillMention(const Mention& m, v1::EntityMention* out) {
  out->set_edge_id(m.edge_id);
  out->set_role(m.role);
  for (const auto& [t, v] : m.ids) {
    auto* id = out->add_identifiers();
    id->set_type(t);
    id->set_value(v);
  }
  for (const auto& [k, v] : m.traits) (*out->mutable_traits())[k] = v;
}

class QueryTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    StartApp();
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
      for (const auto& p : e.persons) FillMention(p, ev->add_persons());
      for (const auto& g : e.groups) FillMention(g, ev->add_groups());
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

  void Resolve() {
    ASSERT_NE(app_->resolver(), nullptr);
    ResolveAll();
  }

  v1::Person Lookup(const std::string& type, const std::string& value, grpc::Status* status = nullptr) {
    v1::LookupPersonRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    grpc::ClientContext ctx;
    v1::Person out;
    const grpc::Status s = query_->LookupPerson(&ctx, req, &out);
    if (status)
      *status = s;
    else
      EXPECT_TRUE(s.ok()) << type << "=" << value << ": " << s.error_message();
    return out;
  }

  v1::Group LookupGroup(const std::string& type, const std::string& value) {
    v1::LookupGroupRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    grpc::ClientContext ctx;
    v1::Group out;
    const grpc::Status s = query_->LookupGroup(&ctx, req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }

  grpc::Status GetPerson(const std::string& id, v1::Person* out) {
    v1::GetPersonRequest req;
    req.set_person_id(id);
    grpc::ClientContext ctx;
    return query_->GetPerson(&ctx, req, out);
  }

  grpc::Status Timeline(const std::string& id, int page_size, const std::string& token, const v1::TimelineFilter& f,
                        v1::TimelineResponse* out) {
    v1::ListPersonTimelineRequest req;
    req.set_person_id(id);
    req.set_page_size(page_size);
    req.set_page_token(token);
    *req.mutable_filter() = f;
    grpc::ClientContext ctx;
    return query_->ListPersonTimeline(&ctx, req, out);
  }

  /// Every page of a timeline through gRPC; `between_pages` runs after the first page.
  std::vector<std::string> AllTimeline(const std::string& id, int page_size, const v1::TimelineFilter& f = {},
                                       const std::function<void()>& between_pages = {}) {
    std::vector<std::string> ids;
    std::string token;
    for (int page = 0; page < 1000; ++page) {
      v1::TimelineResponse resp;
      const grpc::Status s = Timeline(id, page_size, token, f, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok()) break;
      EXPECT_LE(resp.events_size(), page_size);
      for (const auto& e : resp.events()) ids.push_back(e.event_id());
      token = resp.next_page_token();
      if (page == 0 && between_pages) between_pages();
      if (token.empty()) break;
    }
    return ids;
  }

  int http_port() const { return app_->http_port(); }

  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
};

template <typename Msg>
Msg ParseBody(const HttpResult& r) {
  Msg m;
  auto st = google::protobuf::util::JsonStringToMessage(r.body, &m);
  EXPECT_TRUE(st.ok()) << r.body;
  return m;
}

Mention P(std::vector<std::pair<std::string, std::string>> ids, std::string role = "sender",
          std::map<std::string, std::string> traits = {}) {
  return Mention{std::move(ids), std::move(role), std::move(traits), ""};
}

TEST_F(QueryTest, LookupByEachIdentifierTypeIncludingEmailCase) {
  EventSpec e{.id = "e1"};
  e.persons.push_back(P({{"email", "Alice.Smith@Example.COM"}, {"phone", "+1 (415) 555-0101"}, {"user_id", "u-1"}},
                        "sender", {{"name", "Alice Smith"}}));
  e.groups.push_back(P({{"domain", "https://www.Acme.com/about"}}, "account"));
  Ingest({e});
  Resolve();

  const v1::Person by_email = Lookup("email", "alice.smith@example.com");
  ASSERT_FALSE(by_email.person_id().empty());
  EXPECT_EQ(by_email.identifiers_size(), 3);
  EXPECT_FALSE(by_email.redirected());
  for (const auto& [t, v] : std::vector<std::pair<std::string, std::string>>{{"email", "ALICE.SMITH@example.com"},
                                                                             {"email", "  Alice.Smith@Example.COM "},
                                                                             {"phone", "+14155550101"},
                                                                             {"phone", "415.555.0101"},
                                                                             {"user_id", "u-1"}}) {
    EXPECT_EQ(Lookup(t, v).person_id(), by_email.person_id()) << t << "=" << v;
  }
  v1::Person got;
  ASSERT_TRUE(GetPerson(by_email.person_id(), &got).ok());
  EXPECT_EQ(got.person_id(), by_email.person_id());
  EXPECT_EQ(got.identifiers_size(), 3);

  const v1::Group g = LookupGroup("domain", "ACME.com");
  EXPECT_FALSE(g.group_id().empty());

  // HTTP mirror.
  auto r = HttpGet(http_port(),
                   "/v1/persons:lookup?identifier_type=email&identifier_value=" + UrlEncode("ALICE.smith@EXAMPLE.com"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::Person>(r).person_id(), by_email.person_id());
  r = HttpGet(http_port(), "/v1/persons/" + by_email.person_id());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::Person>(r).identifiers_size(), 3);
  r = HttpGet(http_port(), "/v1/groups:lookup?identifier_type=domain&identifier_value=acme.com");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::Group>(r).group_id(), g.group_id());
  r = HttpGet(http_port(), "/v1/groups/" + g.group_id());
  EXPECT_EQ(r.status, 200) << r.body;
}

TEST_F(QueryTest, NotFoundAndInvalidArguments) {
  EventSpec e{.id = "e1"};
  e.persons.push_back(P({{"email", "bob@example.com"}}));
  Ingest({e});
  Resolve();
  const std::string id = Lookup("email", "bob@example.com").person_id();

  grpc::Status s;
  Lookup("email", "nobody@example.com", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  Lookup("Bad Type", "x", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::Person p;
  EXPECT_EQ(GetPerson("per_doesnotexist", &p).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetPerson("", &p).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::TimelineResponse t;
  s = Timeline(id, 10, "not-a-token!", {}, &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "page_token: malformed");
  s = Timeline(id, 10, "dDE6eHg", {}, &t);  // base64url("t1:xx"): right alphabet, wrong content
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  s = Timeline(id, 501, "", {}, &t);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("page_size"), std::string::npos);
  EXPECT_EQ(Timeline("per_doesnotexist", 10, "", {}, &t).error_code(), grpc::StatusCode::NOT_FOUND);
  {
    v1::ListPersonMembershipsRequest req;
    req.set_person_id(id);
    req.set_page_token("garbage");
    grpc::ClientContext ctx;
    v1::ListMembershipsResponse out;
    EXPECT_EQ(query_->ListPersonMemberships(&ctx, req, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  auto r = HttpGet(http_port(), "/v1/persons/per_doesnotexist");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("\"code\":\"NOT_FOUND\""), std::string::npos) << r.body;
  r = HttpGet(http_port(), "/v1/persons:lookup?identifier_type=email&identifier_value=nobody%40example.com");
  EXPECT_EQ(r.status, 404);
  r = HttpGet(http_port(), "/v1/persons/" + id + "/timeline?page_token=zzz");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("page_token: malformed"), std::string::npos) << r.body;
  r = HttpGet(http_port(), "/v1/persons/" + id + "/timeline?occurred_after=yesterday");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("occurred_after"), std::string::npos) << r.body;
  r = HttpGet(http_port(), "/v1/persons/" + id + "/timeline?page_size=abc");
  EXPECT_EQ(r.status, 400);
  r = HttpGet(http_port(), "/v1/persons/" + id + "/timeline?page_size=1000");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("page_size"), std::string::npos) << r.body;
  r = HttpGet(http_port(), "/v1/groups/grp_nope/members");
  EXPECT_EQ(r.status, 404);
  r = HttpGet(http_port(), "/v1/persons/per_nope/history");
  EXPECT_EQ(r.status, 404);
}

TEST_F(QueryTest, MergedIdRedirectsAndHistoryListsEveryMerge) {
  Ingest({EventSpec{.id = "e1", .at_us = kT0, .persons = {P({{"email", "a@x.com"}, {"phone", "+1 212 555 0100"}})}}});
  Resolve();
  Ingest({EventSpec{.id = "e2", .at_us = kT0 + kMinute, .persons = {P({{"email", "b@x.com"}})}}});
  Resolve();
  Ingest({EventSpec{.id = "e3", .at_us = kT0 + 2 * kMinute, .persons = {P({{"email", "c@x.com"}})}}});
  Resolve();
  const std::string pa = Lookup("email", "a@x.com").person_id();
  const std::string pb = Lookup("email", "b@x.com").person_id();
  const std::string pc = Lookup("email", "c@x.com").person_id();
  ASSERT_NE(pa, pb);
  ASSERT_NE(pb, pc);

  // b joins a (a has more identifiers and survives), later c joins too.
  Ingest({EventSpec{
      .id = "e4", .at_us = kT0 + 3 * kMinute, .persons = {P({{"email", "a@x.com"}, {"email", "b@x.com"}})}}});
  Resolve();
  Ingest({EventSpec{
      .id = "e5", .at_us = kT0 + 4 * kMinute, .persons = {P({{"email", "c@x.com"}, {"phone", "+1 212 555 0100"}})}}});
  Resolve();

  const v1::Person survivor = Lookup("email", "c@x.com");
  EXPECT_EQ(survivor.person_id(), pa);
  EXPECT_EQ(Lookup("email", "b@x.com").person_id(), pa);
  std::set<std::string> merged(survivor.merged_ids().begin(), survivor.merged_ids().end());
  EXPECT_EQ(merged, (std::set<std::string>{pb, pc}));

  for (const std::string& old : {pb, pc}) {
    v1::Person p;
    ASSERT_TRUE(GetPerson(old, &p).ok());
    EXPECT_EQ(p.person_id(), pa);
    EXPECT_TRUE(p.redirected());
    EXPECT_EQ(p.requested_id(), old);
    EXPECT_EQ(p.identifiers_size(), 4);
    auto r = HttpGet(http_port(), "/v1/persons/" + old);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto hp = ParseBody<v1::Person>(r);
    EXPECT_EQ(hp.person_id(), pa);
    EXPECT_TRUE(hp.redirected());
    EXPECT_EQ(hp.requested_id(), old);
  }
  v1::Person direct;
  ASSERT_TRUE(GetPerson(pa, &direct).ok());
  EXPECT_FALSE(direct.redirected());
  EXPECT_TRUE(direct.requested_id().empty());

  // History: both merges, newest first, with the merging events; reachable from an absorbed id too.
  v1::GetPersonHistoryRequest hreq;
  hreq.set_person_id(pb);
  grpc::ClientContext ctx;
  v1::EntityHistory h;
  ASSERT_TRUE(query_->GetPersonHistory(&ctx, hreq, &h).ok());
  EXPECT_EQ(h.entity_id(), pa);
  EXPECT_EQ(h.created_by_event_id(), "e1");
  ASSERT_EQ(h.merges_size(), 2);
  EXPECT_EQ(h.merges(0).absorbed_id(), pc);
  EXPECT_EQ(h.merges(0).event_id(), "e5");
  EXPECT_EQ(h.merges(1).absorbed_id(), pb);
  EXPECT_EQ(h.merges(1).event_id(), "e4");
  EXPECT_EQ(h.merges(1).surviving_id(), pa);
  EXPECT_EQ(h.merges(1).absorbed_identifier_count(), 1);
  EXPECT_GE(TimeUtil::TimestampToMicroseconds(h.merges(0).merged_at()),
            TimeUtil::TimestampToMicroseconds(h.merges(1).merged_at()));
  // Every alias row of the survivor is listed.
  EXPECT_EQ(h.merges_size(), QueryCount(url_, "SELECT 1 FROM person_id_aliases WHERE new_id = '" + pa + "'"));

  auto r = HttpGet(http_port(), "/v1/persons/" + pa + "/history");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::EntityHistory>(r).merges_size(), 2);
}

TEST_F(QueryTest, MembershipsAfterMergesOnBothSides) {
  using Id = std::pair<std::string, std::string>;
  EventSpec e1{.id = "e1", .at_us = kT0};
  e1.memberships.push_back({Id{"email", "p1@x.com"}, Id{"domain", "acme.com"}, "admin"});
  EventSpec e2{.id = "e2", .at_us = kT0 + kMinute};
  e2.memberships.push_back({Id{"email", "p2@x.com"}, Id{"domain", "acme.io"}, "member"});
  Ingest({e1, e2});
  Resolve();
  const std::string p1 = Lookup("email", "p1@x.com").person_id();
  const std::string p2 = Lookup("email", "p2@x.com").person_id();
  const std::string g1 = LookupGroup("domain", "acme.com").group_id();
  const std::string g2 = LookupGroup("domain", "acme.io").group_id();
  ASSERT_NE(p1, p2);
  ASSERT_NE(g1, g2);

  // Merge the persons and the groups.
  EventSpec e3{.id = "e3", .at_us = kT0 + 2 * kMinute};
  e3.persons.push_back(P({{"email", "p1@x.com"}, {"email", "p2@x.com"}}, "sender", {{"name", "Pat"}}));
  e3.groups.push_back(P({{"domain", "acme.com"}, {"domain", "acme.io"}}, "account", {{"company_name", "Acme"}}));
  // Three more members of acme.com for pagination.
  EventSpec e4{.id = "e4", .at_us = kT0 + 3 * kMinute};
  for (int i = 0; i < 3; ++i) {
    e4.memberships.push_back({Id{"email", "m" + std::to_string(i) + "@acme.com"}, Id{"domain", "acme.com"}, "member"});
  }
  Ingest({e3, e4});
  Resolve();
  const std::string ps = Lookup("email", "p1@x.com").person_id();
  const std::string gs = LookupGroup("domain", "acme.io").group_id();
  ASSERT_EQ(ps, Lookup("email", "p2@x.com").person_id());
  ASSERT_EQ(gs, LookupGroup("domain", "acme.com").group_id());

  for (const std::string& asked : {p1, p2}) {
    v1::ListPersonMembershipsRequest req;
    req.set_person_id(asked);
    grpc::ClientContext ctx;
    v1::ListMembershipsResponse out;
    ASSERT_TRUE(query_->ListPersonMemberships(&ctx, req, &out).ok());
    EXPECT_EQ(out.resolved_id(), ps);
    ASSERT_EQ(out.memberships_size(), 1) << out.DebugString();
    EXPECT_EQ(out.memberships(0).person_id(), ps);
    EXPECT_EQ(out.memberships(0).group_id(), gs);
    EXPECT_FALSE(out.memberships(0).group_domain().empty());
    EXPECT_TRUE(out.next_page_token().empty());
  }

  // Members of the merged group, asked by either old id, 3 per page, over gRPC then HTTP.
  for (const std::string& asked : {g1, g2}) {
    std::vector<std::string> members;
    std::string token;
    int pages = 0;
    do {
      v1::ListGroupMembersRequest req;
      req.set_group_id(asked);
      req.set_page_size(3);
      req.set_page_token(token);
      grpc::ClientContext ctx;
      v1::ListMembershipsResponse out;
      ASSERT_TRUE(query_->ListGroupMembers(&ctx, req, &out).ok());
      EXPECT_EQ(out.resolved_id(), gs);
      for (const auto& m : out.memberships()) {
        EXPECT_EQ(m.group_id(), gs);
        members.push_back(m.person_id());
      }
      token = out.next_page_token();
      ++pages;
    } while (!token.empty() && pages < 10);
    EXPECT_EQ(pages, 2);
    ASSERT_EQ(members.size(), 4u);
    EXPECT_EQ(std::set<std::string>(members.begin(), members.end()).size(), 4u);
    EXPECT_NE(std::find(members.begin(), members.end(), ps), members.end());
  }
  auto r = HttpGet(http_port(), "/v1/groups/" + g1 + "/members?page_size=3");
  ASSERT_EQ(r.status, 200) << r.body;
  auto page1 = ParseBody<v1::ListMembershipsResponse>(r);
  ASSERT_EQ(page1.memberships_size(), 3);
  ASSERT_FALSE(page1.next_page_token().empty());
  r = HttpGet(http_port(),
              "/v1/groups/" + g1 + "/members?page_size=3&page_token=" + UrlEncode(page1.next_page_token()));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::ListMembershipsResponse>(r).memberships_size(), 1);
  r = HttpGet(http_port(), "/v1/persons/" + p2 + "/memberships");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseBody<v1::ListMembershipsResponse>(r).memberships(0).group_id(), gs);
}

TEST_F(QueryTest, TimelineOrderFiltersAndPaginationWhileEventsArrive) {
  // 30 events of one person: pairs share a timestamp (ties broken by event_id), two types, two sources.
  std::vector<EventSpec> events;
  for (int i = 0; i < 30; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "ev%02d", i);
    EventSpec e{.id = id,
                .at_us = kT0 + (i / 2) * kMinute,
                .type = i % 3 == 0 ? "meeting" : "email",
                .source = i % 2 == 0 ? "zoom" : "gmail"};
    e.persons.push_back(P({{"email", "t@x.com"}}, "sender"));
    if (i == 7) e.persons.push_back(P({{"email", "t@x.com"}}, "recipient"));
    if (i % 5 == 0) e.persons.push_back(P({{"email", "other" + std::to_string(i) + "@x.com"}}, "recipient"));
    events.push_back(e);
  }
  Ingest(events);
  Resolve();
  const std::string id = Lookup("email", "t@x.com").person_id();

  // Expected order: occurred_at desc, then event_id desc.
  std::vector<const EventSpec*> sorted;
  for (const auto& e : events) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const EventSpec* a, const EventSpec* b) {
    return a->at_us != b->at_us ? a->at_us > b->at_us : a->id > b->id;
  });
  std::vector<std::string> expected;
  for (const auto* e : sorted) expected.push_back(e->id);

  // Pages of 7 while newer events (which must not show up on later pages) arrive after page 1.
  int late = 0;
  const auto got = AllTimeline(id, 7, {}, [&] {
    std::vector<EventSpec> more;
    for (int i = 0; i < 3; ++i) {
      EventSpec e{.id = "late" + std::to_string(late++), .at_us = kT0 + 100 * kMinute + i};
      e.persons.push_back(P({{"email", "t@x.com"}}));
      more.push_back(e);
    }
    Ingest(more);
    Resolve();
  });
  EXPECT_EQ(got, expected);
  // A fresh read sees the new events first.
  const auto fresh = AllTimeline(id, 500);
  ASSERT_EQ(fresh.size(), 33u);
  EXPECT_EQ(fresh[0], "late2");
  EXPECT_EQ(std::vector<std::string>(fresh.begin() + 3, fresh.end()), expected);

  // One entry per event with all of the person's roles.
  {
    v1::TimelineFilter f;
    *f.mutable_occurred_after() = TimeUtil::MicrosecondsToTimestamp(kT0 + 3 * kMinute);
    *f.mutable_occurred_before() = TimeUtil::MicrosecondsToTimestamp(kT0 + 4 * kMinute);
    v1::TimelineResponse resp;
    ASSERT_TRUE(Timeline(id, 0, "", f, &resp).ok());
    ASSERT_EQ(resp.events_size(), 2);  // ev07, ev06: after is inclusive, before exclusive
    EXPECT_EQ(resp.events(0).event_id(), "ev07");
    EXPECT_EQ(std::vector<std::string>(resp.events(0).roles().begin(), resp.events(0).roles().end()),
              (std::vector<std::string>{"recipient", "sender"}));
    EXPECT_EQ(resp.events(0).event_type(), "email");
    EXPECT_EQ(resp.events(0).source(), "gmail");
    EXPECT_EQ(resp.events(0).event_name(), "email ev07");
    EXPECT_EQ(resp.events(1).event_id(), "ev06");
    EXPECT_EQ(resp.resolved_id(), id);
  }
  // Filters: event_type and source, paginated.
  {
    v1::TimelineFilter f;
    f.set_event_type("meeting");
    f.set_source("zoom");
    std::vector<std::string> want;
    for (const auto* e : sorted) {
      if (e->type == "meeting" && e->source == "zoom") want.push_back(e->id);
    }
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(AllTimeline(id, 2, f), want);
  }
  // HTTP: RFC 3339 range and token round trip.
  {
    const std::string base = "/v1/persons/" + id +
                             "/timeline?page_size=4&occurred_after=" + UrlEncode("2024-05-01T00:05:00Z") +
                             "&occurred_before=" + UrlEncode("2024-05-01T00:10:00Z");
    std::vector<std::string> ids;
    std::string token;
    for (int page = 0; page < 10; ++page) {
      auto r = HttpGet(http_port(), base + (token.empty() ? "" : "&page_token=" + UrlEncode(token)));
      ASSERT_EQ(r.status, 200) << r.body;
      const auto resp = ParseBody<v1::TimelineResponse>(r);
      for (const auto& e : resp.events()) ids.push_back(e.event_id());
      token = resp.next_page_token();
      if (token.empty()) break;
    }
    std::vector<std::string> want;
    for (const auto* e : sorted) {
      if (e->at_us >= kT0 + 5 * kMinute && e->at_us < kT0 + 10 * kMinute) want.push_back(e->id);
    }
    EXPECT_EQ(ids, want);
    auto r = HttpGet(http_port(), "/v1/persons/" + id + "/timeline?event_type=meeting&source=zoom&page_size=500");
    ASSERT_EQ(r.status, 200) << r.body;
  }
}

TEST_F(QueryTest, GroupTimeline) {
  EventSpec e1{.id = "g1", .at_us = kT0, .type = "order"};
  e1.groups.push_back(P({{"domain", "shop.com"}}, "merchant"));
  EventSpec e2{.id = "g2", .at_us = kT0 + kMinute, .type = "refund"};
  e2.groups.push_back(P({{"domain", "shop.com"}}, "merchant"));
  Ingest({e1, e2});
  Resolve();
  const std::string g = LookupGroup("domain", "shop.com").group_id();
  v1::ListGroupTimelineRequest req;
  req.set_group_id(g);
  grpc::ClientContext ctx;
  v1::TimelineResponse out;
  ASSERT_TRUE(query_->ListGroupTimeline(&ctx, req, &out).ok());
  ASSERT_EQ(out.events_size(), 2);
  EXPECT_EQ(out.events(0).event_id(), "g2");
  EXPECT_EQ(out.events(0).roles(0), "merchant");
  auto r = HttpGet(http_port(), "/v1/groups/" + g + "/timeline?event_type=order");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto resp = ParseBody<v1::TimelineResponse>(r);
  ASSERT_EQ(resp.events_size(), 1);
  EXPECT_EQ(resp.events(0).event_id(), "g1");
}

TEST_F(QueryTest, ExplainReturnsAValidShortestPathOfStoredEdges) {
  // a -(e1)- phone -(e2)- user_id -(e3)- b, plus an unrelated branch and a longer detour.
  Ingest(
      {EventSpec{.id = "e1", .at_us = kT0, .persons = {P({{"email", "a@x.com"}, {"phone", "+12125550155"}})}},
       EventSpec{.id = "e2", .at_us = kT0 + kMinute, .persons = {P({{"phone", "+12125550155"}, {"user_id", "u7"}})}},
       EventSpec{.id = "e3", .at_us = kT0 + 2 * kMinute, .persons = {P({{"user_id", "u7"}, {"email", "B@x.com"}})}},
       EventSpec{.id = "e4", .at_us = kT0 + 3 * kMinute, .persons = {P({{"email", "a@x.com"}, {"device_id", "d1"}})}},
       EventSpec{.id = "e5", .at_us = kT0 + 4 * kMinute, .persons = {P({{"device_id", "d1"}, {"cookie", "c1"}})}},
       EventSpec{.id = "e6", .at_us = kT0 + 5 * kMinute, .persons = {P({{"cookie", "c1"}, {"anon", "z1"}})}},
       EventSpec{.id = "e7", .at_us = kT0 + 6 * kMinute, .persons = {P({{"anon", "z1"}, {"email", "b@x.com"}})}}});
  Resolve();

  v1::ExplainLinkRequest req;
  req.mutable_a()->set_type("email");
  req.mutable_a()->set_value("A@X.com");
  req.mutable_b()->set_type("email");
  req.mutable_b()->set_value("b@x.com");
  grpc::ClientContext ctx;
  v1::ExplainLinkResponse out;
  ASSERT_TRUE(query_->ExplainPersonLink(&ctx, req, &out).ok());
  ASSERT_TRUE(out.linked()) << out.DebugString();
  EXPECT_EQ(out.entity_id_a(), out.entity_id_b());
  ASSERT_EQ(out.path_size(), 3) << out.DebugString();
  EXPECT_EQ(out.path(0).from().value(), "a@x.com");
  EXPECT_EQ(out.path(2).to().value(), "b@x.com");
  for (int i = 0; i < out.path_size(); ++i) {
    const auto& step = out.path(i);
    if (i > 0) {
      EXPECT_EQ(step.from().type(), out.path(i - 1).to().type());
      EXPECT_EQ(step.from().value(), out.path(i - 1).to().value());
    }
    EXPECT_FALSE(step.source().empty());
    // A real stored edge: both ends were stored under this edge_id, and the step's occurrence exists.
    for (const auto* end : {&step.from(), &step.to()}) {
      EXPECT_GE(QueryCount(url_, "SELECT 1 FROM person_identifiers WHERE edge_id = '" + step.edge_id() +
                                     "' AND identifier_type = '" + end->type() + "' AND identifier_value = '" +
                                     end->value() + "' AND NOT is_blocked"),
                1)
          << step.DebugString();
    }
    EXPECT_GE(QueryCount(url_, "SELECT 1 FROM person_identifiers WHERE event_id = '" + step.event_id() +
                                   "' AND edge_id = '" + step.edge_id() + "'"),
              1);
    EXPECT_GE(step.identifiers_size(), 2);
  }

  // HTTP mirror, and NOT_FOUND naming the side.
  auto r = HttpGet(http_port(), "/v1/persons:explain?a_type=email&a_value=a%40x.com&b_type=user_id&b_value=u7");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto hr = ParseBody<v1::ExplainLinkResponse>(r);
  EXPECT_TRUE(hr.linked());
  EXPECT_EQ(hr.path_size(), 2);
  r = HttpGet(http_port(), "/v1/persons:explain?a_type=email&a_value=a%40x.com&b_type=email&b_value=zz%40x.com");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("b:"), std::string::npos) << r.body;
  r = HttpGet(http_port(), "/v1/persons:explain?a_type=email&a_value=a%40x.com");
  EXPECT_EQ(r.status, 400);
}

TEST_F(QueryTest, ExplainNotLinkedShowsTheQuarantinedEdge) {
  // Two persons with a user_id each; an edge joining them would give one person two user_ids (default cap 1).
  Ingest({EventSpec{.id = "e1", .persons = {P({{"email", "x@x.com"}, {"user_id", "u1"}})}},
          EventSpec{.id = "e2", .persons = {P({{"email", "y@x.com"}, {"user_id", "u2"}})}}});
  Resolve();
  Ingest({EventSpec{.id = "e3", .at_us = kT0 + kMinute, .persons = {P({{"email", "x@x.com"}, {"email", "y@x.com"}})}}});
  Resolve();
  v1::ExplainLinkRequest req;
  req.mutable_a()->set_type("email");
  req.mutable_a()->set_value("x@x.com");
  req.mutable_b()->set_type("email");
  req.mutable_b()->set_value("y@x.com");
  grpc::ClientContext ctx;
  v1::ExplainLinkResponse out;
  ASSERT_TRUE(query_->ExplainPersonLink(&ctx, req, &out).ok());
  EXPECT_FALSE(out.linked());
  EXPECT_NE(out.entity_id_a(), out.entity_id_b());
  EXPECT_EQ(out.path_size(), 0);
  ASSERT_EQ(out.blocked_by_size(), 1) << out.DebugString();
  EXPECT_EQ(out.blocked_by(0).event_id(), "e3");
  EXPECT_FALSE(out.blocked_by(0).reason().empty());
  EXPECT_EQ(out.blocked_by(0).identifiers_size(), 2);
}

}  // namespace
}  // namespace nexus::testing
