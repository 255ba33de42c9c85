// Graceful shutdown of the real nexusd binary (NEXUSD_BINARY), driven from outside like an operator would:
// SIGTERM during a stream of ingests loses no acknowledged batch and exits 0; with the embedded PostgreSQL,
// SIGTERM also stops the cluster (no postgres left behind) and a restart on the same data dir reuses the data.

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexusd_process.h"
#include "pg_fixture.h"

extern char** environ;

namespace nexus::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

v1::Event MakeEvent(const std::string& id, int n) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000 + n);
  e.set_event_name("tick");
  e.set_event_type("tick");
  e.set_source("shutdown_test");
  auto* i = e.add_persons()->add_identifiers();
  i->set_type("email");
  i->set_value("u" + std::to_string(n % 50) + "@example.com");
  return e;
}

class ShutdownPgTest : public PgTest {};

TEST_F(ShutdownPgTest, SigtermDuringIngestStreamKeepsEveryAcknowledgedBatch) {
  TempDir dir("nexus-shutdown");
  NexusdProcess nexusd({"--database-url=" + url_, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
                        "--shutdown-grace=2s", "--db-pool-size=4", "--resolver-poll-interval=200ms"},
                       dir.path() + "/nexusd.log");
  ASSERT_TRUE(nexusd.WaitServing(seconds(60))) << "nexusd did not start:\n" << nexusd.Log();

  constexpr int kEventsPerBatch = 20;
  std::mutex mu;
  std::vector<int> acked;  // batch numbers the server acknowledged
  std::atomic<bool> stream_ended{false};
  grpc::Status finish_status;
  std::thread client([&] {
    auto stub = v1::IngestService::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(nexusd.grpc_port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(60));
    auto stream = stub->IngestEventStream(&ctx);
    for (int b = 0; b < 100000; ++b) {
      v1::IngestEventsRequest req;
      for (int i = 0; i < kEventsPerBatch; ++i) {
        *req.add_events() = MakeEvent("b" + std::to_string(b) + "-" + std::to_string(i), b * kEventsPerBatch + i);
      }
      if (!stream->Write(req)) break;
      v1::IngestEventsResponse resp;
      if (!stream->Read(&resp)) break;
      {
        std::lock_guard<std::mutex> lock(mu);
        acked.push_back(b);
      }
      std::this_thread::sleep_for(milliseconds(5));
    }
    stream->WritesDone();
    finish_status = stream->Finish();
    stream_ended = true;
  });

  // Let some batches through, then SIGTERM while the stream is busy.
  const auto deadline = Clock::now() + seconds(30);
  for (;;) {
    size_t n = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      n = acked.size();
    }
    if (n >= 10 || stream_ended || Clock::now() > deadline) break;
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_FALSE(stream_ended) << "the stream ended before SIGTERM: " << finish_status.error_message();
  const auto status = nexusd.SignalAndWait(SIGTERM, seconds(30));
  client.join();  // bounded: the server is gone (or the 60 s stream deadline hits)

  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status) << "\n"
                                                                         << nexusd.Log();
  EXPECT_NE(nexusd.Log().find("\"msg\":\"stopped\""), std::string::npos) << nexusd.Log();

  std::vector<int> acked_copy;
  {
    std::lock_guard<std::mutex> lock(mu);
    acked_copy = acked;
  }
  ASSERT_GE(acked_copy.size(), 10u);
  std::set<std::string> stored;
  {
    pqxx::connection c(url_);
    pqxx::nontransaction n(c);
    for (const auto& row : n.exec("SELECT event_id FROM events")) stored.insert(row[0].c_str());
  }
  int missing = 0;
  for (int b : acked_copy) {
    for (int i = 0; i < kEventsPerBatch; ++i) {
      if (!stored.count("b" + std::to_string(b) + "-" + std::to_string(i))) ++missing;
    }
  }
  EXPECT_EQ(missing, 0) << "acknowledged events missing from the events table";
  // Nothing half-written: every batch is all or nothing.
  EXPECT_EQ(stored.size() % kEventsPerBatch, 0u);
  EXPECT_GE(stored.size(), acked_copy.size() * kEventsPerBatch);
  std::cout << "[ shutdown ] " << acked_copy.size() << " batches acknowledged, " << stored.size()
            << " events stored, stream ended with code " << finish_status.error_code() << "\n";
}

TEST_F(ShutdownPgTest, EmbeddedPostgresStopsOnSigtermAndRestartReusesData) {
  TempDir dir("nexus-embed");
  const std::string pgdata = dir.path() + "/pgdata";
  const std::string db_url = "host=" + dir.path() + "/run port=5432 dbname=nexus user=nexus";
  const std::vector<std::string> args{"--data-dir=" + dir.path(), "--grpc-listen=127.0.0.1:0",
                                      "--http-listen=127.0.0.1:0", "--shutdown-grace=2s", "--db-pool-size=4"};
  pid_t first_postmaster = 0;
  {
    NexusdProcess nexusd(args, dir.path() + "/nexusd-1.log");
    ASSERT_TRUE(nexusd.WaitServing(seconds(180))) << "nexusd did not start:\n" << nexusd.Log();
    ASSERT_TRUE(WaitReady(nexusd.http_port(), seconds(30))) << nexusd.Log();
    const std::string log = nexusd.Log();
    EXPECT_NE(log.find("\"psql\":"), std::string::npos) << log;
    EXPECT_NE(log.find("creating embedded PostgreSQL cluster"), std::string::npos) << log;

    first_postmaster = PostmasterPid(pgdata);
    ASSERT_GT(first_postmaster, 0) << "no postmaster.pid under " << pgdata;
    EXPECT_TRUE(ProcessAlive(first_postmaster));

    // The schema is there and visible to a plain client on the private socket.
    EXPECT_EQ(QueryScalar(db_url,
                          "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                          "AND table_name IN ('events', 'person_identifiers', 'resolver_state')"),
              "3");
    const auto ingest = HttpPost(nexusd.http_port(), "/v1/events:ingest",
                                 R"({"events":[{"event_id":"persist-1","occurred_at":"2023-11-14T22:13:20Z",
                                    "event_name":"signup","event_type":"signup","source":"embedded_test",
                                    "persons":[{"identifiers":[{"type":"email","value":"keep@example.com"}]}]}]})");
    ASSERT_EQ(ingest.status, 200) << ingest.body;

    const auto status = nexusd.SignalAndWait(SIGTERM, seconds(60));
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status) << "\n"
                                                                           << nexusd.Log();
  }
  EXPECT_FALSE(std::filesystem::exists(pgdata + "/postmaster.pid")) << "postmaster.pid left behind";
  EXPECT_TRUE(WaitGone(first_postmaster, seconds(5))) << "postmaster " << first_postmaster << " still running";
  EXPECT_TRUE(PostgresProcesses(pgdata, first_postmaster).empty()) << "postgres processes left for " << pgdata;

  // Second start on the same data dir: no initdb, same data.
  {
    NexusdProcess nexusd(args, dir.path() + "/nexusd-2.log");
    ASSERT_TRUE(nexusd.WaitServing(seconds(120))) << "nexusd did not restart:\n" << nexusd.Log();
    ASSERT_TRUE(WaitReady(nexusd.http_port(), seconds(30))) << nexusd.Log();
    EXPECT_EQ(nexusd.Log().find("creating embedded PostgreSQL cluster"), std::string::npos) << nexusd.Log();
    EXPECT_EQ(QueryScalar(db_url, "SELECT count(*) FROM events WHERE event_id = 'persist-1'"), "1");
    const pid_t pm = PostmasterPid(pgdata);
    const auto status = nexusd.SignalAndWait(SIGTERM, seconds(60));
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeStatus(status) << "\n"
                                                                           << nexusd.Log();
    EXPECT_FALSE(std::filesystem::exists(pgdata + "/postmaster.pid"));
    EXPECT_TRUE(WaitGone(pm, seconds(5)));
    EXPECT_TRUE(PostgresProcesses(pgdata, pm).empty());
  }
}

}  // namespace
}  // namespace nexus::testing
