#pragma once
// Internal to storage/: the only header that includes libpqxx.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "storage/database.h"
#include "storage/errors.h"

namespace nexus::storage::detail {

/// Formats microseconds since the epoch as a PostgreSQL timestamptz literal in UTC.
std::string FormatTimestamp(int64_t micros);
/// "YYYYMM" (UTC) of a time in microseconds: the suffix of the core log's month partitions (migration 012).
std::string LogMonth(int64_t micros);
/// SQL expression turning a bigint of microseconds since the epoch into timestamptz.
#define NEXUS_US_TO_TS(x) "('epoch'::timestamptz + (" x ") * interval '1 microsecond')"
/// SQL expression turning a timestamptz into bigint microseconds since the epoch (exact).
#define NEXUS_TS_TO_US(x) "(extract(epoch from " x ") * 1000000)::bigint"

/// Renders a text[] literal ('{"a","b",NULL}') for a statement parameter.
/// The keyed hash of an identifier (audit records and the suppression list hold only this, never the value):
/// hex SHA-256 of (installation salt, kind, type, value) joined by U+001F. The salt is resolver_state.id_salt,
/// random per installation: without it a hash cannot be matched against a list of known emails or phones.
/// SQL expressions in, SQL expression out; the one place the rule is written.
inline std::string IdentifierHashSql(const std::string& kind, const std::string& type, const std::string& value) {
  return "encode(sha256(convert_to((SELECT id_salt FROM resolver_state) || chr(31) || " + kind + " || chr(31) || " +
         type + " || chr(31) || " + value + ", 'UTF8')), 'hex')";
}

std::string TextArray(const std::vector<std::string>& values);
std::string TextArray(const std::vector<std::optional<std::string>>& values);
std::string Int64Array(const std::vector<int64_t>& values);
std::string BoolArray(const std::vector<bool>& values);

/// Maps a libpqxx/std exception to (StorageError kind, metric error kind).
StorageError MapException(const std::exception& e, std::string_view context, std::string* metric_kind);
/// True for errors worth retrying the whole transaction for (serialization, deadlock, lost connection).
bool IsRetryable(const std::exception& e);

/// Starts a multi-statement read in `tx` (its first statement): one snapshot (repeatable read, read only), taken
/// after an ACCESS SHARE lock on every table a rebuild swaps in. A rebuild replaces those tables by new ones at its
/// commit, whose rows a snapshot older than that commit cannot see: without the lock, a read that had taken its
/// snapshot before the swap and touched a swapped table after it found the table empty. With it, the swap waits
/// for the read, or the read waits for the swap and sees only the new state.
void BeginSnapshot(pqxx::transaction_base& tx);

/// A pooled connection with the set of statements prepared on it.
struct PooledConnection {
  std::unique_ptr<pqxx::connection> conn;
  std::unordered_set<std::string> prepared;
  bool named_statements = true;  ///< false behind a transaction-pooling proxy: statements go unnamed
};

/// Times a statement and reports it to the observer. Keeps a view of `name`: it must outlive the timer.
class StatementTimer {
 public:
  StatementTimer(StorageObserver* obs, std::string_view name)
      : obs_(obs), name_(name), start_(std::chrono::steady_clock::now()) {}
  ~StatementTimer() {
    if (obs_) obs_->OnStatement(name_, Seconds(), ok_);
  }
  void Ok() { ok_ = true; }
  double Seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  StorageObserver* obs_;
  std::string_view name_;
  std::chrono::steady_clock::time_point start_;
  bool ok_ = false;
};

}  // namespace nexus::storage::detail

namespace nexus::storage {

struct Database::Impl {
  DatabaseOptions options;
  StorageObserver* observer = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::unique_ptr<detail::PooledConnection>> idle;
  int open = 0;
  int in_use = 0;

  std::unique_ptr<detail::PooledConnection> Acquire();
  void Release(std::unique_ptr<detail::PooledConnection> c, bool broken);
  std::string unavailable;  ///< guarded by mu: see Database::SetUnavailable
  /// A new connection with the options' timeouts; `pooled` sessions also get statement_timeout (the resolver's
  /// lock session runs long batches and rebuilds, and is not pooled).
  std::unique_ptr<pqxx::connection> Connect(bool pooled = true);

  /// Prepares `name` with `sql` on the connection the first time it is used there.
  static void Prepare(detail::PooledConnection& c, const std::string& name, const std::string& sql);

  /// Runs `fn(tx, conn)` in one transaction (committed by the caller inside fn or here when fn returns),
  /// retrying retryable failures up to `attempts` times. `what` names the operation for errors and metrics.
  void Run(std::string_view what, const std::function<void(pqxx::work&, detail::PooledConnection&)>& fn,
           int attempts = 3);
  using Body = std::function<void(pqxx::work&, detail::PooledConnection&)>;
  /// Set on the Database that ReadReplicas::reads() hands out: Run goes through it (it picks a replica or the
  /// primary and runs there); such a Database has no pool of its own.
  std::function<void(std::string_view what, const Body& fn, int attempts)> route;
  /// The per-transaction settings statement used behind a transaction pooler.
  std::string LocalSettingsSql() const;

  /// Times one execution of a statement whose text varies (e.g. names a partition): unnamed, so planned for
  /// the values at hand every time. `name` is the metric label.
  template <typename... Args>
  pqxx::result ExecUnprepared(pqxx::work& tx, const std::string& name, const std::string& sql, Args&&... args) {
    detail::StatementTimer t(observer, name);
    pqxx::result r = tx.exec_params(sql, std::forward<Args>(args)...);
    t.Ok();
    return r;
  }

  /// Times one prepared statement execution.
  template <typename... Args>
  pqxx::result Exec(pqxx::work& tx, detail::PooledConnection& c, const std::string& name, const std::string& sql,
                    Args&&... args) {
    if (c.named_statements) Prepare(c, name, sql);
    detail::StatementTimer t(observer, name);
    pqxx::result r = c.named_statements ? tx.exec_prepared(name, std::forward<Args>(args)...)
                                        : tx.exec_params(sql, std::forward<Args>(args)...);
    t.Ok();
    return r;
  }
};

}  // namespace nexus::storage
