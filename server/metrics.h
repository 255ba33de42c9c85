#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "storage/database.h"

namespace nexus::server {

/// Every metric nexusd exports. Families are built once at start-up; label sets are bounded
/// (methods, routes, tables, statement names are fixed; sources are capped at kMaxSources, then "other").
/// The golden list of names and labels lives in tests/golden/metrics.txt.
class Metrics final : public storage::StorageObserver {
 public:
  static constexpr size_t kMaxSources = 100;

  Metrics(std::string version, std::string git_sha);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  /// The Prometheus text exposition of every metric, with process metrics refreshed.
  std::string Scrape();

  void ObserveGrpc(std::string_view method, std::string_view code, double seconds);
  /// A request message that could not be decoded (counted by method; the RPC itself is in ObserveGrpc).
  void GrpcUndecodable(std::string_view method);
  void ObserveHttp(std::string_view route, int status, double seconds);
  /// One authenticated (or refused) call: key_id is a stored key's id or "" (none/unknown: never a
  /// caller-supplied value), outcome one of the fixed auth outcomes (server/auth.h).
  void ObserveAuth(std::string_view key_id, std::string_view outcome);

  void IngestEvents(std::string_view source, std::string_view result, double n);  // accepted|duplicate|rejected
  /// Identifier rows dropped at ingest because the identifier was erased (suppression list, issue 15).
  void IngestSuppressed(double n);
  void IngestRows(std::string_view table, double n);
  /// Messages received through a compatibility API (api "segment"), by message type (a fixed list, else
  /// "other") and result (accepted|duplicate|rejected). Events they became are also in IngestEvents.
  void ApiMessages(std::string_view api, std::string_view type, std::string_view result, double n);
  void IngestBatch(double events, double commit_seconds);

  void ResolverBatch(double seconds, double events);
  void ResolverEntities(std::string_view kind, std::string_view outcome, double n);  // born|accreted|merged
  void ResolverRepointed(std::string_view kind, double n);
  void ResolverQuarantined(std::string_view kind, double n);
  void ResolverStatus(bool active, double lag_seconds, double events_pending, double persons, double groups);
  void ResolverError();
  /// Consecutive failed batches (0 after a success); the stuck gauge is 1 from kStuckAfterFailures on.
  void ResolverFailures(int64_t consecutive);
  static constexpr int64_t kStuckAfterFailures = 5;
  /// The resident graph of this replica: identifiers held, approximate bytes, last load time (0 when none).
  void ResolverGraph(double identifiers, double bytes, double load_seconds);
  void RebuildStarted();
  void RebuildFinished(std::string_view result);  // succeeded|failed|cancelled

  /// The readiness probe's view: database answering (1/0), and the oldest writing transaction in the cluster
  /// (pid 0 and age 0 when none), which holds back resolver progress.
  void DatabaseProbe(bool up, int oldest_writer_pid, double oldest_writer_age_seconds);

  // storage::StorageObserver
  void OnStatement(std::string_view name, double seconds, bool ok) override;
  void OnError(std::string_view kind) override;
  void OnPoolChange(int size, int in_use) override;
  void OnReplicaStatus(int index, bool up, double lag_seconds, int64_t lag_bytes) override;
  void OnRead(bool replica) override;

  prometheus::Registry& registry() { return *registry_; }

 private:
  /// The (cached) request counter and latency histogram of one (method, code).
  std::pair<prometheus::Counter*, prometheus::Histogram*> ObserveGrpcSeries(std::string_view method,
                                                                            std::string_view code);
  /// Label set -> metric handle, filled on first use. prometheus-cpp's Family::Add builds a whole metric (a
  /// histogram with its buckets) under the family mutex on every call, even when the label set exists, so hot
  /// paths look handles up here instead: one short critical section and no allocation on a hit.
  template <typename T>
  class HandleCache {
   public:
    template <typename MakeLabels, typename... Args>
    T& Get(const std::string& key, prometheus::Family<T>& family, MakeLabels make_labels, Args&&... args) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = handles_.find(key);
      if (it != handles_.end()) return *it->second;
      T& handle = family.Add(make_labels(), std::forward<Args>(args)...);
      handles_.emplace(key, &handle);
      return handle;
    }

   private:
    std::mutex mu_;
    std::unordered_map<std::string, T*> handles_;
  };

  std::string SourceLabel(std::string_view source);
  void RefreshProcess();

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;  // guards label-set creation (prometheus-cpp families are thread-safe; this keeps caches)

  prometheus::Family<prometheus::Counter>& grpc_requests_;
  prometheus::Family<prometheus::Histogram>& grpc_duration_;
  prometheus::Family<prometheus::Counter>& grpc_undecodable_;
  prometheus::Family<prometheus::Counter>& http_requests_;
  prometheus::Family<prometheus::Histogram>& http_duration_;
  prometheus::Family<prometheus::Counter>& auth_requests_;
  prometheus::Family<prometheus::Counter>& ingest_events_;
  prometheus::Family<prometheus::Counter>& ingest_rows_;
  prometheus::Counter& ingest_suppressed_;
  prometheus::Family<prometheus::Counter>& api_messages_;
  prometheus::Histogram& ingest_batch_events_;
  prometheus::Histogram& ingest_commit_seconds_;
  prometheus::Histogram& resolver_batch_seconds_;
  prometheus::Histogram& resolver_batch_events_;
  prometheus::Family<prometheus::Counter>& resolver_entities_;
  prometheus::Family<prometheus::Counter>& resolver_repointed_;
  prometheus::Family<prometheus::Counter>& resolver_quarantined_;
  prometheus::Counter& resolver_errors_;
  prometheus::Gauge& resolver_failures_;
  prometheus::Gauge& resolver_stuck_;
  prometheus::Gauge& resolver_active_;
  prometheus::Gauge& resolver_lag_;
  prometheus::Gauge& resolver_pending_;
  prometheus::Gauge& rebuild_running_;
  prometheus::Gauge& graph_identifiers_;
  prometheus::Gauge& graph_bytes_;
  prometheus::Gauge& graph_load_seconds_;
  prometheus::Family<prometheus::Counter>& rebuilds_;
  prometheus::Family<prometheus::Gauge>& entities_;
  prometheus::Gauge& db_up_;
  prometheus::Gauge& db_oldest_writer_pid_;
  prometheus::Gauge& db_oldest_writer_age_;
  prometheus::Family<prometheus::Gauge>& replica_up_;
  prometheus::Family<prometheus::Gauge>& replica_lag_seconds_;
  prometheus::Family<prometheus::Gauge>& replica_lag_bytes_;
  prometheus::Family<prometheus::Counter>& reads_;
  prometheus::Counter& reads_primary_;
  prometheus::Counter& reads_replica_;
  prometheus::Gauge& db_pool_size_;
  prometheus::Gauge& db_pool_in_use_;
  prometheus::Family<prometheus::Histogram>& db_query_duration_;
  prometheus::Family<prometheus::Counter>& db_errors_;
  prometheus::Counter& process_cpu_;
  prometheus::Gauge& process_rss_;
  prometheus::Gauge& process_vsize_;
  prometheus::Gauge& process_open_fds_;
  prometheus::Gauge& process_max_fds_;
  prometheus::Gauge& process_start_time_;
  HandleCache<prometheus::Counter> counters_;  // keys start with the family's name
  HandleCache<prometheus::Histogram> histograms_;
  HandleCache<prometheus::Gauge> gauges_;
  double cpu_reported_ = 0;
  std::map<std::string, bool, std::less<>> sources_;
};

}  // namespace nexus::server
