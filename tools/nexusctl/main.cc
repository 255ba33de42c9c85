// nexusctl: the command-line client of nexusd (gRPC). See `nexusctl --help`.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nexus/v1/ingest.grpc.pb.h"
#include "nexus/v1/query.grpc.pb.h"
#include "tools/nexusctl/import.h"
#include "tools/nexusctl/mapping.h"
#include "tools/nexusctl/render.h"

namespace nexus::ctl {
namespace {

constexpr const char* kUsage = R"(nexusctl: command-line client of nexusd (gRPC)

usage: nexusctl [global options] COMMAND [options] [arguments]

commands:
  import FILE                   stream a CSV or JSON Lines file into nexusd (see "import options")
  lookup [--group] TYPE VALUE   the person (group) that has an identifier: lookup email jane@acme.io
  get ID                        a person (per_...) or group (grp_...) by id
  profile ID | TYPE VALUE       person/group with memberships and event count (--group for a group identifier)
  search QUERY                  persons and groups by a fragment of an identifier or a name
                                  --kind person|group|all (all)  --limit N (20)  --page-token T (with --kind)
  timeline ID | TYPE VALUE      activity, newest first   --limit N (50)  --type T  --source S
                                  --after TIME  --before TIME  --participants  --members (groups: members' activity)
                                  --page-token T  --group (TYPE VALUE is a group identifier)
  members ID | [--group] TYPE VALUE
                                a person's companies, or a group's members, with roles   --limit N (100)
  explain [--group] TYPE=VALUE TYPE=VALUE
                                why two identifiers are (not) one entity: the chain of events that links them
  history ID | TYPE VALUE       when the entity was created and what merged into it
  event EVENT_ID                one event with all its participants and roles

global options (anywhere on the line):
  --server HOST:PORT            nexusd's gRPC address (env NEXUS_SERVER; default 127.0.0.1:50051)
  --api-key KEY                 sent as 'authorization: Bearer KEY' (prefer env NEXUS_API_KEY: arguments are
                                visible to other users in ps); never printed
  --tls                         TLS with the system's root certificates
  --tls-ca FILE                 TLS, trusting this CA (PEM) for the server's certificate
  --tls-cert FILE --tls-key FILE  client certificate and key (PEM) for servers that require mTLS
  --tls-server-name NAME        the name to verify in the server's certificate (default: HOST)
  --timeout SECONDS             deadline of each query call (30)
  --json                        print the answer as protobuf JSON (proto field names) instead of tables

import options (or the same options without dashes, one per line, in a --mapping FILE; '#' comments):
  --source NAME | --source-column COLUMN      the source system every event is attributed to
  --person-id TYPE=COLUMN       a person identifier column (repeat: --person-id email=Email --person-id phone=Phone)
  --group-id TYPE=COLUMN        a group identifier column (domain=Website)
  --person-trait NAME=COLUMN    a person trait (repeat); --group-trait NAME=COLUMN likewise
  --time-column COLUMN          when the row happened (RFC 3339, 2026-11-02, '2026-11-02 10:00:00' UTC, Unix s/ms);
                                without it every row gets --default-time TIME (default: the import's start)
  --event-name NAME | --event-name-column COLUMN    (record_imported)
  --event-type TYPE | --event-type-column COLUMN    (import)
  --event-id-column COLUMN      use the file's own ids; default: imp_ + a hash of the source and the row's
                                content, so importing the same row again writes nothing
  --description-column COLUMN   --person-role ROLE  --group-role ROLE
  --value-column COLUMN --value-unit UNIT   the event's number (an amount) and its unit (USD)
  --membership-role ROLE | --membership-role-column COLUMN   a row with person and group identifiers makes the
                                person a member of the group; --no-memberships turns that off
  --format csv|jsonl            default from the file name (.csv, .tsv, .jsonl, .ndjson, .json)
  --delimiter CHAR|tab  --no-header (columns are then named 1, 2, ...)   JSON: dotted names reach nested keys
  --batch-size N (500, at most 1000)  --max-errors N (1000; -1 no limit)  --quiet  --progress-interval SECONDS (5)
  --checkpoint FILE (FILE.nexusctl-checkpoint)   --restart (ignore an existing checkpoint)
  Progress goes to stderr (a live line on a terminal, a line every 5 s otherwise), the summary to stdout
  (--json: one JSON object). After each acknowledged batch the checkpoint records the position; Ctrl-C stops
  cleanly and running the same command again resumes there. A finished import removes its checkpoint.

exit codes:
  0  success            1  server or other error          2  usage: bad option, mapping, file or argument
  3  import finished, some rows rejected (listed in the summary)
  4  import stopped: more rejected rows than --max-errors (the checkpoint is kept)
  5  not found          6  server unreachable or deadline exceeded
  7  authentication or permission denied                  130  interrupted (import: run again to resume)
)";

struct OptSpec {
  bool takes_value;
};

const std::map<std::string, OptSpec>& GlobalOpts() {
  static const std::map<std::string, OptSpec> k{
      {"server", {true}},  {"api-key", {true}},         {"tls", {false}},    {"tls-ca", {true}}, {"tls-cert", {true}},
      {"tls-key", {true}}, {"tls-server-name", {true}}, {"timeout", {true}}, {"json", {false}},  {"help", {false}}};
  return k;
}

std::map<std::string, OptSpec> CommandOpts(const std::string& cmd) {
  std::map<std::string, OptSpec> k;
  if (cmd == "import") {
    for (const auto& n : MappingOptionNames()) k[n] = {n != "no-header" && n != "no-memberships"};
    for (const char* n : {"mapping", "batch-size", "max-errors", "checkpoint", "stop-after", "progress-interval"}) {
      k[n] = {true};
    }
    k["restart"] = {false};
    k["quiet"] = {false};
  } else if (cmd == "search") {
    k = {{"kind", {true}}, {"limit", {true}}, {"page-token", {true}}};
  } else if (cmd == "timeline") {
    k = {{"group", {false}}, {"limit", {true}},  {"page-token", {true}}, {"type", {true}},         {"source", {true}},
         {"after", {true}},  {"before", {true}}, {"members", {false}},   {"participants", {false}}};
  } else if (cmd == "members") {
    k = {{"group", {false}}, {"limit", {true}}, {"page-token", {true}}};
  } else if (cmd == "lookup" || cmd == "profile" || cmd == "explain" || cmd == "history") {
    k = {{"group", {false}}};
  }
  return k;
}

struct Args {
  std::string command;
  std::vector<std::pair<std::string, std::string>> opts;  // in order (mapping options may repeat)
  std::vector<std::string> positional;

  bool Has(const std::string& n) const {
    return std::any_of(opts.begin(), opts.end(), [&](const auto& o) { return o.first == n; });
  }
  std::string Get(const std::string& n, const std::string& def = "") const {
    std::string v = def;
    for (const auto& [k, val] : opts) {
      if (k == n) v = val;
    }
    return v;
  }
};

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

Args Parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> raw(argv + 1, argv + argc);
  // The command is the first positional argument; options before it are global.
  std::map<std::string, OptSpec> spec = GlobalOpts();
  bool only_positional = false;
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string& s = raw[i];
    if (only_positional || s.size() < 2 || s[0] != '-' || s == "-") {
      if (a.command.empty() && !only_positional) {
        a.command = s;
        for (const auto& [k, v] : CommandOpts(s)) spec[k] = v;
      } else {
        a.positional.push_back(s);
      }
      continue;
    }
    if (s == "--") {
      only_positional = true;
      continue;
    }
    if (s == "-h") {
      a.opts.emplace_back("help", "");
      continue;
    }
    if (s.rfind("--", 0) != 0) throw UsageError("unknown option '" + s + "' (options start with --)");
    std::string name = s.substr(2), value;
    const auto eq = name.find('=');
    const bool has_eq = eq != std::string::npos;
    if (has_eq) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto it = spec.find(name);
    if (it == spec.end()) {
      throw UsageError("unknown option '--" + name + "'" + (a.command.empty() ? "" : " for '" + a.command + "'") +
                       " (see nexusctl --help)");
    }
    if (it->second.takes_value && !has_eq) {
      if (i + 1 >= raw.size()) throw UsageError("--" + name + " needs a value");
      value = raw[++i];
    } else if (!it->second.takes_value && has_eq) {
      throw UsageError("--" + name + " takes no value");
    }
    a.opts.emplace_back(name, value);
  }
  return a;
}

int64_t IntOpt(const Args& a, const std::string& name, int64_t def, int64_t min, int64_t max) {
  if (!a.Has(name)) return def;
  const std::string v = a.Get(name);
  try {
    size_t used = 0;
    const int64_t n = std::stoll(v, &used);
    if (used == v.size() && n >= min && n <= max) return n;
  } catch (const std::exception&) {
  }
  throw UsageError("--" + name + ": '" + v + "' is not a whole number between " + std::to_string(min) + " and " +
                   std::to_string(max));
}

std::string ReadPem(const std::string& option, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UsageError("--" + option + ": cannot read '" + path + "'");
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

class Client {
 public:
  explicit Client(const Args& a) : args_(a) {
    server_ = a.Get("server", std::getenv("NEXUS_SERVER") ? std::getenv("NEXUS_SERVER") : "127.0.0.1:50051");
    if (server_.find(':') == std::string::npos) throw UsageError("--server: '" + server_ + "' is not HOST:PORT");
    api_key_ = a.Get("api-key", std::getenv("NEXUS_API_KEY") ? std::getenv("NEXUS_API_KEY") : "");
    if (api_key_.find_first_of("\r\n") != std::string::npos) throw UsageError("the API key contains a line break");
    timeout_s_ = IntOpt(a, "timeout", 30, 1, 86400);
    std::shared_ptr<grpc::ChannelCredentials> creds;
    grpc::ChannelArguments chan_args;
    const bool tls = a.Has("tls") || a.Has("tls-ca") || a.Has("tls-cert") || a.Has("tls-key");
    if (tls) {
      grpc::SslCredentialsOptions ssl;
      if (a.Has("tls-ca")) ssl.pem_root_certs = ReadPem("tls-ca", a.Get("tls-ca"));
      if (a.Has("tls-cert") != a.Has("tls-key")) throw UsageError("--tls-cert and --tls-key go together");
      if (a.Has("tls-cert")) {
        ssl.pem_cert_chain = ReadPem("tls-cert", a.Get("tls-cert"));
        ssl.pem_private_key = ReadPem("tls-key", a.Get("tls-key"));
      }
      creds = grpc::SslCredentials(ssl);
      if (a.Has("tls-server-name")) chan_args.SetSslTargetNameOverride(a.Get("tls-server-name"));
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    chan_args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(server_, creds, chan_args);
    query_ = v1::QueryService::NewStub(channel_);
    ingest_ = v1::IngestService::NewStub(channel_);
  }

  std::unique_ptr<grpc::ClientContext> Context(bool unary) const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (unary) ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(timeout_s_));
    if (!api_key_.empty()) ctx->AddMetadata("authorization", "Bearer " + api_key_);
    return ctx;
  }

  /// Prints a failed call: the RPC, the code and the server's message (which never holds the key).
  int Error(const std::string& rpc, const grpc::Status& st) const {
    std::string hint;
    switch (st.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        hint = " (is nexusd running at " + server_ + "? set --server HOST:PORT)";
        break;
      case grpc::StatusCode::UNAUTHENTICATED:
        hint = api_key_.empty() ? " (no API key given: --api-key or env NEXUS_API_KEY)" : " (check the API key)";
        break;
      case grpc::StatusCode::UNIMPLEMENTED:
        hint = " (this nexusd is older than nexusctl and does not have " + rpc + ")";
        break;
      default:
        break;
    }
    std::string msg = st.error_message();
    if (msg.empty()) msg = "(no message)";
    std::cerr << "nexusctl: " << rpc << ": " << StatusCodeName(st.error_code()) << ": " << msg << hint << "\n";
    return ExitCodeFor(st);
  }

  v1::QueryService::Stub& query() { return *query_; }
  v1::IngestService::Stub& ingest() { return *ingest_; }

 private:
  const Args& args_;
  std::string server_, api_key_;
  int64_t timeout_s_ = 30;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::QueryService::Stub> query_;
  std::unique_ptr<v1::IngestService::Stub> ingest_;
};

void Need(const Args& a, size_t min, size_t max, const std::string& usage) {
  if (a.positional.size() < min || a.positional.size() > max) throw UsageError("usage: nexusctl " + usage);
}

void Print(const Args& a, const google::protobuf::Message& m, const std::string& table) {
  std::cout << (a.Has("json") ? ToJson(m) : table);
}

/// An entity named by id (per_/grp_) or by an identifier (TYPE VALUE or TYPE=VALUE; --group for groups).
struct Entity {
  bool group = false;
  std::string id;
};

bool ParseIdentifier(const std::string& s, v1::Identifier* out) {
  const auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size()) return false;
  out->set_type(s.substr(0, eq));
  out->set_value(s.substr(eq + 1));
  return true;
}

int ResolveEntity(Client& c, const Args& a, const std::string& usage, Entity* out) {
  Need(a, 1, 2, usage);
  v1::Identifier id;
  if (a.positional.size() == 1) {
    const std::string& s = a.positional[0];
    if (s.rfind("per_", 0) == 0 || s.rfind("grp_", 0) == 0) {
      out->group = s.rfind("grp_", 0) == 0;
      out->id = s;
      return kExitOk;
    }
    if (!ParseIdentifier(s, &id)) {
      throw UsageError("'" + s + "' is neither an id (per_..., grp_...) nor TYPE=VALUE; usage: nexusctl " + usage);
    }
  } else {
    id.set_type(a.positional[0]);
    id.set_value(a.positional[1]);
  }
  out->group = a.Has("group");
  auto ctx = c.Context(true);
  if (out->group) {
    v1::LookupGroupRequest req;
    req.set_identifier_type(id.type());
    req.set_identifier_value(id.value());
    v1::Group g;
    auto st = c.query().LookupGroup(ctx.get(), req, &g);
    if (!st.ok()) return c.Error("LookupGroup", st);
    out->id = g.group_id();
  } else {
    v1::LookupPersonRequest req;
    req.set_identifier_type(id.type());
    req.set_identifier_value(id.value());
    v1::Person p;
    auto st = c.query().LookupPerson(ctx.get(), req, &p);
    if (!st.ok()) return c.Error("LookupPerson", st);
    out->id = p.person_id();
  }
  return kExitOk;
}

int CmdImport(Client& c, const Args& a) {
  Need(a, 1, 1, "import FILE [mapping options]   (FILE '-' reads standard input)");
  ImportOptions o;
  o.path = a.positional[0];
  if (a.Has("mapping")) {
    const std::string path = a.Get("mapping");
    std::ifstream f(path);
    if (!f) throw UsageError("--mapping: cannot read '" + path + "'");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (auto e = ParseMappingFile(text, &o.mapping); !e.empty()) throw UsageError("--mapping " + path + ": " + e);
  }
  for (const auto& [k, v] : a.opts) {
    if (!IsMappingOption(k)) continue;
    if (auto e = ApplyMappingOption(&o.mapping, k, v); !e.empty()) throw UsageError(e);
  }
  o.batch_size = static_cast<int>(IntOpt(a, "batch-size", 500, 1, 1000));
  o.max_errors = IntOpt(a, "max-errors", 1000, -1, INT64_MAX);
  o.checkpoint_path = a.Get("checkpoint");
  o.restart = a.Has("restart");
  o.stop_after_batches = static_cast<int>(IntOpt(a, "stop-after", 0, 0, INT32_MAX));
  o.progress_interval_s = static_cast<double>(IntOpt(a, "progress-interval", 5, 0, 86400));
  o.json = a.Has("json");
  o.quiet = a.Has("quiet");
  InstallInterruptHandler();
  return RunImport(o, c.ingest(), [&c](bool unary) { return c.Context(unary); });
}

int CmdLookup(Client& c, const Args& a) {
  Need(a, 1, 2, "lookup [--group] TYPE VALUE");
  v1::Identifier id;
  if (a.positional.size() == 1) {
    if (!ParseIdentifier(a.positional[0], &id)) throw UsageError("usage: nexusctl lookup [--group] TYPE VALUE");
  } else {
    id.set_type(a.positional[0]);
    id.set_value(a.positional[1]);
  }
  auto ctx = c.Context(true);
  if (a.Has("group")) {
    v1::LookupGroupRequest req;
    req.set_identifier_type(id.type());
    req.set_identifier_value(id.value());
    v1::Group g;
    auto st = c.query().LookupGroup(ctx.get(), req, &g);
    if (!st.ok()) return c.Error("LookupGroup", st);
    Print(a, g, RenderGroup(g));
  } else {
    v1::LookupPersonRequest req;
    req.set_identifier_type(id.type());
    req.set_identifier_value(id.value());
    v1::Person p;
    auto st = c.query().LookupPerson(ctx.get(), req, &p);
    if (!st.ok()) return c.Error("LookupPerson", st);
    Print(a, p, RenderPerson(p));
  }
  return kExitOk;
}

int CmdGet(Client& c, const Args& a) {
  Need(a, 1, 1, "get ID   (per_... or grp_...)");
  const std::string& id = a.positional[0];
  auto ctx = c.Context(true);
  if (id.rfind("grp_", 0) == 0) {
    v1::GetGroupRequest req;
    req.set_group_id(id);
    v1::Group g;
    auto st = c.query().GetGroup(ctx.get(), req, &g);
    if (!st.ok()) return c.Error("GetGroup", st);
    Print(a, g, RenderGroup(g));
  } else if (id.rfind("per_", 0) == 0) {
    v1::GetPersonRequest req;
    req.set_person_id(id);
    v1::Person p;
    auto st = c.query().GetPerson(ctx.get(), req, &p);
    if (!st.ok()) return c.Error("GetPerson", st);
    Print(a, p, RenderPerson(p));
  } else {
    throw UsageError("'" + id + "' is not an id: person ids start with per_, group ids with grp_");
  }
  return kExitOk;
}

int CmdProfile(Client& c, const Args& a) {
  Entity e;
  if (int rc = ResolveEntity(c, a, "profile ID | [--group] TYPE VALUE", &e); rc != kExitOk) return rc;
  auto ctx = c.Context(true);
  if (e.group) {
    v1::GetGroupRequest req;
    req.set_group_id(e.id);
    v1::GroupProfile p;
    auto st = c.query().GetGroupProfile(ctx.get(), req, &p);
    if (!st.ok()) return c.Error("GetGroupProfile", st);
    Print(a, p, RenderGroupProfile(p));
  } else {
    v1::GetPersonRequest req;
    req.set_person_id(e.id);
    v1::PersonProfile p;
    auto st = c.query().GetPersonProfile(ctx.get(), req, &p);
    if (!st.ok()) return c.Error("GetPersonProfile", st);
    Print(a, p, RenderPersonProfile(p));
  }
  return kExitOk;
}

int CmdSearch(Client& c, const Args& a) {
  Need(a, 1, 1, "search QUERY [--kind person|group|all] [--limit N]");
  const std::string kind = a.Get("kind", "all");
  if (kind != "person" && kind != "group" && kind != "all") throw UsageError("--kind: person, group or all");
  if (a.Has("page-token") && kind == "all") throw UsageError("--page-token needs --kind person or --kind group");
  v1::SearchRequest req;
  req.set_query(a.positional[0]);
  const int limit = static_cast<int>(IntOpt(a, "limit", 20, 1, 500));
  req.set_page_size(limit);
  req.set_page_token(a.Get("page-token"));
  v1::SearchResponse out;
  if (kind != "group") {
    auto ctx = c.Context(true);
    auto st = c.query().SearchPersons(ctx.get(), req, &out);
    if (!st.ok()) return c.Error("SearchPersons", st);
  }
  if (kind != "person") {
    v1::SearchResponse groups;
    auto ctx = c.Context(true);
    auto st = c.query().SearchGroups(ctx.get(), req, &groups);
    if (!st.ok()) return c.Error("SearchGroups", st);
    if (kind == "group") {
      out = groups;
    } else {
      for (const auto& h : groups.hits()) *out.add_hits() = h;
      std::stable_sort(out.mutable_hits()->begin(), out.mutable_hits()->end(),
                       [](const v1::SearchHit& x, const v1::SearchHit& y) { return x.score() > y.score(); });
      while (out.hits_size() > limit) out.mutable_hits()->RemoveLast();
      out.clear_next_page_token();  // two lists' tokens cannot be combined: page with --kind
    }
  }
  Print(a, out, RenderSearch(out));
  return kExitOk;
}

int CmdTimeline(Client& c, const Args& a) {
  Entity e;
  if (int rc = ResolveEntity(c, a, "timeline ID | [--group] TYPE VALUE [--limit N] ...", &e); rc != kExitOk) return rc;
  v1::TimelineFilter filter;
  filter.set_event_type(a.Get("type"));
  filter.set_source(a.Get("source"));
  for (const char* opt : {"after", "before"}) {
    if (!a.Has(opt)) continue;
    auto* ts = std::string(opt) == "after" ? filter.mutable_occurred_after() : filter.mutable_occurred_before();
    if (auto err = ParseTime(a.Get(opt), ts); !err.empty()) throw UsageError(std::string("--") + opt + ": " + err);
  }
  if (a.Has("members") && !e.group) throw UsageError("--members is for group timelines");
  const int64_t limit = IntOpt(a, "limit", 50, 1, 1000000);
  v1::TimelineResponse out;
  std::string token = a.Get("page-token");
  do {
    const int page = static_cast<int>(std::min<int64_t>(500, limit - out.events_size()));
    v1::TimelineResponse resp;
    auto ctx = c.Context(true);
    grpc::Status st;
    if (e.group) {
      v1::ListGroupTimelineRequest req;
      req.set_group_id(e.id);
      req.set_page_size(page);
      req.set_page_token(token);
      *req.mutable_filter() = filter;
      req.set_include_members(a.Has("members"));
      req.set_include_participants(a.Has("participants"));
      st = c.query().ListGroupTimeline(ctx.get(), req, &resp);
      if (!st.ok()) return c.Error("ListGroupTimeline", st);
    } else {
      v1::ListPersonTimelineRequest req;
      req.set_person_id(e.id);
      req.set_page_size(page);
      req.set_page_token(token);
      *req.mutable_filter() = filter;
      req.set_include_participants(a.Has("participants"));
      st = c.query().ListPersonTimeline(ctx.get(), req, &resp);
      if (!st.ok()) return c.Error("ListPersonTimeline", st);
    }
    for (auto& ev : *resp.mutable_events()) *out.add_events() = std::move(ev);
    out.set_resolved_id(resp.resolved_id());
    token = resp.next_page_token();
  } while (!token.empty() && out.events_size() < limit);
  out.set_next_page_token(token);
  Print(a, out, RenderTimeline(out));
  return kExitOk;
}

int CmdMembers(Client& c, const Args& a) {
  Entity e;
  if (int rc = ResolveEntity(c, a, "members ID | [--group] TYPE VALUE [--limit N]", &e); rc != kExitOk) return rc;
  const int64_t limit = IntOpt(a, "limit", 100, 1, 1000000);
  v1::ListMembershipsResponse out;
  std::string token = a.Get("page-token");
  do {
    const int page = static_cast<int>(std::min<int64_t>(500, limit - out.memberships_size()));
    v1::ListMembershipsResponse resp;
    auto ctx = c.Context(true);
    grpc::Status st;
    if (e.group) {
      v1::ListGroupMembersRequest req;
      req.set_group_id(e.id);
      req.set_page_size(page);
      req.set_page_token(token);
      st = c.query().ListGroupMembers(ctx.get(), req, &resp);
    } else {
      v1::ListPersonMembershipsRequest req;
      req.set_person_id(e.id);
      req.set_page_size(page);
      req.set_page_token(token);
      st = c.query().ListPersonMemberships(ctx.get(), req, &resp);
    }
    if (!st.ok()) return c.Error(e.group ? "ListGroupMembers" : "ListPersonMemberships", st);
    for (auto& m : *resp.mutable_memberships()) *out.add_memberships() = std::move(m);
    out.set_resolved_id(resp.resolved_id());
    token = resp.next_page_token();
  } while (!token.empty() && out.memberships_size() < limit);
  out.set_next_page_token(token);
  Print(a, out, RenderMemberships(out));
  return kExitOk;
}

int CmdExplain(Client& c, const Args& a) {
  const std::string usage = "explain [--group] TYPE=VALUE TYPE=VALUE";
  Need(a, 2, 2, usage);
  v1::ExplainLinkRequest req;
  if (!ParseIdentifier(a.positional[0], req.mutable_a()) || !ParseIdentifier(a.positional[1], req.mutable_b())) {
    throw UsageError("usage: nexusctl " + usage + "   (e.g. email=jane@acme.io user_id=u-77)");
  }
  v1::ExplainLinkResponse resp;
  auto ctx = c.Context(true);
  auto st = a.Has("group") ? c.query().ExplainGroupLink(ctx.get(), req, &resp)
                           : c.query().ExplainPersonLink(ctx.get(), req, &resp);
  if (!st.ok()) return c.Error(a.Has("group") ? "ExplainGroupLink" : "ExplainPersonLink", st);
  Print(a, resp, RenderExplain(resp));
  return kExitOk;
}

int CmdHistory(Client& c, const Args& a) {
  Entity e;
  if (int rc = ResolveEntity(c, a, "history ID | [--group] TYPE VALUE", &e); rc != kExitOk) return rc;
  v1::EntityHistory h;
  auto ctx = c.Context(true);
  grpc::Status st;
  if (e.group) {
    v1::GetGroupHistoryRequest req;
    req.set_group_id(e.id);
    st = c.query().GetGroupHistory(ctx.get(), req, &h);
  } else {
    v1::GetPersonHistoryRequest req;
    req.set_person_id(e.id);
    st = c.query().GetPersonHistory(ctx.get(), req, &h);
  }
  if (!st.ok()) return c.Error(e.group ? "GetGroupHistory" : "GetPersonHistory", st);
  Print(a, h, RenderHistory(h));
  return kExitOk;
}

int CmdEvent(Client& c, const Args& a) {
  Need(a, 1, 1, "event EVENT_ID");
  v1::GetEventRequest req;
  req.set_event_id(a.positional[0]);
  v1::EventView ev;
  auto ctx = c.Context(true);
  auto st = c.query().GetEvent(ctx.get(), req, &ev);
  if (!st.ok()) return c.Error("GetEvent", st);
  Print(a, ev, RenderEvent(ev));
  return kExitOk;
}

int Main(int argc, char** argv) {
  Args a;
  try {
    a = Parse(argc, argv);
    if (a.Has("help") || a.command == "help" || a.command.empty()) {
      const bool asked = a.Has("help") || a.command == "help";
      (asked ? std::cout : std::cerr) << kUsage;
      return asked ? kExitOk : kExitUsage;
    }
    static const std::map<std::string, int (*)(Client&, const Args&)> kCommands{
        {"import", CmdImport},   {"lookup", CmdLookup},     {"get", CmdGet},         {"profile", CmdProfile},
        {"search", CmdSearch},   {"timeline", CmdTimeline}, {"explain", CmdExplain}, {"members", CmdMembers},
        {"history", CmdHistory}, {"event", CmdEvent}};
    auto it = kCommands.find(a.command);
    if (it == kCommands.end()) throw UsageError("unknown command '" + a.command + "' (see nexusctl --help)");
    Client client(a);
    return it->second(client, a);
  } catch (const UsageError& e) {
    std::cerr << "nexusctl: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "nexusctl: " << e.what() << "\n";
    return kExitError;
  }
}

}  // namespace
}  // namespace nexus::ctl

int main(int argc, char** argv) { return nexus::ctl::Main(argc, argv); }
