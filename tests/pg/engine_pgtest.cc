// The resident engine against a real PostgreSQL: incremental resolution (cut into random batches, with the
// graph thrown away and reloaded from the database in between, and after failed batches) leaves every
// resolved and final table exactly as a one-pass rebuild of the same log does.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <pqxx/pqxx>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "nexus/v1/ingest.grpc.pb.h"
#include "pg_fixture.h"
#include "resolver/protection.h"
#include "storage/database.h"
#include "storage/errors.h"
#include "storage/ingest_store.h"
#include "storage/migrations.h"
#include "storage/resolver_store.h"

namespace nexus::testing {
namespace {

uint64_t SeedFromEnv() {
  if (const char* s = std::getenv("NEXUS_SEED")) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

/// The primary key, the indexes and whether `id` is NOT NULL, of each membership table: what migration 018 makes
/// them, and what a rebuild's swapped-in tables must keep.
std::string MembershipKeys(const std::string& url) {
  return QueryScalar(
      url,
      "SELECT string_agg(t.relname || ': ' || (SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c WHERE "
      "c.conrelid = t.oid AND c.contype = 'p') || '; indexes ' || (SELECT string_agg(i.relname, ', ' ORDER BY "
      "i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = t.oid) || '; id ' || "
      "(SELECT CASE WHEN a.attnotnull THEN 'not null' ELSE 'nullable' END FROM pg_attribute a WHERE a.attrelid = "
      "t.oid AND a.attname = 'id'), E'\\n' ORDER BY t.relname) FROM pg_class t WHERE t.oid IN "
      "('memberships'::regclass, 'resolved_membership_identifiers'::regclass)");
}
constexpr const char* kMembershipKeys =
    "memberships: PRIMARY KEY (person_id, group_id); indexes idx_memberships_group, memberships_pkey; id not null\n"
    "resolved_membership_identifiers: PRIMARY KEY (membership_identifier_id); indexes "
    "idx_resolved_membership_identifiers_group, idx_resolved_membership_identifiers_person, "
    "resolved_membership_identifiers_pkey; id not null";

class EngineDbTest : public PgTest {
 protected:
  void StartIngestOnly() {
    auto cfg = BaseConfig();
    cfg.resolver_enabled = false;  // the test drives a ResolverStore itself
    StartApp(cfg);
    channel_ =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel_);
    db_ = std::make_unique<storage::Database>(storage::DatabaseOptions{url_, 2, std::chrono::milliseconds(5000)},
                                              nullptr);
    store_ = std::make_unique<storage::ResolverStore>(*db_, url_);
    ASSERT_TRUE(store_->TryAcquireLock());
  }
  void TearDown() override {
    store_.reset();
    db_.reset();
    PgTest::TearDown();
  }
  void Ingest(const std::vector<v1::Event>& events) {
    v1::IngestEventsRequest req;
    for (const auto& e : events) *req.add_events() = e;
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    auto s = ingest_->IngestEvents(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  /// Takes the lock again after Release(): the server frees it once it has seen the old session close.
  bool Reacquire() {
    for (int i = 0; i < 100; ++i) {
      if (store_->TryAcquireLock()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  std::map<std::string, std::string> Dump() { return DumpResolvedTables(url_); }
  /// Every table of `a` equals the same table of `b`; `what` says which two states are compared.
  static void ExpectSameTables(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b,
                               const std::string& what) {
    for (const auto& [table, rows] : a) {
      EXPECT_TRUE(rows == b.at(table)) << "table " << table << " differs " << what << ", "
                                       << FirstDifference(rows, b.at(table));
    }
  }
  /// Batches of at most `max_events` until nothing committed is left; returns the events they took.
  int64_t ResolveAll(int64_t max_events) {
    return ResolveUntilNothingPending(*db_, [&] {
      int64_t total = 0;
      for (int64_t n; (n = store_->RunBatch(max_events, protection_).events) > 0;) total += n;
      return total;
    });
  }

  /// A random event over small value spaces: merges, reused edge ids, junk, back-dated times, memberships.
  v1::Event RandomEvent(std::mt19937_64& rng, int n) {
    auto pick = [&](int hi) { return std::uniform_int_distribution<int>(0, hi)(rng); };
    v1::Event e;
    e.set_event_id("ev" + std::to_string(n));
    e.mutable_occurred_at()->set_seconds(1000 + pick(50));  // many ties, many back-dated
    e.set_event_name("test_event");
    e.set_event_type(pick(1) ? "communication" : "sales");
    e.set_source(pick(1) ? "gmail" : "hubspot");
    const int persons = 1 + pick(2);
    std::vector<std::string> emails;
    for (int p = 0; p < persons; ++p) {
      auto* m = e.add_persons();
      if (pick(3)) m->set_role(pick(1) ? "sender" : "recipient");
      for (int k = 1 + pick(2); k > 0; --k) {
        auto* i = m->add_identifiers();
        const int v = pick(60);
        if (v % 17 == 0) {
          i->set_type("anonymous_id");
          i->set_value("null");  // built-in junk: stored blocked, never links
        } else if (v % 5 == 0) {
          i->set_type("user_id");
          i->set_value("u" + std::to_string(v % 12));
        } else if (v % 7 == 0) {
          i->set_type("phone");
          i->set_value("+1 415 555 010" + std::to_string(v % 9));
        } else {
          i->set_type("email");
          i->set_value("m" + std::to_string(v) + "@x.io");
          emails.push_back(i->value());
        }
      }
      if (pick(4) == 0) m->set_edge_id("crm-" + std::to_string(pick(6)));  // an edge id reused across events
      if (pick(1)) (*m->mutable_traits())["name"] = "n" + std::to_string(pick(20));
      if (pick(3) == 0) (*m->mutable_traits())["title"] = "t" + std::to_string(pick(5));
      if (pick(5) == 0) (*m->mutable_traits())["email"] = "trait" + std::to_string(pick(5)) + "@x.io";
      if (typed_traits_) {  // typed values and nulls (unsets) next to the string traits
        auto& tv = *m->mutable_trait_values();
        if (pick(3) == 0 && !m->traits().count("title")) tv["title"].set_null_value(google::protobuf::NULL_VALUE);
        if (pick(3) == 0) tv["age"].set_number_value(20 + pick(3));
        if (pick(3) == 0) tv["vip"].set_bool_value(pick(1) == 0);
        if (pick(4) == 0) tv["signup"].set_string_value("s" + std::to_string(pick(4)));
        if (pick(6) == 0) tv["signup"].set_null_value(google::protobuf::NULL_VALUE);
        if (pick(5) == 0 && !m->traits().count("name")) tv["name"].set_null_value(google::protobuf::NULL_VALUE);
      }
    }
    if (pick(2) == 0) {
      auto* g = e.add_groups();
      auto* i = g->add_identifiers();
      i->set_type("domain");
      i->set_value("d" + std::to_string(pick(6)) + ".io");
      if (pick(1)) {
        auto* j = g->add_identifiers();
        j->set_type("shopify_id");
        j->set_value("s" + std::to_string(pick(8)));
      }
      if (pick(1)) (*g->mutable_traits())[pick(1) ? "company_name" : "name"] = "c" + std::to_string(pick(9));
      if (!emails.empty() && pick(1)) {
        auto* ms = e.add_memberships();
        ms->mutable_person()->set_type("email");
        ms->mutable_person()->set_value(emails.front());
        ms->mutable_group()->set_type("domain");
        ms->mutable_group()->set_value(i->value());
        ms->set_role(pick(1) ? "admin" : "member");
      }
    }
    return e;
  }

  /// Random stream, random batch cuts and graph reloads; then every table must equal a rebuild's.
  void IncrementalEqualsRebuild(const resolver::ProtectionConfig& protection) {
    const uint64_t seed = SeedFromEnv();
    std::cout << "engine db property seed: " << seed << " (NEXUS_SEED=" << seed << " reproduces)" << std::endl;
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    protection_ = protection;
    StartIngestOnly();
    int n = 0;
    for (int req = 0; req < 40; ++req) {
      std::vector<v1::Event> evs;
      for (int i = std::uniform_int_distribution<int>(1, 8)(rng); i > 0; --i) evs.push_back(RandomEvent(rng, n++));
      Ingest(evs);
      const int action = std::uniform_int_distribution<int>(0, 9)(rng);
      if (action < 4) ResolveAll(std::uniform_int_distribution<int64_t>(1, 9)(rng));
      if (action == 5) {  // the graph is thrown away (as after a lost lock) and loaded again from the database
        store_->Release();
        ASSERT_TRUE(Reacquire());
      }
    }
    ResolveAll(7);
    const auto incremental = Dump();
    // The rebuild applies the log in chunks of a few events: rows, births, merges and participants cross many
    // chunk boundaries (a real rebuild's 4,000-event chunks do so only in large logs).
    storage::RebuildControl small_chunks;
    small_chunks.chunk_events = std::uniform_int_distribution<int64_t>(1, 9)(rng);
    const auto stats = store_->Rebuild(protection_, small_chunks);
    EXPECT_EQ(stats.events, QueryCount(url_, "SELECT 1 FROM events"));
    // The swapped-in tables keep the storage settings of migration 003 (HOT updates need the free space).
    EXPECT_EQ(QueryScalar(url_, "SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'persons'"),
              "fillfactor=80");
    // And the membership tables their keys (migration 018), copied from the live tables like every index.
    EXPECT_EQ(MembershipKeys(url_), kMembershipKeys);
    // And their entity-id columns compare bytewise (migration 019): shadows are made LIKE the live tables.
    EXPECT_EQ(QueryScalar(url_,
                          "SELECT string_agg(table_name || '.' || column_name || ' ' || coalesce(collation_name, "
                          "'default'), ', ' ORDER BY 1) FROM information_schema.columns WHERE table_schema = "
                          "'public' AND column_name IN ('person_id', 'group_id', 'old_id', 'new_id', "
                          "'merged_into_id', 'entity_id') AND coalesce(collation_name, '') <> 'C' AND table_name IN "
                          "(SELECT relname FROM pg_class WHERE relkind = 'r')"),
              "");
    const auto rebuilt = Dump();
    ExpectSameTables(incremental, rebuilt, "between incremental and rebuild");
    // After the rebuild the resident graph is the rebuilt one: more incremental work still matches.
    for (int i = 0; i < 10; ++i) Ingest({RandomEvent(rng, n++)});
    ResolveAll(3);
    const auto after = Dump();
    store_->Rebuild(protection_);
    const auto again = Dump();
    ExpectSameTables(after, again, "after incremental on a rebuilt graph");
  }

  resolver::ProtectionConfig protection_ = resolver::ProtectionConfig::Unlimited();
  bool typed_traits_ = false;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::ResolverStore> store_;
};

TEST_F(EngineDbTest, IncrementalWithReloadsEqualsRebuildOnEveryTable) {
  IncrementalEqualsRebuild(resolver::ProtectionConfig::Unlimited());
}

TEST_F(EngineDbTest, IncrementalWithReloadsEqualsRebuildUnderTightCaps) {
  auto p = resolver::ProtectionConfig::Defaults();
  p.person_caps.default_per_type = 3;
  p.person_caps.max_entity_size = 8;
  p.group_caps.default_per_type = 2;
  IncrementalEqualsRebuild(p);
}

// Trait rules (issue 14) with typed values and nulls: stored winners carry their source and null flag through
// graph reloads, and the incremental result equals a rebuild's under the same rules.
TEST_F(EngineDbTest, IncrementalWithReloadsEqualsRebuildUnderTraitRules) {
  std::string error;
  auto p = resolver::ParseProtectionConfig(R"([person_caps]
default = 4
[traits]
default = latest
name = priority: hubspot, *
company_name = priority: gmail
title = first
signup = first
)",
                                           &error);
  ASSERT_TRUE(p) << error;
  typed_traits_ = true;
  IncrementalEqualsRebuild(*p);
}

TEST_F(EngineDbTest, FailedBatchDropsTheGraphAndTheReloadAgreesWithTheDatabase) {
  const uint64_t seed = SeedFromEnv();
  std::cout << "engine db failure seed: " << seed << " (NEXUS_SEED=" << seed << " reproduces)" << std::endl;
  std::mt19937_64 rng(seed);
  StartIngestOnly();
  int n = 0;
  for (int i = 0; i < 30; ++i) Ingest({RandomEvent(rng, n++)});
  ResolveAll(10);
  // The next batch applies in memory, then fails while writing: the transaction rolls back.
  QueryScalar(url_,
              "CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
              "RAISE EXCEPTION 'injected failure'; END $$");
  QueryScalar(url_,
              "CREATE TRIGGER fail_once BEFORE INSERT ON person_participants FOR EACH STATEMENT EXECUTE "
              "FUNCTION fail_once()");
  for (int i = 0; i < 30; ++i) Ingest({RandomEvent(rng, n++)});
  EXPECT_THROW(store_->RunBatch(1000, protection_), storage::StorageError);
  EXPECT_THROW(store_->RunBatch(1000, protection_), storage::StorageError);
  QueryScalar(url_, "DROP TRIGGER fail_once ON person_participants");
  ResolveAll(4);  // reloads the graph from the database, then resolves what the failed batches did not
  EXPECT_EQ(store_->DiffGraphWithDatabase(), "");
  const auto incremental = Dump();
  store_->Rebuild(protection_);
  const auto rebuilt = Dump();
  ExpectSameTables(incremental, rebuilt, "between incremental and rebuild");
}

// The resolver dies right after a batch commits, before it has accounted for it (ResolverStore's after-commit
// hook throws there). The batch is in the database once: the process that goes on keeps a resident graph that
// agrees with the database, a new process loads one that does, and neither applies the batch again.
TEST_F(EngineDbTest, ResolverKilledRightAfterACommitGoesOnFromTheDatabase) {
  const uint64_t seed = SeedFromEnv();
  std::cout << "engine db after-commit seed: " << seed << " (NEXUS_SEED=" << seed << " reproduces)" << std::endl;
  std::mt19937_64 rng(seed);
  StartIngestOnly();
  int n = 0;
  auto kill_after_commit = [&](int64_t max_events) {
    int fired = 0;
    store_->SetAfterCommitHookForTesting([&] {
      ++fired;
      throw std::runtime_error("killed after the commit");
    });
    EXPECT_THROW(store_->RunBatch(max_events, protection_), std::runtime_error);
    store_->SetAfterCommitHookForTesting(nullptr);
    EXPECT_EQ(fired, 1);
  };
  for (int i = 0; i < 30; ++i) Ingest({RandomEvent(rng, n++)});
  ResolveAll(10);

  // The same process goes on: the graph it holds is the one the database describes.
  for (int i = 0; i < 20; ++i) Ingest({RandomEvent(rng, n++)});
  kill_after_commit(8);
  EXPECT_EQ(store_->DiffGraphWithDatabase(), "");
  ResolveAll(6);
  EXPECT_EQ(store_->DiffGraphWithDatabase(), "");

  // A new process: the store and its graph are gone; the next one loads the graph from the database.
  for (int i = 0; i < 20; ++i) Ingest({RandomEvent(rng, n++)});
  kill_after_commit(8);
  store_.reset();
  store_ = std::make_unique<storage::ResolverStore>(*db_, url_);
  ASSERT_TRUE(Reacquire());
  ResolveAll(5);
  EXPECT_EQ(store_->DiffGraphWithDatabase(), "");

  // Every batch applied exactly once (a batch applied twice would have inserted its participants twice): the
  // tables equal a rebuild of the whole log.
  const auto incremental = Dump();
  store_->Rebuild(protection_);
  const auto rebuilt = Dump();
  ExpectSameTables(incremental, rebuilt, "between incremental (killed after two commits) and rebuild");
}

// A rebuild reads the log on two connections (storage::RebuildControl::second_reader). Events committed while it
// reads (before its cursors are opened, and between its chunks) are above its horizon on both: the rebuild leaves
// them to the batches after it, which resolve each exactly once, and the result equals a rebuild of everything.
TEST_F(EngineDbTest, EventsCommittedWhileARebuildReadsAreLeftToTheNextBatch) {
  const uint64_t seed = SeedFromEnv();
  std::cout << "engine db concurrent rebuild seed: " << seed << " (NEXUS_SEED=" << seed << " reproduces)" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StartIngestOnly();
  int n = 0;
  for (int i = 0; i < 25; ++i) Ingest({RandomEvent(rng, n++), RandomEvent(rng, n++)});
  ResolveAll(8);
  const int64_t before = QueryCount(url_, "SELECT 1 FROM events");
  std::vector<v1::Event> at_start, mid_read;
  for (int i = 0; i < 5; ++i) at_start.push_back(RandomEvent(rng, n++));
  for (int i = 0; i < 5; ++i) mid_read.push_back(RandomEvent(rng, n++));
  storage::RebuildControl control;
  control.chunk_events = 3;  // several chunks: a report between them
  int reports = 0;
  control.on_progress = [&](const storage::RebuildProgress& p) {
    if (p.phase != "reading") return;
    if (reports == 0) Ingest(at_start);  // the horizon is taken; the cursors are not open
    if (p.events_done > 0 && mid_read.size() == 5) Ingest(mid_read), mid_read.clear();  // cursors open
    ++reports;
  };
  const auto stats = store_->Rebuild(protection_, control);
  ASSERT_TRUE(mid_read.empty()) << "the rebuild never reported between chunks";
  EXPECT_EQ(stats.events, before) << "the rebuild applied exactly the events committed before it began";
  EXPECT_EQ(QueryCount(url_, "SELECT 1 FROM events"), before + 10);
  EXPECT_EQ(ResolveAll(1000), 10) << "the batches after it take the 10 later events, once";
  const auto incremental = Dump();
  store_->Rebuild(protection_);
  const auto rebuilt = Dump();
  ExpectSameTables(incremental, rebuilt, "between incremental and rebuild");
}

// A rebuild writes the participant tables' shadows on a second connection and commits them before its own
// transaction swaps them in (storage::RebuildControl::side_writer). A rebuild stopped after that commit drops
// them again, and one that finds such a table left by a crashed rebuild replaces it: no shadow table stays
// behind, and the resolved tables are the ones a rebuild gives.
TEST_F(EngineDbTest, ARebuildStoppedAfterItsSideWriterCommittedLeavesNoTableBehind) {
  const uint64_t seed = SeedFromEnv();
  std::cout << "engine db side writer seed: " << seed << " (NEXUS_SEED=" << seed << " reproduces)" << std::endl;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  StartIngestOnly();
  int n = 0;
  for (int i = 0; i < 20; ++i) Ingest({RandomEvent(rng, n++), RandomEvent(rng, n++)});
  ResolveAll(1000);
  const auto before = Dump();
  const char* const kShadows = "SELECT 1 FROM pg_class WHERE relname LIKE '%\\_rb'";
  // What a rebuild that died between the side writer's commit and the swap leaves.
  QueryScalar(url_, "CREATE TABLE person_participants_rb (left_by_a_crash int)");
  ASSERT_EQ(QueryCount(url_, kShadows), 1);

  storage::RebuildControl control;
  bool indexed = false;
  control.on_progress = [&](const storage::RebuildProgress& p) { indexed = indexed || p.phase == "indexing"; };
  control.cancelled = [&] { return indexed; };  // polled next after the indexes (and the side writer's commit)
  try {
    store_->Rebuild(protection_, control);
    ADD_FAILURE() << "the rebuild was not stopped";
  } catch (const storage::StorageError& e) {
    EXPECT_EQ(e.kind(), storage::ErrorKind::kCancelled) << e.what();
  }
  EXPECT_TRUE(indexed);
  EXPECT_EQ(QueryCount(url_, kShadows), 0) << "a stopped rebuild left shadow tables";
  ExpectSameTables(before, Dump(), "after a stopped rebuild");

  store_->Rebuild(protection_);
  EXPECT_EQ(QueryCount(url_, kShadows), 0);
  ExpectSameTables(before, Dump(), "between incremental and a rebuild after a stopped one");
  // The side writer keeps autovacuum off its tables until the swap; the swapped-in tables have the live setting.
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT string_agg(relname || ':' || coalesce(array_to_string(reloptions, ','), ''), ' ' ORDER "
                        "BY relname) FROM pg_class WHERE relname IN ('person_participants', 'group_participants')"),
            "group_participants: person_participants:");
}

/// An event of `emails` (one person mention) and, when `domain` is set, a group of that domain with the first email
/// as its member in `role`, as ingest stores it.
storage::EventRecord MembershipEvent(const std::string& id, int64_t second, const std::vector<std::string>& emails,
                                     const std::string& domain = "", const std::string& role = "member") {
  storage::EventRecord e;
  e.event_id = id;
  e.occurred_at_us = (1'700'000'000 + second) * 1'000'000;
  e.event_name = "test_event";
  e.event_type = "communication";
  e.source = "crm";
  auto row = [](const std::string& edge, const std::string& type, const std::string& value, const std::string& role) {
    storage::IdentifierRow r;
    r.edge_id = edge;
    r.type = type;
    r.value = r.raw_value = value;
    r.role = role;
    return r;
  };
  for (const auto& m : emails) e.person_identifiers.push_back(row(id + "#p0", "email", m, "sender"));
  if (!domain.empty()) {
    e.group_identifiers.push_back(row(id + "#g0", "domain", domain, ""));
    e.memberships.push_back({"email", emails.front(), "domain", domain, role});
  }
  return e;
}

// Migration 018 on a database resolved before it: the membership tables take their natural keys in place, every
// resolved row (memberships.id included) stays as it was, and batches (upserts, merges that move memberships) and
// a rebuild go on under the new keys, the rebuild giving what the batches gave.
TEST(MembershipKeyMigration, ResolvedDatabaseUpgradesInPlace) {
  const std::string url = CreateTestDatabase();
  MigrateThrough(url, 17);
  storage::Database db({url, 2, std::chrono::milliseconds(5000)}, nullptr);
  storage::IngestStore ingest(db);
  const auto protection = resolver::ProtectionConfig::Unlimited();
  auto resolve = [&](storage::ResolverStore& store) {
    ResolveUntilNothingPending(db, [&] {
      int64_t total = 0;
      for (int64_t n; (n = store.RunBatch(1000, protection).events) > 0;) total += n;
      return total;
    });
  };
  {
    storage::ResolverStore store(db, url);
    ASSERT_TRUE(store.TryAcquireLock());
    ingest.Ingest({MembershipEvent("e1", 1, {"a@x"}, "one.io"), MembershipEvent("e2", 2, {"b@x"}, "one.io", "admin"),
                   MembershipEvent("e3", 3, {"c@x"}, "two.io")});
    resolve(store);
    store.Rebuild(protection);  // constraint names as a rebuild leaves them (its shadows' indexes, renamed)
    ingest.Ingest({MembershipEvent("e4", 4, {"a@x", "b@x"})});  // a merge: one membership of one.io is left
    resolve(store);
  }
  ASSERT_EQ(QueryScalar(url, "SELECT count(*) FROM memberships"), "2");
  ASSERT_EQ(QueryScalar(url, "SELECT count(*) FROM resolved_membership_identifiers"), "3");
  const auto before = DumpResolvedTables(url);

  const storage::MigrationResult result = storage::Migrate(db);
  ASSERT_FALSE(result.applied.empty());
  EXPECT_EQ(result.applied.front(), "018_membership_natural_keys");
  EXPECT_EQ(MembershipKeys(url), kMembershipKeys);
  for (const auto& [table, rows] : DumpResolvedTables(url)) {
    EXPECT_EQ(rows, before.at(table)) << "table " << table << " changed: " << FirstDifference(before.at(table), rows);
  }

  storage::ResolverStore store(db, url);
  ASSERT_TRUE(store.TryAcquireLock());
  ingest.Ingest({MembershipEvent("e5", 5, {"b@x", "c@x"}, "two.io", "admin"),  // a merge, and a role changes
                 MembershipEvent("e6", 6, {"d@x"}, "one.io")});
  resolve(store);
  EXPECT_EQ(QueryScalar(url, "SELECT count(*) FROM memberships"), "3");
  EXPECT_EQ(QueryScalar(url,
                        "SELECT m.role FROM memberships m JOIN resolved_person_identifiers p ON p.person_id = "
                        "m.person_id JOIN resolved_group_identifiers g ON g.group_id = m.group_id WHERE "
                        "p.identifier_value = 'a@x' AND g.identifier_value = 'two.io'"),
            "admin");
  const auto incremental = DumpResolvedTables(url);
  store.Rebuild(protection);
  EXPECT_EQ(MembershipKeys(url), kMembershipKeys);
  for (const auto& [table, rows] : DumpResolvedTables(url)) {
    EXPECT_EQ(rows, incremental.at(table))
        << "table " << table << " differs after a rebuild: " << FirstDifference(incremental.at(table), rows);
  }
}

}  // namespace
}  // namespace nexus::testing
