#pragma once
// How nexusctl prints answers: aligned plain-text tables by default, protobuf JSON with --json.
// Pure functions of the response messages, so they are unit-tested on constructed messages.

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <string>
#include <vector>

#include "nexus/v1/query.pb.h"

namespace nexus::ctl {

/// Proto3 JSON with the proto field names and every field printed (what the HTTP API answers), one line + "\n".
std::string ToJson(const google::protobuf::Message& message);

/// Columns padded to the widest cell; cells have line breaks and tabs flattened to spaces; "-" for empty.
std::string RenderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

/// RFC 3339 in UTC ("2026-11-02T10:00:00Z"), or "" when unset.
std::string FormatTime(const google::protobuf::Timestamp& t);

std::string RenderPerson(const v1::Person& p);
std::string RenderGroup(const v1::Group& g);
std::string RenderPersonProfile(const v1::PersonProfile& p);
std::string RenderGroupProfile(const v1::GroupProfile& g);
std::string RenderTimeline(const v1::TimelineResponse& t);
std::string RenderSearch(const v1::SearchResponse& s);
std::string RenderEvent(const v1::EventView& e);
std::string RenderExplain(const v1::ExplainLinkResponse& e);
std::string RenderHistory(const v1::EntityHistory& h);
std::string RenderMemberships(const v1::ListMembershipsResponse& m);

}  // namespace nexus::ctl
