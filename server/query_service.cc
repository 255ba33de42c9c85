#include "server/query_service.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <vector>

#include "resolver/explain.h"
#include "resolver/normalize.h"
#include "server/admin_service.h"
#include "server/request_parse.h"
#include "server/rpc_util.h"
#include "storage/replicas.h"

namespace nexus::server {
namespace {

using storage::EntityKind;

grpc::Status Invalid(const std::string& msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg); }

/// Resolves page_size (0 -> default) or explains why it is invalid.
grpc::Status PageSize(int requested, int* out) {
  if (requested < 0) return Invalid("page_size: must not be negative");
  if (requested > kMaxPageSize) return Invalid("page_size: at most " + std::to_string(kMaxPageSize));
  *out = requested == 0 ? kDefaultPageSize : requested;
  return grpc::Status::OK;
}

int64_t Micros(const google::protobuf::Timestamp& ts) { return ts.seconds() * 1000000 + ts.nanos() / 1000; }

grpc::Status CheckTimestamp(const google::protobuf::Timestamp& ts, const char* field) {
  // The proto3 range of Timestamp: 0001-01-01 .. 9999-12-31.
  if (ts.seconds() < -62135596800LL || ts.seconds() > 253402300799LL || ts.nanos() < 0 || ts.nanos() > 999999999) {
    return Invalid(std::string(field) + ": out of range");
  }
  return grpc::Status::OK;
}

template <typename Msg>
void FillCommon(const storage::EntityProfile& p, Msg* out) {
  for (const auto& i : p.identifiers) {
    auto* id = out->add_identifiers();
    id->set_type(i.key);
    id->set_value(i.value);
    id->set_source(i.source);
    SetTimestamp(id->mutable_occurred_at(), i.occurred_at_us);
    SetTimestamp(id->mutable_last_seen_at(), i.last_seen_us);
  }
  for (const auto& t : p.traits) {
    auto* tr = out->add_traits();
    tr->set_name(t.key);
    tr->set_text_value(t.value);
    auto* v = tr->mutable_value();
    if (t.value_type == "number") {
      double d = 0;  // stored by ingest in shortest round-trip form; from_chars ignores the locale
      std::from_chars(t.value.data(), t.value.data() + t.value.size(), d);
      v->set_number_value(d);
    } else if (t.value_type == "boolean") {
      v->set_bool_value(t.value == "true");
    } else {
      v->set_string_value(t.value);
    }
    tr->set_source(t.source);
    SetTimestamp(tr->mutable_occurred_at(), t.occurred_at_us);
  }
  for (const auto& m : p.merged_ids) out->add_merged_ids(m);
  SetTimestamp(out->mutable_last_updated(), p.last_updated_us);
  out->set_requested_id(p.requested_id);
  out->set_redirected(p.redirected);
}

std::string Field(const storage::EntityProfile& p, const char* name) {
  auto it = p.fields.find(name);
  return it == p.fields.end() ? std::string() : it->second;
}

void FillPerson(const storage::EntityProfile& p, v1::Person* out) {
  out->set_person_id(p.id);
  out->set_email(Field(p, "email"));
  out->set_name(Field(p, "name"));
  out->set_phone(Field(p, "phone"));
  out->set_title(Field(p, "title"));
  out->set_timezone(Field(p, "timezone"));
  FillCommon(p, out);
}

void FillGroup(const storage::EntityProfile& p, v1::Group* out) {
  out->set_group_id(p.id);
  out->set_domain(Field(p, "domain"));
  out->set_company_name(Field(p, "company_name"));
  out->set_industry(Field(p, "industry"));
  out->set_company_size(Field(p, "company_size"));
  out->set_shopify_id(Field(p, "shopify_id"));
  FillCommon(p, out);
}

const char* Noun(EntityKind k) { return k == EntityKind::kPerson ? "person" : "group"; }

v1::EntityKind WireKind(EntityKind k) {
  return k == EntityKind::kPerson ? v1::ENTITY_KIND_PERSON : v1::ENTITY_KIND_GROUP;
}

void FillMembership(const storage::MembershipInfo& m, v1::MembershipView* v) {
  v->set_membership_id(m.membership_id);
  v->set_person_id(m.person_id);
  v->set_person_name(m.person_name);
  v->set_person_email(m.person_email);
  v->set_group_id(m.group_id);
  v->set_group_name(m.group_name);
  v->set_group_domain(m.group_domain);
  v->set_role(m.role);
  v->set_source(m.source);
  SetTimestamp(v->mutable_established_at(), m.established_at_us);
  SetTimestamp(v->mutable_last_updated(), m.last_updated_us);
}

void FillParticipant(const storage::ParticipantInfo& p, v1::EventParticipant* out) {
  out->set_kind(WireKind(p.kind));
  out->set_entity_id(p.entity_id);
  out->set_display_name(p.display_name);
  out->set_role(p.role);
  for (const auto& [type, value] : p.identifiers) {
    auto* i = out->add_identifiers();
    i->set_type(type);
    i->set_value(value);
  }
}

/// Trims ASCII whitespace at both ends.
std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n\f\v");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n\f\v") - b + 1);
}

/// Lower-cases ASCII letters (pg_trgm and ILIKE fold the rest themselves).
std::string AsciiLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/// Escapes LIKE's wildcards and its escape character, so the query is matched literally.
std::string LikeEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

grpc::Status QueryHandler::NormalizeKey(const std::string& type, const std::string& value, const std::string& field,
                                        resolver::IdKey* out) const {
  if (type.empty()) return Invalid(field + "type: missing");
  if (!resolver::IsValidIdentifierType(type)) return Invalid(field + "type: must match [a-z0-9_]{1,64}");
  if (value.empty()) return Invalid(field + "value: missing");
  if (value.find('\0') != std::string::npos) return Invalid(field + "value: contains a NUL byte");
  if (value.size() > 4096) return Invalid(field + "value: longer than 4096 bytes");
  out->type = type;
  if (protection_) {
    out->value = resolver::NormalizeIdentifier(type, value, protection_->Get()->identifiers);
  } else {
    out->value = resolver::NormalizeIdentifier(type, value);
  }
  if (out->value.empty()) return Invalid(field + "value: empty after normalization");
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetPerson(const v1::GetPersonRequest& req, v1::Person* out) {
  if (auto s = CheckEntityId("person_id", req.person_id()); !s.ok()) return s;
  FillPerson(store_.GetEntity(EntityKind::kPerson, req.person_id()), out);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::LookupPerson(const v1::LookupPersonRequest& req, v1::Person* out) {
  resolver::IdKey key;
  if (auto s = NormalizeKey(req.identifier_type(), req.identifier_value(), "identifier_", &key); !s.ok()) return s;
  FillPerson(store_.LookupEntity(EntityKind::kPerson, key.type, key.value), out);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetGroup(const v1::GetGroupRequest& req, v1::Group* out) {
  if (auto s = CheckEntityId("group_id", req.group_id()); !s.ok()) return s;
  FillGroup(store_.GetEntity(EntityKind::kGroup, req.group_id()), out);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::LookupGroup(const v1::LookupGroupRequest& req, v1::Group* out) {
  resolver::IdKey key;
  if (auto s = NormalizeKey(req.identifier_type(), req.identifier_value(), "identifier_", &key); !s.ok()) return s;
  FillGroup(store_.LookupEntity(EntityKind::kGroup, key.type, key.value), out);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::ListPersonMemberships(const v1::ListPersonMembershipsRequest& req,
                                                 v1::ListMembershipsResponse* out) {
  if (auto s = CheckEntityId("person_id", req.person_id()); !s.ok()) return s;
  return Memberships(EntityKind::kPerson, req.person_id(), req.page_size(), req.page_token(), out);
}

grpc::Status QueryHandler::ListGroupMembers(const v1::ListGroupMembersRequest& req, v1::ListMembershipsResponse* out) {
  if (auto s = CheckEntityId("group_id", req.group_id()); !s.ok()) return s;
  return Memberships(EntityKind::kGroup, req.group_id(), req.page_size(), req.page_token(), out);
}

grpc::Status QueryHandler::Memberships(EntityKind kind, const std::string& id, int page_size, const std::string& token,
                                       v1::ListMembershipsResponse* out) {
  int limit = 0;
  if (auto s = PageSize(page_size, &limit); !s.ok()) return s;
  std::string after;
  if (!token.empty()) {
    auto decoded = DecodeMembershipToken(token);
    if (!decoded) return Invalid("page_token: malformed");
    after = *decoded;
  }
  const auto page = store_.ListMemberships(kind, id, after, limit);
  out->set_resolved_id(page.resolved_id);
  for (const auto& m : page.items) FillMembership(m, out->add_memberships());
  if (!page.next_after.empty()) out->set_next_page_token(EncodeMembershipToken(page.next_after));
  return grpc::Status::OK;
}

grpc::Status QueryHandler::ListPersonTimeline(const v1::ListPersonTimelineRequest& req, v1::TimelineResponse* out) {
  if (auto s = CheckEntityId("person_id", req.person_id()); !s.ok()) return s;
  return Timeline(EntityKind::kPerson, req.person_id(), req.page_size(), req.page_token(), req.filter(), out, false,
                  req.include_participants());
}

grpc::Status QueryHandler::ListGroupTimeline(const v1::ListGroupTimelineRequest& req, v1::TimelineResponse* out) {
  if (auto s = CheckEntityId("group_id", req.group_id()); !s.ok()) return s;
  return Timeline(EntityKind::kGroup, req.group_id(), req.page_size(), req.page_token(), req.filter(), out,
                  req.include_members(), req.include_participants());
}

grpc::Status QueryHandler::Timeline(EntityKind kind, const std::string& id, int page_size, const std::string& token,
                                    const v1::TimelineFilter& filter, v1::TimelineResponse* out, bool include_members,
                                    bool include_participants) {
  storage::TimelineQuery q;
  if (auto s = PageSize(page_size, &q.limit); !s.ok()) return s;
  if (!token.empty()) {
    q.after_key = DecodeTimelineToken(token);
    if (!q.after_key) return Invalid("page_token: malformed");
  }
  if (filter.has_occurred_after()) {
    if (auto s = CheckTimestamp(filter.occurred_after(), "filter.occurred_after"); !s.ok()) return s;
    q.occurred_after_us = Micros(filter.occurred_after());
  }
  if (filter.has_occurred_before()) {
    if (auto s = CheckTimestamp(filter.occurred_before(), "filter.occurred_before"); !s.ok()) return s;
    q.occurred_before_us = Micros(filter.occurred_before());
  }
  q.event_type = filter.event_type();
  q.source = filter.source();
  const auto page = include_members && kind == EntityKind::kGroup ? store_.ListGroupTimelineWithMembers(id, q)
                                                                  : store_.ListTimeline(kind, id, q);
  out->set_resolved_id(page.resolved_id);
  std::map<std::string, std::vector<storage::ParticipantInfo>> participants;
  if (include_participants) {
    std::vector<std::string> ids;
    for (const auto& it : page.items) ids.push_back(it.event_id);
    participants = store_.EventParticipants(ids, kind, page.resolved_id);
  }
  for (const auto& it : page.items) {
    auto* e = out->add_events();
    e->set_event_id(it.event_id);
    SetTimestamp(e->mutable_occurred_at(), it.occurred_at_us);
    e->set_event_name(it.event_name);
    if (it.event_description) e->set_event_description(*it.event_description);
    e->set_event_type(it.event_type);
    e->set_source(it.source);
    if (it.value) e->set_value(*it.value);
    if (it.value_unit) e->set_value_unit(*it.value_unit);
    for (const auto& r : it.roles) e->add_roles(r);
    if (auto p = participants.find(it.event_id); p != participants.end()) {
      for (const auto& x : p->second) FillParticipant(x, e->add_participants());
    }
  }
  if (page.more && !page.items.empty()) {
    out->set_next_page_token(EncodeTimelineToken(page.items.back().occurred_at_us, page.items.back().event_id));
  }
  return grpc::Status::OK;
}

grpc::Status QueryHandler::ExplainPersonLink(const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out) {
  return Explain(EntityKind::kPerson, req, out);
}

grpc::Status QueryHandler::ExplainGroupLink(const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out) {
  return Explain(EntityKind::kGroup, req, out);
}

grpc::Status QueryHandler::Explain(EntityKind kind, const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out) {
  resolver::IdKey a, b;
  if (auto s = NormalizeKey(req.a().type(), req.a().value(), "a.", &a); !s.ok()) return s;
  if (auto s = NormalizeKey(req.b().type(), req.b().value(), "b.", &b); !s.ok()) return s;
  const auto data = store_.LoadExplain(kind, a, b);
  auto not_found = [&](const char* name, const resolver::IdKey& key) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, std::string(name) + ": no " + Noun(kind) + " has identifier " +
                                                         key.type + " '" + key.value + "'");
  };
  if (!data.entity_a) return not_found("a", a);
  if (!data.entity_b) return not_found("b", b);
  out->set_entity_id_a(*data.entity_a);
  out->set_entity_id_b(*data.entity_b);
  if (*data.entity_a != *data.entity_b) {
    out->set_linked(false);
    for (const auto& q : data.blocked_by) {
      auto* e = out->add_blocked_by();
      e->set_quarantine_id(q.quarantine_id);
      e->set_kind(kind == EntityKind::kPerson ? v1::ENTITY_KIND_PERSON : v1::ENTITY_KIND_GROUP);
      e->set_event_id(q.event_id);
      e->set_edge_id(q.edge_id);
      e->set_source(q.source);
      SetTimestamp(e->mutable_occurred_at(), q.occurred_at_us);
      for (const auto& id : q.identifiers) {
        auto* i = e->add_identifiers();
        i->set_type(id.type);
        i->set_value(id.value);
      }
      e->set_reason(q.reason);
      for (const auto& id : q.entity_ids) e->add_entity_ids(id);
      SetTimestamp(e->mutable_quarantined_at(), q.quarantined_at_us);
      e->set_released(false);
    }
    out->set_explanation(data.blocked_by.empty()
                             ? std::string("not linked: the identifiers belong to different ") + Noun(kind) + "s"
                             : "not linked: " + std::to_string(data.blocked_by.size()) +
                                   " quarantined edge(s) touching them were not applied (see blocked_by)");
    return grpc::Status::OK;
  }
  out->set_linked(true);
  out->set_entity_id(*data.entity_a);
  const auto path = resolver::ShortestLinkPath(data.occurrences, a, b);
  if (!path) {
    out->set_explanation(
        "linked, but no path of stored edges was found (edges may have been released from "
        "quarantine while being read)");
    return grpc::Status::OK;
  }
  for (const auto& step : *path) {
    const auto& occ = data.occurrences[step.occurrence];
    const auto& meta = data.meta[step.occurrence];
    auto* e = out->add_path();
    e->set_event_id(occ.event_id);
    e->set_edge_id(occ.edge_id);
    e->set_source(meta.source);
    SetTimestamp(e->mutable_occurred_at(), meta.occurred_at_us);
    for (const auto& id : occ.identifiers) {
      auto* i = e->add_identifiers();
      i->set_type(id.type);
      i->set_value(id.value);
    }
    e->mutable_from()->set_type(step.from.type);
    e->mutable_from()->set_value(step.from.value);
    e->mutable_to()->set_type(step.to.type);
    e->mutable_to()->set_value(step.to.value);
  }
  out->set_explanation(path->empty() ? "the same identifier"
                                     : "linked by a path of " + std::to_string(path->size()) + " edge(s)");
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetPersonHistory(const v1::GetPersonHistoryRequest& req, v1::EntityHistory* out) {
  if (auto s = CheckEntityId("person_id", req.person_id()); !s.ok()) return s;
  return History(EntityKind::kPerson, req.person_id(), out);
}

grpc::Status QueryHandler::GetGroupHistory(const v1::GetGroupHistoryRequest& req, v1::EntityHistory* out) {
  if (auto s = CheckEntityId("group_id", req.group_id()); !s.ok()) return s;
  return History(EntityKind::kGroup, req.group_id(), out);
}

grpc::Status QueryHandler::History(EntityKind kind, const std::string& id, v1::EntityHistory* out) {
  const auto h = store_.GetHistory(kind, id);
  out->set_entity_id(h.entity_id);
  SetTimestamp(out->mutable_created_at(), h.created_at_us);
  out->set_created_by_event_id(h.created_by_event_id);
  for (const auto& m : h.merges) {
    auto* r = out->add_merges();
    r->set_absorbed_id(m.absorbed_id);
    r->set_surviving_id(m.merged_into_id);
    SetTimestamp(r->mutable_merged_at(), m.merged_at_us);
    r->set_event_id(m.event_id);
    r->set_edge_id(m.edge_id);
    r->set_absorbed_identifier_count(m.absorbed_identifier_count);
  }
  for (const auto& s : h.splits) {
    auto* r = out->add_splits();
    SetTimestamp(r->mutable_at(), s.at_us);
    r->set_cause(s.cause);
    r->set_rule_id(s.rule_id);
    r->set_reason(s.reason);
    r->set_by_key_id(s.by_key_id);
    for (const auto& id : s.before_ids) r->add_before_ids(id);
    for (const auto& id : s.after_ids) r->add_after_ids(id);
  }
  return grpc::Status::OK;
}

grpc::Status QueryHandler::SearchPersons(const v1::SearchRequest& req, v1::SearchResponse* out) {
  return Search(EntityKind::kPerson, req, out);
}

grpc::Status QueryHandler::SearchGroups(const v1::SearchRequest& req, v1::SearchResponse* out) {
  return Search(EntityKind::kGroup, req, out);
}

grpc::Status QueryHandler::Search(EntityKind kind, const v1::SearchRequest& req, v1::SearchResponse* out) {
  const std::string text = Trim(req.query());
  if (text.empty()) return Invalid("query: missing");
  if (!IsValidUtf8(text)) return Invalid("query: not valid UTF-8");
  if (text.find('\0') != std::string::npos) return Invalid("query: contains a NUL byte");
  if (Utf8Length(text) < 2) return Invalid("query: at least 2 characters after trimming");
  if (text.size() > 256) return Invalid("query: longer than 256 bytes");
  if (req.page_size() < 0) return Invalid("page_size: must not be negative");
  if (req.page_size() > kMaxSearchPageSize) return Invalid("page_size: at most " + std::to_string(kMaxSearchPageSize));
  storage::SearchQuery q;
  q.limit = req.page_size() == 0 ? kDefaultSearchPageSize : req.page_size();
  if (!req.page_token().empty()) {
    q.after = DecodeSearchToken(req.page_token());
    if (!q.after) return Invalid("page_token: malformed");
  }
  q.text = AsciiLower(text);
  q.pattern = LikeEscape(q.text);
  q.alt_pattern = q.pattern;
  // Two characters hold no trigram: as a fragment they would read the whole index (seconds at 100k). They match
  // values that start with them (a word start is a padded trigram the index has).
  q.prefix_only = Utf8Length(text) < 3;
  // Email-, phone- and domain-looking queries are also normalized as lookups are and matched exactly.
  const bool has_at = text.find('@') != std::string::npos;
  const size_t digits = std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  const bool phone_like = digits >= 4 && text.find_first_not_of("0123456789+-(). ") == std::string::npos;
  std::vector<std::string> types;
  if (has_at) types.push_back("email");
  if (phone_like) types.push_back("phone");
  if (!has_at && !phone_like && text.find('.') != std::string::npos && text.find(' ') == std::string::npos) {
    types.push_back("domain");
  }
  for (const auto& type : types) {
    resolver::IdKey key;
    if (NormalizeKey(type, text, "query.", &key).ok()) q.exact.push_back(std::move(key));
  }
  if (phone_like) {
    // "415-555-0199" as a fragment of "+14155550199".
    std::string d;
    for (char c : text) {
      if (c >= '0' && c <= '9') d += c;
    }
    q.alt_pattern = d;
  }
  const auto page = store_.Search(kind, q);
  for (const auto& h : page.items) {
    auto* hit = out->add_hits();
    hit->set_kind(WireKind(kind));
    hit->set_entity_id(h.entity_id);
    hit->set_display_name(h.display_name);
    hit->set_email(h.email);
    for (const auto& [type, value] : h.matched) {
      auto* m = hit->add_matched();
      m->set_type(type);
      m->set_value(value);
    }
    hit->set_score(static_cast<double>(h.score_micros) / 1e6);
  }
  if (page.more && !page.items.empty()) {
    out->set_next_page_token(EncodeSearchToken(page.items.back().score_micros, page.items.back().entity_id));
  }
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetPersonProfile(const v1::GetPersonRequest& req, v1::PersonProfile* out) {
  if (auto s = CheckEntityId("person_id", req.person_id()); !s.ok()) return s;
  const auto p = store_.GetProfile(EntityKind::kPerson, req.person_id(), kProfileMemberships);
  FillPerson(p.entity, out->mutable_person());
  for (const auto& m : p.memberships) FillMembership(m, out->add_memberships());
  out->set_memberships_truncated(p.memberships_truncated);
  out->set_event_count(p.event_count);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetGroupProfile(const v1::GetGroupRequest& req, v1::GroupProfile* out) {
  if (auto s = CheckEntityId("group_id", req.group_id()); !s.ok()) return s;
  const auto p = store_.GetProfile(EntityKind::kGroup, req.group_id(), kProfileMemberships);
  FillGroup(p.entity, out->mutable_group());
  for (const auto& m : p.memberships) FillMembership(m, out->add_members());
  out->set_members_truncated(p.memberships_truncated);
  out->set_event_count(p.event_count);
  return grpc::Status::OK;
}

grpc::Status QueryHandler::GetEvent(const v1::GetEventRequest& req, v1::EventView* out) {
  if (auto s = CheckEntityId("event_id", req.event_id()); !s.ok()) return s;
  const auto e = store_.GetEvent(req.event_id());
  out->set_event_id(e.event.event_id);
  SetTimestamp(out->mutable_occurred_at(), e.event.occurred_at_us);
  out->set_event_name(e.event.event_name);
  if (e.event.event_description) out->set_event_description(*e.event.event_description);
  out->set_event_type(e.event.event_type);
  out->set_source(e.event.source);
  if (e.event.value) out->set_value(*e.event.value);
  if (e.event.value_unit) out->set_value_unit(*e.event.value_unit);
  for (const auto& p : e.participants) FillParticipant(p, out->add_participants());
  return grpc::Status::OK;
}

namespace {
/// Runs one query with the caller's read-your-writes position (metadata x-nexus-min-lsn) and tells in the
/// response's initial metadata where it read and the resolver watermark the answer reflects.
template <typename F>
grpc::Status ReadWithFreshness(grpc::ServerContext* ctx, F&& call) {
  storage::TakeReadInfo();
  uint64_t min_lsn = 0;
  if (auto it = ctx->client_metadata().find(storage::kMinLsnHeader); it != ctx->client_metadata().end()) {
    if (!storage::ParseLsn(std::string_view(it->second.data(), it->second.size()), &min_lsn)) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          std::string(storage::kMinLsnHeader) + ": not a WAL position like 16/B374D848 (send an ingest's commit_lsn)");
    }
  }
  storage::ScopedMinLsn read_after(min_lsn);
  grpc::Status status = call();
  if (const auto info = storage::TakeReadInfo(); !info.served_by.empty()) {
    ctx->AddInitialMetadata(storage::kReadFromHeader, info.served_by);
    ctx->AddInitialMetadata(storage::kResolvedThroughHeader, info.resolved_through);
  }
  return status;
}
}  // namespace

// gRPC adapters.
#define NEXUS_QUERY_RPC(Method, Req, Resp)                                                                    \
  grpc::Status QueryServiceImpl::Method(grpc::ServerContext* ctx, const v1::Req* r, v1::Resp* o) {            \
    return HandleRpc(m_, auth_, ctx, #Method,                                                                 \
                     [&](CallContext&) { return ReadWithFreshness(ctx, [&] { return h_.Method(*r, o); }); }); \
  }
NEXUS_QUERY_RPC(GetPerson, GetPersonRequest, Person)
NEXUS_QUERY_RPC(LookupPerson, LookupPersonRequest, Person)
NEXUS_QUERY_RPC(GetGroup, GetGroupRequest, Group)
NEXUS_QUERY_RPC(LookupGroup, LookupGroupRequest, Group)
NEXUS_QUERY_RPC(ListPersonMemberships, ListPersonMembershipsRequest, ListMembershipsResponse)
NEXUS_QUERY_RPC(ListGroupMembers, ListGroupMembersRequest, ListMembershipsResponse)
NEXUS_QUERY_RPC(ListPersonTimeline, ListPersonTimelineRequest, TimelineResponse)
NEXUS_QUERY_RPC(ListGroupTimeline, ListGroupTimelineRequest, TimelineResponse)
NEXUS_QUERY_RPC(ExplainPersonLink, ExplainLinkRequest, ExplainLinkResponse)
NEXUS_QUERY_RPC(ExplainGroupLink, ExplainLinkRequest, ExplainLinkResponse)
NEXUS_QUERY_RPC(GetPersonHistory, GetPersonHistoryRequest, EntityHistory)
NEXUS_QUERY_RPC(GetGroupHistory, GetGroupHistoryRequest, EntityHistory)
NEXUS_QUERY_RPC(SearchPersons, SearchRequest, SearchResponse)
NEXUS_QUERY_RPC(SearchGroups, SearchRequest, SearchResponse)
NEXUS_QUERY_RPC(GetPersonProfile, GetPersonRequest, PersonProfile)
NEXUS_QUERY_RPC(GetGroupProfile, GetGroupRequest, GroupProfile)
NEXUS_QUERY_RPC(GetEvent, GetEventRequest, EventView)
#undef NEXUS_QUERY_RPC

}  // namespace nexus::server
