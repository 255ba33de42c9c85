#include "server/resolver_worker.h"

#include "common/log.h"
#include "storage/errors.h"

namespace nexus::server {

ResolverWorker::ResolverWorker(storage::Database& db, std::string url, Metrics& metrics,
                               const ProtectionHolder& protection, Options options)
    : db_(db), url_(std::move(url)), metrics_(metrics), protection_(protection), options_(options),
      store_(std::make_unique<storage::ResolverStore>(db, url_)) {}

ResolverWorker::~ResolverWorker() { Stop(); }

void ResolverWorker::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ResolverWorker::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  Wake();
  thread_.join();
}

void ResolverWorker::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void ResolverWorker::Record(const storage::BatchStats& s) {
  metrics_.ResolverBatch(s.seconds, static_cast<double>(s.events));
  for (auto [kind, k] : {std::pair{"person", &s.persons}, std::pair{"group", &s.groups}}) {
    metrics_.ResolverEntities(kind, "born", static_cast<double>(k->born));
    metrics_.ResolverEntities(kind, "accreted", static_cast<double>(k->accreted));
    metrics_.ResolverEntities(kind, "merged", static_cast<double>(k->merged));
    metrics_.ResolverRepointed(kind, static_cast<double>(k->repointed));
    metrics_.ResolverQuarantined(kind, static_cast<double>(k->quarantined));
  }
  log::Debug("resolver batch", {{"events", static_cast<long long>(s.events)}, {"duration_s", s.seconds},
                                {"persons_born", static_cast<long long>(s.persons.born)},
                                {"persons_merged", static_cast<long long>(s.persons.merged)},
                                {"groups_born", static_cast<long long>(s.groups.born)}});
}

void ResolverWorker::PublishStatus(bool force) {
  const auto now = std::chrono::steady_clock::now();
  // Counting a large backlog is not free: while busy, publish every 5 s; when idle, every loop.
  if (!force && now - last_status_ < std::chrono::seconds(5)) return;
  last_status_ = now;
  try {
    const auto st = storage::ResolverStore::Status(db_);
    metrics_.ResolverStatus(active_, st.lag_seconds, static_cast<double>(st.events_pending),
                            static_cast<double>(st.persons), static_cast<double>(st.groups));
  } catch (const std::exception& e) {
    log::Warn("resolver status unavailable", {{"cause", e.what()}});
  }
}

void ResolverWorker::Loop() {
  while (!stop_) {
    // Run queued exclusive tasks first (admin rebuild, release, ResolveNow).
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (tasks_.empty()) break;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
    bool did_work = false;
    try {
      if (!store_->holds_lock()) {
        if (store_->TryAcquireLock()) log::Info("resolver lock acquired: this replica resolves");
      }
      active_ = store_->holds_lock();
      if (active_) {
        const auto stats = store_->RunBatch(options_.batch_events, *protection_.Get());
        if (stats.events > 0) {
          Record(stats);
          did_work = true;
        }
      }
    } catch (const std::exception& e) {
      metrics_.ResolverError();
      log::Error("resolver batch failed; rolled back, will retry", {{"cause", e.what()}});
      active_ = store_->holds_lock();
    }
    PublishStatus(did_work == false);
    if (did_work) continue;  // drain the backlog before sleeping
    if (active_) {
      // LISTEN on the lock session; wake also from Wake() via the short inner waits.
      const auto deadline = std::chrono::steady_clock::now() + options_.poll_interval;
      while (!stop_ && std::chrono::steady_clock::now() < deadline) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (woken_ || !tasks_.empty()) {
            woken_ = false;
            break;
          }
        }
        try {
          if (store_->WaitForIngest(std::chrono::milliseconds(50))) break;
        } catch (const std::exception&) {
          break;
        }
      }
    } else {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, options_.poll_interval, [this] { return woken_ || stop_ || !tasks_.empty(); });
      woken_ = false;
    }
  }
  store_->Release();
  active_ = false;
  metrics_.ResolverStatus(false, 0, 0, 0, 0);
}

void ResolverWorker::RunExclusive(const std::function<void(storage::ResolverStore&)>& task,
                                  std::chrono::milliseconds wait_for_lock) {
  std::exception_ptr error;
  std::packaged_task<void()> job([&] {
    try {
      const auto deadline = std::chrono::steady_clock::now() + wait_for_lock;
      while (!store_->holds_lock() && !store_->TryAcquireLock()) {
        if (std::chrono::steady_clock::now() >= deadline) {
          throw std::runtime_error("another nexusd replica holds the resolver lock; ask that one");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      active_ = true;
      task(*store_);
    } catch (...) {
      error = std::current_exception();
    }
  });
  auto done = job.get_future();
  if (!thread_.joinable()) {
    throw std::runtime_error("the resolver does not run in this process (--resolver=false)");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(job));
  }
  Wake();
  done.wait();
  if (error) std::rethrow_exception(error);
}

int64_t ResolverWorker::ResolveNow() {
  int64_t total = 0;
  RunExclusive([&](storage::ResolverStore& store) {
    for (;;) {
      const auto s = store.RunBatch(options_.batch_events, *protection_.Get());
      if (s.events == 0) break;
      Record(s);
      total += s.events;
    }
  });
  PublishStatus(true);
  return total;
}

}  // namespace nexus::server
