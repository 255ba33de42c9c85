// Scrapes a running nexusd (App on ports 0) after real gRPC + HTTP traffic and checks the scrape three ways:
// `promtool check metrics` accepts it, its families match tests/golden/metrics.txt, and counters moved by
// exactly what the test sent.

#include <grpcpp/grpcpp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "http_client.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "pg_fixture.h"
#include "server/resolver_worker.h"

namespace nexus::testing {
namespace {

using Labels = std::map<std::string, std::string>;

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

struct Family {
  std::string type;
  std::set<std::string> label_names;  // union over the family's samples, "le" dropped for histograms
  bool has_samples = false;
};

struct Scrape {
  std::vector<Sample> samples;
  std::map<std::string, Family> families;  // from "# TYPE" lines
  std::string text;

  /// Value of the sample with exactly these labels; nullopt when absent.
  std::optional<double> Get(const std::string& name, const Labels& labels = {}) const {
    for (const auto& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
  double Value(const std::string& name, const Labels& labels = {}) const { return Get(name, labels).value_or(0); }
};

/// A small parser for the text exposition format (what prometheus-cpp writes); throws on lines it cannot read.
Scrape ParseScrape(const std::string& text) {
  Scrape out;
  out.text = text;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string name, type;
      t >> name >> type;
      out.families[name].type = type;
      continue;
    }
    if (line[0] == '#') continue;
    Sample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        const size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          throw std::runtime_error("bad label in: " + line);
        }
        const std::string key = line.substr(i, eq - i);
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value += line[j] == 'n' ? '\n' : line[j];
          } else {
            value += line[j];
          }
        }
        s.labels[key] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;  // '}'
    }
    s.value = std::stod(line.substr(i));
    out.samples.push_back(std::move(s));
  }
  // Attach samples to families (histogram samples carry _bucket/_sum/_count suffixes).
  for (const auto& s : out.samples) {
    std::string family = s.name;
    if (!out.families.count(family)) {
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string suf(suffix);
        if (family.size() > suf.size() && family.compare(family.size() - suf.size(), suf.size(), suf) == 0) {
          const std::string base = family.substr(0, family.size() - suf.size());
          if (out.families.count(base)) {
            family = base;
            break;
          }
        }
      }
    }
    auto it = out.families.find(family);
    if (it == out.families.end()) throw std::runtime_error("sample without a # TYPE line: " + s.name);
    it->second.has_samples = true;
    for (const auto& [k, v] : s.labels) {
      if (k == "le" && it->second.type == "histogram") continue;
      it->second.label_names.insert(k);
    }
  }
  return out;
}

struct GoldenFamily {
  std::string type;
  std::set<std::string> label_names;
};

std::map<std::string, GoldenFamily> LoadGolden() {
  const std::string path = std::string(NEXUS_SOURCE_DIR) + "/tests/golden/metrics.txt";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::map<std::string, GoldenFamily> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream l(line);
    std::string name, type, labels, extra;
    if (!(l >> name >> type >> labels) || (l >> extra)) throw std::runtime_error("bad golden line: " + line);
    GoldenFamily g;
    g.type = type;
    if (labels != "-") {
      std::istringstream ls(labels);
      std::string one;
      while (std::getline(ls, one, ',')) g.label_names.insert(one);
    }
    if (!out.emplace(name, g).second) throw std::runtime_error("duplicate golden family: " + name);
  }
  return out;
}

std::string Join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ",") + x;
  return out.empty() ? "-" : out;
}

/// Runs `command` through /bin/sh, returning its exit status (-1 if it did not exit) and combined output.
int RunShell(const std::string& command, std::string* output) {
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output->append(buf, n);
  const int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

v1::Event MakeEvent(const std::string& id, const std::string& source, const std::string& email) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000);
  e.set_event_name("signup");
  e.set_event_type("signup");
  e.set_source(source);
  auto* p = e.add_persons();
  auto* i = p->add_identifiers();
  i->set_type("email");
  i->set_value(email);
  auto* g = e.add_groups();
  auto* gi = g->add_identifiers();
  gi->set_type("domain");
  gi->set_value("example.com");
  return e;
}

class MetricsPgTest : public PgTest {
 protected:
  Scrape ScrapeNow() {
    const auto r = HttpGet(app_->http_port(), "/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.content_type.find("text/plain"), std::string::npos) << r.content_type;
    return ParseScrape(r.body);
  }
};

TEST_F(MetricsPgTest, ScrapePassesPromtoolGoldenListAndCountersMove) {
  // promtool is part of the test contract (CI installs Debian's `prometheus`): missing means FAIL, not skip.
  std::string which;
  ASSERT_EQ(RunShell("command -v promtool", &which), 0)
      << "promtool not found: install Debian's `prometheus` package (apt-get install prometheus)";

  // A "read replica" that is the primary itself (not in recovery: lag 0), so that the replica families exist;
  // tests/pg/replica_pgtest.cc uses a real standby.
  server::Config config = BaseConfig();
  config.read_database_urls = {url_};
  StartApp(config);
  // Before any call: every method's request and latency series exist at 0 (issue 12 item 15: the gRPC
  // families used to appear only after the first call, and rate() missed it).
  {
    const Scrape before = ScrapeNow();
    for (const char* m : {"IngestEvents", "IngestEventStream", "GetPerson", "LookupPerson", "Rebuild"}) {
      EXPECT_EQ(before.Get("nexus_grpc_requests_total", {{"method", m}, {"code", "OK"}}), 0.0) << m;
      EXPECT_EQ(before.Get("nexus_grpc_request_duration_seconds_count", {{"method", m}, {"code", "OK"}}), 0.0) << m;
    }
  }
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  auto stub = v1::IngestService::NewStub(channel);

  // gRPC: 3 new events from source "crm".
  v1::IngestEventsRequest batch;
  for (int i = 0; i < 3; ++i) {
    *batch.add_events() = MakeEvent("grpc-" + std::to_string(i), "crm", "user" + std::to_string(i) + "@example.com");
  }
  {
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    const auto st = stub->IngestEvents(&ctx, batch, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.accepted(), 3);
  }
  // gRPC: the same batch again -> 3 duplicates, nothing written.
  {
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    const auto st = stub->IngestEvents(&ctx, batch, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(resp.accepted(), 0);
    EXPECT_EQ(resp.duplicates(), 3);
  }
  // gRPC: a bad request (occurred_at missing) -> INVALID_ARGUMENT, 1 rejected from "broken".
  {
    v1::IngestEventsRequest bad;
    auto* e = bad.add_events();
    *e = MakeEvent("bad-0", "broken", "x@example.com");
    e->clear_occurred_at();
    grpc::ClientContext ctx;
    v1::IngestEventsResponse resp;
    const auto st = stub->IngestEvents(&ctx, bad, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // HTTP: 2 new events from source "web" (proto3 JSON).
  const std::string body = R"({"events":[
    {"event_id":"http-0","occurred_at":"2023-11-14T22:13:20Z","event_name":"visit","event_type":"visit",
     "source":"web","persons":[{"identifiers":[{"type":"email","value":"user0@example.com"}]}]},
    {"event_id":"http-1","occurred_at":"2023-11-14T22:13:21Z","event_name":"visit","event_type":"visit",
     "source":"web","persons":[{"identifiers":[{"type":"email","value":"web1@example.com"}]}]}]})";
  const auto ingest = HttpPost(app_->http_port(), "/v1/events:ingest", body);
  ASSERT_EQ(ingest.status, 200) << ingest.body;
  // HTTP: a bad body -> 400.
  EXPECT_EQ(HttpPost(app_->http_port(), "/v1/events:ingest", R"({"events":[]})").status, 400);
  // Segment-compatible API: one track from source "segment" (open mode: any write key).
  const auto seg = HttpPost(app_->http_port(), "/v1/track",
                            R"({"messageId":"seg-0","userId":"u0","event":"E","timestamp":"2023-11-14T22:13:22Z"})");
  ASSERT_EQ(seg.status, 200) << seg.body;

  ASSERT_NE(app_->resolver(), nullptr);
  ResolveAll();  // the background loop may have resolved some already: count via metrics

  EXPECT_EQ(HttpGet(app_->http_port(), "/healthz").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/readyz").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/v1/admin/resolver").status, 200);
  EXPECT_EQ(HttpGet(app_->http_port(), "/no/such/route").status, 404);

  const Scrape scrape = ScrapeNow();

  // 1. promtool accepts the exposition.
  const std::string file = ScratchDir() + "/metrics-" + std::to_string(::getpid()) + ".prom";
  {
    std::ofstream f(file);
    f << scrape.text;
  }
  std::string promtool_out;
  const int rc = RunShell("promtool check metrics < '" + file + "'", &promtool_out);
  EXPECT_EQ(rc, 0) << "promtool check metrics failed:\n" << promtool_out;
  ::unlink(file.c_str());

  // 2. Families match the golden list.
  const auto golden = LoadGolden();
  for (const auto& [name, g] : golden) {
    auto it = scrape.families.find(name);
    if (it == scrape.families.end() || !it->second.has_samples) {
      ADD_FAILURE() << "golden family missing from the scrape: " << name;
      continue;
    }
    EXPECT_EQ(it->second.type, g.type) << name;
    EXPECT_EQ(Join(it->second.label_names), Join(g.label_names)) << "label names of " << name;
  }
  for (const auto& [name, f] : scrape.families) {
    const bool ours = name.rfind("nexus_", 0) == 0 || name.rfind("process_", 0) == 0;
    if (ours && !golden.count(name)) {
      ADD_FAILURE() << "family " << name << " (" << f.type << " " << Join(f.label_names)
                    << ") is not in tests/golden/metrics.txt";
    }
  }
  for (const auto& s : scrape.samples) {
    if (s.name.size() > 7 && s.name.compare(s.name.size() - 7, 7, "_bucket") == 0) {
      EXPECT_TRUE(s.labels.count("le")) << s.name;
    }
  }

  // 3. Counters moved by exactly what was sent (the App's registry is fresh, so absolute = delta).
  const std::string ev = "nexus_ingest_events_total";
  EXPECT_EQ(scrape.Value(ev, {{"result", "accepted"}, {"source", "crm"}}), 3);
  EXPECT_EQ(scrape.Value(ev, {{"result", "duplicate"}, {"source", "crm"}}), 3);
  EXPECT_EQ(scrape.Value(ev, {{"result", "accepted"}, {"source", "web"}}), 2);
  EXPECT_EQ(scrape.Value(ev, {{"result", "rejected"}, {"source", "broken"}}), 1);
  EXPECT_FALSE(scrape.Get(ev, {{"result", "rejected"}, {"source", "crm"}}).has_value());
  EXPECT_EQ(scrape.Value("nexus_ingest_rows_total", {{"table", "events"}}), 6);
  EXPECT_GE(scrape.Value("nexus_ingest_rows_total", {{"table", "person_identifiers"}}), 5);
  EXPECT_EQ(scrape.Value("nexus_ingest_batch_events_count"), 4);  // 2 gRPC (one all duplicates) + 1 HTTP + 1 Segment
  EXPECT_EQ(scrape.Value("nexus_ingest_batch_events_sum"), 9);
  EXPECT_EQ(scrape.Value("nexus_ingest_commit_duration_seconds_count"), 4);
  EXPECT_EQ(scrape.Value(ev, {{"result", "accepted"}, {"source", "segment"}}), 1);
  EXPECT_EQ(scrape.Value("nexus_api_messages_total", {{"api", "segment"}, {"type", "track"}, {"result", "accepted"}}),
            1);

  const std::string grpc = "nexus_grpc_requests_total";
  EXPECT_EQ(scrape.Value(grpc, {{"method", "IngestEvents"}, {"code", "OK"}}), 2);
  EXPECT_EQ(scrape.Value(grpc, {{"method", "IngestEvents"}, {"code", "INVALID_ARGUMENT"}}), 1);
  EXPECT_EQ(scrape.Value("nexus_grpc_request_duration_seconds_count", {{"method", "IngestEvents"}, {"code", "OK"}}), 2);

  const std::string http = "nexus_http_requests_total";
  EXPECT_EQ(scrape.Value(http, {{"route", "/v1/events:ingest"}, {"status", "200"}}), 1);
  EXPECT_EQ(scrape.Value(http, {{"route", "/v1/events:ingest"}, {"status", "400"}}), 1);
  EXPECT_EQ(scrape.Value(http, {{"route", "/v1/track"}, {"status", "200"}}), 1);
  EXPECT_EQ(scrape.Value(http, {{"route", "/healthz"}, {"status", "200"}}), 1);
  EXPECT_EQ(scrape.Value(http, {{"route", "/readyz"}, {"status", "200"}}), 1);
  EXPECT_EQ(scrape.Value(http, {{"route", "unmatched"}, {"status", "404"}}), 1);
  // The scrape before the first call; this one is counted after it is served.
  EXPECT_EQ(scrape.Value(http, {{"route", "/metrics"}, {"status", "200"}}), 1);
  EXPECT_EQ(scrape.Value("nexus_http_request_duration_seconds_count", {{"route", "/healthz"}, {"status", "200"}}), 1);

  // Resolver: 6 events in, the 4 distinct emails (user0 is shared by gRPC and HTTP), the Segment user and 1
  // domain resolved.
  EXPECT_EQ(scrape.Value("nexus_resolver_batch_events_sum"), 6);
  EXPECT_GE(scrape.Value("nexus_resolver_batch_duration_seconds_count"), 1);
  EXPECT_EQ(scrape.Value("nexus_resolver_entities_total", {{"kind", "person"}, {"outcome", "born"}}), 5);
  EXPECT_EQ(scrape.Value("nexus_resolver_entities_total", {{"kind", "group"}, {"outcome", "born"}}), 1);
  EXPECT_EQ(scrape.Value("nexus_resolver_errors_total"), 0);
  EXPECT_EQ(scrape.Value("nexus_resolver_events_pending"), 0);

  // Database and process.
  EXPECT_GE(scrape.Value("nexus_db_pool_connections"), 1);
  EXPECT_LE(scrape.Value("nexus_db_pool_connections_in_use"), scrape.Value("nexus_db_pool_connections"));
  EXPECT_EQ(scrape.Value("nexus_db_errors_total", {{"kind", "connection"}}), 0);
  bool any_statement = false;
  for (const auto& s : scrape.samples) {
    if (s.name == "nexus_db_query_duration_seconds_count" && s.value > 0) any_statement = true;
  }
  EXPECT_TRUE(any_statement) << "no statement latency recorded";
  EXPECT_GT(scrape.Value("process_resident_memory_bytes"), 1e6);
  EXPECT_GT(scrape.Value("process_open_fds"), 0);
  EXPECT_GT(scrape.Value("process_start_time_seconds"), 1.6e9);
  bool build_info = false;
  for (const auto& s : scrape.samples) {
    if (s.name == "nexus_build_info" && s.value == 1 && !s.labels.at("version").empty()) build_info = true;
  }
  EXPECT_TRUE(build_info);

  // The next scrape counts the previous /metrics requests (the one before the first call, and `scrape`).
  const Scrape again = ScrapeNow();
  EXPECT_EQ(again.Value(http, {{"route", "/metrics"}, {"status", "200"}}), 2);
  EXPECT_EQ(again.Value(ev, {{"result", "accepted"}, {"source", "crm"}}), 3);
}

TEST_F(MetricsPgTest, IngestStreamCountsEveryBatch) {
  StartApp();
  auto stub = v1::IngestService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->IngestEventStream(&ctx);
  for (int b = 0; b < 4; ++b) {
    v1::IngestEventsRequest req;
    for (int i = 0; i < 5; ++i) {
      *req.add_events() = MakeEvent("s" + std::to_string(b) + "-" + std::to_string(i), "stream",
                                    "s" + std::to_string(i) + "@example.com");
    }
    ASSERT_TRUE(stream->Write(req));
    v1::IngestEventsResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.accepted(), 5);
  }
  stream->WritesDone();
  ASSERT_TRUE(stream->Finish().ok());

  const Scrape s = ScrapeNow();
  EXPECT_EQ(s.Value("nexus_ingest_events_total", {{"result", "accepted"}, {"source", "stream"}}), 20);
  EXPECT_EQ(s.Value("nexus_ingest_batch_events_count"), 4);
  EXPECT_EQ(s.Value("nexus_grpc_requests_total", {{"method", "IngestEventStream"}, {"code", "OK"}}), 1);
}

}  // namespace
}  // namespace nexus::testing
