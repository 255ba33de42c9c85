#include "server/admin_service.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>

#include "common/log.h"
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

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
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

grpc::Status AdminHandler::Rebuild(const v1::RebuildRequest& req, v1::RebuildResponse* out, bool* already_running) {
  if (!worker_) return NoResolver();
  {
    std::lock_guard<std::mutex> lock(rebuild_mu_);
    if (rebuild_ && rebuild_->state() == v1::RebuildOperation::RUNNING) {
      if (already_running) *already_running = true;
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "a rebuild is already running: operation " + rebuild_->operation_id() + " (phase '" +
                              rebuild_->phase() + "', " + std::to_string(rebuild_->events_done()) + "/" +
                              std::to_string(rebuild_->events_total()) +
                              " events); poll GetRebuildStatus or GET /v1/admin/resolver:rebuild");
    }
    if (rebuild_starting_) {
      if (already_running) *already_running = true;
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "a rebuild is being started by another request; poll GetRebuildStatus");
    }
    rebuild_starting_ = true;
  }
  const std::string id = "rebuild-" + std::to_string(NowMicros());
  using Outcome = std::pair<v1::RebuildOperation, grpc::Status>;
  auto done = req.wait() ? std::make_shared<std::promise<Outcome>>() : nullptr;
  auto result = done ? done->get_future() : std::future<Outcome>();
  v1::RebuildOperation started;
  try {
    worker_->StartExclusive(
        [&](storage::ResolverStore&) {  // on the resolver thread, lock held: the operation exists from here on
          std::lock_guard<std::mutex> lock(rebuild_mu_);
          rebuild_.emplace();
          rebuild_->set_operation_id(id);
          rebuild_->set_state(v1::RebuildOperation::RUNNING);
          SetTimestamp(rebuild_->mutable_started_at(), NowMicros());
          rebuild_starting_ = false;
          started = *rebuild_;
          metrics_.RebuildStarted();
          log::Info("rebuild started", {{"operation_id", id}});
        },
        [this, id, done](storage::ResolverStore& store) {
          auto outcome = RunRebuild(id, store);
          if (done) done->set_value(std::move(outcome));
        },
        std::chrono::milliseconds(10000));
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(rebuild_mu_);
    rebuild_starting_ = false;
    if (const auto* se = dynamic_cast<const storage::StorageError*>(&e)) return ToStatus(*se);
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.what());
  }
  if (!done) {
    *out->mutable_operation() = std::move(started);
    return grpc::Status::OK;
  }
  auto [op, status] = result.get();  // the rebuild always finishes (or is cancelled at shutdown)
  if (!status.ok()) return status;
  out->set_persons(op.persons());
  out->set_groups(op.groups());
  out->set_identifiers(op.identifiers());
  out->set_seconds(op.seconds());
  *out->mutable_operation() = std::move(op);
  return grpc::Status::OK;
}

std::pair<v1::RebuildOperation, grpc::Status> AdminHandler::RunRebuild(const std::string& id,
                                                                       storage::ResolverStore& store) {
  storage::RebuildControl control;
  std::string last_phase;
  control.on_progress = [&](const storage::RebuildProgress& p) {
    std::function<void(const storage::RebuildProgress&)> observer;
    {
      std::lock_guard<std::mutex> lock(rebuild_mu_);
      rebuild_->set_phase(p.phase);
      rebuild_->set_events_done(p.events_done);
      rebuild_->set_events_total(p.events_total);
      observer = rebuild_observer_;
    }
    if (p.phase != last_phase) {
      last_phase = p.phase;
      log::Info("rebuild phase", {{"operation_id", id},
                                  {"phase", p.phase},
                                  {"events_done", static_cast<long long>(p.events_done)},
                                  {"events_total", static_cast<long long>(p.events_total)}});
    }
    if (observer) observer(p);
  };
  control.cancelled = [w = worker_] { return w->stopping(); };
  storage::RebuildStats stats;
  grpc::Status status;
  auto state = v1::RebuildOperation::SUCCEEDED;
  try {
    const auto protection = protection_.Get();
    stats = store.Rebuild(*protection, control);
  } catch (const storage::StorageError& e) {
    const bool cancelled = e.kind() == storage::ErrorKind::kCancelled;
    state = cancelled ? v1::RebuildOperation::CANCELLED : v1::RebuildOperation::FAILED;
    status = cancelled ? grpc::Status(grpc::StatusCode::ABORTED,
                                      "rebuild cancelled: nexusd is shutting down; rolled back, nothing was changed")
                       : ToStatus(e);
  } catch (const std::exception& e) {
    state = v1::RebuildOperation::FAILED;
    log::Error("rebuild failed", {{"operation_id", id}, {"cause", e.what()}});
    status = grpc::Status(grpc::StatusCode::INTERNAL, "rebuild failed: internal error (cause in the server log)");
  }
  v1::RebuildOperation op;
  {
    std::lock_guard<std::mutex> lock(rebuild_mu_);
    rebuild_->set_state(state);
    SetTimestamp(rebuild_->mutable_finished_at(), NowMicros());
    if (status.ok()) {
      rebuild_->set_events_done(stats.events);
      rebuild_->set_events_total(std::max(stats.events, rebuild_->events_total()));
      rebuild_->set_persons(stats.persons);
      rebuild_->set_groups(stats.groups);
      rebuild_->set_identifiers(stats.identifiers);
      rebuild_->set_seconds(stats.seconds);
    } else {
      rebuild_->set_error(status.error_message());
    }
    op = *rebuild_;
  }
  const std::string result = state == v1::RebuildOperation::SUCCEEDED   ? "succeeded"
                             : state == v1::RebuildOperation::CANCELLED ? "cancelled"
                                                                        : "failed";
  metrics_.RebuildFinished(result);
  if (status.ok()) {
    log::Info("rebuild succeeded", {{"operation_id", id},
                                    {"persons", static_cast<long long>(stats.persons)},
                                    {"groups", static_cast<long long>(stats.groups)},
                                    {"identifiers", static_cast<long long>(stats.identifiers)},
                                    {"seconds", stats.seconds}});
  } else {
    log::Warn("rebuild " + result + "; rolled back", {{"operation_id", id}, {"cause", status.error_message()}});
  }
  return {std::move(op), status};
}

grpc::Status AdminHandler::GetRebuildStatus(const v1::GetRebuildStatusRequest&, v1::RebuildOperation* out) {
  if (!worker_) return NoResolver();
  std::lock_guard<std::mutex> lock(rebuild_mu_);
  if (!rebuild_) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no rebuild has run in this process since it started");
  }
  *out = *rebuild_;
  return grpc::Status::OK;
}

void AdminHandler::SetRebuildObserverForTesting(std::function<void(const storage::RebuildProgress&)> observer) {
  std::lock_guard<std::mutex> lock(rebuild_mu_);
  rebuild_observer_ = std::move(observer);
}

grpc::Status AdminHandler::ListQuarantinedEdges(const v1::ListQuarantinedEdgesRequest& req,
                                                v1::ListQuarantinedEdgesResponse* out) {
  if (req.page_size() < 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: must not be negative");
  if (!v1::EntityKind_IsValid(req.kind())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kind: must be ENTITY_KIND_PERSON or ENTITY_KIND_GROUP");
  }
  int limit = req.page_size() == 0 ? 50 : req.page_size();
  if (limit > 500) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: at most 500");
  int64_t after = 0;
  if (!req.page_token().empty()) {
    const std::string& t = req.page_token();
    if (t.size() > 18 || t.find_first_not_of("0123456789") != std::string::npos) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token: malformed");
    }
    after = std::stoll(t);
  }
  const std::string kind = req.kind() == v1::ENTITY_KIND_PERSON  ? "person"
                           : req.kind() == v1::ENTITY_KIND_GROUP ? "group"
                                                                 : "";
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
    worker_->RunExclusive(
        [&](storage::ResolverStore& s) { entity = s.ReleaseQuarantined(req.quarantine_id(), *protection_.Get()); });
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

// gRPC adapters. The audit target of each admin call is set here or by the handler.
grpc::Status AdminServiceImpl::GetResolverStatus(grpc::ServerContext* ctx, const v1::GetResolverStatusRequest* r,
                                                 v1::ResolverStatus* o) {
  return HandleRpc(m_, auth_, ctx, "GetResolverStatus", [&](CallContext&) { return h_.GetResolverStatus(*r, o); });
}
grpc::Status AdminServiceImpl::Rebuild(grpc::ServerContext* ctx, const v1::RebuildRequest* r, v1::RebuildResponse* o) {
  return HandleRpc(m_, auth_, ctx, "Rebuild", [&](CallContext& call) {
    auto s = h_.Rebuild(*r, o);
    if (!o->operation().operation_id().empty()) call.audit_target = "operation:" + o->operation().operation_id();
    return s;
  });
}
grpc::Status AdminServiceImpl::GetRebuildStatus(grpc::ServerContext* ctx, const v1::GetRebuildStatusRequest* r,
                                                v1::RebuildOperation* o) {
  return HandleRpc(m_, auth_, ctx, "GetRebuildStatus", [&](CallContext&) { return h_.GetRebuildStatus(*r, o); });
}
grpc::Status AdminServiceImpl::ListQuarantinedEdges(grpc::ServerContext* ctx, const v1::ListQuarantinedEdgesRequest* r,
                                                    v1::ListQuarantinedEdgesResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ListQuarantinedEdges",
                   [&](CallContext&) { return h_.ListQuarantinedEdges(*r, o); });
}
grpc::Status AdminServiceImpl::ReleaseQuarantinedEdge(grpc::ServerContext* ctx,
                                                      const v1::ReleaseQuarantinedEdgeRequest* r,
                                                      v1::ReleaseQuarantinedEdgeResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ReleaseQuarantinedEdge", [&](CallContext& call) {
    call.audit_target = "quarantine:" + std::to_string(r->quarantine_id());
    return h_.ReleaseQuarantinedEdge(*r, o);
  });
}
grpc::Status AdminServiceImpl::ReloadConfig(grpc::ServerContext* ctx, const v1::ReloadConfigRequest* r,
                                            v1::ReloadConfigResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ReloadConfig", [&](CallContext& call) {
    call.audit_target = "protection-config";
    return h_.ReloadConfig(*r, o);
  });
}
grpc::Status AdminServiceImpl::CreateApiKey(grpc::ServerContext* ctx, const v1::CreateApiKeyRequest* r,
                                            v1::CreateApiKeyResponse* o) {
  return HandleRpc(m_, auth_, ctx, "CreateApiKey", [&](CallContext& call) { return h_.CreateApiKey(*r, o, call); });
}
grpc::Status AdminServiceImpl::ListApiKeys(grpc::ServerContext* ctx, const v1::ListApiKeysRequest* r,
                                           v1::ListApiKeysResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ListApiKeys", [&](CallContext&) { return h_.ListApiKeys(*r, o); });
}
grpc::Status AdminServiceImpl::RevokeApiKey(grpc::ServerContext* ctx, const v1::RevokeApiKeyRequest* r,
                                            v1::RevokeApiKeyResponse* o) {
  return HandleRpc(m_, auth_, ctx, "RevokeApiKey", [&](CallContext& call) { return h_.RevokeApiKey(*r, o, call); });
}
grpc::Status AdminServiceImpl::ListAuditLog(grpc::ServerContext* ctx, const v1::ListAuditLogRequest* r,
                                            v1::ListAuditLogResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ListAuditLog", [&](CallContext&) { return h_.ListAuditLog(*r, o); });
}

void FillApiKey(const storage::ApiKeyRecord& k, v1::ApiKey* out) {
  out->set_key_id(k.key_id);
  out->set_name(k.name);
  for (const auto& s : k.scopes) out->add_scopes(s);
  for (const auto& s : k.sources) out->add_sources(s);
  SetTimestamp(out->mutable_created_at(), k.created_at_us);
  out->set_created_by(k.created_by);
  if (k.expires_at_us) SetTimestamp(out->mutable_expires_at(), *k.expires_at_us);
  if (k.revoked_at_us) SetTimestamp(out->mutable_revoked_at(), *k.revoked_at_us);
}

namespace {
grpc::Status NoAuth() {
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "key management is not available in this process");
}
}  // namespace

grpc::Status AdminHandler::CreateApiKey(const v1::CreateApiKeyRequest& req, v1::CreateApiKeyResponse* out,
                                        CallContext& call) {
  if (!auth_) return NoAuth();
  NewApiKey spec;
  spec.name = req.name();
  spec.scopes.assign(req.scopes().begin(), req.scopes().end());
  spec.sources.assign(req.sources().begin(), req.sources().end());
  if (req.has_expires_at()) {
    spec.expires_at_us = req.expires_at().seconds() * 1000000 + req.expires_at().nanos() / 1000;
  }
  spec.created_by = call.principal.key_id;
  storage::ApiKeyRecord rec;
  std::string secret;
  auto s = server::CreateApiKey(auth_->store(), spec, &rec, &secret);
  if (!s.ok()) return s;
  call.audit_target = "key:" + rec.key_id;
  auth_->NoteKeyCreated();
  FillApiKey(rec, out->mutable_key());
  out->set_secret(secret);
  log::Info("API key created", {{"key_id", rec.key_id}, {"by", call.principal.key_id}});
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ListApiKeys(const v1::ListApiKeysRequest&, v1::ListApiKeysResponse* out) {
  if (!auth_) return NoAuth();
  for (const auto& k : auth_->store().ListKeys()) FillApiKey(k, out->add_keys());
  return grpc::Status::OK;
}

grpc::Status AdminHandler::RevokeApiKey(const v1::RevokeApiKeyRequest& req, v1::RevokeApiKeyResponse* out,
                                        CallContext& call) {
  if (!auth_) return NoAuth();
  if (req.key_id().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key_id: missing");
  if (!ParseKeyId("nxk_" + req.key_id() + "_" + std::string(64, '0'))) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key_id: not a key id (12 lowercase hex digits)");
  }
  call.audit_target = "key:" + req.key_id();
  if (!auth_->store().RevokeKey(req.key_id())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "API key " + req.key_id() + " not found");
  }
  auth_->Invalidate(req.key_id());
  if (auto k = auth_->store().FindKey(req.key_id())) FillApiKey(*k, out->mutable_key());
  log::Info("API key revoked", {{"key_id", req.key_id()}, {"by", call.principal.key_id}});
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ListAuditLog(const v1::ListAuditLogRequest& req, v1::ListAuditLogResponse* out) {
  if (!auth_) return NoAuth();
  int page = req.page_size() == 0 ? 50 : req.page_size();
  if (page < 0 || page > 500) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: must be between 0 and 500");
  }
  int64_t before = 0;
  if (!req.page_token().empty()) {
    try {
      size_t used = 0;
      before = std::stoll(req.page_token(), &used);
      if (used != req.page_token().size() || before <= 0) throw std::invalid_argument("token");
    } catch (const std::exception&) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token: malformed");
    }
  }
  auto rows = auth_->store().ListAudit(page + 1, before);
  for (size_t i = 0; i < rows.size() && static_cast<int>(i) < page; ++i) {
    auto* e = out->add_entries();
    e->set_audit_id(rows[i].audit_id);
    SetTimestamp(e->mutable_at(), rows[i].at_us);
    e->set_key_id(rows[i].key_id);
    e->set_operation(rows[i].operation);
    e->set_target(rows[i].target);
    e->set_outcome(rows[i].outcome);
  }
  if (static_cast<int>(rows.size()) > page) out->set_next_page_token(std::to_string(rows[page - 1].audit_id));
  return grpc::Status::OK;
}

}  // namespace nexus::server
