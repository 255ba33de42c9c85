// Faults from outside, against the real nexusd binary: kill -9 at random points of ingest and resolution,
// PostgreSQL stopped and restarted under load, a second process on the same data dir or port, and a data
// dir whose parents postgres cannot search. Issue 12: each of these either lost data, hung, hit the wrong
// process or changed something it should not have.
//
// NEXUS_SEED=<n> replays a run (the seed is printed on every run); NEXUS_FAULT_RUNS=<n> sets the number of
// kill -9 rounds (default 4: CI; scripts/fault-suite.sh --long runs 25).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexusd_process.h"
#include "pg_fixture.h"
#include "storage/embedded_postgres.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

uint64_t Seed() {
  if (const char* s = std::getenv("NEXUS_SEED"); s && *s) return std::strtoull(s, nullptr, 10);
  return std::random_device{}();
}

int FaultRuns() {
  if (const char* s = std::getenv("NEXUS_FAULT_RUNS"); s && *s) return std::max(1, std::atoi(s));
  return 4;
}

/// Waits (bounded) for the process to exit by itself.
std::optional<int> WaitExit(NexusdProcess& p, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (p.Exited()) return p.exit_status();
    std::this_thread::sleep_for(milliseconds(20));
  }
  return std::nullopt;
}

/// An event over small value spaces, so that requests merge persons (emails, user ids shared between
/// events) and carry groups, memberships and traits: every resolved table gets rows.
v1::Event RandomEvent(std::mt19937_64& rng, const std::string& id) {
  auto pick = [&](int hi) { return std::uniform_int_distribution<int>(0, hi)(rng); };
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000 + pick(100000));
  e.set_event_name("touch");
  e.set_event_type("activity");
  e.set_source(pick(1) ? "crm" : "email");
  const int persons = 1 + pick(1);
  for (int p = 0; p < persons; ++p) {
    auto* m = e.add_persons();
    m->set_role(p == 0 ? "sender" : "recipient");
    const int ids = 1 + pick(2);
    for (int i = 0; i < ids; ++i) {
      auto* ident = m->add_identifiers();
      if (pick(2) == 0) {
        ident->set_type("user_id");
        ident->set_value("u" + std::to_string(pick(400)));
      } else {
        ident->set_type("email");
        ident->set_value("p" + std::to_string(pick(800)) + "@example.com");
      }
    }
    if (pick(2) == 0) (*m->mutable_traits())["name"] = "Name " + std::to_string(pick(50));
  }
  if (pick(3) == 0) {
    auto* g = e.add_groups();
    auto* gi = g->add_identifiers();
    gi->set_type("domain");
    gi->set_value("company" + std::to_string(pick(30)) + ".example");
    auto* ms = e.add_memberships();
    *ms->mutable_person() = e.persons(0).identifiers(0);
    *ms->mutable_group() = *gi;
    ms->set_role(pick(1) ? "admin" : "member");
  }
  return e;
}

class FaultPgTest : public PgTest {
 protected:
  std::vector<std::string> ServerArgs() const {
    return {"--database-url=" + url_,      "--grpc-listen=127.0.0.1:0",
            "--http-listen=127.0.0.1:0",   "--db-pool-size=4",
            "--resolver-batch-events=150", "--resolver-poll-interval=50ms",
            "--shutdown-grace=2s",         "--log-level=info"};
  }
  static std::unique_ptr<v1::IngestService::Stub> IngestStub(int port) {
    return v1::IngestService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
};

// kill -9 while clients ingest and the resolver resolves; then restart. Every acknowledged request is
// stored, no request is half-stored, and once the restarted resolver has caught up every resolved table
// equals what a full rebuild of the same log gives.
TEST_F(FaultPgTest, KillNineAtRandomPointsLosesNothingAndConvergesToARebuild) {
  const uint64_t seed = Seed();
  const int runs = FaultRuns();
  std::cout << "[ fault ] seed " << seed << " (NEXUS_SEED), " << runs << " kill -9 rounds (NEXUS_FAULT_RUNS)\n";
  std::mt19937_64 rng(seed);
  constexpr int kEventsPerRequest = 20;
  std::set<std::string> acked_requests;  // "r<run>-q<request>"
  int sent_requests = 0;
  const std::string dir = ScratchDir();

  for (int run = 0; run < runs; ++run) {
    NexusdProcess nexusd(ServerArgs(),
                         dir + "/fault-" + std::to_string(::getpid()) + "-" + std::to_string(run) + ".log");
    ASSERT_TRUE(nexusd.WaitServing(seconds(60))) << "nexusd did not start:\n" << nexusd.Log();
    // Half of the rounds kill during ingest; the others stop ingesting first and kill while the resolver
    // works through the backlog.
    const bool during_ingest = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
    const auto kill_after = milliseconds(std::uniform_int_distribution<int>(150, 1500)(rng));
    std::atomic<bool> stop{false};
    std::mutex mu;
    std::vector<std::thread> clients;
    for (int c = 0; c < 2; ++c) {
      const uint64_t client_seed = rng();
      clients.emplace_back([&, c, client_seed] {
        std::mt19937_64 crng(client_seed);
        auto stub = IngestStub(nexusd.grpc_port());
        for (int q = 0; !stop; ++q) {
          const std::string req_id = "r" + std::to_string(run) + "-c" + std::to_string(c) + "-q" + std::to_string(q);
          v1::IngestEventsRequest req;
          for (int k = 0; k < kEventsPerRequest; ++k)
            *req.add_events() = RandomEvent(crng, req_id + "-e" + std::to_string(k));
          v1::IngestEventsResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
          const auto st = stub->IngestEvents(&ctx, req, &resp);
          std::lock_guard<std::mutex> lock(mu);
          ++sent_requests;
          if (!st.ok()) return;  // the server is gone
          acked_requests.insert(req_id);
        }
      });
    }
    if (during_ingest) {
      std::this_thread::sleep_for(kill_after);
    } else {
      std::this_thread::sleep_for(milliseconds(800));
      stop = true;
      for (auto& t : clients) t.join();
      clients.clear();
      std::this_thread::sleep_for(kill_after / 4);
    }
    ::kill(nexusd.pid(), SIGKILL);
    stop = true;
    for (auto& t : clients) t.join();
    const auto st = WaitExit(nexusd, seconds(10));
    ASSERT_TRUE(st && WIFSIGNALED(*st)) << DescribeStatus(st);
    std::cout << "[ fault ] round " << run << ": killed " << (during_ingest ? "during ingest" : "while resolving")
              << " after " << kill_after.count() << " ms; " << acked_requests.size()
              << " requests acknowledged so far\n";
  }

  // Acknowledged == stored; all or nothing per request.
  const std::string per_request =
      QueryScalar(url_,
                  "SELECT string_agg(r || ':' || n, ',' ORDER BY r) FROM (SELECT substring(event_id from "
                  "'^(r[0-9]+-c[0-9]+-q[0-9]+)-') AS r, count(*) AS n FROM events GROUP BY 1) x");
  std::map<std::string, int> stored;
  {
    std::stringstream ss(per_request);
    std::string item;
    while (std::getline(ss, item, ',')) {
      const auto colon = item.rfind(':');
      stored[item.substr(0, colon)] = std::stoi(item.substr(colon + 1));
    }
  }
  for (const auto& r : acked_requests) {
    ASSERT_EQ(stored.count(r), 1u) << "acknowledged request " << r << " is not stored (seed " << seed << ")";
  }
  for (const auto& [r, n] : stored) {
    EXPECT_EQ(n, kEventsPerRequest) << "request " << r << " is half-stored (seed " << seed << ")";
  }
  ASSERT_GT(acked_requests.size(), 0u);
  std::cout << "[ fault ] " << acked_requests.size() << " of " << sent_requests << " requests acknowledged, "
            << stored.size() << " stored, none partially\n";

  // Restart; the resolver catches up from the database state the kills left behind.
  {
    NexusdProcess nexusd(ServerArgs(), dir + "/fault-" + std::to_string(::getpid()) + "-final.log");
    ASSERT_TRUE(nexusd.WaitServing(seconds(60))) << nexusd.Log();
    auto admin = v1::AdminService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(nexusd.grpc_port()), grpc::InsecureChannelCredentials()));
    const auto deadline = Clock::now() + seconds(120);
    for (;;) {
      v1::ResolverStatus status;
      grpc::ClientContext ctx;
      ASSERT_TRUE(admin->GetResolverStatus(&ctx, v1::GetResolverStatusRequest(), &status).ok());
      if (status.active() && status.events_pending() == 0) break;
      ASSERT_LT(Clock::now(), deadline) << "the resolver did not catch up: " << status.events_pending() << " pending";
      std::this_thread::sleep_for(milliseconds(100));
    }
    const auto st = nexusd.SignalAndWait(SIGTERM, seconds(30));
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(st) << "\n" << nexusd.Log();
  }
  const auto incremental = DumpResolvedTables(url_);
  {
    NexusdProcess rebuild({"--database-url=" + url_, "--rebuild"},
                          dir + "/fault-" + std::to_string(::getpid()) + "-rebuild.log");
    const auto st = WaitExit(rebuild, seconds(120));
    ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(st) << "\n" << rebuild.Log();
  }
  const auto rebuilt = DumpResolvedTables(url_);
  for (const auto& [table, rows] : incremental) {
    EXPECT_EQ(rows, rebuilt.at(table)) << table << " differs from a rebuild (seed " << seed
                                       << "): " << FirstDifference(rows, rebuilt.at(table));
  }
  EXPECT_FALSE(incremental.at("persons").empty());
}

// Issue 17: two nexusd processes on one database, the resolving one killed (-9) while it resolves under
// ingest: the other takes the resolver lock, loads the graph and carries on; every acknowledged event is stored
// and resolved, and the result equals a rebuild. The takeover time (kill -> the other reports itself active) is
// printed; docs/SCALING.md explains what it is made of.
TEST_F(FaultPgTest, ResolverLeaderKilledMidBatchTheOtherTakesOverAndNothingIsLost) {
  const uint64_t seed = Seed();
  std::cout << "[ failover ] seed " << seed << " (NEXUS_SEED)\n";
  std::mt19937_64 rng(seed);
  const std::string dir = ScratchDir() + "/failover-" + std::to_string(::getpid());
  auto admin_stub = [](int port) {
    return v1::AdminService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  };
  auto status_of = [](v1::AdminService::Stub& stub) {
    v1::ResolverStatus st;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(5));
    EXPECT_TRUE(stub.GetResolverStatus(&ctx, v1::GetResolverStatusRequest(), &st).ok());
    return st;
  };
  auto a = std::make_unique<NexusdProcess>(ServerArgs(), dir + "-a.log");
  ASSERT_TRUE(a->WaitServing(seconds(60))) << a->Log();
  auto a_admin = admin_stub(a->grpc_port());
  for (auto deadline = Clock::now() + seconds(30); !status_of(*a_admin).active();) {
    ASSERT_LT(Clock::now(), deadline) << "the first nexusd never took the resolver lock";
    std::this_thread::sleep_for(milliseconds(20));
  }
  NexusdProcess b(ServerArgs(), dir + "-b.log");
  ASSERT_TRUE(b.WaitServing(seconds(60))) << b.Log();
  auto b_admin = admin_stub(b.grpc_port());
  ASSERT_FALSE(status_of(*b_admin).active()) << "two resolvers hold the lock";

  // Clients ingest through the standby process (ingest works on every replica), 20 events a request.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::set<std::string> acked;
  std::vector<std::thread> clients;
  for (int c = 0; c < 2; ++c) {
    const uint64_t client_seed = rng();
    clients.emplace_back([&, c, client_seed] {
      std::mt19937_64 crng(client_seed);
      auto stub = IngestStub(b.grpc_port());
      for (int q = 0; !stop; ++q) {
        const std::string req_id = "f-c" + std::to_string(c) + "-q" + std::to_string(q);
        v1::IngestEventsRequest req;
        for (int k = 0; k < 20; ++k) *req.add_events() = RandomEvent(crng, req_id + "-e" + std::to_string(k));
        v1::IngestEventsResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
        if (!stub->IngestEvents(&ctx, req, &resp).ok()) continue;
        std::lock_guard<std::mutex> lock(mu);
        acked.insert(req_id);
      }
    });
  }
  // Kill the leader while it is resolving: after it has committed some batches and has a backlog.
  for (auto deadline = Clock::now() + seconds(30);;) {
    const auto st = status_of(*a_admin);
    if (st.batches_total() >= 3 && st.events_pending() > 0) break;
    ASSERT_LT(Clock::now(), deadline) << "the leader never got busy";
    std::this_thread::sleep_for(milliseconds(10));
  }
  const auto killed_at = Clock::now();
  ::kill(a->pid(), SIGKILL);
  ASSERT_TRUE(WaitExit(*a, seconds(10)));
  const int64_t batches_before = std::stoll(QueryScalar(url_, "SELECT batches_total FROM resolver_state"));
  double lock_ms = -1, takeover_ms = -1;
  for (auto deadline = Clock::now() + seconds(60);;) {
    const auto st = status_of(*b_admin);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - killed_at).count();
    if (st.active() && lock_ms < 0) lock_ms = ms;
    if (st.active() && st.batches_total() > batches_before) {  // graph loaded and a batch committed
      takeover_ms = ms;
      break;
    }
    ASSERT_LT(Clock::now(), deadline) << "the standby never took over:\n" << b.Log();
    std::this_thread::sleep_for(milliseconds(5));
  }
  std::this_thread::sleep_for(milliseconds(500));  // the new leader resolves while ingest goes on
  stop = true;
  for (auto& t : clients) t.join();
  for (auto deadline = Clock::now() + seconds(120);;) {
    const auto st = status_of(*b_admin);
    if (st.active() && st.events_pending() == 0) break;
    ASSERT_LT(Clock::now(), deadline) << "the new leader did not catch up: " << st.events_pending() << " pending";
    std::this_thread::sleep_for(milliseconds(50));
  }
  std::cout << "[ failover ] kill -9 -> the other nexusd holds the lock: " << lock_ms
            << " ms; -> its first batch committed (graph loaded): " << takeover_ms << " ms; " << acked.size()
            << " requests acknowledged\n";
  ASSERT_GT(acked.size(), 0u);
  for (const auto& r : acked) {
    EXPECT_EQ(QueryCount(url_, "SELECT 1 FROM events WHERE event_id LIKE '" + r + "-e%'"), 20)
        << "acknowledged request " << r << " is not (wholly) stored (seed " << seed << ")";
  }
  EXPECT_EQ(QueryScalar(url_,
                        "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM person_participants p "
                        "WHERE p.event_id = e.event_id)"),
            "0")
      << "stored events without resolved participants (seed " << seed << ")";
  const auto st = b.SignalAndWait(SIGTERM, seconds(30));
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(st) << "\n" << b.Log();
  const auto incremental = DumpResolvedTables(url_);
  {
    NexusdProcess rebuild({"--database-url=" + url_, "--rebuild"}, dir + "-rebuild.log");
    const auto rst = WaitExit(rebuild, seconds(120));
    ASSERT_TRUE(rst && WIFEXITED(*rst) && WEXITSTATUS(*rst) == 0) << DescribeStatus(rst) << "\n" << rebuild.Log();
  }
  const auto rebuilt = DumpResolvedTables(url_);
  for (const auto& [table, rows] : incremental) {
    EXPECT_EQ(rows, rebuilt.at(table)) << table << " differs from a rebuild (seed " << seed
                                       << "): " << FirstDifference(rows, rebuilt.at(table));
  }
}

// PostgreSQL stopped under load and started again: calls fail quickly instead of hanging, readiness turns
// 503 while it is down and 200 after, ingest resumes, and nothing acknowledged is lost.
TEST_F(FaultPgTest, PostgresStopAndStartUnderLoad) {
  TempDir dir("nexus-fault-pg");
  storage::EmbeddedPostgresOptions o;
  o.data_dir = dir.path();
  o.port = 5433;
  storage::EmbeddedPostgres pg(o);
  const std::string url = pg.Start();
  NexusdProcess nexusd({"--database-url=" + url, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                        "--db-pool-size=4", "--resolver-poll-interval=100ms", "--shutdown-grace=2s"},
                       dir.path() + "/nexusd.log");
  ASSERT_TRUE(nexusd.WaitServing(seconds(60))) << nexusd.Log();
  ASSERT_TRUE(WaitReady(nexusd.http_port(), seconds(30))) << nexusd.Log();

  std::mt19937_64 rng(Seed());
  auto stub = IngestStub(nexusd.grpc_port());
  std::set<std::string> acked;
  int q = 0;
  struct Outcome {
    bool ok;
    Clock::duration took;
  };
  auto ingest_one = [&]() {
    const std::string id = "pgstop-" + std::to_string(q++);
    v1::IngestEventsRequest req;
    *req.add_events() = RandomEvent(rng, id);
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
    const auto t0 = Clock::now();
    const bool ok = stub->IngestEvents(&ctx, req, &resp).ok();
    if (ok) acked.insert(id);
    return Outcome{ok, Clock::now() - t0};
  };
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ingest_one().ok);

  pg.Stop();
  // Down: each call answers (an error) within a few seconds, and readiness says so.
  for (int i = 0; i < 5; ++i) {
    const auto out = ingest_one();
    EXPECT_FALSE(out.ok);
    EXPECT_LT(out.took, seconds(5)) << "an ingest call took "
                                    << std::chrono::duration_cast<milliseconds>(out.took).count()
                                    << " ms with the database down";
  }
  // Readiness follows the database probe (every second, --db-probe-timeout 2s): 503 within a few seconds, and
  // every answer on the way comes at once.
  const auto t0 = Clock::now();
  int status = 0;
  while (Clock::now() - t0 < seconds(6)) {
    const auto t = Clock::now();
    status = HttpGet(nexusd.http_port(), "/readyz").status;
    EXPECT_LT(Clock::now() - t, seconds(1)) << "/readyz took over a second with the database down";
    if (status == 503) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(status, 503) << "/readyz did not turn 503 within 6 s of PostgreSQL stopping";

  pg.Start();
  // Up again: ingest works within a bounded time, without restarting nexusd.
  const auto deadline = Clock::now() + seconds(30);
  while (!ingest_one().ok) {
    ASSERT_LT(Clock::now(), deadline) << "ingest did not recover after PostgreSQL came back\n" << nexusd.Log();
    std::this_thread::sleep_for(milliseconds(200));
  }
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(ingest_one().ok);
  EXPECT_TRUE(WaitReady(nexusd.http_port(), seconds(10)));
  for (const auto& id : acked) {
    EXPECT_EQ(QueryScalar(url, "SELECT count(*) FROM events WHERE event_id = '" + id + "'"), "1") << id;
  }
  const auto st = nexusd.SignalAndWait(SIGTERM, seconds(30));
  EXPECT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(st) << "\n" << nexusd.Log();
}

// A second nexusd on the same data dir used to reuse the first one's embedded PostgreSQL and then stop it
// on its way out (after failing to bind the port): the running service was down. It must refuse at once,
// name the holder, and leave the first one serving.
TEST_F(FaultPgTest, SecondProcessOnTheSameDataDirIsRefusedAndTheFirstKeepsServing) {
  TempDir dir("nexus-fault-dd");
  NexusdProcess first({"--data-dir=" + dir.path(), "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                       "--shutdown-grace=2s", "--db-pool-size=4"},
                      dir.path() + "/first.log");
  ASSERT_TRUE(first.WaitServing(seconds(180))) << first.Log();
  ASSERT_TRUE(WaitReady(first.http_port(), seconds(30))) << first.Log();
  const pid_t postmaster = PostmasterPid(dir.path() + "/pgdata");
  ASSERT_GT(postmaster, 0);

  // The same ports as the first, as in the report (the HTTP bind used to fail after the cluster was reused).
  NexusdProcess second({"--data-dir=" + dir.path(), "--grpc-listen=127.0.0.1:" + std::to_string(first.grpc_port()),
                        "--http-listen=127.0.0.1:" + std::to_string(first.http_port()), "--shutdown-grace=2s"},
                       dir.path() + "/second.log");
  const auto st = WaitExit(second, seconds(30));
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << DescribeStatus(st) << "\n" << second.Log();
  EXPECT_NE(second.Log().find("is in use by another nexusd (pid " + std::to_string(first.pid()) + ")"),
            std::string::npos)
      << second.Log();
  EXPECT_EQ(second.Log().find("stopping embedded PostgreSQL"), std::string::npos) << second.Log();

  EXPECT_TRUE(ProcessAlive(postmaster)) << "the first nexusd's PostgreSQL was stopped";
  EXPECT_EQ(HttpGet(first.http_port(), "/readyz").status, 200);
  const auto ingest = HttpPost(first.http_port(), "/v1/events:ingest",
                               R"({"events":[{"event_id":"still-up","occurred_at":"2024-01-01T00:00:00Z",
                                  "event_name":"x","event_type":"x","source":"fault_test",
                                  "persons":[{"identifiers":[{"type":"email","value":"a@example.com"}]}]}]})");
  EXPECT_EQ(ingest.status, 200) << ingest.body;
  const auto fst = first.SignalAndWait(SIGTERM, seconds(60));
  EXPECT_TRUE(fst && WIFEXITED(*fst) && WEXITSTATUS(*fst) == 0) << DescribeStatus(fst) << "\n" << first.Log();

  // The lock goes with the process: after a kill -9 the next start takes over (and reuses the cluster).
  {
    NexusdProcess third({"--data-dir=" + dir.path(), "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                         "--shutdown-grace=2s", "--db-pool-size=4"},
                        dir.path() + "/third.log");
    ASSERT_TRUE(third.WaitServing(seconds(120))) << third.Log();
    ::kill(third.pid(), SIGKILL);
    WaitExit(third, seconds(10));
  }
  NexusdProcess fourth({"--data-dir=" + dir.path(), "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                        "--shutdown-grace=2s", "--db-pool-size=4"},
                       dir.path() + "/fourth.log");
  ASSERT_TRUE(fourth.WaitServing(seconds(120))) << fourth.Log();
  EXPECT_TRUE(WaitReady(fourth.http_port(), seconds(30))) << fourth.Log();
  const auto fourth_st = fourth.SignalAndWait(SIGTERM, seconds(60));
  EXPECT_TRUE(fourth_st && WIFEXITED(*fourth_st) && WEXITSTATUS(*fourth_st) == 0) << fourth.Log();
}

// gRPC turns SO_REUSEPORT on by default: two nexusd processes could listen on one port and split the
// lookups between them. The second bind must fail, as the HTTP one does.
TEST_F(FaultPgTest, SecondProcessOnTheSameGrpcPortFailsToStart) {
  const std::string dir = ScratchDir();
  NexusdProcess first({"--database-url=" + url_, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                       "--db-pool-size=2", "--resolver=false"},
                      dir + "/port-first-" + std::to_string(::getpid()) + ".log");
  ASSERT_TRUE(first.WaitServing(seconds(60))) << first.Log();
  NexusdProcess second({"--database-url=" + url_, "--grpc-listen=127.0.0.1:" + std::to_string(first.grpc_port()),
                        "--http-listen=127.0.0.1:0", "--db-pool-size=2", "--resolver=false"},
                       dir + "/port-second-" + std::to_string(::getpid()) + ".log");
  const auto st = WaitExit(second, seconds(30));
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) != 0)
      << "a second nexusd bound the same gRPC port: " << DescribeStatus(st) << "\n"
      << second.Log();
  EXPECT_NE(second.Log().find("cannot listen for gRPC on 127.0.0.1:" + std::to_string(first.grpc_port())),
            std::string::npos)
      << second.Log();
  const auto fst = first.SignalAndWait(SIGTERM, seconds(30));
  EXPECT_TRUE(fst && WIFEXITED(*fst) && WEXITSTATUS(*fst) == 0) << first.Log();
}

// Run as root, nexusd used to add o+x to every parent of the data dir that postgres could not search (a
// checkout under /root opened /root). It must leave them alone and say what is needed.
TEST_F(FaultPgTest, AsRootTheDataDirsParentsKeepTheirModes) {
  if (::geteuid() != 0) GTEST_SKIP() << "only meaningful as root (PostgreSQL then runs as postgres)";
  TempDir outer("nexus-fault-mode");  // mkdtemp: 0700, root's
  ::chmod(outer.path().c_str(), 0700);
  const std::string data_dir = outer.path() + "/inner/data";
  NexusdProcess nexusd({"--data-dir=" + data_dir, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0"},
                       "/tmp/nexus-fault-mode-" + std::to_string(::getpid()) + ".log");
  const auto st = WaitExit(nexusd, seconds(60));
  const std::string log = nexusd.Log();
  std::filesystem::remove("/tmp/nexus-fault-mode-" + std::to_string(::getpid()) + ".log");
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 1) << DescribeStatus(st) << "\n" << log;
  EXPECT_NE(log.find("chmod o+x " + outer.path()), std::string::npos) << log;
  struct stat s {};
  ASSERT_EQ(::stat(outer.path().c_str(), &s), 0);
  EXPECT_EQ(s.st_mode & 07777, 0700u) << "nexusd changed the mode of a directory outside its data dir";
}

TEST_F(FaultPgTest, VersionFlagPrintsTheBuild) {
  NexusdProcess p({"--version"}, ScratchDir() + "/version-" + std::to_string(::getpid()) + ".log");
  const auto st = WaitExit(p, seconds(10));
  ASSERT_TRUE(st && WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << DescribeStatus(st);
  EXPECT_EQ(p.Log().rfind("nexusd ", 0), 0u) << p.Log();
  EXPECT_NE(p.Log().find("(git "), std::string::npos) << p.Log();
}

}  // namespace
}  // namespace nexus::testing
