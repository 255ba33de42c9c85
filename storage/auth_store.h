#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace nexus::storage {

class Database;

/// One API key as stored: never the key itself, only its SHA-256 (hex).
struct ApiKeyRecord {
  std::string key_id;
  std::string name;
  std::string key_sha256;
  std::vector<std::string> scopes;   ///< "ingest", "read", "admin"
  std::vector<std::string> sources;  ///< ingest keys: sources they may write; empty = any
  int64_t created_at_us = 0;
  std::string created_by;
  std::optional<int64_t> expires_at_us;
  std::optional<int64_t> revoked_at_us;
};

/// One audit row. Never holds secrets or identifier values.
struct AuditRecord {
  int64_t audit_id = 0;
  int64_t at_us = 0;
  std::string key_id;
  std::string operation;
  std::string target;
  std::string outcome;
};

/// API keys and the audit log (migration 005). Throws StorageError.
class AuthStore final {
 public:
  explicit AuthStore(Database& db) : db_(db) {}

  /// Inserts a key; kInvalidArgument when the id is taken (ids are random: practically never).
  void CreateKey(const ApiKeyRecord& key);
  /// The key with this id, revoked and expired ones included; nullopt when there is none.
  std::optional<ApiKeyRecord> FindKey(const std::string& key_id);
  /// Every key, oldest first.
  std::vector<ApiKeyRecord> ListKeys();
  /// Marks a key revoked now. False when there is no such key; true (and unchanged) when already revoked.
  bool RevokeKey(const std::string& key_id);
  /// True when at least one key is neither revoked nor expired.
  bool AnyUsableKey();

  void AppendAudit(const AuditRecord& row);
  /// Newest first; rows with audit_id < before_id when before_id > 0.
  std::vector<AuditRecord> ListAudit(int limit, int64_t before_id);

 private:
  Database& db_;
};

}  // namespace nexus::storage
