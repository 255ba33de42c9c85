// Issue 17 on this machine: a primary and a streaming hot standby (pg_basebackup -R, own socket dir), nexusd
// reading queries from the standby with a lag bound and read-your-writes; and pgbouncer in transaction mode in
// front of the pool, with the resolver's lock session going straight to PostgreSQL.
#include <arpa/inet.h>
#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "pg_fixture.h"
#include "server/resolver_worker.h"
#include "storage/replicas.h"

namespace nexus::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

const std::string kPgBin = "/usr/lib/postgresql/15/bin";

/// Runs a shell command as the postgres OS user when we are root (PostgreSQL and pgbouncer refuse root).
int RunAsPostgres(const std::string& command) {
  const std::string full = ::geteuid() == 0 ? "runuser -u postgres -- sh -c '" + command + "'" : command;
  return std::system((full + " >>/dev/null 2>&1").c_str());
}

std::string ReadText(const std::string& path) {
  std::ifstream f(path);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// A scratch directory the postgres user owns.
std::string PostgresOwnedDir(const std::string& name) {
  const std::string dir = ScratchDir() + "/" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (::geteuid() == 0) std::system(("chown postgres:postgres '" + dir + "'").c_str());
  return dir;
}

int FreeTcpPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

/// A primary with WAL for replication and a hot standby cloned from it, on unix sockets in their own dir.
class StreamingPair {
 public:
  StreamingPair() {
    dir_ = PostgresOwnedDir("replication");
    const int base = 20000 + static_cast<int>(::getpid() % 20000);
    primary_port_ = base;
    standby_port_ = base + 1;
    const std::string p = dir_ + "/primary", s = dir_ + "/standby";
    if (RunAsPostgres(kPgBin + "/initdb -D " + p + " -U nexus --auth=trust -E UTF8 --no-locale") != 0)
      throw std::runtime_error("initdb failed");
    {
      std::ofstream conf(p + "/postgresql.conf", std::ios::app);
      conf << "listen_addresses = ''\nunix_socket_directories = '" << dir_ << "'\nport = " << primary_port_
           << "\nwal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n"
           << "wal_keep_size = '256MB'\nmax_connections = 100\n";
    }
    if (RunAsPostgres(kPgBin + "/pg_ctl -D " + p + " -l " + dir_ + "/primary.log -w start") != 0)
      throw std::runtime_error("primary did not start: " + ReadText(dir_ + "/primary.log"));
    if (RunAsPostgres(kPgBin + "/createdb -h " + dir_ + " -p " + std::to_string(primary_port_) + " -U nexus nexus") !=
        0)
      throw std::runtime_error("createdb failed");
    if (RunAsPostgres(kPgBin + "/pg_basebackup -h " + dir_ + " -p " + std::to_string(primary_port_) +
                      " -U nexus -c fast -D " + s + " -R -X stream") != 0)
      throw std::runtime_error("pg_basebackup failed");
    {
      std::ofstream conf(s + "/postgresql.conf", std::ios::app);
      conf << "port = " << standby_port_ << "\n";
    }
    if (RunAsPostgres(kPgBin + "/pg_ctl -D " + s + " -l " + dir_ + "/standby.log -w start") != 0)
      throw std::runtime_error("standby did not start: " + ReadText(dir_ + "/standby.log"));
  }
  ~StreamingPair() {
    RunAsPostgres(kPgBin + "/pg_ctl -D " + dir_ + "/standby -m immediate -w stop");
    RunAsPostgres(kPgBin + "/pg_ctl -D " + dir_ + "/primary -m immediate -w stop");
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string primary_url() const { return Url(primary_port_); }
  std::string standby_url() const { return Url(standby_port_); }

 private:
  std::string Url(int port) const {
    return "host=" + dir_ + " port=" + std::to_string(port) + " dbname=nexus user=nexus";
  }
  std::string dir_;
  int primary_port_ = 0, standby_port_ = 0;
};

v1::Event PersonEvent(const std::string& id, const std::string& email, const std::string& name) {
  v1::Event e;
  e.set_event_id(id);
  *e.mutable_occurred_at() = google::protobuf::util::TimeUtil::SecondsToTimestamp(1714521600);
  e.set_event_name("signup");
  e.set_event_type("signup");
  e.set_source("crm");
  auto* m = e.add_persons();
  m->set_role("customer");
  auto* ident = m->add_identifiers();
  ident->set_type("email");
  ident->set_value(email);
  (*m->mutable_traits())["name"] = name;
  return e;
}

struct Read {
  grpc::Status status;
  v1::Person person;
  std::string served_by;
  std::string resolved_through;
};

Read Lookup(v1::QueryService::Stub& stub, const std::string& email, const std::string& min_lsn = "") {
  grpc::ClientContext ctx;
  if (!min_lsn.empty()) ctx.AddMetadata("x-nexus-min-lsn", min_lsn);
  v1::LookupPersonRequest req;
  req.set_identifier_type("email");
  req.set_identifier_value(email);
  Read r;
  r.status = stub.LookupPerson(&ctx, req, &r.person);
  const auto& md = ctx.GetServerInitialMetadata();
  if (auto it = md.find("x-nexus-read-from"); it != md.end()) r.served_by.assign(it->second.data(), it->second.size());
  if (auto it = md.find("x-nexus-resolved-through"); it != md.end())
    r.resolved_through.assign(it->second.data(), it->second.size());
  return r;
}

double MetricValue(int http_port, const std::string& series) {
  const std::string body = HttpGet(http_port, "/metrics").body;
  const auto p = body.find("\n" + series + " ");
  if (p == std::string::npos) return -1;
  return std::stod(body.substr(p + series.size() + 2));
}

class ReplicaPgTest : public PgTest {};

TEST_F(ReplicaPgTest, QueriesReadTheStandbyFallBackWhenItLagsAndHonourReadYourWrites) {
  StreamingPair pair;
  server::Config c = BaseConfig();
  c.database_url = pair.primary_url();
  c.read_database_urls = {pair.standby_url()};
  c.max_replica_lag = milliseconds(1000);
  StartApp(c);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  auto ingest = v1::IngestService::NewStub(channel);
  auto query = v1::QueryService::NewStub(channel);
  auto send = [&](const v1::Event& e) {
    v1::IngestEventsRequest req;
    *req.add_events() = e;
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(ingest->IngestEvents(&ctx, req, &resp).ok());
    return resp;
  };

  // 1. Once the standby has replayed, the profile comes from it and equals the primary's.
  const auto first = send(PersonEvent("e1", "jane@acme.example", "Jane"));
  uint64_t unused = 0;
  ASSERT_TRUE(storage::ParseLsn(first.commit_lsn(), &unused)) << "commit_lsn: '" << first.commit_lsn() << "'";
  ResolveAll();
  Read from_standby;
  for (auto deadline = Clock::now() + seconds(20);;) {
    from_standby = Lookup(*query, "jane@acme.example");
    if (from_standby.status.ok() && from_standby.served_by == "replica-0") break;
    ASSERT_LT(Clock::now(), deadline) << "the standby never served the profile: " << from_standby.served_by << " "
                                      << from_standby.status.error_message();
    std::this_thread::sleep_for(milliseconds(50));
  }
  const Read from_primary = Lookup(*query, "jane@acme.example", "FFFFFFFF/FFFFFFFF");  // no replica is that far
  ASSERT_TRUE(from_primary.status.ok());
  EXPECT_EQ(from_primary.served_by, "primary");
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(from_standby.person, from_primary.person))
      << from_standby.person.DebugString() << "\nvs primary\n"
      << from_primary.person.DebugString();
  EXPECT_EQ(from_standby.person.name(), "Jane");
  EXPECT_FALSE(from_standby.resolved_through.empty()) << "the answer says how fresh it is";

  // 2. Standby paused: read-your-writes sends the reader of a new write to the primary at once ...
  ASSERT_EQ(QueryScalar(pair.standby_url(), "SELECT pg_wal_replay_pause()::text"), "");
  const auto second = send(PersonEvent("e2", "bob@acme.example", "Bob"));
  ResolveAll();
  const Read ryw = Lookup(*query, "bob@acme.example", second.commit_lsn());
  ASSERT_TRUE(ryw.status.ok()) << ryw.status.error_message();
  EXPECT_EQ(ryw.served_by, "primary");
  EXPECT_EQ(ryw.person.name(), "Bob");
  // ... and once the lag passes --max-replica-lag, every query goes to the primary, and the metric shows it.
  for (auto deadline = Clock::now() + seconds(20);;) {
    const Read r = Lookup(*query, "bob@acme.example");
    if (r.status.ok() && r.served_by == "primary") break;
    ASSERT_LT(Clock::now(), deadline) << "queries kept going to a standby that is behind";
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_GT(MetricValue(app_->http_port(), "nexus_replica_lag_seconds{replica=\"0\"}"), 1.0);
  EXPECT_GT(MetricValue(app_->http_port(), "nexus_replica_lag_bytes{replica=\"0\"}"), 0.0);
  // HTTP says the same in headers.
  auto http = HttpGet(app_->http_port(),
                      "/v1/persons:lookup?identifier_type=email&identifier_value=" + UrlEncode("bob@acme.example"));
  EXPECT_EQ(http.status, 200) << http.body;
  EXPECT_EQ(http.header_values["x-nexus-read-from"], "primary");
  EXPECT_FALSE(http.header_values["x-nexus-resolved-through"].empty());
  const auto bad =
      HttpCall(app_->http_port(), "GET", "/v1/persons:lookup?identifier_type=email&identifier_value=bob%40acme.example",
               "", "x-nexus-min-lsn: yesterday\r\n");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("x-nexus-min-lsn"), std::string::npos) << bad.body;

  // 3. Replay resumed: the standby catches up and serves again.
  QueryScalar(pair.standby_url(), "SELECT pg_wal_replay_resume()::text");
  for (auto deadline = Clock::now() + seconds(20);;) {
    const Read r = Lookup(*query, "bob@acme.example");
    if (r.status.ok() && r.served_by == "replica-0") {
      EXPECT_EQ(r.person.name(), "Bob");
      break;
    }
    ASSERT_LT(Clock::now(), deadline) << "the standby never came back";
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(MetricValue(app_->http_port(), "nexus_replica_up{replica=\"0\"}"), 1.0);
  EXPECT_GT(MetricValue(app_->http_port(), "nexus_query_reads_total{target=\"replica\"}"), 0.0);
  EXPECT_GT(MetricValue(app_->http_port(), "nexus_query_reads_total{target=\"primary\"}"), 0.0);
  app_->Shutdown();
  app_.reset();
}

/// pgbouncer (Debian's) in transaction mode in front of this test's database.
class Bouncer {
 public:
  explicit Bouncer(const std::string& direct_url) {
    dir_ = PostgresOwnedDir("pgbouncer");
    port_ = FreeTcpPort();
    std::smatch m;
    std::string host, port, db;
    if (std::regex_search(direct_url, m, std::regex("host=(\\S+)"))) host = m[1];
    if (std::regex_search(direct_url, m, std::regex("port=(\\S+)"))) port = m[1];
    if (std::regex_search(direct_url, m, std::regex("dbname=(\\S+)"))) db = m[1];
    db_ = db;
    {
      std::ofstream ini(dir_ + "/pgbouncer.ini");
      ini << "[databases]\n"
          << db << " = host=" << host << " port=" << port << " dbname=" << db << " user=nexus\n"
          << "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = " << port_ << "\nunix_socket_dir =\n"
          << "auth_type = any\npool_mode = transaction\ndefault_pool_size = 2\nmax_client_conn = 200\n"
          << "ignore_startup_parameters = extra_float_digits,options\n"
          << "logfile = " << dir_ << "/pgbouncer.log\npidfile = " << dir_ << "/pgbouncer.pid\n";
    }
    if (::geteuid() == 0) std::system(("chown -R postgres:postgres '" + dir_ + "'").c_str());
    const std::string binary = std::filesystem::exists("/usr/sbin/pgbouncer") ? "/usr/sbin/pgbouncer" : "pgbouncer";
    if (RunAsPostgres(binary + " -d " + dir_ + "/pgbouncer.ini") != 0)
      throw std::runtime_error("pgbouncer did not start (apt-get install pgbouncer): " +
                               ReadText(dir_ + "/pgbouncer.log"));
    for (auto deadline = Clock::now() + seconds(10);;) {
      try {
        QueryScalar(url(), "SELECT 1");
        break;
      } catch (const std::exception& e) {
        if (Clock::now() > deadline) throw std::runtime_error(std::string("pgbouncer does not answer: ") + e.what());
        std::this_thread::sleep_for(milliseconds(50));
      }
    }
  }
  ~Bouncer() {
    const std::string pid = ReadText(dir_ + "/pgbouncer.pid");
    if (!pid.empty()) ::kill(std::atoi(pid.c_str()), SIGTERM);
    std::this_thread::sleep_for(milliseconds(100));
  }
  std::string url() const { return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + db_ + " user=nexus"; }
  std::string log() const { return ReadText(dir_ + "/pgbouncer.log"); }

 private:
  std::string dir_, db_;
  int port_ = 0;
};

TEST_F(ReplicaPgTest, IngestAndQueriesWorkThroughPgbouncerInTransactionMode) {
  if (!std::filesystem::exists("/usr/sbin/pgbouncer") && std::system("command -v pgbouncer >/dev/null 2>&1") != 0) {
    GTEST_FAIL() << "pgbouncer is not installed (scripts/install-deps.sh installs it)";
  }
  Bouncer bouncer(url_);
  server::Config c = BaseConfig();
  c.database_url = bouncer.url();
  c.db_pooler = "transaction";
  c.resolver_database_url = url_;  // the lock session goes straight to PostgreSQL
  c.db_pool_size = 8;              // 8 client connections over 2 server connections
  StartApp(c);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  // Four clients ingest and query at once: consecutive transactions of one client connection land on
  // different server sessions, which named prepared statements would not survive.
  constexpr int kClients = 4, kPerClient = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto ingest = v1::IngestService::NewStub(channel);
      auto query = v1::QueryService::NewStub(channel);
      for (int i = 0; i < kPerClient; ++i) {
        const std::string email = "p" + std::to_string(t) + "-" + std::to_string(i) + "@acme.example";
        v1::IngestEventsRequest req;
        *req.add_events() = PersonEvent("b-" + std::to_string(t) + "-" + std::to_string(i), email, "P");
        v1::IngestEventsResponse resp;
        grpc::ClientContext ctx;
        const auto st = ingest->IngestEvents(&ctx, req, &resp);
        if (!st.ok() || resp.accepted() != 1) {
          ++failures;
          ADD_FAILURE() << "ingest through pgbouncer failed: " << st.error_message();
        }
        const Read r = Lookup(*query, "p" + std::to_string(t) + "-0@acme.example");
        if (!r.status.ok() && r.status.error_code() != grpc::StatusCode::NOT_FOUND) {
          ++failures;
          ADD_FAILURE() << "query through pgbouncer failed: " << r.status.error_message();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0) << bouncer.log();
  ResolveAll();
  auto query = v1::QueryService::NewStub(channel);
  for (int t = 0; t < kClients; ++t) {
    const Read r = Lookup(*query, "p" + std::to_string(t) + "-" + std::to_string(kPerClient - 1) + "@acme.example");
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.person.name(), "P");
  }
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM persons"), std::to_string(kClients * kPerClient));
  // The pool really went through the proxy: its server connections are pgbouncer's (2 at most).
  EXPECT_LE(std::stoi(QueryScalar(url_,
                                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
                                  "AND client_addr IS NULL AND usename = 'nexus'")),
            2 + 2 + 1)  // pgbouncer's 2, the resolver's session and pool (2), the readiness probe (1)
      << bouncer.log();
}

}  // namespace
}  // namespace nexus::testing
