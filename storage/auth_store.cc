#include "storage/auth_store.h"

#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {

using detail::PooledConnection;

constexpr const char* kInsertKey = "auth.insert_key";
constexpr const char* kInsertKeySql =
    "INSERT INTO api_keys (key_id, name, key_sha256, scopes, sources, created_by, expires_at) "
    "VALUES ($1, $2, $3, $4::text[], $5::text[], $6, "
    "CASE WHEN $7 = '' THEN NULL ELSE " NEXUS_US_TO_TS("$7::bigint") " END) "
    "ON CONFLICT (key_id) DO NOTHING";
#define NEXUS_KEY_COLUMNS                                                                                     \
  "key_id, name, key_sha256, scopes, sources, " NEXUS_TS_TO_US("created_at") ", created_by, " NEXUS_TS_TO_US( \
      "expires_at") ", " NEXUS_TS_TO_US("revoked_at")
constexpr const char* kFindKey = "auth.find_key";
constexpr const char* kFindKeySql = "SELECT " NEXUS_KEY_COLUMNS " FROM api_keys WHERE key_id = $1";
constexpr const char* kListKeys = "auth.list_keys";
constexpr const char* kListKeysSql = "SELECT " NEXUS_KEY_COLUMNS " FROM api_keys ORDER BY created_at, key_id";
constexpr const char* kRevokeKey = "auth.revoke_key";
constexpr const char* kRevokeKeySql =
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE key_id = $1 RETURNING key_id";
constexpr const char* kAnyUsable = "auth.any_usable_key";
constexpr const char* kAnyUsableSql =
    "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))";
constexpr const char* kInsertAudit = "auth.insert_audit";
constexpr const char* kInsertAuditSql =
    "INSERT INTO audit_log (key_id, operation, target, outcome) VALUES ($1, $2, $3, $4)";
constexpr const char* kListAudit = "auth.list_audit";
constexpr const char* kListAuditSql =
    "SELECT audit_id, " NEXUS_TS_TO_US("at") ", key_id, operation, target, outcome FROM audit_log "
    "WHERE $2::bigint <= 0 OR audit_id < $2::bigint ORDER BY audit_id DESC LIMIT $1";

std::vector<std::string> ParseTextArray(const pqxx::field& f) {
  std::vector<std::string> out;
  auto parser = f.as_array();
  for (auto [kind, value] = parser.get_next(); kind != pqxx::array_parser::juncture::done;
       std::tie(kind, value) = parser.get_next()) {
    if (kind == pqxx::array_parser::juncture::string_value) out.push_back(value);
  }
  return out;
}

std::optional<int64_t> OptInt(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int64_t>();
}

ApiKeyRecord ToKey(const pqxx::row& r) {
  ApiKeyRecord k;
  k.key_id = r[0].as<std::string>();
  k.name = r[1].as<std::string>();
  k.key_sha256 = r[2].as<std::string>();
  k.scopes = ParseTextArray(r[3]);
  k.sources = ParseTextArray(r[4]);
  k.created_at_us = r[5].as<int64_t>();
  k.created_by = r[6].as<std::string>();
  k.expires_at_us = OptInt(r[7]);
  k.revoked_at_us = OptInt(r[8]);
  return k;
}

}  // namespace

void AuthStore::CreateKey(const ApiKeyRecord& key) {
  bool inserted = false;
  db_.impl().Run(kInsertKey, [&](pqxx::work& tx, PooledConnection& c) {
    const std::string expires = key.expires_at_us ? std::to_string(*key.expires_at_us) : "";
    auto r = db_.impl().Exec(tx, c, kInsertKey, kInsertKeySql, key.key_id, key.name, key.key_sha256,
                             detail::TextArray(key.scopes), detail::TextArray(key.sources), key.created_by, expires);
    inserted = r.affected_rows() == 1;
  });
  if (!inserted) throw StorageError(ErrorKind::kInvalidArgument, "key id " + key.key_id + " already exists");
}

std::optional<ApiKeyRecord> AuthStore::FindKey(const std::string& key_id) {
  std::optional<ApiKeyRecord> out;
  db_.impl().Run(kFindKey, [&](pqxx::work& tx, PooledConnection& c) {
    auto r = db_.impl().Exec(tx, c, kFindKey, kFindKeySql, key_id);
    if (!r.empty()) out = ToKey(r[0]);
  });
  return out;
}

std::vector<ApiKeyRecord> AuthStore::ListKeys() {
  std::vector<ApiKeyRecord> out;
  db_.impl().Run(kListKeys, [&](pqxx::work& tx, PooledConnection& c) {
    out.clear();
    for (const auto& row : db_.impl().Exec(tx, c, kListKeys, kListKeysSql)) out.push_back(ToKey(row));
  });
  return out;
}

bool AuthStore::RevokeKey(const std::string& key_id) {
  bool found = false;
  db_.impl().Run(kRevokeKey, [&](pqxx::work& tx, PooledConnection& c) {
    found = !db_.impl().Exec(tx, c, kRevokeKey, kRevokeKeySql, key_id).empty();
  });
  return found;
}

bool AuthStore::AnyUsableKey() {
  bool any = false;
  db_.impl().Run(kAnyUsable, [&](pqxx::work& tx, PooledConnection& c) {
    any = db_.impl().Exec(tx, c, kAnyUsable, kAnyUsableSql)[0][0].as<bool>();
  });
  return any;
}

void AuthStore::AppendAudit(const AuditRecord& row) {
  db_.impl().Run(kInsertAudit, [&](pqxx::work& tx, PooledConnection& c) {
    db_.impl().Exec(tx, c, kInsertAudit, kInsertAuditSql, row.key_id, row.operation, row.target, row.outcome);
  });
}

std::vector<AuditRecord> AuthStore::ListAudit(int limit, int64_t before_id) {
  std::vector<AuditRecord> out;
  db_.impl().Run(kListAudit, [&](pqxx::work& tx, PooledConnection& c) {
    out.clear();
    for (const auto& r : db_.impl().Exec(tx, c, kListAudit, kListAuditSql, limit, before_id)) {
      out.push_back({r[0].as<int64_t>(), r[1].as<int64_t>(), r[2].as<std::string>(), r[3].as<std::string>(),
                     r[4].as<std::string>(), r[5].as<std::string>()});
    }
  });
  return out;
}

}  // namespace nexus::storage
