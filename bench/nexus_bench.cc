// nexus_bench: measures a running nexusd + its PostgreSQL against a generated world with known truth.
// Usage: nexus_bench run --grpc=HOST:PORT --http=HOST:PORT --db=URL --copy-db=URL --identifiers=N
//          [--seed=42] [--repeats=3] [--streams=2] [--window=4] [--query-threads=4] [--query-seconds=5]
//          [--fresh-requests=100] [--fresh-rate=10] [--checkpoints=100000,1000000] [--nexusd-pid=P]
//          [--pg-pid=P] [--size-name=small] [--out=FILE.json] [--stages=a,b,...] [--hold-back=N]
//        nexus_bench gen --identifiers=N [--seed=42]     (prints world statistics)
// Exit status: 0 when every correctness check matched exactly, 1 otherwise, 2 on usage errors.
#include <arpa/inet.h>
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "bench/generator.h"
#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"

namespace v1 = nexus::v1;
using nexus::bench::GenEvent;
using nexus::bench::GenIdentifier;
using nexus::bench::IdKey;
using nexus::bench::World;
using Clock = std::chrono::steady_clock;

namespace {

double Secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())) - 1));
  return v[i];
}
double Median(std::vector<double> v) { return Pct(std::move(v), 0.5); }

// ---- minimal JSON builder -------------------------------------------------------------------------
std::string Q(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\')
      o += '\\', o += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else
      o += c;
  }
  return o + "\"";
}
std::string N(double d) {
  if (!std::isfinite(d)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", d);
  return b;
}
std::string N(int64_t i) { return std::to_string(i); }
struct Obj {
  std::vector<std::pair<std::string, std::string>> kv;
  Obj& Set(const std::string& k, const std::string& raw_json) {
    for (auto& p : kv)
      if (p.first == k) return p.second = raw_json, *this;
    kv.push_back({k, raw_json});
    return *this;
  }
  Obj& S(const std::string& k, const std::string& v) { return Set(k, Q(v)); }
  Obj& D(const std::string& k, double v) { return Set(k, N(v)); }
  Obj& I(const std::string& k, int64_t v) { return Set(k, N(v)); }
  Obj& B(const std::string& k, bool v) { return Set(k, v ? "true" : "false"); }
  std::string Str(int ind = 0) const {
    std::string pad(static_cast<size_t>(ind + 2), ' '), o = "{\n";
    for (size_t i = 0; i < kv.size(); ++i)
      o += pad + Q(kv[i].first) + ": " + kv[i].second + (i + 1 < kv.size() ? ",\n" : "\n");
    return o + std::string(static_cast<size_t>(ind), ' ') + "}";
  }
};
std::string Arr(const std::vector<std::string>& items) {
  std::string o = "[";
  for (size_t i = 0; i < items.size(); ++i) o += (i ? ", " : "") + items[i];
  return o + "]";
}

// ---- flags ----------------------------------------------------------------------------------------
struct Flags {
  std::map<std::string, std::string> m;
  std::string Get(const std::string& k, const std::string& d = "") const {
    auto it = m.find(k);
    return it == m.end() ? d : it->second;
  }
  int64_t Int(const std::string& k, int64_t d) const {
    auto v = Get(k);
    return v.empty() ? d : std::stoll(v);
  }
};

// ---- conversions ----------------------------------------------------------------------------------
void ToProto(const GenEvent& g, v1::Event* e) {
  e->set_event_id(g.event_id);
  e->mutable_occurred_at()->set_seconds(g.occurred_us / 1000000);
  e->mutable_occurred_at()->set_nanos(static_cast<int32_t>(g.occurred_us % 1000000) * 1000);
  e->set_event_name(g.name);
  e->set_event_description(g.description);
  e->set_event_type(g.type);
  e->set_source(g.source);
  if (g.value) e->set_value(*g.value);
  e->set_value_unit(g.unit);
  auto mentions = [](const std::vector<nexus::bench::GenMention>& in,
                     google::protobuf::RepeatedPtrField<v1::EntityMention>* out) {
    for (const auto& m : in) {
      auto* pm = out->Add();
      pm->set_edge_id(m.edge_id);
      pm->set_role(m.role);
      for (const auto& id : m.ids) {
        auto* pi = pm->add_identifiers();
        pi->set_type(id.type);
        pi->set_value(id.raw);
      }
      for (const auto& [k, v] : m.traits) (*pm->mutable_traits())[k] = v;
    }
  };
  mentions(g.persons, e->mutable_persons());
  mentions(g.groups, e->mutable_groups());
  for (const auto& m : g.memberships) {
    auto* pm = e->add_memberships();
    pm->mutable_person()->set_type(m.person.type);
    pm->mutable_person()->set_value(m.person.raw);
    pm->mutable_group()->set_type(m.group.type);
    pm->mutable_group()->set_value(m.group.raw);
    pm->set_role(m.role);
  }
}

std::string Ts(int64_t us) {
  time_t s = static_cast<time_t>(us / 1000000);
  struct tm t;
  gmtime_r(&s, &t);
  char b[64];
  std::snprintf(b, sizeof b, "%04d-%02d-%02d %02d:%02d:%02d.%06lld+00", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, static_cast<long long>(us % 1000000));
  return b;
}

// ---- /proc and /metrics ---------------------------------------------------------------------------
int64_t ProcKb(int pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}
int ParentPid(int pid) {
  std::string s;
  try {  // libstdc++ throws on the read error of a process that exits between open and read
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    s.assign(std::istreambuf_iterator<char>(f), {});
  } catch (const std::ios_base::failure&) {
    return -1;
  }
  auto p = s.rfind(')');
  if (p == std::string::npos) return -1;
  std::istringstream is(s.substr(p + 2));
  std::string state;
  int ppid = -1;
  is >> state >> ppid;
  return ppid;
}
std::string FirstMatch(const std::string& file, const std::string& prefix) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(prefix, 0) == 0) {
      auto c = line.find(':');
      auto v = c == std::string::npos ? line : line.substr(c + 1);
      while (!v.empty() && v[0] == ' ') v.erase(0, 1);
      return v;
    }
  return "";
}

std::string HttpGet(const std::string& hostport, const std::string& path) {
  auto c = hostport.rfind(':');
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(hostport.substr(c + 1))));
  inet_pton(AF_INET, hostport.substr(0, c) == "localhost" ? "127.0.0.1" : hostport.substr(0, c).c_str(), &a.sin_addr);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: " + hostport + "\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[65536];
  for (int i = 0; i < 100000; ++i) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  auto b = out.find("\r\n\r\n");
  return b == std::string::npos ? out : out.substr(b + 4);
}
double Metric(const std::string& text, const std::string& name) {
  std::istringstream is(text);
  std::string line;
  double total = 0;
  bool found = false;
  while (std::getline(is, line)) {
    if (line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : ' ';
    if (next != ' ' && next != '{') continue;
    total += std::stod(line.substr(line.rfind(' ') + 1));
    found = true;
  }
  return found ? total : NAN;
}
/// Seconds spent per named statement (nexus_db_query_duration_seconds_sum{statement="..."}).
std::map<std::string, double> StatementSums(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream is(text);
  std::string line;
  const std::string prefix = "nexus_db_query_duration_seconds_sum{";
  while (std::getline(is, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const auto a = line.find("statement=\""), b = line.find('"', a + 11);
    if (a == std::string::npos || b == std::string::npos) continue;
    out[line.substr(a + 11, b - a - 11)] += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return out;
}

// ---- the benchmark ------------------------------------------------------------------------------
class Bench {
 public:
  Bench(const Flags& f) : f_(f) {
    channel_ = grpc::CreateChannel(f.Get("grpc", "127.0.0.1:50051"), grpc::InsecureChannelCredentials());
    ingest_ = v1::IngestService::NewStub(channel_);
    query_ = v1::QueryService::NewStub(channel_);
    admin_ = v1::AdminService::NewStub(channel_);
  }
  int Run();

 private:
  std::shared_ptr<grpc::Channel> NewChannel(int i) {
    grpc::ChannelArguments args;
    args.SetInt("nexus_bench_channel", i);  // distinct channels = distinct connections
    return grpc::CreateCustomChannel(f_.Get("grpc", "127.0.0.1:50051"), grpc::InsecureChannelCredentials(), args);
  }
  bool Status(v1::ResolverStatus* st) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return admin_->GetResolverStatus(&ctx, v1::GetResolverStatusRequest{}, st).ok();
  }
  // Waits until the resolver has nothing pending; returns seconds waited or -1 on timeout. Each poll costs the
  // server a count of the backlog, which PostgreSQL does beside the resolver being waited for, so the interval
  // grows with the wait: 2% of the time waited so far (20 ms to 500 ms). The figure is then at most ~2% late,
  // and a 30 s wait polls about 200 times instead of 1,500 (at 10M the 20 ms polls cost 6.5-7.6 s of
  // status_backlog per 10k batch, docs/BENCHMARKS.md).
  double WaitCaughtUp(double timeout_s) {
    const auto t0 = Clock::now();
    for (int i = 0; i < 1000000; ++i) {
      v1::ResolverStatus st;
      const bool ok = Status(&st);
      const double waited = Secs(t0, Clock::now());
      if (ok && st.active() && st.events_pending() == 0) return waited;
      if (waited > timeout_s) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::clamp<int64_t>(waited * 20, 20, 500)));
    }
    return -1;
  }
  int64_t Count(const std::string& sql) {
    pqxx::connection c(f_.Get("db"));
    pqxx::nontransaction tx(c);
    return tx.exec(sql)[0][0].as<int64_t>();
  }
  std::string Text(const std::string& sql) {
    pqxx::connection c(f_.Get("db"));
    pqxx::nontransaction tx(c);
    return tx.exec(sql)[0][0].c_str();
  }
  // Where the WAL since `lsn0` went, by the relation of each record's first block (pg_walinspect; records without
  // one, e.g. commits, under "-"): MiB and full-page-image MiB of the 12 largest, as a JSON object. It shows which
  // table or index a batch's write volume comes from. "{}" when the extension is not available.
  std::string WalByRelation(const std::string& lsn0) {
    try {
      pqxx::connection c(f_.Get("db"));
      pqxx::nontransaction tx(c);
      tx.exec("CREATE EXTENSION IF NOT EXISTS pg_walinspect");
      const auto r = tx.exec(
          "SELECT coalesce(c.relname, '-'), sum(w.record_length) / 1048576.0, sum(w.fpi_length) / 1048576.0 "
          "FROM pg_get_wal_records_info(" +
          tx.quote(lsn0) +
          "::pg_lsn, pg_current_wal_lsn()) w LEFT JOIN pg_class c ON c.relfilenode = "
          "(regexp_match(w.block_ref, 'rel \\d+/\\d+/(\\d+)'))[1]::oid GROUP BY 1 ORDER BY 2 DESC LIMIT 12");
      Obj o;
      for (const auto& row : r) {
        o.Set(row[0].c_str(), "{\"mib\": " + N(row[1].as<double>()) + ", \"fpi_mib\": " + N(row[2].as<double>()) + "}");
      }
      return o.Str(6);
    } catch (const std::exception& e) {
      std::cerr << "[bench] WAL by relation not measured: " << e.what() << "\n";
      return "{}";
    }
  }
  struct IngestStats {
    int64_t events = 0, accepted = 0, duplicates = 0, requests = 0;
    double seconds = 0;
    std::string error;
  };
  IngestStats StreamSegment(size_t a, size_t b);
  Obj CopyBaseline();
  Obj Ingest();
  Obj Increment(size_t pos, size_t n, int64_t checkpoint, IngestStats* all, double* batch_sum_before);
  Obj LogIngest();
  Obj Increments();
  Obj Freshness();
  Obj Correctness(const std::string& label);
  Obj Queries();
  Obj Rebuild();
  Obj SteadyFreshness();
  Obj SqlBaseline();
  Obj Memory();

  const Flags& f_;
  World w_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
  std::unique_ptr<v1::QueryService::Stub> query_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  bool exact_ = true;
  int64_t nexusd_peak_kb_ = 0;  ///< nexusd's peak RSS over the stages run so far (Run resets it per stage)
  std::vector<std::string> failures_;
  bool built_while_streaming_ = false;
};

Obj Bench::CopyBaseline() {
  // The same rows nexusd writes (normalized values, derived edge ids, rows implied by memberships), written
  // with one COPY per table in one transaction into an empty database with the same schema.
  Obj o;
  std::unordered_set<std::string> seen;
  std::vector<const GenEvent*> evs;
  for (const auto& e : w_.events)
    if (seen.insert(e.event_id).second) evs.push_back(&e);
  std::vector<double> times;
  const int repeats = static_cast<int>(f_.Int("repeats", 3));
  pqxx::connection c(f_.Get("copy-db"));
  int64_t rows = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    {
      pqxx::work tx(c);
      tx.exec(
          "TRUNCATE events, person_identifiers, person_traits, group_identifiers, group_traits, "
          "membership_identifiers RESTART IDENTITY CASCADE");
      tx.commit();
    }
    {
      pqxx::nontransaction nt(c);
      nt.exec("CHECKPOINT");
    }
    rows = 0;
    const auto t0 = Clock::now();
    pqxx::work tx(c);
    {
      pqxx::stream_to s(tx, "events",
                        std::vector<std::string>{"event_id", "occurred_at", "event_name", "event_description",
                                                 "event_type", "source", "value", "value_unit"});
      for (const auto* e : evs) {
        s << std::make_tuple(e->event_id, Ts(e->occurred_us), e->name,
                             e->description.empty() ? std::optional<std::string>() : e->description, e->type, e->source,
                             e->value ? std::optional<std::string>(N(*e->value)) : std::nullopt,
                             e->unit.empty() ? std::optional<std::string>() : e->unit);
        ++rows;
      }
      s.complete();
    }
    auto ids = [&](const char* table, bool person) {
      pqxx::stream_to s(tx, table,
                        std::vector<std::string>{"event_id", "edge_id", "identifier_type", "identifier_value",
                                                 "identifier_value_raw", "role", "source", "occurred_at"});
      for (const auto* e : evs) {
        const std::string ts = Ts(e->occurred_us);
        std::set<std::pair<std::string, std::string>> in_event;
        const auto& ms = person ? e->persons : e->groups;
        for (size_t m = 0; m < ms.size(); ++m) {
          const std::string edge =
              ms[m].edge_id.empty() ? e->event_id + (person ? "#p" : "#g") + std::to_string(m) : ms[m].edge_id;
          for (const auto& id : ms[m].ids) {
            s << std::make_tuple(e->event_id, edge, id.type, id.norm, id.raw, std::optional<std::string>(ms[m].role),
                                 e->source, ts);
            in_event.insert({id.type, id.norm});
            ++rows;
          }
        }
        for (size_t m = 0; m < e->memberships.size(); ++m) {
          const GenIdentifier& id = person ? e->memberships[m].person : e->memberships[m].group;
          if (!in_event.insert({id.type, id.norm}).second) continue;
          s << std::make_tuple(e->event_id, e->event_id + "#m" + std::to_string(m) + (person ? "p" : "g"), id.type,
                               id.norm, id.raw, std::optional<std::string>(), e->source, ts);
          ++rows;
        }
      }
      s.complete();
    };
    auto traits = [&](const char* table, bool person) {
      pqxx::stream_to s(
          tx, table,
          std::vector<std::string>{"event_id", "edge_id", "trait_name", "trait_value", "source", "occurred_at"});
      for (const auto* e : evs) {
        const auto& ms = person ? e->persons : e->groups;
        for (size_t m = 0; m < ms.size(); ++m) {
          const std::string edge =
              ms[m].edge_id.empty() ? e->event_id + (person ? "#p" : "#g") + std::to_string(m) : ms[m].edge_id;
          for (const auto& [k, v] : ms[m].traits) {
            s << std::make_tuple(e->event_id, edge, k, v, e->source, Ts(e->occurred_us));
            ++rows;
          }
        }
      }
      s.complete();
    };
    ids("person_identifiers", true);
    traits("person_traits", true);
    ids("group_identifiers", false);
    traits("group_traits", false);
    {
      pqxx::stream_to s(
          tx, "membership_identifiers",
          std::vector<std::string>{"event_id", "person_identifier", "person_identifier_type", "group_identifier",
                                   "group_identifier_type", "role", "source", "occurred_at"});
      for (const auto* e : evs)
        for (const auto& m : e->memberships) {
          s << std::make_tuple(e->event_id, m.person.norm, m.person.type, m.group.norm, m.group.type, m.role, e->source,
                               Ts(e->occurred_us));
          ++rows;
        }
      s.complete();
    }
    tx.commit();
    times.push_back(Secs(t0, Clock::now()));
  }
  const double med = Median(times);
  o.I("events", static_cast<int64_t>(evs.size())).I("rows", rows).D("seconds_median", med);
  o.D("events_per_s", static_cast<double>(evs.size()) / med).I("repeats", repeats);
  std::vector<std::string> ts;
  for (double t : times) ts.push_back(N(t));
  o.Set("seconds_all", Arr(ts));
  return o;
}

Bench::IngestStats Bench::StreamSegment(size_t a, size_t b) {
  const size_t kBatch = 500;
  // Requests are built before the clock starts, so the client's own work is not timed, except for segments
  // of more than a million events (the 10m world): held as protobuf messages they would take gigabytes next
  // to the world, so each is built by its stream thread just before it is written.
  const bool prebuilt = b - a <= 1000000;
  const size_t nreqs = (b - a + kBatch - 1) / kBatch;
  auto build = [&](size_t k, v1::IngestEventsRequest* req) {
    for (size_t j = a + k * kBatch; j < std::min(b, a + (k + 1) * kBatch); ++j)
      ToProto(w_.events[j], req->add_events());
  };
  std::vector<v1::IngestEventsRequest> reqs(prebuilt ? nreqs : 0);
  for (size_t k = 0; k < reqs.size(); ++k) build(k, &reqs[k]);
  if (!prebuilt) built_while_streaming_ = true;
  const int streams = static_cast<int>(f_.Int("streams", 2)), window = static_cast<int>(f_.Int("window", 4));
  std::atomic<size_t> next{0};
  std::mutex mu;
  IngestStats total;
  const auto t0 = Clock::now();
  std::vector<std::thread> th;
  for (int s = 0; s < streams; ++s) {
    th.emplace_back([&, s] {
      auto ch = NewChannel(1000 + s);
      auto stub = v1::IngestService::NewStub(ch);
      grpc::ClientContext ctx;
      auto st = stub->IngestEventStream(&ctx);
      IngestStats mine;
      int inflight = 0;
      bool more = true;
      for (size_t guard = 0; guard < nreqs * 2 + 10; ++guard) {
        while (more && inflight < window) {
          const size_t k = next.fetch_add(1);
          if (k >= nreqs) {
            more = false;
            break;
          }
          v1::IngestEventsRequest built;
          if (!prebuilt) build(k, &built);
          const v1::IngestEventsRequest& req = prebuilt ? reqs[k] : built;
          if (!st->Write(req)) {
            more = false;
            mine.error = "stream write failed";
            break;
          }
          ++inflight;
          mine.events += req.events_size();
          ++mine.requests;
        }
        if (inflight == 0) break;
        v1::IngestEventsResponse resp;
        if (!st->Read(&resp)) {
          mine.error = "stream read failed";
          break;
        }
        --inflight;
        mine.accepted += resp.accepted();
        mine.duplicates += resp.duplicates();
      }
      st->WritesDone();
      auto status = st->Finish();
      if (!status.ok()) mine.error = "IngestEventStream: " + status.error_message();
      std::lock_guard<std::mutex> l(mu);
      total.events += mine.events;
      total.accepted += mine.accepted;
      total.duplicates += mine.duplicates;
      total.requests += mine.requests;
      if (!mine.error.empty()) total.error = mine.error;
    });
  }
  for (auto& t : th) t.join();
  total.seconds = Secs(t0, Clock::now());
  return total;
}

// One increment: waits until the resolver has caught up, sends events [pos, pos + n) as ONE request (one
// transaction, so the resolver with --resolver-batch-events=n takes them as one batch) and times it until
// resolved, with where the time went by statement and the write volume.
Obj Bench::Increment(size_t pos, size_t n, int64_t checkpoint, IngestStats* all, double* batch_sum_before) {
  Obj io;
  const double waited = WaitCaughtUp(3600);
  io.D("catch_up_wait_s", waited);
  const int64_t held = Count("SELECT count(*) FROM resolved_person_identifiers");
  io.I("checkpoint", checkpoint).I("identifiers_before", held).I("events", static_cast<int64_t>(n));
  const std::string m0 = HttpGet(f_.Get("http"), "/metrics");
  const double s0 = Metric(m0, "nexus_resolver_batch_duration_seconds_sum"),
               c0 = Metric(m0, "nexus_resolver_batch_duration_seconds_count"),
               e0 = Metric(m0, "nexus_resolver_batch_events_sum");
  if (batch_sum_before) *batch_sum_before = s0;
  // Write volume, which the machine's load does not change: WAL bytes of ingesting + resolving this batch,
  // and how many row updates were HOT (no index touched). Counters are cluster-wide; nothing else writes.
  const char* kWalPos = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint";
  const char* kUpdates = "SELECT coalesce(sum(n_tup_upd), 0)::bigint FROM pg_stat_user_tables";
  const char* kHotUpdates = "SELECT coalesce(sum(n_tup_hot_upd), 0)::bigint FROM pg_stat_user_tables";
  const int64_t wal0 = Count(kWalPos), upd0 = Count(kUpdates), hot0 = Count(kHotUpdates);
  const std::string lsn0 = Text("SELECT pg_current_wal_lsn()::text");
  v1::IngestEventsRequest req;
  for (size_t j = pos; j < pos + n; ++j) ToProto(w_.events[j], req.add_events());
  v1::IngestEventsResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(600));
  const auto ti = Clock::now();
  auto st = ingest_->IngestEvents(&ctx, req, &resp);
  io.D("ingest_one_request_s", Secs(ti, Clock::now()));
  if (!st.ok()) {
    io.S("error", "IngestEvents(" + std::to_string(n) + "): " + st.error_message());
  } else {
    const auto tr = Clock::now();
    const double w = WaitCaughtUp(3600);
    io.D("ack_to_resolved_s", w >= 0 ? Secs(tr, Clock::now()) : NAN);
    const std::string m1 = HttpGet(f_.Get("http"), "/metrics");
    const double s1 = Metric(m1, "nexus_resolver_batch_duration_seconds_sum"),
                 c1 = Metric(m1, "nexus_resolver_batch_duration_seconds_count"),
                 e1 = Metric(m1, "nexus_resolver_batch_events_sum");
    io.D("resolver_batches", c1 - c0).D("resolver_events", e1 - e0).D("resolver_seconds", s1 - s0);
    // Where the batch's time went, by named statement (largest first; statements under 1 ms left out).
    const auto before = StatementSums(m0), after = StatementSums(m1);
    std::vector<std::pair<double, std::string>> by;
    for (const auto& [name, v] : after) {
      const double d = v - (before.count(name) ? before.at(name) : 0.0);
      if (name.rfind("resolver.", 0) == 0 && d >= 0.001) by.emplace_back(d, name);
    }
    std::sort(by.rbegin(), by.rend());
    Obj st;
    for (const auto& [d, name] : by) st.D(name, d);
    io.Set("statement_seconds", st.Str(6));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // backends flush table statistics when idle
    io.I("wal_bytes", Count(kWalPos) - wal0);
    io.Set("wal_by_relation", WalByRelation(lsn0));
    io.I("row_updates", Count(kUpdates) - upd0).I("hot_row_updates", Count(kHotUpdates) - hot0);
    io.D("identifiers_after", static_cast<double>(Count("SELECT count(*) FROM resolved_person_identifiers")));
  }
  all->events += static_cast<int64_t>(n);
  all->accepted += resp.accepted();
  all->duplicates += resp.duplicates();
  return io;
}

Obj Bench::Ingest() {
  Obj o;
  // Cut points: where the cumulative number of distinct person identifiers reaches each checkpoint; the
  // next 10,000 events go as ONE request (one transaction), so the resolver (--resolver-batch-events=10000)
  // takes them as one batch.
  std::vector<int64_t> checkpoints;
  {
    std::stringstream ss(f_.Get("checkpoints", "100000,1000000"));
    std::string t;
    while (std::getline(ss, t, ','))
      if (!t.empty()) checkpoints.push_back(std::stoll(t));
  }
  const size_t inc = static_cast<size_t>(f_.Int("increment-events", 10000));
  std::vector<std::pair<size_t, int64_t>> cuts;  // (position, checkpoint)
  {
    std::unordered_set<std::string> ids;
    size_t ci = 0;
    for (size_t i = 0; i < w_.events.size() && ci < checkpoints.size(); ++i) {
      for (const auto& m : w_.events[i].persons)
        for (const auto& id : m.ids) ids.insert(IdKey(id.type, id.norm));
      for (const auto& m : w_.events[i].memberships) ids.insert(IdKey(m.person.type, m.person.norm));
      if (static_cast<int64_t>(ids.size()) >= checkpoints[ci]) {
        if (i + 1 + inc <= w_.events.size()) cuts.push_back({i + 1, checkpoints[ci]});
        ++ci;
      }
    }
    if (cuts.empty()) {  // small worlds: one increment at the end, smaller than 10k if needed
      const size_t n = std::min(inc, w_.events.size() / 4);
      cuts.push_back({w_.events.size() - n, -1});
    }
  }
  std::vector<std::string> incs, segs;
  std::vector<int64_t> seg_events;
  IngestStats all;
  size_t pos = 0;
  const auto start = Clock::now();
  double batch_sum0 = 0;
  for (size_t c = 0; c <= cuts.size(); ++c) {
    const size_t end = c < cuts.size() ? cuts[c].first : w_.events.size();
    if (end > pos) {
      auto s = StreamSegment(pos, end);
      all.events += s.events, all.accepted += s.accepted, all.duplicates += s.duplicates;
      all.requests += s.requests, all.seconds += s.seconds;
      if (!s.error.empty()) all.error = s.error;
      seg_events.push_back(s.events);
      segs.push_back(
          Obj().I("events", s.events).D("seconds", s.seconds).D("events_per_s", s.events / s.seconds).Str(4));
      pos = end;
    }
    if (c == cuts.size()) break;
    const size_t n = std::min(inc, w_.events.size() - pos);
    incs.push_back(Increment(pos, n, cuts[c].second, &all, c == 0 ? &batch_sum0 : nullptr).Str(4));
    pos += n;
  }
  o.I("events_sent", all.events).I("accepted", all.accepted).I("duplicates", all.duplicates);
  o.I("stream_requests", all.requests).D("stream_seconds", all.seconds);
  // Throughput of the streamed segments only (the one-request increments and catch-up waits excluded).
  int64_t streamed = 0;
  for (const auto& s : seg_events) streamed += s;
  o.I("streamed_events", streamed).D("events_per_s", static_cast<double>(streamed) / std::max(1e-9, all.seconds));
  o.Set("segments", Arr(segs));
  o.Set("increments", Arr(incs));
  o.B("requests_built_while_streaming", built_while_streaming_);
  if (!all.error.empty()) o.S("error", all.error);
  const double w = WaitCaughtUp(7200);
  o.D("ingest_start_to_all_resolved_s", w >= 0 ? Secs(start, Clock::now()) : NAN);
  const std::string m = HttpGet(f_.Get("http"), "/metrics");
  o.D("resolver_batch_seconds_total", Metric(m, "nexus_resolver_batch_duration_seconds_sum") - batch_sum0);
  o.D("resolver_batches_total", Metric(m, "nexus_resolver_batch_duration_seconds_count"));
  return o;
}

// --hold-back=N, first half: the whole stream but its last N events, through nexusd's ingest as fast as it
// takes them, without waiting for a resolver (bench/run's log-rebuild flow runs nexusd with --resolver=false
// here, then a full rebuild). Not a measure of resolution: of ingest with nothing else running.
Obj Bench::LogIngest() {
  Obj o;
  const size_t hold = static_cast<size_t>(f_.Int("hold-back", 0));
  const size_t end = w_.events.size() - std::min(hold, w_.events.size());
  const auto s = StreamSegment(0, end);
  o.I("events_sent", s.events).I("accepted", s.accepted).I("duplicates", s.duplicates);
  o.I("held_back", static_cast<int64_t>(w_.events.size() - end)).I("stream_requests", s.requests);
  o.D("stream_seconds", s.seconds).D("events_per_s", static_cast<double>(s.events) / std::max(1e-9, s.seconds));
  o.B("requests_built_while_streaming", built_while_streaming_);
  if (!s.error.empty()) o.S("error", s.error);
  return o;
}

// --hold-back=N, second half: the held-back events as increments of --increment-events (one request and one
// resolver batch each) against a resolver that has loaded the whole graph.
Obj Bench::Increments() {
  Obj o;
  const size_t inc = static_cast<size_t>(f_.Int("increment-events", 10000));
  const size_t hold = std::min(static_cast<size_t>(f_.Int("hold-back", 0)), w_.events.size());
  IngestStats all;
  std::vector<std::string> incs;
  for (size_t pos = w_.events.size() - hold; pos < w_.events.size();) {
    const size_t n = std::min(inc, w_.events.size() - pos);
    incs.push_back(Increment(pos, n, -1, &all, nullptr).Str(4));
    pos += n;
  }
  o.I("events_sent", all.events).I("accepted", all.accepted).I("duplicates", all.duplicates);
  o.Set("increments", Arr(incs));
  return o;
}

Obj Bench::Freshness() {
  Obj o;
  const size_t nreq = w_.fresh_requests.size();
  const double rate = static_cast<double>(f_.Int("fresh-rate", 10));
  std::vector<v1::IngestEventsRequest> reqs(nreq);
  for (size_t q = 0; q < nreq; ++q)
    for (const auto& e : w_.fresh_requests[q]) ToProto(e, reqs[q].add_events());
  std::vector<Clock::time_point> ack(nreq), vis(nreq);
  std::vector<char> seen(nreq, 0);
  std::mutex mu;
  std::vector<size_t> pending;
  std::atomic<bool> done{false};
  std::string error;
  grpc::ClientContext ctx;
  auto st = ingest_->IngestEventStream(&ctx);
  const auto t0 = Clock::now();
  std::thread sender([&] {
    for (size_t q = 0; q < nreq; ++q) {
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * q / rate)));
      if (!st->Write(reqs[q])) break;
    }
    st->WritesDone();
  });
  std::thread poller([&] {
    auto ch = NewChannel(2000);
    auto stub = v1::QueryService::NewStub(ch);
    for (int round = 0; round < 10000000 && !done.load(); ++round) {
      std::vector<size_t> snap;
      {
        std::lock_guard<std::mutex> l(mu);
        snap = pending;
      }
      for (size_t q : snap) {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::LookupPersonRequest r;
        r.set_identifier_type(w_.fresh_probe_ids[q].type);
        r.set_identifier_value(w_.fresh_probe_ids[q].norm);
        v1::Person p;
        auto s = stub->LookupPerson(&c, r, &p);
        if (s.ok() && !p.person_id().empty()) {
          std::lock_guard<std::mutex> l(mu);
          vis[q] = Clock::now();
          seen[q] = 1;
          pending.erase(std::remove(pending.begin(), pending.end(), q), pending.end());
        } else if (s.error_code() != grpc::StatusCode::NOT_FOUND) {
          std::lock_guard<std::mutex> l(mu);
          error = "LookupPerson: " + s.error_message();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (size_t q = 0; q < nreq; ++q) {
    v1::IngestEventsResponse resp;
    if (!st->Read(&resp)) break;
    std::lock_guard<std::mutex> l(mu);
    ack[q] = Clock::now();
    pending.push_back(q);
  }
  sender.join();
  auto fin = st->Finish();
  for (int i = 0; i < 60000; ++i) {  // at most ~120 s for the last probes
    {
      std::lock_guard<std::mutex> l(mu);
      if (pending.empty() || !error.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done = true;
  poller.join();
  std::vector<double> lat;
  for (size_t q = 0; q < nreq; ++q)
    if (seen[q]) lat.push_back(Secs(ack[q], vis[q]) * 1000);
  o.I("requests", static_cast<int64_t>(nreq))
      .I("events_per_request", static_cast<int64_t>(w_.fresh_requests.empty() ? 0 : w_.fresh_requests[0].size()));
  o.D("offered_events_per_s",
      rate * (w_.fresh_requests.empty() ? 0 : static_cast<double>(w_.fresh_requests[0].size())));
  o.I("probes_visible", static_cast<int64_t>(lat.size()));
  o.D("p50_ms", Pct(lat, 0.5)).D("p99_ms", Pct(lat, 0.99)).D("max_ms", Pct(lat, 1.0));
  if (!fin.ok()) o.S("error", "IngestEventStream: " + fin.error_message());
  if (!error.empty()) o.S("error", error);
  return o;
}

// Freshness under sustained load: `steady-rate` events/s (100-event requests from two senders) for
// `steady-seconds`; every request's last event carries a new identifier, polled with LookupPerson from its ack.
// Runs after the correctness checks: its synthetic persons are not part of the generator's truth.
Obj Bench::SteadyFreshness() {
  Obj o;
  const int64_t rate = f_.Int("steady-rate", 5000), seconds = f_.Int("steady-seconds", 60);
  const int64_t per_req = 100, nreq = rate * seconds / per_req;
  const double req_per_s = static_cast<double>(rate) / per_req;
  std::vector<Clock::time_point> ack(static_cast<size_t>(nreq)), vis(static_cast<size_t>(nreq));
  std::vector<char> acked(static_cast<size_t>(nreq), 0), seen(static_cast<size_t>(nreq), 0);
  std::mutex mu;
  std::vector<int64_t> pending;
  std::atomic<bool> done{false};
  std::string error;
  auto probe = [](int64_t q) { return "steady-probe-" + std::to_string(q); };
  const auto t0 = Clock::now();
  const auto occurred =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto sender = [&](int64_t first, int64_t step) {
    auto stub = v1::IngestService::NewStub(NewChannel(2000));
    for (int64_t q = first; q < nreq; q += step) {
      std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(1e6 * q / req_per_s)));
      v1::IngestEventsRequest req;
      for (int64_t i = 0; i < per_req; ++i) {
        const int64_t k = q * per_req + i;
        auto* e = req.add_events();
        e->set_event_id("steady-" + std::to_string(k));
        e->mutable_occurred_at()->set_seconds(occurred + k / 1000);
        e->set_event_name("page_view");
        e->set_event_type("product");
        e->set_source("steady");
        auto* m = e->add_persons();
        m->set_role("visitor");
        auto* a = m->add_identifiers();  // every third event is a new person; the others re-sight it
        a->set_type("email");
        a->set_value("s" + std::to_string(k / 3) + "@steady.example");
        auto* b = m->add_identifiers();
        b->set_type("anonymous_id");
        b->set_value(i == per_req - 1 ? probe(q) : "sa" + std::to_string(k));
      }
      v1::IngestEventsResponse resp;
      grpc::ClientContext c;
      c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto st = stub->IngestEvents(&c, req, &resp);
      std::lock_guard<std::mutex> l(mu);
      if (!st.ok()) {
        error = "IngestEvents: " + st.error_message();
        continue;
      }
      ack[static_cast<size_t>(q)] = Clock::now();
      acked[static_cast<size_t>(q)] = 1;
      pending.push_back(q);
    }
  };
  std::thread poller([&] {
    auto stub = v1::QueryService::NewStub(NewChannel(2000));
    while (!done.load()) {
      std::vector<int64_t> snap;
      {
        std::lock_guard<std::mutex> l(mu);
        snap = pending;
      }
      for (int64_t q : snap) {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        v1::LookupPersonRequest r;
        r.set_identifier_type("anonymous_id");
        r.set_identifier_value(probe(q));
        v1::Person p;
        if (stub->LookupPerson(&c, r, &p).ok() && !p.person_id().empty()) {
          std::lock_guard<std::mutex> l(mu);
          vis[static_cast<size_t>(q)] = Clock::now();
          seen[static_cast<size_t>(q)] = 1;
          pending.erase(std::remove(pending.begin(), pending.end(), q), pending.end());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  std::thread s1(sender, 0, 2), s2(sender, 1, 2);
  s1.join();
  s2.join();
  const double send_s = Secs(t0, Clock::now());
  for (int i = 0; i < 150000; ++i) {  // at most ~300 s for the backlog
    {
      std::lock_guard<std::mutex> l(mu);
      if (pending.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  done = true;
  poller.join();
  std::vector<double> lat;
  int64_t acked_n = 0;
  for (size_t q = 0; q < ack.size(); ++q) {
    acked_n += acked[q];
    if (seen[q]) lat.push_back(Secs(ack[q], vis[q]) * 1000);
  }
  o.I("offered_events_per_s", rate).I("seconds", seconds).I("requests", nreq).I("requests_acked", acked_n);
  o.D("achieved_events_per_s", static_cast<double>(acked_n * per_req) / send_s);
  o.I("probes_visible", static_cast<int64_t>(lat.size()));
  o.D("p50_ms", Pct(lat, 0.5)).D("p99_ms", Pct(lat, 0.99)).D("max_ms", Pct(lat, 1.0));
  if (!error.empty()) o.S("error", error);
  return o;
}

Obj Bench::Correctness(const std::string& label) {
  Obj o;
  pqxx::connection c(f_.Get("db"));
  pqxx::work tx(c);
  auto score = [&](const char* table, const char* idcol, const std::unordered_map<std::string, int64_t>& truth,
                   const char* kind) {
    Obj k;
    std::unordered_map<std::string, int64_t> id_to_truth;  // resolved id -> truth entity
    std::unordered_map<int64_t, std::string> truth_to_id;  // truth entity -> resolved id
    int64_t rows = 0, extra = 0, wrong_merge = 0, split = 0;
    std::unordered_set<std::string> present;
    auto r = tx.exec(std::string("SELECT identifier_type, identifier_value, ") + idcol + " FROM " + table);
    for (const auto& row : r) {
      ++rows;
      const std::string key = IdKey(row[0].c_str(), row[1].c_str());
      const std::string id = row[2].c_str();
      auto t = truth.find(key);
      if (t == truth.end()) {
        ++extra;
        continue;
      }
      present.insert(key);
      auto [it, fresh] = id_to_truth.emplace(id, t->second);
      if (!fresh && it->second != t->second) ++wrong_merge;
      auto [it2, fresh2] = truth_to_id.emplace(t->second, id);
      if (!fresh2 && it2->second != id) ++split;
    }
    std::unordered_set<int64_t> truth_entities;
    for (auto& [key, e] : truth) truth_entities.insert(e);
    const int64_t missing = static_cast<int64_t>(truth.size() - present.size());
    const bool exact =
        extra == 0 && wrong_merge == 0 && split == 0 && missing == 0 && id_to_truth.size() == truth_entities.size();
    k.I("identifiers_expected", static_cast<int64_t>(truth.size())).I("identifiers_resolved", rows);
    k.I("entities_expected", static_cast<int64_t>(truth_entities.size()));
    k.I("entities_resolved", static_cast<int64_t>(id_to_truth.size()));
    k.I("missing", missing).I("unexpected", extra).I("wrongly_merged", wrong_merge).I("split", split);
    k.B("exact", exact);
    if (!exact) {
      exact_ = false;
      failures_.push_back(label + ": " + kind + " partition differs from truth");
    }
    return k;
  };
  o.Set("persons", score("resolved_person_identifiers", "person_id", w_.person_truth, "person").Str(4));
  o.Set("groups", score("resolved_group_identifiers", "group_id", w_.group_truth, "group").Str(4));
  return o;
}

Obj Bench::Queries() {
  Obj o;
  // Sample persons and their ids (via LookupPerson on the work email).
  struct S {
    GenIdentifier id;
    std::string person_id;
  };
  std::vector<S> sample;
  const int64_t want = std::min<int64_t>(1000, w_.persons);
  for (int64_t i = 0; i < want; ++i) {
    const int64_t p = (i * 7919) % w_.persons;
    GenIdentifier email;
    for (const auto& id : w_.person_ids[static_cast<size_t>(p)])
      if (id.type == "email") {
        email = id;
        break;
      }
    grpc::ClientContext c;
    v1::LookupPersonRequest r;
    r.set_identifier_type(email.type);
    r.set_identifier_value(email.norm);
    v1::Person person;
    auto st = query_->LookupPerson(&c, r, &person);
    if (!st.ok()) {
      o.S("error", "LookupPerson: " + st.error_message());
      return o;
    }
    sample.push_back({email, person.person_id()});
  }
  const int threads = static_cast<int>(f_.Int("query-threads", 4));
  const double secs = static_cast<double>(f_.Int("query-seconds", 5));
  // --query-ingest-rate=N: ingest N new persons' events per second (requests of 50) while the queries run, so
  // that read capacity is measured under write load (docs/SCALING.md: primary alone vs primary + standby).
  const int64_t ingest_rate = f_.Int("query-ingest-rate", 0);
  std::atomic<bool> ingest_stop{false};
  std::atomic<int64_t> ingested{0}, ingest_errors{0};
  std::thread ingest_thread;
  if (ingest_rate > 0) {
    ingest_thread = std::thread([&] {
      auto stub = v1::IngestService::NewStub(NewChannel(2999));
      const std::string tag = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
      const auto t0 = Clock::now();
      for (int64_t n = 0; !ingest_stop;) {
        const double due = static_cast<double>(n) / static_cast<double>(ingest_rate);
        if (Secs(t0, Clock::now()) < due) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        v1::IngestEventsRequest req;
        for (int k = 0; k < 50; ++k, ++n) {
          auto* e = req.add_events();
          e->set_event_id("qload-" + tag + "-" + std::to_string(n));
          e->mutable_occurred_at()->set_seconds(1714521600 + n % 86400);
          e->set_event_name("page");
          e->set_event_type("page");
          e->set_source("load");
          auto* m = e->add_persons();
          m->set_role("visitor");
          auto* id = m->add_identifiers();
          id->set_type("email");
          id->set_value("load" + std::to_string(n) + "-" + tag + "@load.example");
        }
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        v1::IngestEventsResponse resp;
        if (stub->IngestEvents(&c, req, &resp).ok())
          ingested += resp.accepted();
        else
          ++ingest_errors;
      }
    });
  }
  std::atomic<int64_t> from_replica{0};
  const auto queries_t0 = Clock::now();
  for (const std::string kind : {"LookupPerson", "GetPerson", "ListPersonTimeline"}) {
    std::vector<std::vector<double>> lat(static_cast<size_t>(threads));
    std::atomic<int64_t> errors{0};
    std::string last_error;
    std::mutex mu;
    std::vector<std::thread> th;
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) {
      th.emplace_back([&, t] {
        auto ch = NewChannel(3000 + t);
        auto stub = v1::QueryService::NewStub(ch);
        size_t k = static_cast<size_t>(t) * 131;
        for (int64_t i = 0; i < 100000000 && Secs(t0, Clock::now()) < secs; ++i, k += 17) {
          const S& s = sample[k % sample.size()];
          grpc::ClientContext c;
          c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
          grpc::Status st;
          const auto a = Clock::now();
          if (kind == "LookupPerson") {
            v1::LookupPersonRequest r;
            r.set_identifier_type(s.id.type);
            r.set_identifier_value(s.id.norm);
            v1::Person p;
            st = stub->LookupPerson(&c, r, &p);
          } else if (kind == "GetPerson") {
            v1::GetPersonRequest r;
            r.set_person_id(s.person_id);
            v1::Person p;
            st = stub->GetPerson(&c, r, &p);
          } else {
            v1::ListPersonTimelineRequest r;
            r.set_person_id(s.person_id);
            r.set_page_size(50);
            v1::TimelineResponse p;
            st = stub->ListPersonTimeline(&c, r, &p);
          }
          lat[static_cast<size_t>(t)].push_back(Secs(a, Clock::now()) * 1000);
          if (auto it = c.GetServerInitialMetadata().find("x-nexus-read-from");
              it != c.GetServerInitialMetadata().end() && it->second.starts_with("replica"))
            ++from_replica;
          if (!st.ok()) {
            ++errors;
            std::lock_guard<std::mutex> l(mu);
            last_error = st.error_message();
          }
        }
      });
    }
    for (auto& t : th) t.join();
    const double el = Secs(t0, Clock::now());
    std::vector<double> all;
    for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
    Obj k;
    k.I("calls", static_cast<int64_t>(all.size())).D("per_s", static_cast<double>(all.size()) / el);
    k.D("p50_ms", Pct(all, 0.5)).D("p99_ms", Pct(all, 0.99)).I("errors", errors.load());
    if (!last_error.empty()) k.S("last_error", last_error);
    o.Set(kind, k.Str(4));
  }
  const double query_wall = Secs(queries_t0, Clock::now());
  ingest_stop = true;
  if (ingest_thread.joinable()) ingest_thread.join();
  o.I("threads", threads).D("seconds_each", secs).I("sample_persons", static_cast<int64_t>(sample.size()));
  o.I("calls_from_replica", from_replica.load());
  if (ingest_rate > 0) {
    o.I("ingest_rate_target", ingest_rate).D("ingest_rate_achieved", static_cast<double>(ingested.load()) / query_wall);
    o.I("ingest_errors", ingest_errors.load());
  }
  return o;
}

Obj Bench::Rebuild() {
  Obj o;
  std::vector<double> wall, server;
  const int repeats = static_cast<int>(f_.Int("rebuild-repeats", f_.Int("repeats", 3)));
  for (int i = 0; i < repeats; ++i) {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(2));
    v1::RebuildResponse r;
    v1::RebuildRequest req;
    req.set_wait(true);  // the rebuild runs in the background; this call returns when it has finished
    const auto t0 = Clock::now();
    auto st = admin_->Rebuild(&c, req, &r);
    if (!st.ok()) {
      o.S("error", "Rebuild: " + st.error_message());
      return o;
    }
    wall.push_back(Secs(t0, Clock::now()));
    server.push_back(r.seconds());
    o.I("persons", r.persons()).I("groups", r.groups()).I("identifiers", r.identifiers());
  }
  std::vector<std::string> ws;
  for (double x : wall) ws.push_back(N(x));
  o.D("seconds_median", Median(wall)).D("server_seconds_median", Median(server)).Set("seconds_all", Arr(ws));
  return o;
}

Obj Bench::SqlBaseline() {
  // The approach of the package we replace: min-label propagation over identifier pairs sharing an edge_id,
  // one UPDATE .. FROM (join over the edges) per round, until a round changes nothing.
  Obj o;
  std::vector<double> times;
  const int repeats = static_cast<int>(f_.Int("baseline-repeats", f_.Int("repeats", 3)));
  pqxx::connection c(f_.Get("db"));
  int64_t rounds = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    pqxx::work tx(c);
    const auto t0 = Clock::now();
    tx.exec(
        "CREATE TEMP TABLE lp_node AS SELECT row_number() OVER () AS id, t, v FROM "
        "(SELECT DISTINCT identifier_type AS t, identifier_value AS v FROM person_identifiers "
        "WHERE NOT is_blocked) s");
    tx.exec("CREATE UNIQUE INDEX ON lp_node (t, v)");
    tx.exec("ANALYZE lp_node");
    tx.exec(
        "CREATE TEMP TABLE lp_m AS SELECT DISTINCT pi.edge_id, n.id FROM person_identifiers pi "
        "JOIN lp_node n ON n.t = pi.identifier_type AND n.v = pi.identifier_value WHERE NOT pi.is_blocked");
    tx.exec(
        "CREATE TEMP TABLE lp_edge AS SELECT DISTINCT a.id AS a, b.id AS b FROM lp_m a "
        "JOIN lp_m b ON a.edge_id = b.edge_id AND a.id <> b.id");
    tx.exec("CREATE INDEX ON lp_edge (a)");
    tx.exec("CREATE TEMP TABLE lp_label AS SELECT id, id AS label FROM lp_node");
    tx.exec("CREATE UNIQUE INDEX ON lp_label (id)");
    tx.exec("ANALYZE lp_edge");
    tx.exec("ANALYZE lp_label");
    rounds = 0;
    for (int i = 0; i < 100000; ++i) {
      auto r = tx.exec(
          "UPDATE lp_label l SET label = s.m FROM (SELECT e.a, min(l2.label) AS m FROM lp_edge e "
          "JOIN lp_label l2 ON l2.id = e.b GROUP BY e.a) s WHERE l.id = s.a AND s.m < l.label");
      ++rounds;
      if (r.affected_rows() == 0) break;
    }
    times.push_back(Secs(t0, Clock::now()));
    if (rep == repeats - 1) {
      auto r = tx.exec(
          "SELECT count(*) FILTER (WHERE r.person_id IS NULL), count(*) FILTER (WHERE n.id IS NULL), "
          "count(DISTINCT r.person_id), count(DISTINCT l.label), count(DISTINCT (r.person_id, l.label)), "
          "(SELECT count(*) FROM lp_node) "
          "FROM lp_node n JOIN lp_label l ON l.id = n.id "
          "FULL JOIN resolved_person_identifiers r ON r.identifier_type = n.t AND r.identifier_value = n.v");
      const int64_t only_base = r[0][0].as<int64_t>(), only_nexus = r[0][1].as<int64_t>();
      const int64_t pn = r[0][2].as<int64_t>(), pb = r[0][3].as<int64_t>(), pairs = r[0][4].as<int64_t>();
      const bool same = only_base == 0 && only_nexus == 0 && pn == pb && pb == pairs;
      o.I("identifiers", r[0][5].as<int64_t>()).I("components", pb).I("nexus_persons", pn);
      o.I("only_in_baseline", only_base).I("only_in_nexus", only_nexus).B("same_partition_as_nexus", same);
      if (!same) {
        exact_ = false;
        failures_.push_back("SQL baseline partition differs from nexusd");
      }
    }
    tx.abort();
  }
  std::vector<std::string> ts;
  for (double t : times) ts.push_back(N(t));
  o.I("rounds", rounds).D("seconds_median", Median(times)).Set("seconds_all", Arr(ts));
  return o;
}

Obj Bench::Memory() {
  Obj o;
  const int np = static_cast<int>(f_.Int("nexusd-pid", 0)), pp = static_cast<int>(f_.Int("pg-pid", 0));
  // The run's peak: the stages reset the high-water mark (see Run), so the largest of theirs and this one's.
  if (np > 0) {
    o.D("nexusd_vmhwm_mib", static_cast<double>(std::max(nexusd_peak_kb_, ProcKb(np, "VmHWM"))) / 1024.0);
  }
  if (pp > 0) {
    int64_t sum = 0, maxp = 0, procs = 0;
    DIR* d = opendir("/proc");
    for (dirent* e = d ? readdir(d) : nullptr; e; e = readdir(d)) {
      const int pid = std::atoi(e->d_name);
      if (pid <= 0 || (pid != pp && ParentPid(pid) != pp)) continue;
      const int64_t kb = ProcKb(pid, "VmHWM");
      if (kb < 0) continue;
      sum += kb, maxp = std::max(maxp, kb), ++procs;
    }
    if (d) closedir(d);
    o.D("postgres_vmhwm_sum_mib", static_cast<double>(sum) / 1024.0);
    o.D("postgres_vmhwm_max_process_mib", static_cast<double>(maxp) / 1024.0).I("postgres_processes", procs);
  }
  return o;
}

int Bench::Run() {
  Obj out;
  const auto tg = Clock::now();
  nexus::bench::GenOptions go;
  go.persons = nexus::bench::PersonsForIdentifiers(f_.Int("identifiers", 100000));
  go.seed = static_cast<uint64_t>(f_.Int("seed", 42));
  go.fresh_requests = f_.Int("fresh-requests", 100);
  go.fresh_batch = f_.Int("fresh-batch", 20);
  w_ = nexus::bench::Generate(go);
  malloc_trim(0);  // what generating took beyond the world itself goes back to the machine
  Obj machine;
  machine.I("nproc", static_cast<int64_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  machine.S("memory", FirstMatch("/proc/meminfo", "MemTotal"));
  machine.S("cpu_model", FirstMatch("/proc/cpuinfo", "model name"));
  {
    std::ifstream la("/proc/loadavg");
    std::string l;
    std::getline(la, l);
    machine.S("loadavg_at_start", l);
  }
  char date[32];
  time_t now = time(nullptr);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  out.S("date", date).S("size", f_.Get("size-name", "custom")).I("seed", static_cast<int64_t>(go.seed));
  int64_t distinct = 0;
  for (auto c : w_.resent) distinct += c ? 0 : 1;
  Obj sizes;
  sizes.I("persons_true", w_.persons).I("person_identifiers_true", static_cast<int64_t>(w_.person_truth.size()));
  sizes.I("groups_true", w_.groups_used).I("group_identifiers_true", static_cast<int64_t>(w_.group_truth.size()));
  sizes.I("events_sent", static_cast<int64_t>(w_.events.size())).I("events_distinct", distinct);
  sizes.I("fresh_requests", static_cast<int64_t>(w_.fresh_requests.size()));
  sizes.D("generate_s", Secs(tg, Clock::now()));
  out.Set("sizes", sizes.Str(2));
  std::cerr << "[bench] world: " << sizes.Str() << "\n";
  // nexusd's peak RSS per stage: its high-water mark is reset before each stage (clear_refs "5") and read after,
  // so the run says which stage sets the peak; nexusd_peak_kb_ keeps the run's peak for the memory stage.
  const int np = static_cast<int>(f_.Int("nexusd-pid", 0));
  auto reset_peak = [&] {
    if (np <= 0) return;
    nexusd_peak_kb_ = std::max(nexusd_peak_kb_, ProcKb(np, "VmHWM"));
    std::ofstream("/proc/" + std::to_string(np) + "/clear_refs") << "5";
  };
  auto stage = [&](const std::string& name, auto fn) {
    std::cerr << "[bench] " << name << " ...\n";
    reset_peak();
    const auto t0 = Clock::now();
    Obj r;
    try {
      r = fn();
    } catch (const std::exception& e) {
      r.S("error", e.what());
    }
    r.D("stage_wall_s", Secs(t0, Clock::now()));
    if (const int64_t kb = np > 0 ? ProcKb(np, "VmHWM") : -1; kb >= 0) {
      r.D("nexusd_stage_peak_rss_mib", static_cast<double>(kb) / 1024.0);
      nexusd_peak_kb_ = std::max(nexusd_peak_kb_, kb);
    }
    std::cerr << "[bench] " << name << ": " << r.Str() << "\n";
    out.Set(name, r.Str(2));
    for (auto& [k, v] : r.kv)
      if (k == "error") failures_.push_back(name + ": " + v);
    // What is measured so far, so a run stopped part way (a long 10m run) still leaves its figures.
    if (!f_.Get("out").empty()) std::ofstream(f_.Get("out")) << Obj(out).B("partial", true).Str() << "\n";
  };
  // --stages=a,b,...: only these stages (default: all), e.g. bench/replica-bench.sh runs ingest once, then
  // queries against differently configured servers over the same data.
  const std::string only = f_.Get("stages");
  auto want = [&](const std::string& name) {
    return only.empty() || ("," + only + ",").find("," + name + ",") != std::string::npos;
  };
  auto maybe = [&](const std::string& name, const std::function<Obj()>& fn) {
    if (want(name)) stage(name, fn);
  };
  if (!f_.Get("copy-db").empty()) maybe("copy_baseline", [&] { return CopyBaseline(); });
  // --hold-back: bench/run's log-rebuild flow (10m) calls the bench twice, around a rebuild and a restart.
  const bool split = f_.Int("hold-back", 0) > 0;
  if (split) maybe("log_ingest", [&] { return LogIngest(); });
  if (!split) maybe("ingest", [&] { return Ingest(); });
  if (split) maybe("increments", [&] { return Increments(); });
  // No later stage sends the main stream again: give its memory back (at 10M identifiers, gigabytes that the
  // rebuild's peak would otherwise share the machine with).
  std::vector<GenEvent>().swap(w_.events);
  malloc_trim(0);
  maybe("freshness", [&] { return Freshness(); });
  // (Not when only stages without a resolver run: log_ingest runs against nexusd --resolver=false.)
  if (want("correctness") || want("queries") || want("rebuild")) WaitCaughtUp(3600);
  maybe("correctness", [&] { return Correctness("incremental"); });
  maybe("queries", [&] { return Queries(); });
  maybe("rebuild", [&] { return Rebuild(); });
  maybe("correctness_after_rebuild", [&] { return Correctness("after rebuild"); });
  maybe("sql_baseline", [&] { return SqlBaseline(); });
  if (f_.Int("steady-seconds", 60) > 0) maybe("steady_freshness", [&] { return SteadyFreshness(); });
  maybe("memory", [&] { return Memory(); });
  {
    std::ifstream la("/proc/loadavg");
    std::string l;
    std::getline(la, l);
    machine.S("loadavg_at_end", l);
  }
  out.Set("machine", machine.Str(2));
  std::vector<std::string> fl;
  for (auto& f : failures_) fl.push_back(Q(f));
  out.B("correct", exact_).Set("problems", Arr(fl));
  const std::string json = out.Str() + "\n";
  if (!f_.Get("out").empty()) {
    std::ofstream of(f_.Get("out"));
    of << json;
  } else {
    std::cout << json;
  }
  return exact_ ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: nexus_bench run|gen --identifiers=N [--grpc=.. --http=.. --db=.. --copy-db=.. ...]\n";
    return 2;
  }
  Flags f;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      std::cerr << "unexpected argument " << a << "\n";
      return 2;
    }
    auto eq = a.find('=');
    f.m[a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2)] =
        eq == std::string::npos ? "true" : a.substr(eq + 1);
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "gen") {
      nexus::bench::GenOptions go;
      go.persons = nexus::bench::PersonsForIdentifiers(f.Int("identifiers", 100000));
      go.seed = static_cast<uint64_t>(f.Int("seed", 42));
      const auto t0 = Clock::now();
      World w = nexus::bench::Generate(go);
      int64_t merges_late = 0;
      for (auto c : w.resent) merges_late += c;
      std::cout << "persons=" << w.persons << " person_identifiers=" << w.person_truth.size()
                << " groups=" << w.groups_used << " events=" << w.events.size() << " resent=" << merges_late
                << " seconds=" << Secs(t0, Clock::now()) << "\n";
      return 0;
    }
    if (cmd == "run") return Bench(f).Run();
  } catch (const std::exception& e) {
    std::cerr << "nexus_bench: " << e.what() << "\n";
    return 2;
  }
  std::cerr << "unknown command " << cmd << "\n";
  return 2;
}
