#pragma once

#include <chrono>
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
};

struct DatabaseOptions {
  std::string url;                                   ///< libpq connection string or URI
  int pool_size = 8;                                 ///< connections kept open
  std::chrono::milliseconds acquire_timeout{10000};  ///< wait for a free connection at most this long
};

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
