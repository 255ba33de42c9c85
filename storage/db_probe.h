#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace nexus::storage {

class Database;

/// What the last probe saw.
struct ProbeResult {
  bool up = false;
  std::string why;  ///< when down: what failed ("did not answer within 2s", the connection error, ...)
  /// The oldest transaction in this database that holds a transaction id (a writer), other than the probe's own.
  /// Resolver progress waits for it (other databases' transactions it skips). pid 0: none.
  int oldest_writer_pid = 0;
  double oldest_writer_age_seconds = 0;
  std::string oldest_writer_state;  ///< pg_stat_activity.state, e.g. "idle in transaction"
  bool reachable = false;           ///< it answered (up may still be false: schema not migrated)
};

/// Checks the database from its own thread and connection, every `interval`, so that readiness answers at once
/// from memory instead of hanging on a database that stopped answering. A probe still unanswered after
/// `timeout` counts as down at once (the watcher does not wait for it). While down, the Database refuses new
/// pool work at once (Database::SetUnavailable), so requests fail fast with UNAVAILABLE instead of hanging.
/// `observe(result, changed)` runs on the watcher thread every 100 ms once a first result exists; `changed` is true
/// at the first call and whenever up/down flips.
class DatabaseProbe final {
 public:
  struct Options {
    std::chrono::milliseconds interval{1000};
    std::chrono::milliseconds timeout{2000};
  };
  DatabaseProbe(Database& db, Options options, std::function<void(const ProbeResult&, bool changed)> observe);
  ~DatabaseProbe();
  DatabaseProbe(const DatabaseProbe&) = delete;
  DatabaseProbe& operator=(const DatabaseProbe&) = delete;

  void Start();
  /// Stops both threads; a probe stuck on a silent database is unblocked by shutting its socket down.
  void Stop();
  /// Waits until the first probe finished (at most `timeout`); false on timeout.
  bool AwaitFirstResult(std::chrono::milliseconds timeout);
  /// The current state, without touching the database (bounded: a probe pending past the timeout is "down").
  ProbeResult Current() const;

 private:
  ProbeResult Evaluate() const;  ///< from the last result and the pending probe's age
  void ProbeLoop();
  void WatchLoop();

  struct Conn;
  Database& db_;
  Options options_;
  std::function<void(const ProbeResult&, bool changed)> on_change_;
  std::unique_ptr<Conn> conn_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  ProbeResult last_;                                     ///< guarded by mu_
  bool have_result_ = false;                             ///< guarded by mu_
  ProbeResult applied_;                                  ///< guarded by mu_: what the watcher last applied
  bool have_applied_ = false;                            ///< guarded by mu_
  std::chrono::steady_clock::time_point pending_since_;  ///< guarded by mu_; epoch = no probe pending
  std::atomic<int> socket_{-1};
  std::thread prober_, watcher_;
};

}  // namespace nexus::storage
