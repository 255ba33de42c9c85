#include "server/resolver_worker.h"

#include <algorithm>

#include "common/log.h"
#include "storage/errors.h"

namespace nexus::server {

ResolverWorker::ResolverWorker(storage::Database& db, std::string url, Metrics& metrics,
                               const ProtectionHolder& protection, Options options)
    : db_(db),
      url_(std::move(url)),
      metrics_(metrics),
      protection_(protection),
      options_(options),
      store_(std::make_unique<storage::ResolverStore>(db, url_)) {}

ResolverWorker::~ResolverWorker() { Stop(); }

std::chrono::milliseconds ResolverWorker::Backoff(std::chrono::milliseconds poll_interval, int64_t failures) {
  constexpr std::chrono::milliseconds kMax{60000};
  auto d = std::max(poll_interval, std::chrono::milliseconds(100));
  for (int64_t i = 1; i < failures && d < kMax; ++i) d *= 2;
  return std::min(d, kMax);
}

void ResolverWorker::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = true;
  }
  thread_ = std::thread([this] { Loop(); });
}

void ResolverWorker::RequestStop() {
  stop_ = true;
  Wake();
}

void ResolverWorker::Stop() {
  if (!thread_.joinable()) return;
  RequestStop();
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
  log::Debug("resolver batch", {{"events", static_cast<long long>(s.events)},
                                {"duration_s", s.seconds},
                                {"persons_born", static_cast<long long>(s.persons.born)},
                                {"persons_merged", static_cast<long long>(s.persons.merged)},
                                {"groups_born", static_cast<long long>(s.groups.born)}});
}

void ResolverWorker::PublishStatus(bool force) {
  // Called from the worker loop and from ResolveNow's caller (an admin RPC thread): one at a time.
  std::lock_guard<std::mutex> lock(status_mu_);
  const auto now = std::chrono::steady_clock::now();
  // Counting a large backlog is not free: while busy, publish every 5 s; when idle, every loop.
  if (!force && now - last_status_ < std::chrono::seconds(5)) return;
  last_status_ = now;
  try {
    const auto st = storage::ResolverStore::Status(db_);
    metrics_.ResolverStatus(active_, st.lag_seconds, static_cast<double>(st.events_pending),
                            static_cast<double>(st.persons), static_cast<double>(st.groups));
    const auto g = store_->graph_info();
    metrics_.ResolverGraph(static_cast<double>(g.identifiers), static_cast<double>(g.bytes), g.load_seconds);
  } catch (const std::exception& e) {
    log::Warn("resolver status unavailable", {{"cause", e.what()}});
  }
}

void ResolverWorker::MaintainPartitions() {
  const auto now = std::chrono::steady_clock::now();
  if (now < next_partition_check_) return;
  try {
    const int created = storage::ResolverStore::EnsureLogPartitions(db_, options_.partition_months_ahead);
    if (created > 0) log::Info("core log partitions created", {{"partitions", static_cast<long long>(created)}});
    next_partition_check_ = now + std::chrono::hours(1);
  } catch (const std::exception& e) {
    // Not fatal: ingest creates the month of an event that has none before writing it.
    log::Warn("core log partition maintenance failed; retrying in 5 minutes", {{"cause", e.what()}});
    next_partition_check_ = now + std::chrono::minutes(5);
  }
}

void ResolverWorker::Loop() {
  while (!stop_) {
    // Run queued exclusive tasks first (admin rebuild, release, ResolveNow).
    for (;;) {
      Job job;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (jobs_.empty()) break;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      RunJob(job);
    }
    bool did_work = false;
    try {
      if (!store_->holds_lock()) {
        if (store_->TryAcquireLock()) log::Info("resolver lock acquired: this replica resolves");
      }
      active_ = store_->holds_lock();
      if (active_) MaintainPartitions();
      if (active_) {
        const auto stats = store_->RunBatch(options_.batch_events, *protection_.Get());
        if (stats.events > 0) {
          Record(stats);
          did_work = true;
        }
      }
      failures_ = 0;
      metrics_.ResolverFailures(0);
    } catch (const std::exception& e) {
      metrics_.ResolverError();
      ++failures_;
      metrics_.ResolverFailures(failures_);
      const auto backoff = Backoff(options_.poll_interval, failures_);
      log::Error("resolver batch failed; rolled back, will retry",
                 {{"cause", e.what()},
                  {"consecutive_failures", static_cast<long long>(failures_)},
                  {"retry_in_ms", static_cast<long long>(backoff.count())}});
      active_ = store_->holds_lock();
      PublishStatus(false);
      // Back off: neither new ingest nor the poll interval wakes the retry, only stop and queued tasks.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, backoff, [this] { return stop_ || !jobs_.empty(); });
      woken_ = false;
      continue;
    }
    PublishStatus(did_work == false);
    if (did_work) continue;  // drain the backlog before sleeping
    if (active_) {
      // LISTEN on the lock session; wake also from Wake() via the short inner waits.
      const auto deadline = std::chrono::steady_clock::now() + options_.poll_interval;
      while (!stop_ && std::chrono::steady_clock::now() < deadline) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (woken_ || !jobs_.empty()) {
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
      cv_.wait_for(lock, options_.poll_interval, [this] { return woken_ || stop_ || !jobs_.empty(); });
      woken_ = false;
    }
  }
  std::deque<Job> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    left.swap(jobs_);
  }
  for (auto& job : left) RunJob(job);  // stop_ is set: each fails at once
  store_->Release();
  active_ = false;
  metrics_.ResolverStatus(false, 0, 0, 0, 0);
}

void ResolverWorker::RunJob(Job& job) {
  try {
    const auto deadline = std::chrono::steady_clock::now() + job.wait_for_lock;
    for (;;) {
      if (stop_) throw std::runtime_error("the resolver is stopping (nexusd is shutting down)");
      if (store_->holds_lock() || store_->TryAcquireLock()) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw std::runtime_error("another nexusd replica holds the resolver lock; ask that one");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    active_ = true;
    if (job.start) job.start(*store_);
  } catch (...) {
    job.started.set_exception(std::current_exception());
    return;
  }
  job.started.set_value();
  if (!job.then) return;
  try {
    job.then(*store_);
  } catch (const std::exception& e) {  // `then` handles its own errors; this keeps the loop alive regardless
    log::Error("resolver background task failed", {{"cause", e.what()}});
  }
}

void ResolverWorker::StartExclusive(const std::function<void(storage::ResolverStore&)>& start,
                                    std::function<void(storage::ResolverStore&)> then,
                                    std::chrono::milliseconds wait_for_lock) {
  Job job{start, std::move(then), wait_for_lock, {}};
  auto started = job.started.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) throw std::runtime_error("the resolver is stopping (nexusd is shutting down)");
    if (!accepting_) throw std::runtime_error("the resolver does not run in this process (--resolver=false)");
    jobs_.push_back(std::move(job));
  }
  Wake();
  started.get();  // rethrows the job's error
}

void ResolverWorker::RunExclusive(const std::function<void(storage::ResolverStore&)>& task,
                                  std::chrono::milliseconds wait_for_lock) {
  StartExclusive(task, nullptr, wait_for_lock);
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
