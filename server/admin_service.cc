#include "server/admin_service.h"

#include <chrono>

#include "server/rpc_util.h"
#include "storage/resolver_store.h"

namespace nexus::server {

void SetTimestamp(google::protobuf::Timestamp* ts, int64_t micros) {
  int64_t secs = micros / 1000000;
  int64_t frac = micros % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  ts->set_seconds(secs);
  ts->set_nanos(static_cast<int32_t>(frac * 1000));
}

namespace {
void FillQuarantine(const storage::QuarantinedEdgeInfo& q, v1::QuarantinedEdge* out) {
  out->set_quarantine_id(q.quarantine_id);
  out->set_kind(q.kind == "group" ? v1::ENTITY_KIND_GROUP : v1::ENTITY_KIND_PERSON);
  out->set_event_id(q.event_id);
  out->set_edge_id(q.edge_id);
  out->set_source(q.source);
  SetTimestamp(out->mutable_occurred_at(), q.occurred_at_us);
  for (const auto& [t, v] : q.identifiers) {
    auto* id = out->add_identifiers();
    id->set_type(t);
    id->set_value(v);
  }
  out->set_reason(q.reason);
  for (const auto& e : q.entity_ids) out->add_entity_ids(e);
  SetTimestamp(out->mutable_quarantined_at(), q.quarantined_at_us);
  out->set_released(q.released);
}

grpc::Status NoResolver() {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "the resolver does not run in this process (--resolver=false)");
}
}  // namespace

grpc::Status AdminHandler::GetResolverStatus(const v1::GetResolverStatusRequest&, v1::ResolverStatus* out) {
  const auto st = storage::ResolverStore::Status(db_);
  out->set_active(worker_ && worker_->active());
  if (st.watermark_ingested_at_us) SetTimestamp(out->mutable_watermark_ingested_at(), *st.watermark_ingested_at_us);
  out->set_watermark_event_id(st.watermark_event_id);
  out->set_events_pending(st.events_pending);
  out->set_lag_seconds(st.lag_seconds);
  out->set_persons(st.persons);
  out->set_groups(st.groups);
  if (st.last_batch_at_us) SetTimestamp(out->mutable_last_batch_at(), *st.last_batch_at_us);
  out->set_batches_total(st.batches_total);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::Rebuild(const v1::RebuildRequest&, v1::RebuildResponse* out) {
  if (!worker_) return NoResolver();
  storage::RebuildStats stats;
  try {
    worker_->RunExclusive([&](storage::ResolverStore& s) { stats = s.Rebuild(*protection_.Get()); },
                          std::chrono::milliseconds(10000));
  } catch (const storage::StorageError&) {
    throw;
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.what());
  }
  out->set_persons(stats.persons);
  out->set_groups(stats.groups);
  out->set_identifiers(stats.identifiers);
  out->set_seconds(stats.seconds);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ListQuarantinedEdges(const v1::ListQuarantinedEdgesRequest& req,
                                                v1::ListQuarantinedEdgesResponse* out) {
  int limit = req.page_size() <= 0 ? 50 : req.page_size();
  if (limit > 500) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: at most 500");
  int64_t after = 0;
  if (!req.page_token().empty()) {
    try {
      size_t used = 0;
      after = std::stoll(req.page_token(), &used);
      if (used != req.page_token().size() || after < 0) throw std::invalid_argument("token");
    } catch (const std::exception&) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token: malformed");
    }
  }
  const std::string kind = req.kind() == v1::ENTITY_KIND_PERSON ? "person"
                           : req.kind() == v1::ENTITY_KIND_GROUP ? "group" : "";
  auto rows = storage::ResolverStore::ListQuarantined(db_, kind, req.include_released(), after, limit + 1);
  const bool more = static_cast<int>(rows.size()) > limit;
  if (more) rows.resize(static_cast<size_t>(limit));
  for (const auto& q : rows) FillQuarantine(q, out->add_edges());
  if (more && !rows.empty()) out->set_next_page_token(std::to_string(rows.back().quarantine_id));
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ReleaseQuarantinedEdge(const v1::ReleaseQuarantinedEdgeRequest& req,
                                                  v1::ReleaseQuarantinedEdgeResponse* out) {
  if (!worker_) return NoResolver();
  if (req.quarantine_id() <= 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "quarantine_id: missing");
  std::string entity;
  try {
    worker_->RunExclusive([&](storage::ResolverStore& s) {
      entity = s.ReleaseQuarantined(req.quarantine_id(), *protection_.Get());
    });
  } catch (const storage::StorageError&) {
    throw;
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.what());
  }
  auto rows = storage::ResolverStore::ListQuarantined(db_, "", true, req.quarantine_id() - 1, 1);
  if (!rows.empty() && rows[0].quarantine_id == req.quarantine_id()) FillQuarantine(rows[0], out->mutable_edge());
  out->set_entity_id(entity);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ReloadConfig(const v1::ReloadConfigRequest&, v1::ReloadConfigResponse* out) {
  try {
    out->set_summary(protection_.Reload());
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, e.what());
  }
  return grpc::Status::OK;
}

grpc::Status AdminServiceImpl::GetResolverStatus(grpc::ServerContext*, const v1::GetResolverStatusRequest* r,
                                                 v1::ResolverStatus* o) {
  return HandleRpc(m_, "GetResolverStatus", [&] { return h_.GetResolverStatus(*r, o); });
}
grpc::Status AdminServiceImpl::Rebuild(grpc::ServerContext*, const v1::RebuildRequest* r, v1::RebuildResponse* o) {
  return HandleRpc(m_, "Rebuild", [&] { return h_.Rebuild(*r, o); });
}
grpc::Status AdminServiceImpl::ListQuarantinedEdges(grpc::ServerContext*, const v1::ListQuarantinedEdgesRequest* r,
                                                    v1::ListQuarantinedEdgesResponse* o) {
  return HandleRpc(m_, "ListQuarantinedEdges", [&] { return h_.ListQuarantinedEdges(*r, o); });
}
grpc::Status AdminServiceImpl::ReleaseQuarantinedEdge(grpc::ServerContext*,
                                                      const v1::ReleaseQuarantinedEdgeRequest* r,
                                                      v1::ReleaseQuarantinedEdgeResponse* o) {
  return HandleRpc(m_, "ReleaseQuarantinedEdge", [&] { return h_.ReleaseQuarantinedEdge(*r, o); });
}
grpc::Status AdminServiceImpl::ReloadConfig(grpc::ServerContext*, const v1::ReloadConfigRequest* r,
                                            v1::ReloadConfigResponse* o) {
  return HandleRpc(m_, "ReloadConfig", [&] { return h_.ReloadConfig(*r, o); });
}

}  // namespace nexus::server
