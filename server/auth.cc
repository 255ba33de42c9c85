#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

#include "common/log.h"
#include "server/metrics.h"

namespace nexus::server {
namespace {

constexpr std::string_view kKeyPrefix = "nxk_";
constexpr size_t kIdHexLen = 12;      // 48 bits: an id, not a secret
constexpr size_t kSecretHexLen = 64;  // 256 bits

std::string Hex(const unsigned char* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  if (RAND_bytes(buf.data(), static_cast<int>(buf.size())) != 1) {
    throw std::runtime_error("the system random generator failed (OpenSSL RAND_bytes)");
  }
  return Hex(buf.data(), buf.size());
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const std::vector<std::string>& AllScopes() {
  static const std::vector<std::string> kAll = {"ingest", "read", "admin"};
  return kAll;
}

}  // namespace

const char* ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kOpen:
      return "open";
    case Scope::kMetrics:
      return "metrics";
    case Scope::kIngest:
      return "ingest";
    case Scope::kRead:
      return "read";
    case Scope::kAdmin:
      return "admin";
  }
  return "admin";
}

const std::map<std::string, Scope, std::less<>>& MethodScopes() {
  static const std::map<std::string, Scope, std::less<>> kTable = {
      // IngestService
      {"IngestEvents", Scope::kIngest},
      {"IngestEventStream", Scope::kIngest},
      // QueryService: profiles, timelines, explain, history
      {"GetPerson", Scope::kRead},
      {"LookupPerson", Scope::kRead},
      {"GetGroup", Scope::kRead},
      {"LookupGroup", Scope::kRead},
      {"ListPersonMemberships", Scope::kRead},
      {"ListGroupMembers", Scope::kRead},
      {"ListPersonTimeline", Scope::kRead},
      {"ListGroupTimeline", Scope::kRead},
      {"ExplainPersonLink", Scope::kRead},
      {"ExplainGroupLink", Scope::kRead},
      {"GetPersonHistory", Scope::kRead},
      {"GetGroupHistory", Scope::kRead},
      {"SearchPersons", Scope::kRead},
      {"SearchGroups", Scope::kRead},
      {"GetPersonProfile", Scope::kRead},
      {"GetGroupProfile", Scope::kRead},
      {"GetEvent", Scope::kRead},
      // AdminService: every operator call, key management and the audit log
      {"GetResolverStatus", Scope::kAdmin},
      {"Rebuild", Scope::kAdmin},
      {"GetRebuildStatus", Scope::kAdmin},
      {"ListQuarantinedEdges", Scope::kAdmin},
      {"ReleaseQuarantinedEdge", Scope::kAdmin},
      {"ReloadConfig", Scope::kAdmin},
      {"CreateApiKey", Scope::kAdmin},
      {"ListApiKeys", Scope::kAdmin},
      {"RevokeApiKey", Scope::kAdmin},
      {"ListAuditLog", Scope::kAdmin},
      {"Unlink", Scope::kAdmin},
      {"ListLinkRules", Scope::kAdmin},
      {"RemoveLinkRule", Scope::kAdmin},
      {"Erase", Scope::kAdmin},
      {"ListSuppressions", Scope::kAdmin},
      {"LiftSuppression", Scope::kAdmin},
      // HTTP-only routes
      {"http:/healthz", Scope::kOpen},
      {"http:/readyz", Scope::kOpen},
      {"http:/metrics", Scope::kMetrics},
      // The support page's static files (no data; the page sends the user's key with its API calls)
      {"http:/ui", Scope::kOpen},
      // Segment-compatible tracking API (/v1/identify, /v1/track, ..., /v1/batch): the write key is the API key
      {"http:/segment", Scope::kIngest},
  };
  return kTable;
}

bool Principal::Has(Scope scope) const {
  if (scope == Scope::kOpen) return true;
  if (scope == Scope::kMetrics) return open || !key_id.empty();
  return std::find(scopes.begin(), scopes.end(), ScopeName(scope)) != scopes.end();
}

bool Principal::MayWriteSource(const std::string& source) const {
  return sources.empty() || std::find(sources.begin(), sources.end(), source) != sources.end();
}

GeneratedKey GenerateApiKey() {
  GeneratedKey k;
  k.key_id = RandomHex(kIdHexLen / 2);
  k.secret = std::string(kKeyPrefix) + k.key_id + "_" + RandomHex(kSecretHexLen / 2);
  k.sha256_hex = Sha256Hex(k.secret);
  return k;
}

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return Hex(digest, sizeof digest);
}

std::optional<std::string> ParseKeyId(std::string_view key) {
  if (key.size() != kKeyPrefix.size() + kIdHexLen + 1 + kSecretHexLen) return std::nullopt;
  if (key.substr(0, kKeyPrefix.size()) != kKeyPrefix) return std::nullopt;
  const std::string_view id = key.substr(kKeyPrefix.size(), kIdHexLen);
  if (key[kKeyPrefix.size() + kIdHexLen] != '_') return std::nullopt;
  if (!IsLowerHex(id) || !IsLowerHex(key.substr(kKeyPrefix.size() + kIdHexLen + 1))) return std::nullopt;
  return std::string(id);
}

grpc::Status CreateApiKey(storage::AuthStore& store, const NewApiKey& spec, storage::ApiKeyRecord* record,
                          std::string* secret) {
  auto bad = [](std::string msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(msg)); };
  if (spec.name.empty()) return bad("name: must not be empty");
  if (spec.name.size() > 200) return bad("name: longer than 200 bytes");
  for (unsigned char c : spec.name) {
    if (c < 0x20 || c == 0x7f) return bad("name: control characters are not allowed");
  }
  if (spec.scopes.empty()) return bad("scopes: at least one of ingest, read, admin is required");
  std::vector<std::string> scopes;
  for (size_t i = 0; i < spec.scopes.size(); ++i) {
    const auto& s = spec.scopes[i];
    if (std::find(AllScopes().begin(), AllScopes().end(), s) == AllScopes().end()) {
      return bad("scopes[" + std::to_string(i) + "]: unknown scope '" + log::JsonEscape(s) +
                 "' (use ingest, read or admin)");
    }
    if (std::find(scopes.begin(), scopes.end(), s) == scopes.end()) scopes.push_back(s);
  }
  std::vector<std::string> sources;
  for (size_t i = 0; i < spec.sources.size(); ++i) {
    const auto& s = spec.sources[i];
    if (s.empty() || s.size() > 1024) {
      return bad("sources[" + std::to_string(i) + "]: must be 1 to 1024 bytes");
    }
    if (std::find(sources.begin(), sources.end(), s) == sources.end()) sources.push_back(s);
  }
  if (!sources.empty() && std::find(scopes.begin(), scopes.end(), "ingest") == scopes.end()) {
    return bad("sources: only keys with the ingest scope can be bound to sources");
  }
  if (spec.expires_at_us && *spec.expires_at_us <= NowMicros()) return bad("expires_at: must be in the future");

  for (int attempt = 0;; ++attempt) {
    const GeneratedKey k = GenerateApiKey();
    storage::ApiKeyRecord rec;
    rec.key_id = k.key_id;
    rec.name = spec.name;
    rec.key_sha256 = k.sha256_hex;
    rec.scopes = scopes;
    rec.sources = sources;
    rec.created_by = spec.created_by;
    rec.expires_at_us = spec.expires_at_us;
    try {
      store.CreateKey(rec);
    } catch (const storage::StorageError& e) {
      if (e.kind() == storage::ErrorKind::kInvalidArgument && attempt < 3) continue;  // id collision: new key
      throw;
    }
    auto stored = store.FindKey(rec.key_id);
    *record = stored ? *stored : rec;
    *secret = k.secret;
    return grpc::Status::OK;
  }
}

Authenticator::Authenticator(storage::AuthStore& store, Metrics* metrics, Options options)
    : store_(store), metrics_(metrics), options_(options) {}

bool Authenticator::OpenNow() {
  if (!options_.open_allowed) return false;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (keys_exist_) return false;
    if (keys_checked_ != std::chrono::steady_clock::time_point{} && now - keys_checked_ < kCacheTtl) return true;
  }
  const bool any = store_.AnyUsableKey();
  std::lock_guard<std::mutex> lock(mu_);
  keys_checked_ = now;
  if (any && !keys_exist_) {
    keys_exist_ = true;
    log::Info("API keys exist: every call now needs a key (open mode ended)");
  }
  return !keys_exist_;
}

void Authenticator::NoteKeyCreated() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!keys_exist_ && options_.open_allowed) log::Info("an API key was created: every call now needs a key");
  keys_exist_ = true;
}

void Authenticator::Invalidate(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.erase(key_id);
}

std::optional<storage::ApiKeyRecord> Authenticator::Lookup(const std::string& key_id) {
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key_id);
    if (it != cache_.end() && now - it->second.fetched < kCacheTtl) return it->second.key;
  }
  auto key = store_.FindKey(key_id);
  if (key) {  // only keys that exist are cached: guessed ids cannot grow the cache
    std::lock_guard<std::mutex> lock(mu_);
    if (cache_.size() > 10000) cache_.clear();
    cache_[key_id] = Cached{key, now};
    keys_exist_ = keys_exist_ || (!key->revoked_at_us && (!key->expires_at_us || *key->expires_at_us > NowMicros()));
  }
  return key;
}

grpc::Status Authenticator::Refuse(grpc::StatusCode code, std::string_view key_id, std::string_view outcome,
                                   std::string msg) {
  if (metrics_) metrics_->ObserveAuth(key_id, outcome);
  return grpc::Status(code, std::move(msg));
}

grpc::Status Authenticator::Check(std::string_view method, const std::string& authorization, Principal* out) {
  *out = Principal{};
  const auto entry = MethodScopes().find(method);
  if (entry == MethodScopes().end()) {
    return Refuse(grpc::StatusCode::PERMISSION_DENIED, "", "denied",
                  "method " + std::string(method) + " has no scope; refused");
  }
  const Scope need = entry->second;
  if (need == Scope::kOpen) return grpc::Status::OK;
  if (authorization.empty()) {
    if (need == Scope::kMetrics && !options_.metrics_require_key) return grpc::Status::OK;
    if (OpenNow()) {
      out->open = true;
      out->scopes = AllScopes();
      if (metrics_) metrics_->ObserveAuth("", "open");
      return grpc::Status::OK;
    }
    return Refuse(grpc::StatusCode::UNAUTHENTICATED, "", "missing",
                  "missing API key: send the header 'authorization: Bearer <key>'");
  }
  constexpr std::string_view kBearer = "bearer ";
  std::string_view value = authorization;
  bool bearer = value.size() > kBearer.size();
  for (size_t i = 0; bearer && i < kBearer.size(); ++i) {
    bearer = std::tolower(static_cast<unsigned char>(value[i])) == kBearer[i];
  }
  if (!bearer) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED, "", "malformed",
                  "the authorization header must be 'Bearer <key>'");
  }
  value.remove_prefix(kBearer.size());
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  const auto id = ParseKeyId(value);
  if (!id) return Refuse(grpc::StatusCode::UNAUTHENTICATED, "", "unknown", "unknown API key");
  const auto key = Lookup(*id);
  const std::string hash = Sha256Hex(value);
  if (!key || key->key_sha256.size() != hash.size() ||
      CRYPTO_memcmp(key->key_sha256.data(), hash.data(), hash.size()) != 0) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED, "", "unknown", "unknown API key");
  }
  if (key->revoked_at_us) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED, key->key_id, "revoked", "API key " + key->key_id + " is revoked");
  }
  if (key->expires_at_us && *key->expires_at_us <= NowMicros()) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED, key->key_id, "expired", "API key " + key->key_id + " has expired");
  }
  out->key_id = key->key_id;
  out->scopes = key->scopes;
  out->sources = key->sources;
  if (!out->Has(need)) {
    return Refuse(
        grpc::StatusCode::PERMISSION_DENIED, key->key_id, "denied",
        "API key " + key->key_id + " lacks the '" + ScopeName(need) + "' scope needed for " + std::string(method));
  }
  if (metrics_) metrics_->ObserveAuth(key->key_id, "ok");
  return grpc::Status::OK;
}

void WriteAudit(storage::AuthStore& store, const std::string& key_id, std::string_view operation,
                const std::string& target, std::string_view outcome) {
  try {
    store.AppendAudit({0, 0, key_id, std::string(operation), target, std::string(outcome)});
  } catch (const std::exception& e) {
    log::Error("cannot write the audit log", {{"operation", std::string(operation)},
                                              {"key_id", key_id},
                                              {"outcome", std::string(outcome)},
                                              {"cause", e.what()}});
  }
}

bool IsLoopbackListen(const std::string& listen) {
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string NewRequestId() { return RandomHex(8); }

}  // namespace nexus::server
