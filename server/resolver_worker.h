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
  };
  ResolverWorker(storage::Database& db, std::string url, Metrics& metrics, const ProtectionHolder& protection,
                 Options options);
  ~ResolverWorker();
  ResolverWorker(const ResolverWorker&) = delete;
  ResolverWorker& operator=(const ResolverWorker&) = delete;

  void Start();
  /// Lets the batch in progress finish (or roll back on error), then releases the lock.
  void Stop();
  /// Wakes the loop now (ingest committed something).
  void Wake();
  bool active() const { return active_.load(); }

  /// Runs `task` on the worker thread while it holds the lock; throws std::runtime_error when this
  /// replica does not hold it. Blocks until the task is done.
  void RunExclusive(const std::function<void(storage::ResolverStore&)>& task,
                    std::chrono::milliseconds wait_for_lock = std::chrono::milliseconds(5000));
  /// Resolves until nothing is pending (tests, admin). Returns the events resolved.
  int64_t ResolveNow();

 private:
  void Loop();
  void PublishStatus(bool force);
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
  std::deque<std::packaged_task<void()>> tasks_;
  std::chrono::steady_clock::time_point last_status_{};
};

}  // namespace nexus::server
