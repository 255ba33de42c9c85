#include "server/config.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <sstream>

#include "common/log.h"
#include "resolver/normalize.h"
#include "server/version.h"

namespace nexus::server {
namespace {

using Setter = std::function<std::string(Config&, const std::string&)>;  // returns "" or an error

struct Option {
  OptionDoc doc;
  Setter set;
  bool is_bool = false;
};

std::string ParseInt(const std::string& v, int64_t min, int64_t max, int64_t* out) {
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used);
    if (used != v.size()) throw std::invalid_argument("trailing");
    if (n < min || n > max) return "must be between " + std::to_string(min) + " and " + std::to_string(max);
    *out = n;
    return "";
  } catch (const std::exception&) {
    return "is not a whole number";
  }
}

std::string ParseDuration(const std::string& v, std::chrono::milliseconds* out) {
  // 500ms, 10s, 2m, or a bare number of seconds
  size_t i = 0;
  while (i < v.size() && (std::isdigit(static_cast<unsigned char>(v[i])) || v[i] == '.')) ++i;
  if (i == 0) return "is not a duration (e.g. 500ms, 10s, 2m)";
  double n = 0;
  try {
    size_t used = 0;
    n = std::stod(v.substr(0, i), &used);
    if (used != i) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    return "is not a duration (e.g. 500ms, 10s, 2m)";
  }
  const std::string unit = v.substr(i);
  double ms = 0;
  if (unit == "ms")
    ms = n;
  else if (unit == "s" || unit.empty())
    ms = n * 1000;
  else if (unit == "m")
    ms = n * 60000;
  else
    return "has an unknown unit '" + unit + "' (use ms, s or m)";
  *out = std::chrono::milliseconds(static_cast<int64_t>(ms));
  return "";
}

std::string ParseBool(const std::string& v, bool* out) {
  if (v == "true" || v == "1" || v == "yes" || v == "on")
    *out = true;
  else if (v == "false" || v == "0" || v == "no" || v == "off")
    *out = false;
  else
    return "is not a boolean (true/false)";
  return "";
}

Setter IntField(int64_t Config::*f, int64_t min, int64_t max) {
  return [=](Config& c, const std::string& v) { return ParseInt(v, min, max, &(c.*f)); };
}
Setter LimitField(int64_t IngestLimits::*f, int64_t min, int64_t max) {
  return [=](Config& c, const std::string& v) { return ParseInt(v, min, max, &(c.limits.*f)); };
}
Setter StrField(std::string Config::*f, bool allow_empty = true) {
  return [=](Config& c, const std::string& v) -> std::string {
    if (!allow_empty && v.empty()) return "must not be empty";
    c.*f = v;
    return "";
  };
}
Setter ListenField(std::string Config::*f) {
  return [=](Config& c, const std::string& v) -> std::string {
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 >= v.size()) return "must be host:port";
    int64_t port = 0;
    if (!ParseInt(v.substr(colon + 1), 0, 65535, &port).empty()) return "has an invalid port";
    c.*f = v;
    return "";
  };
}

/// A comma-separated list of identifier types ([a-z0-9_]{1,64}); empty only when `allow_empty`.
std::string ParseTypeList(const std::string& v, bool allow_empty, std::vector<std::string>* out) {
  std::vector<std::string> list;
  size_t start = 0;
  while (!v.empty()) {
    const size_t comma = v.find(',', start);
    std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (item.empty() || item.size() > 64 ||
        item.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
      return "must be a comma-separated list of identifier types ([a-z0-9_]{1,64})";
    }
    if (std::find(list.begin(), list.end(), item) == list.end()) list.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (list.empty() && !allow_empty) return "must name at least one identifier type";
  *out = list;
  return "";
}

/// Variables read by the project's scripts and tests, not by nexusd: a test that starts nexusd passes its
/// environment on, so these must not make nexusd refuse to start.
bool IsToolVariable(const std::string& name) {
  static const char* const kPrefixes[] = {"NEXUS_TEST_",     "NEXUS_BENCH_",  "NEXUS_BUILD_", "NEXUS_FUZZ_",
                                          "NEXUS_PROPERTY_", "NEXUS_ENGINE_", "NEXUS_TSAN_",  "NEXUS_ASAN_"};
  for (const char* p : kPrefixes) {
    if (name.rfind(p, 0) == 0) return true;
  }
  return name == "NEXUS_SEED";
}

const std::vector<Option>& Options() {
  static const std::vector<Option> kOptions = [] {
    const IngestLimits d;
    std::vector<Option> o;
    auto add = [&](std::string flag, std::string def, std::string help, Setter set, bool is_bool = false) {
      std::string env = "NEXUS_";
      for (char ch : flag) env += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      o.push_back({{"--" + flag, env, std::move(def), std::move(help)}, std::move(set), is_bool});
    };
    add("grpc-listen", "127.0.0.1:50051", "gRPC listen address (host:port; port 0 picks a free one)",
        ListenField(&Config::grpc_listen));
    add("http-listen", "127.0.0.1:8080", "HTTP listen address for /v1, /healthz, /readyz, /metrics",
        ListenField(&Config::http_listen));
    add("database-url", "(none)", "PostgreSQL connection string; when unset, see --embedded-postgres",
        [](Config& c, const std::string& v) -> std::string {
          if (v.empty()) {
            return "is set but empty. Unset it to run the embedded PostgreSQL (--embedded-postgres), or give "
                   "the connection string";
          }
          c.database_url = v;
          return "";
        });
    add("embedded-postgres", "auto",
        "auto: run a private PostgreSQL under --data-dir when no --database-url is given; on: require that; "
        "off: refuse to start without --database-url (set this in deployments)",
        [](Config& c, const std::string& v) -> std::string {
          if (v != "auto" && v != "on" && v != "off") return "must be auto, on or off";
          c.embedded_postgres = v;
          return "";
        });
    add("data-dir", "./nexus-data", "directory of the embedded PostgreSQL cluster", StrField(&Config::data_dir, false));
    add("pg-bindir", "(auto)", "PostgreSQL server binaries for the embedded cluster", StrField(&Config::pg_bindir));
    add("read-database-url", "(none)",
        "a PostgreSQL hot standby for query traffic (repeat the flag, or separate URLs with '|', for several); "
        "queries go to the least-lagging replica within --max-replica-lag, else to the primary",
        [](Config& c, const std::string& v) -> std::string {
          size_t from = 0;
          while (from <= v.size()) {
            size_t to = v.find('|', from);
            if (to == std::string::npos) to = v.size();
            std::string one = v.substr(from, to - from);
            while (!one.empty() && std::isspace(static_cast<unsigned char>(one.front()))) one.erase(0, 1);
            while (!one.empty() && std::isspace(static_cast<unsigned char>(one.back()))) one.pop_back();
            if (one.empty()) return "holds an empty URL";
            c.read_database_urls.push_back(one);
            from = to + 1;
          }
          return "";
        });
    add("max-replica-lag", "5s",
        "a replica further behind the primary than this gets no queries until it catches up (they go to the primary)",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.max_replica_lag); });
    add("resolver-database-url", "(--database-url)",
        "PostgreSQL for the resolver's lock session, straight to the server: needed when --database-url goes through "
        "a transaction-pooling proxy (session advisory locks and LISTEN do not survive one)",
        [](Config& c, const std::string& v) -> std::string {
          if (v.empty()) return "is set but empty";
          c.resolver_database_url = v;
          return "";
        });
    add("db-pooler", "none",
        "none: --database-url reaches PostgreSQL itself; transaction: it goes through a transaction-pooling proxy "
        "(pgbouncer pool_mode=transaction): no named prepared statements, settings per transaction",
        [](Config& c, const std::string& v) -> std::string {
          if (v != "none" && v != "transaction") return "must be none or transaction";
          c.db_pooler = v;
          return "";
        });
    add("db-pool-size", "16", "database connections in the pool", [](Config& c, const std::string& v) {
      int64_t n = 0;
      auto e = ParseInt(v, 1, 512, &n);
      c.db_pool_size = static_cast<int>(n);
      return e;
    });
    add("db-connect-timeout", "5s", "give up connecting to PostgreSQL after this long (libpq connect_timeout)",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.db_connect_timeout); });
    add("db-statement-timeout", "30s", "cancel a request's SQL statement after this long (0: never)",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.db_statement_timeout); });
    add("db-tcp-user-timeout", "15s", "drop a database connection whose sent data stays unacknowledged this long",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.db_tcp_user_timeout); });
    add("db-probe-timeout", "2s", "readiness: the database counts as down when its probe gets no answer this long",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.db_probe_timeout); });
    add("log-level", "info", "debug | info | warn | error", [](Config& c, const std::string& v) -> std::string {
      log::Level l;
      if (!log::ParseLevel(v, &l)) return "must be debug, info, warn or error";
      c.log_level = v;
      return "";
    });
    add("max-events-per-request", std::to_string(d.max_events_per_request), "ingest: events in one request",
        LimitField(&IngestLimits::max_events_per_request, 1, 100000));
    add("max-mentions-per-event", std::to_string(d.max_mentions_per_event), "ingest: persons + groups in one event",
        LimitField(&IngestLimits::max_mentions_per_event, 1, 100000));
    add("max-identifiers-per-mention", std::to_string(d.max_identifiers_per_mention),
        "ingest: identifiers in one mention", LimitField(&IngestLimits::max_identifiers_per_mention, 1, 100000));
    add("max-traits-per-mention", std::to_string(d.max_traits_per_mention), "ingest: traits in one mention",
        LimitField(&IngestLimits::max_traits_per_mention, 0, 100000));
    add("max-memberships-per-event", std::to_string(d.max_memberships_per_event), "ingest: memberships in one event",
        LimitField(&IngestLimits::max_memberships_per_event, 0, 100000));
    add("max-value-bytes", std::to_string(d.max_value_bytes),
        "ingest: bytes of an identifier value, event_id, name, type or source",
        LimitField(&IngestLimits::max_value_bytes, 16, 1 << 20));
    add("max-text-bytes", std::to_string(d.max_text_bytes), "ingest: bytes of a trait value or description",
        LimitField(&IngestLimits::max_text_bytes, 16, 1 << 24));
    add("max-request-bytes", std::to_string(d.max_request_bytes),
        "ingest: bytes of one request (HTTP body or gRPC message); larger ones get 413 / RESOURCE_EXHAUSTED unread",
        LimitField(&IngestLimits::max_request_bytes, 1024, 1LL << 30));
    add(
        "resolver", "true", "run the incremental resolver in this process",
        [](Config& c, const std::string& v) { return ParseBool(v, &c.resolver_enabled); }, true);
    add("resolver-batch-events", "5000", "events per resolver batch",
        IntField(&Config::resolver_batch_events, 1, 1000000));
    add("log-partition-months-ahead", "3",
        "month partitions of the core event log the resolver keeps created ahead of the current month (0-120)",
        IntField(&Config::log_partition_months_ahead, 0, 120));
    add("resolver-poll-interval", "1s", "resolver wakes at least this often (it also wakes on new data); >= 10ms",
        [](Config& c, const std::string& v) {
          auto e = ParseDuration(v, &c.resolver_poll_interval);
          if (e.empty() && c.resolver_poll_interval < std::chrono::milliseconds(10)) {
            e = "is too short: at least 10ms (shorter would spin a core)";
          }
          return e;
        });
    add("protection-config", "(built-in defaults)",
        "merge-protection file: caps, blocklist and [traits] rules (reload: SIGHUP)",
        StrField(&Config::protection_config));
    add("protection-config-watch", "10s",
        "check --protection-config this often and reload it when it changed (every replica picks up an edited "
        "ConfigMap); 0 turns it off",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.protection_config_watch); });
    add("default-phone-region", "US",
        "region (ISO 3166, e.g. US, GB, DE) that phone numbers without a country code are read in; a rebuild "
        "re-reads stored numbers with it",
        [](Config& c, const std::string& v) -> std::string {
          std::string r = v;
          for (auto& ch : r) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
          if (!resolver::IsKnownPhoneRegion(r)) return "is not a region libphonenumber knows (e.g. US, GB, DE)";
          c.default_phone_region = r;
          return "";
        });
    add("shutdown-grace", "10s", "on SIGTERM, wait at most this long for in-flight requests",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.shutdown_grace); });
    add("http-threads", "4", "HTTP worker threads", [](Config& c, const std::string& v) {
      int64_t n = 0;
      auto e = ParseInt(v, 1, 256, &n);
      c.http_threads = static_cast<int>(n);
      return e;
    });
    add(
        "rebuild", "false", "recompute all resolution from the core log, then exit",
        [](Config& c, const std::string& v) { return ParseBool(v, &c.rebuild); }, true);
    add("rebuild-lock-wait", "30s", "--rebuild: exit (status 3) when another process holds the resolver lock this long",
        [](Config& c, const std::string& v) { return ParseDuration(v, &c.rebuild_lock_wait); });
    add(
        "allow-unauthenticated", "false",
        "serve without API keys on a non-loopback address while no key exists (default: refuse to start)",
        [](Config& c, const std::string& v) { return ParseBool(v, &c.allow_unauthenticated); }, true);
    add(
        "metrics-require-key", "false", "GET /metrics needs a valid API key (any scope)",
        [](Config& c, const std::string& v) { return ParseBool(v, &c.metrics_require_key); }, true);
    add("tls-cert", "(none: plaintext)",
        "PEM certificate (chain) for TLS on gRPC and HTTP; needs --tls-key (reload: SIGHUP for HTTP, gRPC within 10s)",
        StrField(&Config::tls_cert));
    add("tls-key", "(none)", "PEM private key of --tls-cert", StrField(&Config::tls_key));
    add("segment-source", "segment",
        "Segment-compatible API (/v1/track, /v1/batch, ...): the source of messages whose write key is not bound to "
        "exactly one source (open mode, keys bound to none or several; those must allow it)",
        [](Config& c, const std::string& v) -> std::string {
          if (v.empty() || v.size() > 1024) return "must be 1 to 1024 bytes";
          c.segment_source = v;
          return "";
        });
    add("segment-identity-traits", "email,phone",
        "Segment-compatible API: comma-separated traits whose values are identifiers of the user (each becomes an "
        "identifier of that type, linked to userId and anonymousId); empty: none",
        [](Config& c, const std::string& v) { return ParseTypeList(v, true, &c.segment_identity_traits); });
    add("segment-previous-id-types", "anonymous_id",
        "Segment-compatible API: identifier types an alias's previousId is stored as (comma-separated; "
        "anonymous_id,user_id also merges two user ids, which the default merge protection quarantines: one user_id "
        "per person)",
        [](Config& c, const std::string& v) { return ParseTypeList(v, false, &c.segment_previous_id_types); });
    add("tls-client-ca", "(none)", "PEM CA file: require client certificates signed by it (mTLS); needs --tls-cert",
        StrField(&Config::tls_client_ca));
    add("cors-origins", "(none: CORS off)",
        "comma-separated browser origins (scheme://host[:port]) allowed to call the HTTP API cross-origin; only a "
        "listed origin is echoed in Access-Control-Allow-Origin, preflights from others get 403",
        [](Config& c, const std::string& v) -> std::string {
          c.cors_origins.clear();
          size_t start = 0;
          while (start <= v.size()) {
            const size_t comma = v.find(',', start);
            std::string o = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
            o.erase(0, o.find_first_not_of(' '));
            o.erase(o.find_last_not_of(' ') + 1);
            if (!o.empty()) {
              if (o == "*") return "must list origins; '*' is not accepted (the API serves personal data)";
              const size_t sep = o.find("://");
              const std::string scheme = sep == std::string::npos ? "" : o.substr(0, sep);
              if ((scheme != "http" && scheme != "https") || sep + 3 >= o.size() ||
                  o.find('/', sep + 3) != std::string::npos ||
                  o.find_first_of(" ABCDEFGHIJKLMNOPQRSTUVWXYZ?#@") != std::string::npos) {
                return "entry '" + o.substr(0, 80) +
                       "' is not an origin: lower-case http(s)://host[:port], no path or trailing slash";
              }
              c.cors_origins.push_back(o);
            }
            if (comma == std::string::npos) break;
            start = comma + 1;
          }
          return "";
        });
    return o;
  }();
  return kOptions;
}

}  // namespace

const std::vector<OptionDoc>& ConfigOptions() {
  static const std::vector<OptionDoc> kDocs = [] {
    std::vector<OptionDoc> d;
    for (const auto& o : Options()) d.push_back(o.doc);
    return d;
  }();
  return kDocs;
}

ParseOutcome ParseConfig(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  ParseOutcome out;
  Config cfg;
  std::map<std::string, std::string> envmap;
  for (const auto& kv : env) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) envmap[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [name, value] : envmap) {
    if (name.rfind("NEXUS_", 0) != 0 || IsToolVariable(name)) continue;
    bool known = false;
    for (const auto& o : Options()) known = known || o.doc.env == name;
    if (!known) {
      out.error = "unknown environment variable " + name + " (nexusd reads only the NEXUS_* variables listed by " +
                  "--help; a misspelled one would be ignored silently, so it is refused)";
      return out;
    }
  }
  for (const auto& o : Options()) {
    auto it = envmap.find(o.doc.env);
    if (it == envmap.end()) continue;
    if (auto err = o.set(cfg, it->second); !err.empty()) {
      out.error = o.doc.env + "='" + it->second + "' " + err;
      return out;
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
      return out;
    }
    if (a == "--version") {
      out.version = true;
      return out;
    }
    if (a.rfind("--", 0) != 0) {
      out.error = "unexpected argument '" + a + "' (options start with --; see --help)";
      return out;
    }
    std::string name = a, value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      has_value = true;
    }
    const Option* opt = nullptr;
    for (const auto& o : Options()) {
      if (o.doc.flag == name) opt = &o;
    }
    if (!opt) {
      out.error = "unknown option '" + name + "' (see --help)";
      return out;
    }
    if (!has_value) {
      if (opt->is_bool) {
        value = "true";
      } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
        value = args[++i];
      } else if (i + 1 < args.size()) {
        out.error = "option '" + name + "' needs a value, but is followed by the option '" + args[i + 1] + "' (write " +
                    name + "=VALUE; " + name + "=" + args[i + 1] + " if that is really the value)";
        return out;
      } else {
        out.error = "option '" + name + "' needs a value";
        return out;
      }
    }
    if (auto err = opt->set(cfg, value); !err.empty()) {
      out.error = name + "='" + value + "' " + err;
      return out;
    }
  }
  if (cfg.tls_cert.empty() != cfg.tls_key.empty()) {
    out.error = "--tls-cert and --tls-key go together: give both or neither";
    return out;
  }
  if (!cfg.tls_client_ca.empty() && cfg.tls_cert.empty()) {
    out.error = "--tls-client-ca needs --tls-cert and --tls-key (client certificates are checked over TLS)";
    return out;
  }
  if (cfg.embedded_postgres == "off" && cfg.database_url.empty()) {
    out.error = "no database: --embedded-postgres=off needs --database-url or NEXUS_DATABASE_URL";
    return out;
  }
  if (cfg.embedded_postgres == "on" && !cfg.database_url.empty()) {
    out.error = "--embedded-postgres=on and a --database-url were both given; choose one";
    return out;
  }
  if (!cfg.read_database_urls.empty() && cfg.database_url.empty()) {
    out.error = "--read-database-url needs --database-url (the embedded PostgreSQL has no replicas)";
    return out;
  }
  if (cfg.db_pooler == "transaction" && cfg.database_url.empty()) {
    out.error = "--db-pooler=transaction needs --database-url (the proxy's address)";
    return out;
  }
  if (cfg.db_pooler == "transaction" && cfg.resolver_enabled && cfg.resolver_database_url.empty()) {
    out.error =
        "--db-pooler=transaction: the resolver's lock session cannot go through a transaction-pooling proxy; "
        "give --resolver-database-url (PostgreSQL itself), or --resolver=false on this process";
    return out;
  }
  out.config = cfg;
  return out;
}

std::string VersionText() { return std::string("nexusd ") + Version() + " (git " + GitSha() + ")\n"; }

std::string HelpText() {
  std::ostringstream o;
  o << "nexusd: identity resolution service (gRPC + HTTP/JSON over PostgreSQL)\n\n"
    << "Usage: nexusd [--option=value ...] | --version | --help\n"
    << "Every option can also be set by its environment variable; flags win. Unknown NEXUS_* variables are\n"
    << "refused, except those of the project's build, test and bench scripts (NEXUS_TEST_*, NEXUS_BENCH_*,\n"
    << "NEXUS_BUILD_*, NEXUS_FUZZ_*, NEXUS_PROPERTY_*, NEXUS_ENGINE_*, NEXUS_SEED).\n\n";
  for (const auto& d : ConfigOptions()) {
    o << "  " << d.flag << "\n      " << d.help << "\n      env " << d.env << ", default " << d.default_value << "\n";
  }
  return o.str();
}

}  // namespace nexus::server
