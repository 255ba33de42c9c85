#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "server/metrics.h"
#include "server/protection_holder.h"
#include "storage/resolver_store.h"

namespace nexus::storage {
class Database;
}

namespace nexus::server {

/// Runs the incremental resolver in the background: takes the resolver lock (another replica takes over
/// when the holder dies), resolves pending events in bounded batches, sleeps until ingest notifies it or
/// the poll interval passes, and publishes status metrics.
class ResolverWorker final {
 public:
  struct Options {
    int64_t batch_events = 5000;
    std::chrono::milliseconds poll_interval{1000};
    int partition_months_ahead = 3;  ///< core-log partitions kept ahead (checked hourly by the lock holder)
  };
  ResolverWorker(storage::Database& db, std::string url, Metrics& metrics, const ProtectionHolder& protection,
                 Options options);
  ~ResolverWorker();
  ResolverWorker(const ResolverWorker&) = delete;
  ResolverWorker& operator=(const ResolverWorker&) = delete;

  void Start();
  /// Asks the loop to stop without waiting: a running rebuild sees `stopping()` and rolls back, queued
  /// exclusive tasks fail, the batch in progress finishes (or rolls back on error).
  void RequestStop();
  /// RequestStop, then waits for the thread, which releases the lock.
  void Stop();
  /// Wakes the loop now (ingest committed something).
  void Wake();
  bool active() const { return active_.load(); }
  /// True once Stop/RequestStop was called (the cancel hook of long exclusive tasks).
  bool stopping() const { return stop_.load(); }

  /// Runs `task` on the worker thread while it holds the lock; throws std::runtime_error when this
  /// replica cannot take it within `wait_for_lock` or the worker is not running or stopping. Blocks until the
  /// task is done.
  void RunExclusive(const std::function<void(storage::ResolverStore&)>& task,
                    std::chrono::milliseconds wait_for_lock = std::chrono::milliseconds(5000));
  /// Like RunExclusive, but returns as soon as `start` has run on the worker thread (lock held); `then` runs
  /// right after it on the same thread, in the background, and must handle its own errors. Errors of taking
  /// the lock and of `start` are thrown here (and `then` does not run).
  void StartExclusive(const std::function<void(storage::ResolverStore&)>& start,
                      std::function<void(storage::ResolverStore&)> then, std::chrono::milliseconds wait_for_lock);
  /// Runs batches until one finds nothing below the horizon (tests). Events committed after a transaction still
  /// open in this database stay pending: see PgTest::ResolveAll for "until nothing committed is left". Returns
  /// the events resolved.
  int64_t ResolveNow();
  /// Wait before retrying after `failures` consecutive failed batches: the poll interval (at least 100 ms),
  /// doubled per further failure, at most 60 s.
  static std::chrono::milliseconds Backoff(std::chrono::milliseconds poll_interval, int64_t failures);

 private:
  struct Job {
    std::function<void(storage::ResolverStore&)> start;
    std::function<void(storage::ResolverStore&)> then;
    std::chrono::milliseconds wait_for_lock{0};
    std::promise<void> started;  ///< set after `start` (or with the error)
  };
  void Loop();
  void RunJob(Job& job);
  void PublishStatus(bool force);
  /// Keeps the core log's month partitions ahead (hourly; retried after 5 minutes on failure). Lock holder only.
  void MaintainPartitions();
  void Record(const storage::BatchStats& s);

  storage::Database& db_;
  std::string url_;
  Metrics& metrics_;
  const ProtectionHolder& protection_;
  Options options_;
  std::unique_ptr<storage::ResolverStore> store_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> active_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool accepting_ = false;  ///< guarded by mu_: the loop runs and takes jobs
  std::deque<Job> jobs_;
  int64_t failures_ = 0;                                          ///< consecutive failed batches; worker thread only
  std::chrono::steady_clock::time_point next_partition_check_{};  ///< worker thread only
  std::mutex status_mu_;                                          ///< serializes PublishStatus
  std::chrono::steady_clock::time_point last_status_{};           ///< guarded by status_mu_
};

}  // namespace nexus::server
