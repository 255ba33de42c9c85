// Admin RPCs of issue 15: link rules (undoing a wrong merge) and erasure with its suppression list. The work runs
// on the resolver thread with the resolver lock held (ResolverWorker::RunExclusive), serialized with batches.
#include <chrono>

#include "common/log.h"
#include "server/admin_service.h"
#include "server/rpc_util.h"
#include "storage/errors.h"
#include "storage/resolver_store.h"

namespace nexus::server {
namespace {

std::string KindName(v1::EntityKind k) { return k == v1::ENTITY_KIND_GROUP ? "group" : "person"; }
v1::EntityKind KindProto(const std::string& k) { return k == "group" ? v1::ENTITY_KIND_GROUP : v1::ENTITY_KIND_PERSON; }

void FillRule(const storage::LinkRuleInfo& r, v1::LinkRule* out) {
  out->set_rule_id(r.rule_id);
  out->set_kind(KindProto(r.kind));
  if (r.cannot_link) {
    out->mutable_a()->set_type(r.a.first);
    out->mutable_a()->set_value(r.a.second);
    out->mutable_b()->set_type(r.b.first);
    out->mutable_b()->set_value(r.b.second);
  } else {
    out->set_event_id(r.event_id);
    out->set_edge_id(r.edge_id);
  }
  out->set_reason(r.reason);
  out->set_created_by(r.created_by);
  SetTimestamp(out->mutable_created_at(), r.created_at_us);
}

void FillResult(const storage::LinkRuleResult& r, v1::UnlinkResponse* out) {
  FillRule(r.rule, out->mutable_rule());
  out->set_created(r.created);
  for (const auto& e : r.entity_ids) out->add_entity_ids(e);
  out->set_seconds(r.rebuild.seconds);
  if (!r.dry_run) {
    out->set_whole_log(r.whole_log);
    out->set_events_replayed(r.rebuild.events);
    return;
  }
  out->set_dry_run(true);
  auto* p = out->mutable_preview();
  for (const auto& id : r.preview.current_entity_ids) p->add_current_entity_ids(id);
  for (const auto& part : r.preview.parts) {
    auto* o = p->add_parts();
    o->set_entity_id(part.entity_id);
    o->set_existing(part.existing);
    o->set_identifier_count(static_cast<int64_t>(part.identifiers.size()));
    constexpr size_t kListed = 100;
    for (size_t i = 0; i < part.identifiers.size() && i < kListed; ++i) {
      auto* id = o->add_identifiers();
      id->set_type(part.identifiers[i].first);
      id->set_value(part.identifiers[i].second);
    }
  }
  p->set_identifiers(r.preview.identifiers);
  p->set_events(r.preview.events);
  p->set_identifier_rules_pending(r.preview.identifier_rules_pending);
}

grpc::Status ParseIdToken(const std::string& t, int64_t* after) {
  *after = 0;
  if (t.empty()) return grpc::Status::OK;
  if (t.size() > 18 || t.find_first_not_of("0123456789") != std::string::npos) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_token: malformed");
  }
  *after = std::stoll(t);
  return grpc::Status::OK;
}

grpc::Status PageSize(int32_t requested, int* limit) {
  if (requested < 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: must not be negative");
  *limit = requested == 0 ? 100 : requested;
  if (*limit > 1000) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "page_size: at most 1000");
  return grpc::Status::OK;
}

/// Runs `task` on the resolver thread; a worker that cannot (not running, lock elsewhere) is FAILED_PRECONDITION.
grpc::Status OnResolver(ResolverWorker* worker, const std::function<void(storage::ResolverStore&)>& task) {
  if (!worker) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the resolver does not run in this process (--resolver=false)");
  }
  try {
    worker->RunExclusive(task, std::chrono::milliseconds(10000));
  } catch (const storage::StorageError&) {
    throw;
  } catch (const std::exception& e) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, e.what());
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status AdminHandler::Unlink(const v1::UnlinkRequest& req, v1::UnlinkResponse* out, CallContext& call) {
  if (!v1::EntityKind_IsValid(req.kind())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kind: must be ENTITY_KIND_PERSON or ENTITY_KIND_GROUP");
  }
  storage::LinkRuleInfo rule;
  rule.kind = KindName(req.kind());
  const bool pair = req.has_a() || req.has_b();
  const bool edge = !req.event_id().empty() || !req.edge_id().empty();
  if (pair == edge) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "give either two identifiers (a and b) or an event_id (with an edge_id: that edge only)");
  }
  rule.cannot_link = pair;
  rule.a = {req.a().type(), req.a().value()};
  rule.b = {req.b().type(), req.b().value()};
  rule.event_id = req.event_id();
  rule.edge_id = req.edge_id();
  rule.reason = req.reason();
  rule.created_by = call.principal.key_id;
  storage::LinkRuleResult result;
  auto st = OnResolver(
      worker_, [&](storage::ResolverStore& s) { result = s.AddLinkRule(rule, *protection_.Get(), req.dry_run()); });
  if (!st.ok()) return st;
  call.audit_target = req.dry_run() ? "link_rule:dry_run" : "link_rule:" + std::to_string(result.rule.rule_id);
  FillResult(result, out);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ListLinkRules(const v1::ListLinkRulesRequest& req, v1::ListLinkRulesResponse* out) {
  int limit = 0;
  if (auto s = PageSize(req.page_size(), &limit); !s.ok()) return s;
  int64_t after = 0;
  if (auto s = ParseIdToken(req.page_token(), &after); !s.ok()) return s;
  auto rows = storage::ResolverStore::ListLinkRules(db_, after, limit + 1);
  const bool more = static_cast<int>(rows.size()) > limit;
  if (more) rows.resize(static_cast<size_t>(limit));
  for (const auto& r : rows) FillRule(r, out->add_rules());
  if (more && !rows.empty()) out->set_next_page_token(std::to_string(rows.back().rule_id));
  return grpc::Status::OK;
}

grpc::Status AdminHandler::RemoveLinkRule(const v1::RemoveLinkRuleRequest& req, v1::UnlinkResponse* out,
                                          CallContext& call) {
  if (req.rule_id() <= 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rule_id: missing");
  call.audit_target = "link_rule:" + std::to_string(req.rule_id()) + (req.dry_run() ? ":dry_run" : "");
  storage::LinkRuleResult result;
  auto st = OnResolver(worker_, [&](storage::ResolverStore& s) {
    result = s.RemoveLinkRule(req.rule_id(), *protection_.Get(), req.dry_run(), call.principal.key_id);
  });
  if (!st.ok()) return st;
  FillResult(result, out);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::Erase(const v1::EraseRequest& req, v1::EraseResponse* out, CallContext& call) {
  if (req.targets().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "targets: at least one");
  if (req.targets_size() > 1000) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "targets: at most 1000");
  if (!req.dry_run() && req.request_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "request_id: required (an idempotency key of your choice, e.g. the ticket number)");
  }
  if (req.request_id().size() > 200) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request_id: too long");
  storage::EraseRequest in;
  in.request_id = req.request_id();
  in.dry_run = req.dry_run();
  in.key_id = call.principal.key_id;
  for (int i = 0; i < req.targets_size(); ++i) {
    const auto& t = req.targets(i);
    storage::EraseTarget x;
    if (t.target_case() == v1::EraseTarget::kEntityId) {
      x.entity_id = t.entity_id();
      if (x.entity_id.empty()) x.entity_id = "-";  // reported as failed: not an entity id
    } else if (t.target_case() == v1::EraseTarget::kIdentifier) {
      if (!v1::EntityKind_IsValid(t.kind())) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "targets[" + std::to_string(i) + "].kind: unknown");
      }
      x.kind = KindName(t.kind());
      x.type = t.identifier().type();
      x.value = t.identifier().value();
      x.whole_entity = !t.identifier_only();
    } else {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "targets[" + std::to_string(i) + "]: set entity_id or identifier");
    }
    in.targets.push_back(std::move(x));
  }
  storage::EraseResult r;
  auto st = OnResolver(worker_, [&](storage::ResolverStore& s) { r = s.Erase(in, *protection_.Get()); });
  if (!st.ok()) return st;
  call.audit_target = r.dry_run ? "erasure:dry-run" : "erasure:" + r.operation_id;
  out->set_operation_id(r.operation_id);
  out->set_dry_run(r.dry_run);
  out->set_replayed(r.replayed);
  if (r.at_us) SetTimestamp(out->mutable_at(), r.at_us);
  for (const auto& [t, n] : r.counts) (*out->mutable_counts())[t] = n;
  for (const auto& e : r.entity_ids) out->add_entity_ids(e);
  for (const auto& o : r.outcomes) {
    auto* x = out->add_outcomes();
    x->set_outcome(o.outcome);
    x->set_detail(o.detail);
    for (const auto& e : o.entity_ids) x->add_entity_ids(e);
    x->set_identifiers(o.identifiers);
  }
  for (const auto& h : r.erased_hashes) out->add_erased_hashes(h);
  out->set_whole_log(r.whole_log);
  out->set_events_replayed(r.events_replayed);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::ListSuppressions(const v1::ListSuppressionsRequest& req, v1::ListSuppressionsResponse* out) {
  int limit = 0;
  if (auto s = PageSize(req.page_size(), &limit); !s.ok()) return s;
  auto rows = storage::ResolverStore::ListSuppressions(db_, req.page_token(), limit + 1);
  const bool more = static_cast<int>(rows.size()) > limit;
  if (more) rows.resize(static_cast<size_t>(limit));
  for (const auto& r : rows) {
    auto* x = out->add_suppressions();
    x->set_kind(KindProto(r.kind));
    x->set_id_hash(r.id_hash);
    x->set_operation_id(r.operation_id);
    SetTimestamp(x->mutable_suppressed_at(), r.suppressed_at_us);
  }
  if (more && !rows.empty()) out->set_next_page_token(rows.back().id_hash);
  return grpc::Status::OK;
}

grpc::Status AdminHandler::LiftSuppression(const v1::LiftSuppressionRequest& req, v1::LiftSuppressionResponse* out,
                                           CallContext& call) {
  if (!v1::EntityKind_IsValid(req.kind())) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kind: unknown");
  const bool by_id = req.has_identifier();
  if (by_id == !req.id_hash().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "give either identifier or id_hash");
  }
  if (by_id && (req.identifier().type().empty() || req.identifier().value().empty())) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "identifier: type and value are required");
  }
  const std::string value =
      by_id ? protection_.Get()->Classify(req.identifier().type(), req.identifier().value()).value : std::string();
  const std::string lifted = storage::ResolverStore::LiftSuppression(
      db_, KindName(req.kind()), by_id ? req.identifier().type() : "", value, req.id_hash());
  call.audit_target = "suppression:" + lifted.substr(0, 16);
  out->set_id_hash(lifted);
  log::Info("suppression lifted", {{"id_hash", lifted}, {"by", call.principal.key_id}});
  return grpc::Status::OK;
}

// gRPC adapters.
grpc::Status AdminServiceImpl::Unlink(grpc::ServerContext* ctx, const v1::UnlinkRequest* r, v1::UnlinkResponse* o) {
  return HandleRpc(m_, auth_, ctx, "Unlink", [&](CallContext& call) { return h_.Unlink(*r, o, call); });
}
grpc::Status AdminServiceImpl::ListLinkRules(grpc::ServerContext* ctx, const v1::ListLinkRulesRequest* r,
                                             v1::ListLinkRulesResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ListLinkRules", [&](CallContext&) { return h_.ListLinkRules(*r, o); });
}
grpc::Status AdminServiceImpl::RemoveLinkRule(grpc::ServerContext* ctx, const v1::RemoveLinkRuleRequest* r,
                                              v1::UnlinkResponse* o) {
  return HandleRpc(m_, auth_, ctx, "RemoveLinkRule", [&](CallContext& call) { return h_.RemoveLinkRule(*r, o, call); });
}
grpc::Status AdminServiceImpl::Erase(grpc::ServerContext* ctx, const v1::EraseRequest* r, v1::EraseResponse* o) {
  return HandleRpc(m_, auth_, ctx, "Erase", [&](CallContext& call) { return h_.Erase(*r, o, call); });
}
grpc::Status AdminServiceImpl::ListSuppressions(grpc::ServerContext* ctx, const v1::ListSuppressionsRequest* r,
                                                v1::ListSuppressionsResponse* o) {
  return HandleRpc(m_, auth_, ctx, "ListSuppressions", [&](CallContext&) { return h_.ListSuppressions(*r, o); });
}
grpc::Status AdminServiceImpl::LiftSuppression(grpc::ServerContext* ctx, const v1::LiftSuppressionRequest* r,
                                               v1::LiftSuppressionResponse* o) {
  return HandleRpc(m_, auth_, ctx, "LiftSuppression",
                   [&](CallContext& call) { return h_.LiftSuppression(*r, o, call); });
}

}  // namespace nexus::server
