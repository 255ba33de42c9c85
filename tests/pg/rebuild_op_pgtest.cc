// The full rebuild as a background operation: Rebuild starts it and returns at once, GetRebuildStatus follows
// it, a second start is refused while one runs, shutdown cancels it (rolled back), and `nexusd --rebuild`
// gives up on a held resolver lock and obeys SIGTERM.
//
// Changes that a committed rebuild would make are observable: data is resolved with unlimited caps, then the
// rebuild runs with the default caps (a person holds at most 1 user_id), which splits one person and
// quarantines an edge. "Nothing changed" therefore means the merged person and no quarantined edge.
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "http_client.h"
#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "pg_fixture.h"
#include "resolver/protection.h"
#include "server/admin_service.h"
#include "server/app.h"
#include "server/metrics.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"
#include "storage/detail/pg.h"

extern char** environ;

namespace nexus::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;
using Op = v1::RebuildOperation;

constexpr const char* kResolverLockKey = "7954896762663232883";  // 0x6e65787573726573, storage/resolver_store.cc

/// Blocks the first progress report of a rebuild (on the resolver thread) until opened or the worker stops,
/// so a test sees a rebuild that is certainly running. Shared with the observer, which may outlive the test.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false;
  bool open = false;
  server::ResolverWorker* worker = nullptr;

  void Enter() {
    std::unique_lock<std::mutex> lock(mu);
    if (entered) return;
    entered = true;
    cv.notify_all();
    const auto deadline = Clock::now() + seconds(60);
    while (!open && !(worker && worker->stopping()) && Clock::now() < deadline) cv.wait_for(lock, milliseconds(10));
  }
  bool WaitEntered() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, seconds(60), [&] { return entered; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

/// Event i: person i%persons (email p<k>@x.io, user_id u<k>) and group i%groups (domain d<k>.io). First
/// {c@x.io, ua}, {d@x.io, ub} and the edge {c@x.io, ub} joining them: one person with unlimited caps; with the
/// default caps two persons and a quarantined edge.
std::vector<v1::Event> MakeEvents(int n, int persons, int groups) {
  std::vector<v1::Event> out;
  auto add = [&](const std::string& id, const std::string& email, const std::string& user, int g) {
    v1::Event e;
    e.set_event_id(id);
    e.mutable_occurred_at()->set_seconds(1700000000 + static_cast<int64_t>(out.size()));
    e.set_event_name("signup");
    e.set_event_type("signup");
    e.set_source("rebuild_test");
    auto* p = e.add_persons();
    for (const auto& [t, v] : {std::pair{"email", email}, std::pair{"user_id", user}}) {
      auto* i = p->add_identifiers();
      i->set_type(t);
      i->set_value(v);
    }
    auto* gi = e.add_groups()->add_identifiers();
    gi->set_type("domain");
    gi->set_value("d" + std::to_string(g) + ".io");
    out.push_back(std::move(e));
  };
  add("cap-a", "c@x.io", "ua", 0);
  add("cap-b", "d@x.io", "ub", 0);
  add("cap-c", "c@x.io", "ub", 0);
  for (int i = 0; i < n; ++i) {
    add("ev" + std::to_string(i), "p" + std::to_string(i % persons) + "@x.io", "u" + std::to_string(i % persons),
        i % groups);
  }
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// The real nexusd binary as a child (output in a log file); SIGKILLed if still running at destruction.
class Nexusd {
 public:
  Nexusd(std::vector<std::string> args, std::string log_path) : log_path_(std::move(log_path)) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
      if (std::strncmp(*e, "NEXUS_", 6) != 0) env.emplace_back(*e);
    }
    args.insert(args.begin(), NEXUSD_BINARY);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~Nexusd() {
    if (!status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Nexusd(const Nexusd&) = delete;
  Nexusd& operator=(const Nexusd&) = delete;

  std::string Log() const { return ReadFile(log_path_); }
  void Signal(int sig) { ::kill(pid_, sig); }
  /// Waits (bounded) for the exit; its exit code, or -1 when it did not exit normally in time.
  int WaitExit(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!status_ && Clock::now() < deadline) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_)
        status_ = st;
      else
        std::this_thread::sleep_for(milliseconds(20));
    }
    return status_ && WIFEXITED(*status_) ? WEXITSTATUS(*status_) : -1;
  }
  /// Waits (bounded) until the log contains `text`; false on exit or timeout.
  bool WaitLog(const std::string& text, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Log().find(text) != std::string::npos) return true;
      int st = 0;
      if (!status_ && ::waitpid(pid_, &st, WNOHANG) == pid_) status_ = st;
      if (status_) return Log().find(text) != std::string::npos;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> status_;
};

class RebuildOpTest : public PgTest {
 protected:
  void Start(bool resolver = true) {
    auto cfg = BaseConfig();
    cfg.resolver_enabled = resolver;
    cfg.resolver_poll_interval = milliseconds(3600 * 1000);  // the test drives resolution with ResolveNow
    StartApp(cfg);
    app_->protection().Set(resolver::ProtectionConfig::Unlimited());
    auto channel =
        grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel);
    admin_ = v1::AdminService::NewStub(channel);
  }
  /// Ingests and resolves (unlimited caps), then switches to the default caps for the rebuild.
  void Load(int events, int persons, int groups) {
    const auto all = MakeEvents(events, persons, groups);
    for (size_t at = 0; at < all.size(); at += 1000) {
      v1::IngestEventsRequest req;
      for (size_t i = at; i < std::min(all.size(), at + 1000); ++i) *req.add_events() = all[i];
      v1::IngestEventsResponse resp;
      grpc::ClientContext ctx;
      const auto s = ingest_->IngestEvents(&ctx, req, &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
    }
    app_->protection().Set(resolver::ProtectionConfig::Unlimited());
    ResolveAll();
    app_->protection().Set(resolver::ProtectionConfig::Defaults());
  }
  std::shared_ptr<Gate> InstallGate() {
    auto gate = std::make_shared<Gate>();
    gate->worker = app_->resolver();
    app_->admin().SetRebuildObserverForTesting([gate](const storage::RebuildProgress&) { gate->Enter(); });
    return gate;
  }
  grpc::Status StartRebuild(v1::RebuildResponse* out, bool wait = false) {
    v1::RebuildRequest req;
    req.set_wait(wait);
    grpc::ClientContext ctx;
    return admin_->Rebuild(&ctx, req, out);
  }
  grpc::Status Status(Op* out) {
    grpc::ClientContext ctx;
    return admin_->GetRebuildStatus(&ctx, v1::GetRebuildStatusRequest(), out);
  }
  /// Polls until the operation is no longer RUNNING (bounded).
  Op WaitFinished(const std::string& id) {
    Op op;
    const auto deadline = Clock::now() + seconds(120);
    for (;;) {
      const auto s = Status(&op);
      EXPECT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(op.operation_id(), id);
      if (!s.ok() || op.state() != Op::RUNNING || Clock::now() > deadline) return op;
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  long long Count(const std::string& sql) { return std::stoll(QueryScalar(url_, sql)); }
  /// What a committed rebuild with the default caps changes (see the file comment).
  std::string Fingerprint() {
    return QueryScalar(url_,
                       "SELECT (SELECT count(*) FROM persons) || '/' || (SELECT count(*) FROM "
                       "quarantined_edges) || '/' || (SELECT string_agg(person_id, ',' ORDER BY person_id) "
                       "FROM persons)");
  }

  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

TEST_F(RebuildOpTest, StatusIsNotFoundBeforeAnyRebuild) {
  Start();
  Op op;
  EXPECT_EQ(Status(&op).error_code(), grpc::StatusCode::NOT_FOUND);
  const auto r = HttpGet(app_->http_port(), "/v1/admin/resolver:rebuild");
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_NE(r.body.find("no rebuild has run"), std::string::npos) << r.body;
}

TEST_F(RebuildOpTest, StartReturnsRunningAtOnceThenSucceedsWithTheCounts) {
  Start();
  constexpr int kPersons = 40, kGroups = 5;
  Load(400, kPersons, kGroups);
  ASSERT_EQ(Count("SELECT count(*) FROM persons"), kPersons + 1);  // c@x.io and d@x.io merged (unlimited caps)
  auto gate = InstallGate();

  // HTTP start: answers while the rebuild is held in its first progress report, so it cannot have finished.
  const auto started = HttpPost(app_->http_port(), "/v1/admin/resolver:rebuild", "");
  ASSERT_EQ(started.status, 200) << started.body;
  v1::RebuildResponse resp;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(started.body, &resp).ok()) << started.body;
  const std::string id = resp.operation().operation_id();
  EXPECT_EQ(resp.operation().state(), Op::RUNNING) << started.body;
  EXPECT_FALSE(id.empty());
  EXPECT_TRUE(resp.operation().has_started_at());
  EXPECT_FALSE(resp.operation().has_finished_at());
  EXPECT_EQ(resp.persons(), 0);  // filled only with wait

  ASSERT_TRUE(gate->WaitEntered()) << "the rebuild never reported progress (RebuildControl::on_progress)";
  const auto running = HttpGet(app_->http_port(), "/v1/admin/resolver:rebuild");
  ASSERT_EQ(running.status, 200) << running.body;
  Op op;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(running.body, &op).ok()) << running.body;
  EXPECT_EQ(op.operation_id(), id);
  EXPECT_EQ(op.state(), Op::RUNNING);
  EXPECT_FALSE(op.phase().empty());
  EXPECT_NE(running.body.find("\"state\":\"RUNNING\""), std::string::npos) << running.body;
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM persons"), std::to_string(kPersons + 1));  // not swapped yet

  gate->Open();
  op = WaitFinished(id);
  ASSERT_EQ(op.state(), Op::SUCCEEDED) << op.error();
  // The default caps keep c@x.io and d@x.io apart (2 user_ids): one more person, one quarantined edge.
  EXPECT_EQ(op.persons(), kPersons + 2);
  EXPECT_EQ(op.groups(), kGroups);
  EXPECT_EQ(op.identifiers(), 2 * (kPersons + 2) + kGroups);  // email + user_id per person, a domain per group
  EXPECT_EQ(op.persons(), Count("SELECT count(*) FROM persons"));
  EXPECT_EQ(op.groups(), Count("SELECT count(*) FROM groups"));
  EXPECT_EQ(Count("SELECT count(*) FROM quarantined_edges"), 1);
  EXPECT_TRUE(op.has_finished_at());
  EXPECT_GE(op.finished_at().seconds(), op.started_at().seconds());
  EXPECT_TRUE(op.error().empty()) << op.error();

  const std::string scrape = app_->metrics().Scrape();
  EXPECT_NE(scrape.find("nexus_resolver_rebuilds_total{result=\"succeeded\"} 1"), std::string::npos) << scrape;
  EXPECT_NE(scrape.find("nexus_resolver_rebuild_running 0"), std::string::npos) << scrape;
}

TEST_F(RebuildOpTest, SecondStartWhileOneRunsIsRefusedNamingIt) {
  Start();
  Load(50, 10, 2);
  auto gate = InstallGate();
  v1::RebuildResponse first;
  ASSERT_TRUE(StartRebuild(&first).ok());
  const std::string id = first.operation().operation_id();
  ASSERT_EQ(first.operation().state(), Op::RUNNING);
  ASSERT_TRUE(gate->WaitEntered()) << "the rebuild never reported progress (RebuildControl::on_progress)";

  v1::RebuildResponse second;
  const auto refused = StartRebuild(&second);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << refused.error_message();
  EXPECT_NE(refused.error_message().find("already running"), std::string::npos) << refused.error_message();
  EXPECT_NE(refused.error_message().find(id), std::string::npos) << refused.error_message();
  const auto http = HttpPost(app_->http_port(), "/v1/admin/resolver:rebuild", "{}");
  EXPECT_EQ(http.status, 409) << http.body;
  EXPECT_NE(http.body.find(id), std::string::npos) << http.body;
  Op op;
  ASSERT_TRUE(Status(&op).ok());
  EXPECT_EQ(op.operation_id(), id);
  EXPECT_EQ(op.state(), Op::RUNNING);

  gate->Open();
  EXPECT_EQ(WaitFinished(id).state(), Op::SUCCEEDED);
  // Once it finished, a new one starts (with a new id); `wait` returns its result.
  v1::RebuildResponse third;
  const auto s = StartRebuild(&third, /*wait=*/true);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_NE(third.operation().operation_id(), id);
  EXPECT_EQ(third.operation().state(), Op::SUCCEEDED);
  EXPECT_EQ(third.persons(), 12);  // 10 + c@x.io and d@x.io apart
  EXPECT_EQ(third.groups(), 2);
  EXPECT_EQ(third.persons(), third.operation().persons());
}

TEST_F(RebuildOpTest, ShutdownCancelsARunningRebuildWithinTheGraceAndChangesNothing) {
  Start();
  Load(200, 20, 3);
  const std::string before = Fingerprint();
  auto gate = InstallGate();
  v1::RebuildResponse first;
  ASSERT_TRUE(StartRebuild(&first).ok());
  ASSERT_TRUE(gate->WaitEntered()) << "the rebuild never reported progress (RebuildControl::on_progress)";

  const auto t0 = Clock::now();
  app_->Shutdown();  // grace 2 s; the gate lets go once the worker is stopping, never by itself
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took, 8.0) << "shutdown waited for the rebuild";

  Op op;
  ASSERT_TRUE(app_->admin().GetRebuildStatus(v1::GetRebuildStatusRequest(), &op).ok());
  EXPECT_EQ(op.operation_id(), first.operation().operation_id());
  EXPECT_EQ(op.state(), Op::CANCELLED) << op.error();
  EXPECT_NE(op.error().find("shutting down"), std::string::npos) << op.error();
  EXPECT_EQ(Fingerprint(), before) << "a cancelled rebuild changed the resolved state";
  const std::string scrape = app_->metrics().Scrape();
  EXPECT_NE(scrape.find("nexus_resolver_rebuilds_total{result=\"cancelled\"} 1"), std::string::npos) << scrape;
}

/// Records the phase of the running rebuild's latest progress report (called on the resolver thread).
struct PhaseLog {
  std::mutex mu;
  std::string phase;
  bool WaitFor(const std::string& want, std::chrono::seconds limit) {
    const auto deadline = Clock::now() + limit;
    while (Clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (phase == want) return true;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }
};

/// Follows the phases of `app`'s rebuilds.
std::shared_ptr<PhaseLog> FollowPhases(server::App& app) {
  auto phases = std::make_shared<PhaseLog>();
  app.admin().SetRebuildObserverForTesting([phases](const storage::RebuildProgress& p) {
    std::lock_guard<std::mutex> lock(phases->mu);
    phases->phase = p.phase;
  });
  return phases;
}

TEST_F(RebuildOpTest, AReadSpanningTheSwapSeesTheOldStateWholeAndNewReadsAreNotHeldUp) {
  // A snapshot taken before the swap must not find the swapped tables empty (new tables hold no row an older
  // snapshot can see): the query store's snapshots lock them first, so the swap waits for the read.
  Start();
  constexpr int kPersons = 20;
  Load(200, kPersons, 3);
  const long long participants = Count("SELECT count(*) FROM person_participants");
  ASSERT_GT(participants, 0);
  auto phases = FollowPhases(*app_);

  pqxx::connection reader_conn(url_);
  pqxx::work reader(reader_conn);
  storage::detail::BeginSnapshot(reader);  // as QueryStore's multi-statement reads begin
  EXPECT_GT(reader.exec1("SELECT count(*) FROM events")[0].as<long long>(), 0);

  v1::RebuildResponse started;
  ASSERT_TRUE(StartRebuild(&started).ok());
  ASSERT_TRUE(phases->WaitFor("swapping", seconds(60))) << "the rebuild never reached its swap";
  std::this_thread::sleep_for(milliseconds(2500));  // two of the swap's lock attempts give way to the reader

  // A new reader meanwhile is served (the swap's queued lock steps aside every second), and sees the old state.
  const auto t0 = Clock::now();
  EXPECT_EQ(Count("SELECT count(*) FROM persons"), kPersons + 1);
  EXPECT_LT(Clock::now() - t0, seconds(3)) << "a new reader waited behind the swap";
  Op op;
  ASSERT_TRUE(Status(&op).ok());
  EXPECT_EQ(op.state(), Op::RUNNING) << "the swap did not wait for the open snapshot";

  // The old snapshot still reads whole tables: the state before the rebuild (c@x.io and d@x.io merged).
  EXPECT_EQ(reader.exec1("SELECT count(*) FROM persons")[0].as<long long>(), kPersons + 1);
  EXPECT_EQ(reader.exec1("SELECT count(*) FROM person_participants")[0].as<long long>(), participants);
  reader.commit();

  op = WaitFinished(started.operation().operation_id());
  ASSERT_EQ(op.state(), Op::SUCCEEDED) << op.error();
  EXPECT_EQ(Count("SELECT count(*) FROM persons"), kPersons + 2);  // default caps: the two apart
}

TEST_F(RebuildOpTest, ShutdownDuringASwapThatWaitsForAnIdleTransactionEndsWithinTheGrace) {
  Start();
  Load(200, 20, 3);
  const std::string before = Fingerprint();
  auto phases = FollowPhases(*app_);
  // A session that read persons and then sat idle in its transaction: its lock is held until it ends.
  pqxx::connection idle_conn(url_);
  pqxx::work idle(idle_conn);
  idle.exec("SELECT count(*) FROM persons");

  v1::RebuildResponse started;
  ASSERT_TRUE(StartRebuild(&started).ok());
  ASSERT_TRUE(phases->WaitFor("swapping", seconds(60))) << "the rebuild never reached its swap";
  std::this_thread::sleep_for(milliseconds(1500));

  const auto t0 = Clock::now();
  app_->Shutdown();  // grace 2 s
  EXPECT_LT(Clock::now() - t0, seconds(8)) << "shutdown waited for the swap";
  Op op;
  ASSERT_TRUE(app_->admin().GetRebuildStatus(v1::GetRebuildStatusRequest(), &op).ok());
  EXPECT_EQ(op.state(), Op::CANCELLED) << op.error();
  idle.commit();
  EXPECT_EQ(Fingerprint(), before) << "a cancelled rebuild changed the resolved state";
}

TEST_F(RebuildOpTest, ShutdownCancelsTheRebuildsStatementInFlight) {
  // The rebuild checks for cancellation between chunks and phases; a statement that does not end (here: one
  // waiting for a lock nobody gives up) must be cancelled, or shutdown would wait for it.
  Start();
  Load(200, 20, 3);
  const std::string before = Fingerprint();
  auto phases = FollowPhases(*app_);
  // Right after its first progress report the rebuild reads quarantined_edges (released edges stay applied).
  pqxx::connection locker_conn(url_);
  pqxx::work locker(locker_conn);
  locker.exec("LOCK TABLE quarantined_edges IN ACCESS EXCLUSIVE MODE");

  v1::RebuildResponse started;
  ASSERT_TRUE(StartRebuild(&started).ok());
  ASSERT_TRUE(phases->WaitFor("reading", seconds(60))) << "the rebuild never reported progress";
  std::this_thread::sleep_for(milliseconds(500));
  const long long waiting = std::stoll(QueryScalar(
      url_,
      "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%quarantined_edges%'"));
  EXPECT_EQ(waiting, 1) << "the rebuild was expected to wait for the lock on quarantined_edges";

  const auto t0 = Clock::now();
  app_->Shutdown();  // grace 2 s
  EXPECT_LT(Clock::now() - t0, seconds(8)) << "shutdown waited for the rebuild's statement";
  Op op;
  ASSERT_TRUE(app_->admin().GetRebuildStatus(v1::GetRebuildStatusRequest(), &op).ok());
  EXPECT_EQ(op.state(), Op::CANCELLED) << op.error();
  EXPECT_NE(op.error().find("shutting down"), std::string::npos) << op.error();
  locker.commit();
  EXPECT_EQ(Fingerprint(), before) << "a cancelled rebuild changed the resolved state";
}

TEST_F(RebuildOpTest, WithoutTheResolverItIsAClearError) {
  Start(/*resolver=*/false);
  v1::RebuildResponse resp;
  const auto s = StartRebuild(&resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(s.error_message().find("--resolver=false"), std::string::npos) << s.error_message();
}

/// Holds the resolver lock from another session, as a running nexusd resolver would.
class LockHolder {
 public:
  explicit LockHolder(const std::string& url) : conn_(url) {
    pqxx::nontransaction n(conn_);
    n.exec(std::string("SELECT pg_advisory_lock(") + kResolverLockKey + ")");
  }

 private:
  pqxx::connection conn_;
};

TEST_F(RebuildOpTest, NexusdRebuildGivesUpWhenAnotherSessionHoldsTheLock) {
  LockHolder lock(url_);
  const auto t0 = Clock::now();
  Nexusd nexusd({"--rebuild", "--database-url=" + url_, "--rebuild-lock-wait=1s"},
                ScratchDir() + "/rebuild-lock-" + std::to_string(::getpid()) + ".log");
  const int code = nexusd.WaitExit(seconds(30));
  EXPECT_EQ(code, 3) << nexusd.Log();
  EXPECT_GE(Clock::now() - t0, seconds(1));
  EXPECT_NE(nexusd.Log().find("another process holds the resolver lock"), std::string::npos) << nexusd.Log();
}

TEST_F(RebuildOpTest, NexusdRebuildWaitingForTheLockExitsNonZeroOnSigterm) {
  LockHolder lock(url_);
  Nexusd nexusd({"--rebuild", "--database-url=" + url_, "--rebuild-lock-wait=60s"},
                ScratchDir() + "/rebuild-wait-" + std::to_string(::getpid()) + ".log");
  ASSERT_TRUE(nexusd.WaitLog("waiting for the resolver lock", seconds(30))) << nexusd.Log();
  nexusd.Signal(SIGTERM);
  EXPECT_EQ(nexusd.WaitExit(seconds(10)), 4) << nexusd.Log();
  EXPECT_NE(nexusd.Log().find("nothing was changed"), std::string::npos) << nexusd.Log();
}

TEST_F(RebuildOpTest, NexusdRebuildCancelledBySigtermRollsBack) {
  // SIGTERM right after the first progress report; if the rebuild outran the signal, retry with more data.
  int events = 20000;
  for (int attempt = 0; attempt < 3; ++attempt, events *= 3) {
    if (attempt > 0) PgTest::SetUp();  // a fresh database: the last attempt's rebuild committed
    Start();
    Load(events, 5000, 50);
    const std::string before = Fingerprint();
    app_->Shutdown();  // frees the resolver lock
    app_.reset();
    Nexusd nexusd({"--rebuild", "--database-url=" + url_},
                  ScratchDir() + "/rebuild-sigterm-" + std::to_string(::getpid()) + ".log");
    ASSERT_TRUE(nexusd.WaitLog("\"msg\":\"rebuild progress\"", seconds(60))) << nexusd.Log();
    nexusd.Signal(SIGTERM);
    const int code = nexusd.WaitExit(seconds(120));
    if (code == 0 && nexusd.Log().find("\"msg\":\"rebuild done\"") != std::string::npos) {
      std::cout << "[ rebuild ] " << events << " events: the rebuild finished before SIGTERM; more data\n";
      continue;
    }
    EXPECT_EQ(code, 4) << nexusd.Log();
    EXPECT_NE(nexusd.Log().find("rebuild cancelled; rolled back, nothing was changed"), std::string::npos)
        << nexusd.Log();
    EXPECT_EQ(Fingerprint(), before) << "a cancelled rebuild changed the resolved state";
    return;
  }
  FAIL() << "the rebuild always finished before SIGTERM arrived";
}

}  // namespace
}  // namespace nexus::testing
