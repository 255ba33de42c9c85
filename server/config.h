#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nexus::server {

/// Limits applied to every ingest request (INVALID_ARGUMENT when broken).
struct IngestLimits {
  int64_t max_events_per_request = 1000;
  int64_t max_mentions_per_event = 100;  ///< persons + groups
  int64_t max_identifiers_per_mention = 50;
  int64_t max_traits_per_mention = 100;
  int64_t max_memberships_per_event = 100;
  int64_t max_value_bytes = 1024;        ///< identifier values, ids, names
  int64_t max_text_bytes = 65536;        ///< trait values, descriptions
  int64_t max_request_bytes = 16 << 20;  ///< one ingest request on the wire (HTTP body, gRPC message)
};

/// Every option of nexusd, loaded and validated once in main.
struct Config {
  std::string grpc_listen = "127.0.0.1:50051";
  std::string http_listen = "127.0.0.1:8080";
  std::string database_url;  ///< empty: embedded PostgreSQL under data_dir (unless embedded_postgres is "off")
  std::string embedded_postgres = "auto";  ///< auto | on | off; ParseConfig checks it against database_url
  std::string data_dir = "./nexus-data";
  std::string pg_bindir;
  std::vector<std::string> read_database_urls;  ///< hot standbys for queries
  std::chrono::milliseconds max_replica_lag{5000};
  std::string resolver_database_url;  ///< empty: database_url
  std::string db_pooler = "none";     ///< none | transaction
  int db_pool_size = 16;
  std::chrono::milliseconds db_connect_timeout{5000};     ///< libpq connect_timeout
  std::chrono::milliseconds db_statement_timeout{30000};  ///< pool sessions; 0 = none
  std::chrono::milliseconds db_tcp_user_timeout{15000};   ///< also sets TCP keepalives (idle = 1/3 of it)
  std::chrono::milliseconds db_probe_timeout{2000};       ///< readiness: the database is down past this
  std::string log_level = "info";
  IngestLimits limits;
  bool resolver_enabled = true;
  int64_t resolver_batch_events = 5000;
  std::chrono::milliseconds resolver_poll_interval{1000};
  int64_t log_partition_months_ahead = 3;
  std::string protection_config;                             ///< path; empty: built-in defaults
  std::chrono::milliseconds protection_config_watch{10000};  ///< re-read the file when it changes; 0: off
  std::string default_phone_region = "US";  ///< libphonenumber region for numbers without a country code
  std::chrono::milliseconds shutdown_grace{10000};
  int http_threads = 4;
  bool rebuild = false;                                ///< run a full rebuild and exit
  std::chrono::milliseconds rebuild_lock_wait{30000};  ///< --rebuild: give up when the lock stays taken
  bool allow_unauthenticated = false;      ///< serve without keys on a non-loopback address while no key exists
  bool metrics_require_key = false;        ///< /metrics needs a valid API key (any scope)
  std::string tls_cert;                    ///< PEM certificate chain for gRPC and HTTP; empty: plaintext
  std::string tls_key;                     ///< PEM private key of tls_cert
  std::string tls_client_ca;               ///< PEM CA: clients must present a certificate it signed (mTLS)
  std::string segment_source = "segment";  ///< Segment API: source of keys not bound to exactly one source
  std::vector<std::string> segment_identity_traits = {"email", "phone"};  ///< traits that identify the user
  std::vector<std::string> segment_previous_id_types = {"anonymous_id"};  ///< alias: what previousId is stored as
  std::vector<std::string> cors_origins;  ///< browser origins allowed cross-origin (exact match); empty: CORS off
};

/// One documented option: its flag, environment variable, default and meaning.
struct OptionDoc {
  std::string flag;
  std::string env;
  std::string default_value;
  std::string help;
};
const std::vector<OptionDoc>& ConfigOptions();

struct ParseOutcome {
  std::optional<Config> config;  ///< set on success
  std::string error;             ///< set on failure: names the flag or variable and the bad value
  bool help = false;             ///< --help was asked for
  bool version = false;          ///< --version was asked for
};

/// Parses flags (`--name=value` or `--name value`) over `NEXUS_*` environment variables over defaults.
/// `env` is a list of "NAME=value" strings (environ). Unknown flags, unknown NEXUS_* variables (other than the
/// scripts' own, see HelpText), invalid values and a flag whose value is missing fail with a message naming them.
ParseOutcome ParseConfig(const std::vector<std::string>& args, const std::vector<std::string>& env);

/// "nexusd <version> (git <sha>)\n", for --version.
std::string VersionText();

/// The --help text, listing every option with its variable and default.
std::string HelpText();

}  // namespace nexus::server
