#pragma once
// Access control: API keys, scopes, the method -> scope table, and the audit log. Shared by gRPC, HTTP and the
// `nexusd keys` CLI. Keys look like nxk_<key_id>_<secret>; only their SHA-256 is stored.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "storage/auth_store.h"
#include "storage/errors.h"

namespace nexus::server {

class Metrics;

/// What a call needs. kOpen: nothing (health checks). kMetrics: /metrics, open or any valid key by flag.
enum class Scope { kOpen, kMetrics, kIngest, kRead, kAdmin };
const char* ScopeName(Scope scope);  ///< "ingest", "read", "admin", "open", "metrics"

/// The one table: every gRPC method (by its short name, e.g. "GetPerson") and every HTTP-only route
/// ("http:/healthz", "http:/readyz", "http:/metrics") -> the scope it needs. HTTP mirrors of an RPC use the
/// RPC's entry. A method missing here is refused (PERMISSION_DENIED), and a unit test checks every RPC of
/// every service is listed.
const std::map<std::string, Scope, std::less<>>& MethodScopes();

/// The caller of one request, after authentication.
struct Principal {
  std::string key_id;                ///< "" when the call carried no key (open mode)
  std::vector<std::string> scopes;   ///< every scope when open
  std::vector<std::string> sources;  ///< ingest: allowed sources, empty = any
  bool open = false;                 ///< no key needed (open mode) and none given
  bool Has(Scope scope) const;
  bool MayWriteSource(const std::string& source) const;
};

/// Per-call state shared by a handler and the wrapper that authenticated it.
struct CallContext {
  Principal principal;
  std::string audit_target;  ///< what an admin call acted on ("quarantine:12", "key:ab12..."); no PII
};

/// A freshly generated key: `secret` is the whole key (nxk_<id>_<secret>), shown once.
struct GeneratedKey {
  std::string key_id;
  std::string secret;
  std::string sha256_hex;
};
/// 48 random bits of id, 256 random bits of secret, from OpenSSL's CSPRNG.
GeneratedKey GenerateApiKey();
std::string Sha256Hex(std::string_view data);
/// Splits "nxk_<id>_<secret>" into the id; nullopt when the shape is wrong.
std::optional<std::string> ParseKeyId(std::string_view key);

/// A new key's properties (validated by CreateApiKey).
struct NewApiKey {
  std::string name;
  std::vector<std::string> scopes;
  std::vector<std::string> sources;
  std::optional<int64_t> expires_at_us;
  std::string created_by;  ///< creator's key id, "" (open mode) or "cli"
};
/// Validates and stores a key; INVALID_ARGUMENT naming the bad field. `*record` and `*secret` on success.
grpc::Status CreateApiKey(storage::AuthStore& store, const NewApiKey& spec, storage::ApiKeyRecord* record,
                          std::string* secret);

/// Authenticates bearer keys against the store, with a small cache, and records auth metrics.
/// Revocation through this process takes effect at once; through another process or the CLI within
/// kCacheTtl. Open mode: while no usable key exists and `open_allowed` (both listeners on loopback or
/// --allow-unauthenticated), calls without a key pass; once a key exists the process enforces keys until it
/// stops (revoking every key does not reopen it).
class Authenticator final {
 public:
  static constexpr std::chrono::seconds kCacheTtl{5};
  struct Options {
    bool open_allowed = false;
    bool metrics_require_key = false;
  };
  Authenticator(storage::AuthStore& store, Metrics* metrics, Options options);
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  /// Checks `authorization` (the header value, "" when absent) for `method` (a MethodScopes() key).
  /// UNAUTHENTICATED (missing/malformed/unknown/revoked/expired key) or PERMISSION_DENIED naming the scope.
  grpc::Status Check(std::string_view method, const std::string& authorization, Principal* out);
  /// Forgets a cached key (after a revoke through this process).
  void Invalidate(const std::string& key_id);
  /// A key was just created through this process: open mode ends now.
  void NoteKeyCreated();
  /// True while calls without a key are let through.
  bool OpenNow();
  storage::AuthStore& store() { return store_; }

 private:
  struct Cached {
    std::optional<storage::ApiKeyRecord> key;
    std::chrono::steady_clock::time_point fetched;
  };
  std::optional<storage::ApiKeyRecord> Lookup(const std::string& key_id);
  grpc::Status Refuse(grpc::StatusCode code, std::string_view key_id, std::string_view outcome, std::string msg);

  storage::AuthStore& store_;
  Metrics* metrics_;
  Options options_;
  std::mutex mu_;  // guards the members below
  std::unordered_map<std::string, Cached> cache_;
  bool keys_exist_ = false;
  std::chrono::steady_clock::time_point keys_checked_{};
};

/// Writes one audit row; a failure to write is logged (with the operation) and not thrown.
void WriteAudit(storage::AuthStore& store, const std::string& key_id, std::string_view operation,
                const std::string& target, std::string_view outcome);

/// True for loopback listen addresses: 127.x.x.x, localhost, ::1 (host:port).
bool IsLoopbackListen(const std::string& listen);

/// A random 16-hex-digit id that ties a client's error message to the server's log line.
std::string NewRequestId();

}  // namespace nexus::server
