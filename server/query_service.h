#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "nexus/v1/query.grpc.pb.h"
#include "resolver/id_key.h"
#include "server/auth.h"
#include "server/metrics.h"
#include "server/protection_holder.h"
#include "server/request_parse.h"
#include "storage/query_store.h"

namespace nexus::server {

/// List page sizes: 0 means the default; more than the maximum is INVALID_ARGUMENT.
inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 500;

/// Query logic shared by gRPC and HTTP: validates requests, reads QueryStore, builds responses.
/// Storage errors propagate as StorageError (HandleRpc / the HTTP router map them).
class QueryHandler final {
 public:
  /// `protection` supplies the identifier rules lookups normalize with (the same as ingest); null: defaults.
  QueryHandler(storage::QueryStore& store, Metrics& metrics, const ProtectionHolder* protection = nullptr)
      : store_(store), metrics_(metrics), protection_(protection) {}

  grpc::Status GetPerson(const v1::GetPersonRequest& req, v1::Person* out);
  grpc::Status LookupPerson(const v1::LookupPersonRequest& req, v1::Person* out);
  grpc::Status GetGroup(const v1::GetGroupRequest& req, v1::Group* out);
  grpc::Status LookupGroup(const v1::LookupGroupRequest& req, v1::Group* out);
  grpc::Status ListPersonMemberships(const v1::ListPersonMembershipsRequest& req, v1::ListMembershipsResponse* out);
  grpc::Status ListGroupMembers(const v1::ListGroupMembersRequest& req, v1::ListMembershipsResponse* out);
  grpc::Status ListPersonTimeline(const v1::ListPersonTimelineRequest& req, v1::TimelineResponse* out);
  grpc::Status ListGroupTimeline(const v1::ListGroupTimelineRequest& req, v1::TimelineResponse* out);
  grpc::Status ExplainPersonLink(const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out);
  grpc::Status ExplainGroupLink(const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out);
  grpc::Status GetPersonHistory(const v1::GetPersonHistoryRequest& req, v1::EntityHistory* out);
  grpc::Status GetGroupHistory(const v1::GetGroupHistoryRequest& req, v1::EntityHistory* out);
  grpc::Status SearchPersons(const v1::SearchRequest& req, v1::SearchResponse* out);
  grpc::Status SearchGroups(const v1::SearchRequest& req, v1::SearchResponse* out);
  grpc::Status GetPersonProfile(const v1::GetPersonRequest& req, v1::PersonProfile* out);
  grpc::Status GetGroupProfile(const v1::GetGroupRequest& req, v1::GroupProfile* out);
  grpc::Status GetEvent(const v1::GetEventRequest& req, v1::EventView* out);

  /// Search page sizes: 0 means 20, at most 100; queries are 2..256 characters after trimming.
  static constexpr int kDefaultSearchPageSize = 20;
  static constexpr int kMaxSearchPageSize = 100;
  /// Profiles list at most this many memberships (newest first).
  static constexpr int kProfileMemberships = 100;

 private:
  grpc::Status Memberships(storage::EntityKind kind, const std::string& id, int page_size, const std::string& token,
                           v1::ListMembershipsResponse* out);
  grpc::Status Timeline(storage::EntityKind kind, const std::string& id, int page_size, const std::string& token,
                        const v1::TimelineFilter& filter, v1::TimelineResponse* out, bool include_members = false,
                        bool include_participants = false);
  grpc::Status Search(storage::EntityKind kind, const v1::SearchRequest& req, v1::SearchResponse* out);
  grpc::Status Explain(storage::EntityKind kind, const v1::ExplainLinkRequest& req, v1::ExplainLinkResponse* out);
  grpc::Status History(storage::EntityKind kind, const std::string& id, v1::EntityHistory* out);

  /// Validates and normalizes a lookup/explain identifier; `field` names it in errors.
  grpc::Status NormalizeKey(const std::string& type, const std::string& value, const std::string& field,
                            resolver::IdKey* out) const;

  storage::QueryStore& store_;
  [[maybe_unused]] Metrics& metrics_;
  const ProtectionHolder* protection_;
};

/// gRPC QueryService: every method runs through HandleRpc (status mapping + metrics).
class QueryServiceImpl final : public v1::QueryService::Service {
 public:
  /// `auth` null: no access control (tests of the handlers alone).
  QueryServiceImpl(QueryHandler& h, Metrics& m, Authenticator* auth) : h_(h), m_(m), auth_(auth) {}

  grpc::Status GetPerson(grpc::ServerContext*, const v1::GetPersonRequest* r, v1::Person* o) override;
  grpc::Status LookupPerson(grpc::ServerContext*, const v1::LookupPersonRequest* r, v1::Person* o) override;
  grpc::Status GetGroup(grpc::ServerContext*, const v1::GetGroupRequest* r, v1::Group* o) override;
  grpc::Status LookupGroup(grpc::ServerContext*, const v1::LookupGroupRequest* r, v1::Group* o) override;
  grpc::Status ListPersonMemberships(grpc::ServerContext*, const v1::ListPersonMembershipsRequest* r,
                                     v1::ListMembershipsResponse* o) override;
  grpc::Status ListGroupMembers(grpc::ServerContext*, const v1::ListGroupMembersRequest* r,
                                v1::ListMembershipsResponse* o) override;
  grpc::Status ListPersonTimeline(grpc::ServerContext*, const v1::ListPersonTimelineRequest* r,
                                  v1::TimelineResponse* o) override;
  grpc::Status ListGroupTimeline(grpc::ServerContext*, const v1::ListGroupTimelineRequest* r,
                                 v1::TimelineResponse* o) override;
  grpc::Status ExplainPersonLink(grpc::ServerContext*, const v1::ExplainLinkRequest* r,
                                 v1::ExplainLinkResponse* o) override;
  grpc::Status ExplainGroupLink(grpc::ServerContext*, const v1::ExplainLinkRequest* r,
                                v1::ExplainLinkResponse* o) override;
  grpc::Status GetPersonHistory(grpc::ServerContext*, const v1::GetPersonHistoryRequest* r,
                                v1::EntityHistory* o) override;
  grpc::Status GetGroupHistory(grpc::ServerContext*, const v1::GetGroupHistoryRequest* r,
                               v1::EntityHistory* o) override;
  grpc::Status SearchPersons(grpc::ServerContext*, const v1::SearchRequest* r, v1::SearchResponse* o) override;
  grpc::Status SearchGroups(grpc::ServerContext*, const v1::SearchRequest* r, v1::SearchResponse* o) override;
  grpc::Status GetPersonProfile(grpc::ServerContext*, const v1::GetPersonRequest* r, v1::PersonProfile* o) override;
  grpc::Status GetGroupProfile(grpc::ServerContext*, const v1::GetGroupRequest* r, v1::GroupProfile* o) override;
  grpc::Status GetEvent(grpc::ServerContext*, const v1::GetEventRequest* r, v1::EventView* o) override;

 private:
  QueryHandler& h_;
  Metrics& m_;
  Authenticator* auth_;
};

}  // namespace nexus::server
