// Issue 15 through the public API against a real PostgreSQL: undoing a wrong merge with a link rule (the
// support@ story, a chain split and re-merged by removing the rule, an edge rule), erasure (dry run, every table
// scanned for the person's values and ids, shared events kept, audit without plaintext, idempotent replay, a
// second erasure as a clean no-op, suppression at ingest and lifting it), and a blocklist change applied to stored
// data by a rebuild. After each change a full rebuild must leave every resolved and final table as it was.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "http_client.h"
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
  Ids ids = {};
  std::map<std::string, std::string> traits = {};
  std::string role = "contact";
  std::string edge_id = "";  ///< "": derived by ingest, local to the event
};

v1::Event MakeEvent(const std::string& id, int64_t t, const std::vector<Mention>& persons,
                    const std::vector<std::pair<std::string, std::string>>& memberships = {}) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000 + t);
  e.set_event_name("crm_sync");
  e.set_event_type("crm");
  e.set_source("hubspot");
  for (const auto& p : persons) {
    auto* m = e.add_persons();
    m->set_role(p.role);
    m->set_edge_id(p.edge_id);
    for (const auto& [ty, v] : p.ids) {
      auto* i = m->add_identifiers();
      i->set_type(ty);
      i->set_value(v);
    }
    for (const auto& [k, v] : p.traits) (*m->mutable_traits())[k] = v;
  }
  for (const auto& [email, role] : memberships) {
    auto* ms = e.add_memberships();
    ms->mutable_person()->set_type("email");
    ms->mutable_person()->set_value(email);
    ms->mutable_group()->set_type("domain");
    ms->mutable_group()->set_value("acme.io");
    ms->set_role(role);
  }
  return e;
}

v1::Identifier Id(const std::string& type, const std::string& value) {
  v1::Identifier i;
  i.set_type(type);
  i.set_value(value);
  return i;
}

class UnlinkErasureTest : public PgTest {
 protected:
  void Start(const std::string& protection_text) {
    auto cfg = BaseConfig();
    cfg.resolver_poll_interval = std::chrono::milliseconds(3600 * 1000);  // the test drives it
    StartApp(cfg);
    SetProtection(protection_text);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel_);
    query_ = v1::QueryService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }
  void SetProtection(const std::string& text) {
    std::string err;
    auto cfg = resolver::ParseProtectionConfig(text, &err, "US");
    ASSERT_TRUE(cfg) << err;
    app_->protection().Set(*cfg);
  }
  /// Ingests, then resolves everything committed; with `one_pass`, one ResolveNow only (for a test that holds a
  /// transaction open on purpose, which ResolveAll would wait for).
  v1::IngestEventsResponse Ingest(const std::vector<v1::Event>& events, bool one_pass = false) {
    v1::IngestEventsRequest req;
    for (const auto& e : events) *req.add_events() = e;
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    auto s = ingest_->IngestEvents(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (one_pass) {
      app_->resolver()->ResolveNow();
    } else {
      ResolveAll();
    }
    return resp;
  }
  /// The person holding (type, value), or "" when none (NOT_FOUND).
  std::string PersonOf(const std::string& type, const std::string& value, v1::Person* out = nullptr) {
    v1::LookupPersonRequest req;
    req.set_identifier_type(type);
    req.set_identifier_value(value);
    v1::Person p;
    grpc::ClientContext ctx;
    auto s = query_->LookupPerson(&ctx, req, &p);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) return "";
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (out) *out = p;
    return p.person_id();
  }
  std::vector<std::string> Timeline(const std::string& person_id) {
    v1::ListPersonTimelineRequest req;
    req.set_person_id(person_id);
    req.set_page_size(100);
    v1::TimelineResponse resp;
    grpc::ClientContext ctx;
    auto s = query_->ListPersonTimeline(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> out;
    for (const auto& e : resp.events()) out.push_back(e.event_id());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string MembershipRole(const std::string& person_id) {
    v1::ListPersonMembershipsRequest req;
    req.set_person_id(person_id);
    v1::ListMembershipsResponse resp;
    grpc::ClientContext ctx;
    auto s = query_->ListPersonMemberships(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.memberships_size() == 1 ? resp.memberships(0).role()
                                        : "(" + std::to_string(resp.memberships_size()) + ")";
  }
  grpc::Status Unlink(const v1::UnlinkRequest& req, v1::UnlinkResponse* out) {
    grpc::ClientContext ctx;
    return admin_->Unlink(&ctx, req, out);
  }
  v1::UnlinkResponse UnlinkPair(const v1::Identifier& a, const v1::Identifier& b) {
    v1::UnlinkRequest req;
    *req.mutable_a() = a;
    *req.mutable_b() = b;
    req.set_reason("different people");
    v1::UnlinkResponse out;
    auto s = Unlink(req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  v1::EraseResponse Erase(const v1::EraseRequest& req, grpc::Status* status = nullptr) {
    v1::EraseResponse out;
    grpc::ClientContext ctx;
    auto s = admin_->Erase(&ctx, req, &out);
    if (status) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    return out;
  }
  /// A full rebuild must leave every resolved and final table exactly as it is.
  /// The resolver's in-memory graph, which took the change in place (no reload), equals one loaded from the
  /// database now.
  void ExpectGraphAgrees(const std::string& when) {
    std::string diff;
    bool resident = false;
    app_->resolver()->RunExclusive([&](storage::ResolverStore& s) {
      resident = s.graph_info().identifiers > 0;
      diff = s.DiffGraphWithDatabase();
    });
    EXPECT_TRUE(resident) << when << ": the change dropped the resident graph";
    EXPECT_EQ(diff, "") << when << ": the resident graph differs from the database";
  }
  void ExpectRebuildAgrees(const std::string& when) {
    const auto before = DumpResolvedTables(url_);
    v1::RebuildRequest req;
    req.set_wait(true);
    v1::RebuildResponse resp;
    grpc::ClientContext ctx;
    auto s = admin_->Rebuild(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    const auto after = DumpResolvedTables(url_);
    for (const auto& [table, rows] : before) {
      EXPECT_EQ(rows, after.at(table)) << when << ": table " << table
                                       << " differs after a rebuild: " << FirstDifference(rows, after.at(table));
    }
  }
  /// A dry run's preview, checked against the database after the real change: each part is exactly one person
  /// now (its id, its identifiers, its size), and the parts hold every affected identifier that resolves.
  void ExpectPreviewHeld(const v1::UnlinkPreview& preview, const std::string& when) {
    std::map<std::pair<std::string, std::string>, std::string> person_of;
    std::map<std::string, int64_t> size_of;
    pqxx::connection c(url_);
    pqxx::nontransaction n(c);
    for (const auto& row :
         n.exec("SELECT identifier_type, identifier_value, person_id FROM resolved_person_identifiers")) {
      person_of[{row[0].c_str(), row[1].c_str()}] = row[2].c_str();
      ++size_of[row[2].c_str()];
    }
    int64_t listed = 0;
    for (const auto& part : preview.parts()) {
      EXPECT_EQ(part.identifier_count(), size_of[part.entity_id()])
          << when << ": the preview's part " << part.entity_id() << " has another size now";
      ASSERT_EQ(part.identifiers_size(), part.identifier_count()) << when << ": small parts are listed whole";
      for (const auto& id : part.identifiers()) {
        const std::pair<std::string, std::string> key(id.type(), id.value());
        EXPECT_EQ(person_of[key], part.entity_id())
            << when << ": " << id.value() << " does not resolve where the preview said";
      }
      listed += part.identifier_count();
    }
    EXPECT_LE(listed, preview.identifiers()) << when;
  }
  v1::UnlinkResponse DryRun(v1::UnlinkRequest req) {
    req.set_dry_run(true);
    v1::UnlinkResponse out;
    auto s = Unlink(req, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(out.dry_run());
    EXPECT_FALSE(out.created());
    return out;
  }

  /// Rows of every table of the schema whose text holds `needle`, as "table: n" lines ("" when none).
  /// The search tables (migrations 016, 017) hold exactly the resolved (type, value, entity) rows of their kind:
  /// their triggers follow every insert and delete, a merge's repoint moves both, and a rebuild refills them.
  void ExpectSearchTablesFollow(const std::string& after) {
    for (const std::string k : {"person", "group"}) {
      const std::string cols = "identifier_type, identifier_value, " + k + "_id";
      const std::string resolved = "SELECT " + cols + " FROM resolved_" + k + "_identifiers";
      const std::string search = "SELECT " + cols + " FROM " + k + "_identifier_search";
      EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM ((" + resolved + " EXCEPT " + search + ") UNION ALL (" +
                                      search + " EXCEPT " + resolved + ")) d"),
                "0")
          << k << "_identifier_search differs from the resolved identifiers after " << after;
    }
  }

  std::string TablesHolding(const std::string& needle) {
    std::string out;
    pqxx::connection c(url_);
    pqxx::nontransaction n(c);
    for (const auto& row : n.exec("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")) {
      const std::string t = row[0].c_str();
      const auto cnt =
          n.exec("SELECT count(*) FROM " + t + " x WHERE x::text LIKE " + n.quote("%" + needle + "%"))[0][0]
              .as<long long>();
      if (cnt > 0) out += t + ": " + std::to_string(cnt) + "\n";
    }
    return out;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

// Role accounts off: the deployment the story comes from, where support@ was a linking identifier.
constexpr const char* kRoleAccountsOff = "[email]\nrole_accounts = off\n";

std::vector<v1::Event> SupportStory() {
  return {
      MakeEvent("crm-alice", 0,
                {{{{"email", "alice@acme.io"}, {"email", "support@acme.io"}}, {{"name", "Alice"}, {"title", "CTO"}}}},
                {{"alice@acme.io", "cto"}}),
      MakeEvent("crm-bob", 1,
                {{{{"email", "bob@acme.io"}, {"email", "support@acme.io"}}, {{"name", "Bob"}, {"title", "CFO"}}}},
                {{"bob@acme.io", "cfo"}}),
      MakeEvent("mail-alice", 2, {{{{"email", "alice@acme.io"}}, {}, "sender"}}),
      MakeEvent("mail-bob", 3, {{{{"email", "bob@acme.io"}}, {}, "sender"}})};
}

TEST_F(UnlinkErasureTest, SupportStoryUnlinkGivesBothPersonsBackAndHolds) {
  Start(kRoleAccountsOff);
  Ingest(SupportStory());
  const std::string merged = PersonOf("email", "alice@acme.io");
  ASSERT_FALSE(merged.empty());
  ASSERT_EQ(PersonOf("email", "bob@acme.io"), merged) << "the story starts with one wrongly merged person";

  const std::string created = QueryScalar(url_, "SELECT created_at FROM persons WHERE person_id = '" + merged + "'");
  const auto r = UnlinkPair(Id("email", "Alice@ACME.io"), Id("email", "bob@acme.io"));  // normalized as at ingest
  EXPECT_TRUE(r.created());
  EXPECT_GT(r.rule().rule_id(), 0);
  EXPECT_EQ(r.rule().reason(), "different people");
  EXPECT_FALSE(r.whole_log()) << "only the component is re-resolved";
  EXPECT_EQ(r.events_replayed(), static_cast<int64_t>(SupportStory().size()));
  ASSERT_EQ(r.entity_ids_size(), 2);
  EXPECT_EQ(r.entity_ids(0), merged) << "alice's part founded the person: it keeps the id";
  EXPECT_EQ(QueryScalar(url_, "SELECT created_at FROM persons WHERE person_id = '" + merged + "'"), created)
      << "and its creation time";
  EXPECT_NE(r.entity_ids(1), merged);
  EXPECT_FALSE(r.entity_ids(1).empty());

  v1::Person alice, bob;
  ASSERT_EQ(PersonOf("email", "alice@acme.io", &alice), r.entity_ids(0));
  ASSERT_EQ(PersonOf("email", "bob@acme.io", &bob), r.entity_ids(1));
  EXPECT_EQ(alice.name(), "Alice");
  EXPECT_EQ(alice.title(), "CTO");
  EXPECT_EQ(alice.email(), "alice@acme.io");
  EXPECT_EQ(bob.name(), "Bob");
  EXPECT_EQ(bob.title(), "CFO");
  EXPECT_EQ(bob.email(), "bob@acme.io");
  EXPECT_EQ(MembershipRole(alice.person_id()), "cto");
  EXPECT_EQ(MembershipRole(bob.person_id()), "cfo");
  // support@ stays with the part that saw it first; bob's timeline is his own events.
  EXPECT_EQ(Timeline(bob.person_id()), (std::vector<std::string>{"crm-bob", "mail-bob"}));
  const auto at = Timeline(alice.person_id());
  EXPECT_TRUE(std::count(at.begin(), at.end(), "crm-alice") && std::count(at.begin(), at.end(), "mail-alice"));
  EXPECT_FALSE(std::count(at.begin(), at.end(), "mail-bob"));

  // Re-sending the rule changes nothing.
  const auto again = UnlinkPair(Id("email", "bob@acme.io"), Id("email", "alice@acme.io"));
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.rule().rule_id(), r.rule().rule_id());

  // Both persons' history says when, why, by which rule and into which parts it was split (once).
  for (const std::string& id : {r.entity_ids(0), r.entity_ids(1)}) {
    v1::GetPersonHistoryRequest hr;
    hr.set_person_id(id);
    v1::EntityHistory hist;
    grpc::ClientContext hctx;
    ASSERT_TRUE(query_->GetPersonHistory(&hctx, hr, &hist).ok());
    ASSERT_EQ(hist.splits_size(), 1) << hist.DebugString();
    const auto& sp = hist.splits(0);
    EXPECT_EQ(sp.cause(), "link_rule_added");
    EXPECT_EQ(sp.rule_id(), r.rule().rule_id());
    EXPECT_EQ(sp.reason(), "different people");
    EXPECT_GT(sp.at().seconds(), 0);
    EXPECT_EQ(std::vector<std::string>(sp.before_ids().begin(), sp.before_ids().end()),
              std::vector<std::string>{merged});
    std::vector<std::string> parts{r.entity_ids(0), r.entity_ids(1)};
    std::sort(parts.begin(), parts.end());
    EXPECT_EQ(std::vector<std::string>(sp.after_ids().begin(), sp.after_ids().end()), parts);
  }

  // A new event carrying the same link does not merge them again: quarantined with the rule as reason.
  Ingest({MakeEvent("crm-both", 4, {{{{"email", "alice@acme.io"}, {"email", "bob@acme.io"}}}})});
  EXPECT_NE(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io"));
  v1::ListQuarantinedEdgesRequest lq;
  v1::ListQuarantinedEdgesResponse qs;
  grpc::ClientContext qctx;
  ASSERT_TRUE(admin_->ListQuarantinedEdges(&qctx, lq, &qs).ok());
  bool found = false;
  for (const auto& q : qs.edges()) {
    found |= q.event_id() == "crm-both" && q.reason() == "cannot-link rule " + std::to_string(r.rule().rule_id());
  }
  EXPECT_TRUE(found) << qs.DebugString();

  v1::ListLinkRulesResponse rules;
  grpc::ClientContext lctx;
  ASSERT_TRUE(admin_->ListLinkRules(&lctx, v1::ListLinkRulesRequest(), &rules).ok());
  ASSERT_EQ(rules.rules_size(), 1);
  EXPECT_EQ(rules.rules(0).a().value(), "alice@acme.io");

  ExpectRebuildAgrees("after unlink and a later event");
  EXPECT_EQ(PersonOf("email", "alice@acme.io"), r.entity_ids(0));
  EXPECT_EQ(PersonOf("email", "bob@acme.io"), r.entity_ids(1));
}

TEST_F(UnlinkErasureTest, ChainSplitsInTheMiddleAndRemovingTheRuleMergesAgain) {
  Start(kRoleAccountsOff);
  Ingest({MakeEvent("c1", 0, {{{{"user_id", "A"}, {"email", "b@x.io"}}, {{"name", "AB"}}}}),
          MakeEvent("c2", 1, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}}}),
          MakeEvent("c3", 2, {{{{"email", "c@x.io"}, {"email", "d@x.io"}}, {{"name", "CD"}}}})});
  const std::string all = PersonOf("user_id", "A");
  ASSERT_EQ(PersonOf("email", "d@x.io"), all);
  v1::Person p;
  PersonOf("user_id", "A", &p);
  EXPECT_EQ(p.name(), "CD");

  Ingest({MakeEvent("c4", 3, {{{{"email", "elsewhere@x.io"}}}})});  // another person: not re-resolved
  const auto r = UnlinkPair(Id("email", "b@x.io"), Id("email", "c@x.io"));
  EXPECT_FALSE(r.whole_log());
  EXPECT_EQ(r.events_replayed(), 3);
  const std::string ab = PersonOf("user_id", "A", &p);
  EXPECT_EQ(ab, all);
  EXPECT_EQ(PersonOf("email", "b@x.io"), ab);
  EXPECT_EQ(p.name(), "AB") << "traits recomputed from the part's own rows";
  v1::Person cd;
  EXPECT_EQ(PersonOf("email", "d@x.io", &cd), PersonOf("email", "c@x.io"));
  EXPECT_NE(cd.person_id(), ab);
  EXPECT_EQ(cd.name(), "CD");
  EXPECT_EQ(cd.identifiers_size(), 2);
  ExpectRebuildAgrees("after the chain split");

  v1::RemoveLinkRuleRequest rm;
  rm.set_rule_id(r.rule().rule_id());
  v1::UnlinkResponse removed;
  grpc::ClientContext ctx;
  auto s = admin_->RemoveLinkRule(&ctx, rm, &removed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(removed.whole_log());
  EXPECT_EQ(removed.events_replayed(), 3);
  EXPECT_EQ(PersonOf("email", "d@x.io"), all) << "removing the rule merges what the log links";
  EXPECT_EQ(PersonOf("user_id", "A", &p), all);
  {  // The history holds the split and the merge back, newest first.
    v1::GetPersonHistoryRequest hr;
    hr.set_person_id(all);
    v1::EntityHistory hist;
    grpc::ClientContext hctx;
    ASSERT_TRUE(query_->GetPersonHistory(&hctx, hr, &hist).ok());
    ASSERT_EQ(hist.splits_size(), 2) << hist.DebugString();
    EXPECT_EQ(hist.splits(0).cause(), "link_rule_removed");
    EXPECT_EQ(hist.splits(0).before_ids_size(), 2);
    EXPECT_EQ(hist.splits(0).after_ids_size(), 1);
    EXPECT_EQ(hist.splits(1).cause(), "link_rule_added");
  }
  EXPECT_EQ(p.name(), "CD");
  ExpectRebuildAgrees("after removing the rule");
  grpc::ClientContext ctx2;
  EXPECT_EQ(admin_->RemoveLinkRule(&ctx2, rm, &removed).error_code(), grpc::StatusCode::NOT_FOUND);
}

// An unlink re-resolves what batches have resolved (up to the watermark); events ingested but not resolved yet
// are left to the next batch, which applies them under the rule on the graph reloaded after the unlink.
TEST_F(UnlinkErasureTest, EventsNotYetResolvedAtAnUnlinkAreResolvedUnderItsRuleNext) {
  Start(kRoleAccountsOff);
  Ingest({MakeEvent("c1", 0, {{{{"user_id", "A"}, {"email", "b@x.io"}}, {{"name", "AB"}}}}),
          MakeEvent("c2", 1, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}}}),
          MakeEvent("c3", 2, {{{{"email", "c@x.io"}, {"email", "d@x.io"}}, {{"name", "CD"}}}})});
  // An older transaction still running holds the resolver below the next events (pg_snapshot_xmin).
  pqxx::connection holder(url_);
  pqxx::work hold(holder);
  hold.exec("SELECT pg_current_xact_id()");
  Ingest({MakeEvent("c5", 3, {{{{"email", "c@x.io"}, {"email", "e@x.io"}}}}),
          MakeEvent("c6", 4, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}, {{"name", "again"}}}})},
         /*one_pass=*/true);
  const auto r = UnlinkPair(Id("email", "b@x.io"), Id("email", "c@x.io"));
  EXPECT_FALSE(r.whole_log());
  EXPECT_EQ(r.events_replayed(), 3) << "c5 and c6 are past the watermark";
  EXPECT_EQ(PersonOf("email", "e@x.io"), "") << "not resolved yet";
  hold.commit();
  ResolveAll();
  const std::string cd = PersonOf("email", "c@x.io");
  EXPECT_EQ(PersonOf("email", "e@x.io"), cd);
  EXPECT_NE(PersonOf("email", "b@x.io"), cd) << "c6 asserts the link again: quarantined by the rule";
  ExpectRebuildAgrees("after the batch that followed the unlink");
}

// Groups split the same way: their memberships follow each part, the persons' side loaded as it is.
TEST_F(UnlinkErasureTest, GroupUnlinkSplitsTheGroupAndItsMemberships) {
  Start(kRoleAccountsOff);
  auto event = [](const std::string& id, int64_t t, const std::string& domain, const std::string& person) {
    v1::Event e = MakeEvent(id, t, {{{{"email", person}}}});
    auto* g = e.add_groups();
    g->set_role("account");
    for (const auto& [ty, v] : Ids{{"domain", domain}, {"shopify_id", "shop-1"}}) {
      auto* i = g->add_identifiers();
      i->set_type(ty);
      i->set_value(v);
    }
    (*g->mutable_traits())["company_name"] = domain;
    auto* ms = e.add_memberships();
    ms->mutable_person()->set_type("email");
    ms->mutable_person()->set_value(person);
    ms->mutable_group()->set_type("domain");
    ms->mutable_group()->set_value(domain);
    ms->set_role("member");
    return e;
  };
  Ingest({event("g1", 0, "acme.io", "alice@x.io"), event("g2", 1, "beta.io", "bob@x.io")});
  auto group_of = [&](const std::string& domain) {
    return QueryScalar(url_,
                       "SELECT group_id FROM resolved_group_identifiers WHERE identifier_value = '" + domain + "'");
  };
  const std::string both = group_of("acme.io");
  ASSERT_EQ(group_of("beta.io"), both) << "the shared shop id merged them";
  v1::UnlinkRequest req;
  req.set_kind(v1::ENTITY_KIND_GROUP);
  *req.mutable_a() = Id("domain", "acme.io");
  *req.mutable_b() = Id("domain", "beta.io");
  req.set_reason("two companies");
  v1::UnlinkResponse out;
  auto st = Unlink(req, &out);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(out.whole_log());
  EXPECT_EQ(out.events_replayed(), 2);
  EXPECT_EQ(group_of("acme.io"), both) << "acme.io founded the group";
  const std::string beta = group_of("beta.io");
  EXPECT_NE(beta, both);
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT string_agg(p.identifier_value, ',') FROM memberships m JOIN "
                        "resolved_person_identifiers p USING (person_id) WHERE m.group_id = '" +
                            beta + "'"),
            "bob@x.io");
  EXPECT_EQ(QueryScalar(url_, "SELECT company_name FROM groups WHERE group_id = '" + beta + "'"), "beta.io");
  ExpectRebuildAgrees("after the group split");
}

// A dry run says what an unlink (and the removal of its rule) would do without changing anything, by re-resolving
// only the component involved; the real change then does exactly that.
TEST_F(UnlinkErasureTest, DryRunPreviewsTheSplitAndTheRemergeExactlyAndChangesNothing) {
  Start(kRoleAccountsOff);
  auto story = SupportStory();
  story.push_back(MakeEvent("other", 5, {{{{"email", "carol@else.io"}}}}));  // not part of the component
  Ingest(story);
  const std::string merged = PersonOf("email", "alice@acme.io");
  const auto before = DumpResolvedTables(url_);

  v1::UnlinkRequest req;
  *req.mutable_a() = Id("email", "alice@acme.io");
  *req.mutable_b() = Id("email", "Bob@acme.io");
  req.set_reason("different people");
  const auto dry = DryRun(req);
  EXPECT_EQ(dry.rule().rule_id(), 0) << "no rule was stored";
  EXPECT_EQ(dry.rule().b().value(), "bob@acme.io") << "validated and normalized as for real";
  const auto& p = dry.preview();
  EXPECT_EQ(std::vector<std::string>(p.current_entity_ids().begin(), p.current_entity_ids().end()),
            std::vector<std::string>{merged});
  EXPECT_EQ(p.identifiers(), 3) << "alice@, bob@, support@: carol@ is not involved";
  EXPECT_EQ(p.events(), 4);
  EXPECT_FALSE(p.identifier_rules_pending());
  ASSERT_EQ(p.parts_size(), 2) << dry.DebugString();
  EXPECT_EQ(p.parts(0).entity_id(), merged);
  EXPECT_TRUE(p.parts(0).existing());
  EXPECT_EQ(p.parts(0).identifier_count(), 2);
  EXPECT_FALSE(p.parts(1).existing());
  ASSERT_EQ(p.parts(1).identifiers_size(), 1);
  EXPECT_EQ(p.parts(1).identifiers(0).value(), "bob@acme.io");
  ASSERT_EQ(dry.entity_ids_size(), 2);
  EXPECT_EQ(dry.entity_ids(0), merged);
  EXPECT_EQ(dry.entity_ids(1), p.parts(1).entity_id());

  // Nothing changed: no rule, the same tables.
  v1::ListLinkRulesResponse rules;
  grpc::ClientContext lctx;
  ASSERT_TRUE(admin_->ListLinkRules(&lctx, v1::ListLinkRulesRequest(), &rules).ok());
  EXPECT_EQ(rules.rules_size(), 0);
  const auto after_dry = DumpResolvedTables(url_);
  for (const auto& [table, rows] : before) {
    EXPECT_EQ(rows, after_dry.at(table)) << "a dry run changed " << table << ": "
                                         << FirstDifference(rows, after_dry.at(table));
  }

  const auto real = UnlinkPair(Id("email", "alice@acme.io"), Id("email", "bob@acme.io"));
  EXPECT_EQ(std::vector<std::string>(real.entity_ids().begin(), real.entity_ids().end()),
            std::vector<std::string>(dry.entity_ids().begin(), dry.entity_ids().end()));
  ExpectPreviewHeld(p, "after the unlink");

  // A dry run of the same rule again: it exists (its id), and nothing would change.
  const auto again = DryRun(req);
  EXPECT_EQ(again.rule().rule_id(), real.rule().rule_id());
  EXPECT_EQ(again.preview().parts_size(), 2);

  // Removing the rule, previewed over HTTP: the two persons would merge back under the old id.
  const auto r = HttpPost(app_->http_port(),
                          "/v1/admin/link-rules/" + std::to_string(real.rule().rule_id()) + ":remove?dry_run=true", "");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"dry_run\":true"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"entity_id\":\"" + merged + "\",\"existing\":true,\"identifier_count\":\"3\""),
            std::string::npos)
      << r.body;
  EXPECT_NE(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io")) << "the dry run changed nothing";
  EXPECT_EQ(HttpPost(app_->http_port(), "/v1/admin/link-rules/1:remove?dry_run=maybe", "").status, 400);

  v1::RemoveLinkRuleRequest rm;
  rm.set_rule_id(real.rule().rule_id());
  rm.set_dry_run(true);
  v1::UnlinkResponse remerge;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx, rm, &remerge).ok());
  ASSERT_EQ(remerge.preview().parts_size(), 1);
  rm.set_dry_run(false);
  v1::UnlinkResponse removed;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx2, rm, &removed).ok());
  ExpectPreviewHeld(remerge.preview(), "after removing the rule");
  EXPECT_EQ(PersonOf("email", "bob@acme.io"), merged);
}

// An edge_id a source reuses links across events: the preview of removing a rule that suppressed one event's use of
// it must follow that edge to the other events' rows (which are not in the suppressed part's entity).
TEST_F(UnlinkErasureTest, DryRunFollowsAnEdgeIdReusedByOtherEvents) {
  Start(kRoleAccountsOff);
  Mention deal{{{"email", "a@deal.io"}, {"email", "b@deal.io"}}};
  deal.edge_id = "deal-7";
  Mention later{{{"email", "c@deal.io"}}};
  later.edge_id = "deal-7";
  Ingest({MakeEvent("d1", 0, {deal}), MakeEvent("d2", 1, {later})});
  const std::string all = PersonOf("email", "a@deal.io");
  ASSERT_EQ(PersonOf("email", "c@deal.io"), all) << "the reused edge_id links d2 to d1";

  v1::UnlinkRequest req;
  req.set_event_id("d2");
  req.set_edge_id("deal-7");
  req.set_reason("d2 reused the deal id by mistake");
  const auto split = DryRun(req);
  ASSERT_EQ(split.preview().parts_size(), 2) << split.DebugString();
  v1::UnlinkResponse out;
  ASSERT_TRUE(Unlink(req, &out).ok());
  ExpectPreviewHeld(split.preview(), "after the edge rule");
  ASSERT_NE(PersonOf("email", "c@deal.io"), PersonOf("email", "a@deal.io"));

  v1::RemoveLinkRuleRequest rm;
  rm.set_rule_id(out.rule().rule_id());
  rm.set_dry_run(true);
  v1::UnlinkResponse would;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx, rm, &would).ok());
  EXPECT_EQ(would.preview().identifiers(), 3) << "c@'s part alone would miss the other events under deal-7";
  ASSERT_EQ(would.preview().parts_size(), 1) << would.DebugString();
  EXPECT_EQ(would.preview().parts(0).entity_id(), all);
  rm.set_dry_run(false);
  grpc::ClientContext ctx2;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx2, rm, &out).ok());
  ExpectPreviewHeld(would.preview(), "after removing the edge rule");
}

TEST_F(UnlinkErasureTest, UnlinkErrorsNameWhatIsWrong) {
  Start(kRoleAccountsOff);
  Ingest(SupportStory());
  v1::UnlinkRequest req;
  v1::UnlinkResponse out;
  EXPECT_EQ(Unlink(req, &out).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  *req.mutable_a() = Id("email", "alice@acme.io");
  *req.mutable_b() = Id("email", "nobody@acme.io");
  req.set_reason("x");
  auto s = Unlink(req, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("b: no person identifier of type 'email'"), std::string::npos) << s.error_message();
  EXPECT_EQ(s.error_message().find("nobody"), std::string::npos) << "no identifier value in errors";
  req.clear_reason();
  *req.mutable_b() = Id("email", "bob@acme.io");
  s = Unlink(req, &out);
  EXPECT_NE(s.error_message().find("reason"), std::string::npos) << s.error_message();
  // An edge rule: the event's link is wrong.
  v1::UnlinkRequest edge;
  edge.set_event_id("crm-bob");
  edge.set_edge_id("nope");
  edge.set_reason("wrong sync");
  s = Unlink(edge, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("edge_id 'nope'"), std::string::npos) << s.error_message();
}

TEST_F(UnlinkErasureTest, SuppressedEdgeRuleDetachesThatEventsLink) {
  Start(kRoleAccountsOff);
  Ingest(SupportStory());
  // The edge of crm-bob's mention, as ingest derived it (the event's only person mention).
  const std::string edge =
      QueryScalar(url_, "SELECT edge_id FROM person_identifiers WHERE event_id = 'crm-bob' LIMIT 1");
  ASSERT_FALSE(edge.empty());
  v1::UnlinkRequest req;
  req.set_event_id("crm-bob");
  req.set_edge_id(edge);
  req.set_reason("this sync joined two people");
  v1::UnlinkResponse out;
  auto s = Unlink(req, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io"));
  ExpectRebuildAgrees("after an edge rule");
}

TEST_F(UnlinkErasureTest, BlocklistChangeAppliedByRebuildSplitsTheSupportCase) {
  Start(kRoleAccountsOff);
  Ingest(SupportStory());
  ASSERT_EQ(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io"));
  // The operator adds support@ to the blocklist (here: role accounts back on), reloads, and rebuilds.
  SetProtection("[blocklist]\nemail = support@acme.io\n");
  v1::RebuildRequest req;
  req.set_wait(true);
  v1::RebuildResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->Rebuild(&ctx, req, &resp).ok());
  EXPECT_NE(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io"));
  EXPECT_EQ(PersonOf("email", "support@acme.io"), "") << "a blocked identifier resolves nowhere";
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT count(*) FROM person_identifiers WHERE identifier_value = 'support@acme.io' "
                        "AND is_blocked"),
            "2");
}

// A blocklist entry applied to stored data by a rebuild splits with the same id rule as an unlink: the part with
// the most identifiers keeps the id though the founder is in the other part; a second rebuild changes nothing.
TEST_F(UnlinkErasureTest, ABlocklistRebuildGivesTheIdToTheLargestPart) {
  Start(kRoleAccountsOff);
  Ingest({MakeEvent("b1", 0, {{{{"user_id", "F"}, {"email", "shared@acme.io"}}}}),
          MakeEvent("b2", 1, {{{{"email", "shared@acme.io"}, {"email", "b@x.io"}}}}),
          MakeEvent("b3", 2, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}}})});
  const std::string all = PersonOf("user_id", "F");
  ASSERT_EQ(PersonOf("email", "c@x.io"), all);
  SetProtection("[blocklist]\nemail = shared@acme.io\n");
  v1::RebuildRequest req;
  req.set_wait(true);
  v1::RebuildResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->Rebuild(&ctx, req, &resp).ok());
  EXPECT_EQ(PersonOf("email", "b@x.io"), all) << "b and c, two identifiers against one, keep the id";
  EXPECT_EQ(PersonOf("email", "c@x.io"), all);
  const std::string founder = PersonOf("user_id", "F");
  EXPECT_FALSE(founder.empty());
  EXPECT_NE(founder, all);
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM entity_id_overrides WHERE rule_id IS NULL"), "2");
  ExpectRebuildAgrees("a second rebuild");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM entity_id_overrides"), "2") << "nothing more moved";
}

TEST_F(UnlinkErasureTest, EventRuleRemovesOnlyTheLinksNothingElseAsserts) {
  Start(kRoleAccountsOff);
  // A bad CRM sync (crm-9) links alice to support@ and, in a second mention, carol to dave; a mail event also
  // links alice to support@ on its own.
  Ingest({MakeEvent("crm-9", 0,
                    {{{{"email", "alice@acme.io"}, {"email", "support@acme.io"}}},
                     {{{"email", "carol@acme.io"}, {"email", "dave@acme.io"}}}}),
          MakeEvent("mail-1", 1, {{{{"email", "alice@acme.io"}, {"email", "support@acme.io"}}}})});
  ASSERT_EQ(PersonOf("email", "carol@acme.io"), PersonOf("email", "dave@acme.io"));
  v1::UnlinkRequest req;
  req.set_event_id("crm-9");  // no edge_id: every link of the event
  req.set_reason("the CRM sync of the 9th was wrong");
  v1::UnlinkResponse out;
  auto s = Unlink(req, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(out.created());
  EXPECT_EQ(out.rule().event_id(), "crm-9");
  EXPECT_EQ(out.rule().edge_id(), "");
  EXPECT_EQ(out.entity_ids_size(), 3) << "alice+support, carol, dave";
  EXPECT_NE(PersonOf("email", "carol@acme.io"), PersonOf("email", "dave@acme.io")) << "only crm-9 linked them";
  EXPECT_EQ(PersonOf("email", "alice@acme.io"), PersonOf("email", "support@acme.io")) << "mail-1 asserts it too";
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT count(*) FROM quarantined_edges WHERE event_id = 'crm-9' AND reason = "
                        "'suppressed by link rule " +
                            std::to_string(out.rule().rule_id()) + "'"),
            "2");
  ExpectRebuildAgrees("after an event rule");
  // The same rule again changes nothing; a second rule on mail-1 removes the last support of alice-support@.
  v1::UnlinkResponse again;
  ASSERT_TRUE(Unlink(req, &again).ok());
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.rule().rule_id(), out.rule().rule_id());
  req.set_event_id("mail-1");
  ASSERT_TRUE(Unlink(req, &again).ok());
  EXPECT_NE(PersonOf("email", "alice@acme.io"), PersonOf("email", "support@acme.io"));
  // An event without identifier rows is named in the error.
  req.set_event_id("no-such-event");
  s = Unlink(req, &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("event 'no-such-event' has no person identifier rows"), std::string::npos)
      << s.error_message();
  // Over HTTP the same rule reads back with an empty edge_id.
  const auto r = HttpGet(app_->http_port(), "/v1/admin/link-rules");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"event_id\":\"crm-9\""), std::string::npos) << r.body;
  // Removing the first rule links carol and dave again.
  v1::RemoveLinkRuleRequest rm;
  rm.set_rule_id(out.rule().rule_id());
  v1::UnlinkResponse removed;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx, rm, &removed).ok());
  EXPECT_EQ(PersonOf("email", "carol@acme.io"), PersonOf("email", "dave@acme.io"));
  ExpectRebuildAgrees("after removing the event rule");
}

constexpr const char* kEve = "eve@evil.io";
constexpr const char* kEveUser = "u-eve-7";

std::vector<v1::Event> EveAndFrank() {
  return {MakeEvent("x1", 0, {{{{"email", kEve}, {"user_id", kEveUser}}, {{"name", "Eve Adams"}}}}),
          MakeEvent("x2", 1,
                    {{{{"email", kEve}}, {{"title", "Spy"}}, "sender"},
                     {{{"email", "frank@x.io"}}, {{"name", "Frank"}}, "recipient"}}),
          MakeEvent("x3", 2, {{{{"email", "frank@x.io"}}}}),
          MakeEvent("x4", 3, {{{{"email", kEve}}}}, {{kEve, "member"}, {"frank@x.io", "member"}})};
}

TEST_F(UnlinkErasureTest, ErasureLeavesNothingOfThePersonAndIsSuppressedAtIngest) {
  Start(kRoleAccountsOff);
  Ingest(EveAndFrank());
  const std::string eve = PersonOf("email", kEve);
  const std::string frank = PersonOf("email", "frank@x.io");
  ASSERT_FALSE(eve.empty());
  ASSERT_NE(eve, frank);

  // Dry run: counts, nothing changed.
  v1::EraseRequest dry;
  dry.set_dry_run(true);
  auto* t = dry.add_targets();
  *t->mutable_identifier() = Id("email", "EVE@evil.io");
  const auto before = DumpResolvedTables(url_);
  const std::string events_before = QueryScalar(url_, "SELECT count(*) FROM events");
  const auto d = Erase(dry);
  EXPECT_TRUE(d.dry_run());
  EXPECT_TRUE(d.operation_id().empty());
  ASSERT_EQ(d.outcomes_size(), 1);
  EXPECT_EQ(d.outcomes(0).outcome(), "would_erase");
  EXPECT_EQ(d.outcomes(0).identifiers(), 2);
  EXPECT_EQ(d.counts().at("events"), 1) << "x1 only: x2 and x4 have other participants";
  EXPECT_EQ(d.counts().at("persons"), 1);
  EXPECT_EQ(d.counts().at("resolved_person_identifiers"), 2);
  EXPECT_EQ(d.counts().at("membership_identifiers"), 1);
  EXPECT_GE(d.counts().at("person_identifiers"), 4);
  ASSERT_EQ(d.entity_ids_size(), 1);
  EXPECT_EQ(d.entity_ids(0), eve);
  EXPECT_EQ(DumpResolvedTables(url_), before);
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), events_before);
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM erasures"), "0");

  ASSERT_NE(TablesHolding(kEve), "") << "the scan sees the person before the erasure";
  // The real run, by entity id.
  v1::EraseRequest real;
  real.set_request_id("ticket-4711");
  real.add_targets()->set_entity_id(eve);
  const auto e = Erase(real);
  EXPECT_FALSE(e.operation_id().empty());
  EXPECT_FALSE(e.replayed());
  ASSERT_EQ(e.outcomes_size(), 1);
  EXPECT_EQ(e.outcomes(0).outcome(), "erased");
  EXPECT_EQ(e.counts().at("events"), 1);
  EXPECT_EQ(e.erased_hashes_size(), 2);
  EXPECT_FALSE(e.whole_log()) << "only eve's entity (and what the log links to it) is re-resolved";

  for (const std::string& needle :
       {std::string(kEve), std::string(kEveUser), std::string("Eve Adams"), std::string("Spy"), eve}) {
    EXPECT_EQ(TablesHolding(needle), "") << "'" << needle << "' remains";
  }
  EXPECT_EQ(PersonOf("email", kEve), "");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id = 'x1'"), "0");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id IN ('x2', 'x4')"), "2");
  v1::Person f;
  EXPECT_EQ(PersonOf("email", "frank@x.io", &f), frank);
  EXPECT_EQ(f.name(), "Frank");
  EXPECT_EQ(Timeline(frank), (std::vector<std::string>{"x2", "x3"}));
  EXPECT_EQ(MembershipRole(frank), "member");
  // The audit: an entry naming the operation, and the erasure record (hashes only: the scan above covers it).
  v1::ListAuditLogResponse audit;
  grpc::ClientContext actx;
  auto as = admin_->ListAuditLog(&actx, v1::ListAuditLogRequest(), &audit);
  if (as.ok()) {  // open mode has an audit log only when authentication runs; the erasure record always exists
    bool seen = false;
    for (const auto& a : audit.entries()) seen |= a.target() == "erasure:" + e.operation_id();
    EXPECT_TRUE(seen);
  }
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM erasures WHERE operation_id = '" + e.operation_id() +
                                  "' AND cardinality(erased_hashes) = 2 AND 'erased' = ALL(outcomes)"),
            "1");
  ExpectRebuildAgrees("after the erasure");

  // Re-sending the request: its recorded result, nothing erased again.
  const auto dump = DumpResolvedTables(url_);
  const auto replay = Erase(real);
  EXPECT_TRUE(replay.replayed());
  EXPECT_EQ(replay.operation_id(), e.operation_id());
  EXPECT_EQ(replay.counts().at("events"), 1);
  // A second erasure of the same person (new request): a clean no-op.
  v1::EraseRequest second;
  second.set_request_id("ticket-4712");
  *second.add_targets()->mutable_identifier() = Id("email", kEve);
  const auto s2 = Erase(second);
  ASSERT_EQ(s2.outcomes_size(), 1);
  EXPECT_EQ(s2.outcomes(0).outcome(), "not_found");
  EXPECT_EQ(DumpResolvedTables(url_), dump);

  // The identifier comes back with an event: suppressed at ingest.
  auto resp = Ingest({MakeEvent("x5", 4, {{{{"email", kEve}}, {{"name", "Eve again"}}}, {{{"email", "frank@x.io"}}}}),
                      MakeEvent("x6", 5, {{{{"email", kEve}}}})});
  EXPECT_EQ(resp.accepted(), 2);
  EXPECT_EQ(resp.suppressed_identifiers(), 2);
  EXPECT_EQ(resp.suppressed_events(), 1);
  EXPECT_EQ(TablesHolding(kEve), "");
  EXPECT_EQ(TablesHolding("Eve again"), "");
  EXPECT_EQ(Timeline(frank), (std::vector<std::string>{"x2", "x3", "x5"}));

  // Lifting the suppression lets it in again.
  v1::ListSuppressionsResponse sup;
  grpc::ClientContext sctx;
  ASSERT_TRUE(admin_->ListSuppressions(&sctx, v1::ListSuppressionsRequest(), &sup).ok());
  EXPECT_EQ(sup.suppressions_size(), 2);
  v1::LiftSuppressionRequest lift;
  *lift.mutable_identifier() = Id("email", kEve);
  v1::LiftSuppressionResponse lifted;
  grpc::ClientContext lctx;
  ASSERT_TRUE(admin_->LiftSuppression(&lctx, lift, &lifted).ok());
  grpc::ClientContext lctx2;
  EXPECT_EQ(admin_->LiftSuppression(&lctx2, lift, &lifted).error_code(), grpc::StatusCode::NOT_FOUND);
  Ingest({MakeEvent("x7", 6, {{{{"email", kEve}}}})});
  EXPECT_FALSE(PersonOf("email", kEve).empty());
}

// The id rule of a split: the part with the most identifiers keeps the entity id even when the founder is in the
// other part, which gets a new id; a rebuild gives the same ids, removing the rule gives the merged entity its id
// back, and erasing the founder's identifier leaves the person its id.
TEST_F(UnlinkErasureTest, TheLargestPartKeepsTheIdWhereverTheFounderIs) {
  Start(kRoleAccountsOff);
  Ingest({MakeEvent("k1", 0, {{{{"user_id", "F"}, {"email", "a@x.io"}}}}),
          MakeEvent("k2", 1, {{{{"email", "a@x.io"}, {"email", "b@x.io"}}}}),
          MakeEvent("k3", 2, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}}}),
          MakeEvent("k4", 3, {{{{"email", "c@x.io"}, {"email", "d@x.io"}}}})});
  const std::string all = PersonOf("user_id", "F");
  ASSERT_EQ(PersonOf("email", "d@x.io"), all);
  const auto r = UnlinkPair(Id("email", "a@x.io"), Id("email", "b@x.io"));
  EXPECT_FALSE(r.whole_log());
  EXPECT_EQ(PersonOf("email", "b@x.io"), all) << "three identifiers against two: b, c, d keep the id";
  EXPECT_EQ(PersonOf("email", "d@x.io"), all);
  const std::string founders = PersonOf("user_id", "F");
  EXPECT_NE(founders, all);
  EXPECT_FALSE(founders.empty());
  EXPECT_EQ(PersonOf("email", "a@x.io"), founders);
  ExpectGraphAgrees("after the split");
  ExpectRebuildAgrees("after a split whose founder is in the smaller part");

  // Later events keep both where they are.
  Ingest({MakeEvent("k5", 4, {{{{"user_id", "F"}, {"email", "e@x.io"}}}}),
          MakeEvent("k6", 5, {{{{"email", "d@x.io"}, {"email", "f@x.io"}}}})});
  EXPECT_EQ(PersonOf("email", "e@x.io"), founders);
  EXPECT_EQ(PersonOf("email", "f@x.io"), all);
  ExpectRebuildAgrees("after later events");

  v1::RemoveLinkRuleRequest rm;
  rm.set_rule_id(r.rule().rule_id());
  v1::UnlinkResponse removed;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->RemoveLinkRule(&ctx, rm, &removed).ok());
  EXPECT_EQ(PersonOf("user_id", "F"), all) << "merged again under the id it had";
  EXPECT_EQ(PersonOf("email", "f@x.io"), all);
  ExpectRebuildAgrees("after removing the rule");

  // Erasing the founder's identifier: what remains is the same person.
  v1::EraseRequest req;
  req.set_request_id("founder");
  auto* t = req.add_targets();
  *t->mutable_identifier() = Id("user_id", "F");
  t->set_identifier_only(true);
  const auto e = Erase(req);
  ASSERT_EQ(e.outcomes_size(), 1);
  EXPECT_EQ(e.outcomes(0).outcome(), "erased");
  EXPECT_EQ(PersonOf("email", "a@x.io"), all);
  EXPECT_EQ(PersonOf("email", "f@x.io"), all);
  ExpectRebuildAgrees("after erasing the founder's identifier");
}

TEST_F(UnlinkErasureTest, ErasingOneIdentifierSplitsWhatItHeldTogether) {
  Start(kRoleAccountsOff);
  Ingest({MakeEvent("c1", 0, {{{{"email", "a@x.io"}, {"email", "b@x.io"}}}}),
          MakeEvent("c2", 1, {{{{"email", "b@x.io"}, {"email", "c@x.io"}}}})});
  ASSERT_EQ(PersonOf("email", "a@x.io"), PersonOf("email", "c@x.io"));
  v1::EraseRequest req;
  req.set_request_id("r1");
  auto* t = req.add_targets();
  *t->mutable_identifier() = Id("email", "b@x.io");
  t->set_identifier_only(true);
  const auto e = Erase(req);
  ASSERT_EQ(e.outcomes_size(), 1);
  EXPECT_EQ(e.outcomes(0).outcome(), "erased");
  EXPECT_EQ(e.outcomes(0).identifiers(), 1);
  EXPECT_EQ(PersonOf("email", "b@x.io"), "");
  EXPECT_FALSE(PersonOf("email", "a@x.io").empty());
  EXPECT_FALSE(PersonOf("email", "c@x.io").empty());
  EXPECT_NE(PersonOf("email", "a@x.io"), PersonOf("email", "c@x.io"));
  EXPECT_EQ(TablesHolding("b@x.io"), "");
  ExpectRebuildAgrees("after erasing one identifier");
  // Bad inputs are per-input outcomes, not a failed request.
  v1::EraseRequest bad;
  bad.set_request_id("r2");
  bad.add_targets()->set_entity_id("nope");
  const auto b = Erase(bad);
  ASSERT_EQ(b.outcomes_size(), 1);
  EXPECT_EQ(b.outcomes(0).outcome(), "failed");
  v1::EraseRequest no_id;
  no_id.add_targets()->set_entity_id("per_x");
  grpc::Status st;
  Erase(no_id, &st);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("request_id"), std::string::npos);
}

TEST_F(UnlinkErasureTest, HttpMirrors) {
  Start(kRoleAccountsOff);
  Ingest(SupportStory());
  const int port = app_->http_port();
  auto r =
      HttpPost(port, "/v1/admin/link-rules",
               R"({"a": {"type": "email", "value": "alice@acme.io"}, "b": {"type": "email", "value": "bob@acme.io"},
                        "reason": "two colleagues"})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"created\":true"), std::string::npos) << r.body;
  r = HttpGet(port, "/v1/admin/link-rules");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("two colleagues"), std::string::npos) << r.body;
  r = HttpPost(port, "/v1/admin/erasures",
               R"({"dry_run": true, "targets": [{"identifier": {"type": "email", "value": "bob@acme.io"}}]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("would_erase"), std::string::npos) << r.body;
  r = HttpPost(port, "/v1/admin/erasures", R"({"targets": [{"entity_id": "per_x"}]})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("request_id"), std::string::npos) << r.body;
  r = HttpPost(port, "/v1/admin/link-rules/1:remove", "");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(PersonOf("email", "alice@acme.io"), PersonOf("email", "bob@acme.io"));
  r = HttpGet(port, "/v1/admin/suppressions");
  EXPECT_EQ(r.status, 200) << r.body;
}

// The property of issue 15: random streams interleaved with random unlinks (pairs in one person, pairs across
// persons, suppressed edges and whole events), rule removals and erasures (whole persons and single identifiers), with
// duplicates and back-dated events. After every step every cannot-link rule holds and no erased identifier resolves or
// is stored anywhere (a later event carrying it is suppressed); every few steps, and at the end, a full rebuild leaves
// every resolved and final table exactly as the operations left them. Every link-rule change is previewed first (a dry
// run re-resolving only the component involved): the real change must give exactly the preview. Env: NEXUS_SEED
// (printed on every run), NEXUS_UNLINK_STEPS (default 30).
TEST_F(UnlinkErasureTest, RandomStreamsUnlinksAndErasuresAgreeWithARebuild) {
  uint64_t seed = std::random_device{}();
  if (const char* e = std::getenv("NEXUS_SEED"); e && *e) seed = std::strtoull(e, nullptr, 10);
  int steps = 30;
  if (const char* e = std::getenv("NEXUS_UNLINK_STEPS"); e && *e) steps = std::atoi(e);
  std::cout << "[ unlink/erase property ] seed " << seed << " (NEXUS_SEED=" << seed << " reproduces), " << steps
            << " steps (NEXUS_UNLINK_STEPS)" << std::endl;
  std::mt19937_64 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  Start(kRoleAccountsOff);

  // Values are delimited ("m3x@", "uid3x") so that no value is a substring of another in the table scans.
  auto random_id = [&]() -> std::pair<std::string, std::string> {
    if (pick(5) == 0) return {"user_id", "uid" + std::to_string(pick(6)) + "x"};
    return {"email", "m" + std::to_string(pick(20)) + "x@p.io"};
  };
  std::vector<v1::Event> sent;
  int next_event = 0;
  auto random_event = [&]() {
    std::vector<Mention> persons;
    std::vector<std::pair<std::string, std::string>> memberships;
    const int mentions = 1 + pick(2);
    for (int m = 0; m < mentions; ++m) {
      Mention mention;
      const int ids = 1 + pick(2);
      for (int i = 0; i < ids; ++i) mention.ids.push_back(random_id());
      if (pick(2) == 0) mention.traits["name"] = "Name" + std::to_string(pick(50));
      if (pick(4) == 0) mention.traits["title"] = "Title" + std::to_string(pick(10));
      mention.role = m == 0 ? "sender" : "recipient";
      // Now and then an explicit edge_id that other events reuse: it links across events.
      if (pick(6) == 0) mention.edge_id = "deal" + std::to_string(pick(4));
      if (pick(4) == 0 && mention.ids[0].first == "email") {
        memberships.emplace_back(mention.ids[0].second, pick(2) ? "member" : "admin");
      }
      persons.push_back(std::move(mention));
    }
    // Back-dated now and then: occurred_at is random, ingest order is the log order.
    return MakeEvent("ev" + std::to_string(next_event++), pick(1000), persons, memberships);
  };
  // person -> its identifiers, from the database.
  auto persons_now = [&]() {
    std::map<std::string, std::vector<std::pair<std::string, std::string>>> out;
    pqxx::connection c(url_);
    pqxx::nontransaction n(c);
    for (const auto& row : n.exec(
             "SELECT person_id, identifier_type, identifier_value FROM resolved_person_identifiers ORDER BY 1, 2, 3")) {
      out[row[0].c_str()].emplace_back(row[1].c_str(), row[2].c_str());
    }
    return out;
  };
  auto rules_now = [&]() {
    v1::ListLinkRulesRequest req;
    req.set_page_size(1000);
    v1::ListLinkRulesResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(admin_->ListLinkRules(&ctx, req, &resp).ok());
    return std::vector<v1::LinkRule>(resp.rules().begin(), resp.rules().end());
  };
  std::set<std::pair<std::string, std::string>> erased;
  int unlinks = 0, removals = 0, erasures = 0, edge_rules = 0, ingests = 0;

  for (int step = 0; step < steps && !HasFatalFailure(); ++step) {
    const auto persons = persons_now();
    const int op = pick(100);
    std::string what;
    std::optional<v1::UnlinkPreview> preview;  // of a link-rule change: checked after it
    if (op < 45 || persons.empty()) {
      std::vector<v1::Event> batch;
      const int n = 1 + pick(6);
      for (int i = 0; i < n; ++i) {
        if (!sent.empty() && pick(8) == 0) {
          batch.push_back(sent[pick(static_cast<int>(sent.size()))]);  // a retry: a duplicate
        } else {
          batch.push_back(random_event());
          sent.push_back(batch.back());
        }
      }
      // A batch must not hold the same event twice.
      std::map<std::string, v1::Event> unique;
      for (auto& e : batch) unique.emplace(e.event_id(), e);
      batch.clear();
      for (auto& [id, e] : unique) batch.push_back(e);
      Ingest(batch);
      ++ingests;
      what = "ingest of " + std::to_string(batch.size()) + " events";
    } else if (op < 70) {
      // Unlink two identifiers: mostly of one person (a split), sometimes of two (a rule against a future merge).
      std::vector<const std::vector<std::pair<std::string, std::string>>*> multi, all;
      for (const auto& [id, ids] : persons) {
        all.push_back(&ids);
        if (ids.size() >= 2) multi.push_back(&ids);
      }
      std::pair<std::string, std::string> a, b;
      if (!multi.empty() && pick(5) != 0) {
        const auto& ids = *multi[pick(static_cast<int>(multi.size()))];
        const int i = pick(static_cast<int>(ids.size()));
        int j = pick(static_cast<int>(ids.size()) - 1);
        if (j >= i) ++j;
        a = ids[i];
        b = ids[j];
      } else if (all.size() >= 2) {
        const int i = pick(static_cast<int>(all.size()));
        int j = pick(static_cast<int>(all.size()) - 1);
        if (j >= i) ++j;
        a = (*all[i])[0];
        b = (*all[j])[0];
      } else {
        continue;
      }
      v1::UnlinkRequest dry;
      *dry.mutable_a() = Id(a.first, a.second);
      *dry.mutable_b() = Id(b.first, b.second);
      dry.set_reason("different people");
      preview = DryRun(dry).preview();
      const auto r = UnlinkPair(Id(a.first, a.second), Id(b.first, b.second));
      EXPECT_FALSE(r.whole_log()) << "a link-rule change re-resolves the affected identifiers only";
      ++unlinks;
      what = "unlink " + a.second + " / " + b.second + " (rule " + std::to_string(r.rule().rule_id()) + ")";
    } else if (op < 75) {
      // The link of one event's mention is wrong: a suppressed-edge rule.
      const std::string row = QueryScalar(url_,
                                          "SELECT event_id || ' ' || edge_id FROM person_identifiers "
                                          "ORDER BY event_id, edge_id OFFSET " +
                                              std::to_string(pick(50)) + " LIMIT 1");
      if (row.empty()) continue;
      v1::UnlinkRequest req;
      req.set_event_id(row.substr(0, row.find(' ')));
      const bool whole_event = pick(2) == 0;
      if (!whole_event) req.set_edge_id(row.substr(row.find(' ') + 1));
      req.set_reason("wrong sync");
      preview = DryRun(req).preview();
      v1::UnlinkResponse out;
      auto s = Unlink(req, &out);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_FALSE(out.whole_log());
      ++edge_rules;
      what = (whole_event ? "event rule on " + req.event_id() : "edge rule on " + row);
    } else if (op < 85) {
      const auto rules = rules_now();
      if (rules.empty()) continue;
      v1::RemoveLinkRuleRequest rm;
      rm.set_rule_id(rules[pick(static_cast<int>(rules.size()))].rule_id());
      rm.set_dry_run(true);
      v1::UnlinkResponse would;
      grpc::ClientContext dctx;
      ASSERT_TRUE(admin_->RemoveLinkRule(&dctx, rm, &would).ok());
      preview = would.preview();
      rm.set_dry_run(false);
      v1::UnlinkResponse removed;
      grpc::ClientContext ctx;
      auto s = admin_->RemoveLinkRule(&ctx, rm, &removed);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_FALSE(removed.whole_log());
      ++removals;
      what = "remove rule " + std::to_string(rm.rule_id());
    } else {
      auto it = persons.begin();
      std::advance(it, pick(static_cast<int>(persons.size())));
      const auto& ids = it->second;
      const auto target = ids[pick(static_cast<int>(ids.size()))];
      const bool only = pick(2) == 0;
      v1::EraseRequest req;
      req.set_request_id("erase-" + std::to_string(step));
      auto* t = req.add_targets();
      *t->mutable_identifier() = Id(target.first, target.second);
      t->set_identifier_only(only);
      const auto e = Erase(req);
      ASSERT_EQ(e.outcomes_size(), 1);
      EXPECT_EQ(e.outcomes(0).outcome(), "erased") << "step " << step;
      EXPECT_FALSE(e.whole_log()) << "an erasure re-resolves the affected entities only";
      if (only) {
        erased.insert(target);
      } else {
        for (const auto& i : ids) erased.insert(i);
      }
      // Re-sending the same request erases nothing more.
      const auto replay = Erase(req);
      EXPECT_TRUE(replay.replayed()) << "step " << step;
      ++erasures;
      what = std::string("erase ") + (only ? "identifier " : "person of ") + target.second;
    }
    SCOPED_TRACE("seed " + std::to_string(seed) + ", step " + std::to_string(step) + ": " + what);
    if (preview) ExpectPreviewHeld(*preview, "the dry run before it");
    ExpectGraphAgrees(what);
    ExpectSearchTablesFollow(what);

    // Every cannot-link rule holds.
    for (const auto& r : rules_now()) {
      if (!r.has_a()) continue;
      const std::string pa = PersonOf(r.a().type(), r.a().value());
      const std::string pb = PersonOf(r.b().type(), r.b().value());
      EXPECT_TRUE(pa.empty() || pa != pb)
          << "rule " << r.rule_id() << " broken: " << r.a().value() << " and " << r.b().value() << " are both " << pa;
    }
    // No erased identifier resolves or is stored anywhere, whatever was ingested since.
    for (const auto& [type, value] : erased) {
      EXPECT_EQ(PersonOf(type, value), "") << value << " was erased";
      EXPECT_EQ(TablesHolding(value), "") << value << " was erased";
    }
    if (step % 6 == 5) ExpectRebuildAgrees("step " + std::to_string(step) + " (" + what + ")");
  }
  ExpectRebuildAgrees("the end");
  ExpectSearchTablesFollow("the rebuild at the end");
  const std::string overrides = QueryScalar(url_, "SELECT count(*) FROM entity_id_overrides");
  std::cout << "[ unlink/erase property ] " << ingests << " ingests, " << unlinks << " unlinks, " << edge_rules
            << " edge rules, " << removals << " rule removals, " << erasures << " erasures, " << overrides
            << " id overrides stored" << std::endl;
}

}  // namespace
}  // namespace nexus::testing
