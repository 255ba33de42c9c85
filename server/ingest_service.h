#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nexus/v1/ingest.grpc.pb.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/ingest_convert.h"
#include "server/metrics.h"
#include "server/protection_holder.h"
#include "storage/ingest_store.h"
#include "storage/model.h"

namespace nexus::server {

/// Ingest logic shared by gRPC and HTTP.
class IngestHandler final {
 public:
  IngestHandler(storage::IngestStore& store, Metrics& metrics, IngestLimits limits, const ProtectionHolder& protection,
                std::function<void()> on_commit)
      : store_(store), metrics_(metrics), limits_(limits), protection_(protection), on_commit_(std::move(on_commit)) {}

  /// INVALID_ARGUMENT lists every offending path; PERMISSION_DENIED when `caller` is bound to sources and an
  /// event has another one; nothing is written then. `caller` null: no source restriction.
  grpc::Status Ingest(const v1::IngestEventsRequest& request, v1::IngestEventsResponse* response,
                      const Principal* caller = nullptr);

  /// An event left out by IngestValid, with its problems as for a one-event request ("events[0].<path>: ...").
  struct RejectedEvent {
    int index = 0;  ///< into request.events
    std::vector<std::string> problems;
  };
  /// For clients that cannot repair a batch (the Segment and RudderStack SDKs drop a batch answered 4xx without
  /// retrying it): each event is validated alone; invalid ones are left out and listed in `rejected` (counted
  /// as rejected), the valid ones are written exactly as Ingest writes them, in one transaction. The source
  /// check and the event count limit still fail the whole request. OK with nothing written when no event is
  /// valid.
  grpc::Status IngestValid(const v1::IngestEventsRequest& request, v1::IngestEventsResponse* response,
                           std::vector<RejectedEvent>* rejected, const Principal* caller = nullptr);

 private:
  grpc::Status CheckSources(const v1::IngestEventsRequest& request, const Principal* caller) const;
  /// Writes converted records in one transaction; fills the response and the metrics.
  void Write(const std::vector<storage::EventRecord>& records, v1::IngestEventsResponse* response);
  storage::IngestStore& store_;
  Metrics& metrics_;
  IngestLimits limits_;
  const ProtectionHolder& protection_;
  std::function<void()> on_commit_;
};

/// IngestEventStream reads raw bytes and decodes each message itself: gRPC's own decoding reports a corrupt
/// message exactly like the end of the stream (Read() returns false), so the stream would end OK with data
/// lost. Here a corrupt message ends the stream with INVALID_ARGUMENT naming the message's position.
class IngestServiceImpl final : public v1::IngestService::Service {
 public:
  IngestServiceImpl(IngestHandler& handler, Metrics& metrics, Authenticator* auth);

  grpc::Status IngestEvents(grpc::ServerContext* ctx, const v1::IngestEventsRequest* request,
                            v1::IngestEventsResponse* response) override;
  grpc::Status IngestEventStream(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::IngestEventsResponse, v1::IngestEventsRequest>* stream) override;

 private:
  grpc::Status RawIngestEventStream(grpc::ServerContext* ctx,
                                    grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream);

  IngestHandler& handler_;
  Metrics& metrics_;
  Authenticator* auth_;
};

}  // namespace nexus::server
