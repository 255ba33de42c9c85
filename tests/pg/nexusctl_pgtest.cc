// nexusctl end to end: the real binary (NEXUSCTL_BINARY) against an in-process nexusd on a real PostgreSQL.
// Import of CSV and JSONL files with bad rows, re-import, interrupt and resume, and the output formats of the
// commands whose RPCs every server has (lookup, get, timeline, explain, history). The renderers of search,
// profile and event are unit-tested on constructed messages (tests/unit/nexusctl_test.cc).

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "nexus/v1/query.pb.h"
#include "nexusd_process.h"
#include "pg_fixture.h"
#include "server/auth.h"
#include "server/resolver_worker.h"
#include "storage/auth_store.h"
#include "storage/database.h"
#include "tls_certs.h"

namespace nexus::testing {
namespace {

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

class Cli {
 public:
  Cli(const std::string& dir, std::vector<std::string> args, std::vector<std::string> extra_env = {})
      : out_path_(dir + "/cli-" + std::to_string(++counter_) + ".out"), err_path_(out_path_ + ".err") {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
      if (std::strncmp(*e, "NEXUS_", 6) != 0) env.emplace_back(*e);
    }
    for (auto& e : extra_env) env.push_back(std::move(e));
    args.insert(args.begin(), NEXUSCTL_BINARY);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int in = ::open("/dev/null", O_RDONLY);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::dup2(in, 0);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~Cli() {
    if (pid_ > 0 && !done_) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  pid_t pid() const { return pid_; }
  CliResult Wait() {
    int st = 0;
    ::waitpid(pid_, &st, 0);
    done_ = true;
    CliResult r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = ReadFile(out_path_);
    r.err = ReadFile(err_path_);
    return r;
  }

 private:
  static inline int counter_ = 0;
  std::string out_path_, err_path_;
  pid_t pid_ = -1;
  bool done_ = false;
};

google::protobuf::Struct ParseJson(const std::string& text) {
  google::protobuf::Struct s;
  auto st = google::protobuf::util::JsonStringToMessage(text, &s);
  EXPECT_TRUE(st.ok()) << st.message() << " in: " << text;
  return s;
}

double Num(const google::protobuf::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? -1 : it->second.number_value();
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

class NexusctlPgTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    dir_ = std::make_unique<TempDir>("nexusctl");
    StartApp();
    server_ = "--server=127.0.0.1:" + std::to_string(app_->grpc_port());
  }
  void TearDown() override {
    PgTest::TearDown();
    dir_.reset();
  }

  CliResult Run(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), server_);
    Cli cli(dir(), std::move(args), std::move(env));
    return cli.Wait();
  }
  const std::string& dir() const { return dir_->path(); }
  long long Events() { return QueryCount(url_, "SELECT 1 FROM events"); }
  void Resolve() { ResolveAll(); }

  std::unique_ptr<TempDir> dir_;
  std::string server_;
};

const char* kContactsCsv =
    "Name,Email,Phone,Company Domain,Created At,Note\n"
    "\"Doe, Jane\",Jane.Doe@Acme.io,+1 415 555 0134,acme.io,2026-11-02T10:00:00Z,\"first line\nsecond line\"\n"
    "Bob,,,,2026-11-02,no identifier\n"
    "Carol,carol@globex.com,,globex.com,yesterday,bad time\n"
    "Dan,dan@globex.com,,globex.com,2026-11-03\n"
    "\"Eve \"x\",eve@acme.io,,acme.io,2026-11-03,bad quote\n"
    "Frank,frank@globex.com,,globex.com,2026-11-04 09:30:00,ok\n"
    "Gina,LONGVALUE,,,2026-11-04,too long for the server\n"
    "Hal,hal@acme.io,,acme.io,1793613600,ok\n";

std::vector<std::string> ContactsMapping(const std::string& file) {
  return {"import",
          file,
          "--source=crm",
          "--person-id",
          "email=Email",
          "--person-id=phone=Phone",
          "--person-trait=name=Name",
          "--group-id=domain=Company Domain",
          "--time-column=Created At",
          "--membership-role=employee",
          "--json",
          "--quiet"};
}

TEST_F(NexusctlPgTest, CsvImportReportsBadRowsByLineAndReimportWritesNothing) {
  std::string csv = kContactsCsv;
  csv.replace(csv.find("LONGVALUE"), 9, std::string(1100, 'g') + "@example.com");
  const std::string file = dir() + "/contacts.csv";
  WriteText(file, csv);

  CliResult r = Run(ContactsMapping(file));
  ASSERT_EQ(r.exit_code, 3) << r.out << r.err;  // finished, some rows rejected
  auto s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "rows"), 8);
  EXPECT_EQ(Num(s, "accepted"), 3);  // Jane, Frank, Hal
  EXPECT_EQ(Num(s, "duplicates"), 0);
  EXPECT_EQ(Num(s, "rejected"), 5);
  const auto& rows = s.fields().at("rejected_rows").list_value();
  ASSERT_EQ(rows.values_size(), 5) << r.out;
  auto line = [&](int i) { return static_cast<int>(rows.values(i).struct_value().fields().at("line").number_value()); };
  auto reason = [&](int i) { return rows.values(i).struct_value().fields().at("reason").string_value(); };
  // Jane's quoted note spans lines 2-3, so Bob is on line 4.
  EXPECT_EQ(line(0), 4);
  EXPECT_EQ(reason(0), "no identifier: 'Email', 'Phone', 'Company Domain' are all empty");
  EXPECT_EQ(line(1), 5);
  EXPECT_NE(reason(1).find("column 'Created At': 'yesterday' is not a time"), std::string::npos) << reason(1);
  EXPECT_EQ(line(2), 6);  // Dan: 5 fields where the header has 6
  EXPECT_EQ(reason(2), "5 fields, the header has 6");
  EXPECT_EQ(line(3), 7);
  EXPECT_NE(reason(3).find("closing quote"), std::string::npos) << reason(3);
  EXPECT_EQ(line(4), 9);  // rejected by the server, named by the row's line
  EXPECT_NE(reason(4).find("rejected by the server: persons[0].identifiers[0].value: longer than 1024 bytes"),
            std::string::npos)
      << reason(4);
  EXPECT_EQ(reason(4).find("gggg"), std::string::npos);  // the value is not echoed
  EXPECT_EQ(Events(), 3);
  EXPECT_FALSE(std::filesystem::exists(file + ".nexusctl-checkpoint"));

  // The same file again: every row is a duplicate, nothing is written.
  r = Run(ContactsMapping(file));
  ASSERT_EQ(r.exit_code, 3) << r.out << r.err;
  s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), 0);
  EXPECT_EQ(Num(s, "duplicates"), 3);
  EXPECT_EQ(Num(s, "rejected"), 5);
  EXPECT_EQ(Events(), 3);

  // The plain summary names the rejected rows too.
  r = Run({"import", file, "--source=crm", "--person-id=email=Email", "--group-id=domain=Company Domain",
           "--time-column=Created At", "--quiet"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.out.find("rejected:   5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    line 4: no identifier"), std::string::npos) << r.out;

  // What was imported resolves: Jane by her email (normalized) and her phone, with her company.
  Resolve();
  r = Run({"lookup", "phone", "(415) 555-0134", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::Person p;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &p).ok()) << r.out;
  EXPECT_EQ(p.name(), "Doe, Jane");
  EXPECT_EQ(p.email(), "jane.doe@acme.io");
  r = Run({"lookup", "--group", "domain", "globex.com"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("domain  globex.com  crm"), std::string::npos) << r.out;
}

TEST_F(NexusctlPgTest, JsonlImportWithBadLinesAndAMappingFile) {
  const std::string file = dir() + "/events.jsonl";
  WriteText(
      file,
      "{\"user\":{\"email\":\"ann@acme.io\",\"id\":7},\"plan\":\"pro\",\"seats\":3,\"at\":\"2026-11-01T08:00:00Z\","
      "\"type\":\"signup\"}\n"
      "\n"
      "{\"user\":{\"email\":\"ann@acme.io\"},\"plan\":\"team\",\"at\":\"2026-11-02T08:00:00Z\",\"type\":\"upgrade\"}\n"
      "not json\n"
      "[1,2,3]\n"
      "{\"user\":{},\"at\":\"2026-11-02T08:00:00Z\"}\n"
      "{\"user\":{\"id\":\"u-9\"},\"at\":\"2026-11-03T08:00:00Z\",\"type\":\"login\"}\n");
  const std::string mapping = dir() + "/app.mapping";
  WriteText(mapping,
            "# product analytics export\n"
            "source app\n"
            "person-id email=user.email\n"
            "person-id user_id=user.id\n"
            "person-trait plan=plan\n"
            "person-trait seats=seats\n"
            "time-column at\n"
            "event-type-column type\n"
            "event-name product_event\n");
  CliResult r = Run({"import", file, "--mapping", mapping, "--json", "--quiet"});
  ASSERT_EQ(r.exit_code, 3) << r.out << r.err;
  auto s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), 3);
  EXPECT_EQ(Num(s, "rejected"), 3);
  const auto& rows = s.fields().at("rejected_rows").list_value();
  ASSERT_EQ(rows.values_size(), 3);
  EXPECT_EQ(rows.values(0).struct_value().fields().at("line").number_value(), 4);
  EXPECT_NE(rows.values(0).struct_value().fields().at("reason").string_value().find("not a JSON object"),
            std::string::npos);
  EXPECT_EQ(rows.values(1).struct_value().fields().at("line").number_value(), 5);
  EXPECT_EQ(rows.values(2).struct_value().fields().at("line").number_value(), 6);
  EXPECT_NE(rows.values(2).struct_value().fields().at("reason").string_value().find("no identifier"),
            std::string::npos);
  EXPECT_EQ(QueryCount(url_, "SELECT 1 FROM events WHERE event_type = 'upgrade' AND source = 'app'"), 1);

  r = Run({"import", file, "--mapping", mapping, "--json", "--quiet"});
  s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), 0);
  EXPECT_EQ(Num(s, "duplicates"), 3);
  EXPECT_EQ(Events(), 3);

  // Typed traits: the latest plan wins, the number stays a number.
  Resolve();
  r = Run({"lookup", "user_id=7", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  v1::Person p;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &p).ok()) << r.out;
  bool saw_plan = false, saw_seats = false;
  for (const auto& t : p.traits()) {
    if (t.name() == "plan") saw_plan = t.value().string_value() == "team" || t.text_value() == "team";
    if (t.name() == "seats") saw_seats = t.value().number_value() == 3;
  }
  EXPECT_TRUE(saw_plan) << r.out;
  EXPECT_TRUE(saw_seats) << r.out;

  // --max-errors: past the limit the import stops (exit 4) after sending the rows before the bad one, and keeps
  // its checkpoint there.
  r = Run({"import", file, "--mapping", mapping, "--source=app2", "--max-errors=0", "--json", "--quiet"});
  EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
  s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), 2);
  EXPECT_EQ(Num(s, "rejected"), 1);
  EXPECT_EQ(Num(s, "resume_line"), 5);
  EXPECT_NE(ReadFile(file + ".nexusctl-checkpoint").find("line=5\n"), std::string::npos);
  EXPECT_EQ(Events(), 5);
}

std::string ManyRows(int n) {
  std::string csv = "email,name,when\n";
  for (int i = 0; i < n; ++i) {
    csv += "user" + std::to_string(i) + "@example.com,User " + std::to_string(i) +
           ",2026-10-01T00:00:" + std::to_string(10 + i % 50) + "Z\n";
  }
  return csv;
}

TEST_F(NexusctlPgTest, StopAfterBatchesThenResumeFinishesWithoutDuplicatesOrLoss) {
  const std::string file = dir() + "/many.csv";
  WriteText(file, ManyRows(1000));
  const std::vector<std::string> args{"import",
                                      file,
                                      "--source=crm",
                                      "--person-id=email=email",
                                      "--person-trait=name=name",
                                      "--time-column=when",
                                      "--batch-size=100",
                                      "--json"};
  auto first = args;
  first.push_back("--stop-after=3");
  CliResult r = Run(first);
  ASSERT_EQ(r.exit_code, 130) << r.out << r.err;
  auto s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), 300);
  EXPECT_EQ(Num(s, "resume_line"), 302);
  EXPECT_EQ(Events(), 300);
  const std::string checkpoint = ReadFile(file + ".nexusctl-checkpoint");
  EXPECT_NE(checkpoint.find("line=302\n"), std::string::npos) << checkpoint;

  // A different mapping must not resume from this checkpoint.
  r = Run({"import", file, "--source=other", "--person-id=email=email", "--quiet"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--restart"), std::string::npos) << r.err;

  r = Run(args);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("resuming"), std::string::npos) << r.err;
  s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "rows"), 1000);
  EXPECT_EQ(Num(s, "accepted"), 1000);  // 300 before the stop + 700 now
  EXPECT_EQ(Num(s, "duplicates"), 0);
  EXPECT_EQ(Events(), 1000);
  EXPECT_FALSE(std::filesystem::exists(file + ".nexusctl-checkpoint"));
}

TEST_F(NexusctlPgTest, SigintStopsCleanlyAndTheNextRunResumes) {
  const std::string file = dir() + "/big.csv";
  constexpr int kRows = 5000;
  WriteText(file, ManyRows(kRows));
  const std::vector<std::string> args{server_,
                                      "import",
                                      file,
                                      "--source=crm",
                                      "--person-id=email=email",
                                      "--time-column=when",
                                      "--batch-size=10",
                                      "--json",
                                      "--progress-interval=0"};
  {
    Cli cli(dir(), args);
    const std::string checkpoint = file + ".nexusctl-checkpoint";
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (!std::filesystem::exists(checkpoint) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(cli.pid(), SIGINT);
    CliResult r = cli.Wait();
    ASSERT_EQ(r.exit_code, 130) << "the import finished before the signal; make the file larger\n" << r.out << r.err;
    auto s = ParseJson(r.out);
    EXPECT_GT(Num(s, "accepted"), 0);
    EXPECT_LT(Num(s, "accepted"), kRows);
    EXPECT_EQ(Num(s, "accepted"), Events());  // every acknowledged batch is in the checkpoint, nothing more
  }
  Cli again(dir(), args);
  CliResult r = again.Wait();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto s = ParseJson(r.out);
  EXPECT_EQ(Num(s, "accepted"), kRows);
  EXPECT_EQ(Num(s, "duplicates"), 0);
  EXPECT_EQ(Events(), kRows);
}

TEST_F(NexusctlPgTest, QueryCommandsPrintTablesAndProtobufJson) {
  const std::string file = dir() + "/contacts.csv";
  WriteText(file,
            "email,user_id,name,company,when,kind\n"
            "jane.doe@acme.io,,Jane Doe,acme.io,2026-11-01T09:00:00Z,signup\n"
            "jane.doe@acme.io,u-77,,acme.io,2026-11-02T09:00:00Z,login\n"
            "bob@acme.io,,Bob,acme.io,2026-11-03T09:00:00Z,signup\n");
  CliResult r = Run({"import", file, "--source=crm", "--person-id=email=email", "--person-id=user_id=user_id",
                     "--person-trait=name=name", "--group-id=domain=company", "--time-column=when",
                     "--event-type-column=kind", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("accepted:   3"), std::string::npos) << r.out;
  Resolve();

  r = Run({"lookup", "email", "JANE.DOE@acme.io"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("name:    Jane Doe"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("IDENTIFIERS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("user_id  u-77"), std::string::npos) << r.out;
  r = Run({"lookup", "email", "jane.doe@acme.io", "--json"});
  v1::Person jane;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &jane).ok()) << r.out;
  ASSERT_EQ(jane.person_id().rfind("per_", 0), 0u);

  r = Run({"get", jane.person_id()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("person:  " + jane.person_id()), std::string::npos) << r.out;

  r = Run({"timeline", "email", "jane.doe@acme.io"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("OCCURRED"), std::string::npos) << r.out;
  // Newest first.
  EXPECT_LT(r.out.find("2026-11-02T09:00:00Z  login"), r.out.find("2026-11-01T09:00:00Z  signup")) << r.out;
  r = Run({"timeline", jane.person_id(), "--json", "--limit=1"});
  v1::TimelineResponse tl;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &tl).ok()) << r.out;
  ASSERT_EQ(tl.events_size(), 1);
  EXPECT_EQ(tl.events(0).event_type(), "login");
  EXPECT_FALSE(tl.next_page_token().empty());
  r = Run({"timeline", jane.person_id(), "--json", "--page-token", tl.next_page_token()});
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &tl).ok()) << r.out;
  ASSERT_EQ(tl.events_size(), 1);
  EXPECT_EQ(tl.events(0).event_type(), "signup");
  r = Run({"timeline", "--group", "domain", "acme.io", "--type=signup", "--json"});
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &tl).ok()) << r.out;
  EXPECT_EQ(tl.events_size(), 2);

  r = Run({"members", "--group", "domain", "acme.io"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(jane.person_id() + "  Jane Doe  jane.doe@acme.io"), std::string::npos) << r.out;
  r = Run({"members", jane.person_id(), "--json"});
  v1::ListMembershipsResponse ms;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &ms).ok()) << r.out;
  ASSERT_EQ(ms.memberships_size(), 1);
  EXPECT_EQ(ms.memberships(0).group_domain(), "acme.io");

  r = Run({"explain", "email=jane.doe@acme.io", "user_id=u-77"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("linked: yes (" + jane.person_id() + ")"), std::string::npos) << r.out;
  r = Run({"explain", "email=jane.doe@acme.io", "email=bob@acme.io", "--json"});
  v1::ExplainLinkResponse ex;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &ex).ok()) << r.out;
  EXPECT_FALSE(ex.linked());

  r = Run({"history", "user_id", "u-77", "--json"});
  v1::EntityHistory h;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &h).ok()) << r.out;
  EXPECT_EQ(h.entity_id(), jane.person_id());

  // Errors: named, with documented exit codes.
  r = Run({"lookup", "email", "nobody@nowhere.io"});
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_NE(r.err.find("LookupPerson: NOT_FOUND"), std::string::npos) << r.err;
  r = Run({"import", file, "--source=crm", "--person-id=email=Email"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("column 'Email' is not in the header"), std::string::npos) << r.err;
  r = Run({"lookup", "--colour=blue", "email", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown option '--colour'"), std::string::npos) << r.err;
  Cli unreachable(dir(), {"--server=127.0.0.1:1", "--timeout=5", "lookup", "email", "x@y.io"});
  r = unreachable.Wait();
  EXPECT_EQ(r.exit_code, 6);
  EXPECT_NE(r.err.find("UNAVAILABLE"), std::string::npos) << r.err;
  Cli help(dir(), {"--help"});
  r = help.Wait();
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("exit codes:"), std::string::npos);
}

// With API keys: the key comes from NEXUS_API_KEY or --api-key, is sent as a bearer token and never printed;
// a missing, unknown or too narrow key gives exit code 7 with the server's reason.
TEST_F(NexusctlPgTest, ApiKeysFromTheEnvironmentAreUsedAndNeverPrinted) {
  app_.reset();  // restart with a key in place: the server then requires keys
  std::string secret, gmail_only;
  {
    storage::Database db(storage::DatabaseOptions{url_, 1, std::chrono::milliseconds(5000)}, nullptr);
    storage::AuthStore store(db);
    storage::ApiKeyRecord rec;
    ASSERT_TRUE(server::CreateApiKey(store, {"cli", {"read", "ingest"}, {}, std::nullopt, "cli"}, &rec, &secret).ok());
    ASSERT_TRUE(
        server::CreateApiKey(store, {"gmail", {"ingest"}, {"gmail"}, std::nullopt, "cli"}, &rec, &gmail_only).ok());
  }
  StartApp();
  server_ = "--server=127.0.0.1:" + std::to_string(app_->grpc_port());
  const std::string file = dir() + "/one.csv";
  WriteText(file, "email,name\nkey.user@acme.io,Key User\n");
  const std::vector<std::string> import{
      "import", file, "--source=crm", "--person-id=email=email", "--person-trait=name=name", "--quiet"};

  CliResult r = Run(import);
  EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos) << r.err;

  r = Run(import, {"NEXUS_API_KEY=" + gmail_only});
  EXPECT_EQ(r.exit_code, 7) << r.out << r.err;
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("may not write source 'crm'"), std::string::npos) << r.err;
  EXPECT_EQ((r.out + r.err).find(gmail_only), std::string::npos);

  r = Run(import, {"NEXUS_API_KEY=" + secret});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Events(), 1);
  Resolve();
  r = Run({"lookup", "email", "key.user@acme.io", "--api-key", secret});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Key User"), std::string::npos) << r.out;
  EXPECT_EQ((r.out + r.err).find(secret), std::string::npos);

  const std::string wrong = secret.substr(0, secret.size() - 4) + "xxxx";
  r = Run({"lookup", "email", "key.user@acme.io"}, {"NEXUS_API_KEY=" + wrong});
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_NE(r.err.find("UNAUTHENTICATED"), std::string::npos) << r.err;
  EXPECT_EQ((r.out + r.err).find(wrong), std::string::npos) << r.err;
}

// TLS with client certificates (mTLS): --tls-ca trusts the server, --tls-cert/--tls-key identify the client.
TEST_F(NexusctlPgTest, MutualTlsWithTheServersCaAndAClientCertificate) {
  Certs certs;
  ASSERT_TRUE(certs.ok()) << "openssl failed";
  app_.reset();
  server::Config cfg = BaseConfig();
  cfg.tls_cert = certs.Path("ca-server.pem");
  cfg.tls_key = certs.Path("ca-server.key");
  cfg.tls_client_ca = certs.Path("ca.pem");
  StartApp(cfg);
  server_ = "--server=127.0.0.1:" + std::to_string(app_->grpc_port());
  const std::string file = dir() + "/tls.csv";
  WriteText(file, "email\ntls.user@acme.io\n");
  const std::vector<std::string> tls{
      "--tls-ca",  certs.Path("ca.pem"),        "--tls-cert", certs.Path("ca-client.pem"),
      "--tls-key", certs.Path("ca-client.key"), "--timeout=5"};
  auto with = [&](std::vector<std::string> args, const std::vector<std::string>& extra) {
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };

  CliResult r = Run({"--timeout=5", "lookup", "email", "x@y.io"});  // plaintext to a TLS port
  EXPECT_EQ(r.exit_code, 6) << r.err;
  r = Run({"--tls-ca", certs.Path("other.pem"), "--timeout=5", "lookup", "email", "x@y.io"});  // wrong CA
  EXPECT_EQ(r.exit_code, 6) << r.err;
  r = Run({"--tls-ca", certs.Path("ca.pem"), "--tls-cert", certs.Path("ca-client.pem"), "lookup", "email", "x@y.io"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--tls-cert and --tls-key go together"), std::string::npos) << r.err;

  r = Run(with({"import", file, "--source=crm", "--person-id=email=email", "--quiet"}, tls));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Events(), 1);
  Resolve();
  r = Run(with({"lookup", "email", "tls.user@acme.io"}, tls));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tls.user@acme.io"), std::string::npos) << r.out;
}

// docs/python: the stubs are generated with the documented command and the example runs against a real nexusd,
// so the Python instructions cannot rot. Needs python3-grpcio and python3-protobuf (scripts/install-deps.sh).
TEST_F(NexusctlPgTest, PythonExampleRunsAgainstNexusd) {
  const std::string src = NEXUS_SOURCE_DIR;
  const std::string out = dir() + "/python.out";
  const std::string cmd = src + "/docs/python/gen-stubs.sh " + dir() + "/py >" + out + " 2>&1 && PYTHONPATH=" + dir() +
                          "/py /usr/bin/python3 " + src +
                          "/docs/python/nexus_example.py --server 127.0.0.1:" + std::to_string(app_->grpc_port()) +
                          " >>" + out + " 2>&1";
  for (int run = 1; run <= 2; ++run) {
    const int rc = std::system(cmd.c_str());
    const std::string text = ReadFile(out);
    ASSERT_EQ(rc, 0) << text;
    EXPECT_NE(text.find(run == 1 ? "ingest: accepted=1 duplicates=0" : "ingest: accepted=0 duplicates=1"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("person: per_"), std::string::npos) << text;
    EXPECT_NE(text.find("name='Jane Doe' email=jane.doe@acme.io"), std::string::npos) << text;
    EXPECT_NE(text.find("support/note_added  python-example  roles=['customer']"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace nexus::testing
