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
#include "pg_fixture.h"

extern char** environ;

namespace nexus::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// A nexusd child process with stdout+stderr in a log file. The destructor SIGKILLs it (and its process
/// group) if it is still running, so a failing test never leaves it behind; PR_SET_PDEATHSIG covers a
/// crashing test binary.
class NexusdProcess {
 public:
  NexusdProcess(std::vector<std::string> args, std::string log_path) : log_path_(std::move(log_path)) {
    std::vector<std::string> env;  // our environment minus NEXUS_* (flags alone decide the config)
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
      ::setpgid(0, 0);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      const int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
        ::close(fd);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~NexusdProcess() {
    if (pid_ > 0 && !exit_status_) {
      ::kill(-pid_, SIGKILL);
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  NexusdProcess(const NexusdProcess&) = delete;
  NexusdProcess& operator=(const NexusdProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string Log() const { return ReadFile(log_path_); }

  /// Non-blocking: has it exited? Sets exit_status().
  bool Exited() {
    if (exit_status_) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) exit_status_ = st;
    return exit_status_.has_value();
  }
  std::optional<int> exit_status() const { return exit_status_; }

  /// Waits for the "nexusd serving" log line and reads the bound ports from it; false on exit or timeout.
  bool WaitServing(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    static const std::regex kServing(R"re("msg":"nexusd serving".*"grpc":"[^"]*:(\d+)".*"http":"[^"]*:(\d+)")re");
    while (Clock::now() < deadline) {
      std::smatch m;
      const std::string log = Log();
      if (std::regex_search(log, m, kServing)) {
        grpc_port_ = std::stoi(m[1]);
        http_port_ = std::stoi(m[2]);
        return true;
      }
      if (Exited()) return false;
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }

  /// Sends `sig` and waits (bounded) for the exit; returns the wait status or nullopt on timeout.
  std::optional<int> SignalAndWait(int sig, Clock::duration timeout) {
    ::kill(pid_, sig);
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Exited()) return exit_status_;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return std::nullopt;
  }

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }

 private:
  std::string log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

std::string DescribeStatus(std::optional<int> st) {
  if (!st) return "did not exit in time";
  if (WIFEXITED(*st)) return "exit " + std::to_string(WEXITSTATUS(*st));
  if (WIFSIGNALED(*st)) return "killed by signal " + std::to_string(WTERMSIG(*st));
  return "status " + std::to_string(*st);
}

/// The state letter of /proc/<pid>/stat ('R', 'S', 'Z', ...); '\0' when the process does not exist.
char ProcessState(const std::string& proc_dir, long* ppid = nullptr) {
  const std::string stat = ReadFile(proc_dir + "/stat");
  const auto rp = stat.rfind(')');
  if (rp == std::string::npos || rp + 2 >= stat.size()) return '\0';
  std::istringstream rest(stat.substr(rp + 2));
  char state = '\0';
  long parent = 0;
  rest >> state >> parent;
  if (ppid) *ppid = parent;
  return state;
}

/// Running (a zombie waiting for its reaper counts as gone).
bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  const char state = ProcessState("/proc/" + std::to_string(pid));
  return state != '\0' && state != 'Z' && state != 'X';
}

/// pg_ctl stop returns once postmaster.pid is gone; the postmaster itself exits a moment later.
bool WaitGone(pid_t pid, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (ProcessAlive(pid)) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return true;
}

/// The postmaster pid recorded in <pgdata>/postmaster.pid (0 when the file is absent).
pid_t PostmasterPid(const std::string& pgdata) {
  std::ifstream f(pgdata + "/postmaster.pid");
  long pid = 0;
  if (!(f >> pid)) return 0;
  return static_cast<pid_t>(pid);
}

/// Pids of processes that belong to the cluster in `pgdata`: the postmaster (its command line names the
/// directory) and anything whose parent is `postmaster` (backends, checkpointer, ...).
std::vector<pid_t> PostgresProcesses(const std::string& pgdata, pid_t postmaster) {
  std::vector<pid_t> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    long ppid = 0;
    const char state = ProcessState(entry.path().string(), &ppid);
    if (state == '\0' || state == 'Z' || state == 'X') continue;
    std::string cmdline = ReadFile(entry.path().string() + "/cmdline");
    for (auto& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    bool match = cmdline.find("postgres") != std::string::npos && cmdline.find(pgdata) != std::string::npos;
    if (!match && postmaster > 0) match = ppid == postmaster;
    if (match) out.push_back(pid);
  }
  return out;
}

/// Kills whatever is left of the cluster in `pgdata` (test failure path only).
void KillCluster(const std::string& pgdata) {
  const pid_t pm = PostmasterPid(pgdata);
  if (pm > 0 && ProcessAlive(pm)) {
    ::kill(pm, SIGQUIT);
    for (int i = 0; i < 100 && ProcessAlive(pm); ++i) std::this_thread::sleep_for(milliseconds(50));
  }
  for (pid_t p : PostgresProcesses(pgdata, pm)) ::kill(p, SIGKILL);
}

/// A private temp dir under /tmp (the postgres user must be able to reach it when we run as root);
/// removed at the end, after stopping any cluster left in it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    KillCluster(path_ + "/pgdata");
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

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

bool WaitReady(int http_port, Clock::duration timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    try {
      if (HttpGet(http_port, "/readyz").status == 200) return true;
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return false;
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
    auto stub = v1::IngestService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(nexusd.grpc_port()), grpc::InsecureChannelCredentials()));
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

  EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeStatus(status) << "\n" << nexusd.Log();
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
    EXPECT_EQ(QueryScalar(db_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                                  "AND table_name IN ('events', 'person_identifiers', 'resolver_state')"),
              "3");
    const auto ingest = HttpPost(nexusd.http_port(), "/v1/events:ingest",
                                 R"({"events":[{"event_id":"persist-1","occurred_at":"2023-11-14T22:13:20Z",
                                    "event_name":"signup","event_type":"signup","source":"embedded_test",
                                    "persons":[{"identifiers":[{"type":"email","value":"keep@example.com"}]}]}]})");
    ASSERT_EQ(ingest.status, 200) << ingest.body;

    const auto status = nexusd.SignalAndWait(SIGTERM, seconds(60));
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeStatus(status) << "\n" << nexusd.Log();
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
    EXPECT_TRUE(status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << DescribeStatus(status) << "\n" << nexusd.Log();
    EXPECT_FALSE(std::filesystem::exists(pgdata + "/postmaster.pid"));
    EXPECT_TRUE(WaitGone(pm, seconds(5)));
    EXPECT_TRUE(PostgresProcesses(pgdata, pm).empty());
  }
}

}  // namespace
}  // namespace nexus::testing
