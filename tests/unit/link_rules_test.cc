// Link rules (issue 15) in resolver::Engine, without PostgreSQL.
//
// Random streams of edges over a small identifier space, with random cannot-link and suppressed-edge rules (one
// edge, or every edge of an event),
// are resolved by the engine (in random batch cuts) and by a deliberately naive oracle that never calls the
// engine: it keeps the applied edges as a plain list and, for every new edge, finds the components it would
// join by BFS over the applied edges, refuses it when a suppressed-edge rule names it or when the union would
// hold both sides of a cannot-link rule, and otherwise adds it. The final partitions must be equal, no entity
// may hold both sides of a rule, and the refused edges must be exactly the engine's quarantined ones.
//
// Env: NEXUS_SEED (base seed; random when unset, always printed), NEXUS_LINK_STREAMS (default 300).

#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "resolver/engine.h"
#include "resolver/protection.h"

namespace nexus::resolver {
namespace {

using Ident = std::pair<std::string, std::string>;

uint64_t BaseSeed() {
  static const uint64_t seed = [] {
    uint64_t s = std::random_device{}();
    if (const char* e = std::getenv("NEXUS_SEED")) s = std::strtoull(e, nullptr, 10);
    std::cout << "link rules: NEXUS_SEED=" << s << "\n";
    return s;
  }();
  return seed;
}

struct Edge {
  std::string event_id;
  std::vector<Ident> ids;
};

/// The naive oracle: applied edges as a list, components by BFS.
struct Oracle {
  std::vector<Edge> applied;
  std::set<Ident> seen;
  std::set<std::string> refused;  // event ids

  std::set<Ident> ComponentOf(const Ident& start) const {
    std::set<Ident> out{start};
    std::deque<Ident> q{start};
    while (!q.empty()) {
      const Ident cur = q.front();
      q.pop_front();
      for (const auto& e : applied) {
        if (std::find(e.ids.begin(), e.ids.end(), cur) == e.ids.end()) continue;
        for (const auto& o : e.ids) {
          if (out.insert(o).second) q.push_back(o);
        }
      }
    }
    return out;
  }

  void Apply(const Edge& e, const std::vector<LinkRule>& rules) {
    bool any_unseen = false;
    for (const auto& i : e.ids) any_unseen |= seen.insert(i).second;
    for (const auto& r : rules) {
      if (!r.cannot_link && r.event_id == e.event_id && (r.edge_id.empty() || r.edge_id == e.event_id + "#0")) {
        // The engine quarantines a suppressed edge unless it changes nothing (all its identifiers known and
        // in one component already).
        if (any_unseen || Unites(e)) refused.insert(e.event_id);
        return;
      }
    }
    std::set<Ident> uni;
    for (const auto& i : e.ids) {
      const auto c = ComponentOf(i);
      uni.insert(c.begin(), c.end());
    }
    for (const auto& r : rules) {
      if (r.cannot_link && uni.count(r.a) && uni.count(r.b)) {
        refused.insert(e.event_id);  // both sides in the union: the edge joins two parts, always refused
        return;
      }
    }
    applied.push_back(e);
  }
  /// Whether the edge would join anything (an edge inside one component is not quarantined by the engine).
  bool Unites(const Edge& e) const {
    if (e.ids.size() < 2) return false;
    const auto first = ComponentOf(e.ids.front());
    for (const auto& i : e.ids) {
      if (!first.count(i)) return true;
    }
    return false;
  }
};

Ident RandomIdent(std::mt19937_64& rng, int space) {
  const int v = std::uniform_int_distribution<int>(0, space - 1)(rng);
  return {v % 3 == 0 ? "user_id" : "email", "v" + std::to_string(v)};
}

TEST(LinkRules, EngineAgreesWithNaiveOracleOnRandomStreams) {
  int streams = 300;
  if (const char* e = std::getenv("NEXUS_LINK_STREAMS")) streams = std::atoi(e);
  for (int n = 0; n < streams; ++n) {
    const uint64_t seed = BaseSeed() + static_cast<uint64_t>(n);
    std::mt19937_64 rng(seed);
    const int space = 4 + static_cast<int>(rng() % 12);
    const int nedges = 1 + static_cast<int>(rng() % 25);
    std::vector<Edge> edges;
    for (int i = 0; i < nedges; ++i) {
      Edge e{"ev" + std::to_string(i), {}};
      const int k = 1 + static_cast<int>(rng() % 3);
      for (int j = 0; j < k; ++j) {
        Ident id = RandomIdent(rng, space);
        if (std::find(e.ids.begin(), e.ids.end(), id) == e.ids.end()) e.ids.push_back(id);
      }
      edges.push_back(e);
    }
    std::vector<LinkRule> rules;
    const int nrules = static_cast<int>(rng() % 4);
    for (int r = 0; r < nrules; ++r) {
      LinkRule rule;
      rule.rule_id = r + 1;
      if (rng() % 4 == 0) {
        rule.cannot_link = false;
        rule.event_id = edges[rng() % edges.size()].event_id;
        rule.edge_id = rng() % 2 ? rule.event_id + "#0" : "";  // "": every edge of the event
      } else {
        rule.a = RandomIdent(rng, space);
        rule.b = RandomIdent(rng, space);
        if (rule.a == rule.b) continue;
      }
      rules.push_back(rule);
    }
    // Engine: random batch cuts.
    Engine engine("salt");
    engine.SetLinkRules(rules);
    std::set<std::string> quarantined;
    size_t i = 0;
    while (i < edges.size()) {
      const size_t len = 1 + rng() % 5;
      BatchInput in;
      int64_t row = 1;
      for (size_t j = i; j < std::min(edges.size(), i + len); ++j) {
        const uint32_t ev = static_cast<uint32_t>(in.events.size());
        in.events.push_back({edges[j].event_id, 1000 + static_cast<int64_t>(j), 0, "t", "s"});
        for (const auto& id : edges[j].ids) {
          in.identifiers[0].push_back({ev, row++, edges[j].event_id + "#0", id.first, id.second, "r", false});
        }
      }
      const auto d = engine.Apply(in, ProtectionConfig::Unlimited());
      for (const auto& q : d.kinds[0].quarantined) quarantined.insert(in.events[q.event].event_id);
      i += len;
    }
    Oracle oracle;
    for (const auto& e : edges) oracle.Apply(e, rules);
    SCOPED_TRACE("NEXUS_SEED=" + std::to_string(seed) + " NEXUS_LINK_STREAMS=1");
    EXPECT_EQ(quarantined, oracle.refused);
    // Same partition: two identifiers share an engine entity iff they share an oracle component.
    std::vector<Ident> all(oracle.seen.begin(), oracle.seen.end());
    for (size_t a = 0; a < all.size(); ++a) {
      const auto comp = oracle.ComponentOf(all[a]);
      for (size_t b = a + 1; b < all.size(); ++b) {
        const bool same_engine = engine.EntityOf(EntityKind::kPerson, all[a].first, all[a].second) ==
                                 engine.EntityOf(EntityKind::kPerson, all[b].first, all[b].second);
        ASSERT_EQ(same_engine, comp.count(all[b]) > 0)
            << all[a].second << " vs " << all[b].second << " (stream " << n << ")";
      }
    }
    for (const auto& r : rules) {
      if (!r.cannot_link) continue;
      const auto ea = engine.EntityOf(EntityKind::kPerson, r.a.first, r.a.second);
      if (!ea.empty()) {
        EXPECT_NE(ea, engine.EntityOf(EntityKind::kPerson, r.b.first, r.b.second));
      }
    }
  }
}

TEST(LinkRules, CannotLinkQuarantinesWithTheRuleAsReasonAndBindsReleasedEdges) {
  Engine engine("salt");
  LinkRule rule;
  rule.rule_id = 7;
  rule.a = {"email", "alice@acme.io"};
  rule.b = {"email", "bob@acme.io"};
  engine.SetLinkRules({rule});
  BatchInput in;
  in.events = {{"e1", 1, 0, "t", "crm"}, {"e2", 2, 0, "t", "crm"}};
  in.identifiers[0] = {{0, 1, "e1#0", "email", "alice@acme.io", "contact", false},
                       {0, 2, "e1#0", "email", "support@acme.io", "contact", false},
                       {1, 3, "e2#0", "email", "bob@acme.io", "contact", false},
                       {1, 4, "e2#0", "email", "support@acme.io", "contact", false}};
  const auto d = engine.Apply(in, ProtectionConfig::Unlimited());
  ASSERT_EQ(d.kinds[0].quarantined.size(), 1u);
  EXPECT_EQ(d.kinds[0].quarantined[0].reason, "cannot-link rule 7");
  EXPECT_EQ(engine.EntityOf(EntityKind::kPerson, "email", "alice@acme.io"),
            engine.EntityOf(EntityKind::kPerson, "email", "support@acme.io"));
  EXPECT_NE(engine.EntityOf(EntityKind::kPerson, "email", "alice@acme.io"),
            engine.EntityOf(EntityKind::kPerson, "email", "bob@acme.io"));
  // Releasing the quarantined edge does not override the rule.
  std::string where;
  engine.ApplyReleased(EntityKind::kPerson, "e2", "e2#0", {{"email", "bob@acme.io"}, {"email", "support@acme.io"}}, {},
                       &where);
  EXPECT_NE(engine.EntityOf(EntityKind::kPerson, "email", "alice@acme.io"),
            engine.EntityOf(EntityKind::kPerson, "email", "bob@acme.io"));
  // Without the rule the same log merges them.
  Engine plain("salt");
  plain.Apply(in, ProtectionConfig::Unlimited());
  EXPECT_EQ(plain.EntityOf(EntityKind::kPerson, "email", "alice@acme.io"),
            plain.EntityOf(EntityKind::kPerson, "email", "bob@acme.io"));
}

TEST(LinkRules, AnEventRuleSuppressesEveryEdgeOfThatEventAndOnlyThem) {
  // e1 links a-b under one edge and c-d under another; e2 asserts a-b again.
  BatchInput in;
  in.events = {{"e1", 1, 0, "t", "crm"}, {"e2", 2, 0, "t", "mail"}};
  in.identifiers[0] = {
      {0, 1, "e1#0", "email", "a@x.io", "contact", false}, {0, 2, "e1#0", "email", "b@x.io", "contact", false},
      {0, 3, "e1#1", "email", "c@x.io", "contact", false}, {0, 4, "e1#1", "email", "d@x.io", "contact", false},
      {1, 5, "e2#0", "email", "a@x.io", "contact", false}, {1, 6, "e2#0", "email", "b@x.io", "contact", false}};
  LinkRule rule;
  rule.rule_id = 3;
  rule.cannot_link = false;
  rule.event_id = "e1";  // edge_id "": the whole event
  Engine engine("salt");
  engine.SetLinkRules({rule});
  const auto d = engine.Apply(in, ProtectionConfig::Unlimited());
  ASSERT_EQ(d.kinds[0].quarantined.size(), 2u) << "both edges of e1";
  for (const auto& q : d.kinds[0].quarantined) {
    EXPECT_EQ(in.events[q.event].event_id, "e1");
    EXPECT_EQ(q.reason, "suppressed by link rule 3");
  }
  auto of = [&](const char* v) { return engine.EntityOf(EntityKind::kPerson, "email", v); };
  EXPECT_NE(of("c@x.io"), of("d@x.io")) << "nothing else asserts c-d";
  EXPECT_EQ(of("a@x.io"), of("b@x.io")) << "e2 asserts a-b too: the link stays";
  // A rule naming one edge leaves the event's other edge alone.
  rule.edge_id = "e1#0";
  Engine one_edge("salt");
  one_edge.SetLinkRules({rule});
  EXPECT_EQ(one_edge.Apply(in, ProtectionConfig::Unlimited()).kinds[0].quarantined.size(), 1u);
  EXPECT_EQ(one_edge.EntityOf(EntityKind::kPerson, "email", "c@x.io"),
            one_edge.EntityOf(EntityKind::kPerson, "email", "d@x.io"));
}

TEST(LinkRules, RulesSetAfterLoadingTagTheLoadedClusters) {
  Engine engine("salt");
  engine.LoadEntity(EntityKind::kPerson, MakeEntityId(EntityKind::kPerson, "salt", "email", "a"), 1, {0, 1, 1});
  engine.LoadIdentifier(EntityKind::kPerson, "email", "a", MakeEntityId(EntityKind::kPerson, "salt", "email", "a"), "s",
                        1, 1);
  engine.LoadEntity(EntityKind::kPerson, MakeEntityId(EntityKind::kPerson, "salt", "email", "b"), 1, {0, 2, 2});
  engine.LoadIdentifier(EntityKind::kPerson, "email", "b", MakeEntityId(EntityKind::kPerson, "salt", "email", "b"), "s",
                        1, 1);
  engine.FinishLoad();
  LinkRule rule;
  rule.rule_id = 3;
  rule.a = {"email", "a"};
  rule.b = {"email", "b"};
  engine.SetLinkRules({rule});
  BatchInput in;
  in.events = {{"e1", 5, 0, "t", "s"}};
  in.identifiers[0] = {{0, 1, "e1#0", "email", "a", "r", false}, {0, 2, "e1#0", "email", "b", "r", false}};
  const auto d = engine.Apply(in, ProtectionConfig::Unlimited());
  ASSERT_EQ(d.kinds[0].quarantined.size(), 1u);
  EXPECT_EQ(d.kinds[0].quarantined[0].reason, "cannot-link rule 3");
}

// The id rule of a split (issue 15): the part with the most identifiers keeps the entity's id, whichever holds
// the founder; the founder's part gets an id derived from the old one. Equal parts: the older keeps it.
TEST(LinkRules, ASplitGivesTheIdToThePartWithTheMostIdentifiers) {
  // a-b, b-c, c-d: one entity founded by a. Suppressing e1 (a-b) leaves {a} and {b, c, d}.
  BatchInput in;
  in.events = {{"e1", 1, 0, "t", "crm"}, {"e2", 2, 0, "t", "crm"}, {"e3", 3, 0, "t", "crm"}};
  in.identifiers[0] = {{0, 1, "e1#0", "email", "a", "contact", false}, {0, 2, "e1#0", "email", "b", "contact", false},
                       {1, 3, "e2#0", "email", "b", "contact", false}, {1, 4, "e2#0", "email", "c", "contact", false},
                       {2, 5, "e3#0", "email", "c", "contact", false}, {2, 6, "e3#0", "email", "d", "contact", false}};
  Engine merged("salt");
  merged.Apply(in, ProtectionConfig::Unlimited());
  const std::string x = merged.EntityOf(EntityKind::kPerson, "email", "a");
  ASSERT_EQ(x, MakeEntityId(EntityKind::kPerson, "salt", "email", "a"));
  std::vector<std::array<std::string, 3>> before;
  for (const char* v : {"a", "b", "c", "d"}) before.push_back({"email", v, x});

  LinkRule rule;
  rule.rule_id = 1;
  rule.cannot_link = false;
  rule.event_id = "e1";
  Engine probe("salt");
  probe.SetLinkRules({rule});
  probe.Apply(in, ProtectionConfig::Unlimited());
  EXPECT_EQ(probe.EntityOf(EntityKind::kPerson, "email", "a"), x) << "without overrides the founder's part keeps it";
  const auto overrides = probe.SplitIds(EntityKind::kPerson, before);
  ASSERT_EQ(overrides.size(), 2u);

  for (bool per_event : {false, true}) {
    Engine split("salt");
    split.SetLinkRules({rule});
    split.SetIdOverrides(overrides);
    for (size_t e = 0; e < in.events.size(); e = per_event ? e + 1 : in.events.size()) {
      BatchInput part = in;
      if (per_event) {
        part.events = {in.events[e]};
        part.identifiers[0].clear();
        for (auto row : in.identifiers[0]) {
          if (row.event == e)
            part.identifiers[0].push_back({0, row.row_id, row.edge_id, row.type, row.value, row.role, row.blocked});
        }
      }
      split.Apply(part, ProtectionConfig::Unlimited());
    }
    auto of = [&](const char* v) { return split.EntityOf(EntityKind::kPerson, "email", v); };
    EXPECT_EQ(of("b"), x) << "the largest part keeps the id";
    EXPECT_EQ(of("d"), x);
    EXPECT_NE(of("a"), x);
    EXPECT_EQ(of("a"), MakeSplitId(EntityKind::kPerson, "salt", x, overrides[1].birth)) << "derived from the old id";
    EXPECT_TRUE(split.SplitIds(EntityKind::kPerson, before).empty()) << "nothing left to change";
  }

  // Only the keeper's override: the founder's natural id is reserved for it, so no two entities share it.
  Engine reserved("salt");
  reserved.SetLinkRules({rule});
  reserved.SetIdOverrides({overrides[0]});
  reserved.Apply(in, ProtectionConfig::Unlimited());
  EXPECT_EQ(reserved.EntityOf(EntityKind::kPerson, "email", "b"), x);
  EXPECT_NE(reserved.EntityOf(EntityKind::kPerson, "email", "a"), x);

  // Equal parts ({a, b} and {c, d} once e2 is suppressed): the older, the founder's, keeps the id as it is.
  rule.event_id = "e2";
  Engine tie("salt");
  tie.SetLinkRules({rule});
  tie.Apply(in, ProtectionConfig::Unlimited());
  EXPECT_EQ(tie.EntityOf(EntityKind::kPerson, "email", "a"), x);
  EXPECT_TRUE(tie.SplitIds(EntityKind::kPerson, before).empty());
}

// A rebuild checks the resolved table it replaces in the table's own order (Engine::SplitCheck): the identifiers
// of two split entities, interleaved and in any order, give the overrides SplitIds gives for them listed entity
// by entity, in the same order.
TEST(LinkRules, TheSplitCheckTakesIdentifiersInAnyOrder) {
  // Two chains, a-b-c-d and p-q-r-s; suppressing e1 (a-b) and e4 (p-q) splits both.
  BatchInput in;
  in.events = {{"e1", 1, 0, "t", "crm"}, {"e2", 2, 0, "t", "crm"}, {"e3", 3, 0, "t", "crm"},
               {"e4", 4, 0, "t", "crm"}, {"e5", 5, 0, "t", "crm"}, {"e6", 6, 0, "t", "crm"}};
  const char* pairs[6][2] = {{"a", "b"}, {"b", "c"}, {"c", "d"}, {"p", "q"}, {"q", "r"}, {"r", "s"}};
  for (uint32_t e = 0; e < 6; ++e) {
    const std::string edge = "e" + std::to_string(e + 1) + "#0";
    for (int side = 0; side < 2; ++side) {
      in.identifiers[0].push_back({e, 2 * e + side + 1, edge, "email", pairs[e][side], "contact", false});
    }
  }
  Engine merged("salt");
  merged.Apply(in, ProtectionConfig::Unlimited());
  std::vector<std::array<std::string, 3>> before;
  for (const char* v : {"a", "b", "c", "d", "p", "q", "r", "s"}) {
    before.push_back({"email", v, merged.EntityOf(EntityKind::kPerson, "email", v)});
  }
  ASSERT_NE(before[0][2], before[4][2]);

  std::vector<LinkRule> rules(2);
  rules[0].rule_id = 1, rules[0].cannot_link = false, rules[0].event_id = "e1";
  rules[1].rule_id = 2, rules[1].cannot_link = false, rules[1].event_id = "e4";
  Engine probe("salt");
  probe.SetLinkRules(rules);
  probe.Apply(in, ProtectionConfig::Unlimited());
  const auto expected = probe.SplitIds(EntityKind::kPerson, before);
  ASSERT_EQ(expected.size(), 4u) << "each split moves its id and gives its founder's part a derived one";

  auto key = [](const std::vector<IdOverride>& v) {
    std::vector<std::string> out;
    for (const auto& o : v)
      out.push_back(o.entity_id + "@" + std::to_string(o.birth.xid) + "." + std::to_string(o.birth.row));
    return out;
  };
  for (const std::vector<size_t>& order :
       {std::vector<size_t>{7, 0, 6, 1, 5, 2, 4, 3}, {3, 7, 2, 6, 1, 5, 0, 4}, {4, 0, 5, 1, 6, 2, 7, 3}}) {
    Engine::SplitCheck check = probe.StartSplitCheck(EntityKind::kPerson);
    std::vector<std::array<std::string, 3>> first, second;  // in two pieces, each splitting both entities
    for (size_t i : order) (first.size() < 3 ? first : second).push_back(before[i]);
    check.Add(first);
    check.Add(second);
    EXPECT_EQ(key(check.Finish()), key(expected));
  }
}

// The resident engine takes a re-resolved component in place (Forget, then a load of its rows): afterwards it
// equals an engine loaded whole, and ids of entities absorbed before are no longer followed to the forgotten ones.
TEST(LinkRules, ForgettingAComponentAndLoadingItsRowsEqualsALoadOfEverything) {
  const std::string a = MakeEntityId(EntityKind::kPerson, "salt", "email", "a");
  const std::string b = MakeEntityId(EntityKind::kPerson, "salt", "email", "b");
  const std::string c = MakeEntityId(EntityKind::kPerson, "salt", "email", "c");
  BatchInput in;
  in.events = {{"e1", 1, 0, "t", "crm"}, {"e2", 2, 0, "t", "crm"}, {"e3", 3, 0, "t", "crm"}, {"e4", 4, 0, "t", "crm"}};
  in.identifiers[0] = {{0, 1, "deal", "email", "a", "contact", false},
                       {1, 2, "e2#0", "email", "b", "contact", false},
                       {2, 3, "e3#0", "email", "a", "contact", false},
                       {2, 4, "e3#0", "email", "b", "contact", false},
                       {3, 5, "e4#0", "email", "c", "contact", false}};
  Engine resident("salt");
  resident.Apply(in, ProtectionConfig::Unlimited());
  ASSERT_EQ(resident.EntityOf(EntityKind::kPerson, "email", "b"), a) << "b's entity was absorbed into a's";
  // As after an unlink of a-b: a and b stand alone again (b under its own id); c is untouched.
  auto load_split = [&](Engine& e) {
    e.LoadEntity(EntityKind::kPerson, a, 1, {0, 1, 1});
    e.LoadEntity(EntityKind::kPerson, b, 1, {0, 2, 2});
    e.LoadIdentifier(EntityKind::kPerson, "email", "a", a, "crm", 1, 3);
    e.LoadIdentifier(EntityKind::kPerson, "email", "b", b, "crm", 2, 3);
    e.LoadEdgeSighting(EntityKind::kPerson, "e1", "deal", "email", "a");
  };
  resident.Forget(EntityKind::kPerson, {{"email", "a"}, {"email", "b"}});
  load_split(resident);
  resident.FinishLoad();
  Engine whole("salt");
  load_split(whole);
  whole.LoadEntity(EntityKind::kPerson, c, 1, {0, 5, 5});
  whole.LoadIdentifier(EntityKind::kPerson, "email", "c", c, "crm", 4, 4);
  whole.FinishLoad();
  EXPECT_EQ(DiffStates(resident, whole), "");
  EXPECT_EQ(resident.entity_count(EntityKind::kPerson), 3u);
  // A released edge naming b's id reaches the entity b is now, not the forgotten one it was absorbed into.
  std::string where;
  resident.ApplyReleased(EntityKind::kPerson, "e9", "e9#0", {{"email", "c"}}, {b}, &where);
  EXPECT_EQ(resident.EntityOf(EntityKind::kPerson, "email", "c"), resident.EntityOf(EntityKind::kPerson, "email", "b"));
  EXPECT_NE(resident.EntityOf(EntityKind::kPerson, "email", "c"), resident.EntityOf(EntityKind::kPerson, "email", "a"));
}

// Many forgotten identifiers (more than the identifier index's first table holds, so it grows past removed keys):
// each forgotten one is unseen, every other keeps its entity, and a forgotten one seen again is interned afresh.
TEST(LinkRules, ForgettingManyIdentifiersKeepsEveryOtherAndInternsThemAgain) {
  auto batch = [](int first, int n, int64_t row0) {
    BatchInput in;
    for (int i = 0; i < n; ++i) {
      const std::string ev = "ev" + std::to_string(first + i);
      in.events.push_back({ev, first + i, 0, "t", "crm"});
      in.identifiers[0].push_back({static_cast<uint32_t>(i), row0 + i, ev + "#0", "email",
                                   "p" + std::to_string(first + i) + "@x", "contact", false});
    }
    return in;
  };
  auto email = [](int i) { return "p" + std::to_string(i) + "@x"; };
  Engine engine("salt");
  engine.Apply(batch(0, 3000, 1), ProtectionConfig::Unlimited());
  std::vector<std::string> ids(3000);
  for (int i = 0; i < 3000; ++i) ids[i] = engine.EntityOf(EntityKind::kPerson, "email", email(i));
  std::vector<std::pair<std::string, std::string>> gone;
  for (int i = 0; i < 3000; i += 3) gone.emplace_back("email", email(i));
  engine.Forget(EntityKind::kPerson, gone);
  engine.FinishLoad();
  for (int i = 0; i < 3000; ++i) {
    ASSERT_EQ(engine.EntityOf(EntityKind::kPerson, "email", email(i)), i % 3 ? ids[i] : "") << email(i);
  }
  // 3,000 new identifiers and the first 600 again (the forgotten among them are new to the engine now).
  engine.Apply(batch(3000, 3000, 10000), ProtectionConfig::Unlimited());
  engine.Apply(batch(0, 600, 20000), ProtectionConfig::Unlimited());
  for (int i = 0; i < 6000; ++i) {
    const std::string now = engine.EntityOf(EntityKind::kPerson, "email", email(i));
    if (i < 600 || i % 3 || i >= 3000) {
      EXPECT_FALSE(now.empty()) << email(i);
    } else {
      EXPECT_EQ(now, "") << email(i);
    }
    if (i < 3000 && i % 3) {
      EXPECT_EQ(now, ids[i]) << email(i);
    }
  }
  EXPECT_EQ(engine.entity_count(EntityKind::kPerson), 5200u);  // 1,000 forgotten, 200 of them seen again
}

}  // namespace
}  // namespace nexus::resolver
