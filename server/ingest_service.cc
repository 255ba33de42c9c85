#include "server/ingest_service.h"

#include <grpcpp/support/method_handler.h>

#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <type_traits>

#include "resolver/normalize.h"
#include "server/rpc_util.h"

namespace nexus::server {
namespace {
/// Bounds the response: a request of 1,000 events full of junk values need not list every row.
constexpr int kMaxBlockedListed = 100;
}  // namespace

grpc::Status IngestHandler::CheckSources(const v1::IngestEventsRequest& request, const Principal* caller) const {
  if (caller && !caller->sources.empty()) {
    for (int i = 0; i < request.events_size(); ++i) {
      const std::string& source = request.events(i).source();
      if (caller->MayWriteSource(source)) continue;
      std::string allowed;
      for (const auto& s : caller->sources) allowed += (allowed.empty() ? "" : ", ") + s;
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "events[" + std::to_string(i) + "].source: API key " +
                                                                   caller->key_id + " may not write source '" + source +
                                                                   "' (it is bound to: " + allowed +
                                                                   "); nothing was written");
    }
  }
  return grpc::Status::OK;
}

namespace {
int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

grpc::Status IngestHandler::Ingest(const v1::IngestEventsRequest& request, v1::IngestEventsResponse* response,
                                   const Principal* caller) {
  if (auto s = CheckSources(request, caller); !s.ok()) return s;
  std::vector<storage::EventRecord> records;
  auto problems = ConvertIngestRequest(request, limits_, *protection_.Get(), NowMicros(), &records);
  if (!problems.empty()) {
    std::map<std::string, double> by_source;
    for (const auto& e : request.events()) by_source[e.source().empty() ? "unknown" : e.source()] += 1;
    for (const auto& [s, k] : by_source) metrics_.IngestEvents(s, "rejected", k);
    std::string msg = "invalid ingest request: ";
    for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
  }
  Write(records, response);
  return grpc::Status::OK;
}

grpc::Status IngestHandler::IngestValid(const v1::IngestEventsRequest& request, v1::IngestEventsResponse* response,
                                        std::vector<RejectedEvent>* rejected, const Principal* caller) {
  rejected->clear();
  if (request.events_size() > limits_.max_events_per_request) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "events: " + std::to_string(request.events_size()) + " events, at most " +
                            std::to_string(limits_.max_events_per_request) + " per request");
  }
  if (auto s = CheckSources(request, caller); !s.ok()) return s;
  const int64_t now_us = NowMicros();
  const auto protection = protection_.Get();
  std::vector<storage::EventRecord> records;
  std::map<std::string, double> rejected_by_source;
  v1::IngestEventsRequest one;
  for (int i = 0; i < request.events_size(); ++i) {
    one.clear_events();
    *one.add_events() = request.events(i);
    std::vector<storage::EventRecord> converted;
    auto problems = ConvertIngestRequest(one, limits_, *protection, now_us, &converted);
    if (!problems.empty()) {
      rejected->push_back({i, std::move(problems)});
      const std::string& source = request.events(i).source();
      rejected_by_source[source.empty() ? "unknown" : source] += 1;
      continue;
    }
    for (auto& r : converted) records.push_back(std::move(r));
  }
  for (const auto& [s, k] : rejected_by_source) metrics_.IngestEvents(s, "rejected", k);
  if (!records.empty()) Write(records, response);
  return grpc::Status::OK;
}

void IngestHandler::Write(const std::vector<storage::EventRecord>& records, v1::IngestEventsResponse* response) {
  const auto start = std::chrono::steady_clock::now();
  storage::IngestResult r = store_.Ingest(records);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics_.IngestBatch(static_cast<double>(records.size()), secs);
  for (const auto& [table, n] : r.rows_by_table) metrics_.IngestRows(table, static_cast<double>(n));
  // Per source: accepted = written now; everything else (stored before, or repeated in the request) is a duplicate.
  // The store lists an id once per copy it did not write: k copies in the request and k listings mean none was
  // written; fewer listings mean the first copy was written.
  std::map<std::string, int> copies, listed;
  for (const auto& rec : records) ++copies[rec.event_id];
  for (const auto& d : r.duplicate_event_ids) ++listed[d];
  std::map<std::string, std::pair<double, double>> by_source;
  std::set<std::string> counted;
  for (const auto& rec : records) {
    auto& slot = by_source[rec.source];
    const bool first = counted.insert(rec.event_id).second;
    const bool written = listed[rec.event_id] < copies[rec.event_id];
    (first && written ? slot.first : slot.second) += 1;
  }
  for (const auto& [s, k] : by_source) {
    metrics_.IngestEvents(s, "accepted", k.first);
    metrics_.IngestEvents(s, "duplicate", k.second);
  }
  response->set_accepted(r.accepted);
  response->set_duplicates(static_cast<int64_t>(r.duplicate_event_ids.size()));
  for (const auto& d : r.duplicate_event_ids) response->add_duplicate_event_ids(d);
  response->set_blocked_identifiers(r.blocked_identifiers);
  response->set_suppressed_identifiers(r.suppressed_identifiers);
  response->set_suppressed_events(r.suppressed_events);
  metrics_.IngestSuppressed(static_cast<double>(r.suppressed_identifiers));
  response->set_commit_lsn(r.commit_lsn);
  for (const auto& rec : records) {
    for (const auto* rows : {&rec.person_identifiers, &rec.group_identifiers}) {
      for (const auto& row : *rows) {
        if (row.blocked && response->blocked_size() < kMaxBlockedListed)
          response->add_blocked(row.path + " (" + row.type + "): " + row.blocked_reason);
      }
    }
  }
  if (r.accepted > 0 && on_commit_) on_commit_();
}

grpc::Status IngestServiceImpl::IngestEvents(grpc::ServerContext* ctx, const v1::IngestEventsRequest* request,
                                             v1::IngestEventsResponse* response) {
  return HandleRpc(metrics_, auth_, ctx, "IngestEvents",
                   [&](CallContext& call) { return handler_.Ingest(*request, response, &call.principal); });
}

grpc::Status IngestServiceImpl::IngestEventStream(
    grpc::ServerContext*, grpc::ServerReaderWriter<v1::IngestEventsResponse, v1::IngestEventsRequest>*) {
  // Never called: the constructor replaces this method's handler with RawIngestEventStream.
  return grpc::Status(grpc::StatusCode::INTERNAL, "IngestEventStream: raw handler not installed");
}

IngestServiceImpl::IngestServiceImpl(IngestHandler& handler, Metrics& metrics, Authenticator* auth)
    : handler_(handler), metrics_(metrics), auth_(auth) {
  // Method index 1 is IngestEventStream (ingest.proto order). The generated service already declares it
  // bidi-streaming; this swaps in a handler with the same wire shape that sees the undecoded bytes.
  static_assert(std::is_base_of_v<grpc::Service, v1::IngestService::Service>);
  MarkMethodStreamed(1, new grpc::internal::BidiStreamingHandler<IngestServiceImpl, grpc::ByteBuffer, grpc::ByteBuffer>(
                            [](IngestServiceImpl* self, grpc::ServerContext* ctx,
                               grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
                              return self->RawIngestEventStream(ctx, stream);
                            },
                            this));
}

grpc::Status IngestServiceImpl::RawIngestEventStream(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream) {
  return HandleRpc(metrics_, auth_, ctx, "IngestEventStream", [&](CallContext& call) -> grpc::Status {
    grpc::ByteBuffer raw;
    int64_t n = 0;
    while (stream->Read(&raw)) {
      ++n;
      if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the stream");
      v1::IngestEventsRequest request;
      if (!grpc::SerializationTraits<v1::IngestEventsRequest>::Deserialize(&raw, &request).ok()) {
        // Earlier batches were acknowledged and stay committed; this one and the rest of the stream are not.
        return UndecodableMessage(metrics_, "IngestEventStream", "nexus.v1.IngestEventsRequest",
                                  "stream message " + std::to_string(n) + " (" + std::to_string(n - 1) +
                                      " earlier batches were acknowledged and committed; nothing after them was)");
      }
      v1::IngestEventsResponse response;
      // A bad batch ends the stream with its error: earlier batches were acknowledged and stay committed.
      grpc::Status s = handler_.Ingest(request, &response, &call.principal);
      if (!s.ok()) return s;
      grpc::ByteBuffer out;
      bool own = false;
      grpc::Status ser = grpc::SerializationTraits<v1::IngestEventsResponse>::Serialize(response, &out, &own);
      if (!ser.ok()) return ser;
      if (!stream->Write(out)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    return grpc::Status::OK;
  });
}

}  // namespace nexus::server
