#include "tools/nexusctl/render.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace nexus::ctl {
namespace {

std::string Cell(std::string s) {
  for (auto& c : s) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  return s.empty() ? "-" : s;
}

/// Display width: UTF-8 continuation bytes take no column.
size_t Width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string Id(const v1::Identifier& id) { return id.type() + "=" + id.value(); }

std::string Ids(const google::protobuf::RepeatedPtrField<v1::Identifier>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ", ") + Id(id);
  return out;
}

std::string Kind(v1::EntityKind k) {
  switch (k) {
    case v1::ENTITY_KIND_PERSON:
      return "person";
    case v1::ENTITY_KIND_GROUP:
      return "group";
    default:
      return "?";
  }
}

std::string Number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string TraitValue(const v1::ResolvedTrait& t) {
  if (!t.text_value().empty() || !t.has_value()) return t.text_value();
  switch (t.value().kind_case()) {
    case google::protobuf::Value::kNumberValue:
      return Number(t.value().number_value());
    case google::protobuf::Value::kBoolValue:
      return t.value().bool_value() ? "true" : "false";
    case google::protobuf::Value::kStringValue:
      return t.value().string_value();
    case google::protobuf::Value::kNullValue:
      return "null";
    default:
      return "";
  }
}

/// "key: value" lines, keys padded, empty values left out.
std::string Fields(const std::vector<std::pair<std::string, std::string>>& kv) {
  size_t w = 0;
  for (const auto& [k, v] : kv) {
    if (!v.empty()) w = std::max(w, k.size());
  }
  std::string out;
  for (const auto& [k, v] : kv) {
    if (v.empty()) continue;
    out += k + ":" + std::string(w - k.size() + 1, ' ') + Cell(v) + "\n";
  }
  return out;
}

std::string Section(const std::string& title, const std::string& body) { return "\n" + title + "\n" + body; }

std::string IdentifierTable(const google::protobuf::RepeatedPtrField<v1::ResolvedIdentifier>& ids) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& id : ids) {
    rows.push_back({id.type(), id.value(), id.source(), FormatTime(id.occurred_at()), FormatTime(id.last_seen_at())});
  }
  return RenderTable({"TYPE", "VALUE", "SOURCE", "FIRST SEEN", "LAST SEEN"}, rows);
}

std::string TraitTable(const google::protobuf::RepeatedPtrField<v1::ResolvedTrait>& traits) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : traits) rows.push_back({t.name(), TraitValue(t), t.source(), FormatTime(t.occurred_at())});
  return RenderTable({"TRAIT", "VALUE", "SOURCE", "OCCURRED"}, rows);
}

std::string MembershipRows(const google::protobuf::RepeatedPtrField<v1::MembershipView>& ms, bool by_group) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : ms) {
    if (by_group) {
      rows.push_back(
          {m.group_id(), m.group_name(), m.group_domain(), m.role(), m.source(), FormatTime(m.established_at())});
    } else {
      rows.push_back(
          {m.person_id(), m.person_name(), m.person_email(), m.role(), m.source(), FormatTime(m.established_at())});
    }
  }
  return by_group ? RenderTable({"GROUP", "NAME", "DOMAIN", "ROLE", "SOURCE", "SINCE"}, rows)
                  : RenderTable({"PERSON", "NAME", "EMAIL", "ROLE", "SOURCE", "SINCE"}, rows);
}

std::string Participants(const google::protobuf::RepeatedPtrField<v1::EventParticipant>& ps) {
  std::string out;
  for (const auto& p : ps) {
    std::string who = p.display_name().empty() ? p.entity_id() : p.display_name();
    if (!p.role().empty()) who += " (" + p.role() + ")";
    out += (out.empty() ? "" : "; ") + who;
  }
  return out;
}

std::string RedirectNote(bool redirected, const std::string& requested, const std::string& id) {
  return redirected ? "(" + requested + " was merged into " + id + ")\n" : "";
}

}  // namespace

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(message, &out, opts);
  if (!st.ok()) return "{}\n";
  return out + "\n";
}

std::string RenderTable(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w(header.size(), 0);
  std::vector<std::vector<std::string>> cells;
  cells.push_back(header);
  for (const auto& r : rows) {
    std::vector<std::string> row;
    for (size_t i = 0; i < header.size(); ++i) row.push_back(Cell(i < r.size() ? r[i] : ""));
    cells.push_back(std::move(row));
  }
  for (const auto& r : cells) {
    for (size_t i = 0; i < r.size(); ++i) w[i] = std::max(w[i], Width(r[i]));
  }
  std::string out;
  for (const auto& r : cells) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(w[i] - Width(r[i]) + 2, ' ');
    }
    out += line + "\n";
  }
  if (rows.empty()) out += "(none)\n";
  return out;
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return google::protobuf::util::TimeUtil::ToString(t);
}

std::string RenderPerson(const v1::Person& p) {
  std::string out = RedirectNote(p.redirected(), p.requested_id(), p.person_id());
  out += Fields({{"person", p.person_id()},
                 {"name", p.name()},
                 {"email", p.email()},
                 {"phone", p.phone()},
                 {"title", p.title()},
                 {"timezone", p.timezone()},
                 {"updated", FormatTime(p.last_updated())}});
  std::string merged;
  for (const auto& m : p.merged_ids()) merged += (merged.empty() ? "" : ", ") + m;
  if (!merged.empty()) out += "merged:  " + merged + "\n";
  out += Section("IDENTIFIERS", IdentifierTable(p.identifiers()));
  out += Section("TRAITS", TraitTable(p.traits()));
  return out;
}

std::string RenderGroup(const v1::Group& g) {
  std::string out = RedirectNote(g.redirected(), g.requested_id(), g.group_id());
  out += Fields({{"group", g.group_id()},
                 {"company", g.company_name()},
                 {"domain", g.domain()},
                 {"industry", g.industry()},
                 {"size", g.company_size()},
                 {"shopify_id", g.shopify_id()},
                 {"updated", FormatTime(g.last_updated())}});
  std::string merged;
  for (const auto& m : g.merged_ids()) merged += (merged.empty() ? "" : ", ") + m;
  if (!merged.empty()) out += "merged:  " + merged + "\n";
  out += Section("IDENTIFIERS", IdentifierTable(g.identifiers()));
  out += Section("TRAITS", TraitTable(g.traits()));
  return out;
}

std::string RenderPersonProfile(const v1::PersonProfile& p) {
  std::string out = RenderPerson(p.person());
  out += Section(std::string("COMPANIES") + (p.memberships_truncated() ? " (first page only)" : ""),
                 MembershipRows(p.memberships(), true));
  out += "\nevents: " + std::to_string(p.event_count()) + "\n";
  return out;
}

std::string RenderGroupProfile(const v1::GroupProfile& g) {
  std::string out = RenderGroup(g.group());
  out += Section(std::string("MEMBERS") + (g.members_truncated() ? " (first page only)" : ""),
                 MembershipRows(g.members(), false));
  out += "\nevents: " + std::to_string(g.event_count()) + "\n";
  return out;
}

std::string RenderTimeline(const v1::TimelineResponse& t) {
  std::vector<std::vector<std::string>> rows;
  bool any_participants = false;
  for (const auto& e : t.events()) any_participants |= e.participants_size() > 0;
  for (const auto& e : t.events()) {
    std::string roles;
    for (const auto& r : e.roles()) roles += (roles.empty() ? "" : ",") + r;
    std::string value = e.has_value() ? Number(e.value()) + (e.value_unit().empty() ? "" : " " + e.value_unit()) : "";
    std::vector<std::string> row{
        FormatTime(e.occurred_at()), e.event_type(), e.event_name(), e.source(), roles, value, e.event_id()};
    if (any_participants) row.push_back(Participants(e.participants()));
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header{"OCCURRED", "TYPE", "NAME", "SOURCE", "ROLES", "VALUE", "EVENT"};
  if (any_participants) header.push_back("PARTICIPANTS");
  std::string out = RenderTable(header, rows);
  if (!t.next_page_token().empty()) out += "(more: --page-token " + t.next_page_token() + ")\n";
  return out;
}

std::string RenderSearch(const v1::SearchResponse& s) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& h : s.hits()) {
    std::ostringstream score;
    score.precision(3);
    score << h.score();
    rows.push_back({Kind(h.kind()), h.entity_id(), h.display_name(), h.email(), Ids(h.matched()), score.str()});
  }
  std::string out = RenderTable({"KIND", "ID", "NAME", "EMAIL/DOMAIN", "MATCHED", "SCORE"}, rows);
  if (!s.next_page_token().empty()) out += "(more: --page-token " + s.next_page_token() + ")\n";
  return out;
}

std::string RenderEvent(const v1::EventView& e) {
  std::string value = e.has_value() ? Number(e.value()) + (e.value_unit().empty() ? "" : " " + e.value_unit()) : "";
  std::string out = Fields({{"event", e.event_id()},
                            {"occurred", FormatTime(e.occurred_at())},
                            {"name", e.event_name()},
                            {"type", e.event_type()},
                            {"source", e.source()},
                            {"value", value},
                            {"description", e.event_description()}});
  std::vector<std::vector<std::string>> rows;
  for (const auto& p : e.participants()) {
    rows.push_back({Kind(p.kind()), p.entity_id(), p.display_name(), p.role(), Ids(p.identifiers())});
  }
  out += Section("PARTICIPANTS", RenderTable({"KIND", "ID", "NAME", "ROLE", "IDENTIFIERS"}, rows));
  return out;
}

std::string RenderExplain(const v1::ExplainLinkResponse& e) {
  std::string out;
  if (e.linked()) {
    out += "linked: yes (" + e.entity_id() + ")\n";
  } else {
    out += "linked: no";
    if (!e.entity_id_a().empty() || !e.entity_id_b().empty()) {
      out += " (a: " + (e.entity_id_a().empty() ? std::string("unknown") : e.entity_id_a()) +
             ", b: " + (e.entity_id_b().empty() ? std::string("unknown") : e.entity_id_b()) + ")";
    }
    out += "\n";
  }
  if (!e.explanation().empty()) out += Cell(e.explanation()) + "\n";
  if (e.path_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    int step = 0;
    for (const auto& l : e.path()) {
      rows.push_back({std::to_string(++step), Id(l.from()), Id(l.to()), l.source(), FormatTime(l.occurred_at()),
                      l.event_id(), l.edge_id()});
    }
    out += Section("PATH", RenderTable({"STEP", "FROM", "TO", "SOURCE", "OCCURRED", "EVENT", "EDGE"}, rows));
  }
  if (e.blocked_by_size() > 0) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& q : e.blocked_by()) {
      rows.push_back({std::to_string(q.quarantine_id()), q.reason(), q.source(), q.event_id(), Ids(q.identifiers())});
    }
    out += Section("BLOCKED BY (quarantined edges)",
                   RenderTable({"QUARANTINE", "REASON", "SOURCE", "EVENT", "IDENTIFIERS"}, rows));
  }
  return out;
}

std::string RenderHistory(const v1::EntityHistory& h) {
  std::string out = Fields(
      {{"entity", h.entity_id()}, {"created", FormatTime(h.created_at())}, {"created by", h.created_by_event_id()}});
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : h.merges()) {
    rows.push_back({FormatTime(m.merged_at()), m.absorbed_id(), m.surviving_id(),
                    std::to_string(m.absorbed_identifier_count()), m.event_id(), m.edge_id()});
  }
  out += Section("MERGES", RenderTable({"MERGED", "ABSORBED", "INTO", "IDENTIFIERS", "EVENT", "EDGE"}, rows));
  return out;
}

std::string RenderMemberships(const v1::ListMembershipsResponse& m) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : m.memberships()) {
    rows.push_back(
        {v.person_id(), v.person_name(), v.person_email(), v.group_id(), v.group_name(), v.role(), v.source()});
  }
  std::string out = RenderTable({"PERSON", "NAME", "EMAIL", "GROUP", "COMPANY", "ROLE", "SOURCE"}, rows);
  if (!m.next_page_token().empty()) out += "(more: --page-token " + m.next_page_token() + ")\n";
  return out;
}

}  // namespace nexus::ctl
