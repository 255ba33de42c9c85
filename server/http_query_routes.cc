// HTTP/JSON routes of the query API (/v1/persons..., /v1/groups...): the same handlers and messages as gRPC.

#include "common/rfc3339.h"
#include "server/http_api.h"
#include "server/query_service.h"
#include "server/request_parse.h"

namespace nexus::server {
namespace {

grpc::Status BadParam(const std::string& msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg); }

std::string Param(const HttpRequest& req, const char* name) {
  auto it = req.query.find(name);
  return it == req.query.end() ? std::string() : it->second;
}

/// page_size and page_token from the query string.
grpc::Status PageParams(const HttpRequest& req, int32_t* size, std::string* token) {
  if (auto it = req.query.find("page_size"); it != req.query.end()) {
    if (auto s = ParsePageSizeParam(it->second, size); !s.ok()) return s;
  }
  *token = Param(req, "page_token");
  return grpc::Status::OK;
}

/// Timeline filters: RFC 3339 occurred_after (inclusive) / occurred_before (exclusive), event_type, source.
grpc::Status FilterParams(const HttpRequest& req, v1::TimelineFilter* f) {
  for (const char* name : {"occurred_after", "occurred_before"}) {
    const std::string v = Param(req, name);
    if (v.empty()) continue;
    const std::optional<google::protobuf::Timestamp> ts = ParseRfc3339(v);
    if (!ts) return BadParam(std::string(name) + ": not an RFC 3339 timestamp (e.g. 2024-05-01T00:00:00Z)");
    *(std::string(name) == "occurred_after" ? f->mutable_occurred_after() : f->mutable_occurred_before()) = *ts;
  }
  f->set_event_type(Param(req, "event_type"));
  f->set_source(Param(req, "source"));
  return grpc::Status::OK;
}

/// A boolean query parameter: true/1, false/0 or absent (false).
grpc::Status BoolParam(const HttpRequest& req, const char* name, bool* out) {
  const std::string v = Param(req, name);
  if (v == "true" || v == "1") {
    *out = true;
  } else if (v.empty() || v == "false" || v == "0") {
    *out = false;
  } else {
    return BadParam(std::string(name) + ": must be true or false");
  }
  return grpc::Status::OK;
}

/// query, page_size and page_token of a search.
grpc::Status SearchParams(const HttpRequest& req, v1::SearchRequest* in) {
  in->set_query(Param(req, "query"));
  int32_t size = 0;
  if (auto s = PageParams(req, &size, in->mutable_page_token()); !s.ok()) return s;
  in->set_page_size(size);
  return grpc::Status::OK;
}

}  // namespace

void HttpApi::AddQueryRoutes() {
  QueryHandler* q = query_;
  // Persons.
  Add("GET", "/v1/persons:lookup", "LookupPerson", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::LookupPersonRequest in;
    in.set_identifier_type(Param(req, "identifier_type"));
    in.set_identifier_value(Param(req, "identifier_value"));
    return JsonCall<v1::Person>([&](v1::Person* out) { return q->LookupPerson(in, out); });
  });
  Add("GET", "/v1/persons:explain", "ExplainPersonLink", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::ExplainLinkRequest in;
    in.mutable_a()->set_type(Param(req, "a_type"));
    in.mutable_a()->set_value(Param(req, "a_value"));
    in.mutable_b()->set_type(Param(req, "b_type"));
    in.mutable_b()->set_value(Param(req, "b_value"));
    return JsonCall<v1::ExplainLinkResponse>(
        [&](v1::ExplainLinkResponse* out) { return q->ExplainPersonLink(in, out); });
  });
  Add("GET", "/v1/persons:search", "SearchPersons", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::SearchRequest in;
    if (auto s = SearchParams(req, &in); !s.ok()) return Error(s);
    return JsonCall<v1::SearchResponse>([&](v1::SearchResponse* out) { return q->SearchPersons(in, out); });
  });
  Add("GET", "/v1/persons/{id}/profile", "GetPersonProfile",
      [q](const HttpRequest&, const PathParams& p, CallContext&) {
        v1::GetPersonRequest in;
        in.set_person_id(p.at("id"));
        return JsonCall<v1::PersonProfile>([&](v1::PersonProfile* out) { return q->GetPersonProfile(in, out); });
      });
  Add("GET", "/v1/persons/{id}", "GetPerson", [q](const HttpRequest&, const PathParams& p, CallContext&) {
    v1::GetPersonRequest in;
    in.set_person_id(p.at("id"));
    return JsonCall<v1::Person>([&](v1::Person* out) { return q->GetPerson(in, out); });
  });
  Add("GET", "/v1/persons/{id}/memberships", "ListPersonMemberships",
      [q](const HttpRequest& req, const PathParams& p, CallContext&) {
        v1::ListPersonMembershipsRequest in;
        in.set_person_id(p.at("id"));
        int32_t size = 0;
        if (auto s = PageParams(req, &size, in.mutable_page_token()); !s.ok()) return Error(s);
        in.set_page_size(size);
        return JsonCall<v1::ListMembershipsResponse>(
            [&](v1::ListMembershipsResponse* out) { return q->ListPersonMemberships(in, out); });
      });
  Add("GET", "/v1/persons/{id}/timeline", "ListPersonTimeline",
      [q](const HttpRequest& req, const PathParams& p, CallContext&) {
        v1::ListPersonTimelineRequest in;
        in.set_person_id(p.at("id"));
        int32_t size = 0;
        if (auto s = PageParams(req, &size, in.mutable_page_token()); !s.ok()) return Error(s);
        in.set_page_size(size);
        if (auto s = FilterParams(req, in.mutable_filter()); !s.ok()) return Error(s);
        bool participants = false;
        if (auto s = BoolParam(req, "include_participants", &participants); !s.ok()) return Error(s);
        in.set_include_participants(participants);
        return JsonCall<v1::TimelineResponse>(
            [&](v1::TimelineResponse* out) { return q->ListPersonTimeline(in, out); });
      });
  Add("GET", "/v1/persons/{id}/history", "GetPersonHistory",
      [q](const HttpRequest&, const PathParams& p, CallContext&) {
        v1::GetPersonHistoryRequest in;
        in.set_person_id(p.at("id"));
        return JsonCall<v1::EntityHistory>([&](v1::EntityHistory* out) { return q->GetPersonHistory(in, out); });
      });
  // Groups.
  Add("GET", "/v1/groups:lookup", "LookupGroup", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::LookupGroupRequest in;
    in.set_identifier_type(Param(req, "identifier_type"));
    in.set_identifier_value(Param(req, "identifier_value"));
    return JsonCall<v1::Group>([&](v1::Group* out) { return q->LookupGroup(in, out); });
  });
  Add("GET", "/v1/groups:explain", "ExplainGroupLink", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::ExplainLinkRequest in;
    in.mutable_a()->set_type(Param(req, "a_type"));
    in.mutable_a()->set_value(Param(req, "a_value"));
    in.mutable_b()->set_type(Param(req, "b_type"));
    in.mutable_b()->set_value(Param(req, "b_value"));
    return JsonCall<v1::ExplainLinkResponse>(
        [&](v1::ExplainLinkResponse* out) { return q->ExplainGroupLink(in, out); });
  });
  Add("GET", "/v1/groups:search", "SearchGroups", [q](const HttpRequest& req, const PathParams&, CallContext&) {
    v1::SearchRequest in;
    if (auto s = SearchParams(req, &in); !s.ok()) return Error(s);
    return JsonCall<v1::SearchResponse>([&](v1::SearchResponse* out) { return q->SearchGroups(in, out); });
  });
  Add("GET", "/v1/groups/{id}/profile", "GetGroupProfile", [q](const HttpRequest&, const PathParams& p, CallContext&) {
    v1::GetGroupRequest in;
    in.set_group_id(p.at("id"));
    return JsonCall<v1::GroupProfile>([&](v1::GroupProfile* out) { return q->GetGroupProfile(in, out); });
  });
  Add("GET", "/v1/groups/{id}", "GetGroup", [q](const HttpRequest&, const PathParams& p, CallContext&) {
    v1::GetGroupRequest in;
    in.set_group_id(p.at("id"));
    return JsonCall<v1::Group>([&](v1::Group* out) { return q->GetGroup(in, out); });
  });
  Add("GET", "/v1/groups/{id}/members", "ListGroupMembers",
      [q](const HttpRequest& req, const PathParams& p, CallContext&) {
        v1::ListGroupMembersRequest in;
        in.set_group_id(p.at("id"));
        int32_t size = 0;
        if (auto s = PageParams(req, &size, in.mutable_page_token()); !s.ok()) return Error(s);
        in.set_page_size(size);
        return JsonCall<v1::ListMembershipsResponse>(
            [&](v1::ListMembershipsResponse* out) { return q->ListGroupMembers(in, out); });
      });
  Add("GET", "/v1/groups/{id}/timeline", "ListGroupTimeline",
      [q](const HttpRequest& req, const PathParams& p, CallContext&) {
        v1::ListGroupTimelineRequest in;
        in.set_group_id(p.at("id"));
        int32_t size = 0;
        if (auto s = PageParams(req, &size, in.mutable_page_token()); !s.ok()) return Error(s);
        in.set_page_size(size);
        if (auto s = FilterParams(req, in.mutable_filter()); !s.ok()) return Error(s);
        bool members = false, participants = false;
        if (auto s = BoolParam(req, "include_members", &members); !s.ok()) return Error(s);
        if (auto s = BoolParam(req, "include_participants", &participants); !s.ok()) return Error(s);
        in.set_include_members(members);
        in.set_include_participants(participants);
        return JsonCall<v1::TimelineResponse>([&](v1::TimelineResponse* out) { return q->ListGroupTimeline(in, out); });
      });
  Add("GET", "/v1/groups/{id}/history", "GetGroupHistory", [q](const HttpRequest&, const PathParams& p, CallContext&) {
    v1::GetGroupHistoryRequest in;
    in.set_group_id(p.at("id"));
    return JsonCall<v1::EntityHistory>([&](v1::EntityHistory* out) { return q->GetGroupHistory(in, out); });
  });
  // Events.
  Add("GET", "/v1/events/{id}", "GetEvent", [q](const HttpRequest&, const PathParams& p, CallContext&) {
    v1::GetEventRequest in;
    in.set_event_id(p.at("id"));
    return JsonCall<v1::EventView>([&](v1::EventView* out) { return q->GetEvent(in, out); });
  });
}

}  // namespace nexus::server
