#include "server/metrics.h"

#include <dirent.h>
#include <google/protobuf/descriptor.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace nexus::server {
namespace {
using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Histogram;

const Histogram::BucketBoundaries& LatencyBuckets() {
  static const Histogram::BucketBoundaries k = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return k;
}
const Histogram::BucketBoundaries& SizeBuckets() {
  static const Histogram::BucketBoundaries k = {1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000};
  return k;
}

double ProcessStartTime() {
  // /proc/self/stat field 22: start time in clock ticks since boot.
  std::ifstream stat("/proc/self/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto rparen = content.rfind(')');
  if (rparen == std::string::npos) return 0;
  std::istringstream rest(content.substr(rparen + 2));
  std::string field;
  double start_ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22) start_ticks = std::stod(field);
  }
  double btime = 0;
  std::ifstream s("/proc/stat");
  std::string key;
  while (s >> key) {
    if (key == "btime") {
      s >> btime;
      break;
    }
  }
  return btime + start_ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}
}  // namespace

Metrics::Metrics(std::string version, std::string git_sha)
    : registry_(std::make_shared<prometheus::Registry>()),
      grpc_requests_(BuildCounter()
                         .Name("nexus_grpc_requests_total")
                         .Help("gRPC requests handled, by method and status code")
                         .Register(*registry_)),
      grpc_duration_(BuildHistogram()
                         .Name("nexus_grpc_request_duration_seconds")
                         .Help("gRPC request latency, by method and status code")
                         .Register(*registry_)),
      grpc_undecodable_(BuildCounter()
                            .Name("nexus_grpc_undecodable_messages_total")
                            .Help("gRPC request messages that could not be decoded (answered INVALID_ARGUMENT)")
                            .Register(*registry_)),
      http_requests_(BuildCounter()
                         .Name("nexus_http_requests_total")
                         .Help("HTTP requests handled, by route and status")
                         .Register(*registry_)),
      http_duration_(BuildHistogram()
                         .Name("nexus_http_request_duration_seconds")
                         .Help("HTTP request latency, by route and status")
                         .Register(*registry_)),
      auth_requests_(BuildCounter()
                         .Name("nexus_auth_requests_total")
                         .Help("Calls by API key id (never the secret; \"\" = no or unknown key) and auth outcome")
                         .Register(*registry_)),
      ingest_events_(BuildCounter()
                         .Name("nexus_ingest_events_total")
                         .Help("Ingested events by source and result (accepted, duplicate, rejected)")
                         .Register(*registry_)),
      ingest_rows_(BuildCounter()
                       .Name("nexus_ingest_rows_total")
                       .Help("Rows written to the core event log, by table")
                       .Register(*registry_)),
      ingest_suppressed_(BuildCounter()
                             .Name("nexus_ingest_suppressed_identifiers_total")
                             .Help("Identifier rows dropped at ingest because the identifier was erased")
                             .Register(*registry_)
                             .Add({})),
      api_messages_(BuildCounter()
                        .Name("nexus_api_messages_total")
                        .Help("Messages received through a compatibility API (api=\"segment\"), by message type and "
                              "result (accepted, duplicate, rejected)")
                        .Register(*registry_)),
      ingest_batch_events_(BuildHistogram()
                               .Name("nexus_ingest_batch_events")
                               .Help("Events per ingest request")
                               .Register(*registry_)
                               .Add({}, SizeBuckets())),
      ingest_commit_seconds_(BuildHistogram()
                                 .Name("nexus_ingest_commit_duration_seconds")
                                 .Help("Time to write and commit one ingest batch")
                                 .Register(*registry_)
                                 .Add({}, LatencyBuckets())),
      resolver_batch_seconds_(BuildHistogram()
                                  .Name("nexus_resolver_batch_duration_seconds")
                                  .Help("Time to resolve and commit one resolver batch")
                                  .Register(*registry_)
                                  .Add({}, LatencyBuckets())),
      resolver_batch_events_(BuildHistogram()
                                 .Name("nexus_resolver_batch_events")
                                 .Help("Events per resolver batch")
                                 .Register(*registry_)
                                 .Add({}, SizeBuckets())),
      resolver_entities_(BuildCounter()
                             .Name("nexus_resolver_entities_total")
                             .Help("Entity changes by kind (person, group) and outcome (born, accreted, merged)")
                             .Register(*registry_)),
      resolver_repointed_(BuildCounter()
                              .Name("nexus_resolver_ids_repointed_total")
                              .Help("Entity ids absorbed by merges and repointed to the survivor")
                              .Register(*registry_)),
      resolver_quarantined_(BuildCounter()
                                .Name("nexus_resolver_quarantined_edges_total")
                                .Help("Edges not applied because they would break a cap")
                                .Register(*registry_)),
      resolver_errors_(BuildCounter()
                           .Name("nexus_resolver_errors_total")
                           .Help("Resolver batches that failed and were rolled back")
                           .Register(*registry_)
                           .Add({})),
      resolver_failures_(BuildGauge()
                             .Name("nexus_resolver_consecutive_failures")
                             .Help("Resolver batches failed in a row (0 after a successful batch)")
                             .Register(*registry_)
                             .Add({})),
      resolver_stuck_(BuildGauge()
                          .Name("nexus_resolver_stuck")
                          .Help("1 when the resolver failed 5 or more batches in a row and is backing off")
                          .Register(*registry_)
                          .Add({})),
      resolver_active_(BuildGauge()
                           .Name("nexus_resolver_active")
                           .Help("1 when this replica holds the resolver lock")
                           .Register(*registry_)
                           .Add({})),
      resolver_lag_(BuildGauge()
                        .Name("nexus_resolver_watermark_lag_seconds")
                        .Help("Age of the oldest event not yet resolved (0 when caught up)")
                        .Register(*registry_)
                        .Add({})),
      resolver_pending_(BuildGauge()
                            .Name("nexus_resolver_events_pending")
                            .Help("Events ingested but not yet resolved")
                            .Register(*registry_)
                            .Add({})),
      rebuild_running_(BuildGauge()
                           .Name("nexus_resolver_rebuild_running")
                           .Help("1 while a full rebuild runs in this process")
                           .Register(*registry_)
                           .Add({})),
      graph_identifiers_(BuildGauge()
                             .Name("nexus_resolver_graph_identifiers")
                             .Help("Identifiers held by this replica's resident graph (0 when it holds none)")
                             .Register(*registry_)
                             .Add({})),
      graph_bytes_(BuildGauge()
                       .Name("nexus_resolver_graph_bytes")
                       .Help("Approximate memory of the resident graph, taken when it was loaded or rebuilt")
                       .Register(*registry_)
                       .Add({})),
      graph_load_seconds_(BuildGauge()
                              .Name("nexus_resolver_graph_load_seconds")
                              .Help("How long the last load of the resident graph from the database took")
                              .Register(*registry_)
                              .Add({})),
      rebuilds_(BuildCounter()
                    .Name("nexus_resolver_rebuilds_total")
                    .Help("Full rebuilds finished in this process, by result (succeeded, failed, cancelled)")
                    .Register(*registry_)),
      entities_(BuildGauge()
                    .Name("nexus_entities")
                    .Help("Current number of resolved entities, by kind")
                    .Register(*registry_)),
      db_up_(BuildGauge()
                 .Name("nexus_db_up")
                 .Help("1 while the database answers the readiness probe within --db-probe-timeout")
                 .Register(*registry_)
                 .Add({})),
      db_oldest_writer_pid_(BuildGauge()
                                .Name("nexus_db_oldest_write_transaction_pid")
                                .Help("Backend pid of the oldest open writing transaction in this database (0: none)")
                                .Register(*registry_)
                                .Add({})),
      db_oldest_writer_age_(BuildGauge()
                                .Name("nexus_db_oldest_write_transaction_age_seconds")
                                .Help("Age of the oldest open writing transaction; resolver progress waits for it")
                                .Register(*registry_)
                                .Add({})),
      replica_up_(BuildGauge()
                      .Name("nexus_replica_up")
                      .Help("Read replica (by index of --read-database-url) answered the last lag poll (1) or not (0)")
                      .Register(*registry_)),
      replica_lag_seconds_(BuildGauge()
                               .Name("nexus_replica_lag_seconds")
                               .Help("How long the primary has had WAL this replica has not replayed")
                               .Register(*registry_)),
      replica_lag_bytes_(BuildGauge()
                             .Name("nexus_replica_lag_bytes")
                             .Help("Primary WAL position minus the replica's replay position")
                             .Register(*registry_)),
      reads_(BuildCounter()
                 .Name("nexus_query_reads_total")
                 .Help("Query transactions by where they ran (primary, or a read replica)")
                 .Register(*registry_)),
      reads_primary_(reads_.Add({{"target", "primary"}})),
      reads_replica_(reads_.Add({{"target", "replica"}})),
      db_pool_size_(BuildGauge()
                        .Name("nexus_db_pool_connections")
                        .Help("Open connections in the database pool")
                        .Register(*registry_)
                        .Add({})),
      db_pool_in_use_(BuildGauge()
                          .Name("nexus_db_pool_connections_in_use")
                          .Help("Pool connections currently lent out")
                          .Register(*registry_)
                          .Add({})),
      db_query_duration_(BuildHistogram()
                             .Name("nexus_db_query_duration_seconds")
                             .Help("Database statement latency, by statement name")
                             .Register(*registry_)),
      db_errors_(BuildCounter().Name("nexus_db_errors_total").Help("Database errors by kind").Register(*registry_)),
      process_cpu_(BuildCounter()
                       .Name("process_cpu_seconds_total")
                       .Help("Total user and system CPU time spent in seconds")
                       .Register(*registry_)
                       .Add({})),
      process_rss_(BuildGauge()
                       .Name("process_resident_memory_bytes")
                       .Help("Resident memory size in bytes")
                       .Register(*registry_)
                       .Add({})),
      process_vsize_(BuildGauge()
                         .Name("process_virtual_memory_bytes")
                         .Help("Virtual memory size in bytes")
                         .Register(*registry_)
                         .Add({})),
      process_open_fds_(
          BuildGauge().Name("process_open_fds").Help("Number of open file descriptors").Register(*registry_).Add({})),
      process_max_fds_(BuildGauge()
                           .Name("process_max_fds")
                           .Help("Maximum number of open file descriptors")
                           .Register(*registry_)
                           .Add({})),
      process_start_time_(BuildGauge()
                              .Name("process_start_time_seconds")
                              .Help("Start time of the process since the epoch in seconds")
                              .Register(*registry_)
                              .Add({})) {
  BuildGauge()
      .Name("nexus_build_info")
      .Help("Build information; always 1")
      .Register(*registry_)
      .Add({{"version", std::move(version)}, {"git_sha", std::move(git_sha)}})
      .Set(1);
  process_start_time_.Set(ProcessStartTime());
  for (const char* kind : {"person", "group"}) {
    entities_.Add({{"kind", kind}});
    resolver_repointed_.Add({{"kind", kind}});
    resolver_quarantined_.Add({{"kind", kind}});
    for (const char* outcome : {"born", "accreted", "merged"})
      resolver_entities_.Add({{"kind", kind}, {"outcome", outcome}});
  }
  // Every method of every service, at 0 from the start (one series per method: bounded).
  for (const char* service : {"nexus.v1.IngestService", "nexus.v1.QueryService", "nexus.v1.AdminService"}) {
    if (const auto* d = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service)) {
      for (int i = 0; i < d->method_count(); ++i) {
        const std::string& m = d->method(i)->name();
        grpc_undecodable_.Add({{"method", m}});
        // Requests and latency by (method, OK) exist before the first call, so the families are visible and
        // rate() sees the first request; other codes appear when they happen.
        ObserveGrpcSeries(m, "OK");
      }
    }
  }
  for (const char* result : {"succeeded", "failed", "cancelled"}) rebuilds_.Add({{"result", result}});
  for (const char* table : {"events", "person_identifiers", "person_traits", "group_identifiers", "group_traits",
                            "membership_identifiers"}) {
    ingest_rows_.Add({{"table", table}});
  }
  // Error kinds are a fixed set (storage/database.cc MapException); exporting them at 0 from the start lets
  // rate()/increase() see the first error (a series born at 1 shows no increase) and keeps the family visible.
  for (const char* kind : {"connection", "serialization", "deadlock", "constraint", "data", "other"}) {
    db_errors_.Add({{"kind", kind}});
  }
}

std::string Metrics::SourceLabel(std::string_view source) {
  std::lock_guard<std::mutex> lock(mu_);
  if (sources_.find(source) != sources_.end()) return std::string(source);
  if (sources_.size() >= kMaxSources) return "other";
  sources_.emplace(std::string(source), true);
  return std::string(source);
}

void Metrics::ObserveGrpc(std::string_view method, std::string_view code, double seconds) {
  auto [requests, duration] = ObserveGrpcSeries(method, code);
  requests->Increment();
  duration->Observe(seconds);
}

std::pair<prometheus::Counter*, prometheus::Histogram*> Metrics::ObserveGrpcSeries(std::string_view method,
                                                                                   std::string_view code) {
  std::string key = std::string(method) + '\x1f' + std::string(code);
  auto labels = [&] { return prometheus::Labels{{"method", std::string(method)}, {"code", std::string(code)}}; };
  return {&counters_.Get("g" + key, grpc_requests_, labels),
          &histograms_.Get("g" + key, grpc_duration_, labels, LatencyBuckets())};
}

void Metrics::GrpcUndecodable(std::string_view method) {
  counters_
      .Get("u" + std::string(method), grpc_undecodable_,
           [&] {
             return prometheus::Labels{{"method", std::string(method)}};
           })
      .Increment();
}

void Metrics::ObserveHttp(std::string_view route, int status, double seconds) {
  std::string key = std::string(route) + '\x1f' + std::to_string(status);
  auto labels = [&] { return prometheus::Labels{{"route", std::string(route)}, {"status", std::to_string(status)}}; };
  counters_.Get("h" + key, http_requests_, labels).Increment();
  histograms_.Get("h" + key, http_duration_, labels, LatencyBuckets()).Observe(seconds);
}

void Metrics::ObserveAuth(std::string_view key_id, std::string_view outcome) {
  auth_requests_.Add({{"key_id", std::string(key_id)}, {"outcome", std::string(outcome)}}).Increment();
}

void Metrics::IngestEvents(std::string_view source, std::string_view result, double n) {
  if (n <= 0) return;
  const std::string label = SourceLabel(source);
  counters_
      .Get("i" + label + '\x1f' + std::string(result), ingest_events_,
           [&] {
             return prometheus::Labels{{"source", label}, {"result", std::string(result)}};
           })
      .Increment(n);
}

void Metrics::IngestSuppressed(double n) {
  if (n > 0) ingest_suppressed_.Increment(n);
}

void Metrics::ApiMessages(std::string_view api, std::string_view type, std::string_view result, double n) {
  if (n <= 0) return;
  counters_
      .Get("a" + std::string(api) + '\x1f' + std::string(type) + '\x1f' + std::string(result), api_messages_,
           [&] {
             return prometheus::Labels{
                 {"api", std::string(api)}, {"type", std::string(type)}, {"result", std::string(result)}};
           })
      .Increment(n);
}

void Metrics::IngestRows(std::string_view table, double n) {
  counters_
      .Get("r" + std::string(table), ingest_rows_,
           [&] {
             return prometheus::Labels{{"table", std::string(table)}};
           })
      .Increment(n);
}

void Metrics::IngestBatch(double events, double commit_seconds) {
  ingest_batch_events_.Observe(events);
  ingest_commit_seconds_.Observe(commit_seconds);
}

void Metrics::ResolverBatch(double seconds, double events) {
  resolver_batch_seconds_.Observe(seconds);
  resolver_batch_events_.Observe(events);
}

void Metrics::ResolverEntities(std::string_view kind, std::string_view outcome, double n) {
  if (n <= 0) return;
  counters_
      .Get("e" + std::string(kind) + '\x1f' + std::string(outcome), resolver_entities_,
           [&] {
             return prometheus::Labels{{"kind", std::string(kind)}, {"outcome", std::string(outcome)}};
           })
      .Increment(n);
}

void Metrics::ResolverRepointed(std::string_view kind, double n) {
  if (n > 0)
    counters_
        .Get("p" + std::string(kind), resolver_repointed_,
             [&] {
               return prometheus::Labels{{"kind", std::string(kind)}};
             })
        .Increment(n);
}

void Metrics::ResolverQuarantined(std::string_view kind, double n) {
  if (n > 0)
    counters_
        .Get("q" + std::string(kind), resolver_quarantined_,
             [&] {
               return prometheus::Labels{{"kind", std::string(kind)}};
             })
        .Increment(n);
}

void Metrics::ResolverStatus(bool active, double lag_seconds, double events_pending, double persons, double groups) {
  resolver_active_.Set(active ? 1 : 0);
  resolver_lag_.Set(lag_seconds);
  resolver_pending_.Set(events_pending);
  gauges_.Get("person", entities_, [] { return prometheus::Labels{{"kind", "person"}}; }).Set(persons);
  gauges_.Get("group", entities_, [] { return prometheus::Labels{{"kind", "group"}}; }).Set(groups);
}

void Metrics::ResolverError() { resolver_errors_.Increment(); }

void Metrics::ResolverFailures(int64_t consecutive) {
  resolver_failures_.Set(static_cast<double>(consecutive));
  resolver_stuck_.Set(consecutive >= kStuckAfterFailures ? 1 : 0);
}

void Metrics::ResolverGraph(double identifiers, double bytes, double load_seconds) {
  graph_identifiers_.Set(identifiers);
  graph_bytes_.Set(bytes);
  graph_load_seconds_.Set(load_seconds);
}

void Metrics::RebuildStarted() { rebuild_running_.Set(1); }

void Metrics::RebuildFinished(std::string_view result) {
  rebuild_running_.Set(0);
  counters_
      .Get("b" + std::string(result), rebuilds_,
           [&] {
             return prometheus::Labels{{"result", std::string(result)}};
           })
      .Increment();
}

void Metrics::OnStatement(std::string_view name, double seconds, bool /*ok*/) {
  histograms_
      .Get(
          "s" + std::string(name), db_query_duration_,
          [&] {
            return prometheus::Labels{{"statement", std::string(name)}};
          },
          LatencyBuckets())
      .Observe(seconds);
}

void Metrics::OnError(std::string_view kind) {
  counters_.Get("d" + std::string(kind), db_errors_,
                [&] {
                  return prometheus::Labels{{"kind", std::string(kind)}};
                })
      .Increment();
}

void Metrics::DatabaseProbe(bool up, int oldest_writer_pid, double oldest_writer_age_seconds) {
  db_up_.Set(up ? 1 : 0);
  db_oldest_writer_pid_.Set(oldest_writer_pid);
  db_oldest_writer_age_.Set(oldest_writer_age_seconds);
}

void Metrics::OnReplicaStatus(int index, bool up, double lag_seconds, int64_t lag_bytes) {
  const prometheus::Labels labels{{"replica", std::to_string(index)}};
  replica_up_.Add(labels).Set(up ? 1 : 0);
  replica_lag_seconds_.Add(labels).Set(lag_seconds);
  replica_lag_bytes_.Add(labels).Set(static_cast<double>(lag_bytes));
}

void Metrics::OnRead(bool replica) { (replica ? reads_replica_ : reads_primary_).Increment(); }

void Metrics::OnPoolChange(int size, int in_use) {
  db_pool_size_.Set(size);
  db_pool_in_use_.Set(in_use);
}

void Metrics::RefreshProcess() {
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    std::lock_guard<std::mutex> lock(mu_);
    if (cpu > cpu_reported_) {
      process_cpu_.Increment(cpu - cpu_reported_);
      cpu_reported_ = cpu;
    }
  }
  std::ifstream statm("/proc/self/statm");
  double pages_total = 0, pages_rss = 0;
  if (statm >> pages_total >> pages_rss) {
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    process_vsize_.Set(pages_total * page);
    process_rss_.Set(pages_rss * page);
  }
  int fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(d);
    process_open_fds_.Set(fds - 1);  // minus the directory stream itself
  }
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) process_max_fds_.Set(static_cast<double>(rl.rlim_cur));
}

std::string Metrics::Scrape() {
  RefreshProcess();
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

}  // namespace nexus::server
