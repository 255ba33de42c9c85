#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace nexus::storage {

/// Receives timings and errors of every statement, by the statement's constant name (low cardinality).
/// Implemented by server/ with Prometheus; storage knows nothing of metrics.
class StorageObserver {
 public:
  virtual ~StorageObserver() = default;
  virtual void OnStatement(std::string_view name, double seconds, bool ok) = 0;
  /// kind: "connection", "serialization", "deadlock", "constraint", "data", "other"
  virtual void OnError(std::string_view kind) = 0;
  virtual void OnPoolChange(int size, int in_use) = 0;
  /// Read replicas (storage/replicas.h): each poll's view of replica `index`, and where each read went.
  virtual void OnReplicaStatus(int /*index*/, bool /*up*/, double /*lag_seconds*/, int64_t /*lag_bytes*/) {}
  virtual void OnRead(bool /*replica*/) {}
};

struct DatabaseOptions {
  std::string url;                                   ///< libpq connection string or URI
  int pool_size = 8;                                 ///< connections kept open
  std::chrono::milliseconds acquire_timeout{10000};  ///< wait for a free connection at most this long
  // Added to the connection string unless it sets them itself (see docs/OPERATIONS.md "Timeouts").
  std::chrono::milliseconds connect_timeout{5000};     ///< libpq connect_timeout (whole seconds, at least 2)
  std::chrono::milliseconds tcp_user_timeout{15000};   ///< libpq tcp_user_timeout; keepalives idle = 1/3 of it
  std::chrono::milliseconds statement_timeout{30000};  ///< SET statement_timeout on pool sessions; 0 = none
  std::chrono::milliseconds idle_in_transaction_timeout{60000};  ///< SET idle_in_transaction_session_timeout
  /// `url` reaches PostgreSQL through a transaction-pooling proxy (pgbouncer pool_mode=transaction): consecutive
  /// transactions may run on different server sessions, so statements are sent unnamed (no PREPARE) and the
  /// settings above are applied with SET LOCAL in every transaction instead of once per session.
  bool transaction_pooler = false;
  bool report_pool = true;  ///< report size/in-use to the observer (the main pool; not replica or resolver pools)
};

/// `url` with connect_timeout, keepalives and tcp_user_timeout added (URI or key=value form); a parameter the
/// url already sets is left alone.
std::string WithConnectionSettings(const std::string& url, const DatabaseOptions& options);

/// A small pool of PostgreSQL connections (one connection is one libpqxx "world", used by one thread
/// at a time). Thread-safe. Statements are prepared lazily per connection.
class Database final {
 public:
  Database(DatabaseOptions options, StorageObserver* observer);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  /// Throws StorageError(kUnavailable) when the database cannot be reached.
  void Ping();
  /// True when every embedded migration is applied.
  bool IsMigrated();
  /// While set, taking a pool connection fails at once with kUnavailable naming `reason` (set by the readiness
  /// probe when the database stops answering, so callers fail fast instead of hanging); "" clears it.
  void SetUnavailable(const std::string& reason);
  const DatabaseOptions& options() const;
  StorageObserver* observer() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

/// Redacts the password of a connection string or URI, for logs.
std::string RedactUrl(std::string_view url);

}  // namespace nexus::storage
