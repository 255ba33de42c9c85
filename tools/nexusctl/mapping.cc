#include "tools/nexusctl/mapping.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <regex>

#include "common/hash.h"
#include "common/rfc3339.h"

namespace nexus::ctl {
namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool ValidType(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  return std::all_of(t.begin(), t.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

std::string ParseRef(std::string_view name, std::string_view value, bool identifier, std::vector<ColumnRef>* out) {
  const auto eq = value.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == value.size()) {
    return "--" + std::string(name) + ": expected " +
           (identifier ? "TYPE=COLUMN (email=Email)" : "NAME=COLUMN (name=Full Name)") + ", got '" +
           std::string(value) + "'";
  }
  ColumnRef ref{Trim(value.substr(0, eq)), Trim(value.substr(eq + 1))};
  if (identifier && !ValidType(ref.key)) {
    return "--" + std::string(name) + ": identifier type '" + ref.key + "' must match [a-z0-9_]{1,64}";
  }
  out->push_back(std::move(ref));
  return "";
}

std::string ValueText(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return v.string_value();
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return std::to_string(static_cast<int64_t>(d));
      std::string s = std::to_string(d);
      return s;
    }
    case google::protobuf::Value::kBoolValue:
      return v.bool_value() ? "true" : "false";
    default:
      return "";
  }
}

}  // namespace

const std::vector<std::string>& MappingOptionNames() {
  static const std::vector<std::string> kNames{"format",
                                               "delimiter",
                                               "no-header",
                                               "source",
                                               "source-column",
                                               "person-id",
                                               "group-id",
                                               "person-trait",
                                               "group-trait",
                                               "time-column",
                                               "default-time",
                                               "event-name",
                                               "event-name-column",
                                               "event-type",
                                               "event-type-column",
                                               "event-id-column",
                                               "description-column",
                                               "person-role",
                                               "group-role",
                                               "membership-role",
                                               "membership-role-column",
                                               "no-memberships",
                                               "value-column",
                                               "value-unit"};
  return kNames;
}

bool IsMappingOption(std::string_view name) {
  const auto& n = MappingOptionNames();
  return std::find(n.begin(), n.end(), name) != n.end();
}

std::string ApplyMappingOption(Mapping* m, std::string_view name, std::string_view raw) {
  const std::string value = Trim(raw);
  auto need = [&]() -> std::string { return value.empty() ? "--" + std::string(name) + ": needs a value" : ""; };
  if (name == "no-header") {
    m->header = false;
    return "";
  }
  if (name == "no-memberships") {
    m->memberships = false;
    return "";
  }
  if (auto e = need(); !e.empty()) return e;
  if (name == "format") {
    if (value != "csv" && value != "jsonl") return "--format: '" + value + "' is not csv or jsonl";
    m->format = value;
  } else if (name == "delimiter") {
    if (value == "tab" || value == "\\t") {
      m->delimiter = '\t';
    } else if (value.size() == 1 && value != "\"" && value != "\n") {
      m->delimiter = value[0];
    } else {
      return "--delimiter: one character or 'tab', got '" + value + "'";
    }
  } else if (name == "source") {
    m->source = value;
  } else if (name == "source-column") {
    m->source_column = value;
  } else if (name == "person-id") {
    return ParseRef(name, value, true, &m->person_ids);
  } else if (name == "group-id") {
    return ParseRef(name, value, true, &m->group_ids);
  } else if (name == "person-trait") {
    return ParseRef(name, value, false, &m->person_traits);
  } else if (name == "group-trait") {
    return ParseRef(name, value, false, &m->group_traits);
  } else if (name == "time-column") {
    m->time_column = value;
  } else if (name == "default-time") {
    google::protobuf::Timestamp ts;
    if (auto e = ParseTime(value, &ts); !e.empty()) return "--default-time: " + e;
    m->default_time = value;
  } else if (name == "event-name") {
    m->event_name = value;
  } else if (name == "event-name-column") {
    m->event_name_column = value;
  } else if (name == "event-type") {
    m->event_type = value;
  } else if (name == "event-type-column") {
    m->event_type_column = value;
  } else if (name == "event-id-column") {
    m->event_id_column = value;
  } else if (name == "description-column") {
    m->description_column = value;
  } else if (name == "value-column") {
    m->value_column = value;
  } else if (name == "value-unit") {
    m->value_unit = value;
  } else if (name == "person-role") {
    m->person_role = value;
  } else if (name == "group-role") {
    m->group_role = value;
  } else if (name == "membership-role") {
    m->membership_role = value;
  } else if (name == "membership-role-column") {
    m->membership_role_column = value;
  } else {
    return "unknown mapping option '" + std::string(name) + "'";
  }
  return "";
}

std::string ParseMappingFile(std::string_view text, Mapping* m) {
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t nl = text.find('\n', pos);
    const std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    const std::string line = Trim(raw);
    if (line.empty() || line[0] == '#') continue;
    size_t sp = 0;
    while (sp < line.size() && !std::isspace(static_cast<unsigned char>(line[sp]))) ++sp;
    std::string name = line.substr(0, sp);
    if (name.rfind("--", 0) == 0) name = name.substr(2);
    const std::string value = sp < line.size() ? Trim(line.substr(sp)) : "";
    if (!IsMappingOption(name)) return "line " + std::to_string(line_no) + ": unknown option '" + name + "'";
    if (auto e = ApplyMappingOption(m, name, value); !e.empty()) return "line " + std::to_string(line_no) + ": " + e;
  }
  return "";
}

std::string ValidateMapping(const Mapping& m) {
  if (m.source.empty() && m.source_column.empty()) return "no source: pass --source NAME (or --source-column COLUMN)";
  if (m.person_ids.empty() && m.group_ids.empty()) {
    return "no identifier column: pass --person-id TYPE=COLUMN (e.g. --person-id email=Email) or --group-id";
  }
  if (!m.person_traits.empty() && m.person_ids.empty()) return "--person-trait needs a --person-id column";
  if (!m.group_traits.empty() && m.group_ids.empty()) return "--group-trait needs a --group-id column";
  return "";
}

std::string MappingFingerprint(const Mapping& m) {
  std::string s = "format=" + m.format + "\ndelimiter=" + std::string(1, m.delimiter) +
                  "\nheader=" + (m.header ? "1" : "0") + "\nsource=" + m.source + "\nsource_column=" + m.source_column;
  auto refs = [&](const char* what, const std::vector<ColumnRef>& v) {
    for (const auto& r : v) s += std::string("\n") + what + "=" + r.key + "=" + r.column;
  };
  refs("person_id", m.person_ids);
  refs("group_id", m.group_ids);
  refs("person_trait", m.person_traits);
  refs("group_trait", m.group_traits);
  s += "\ntime=" + m.time_column + "\nname=" + m.event_name + "|" + m.event_name_column + "\ntype=" + m.event_type +
       "|" + m.event_type_column + "\nid=" + m.event_id_column + "\ndesc=" + m.description_column +
       "\nvalue=" + m.value_column + "|" + m.value_unit + "\nroles=" + m.person_role + "|" + m.group_role + "|" +
       m.membership_role + "|" + m.membership_role_column + "\nmemberships=" + (m.memberships ? "1" : "0");
  return StableId128(s);
}

std::string ParseTime(std::string_view text_in, google::protobuf::Timestamp* out) {
  const std::string text = Trim(text_in);
  if (text.empty()) return "empty time";
  static const std::regex kDigits(R"(-?\d{1,16}(\.\d+)?)");
  if (std::regex_match(text, kDigits)) {
    const double v = std::stod(text);
    // Unix seconds, or milliseconds when the number is too large to be seconds before year 5000.
    const double secs = std::fabs(v) > 1e11 ? v / 1000.0 : v;
    const auto whole = static_cast<int64_t>(std::floor(secs));
    out->set_seconds(whole);
    out->set_nanos(static_cast<int32_t>(std::llround((secs - static_cast<double>(whole)) * 1e9) % 1000000000));
    return "";
  }
  std::string t = text;
  static const std::regex kDate(R"(\d{4}-\d{2}-\d{2})");
  static const std::regex kSpaced(R"((\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2}(\.\d+)?)?))");
  std::smatch sm;
  if (std::regex_match(t, kDate)) {
    t += "T00:00:00Z";
  } else if (std::regex_match(t, sm, kSpaced)) {
    std::string time = sm[2].str();
    if (time.size() == 5) time += ":00";
    t = sm[1].str() + "T" + time + "Z";
  } else if (t.size() > 10 && t[10] == ' ') {
    t[10] = 'T';
  }
  if (!t.empty() && t.back() == 'z') t.back() = 'Z';
  const std::optional<google::protobuf::Timestamp> ts = ParseRfc3339(t);
  if (!ts) {
    return "'" + text.substr(0, 40) +
           "' is not a time (use RFC 3339 like 2026-11-02T10:00:00Z, 2026-11-02, or Unix seconds)";
  }
  *out = *ts;
  return "";
}

std::optional<google::protobuf::Value> CsvRow::Get(const std::string& column) const {
  for (size_t i = 0; i < header_.size(); ++i) {
    if (header_[i] != column) continue;
    if (i >= fields_.size()) return std::nullopt;
    const std::string v = Trim(fields_[i]);
    if (v.empty()) return std::nullopt;
    google::protobuf::Value out;
    out.set_string_value(v);
    return out;
  }
  return std::nullopt;
}

std::optional<google::protobuf::Value> JsonRow::Get(const std::string& column) const {
  auto lookup = [](const google::protobuf::Struct& s, const std::string& key) -> const google::protobuf::Value* {
    auto it = s.fields().find(key);
    return it == s.fields().end() ? nullptr : &it->second;
  };
  // The whole name first (keys may contain dots), then a path through nested objects.
  const google::protobuf::Value* v = lookup(object_, column);
  if (!v) {
    const google::protobuf::Struct* cur = &object_;
    size_t pos = 0;
    while (cur) {
      const size_t dot = column.find('.', pos);
      v = lookup(*cur, column.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos));
      if (!v || dot == std::string::npos) break;
      cur = v->has_struct_value() ? &v->struct_value() : nullptr;
      pos = dot + 1;
      if (!cur) v = nullptr;
    }
  }
  if (!v) return std::nullopt;
  if (v->has_string_value() && Trim(v->string_value()).empty()) return std::nullopt;
  return *v;
}

std::string ParseJsonObject(const std::string& line, google::protobuf::Struct* out) {
  const auto first = line.find_first_not_of(" \t");
  if (first == std::string::npos || line[first] != '{') return "not a JSON object (a JSON line must start with '{')";
  auto st = google::protobuf::util::JsonStringToMessage(line, out);
  if (!st.ok()) return "invalid JSON: " + std::string(st.message().substr(0, 120));
  return "";
}

std::string DerivedEventId(std::string_view source, std::string_view content) {
  std::string data(source);
  data.push_back('\x1f');
  data.append(content);
  return "imp_" + StableId128(data);
}

std::string CsvContent(const std::vector<std::string>& header, const std::vector<std::string>& fields) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (size_t i = 0; i < fields.size(); ++i) {
    pairs.emplace_back(i < header.size() ? header[i] : std::to_string(i + 1), fields[i]);
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [k, v] : pairs) out += k + '\x1e' + v + '\x1f';
  return out;
}

std::string RowToEvent(const Mapping& m, const Row& row, std::string_view content,
                       const google::protobuf::Timestamp& default_time, v1::Event* out) {
  out->Clear();
  auto text = [&](const std::string& column) -> std::string {
    auto v = row.Get(column);
    return v ? Trim(ValueText(*v)) : "";
  };
  std::string source = m.source;
  if (!m.source_column.empty()) {
    source = text(m.source_column);
    if (source.empty()) {
      if (m.source.empty()) return "column '" + m.source_column + "' (the source) is empty";
      source = m.source;
    }
  }
  out->set_source(source);
  if (!m.time_column.empty()) {
    auto v = row.Get(m.time_column);
    if (!v) return "column '" + m.time_column + "' (the time) is empty";
    std::string err;
    if (v->has_number_value()) {
      err = ParseTime(std::to_string(static_cast<int64_t>(v->number_value())), out->mutable_occurred_at());
    } else {
      err = ParseTime(ValueText(*v), out->mutable_occurred_at());
    }
    if (!err.empty()) return "column '" + m.time_column + "': " + err;
  } else {
    *out->mutable_occurred_at() = default_time;
  }
  out->set_event_name(m.event_name_column.empty() ? m.event_name : text(m.event_name_column));
  if (out->event_name().empty()) out->set_event_name(m.event_name);
  out->set_event_type(m.event_type_column.empty() ? m.event_type : text(m.event_type_column));
  if (out->event_type().empty()) out->set_event_type(m.event_type);
  if (!m.description_column.empty()) out->set_event_description(text(m.description_column));
  if (!m.value_column.empty()) {
    if (auto v = row.Get(m.value_column)) {
      if (v->has_number_value()) {
        out->set_value(v->number_value());
      } else {
        const std::string t = Trim(ValueText(*v));
        char* end = nullptr;
        const double d = std::strtod(t.c_str(), &end);
        if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(d)) {
          return "column '" + m.value_column + "' (the value) is not a number";
        }
        out->set_value(d);
      }
      if (!m.value_unit.empty()) out->set_value_unit(m.value_unit);
    }
  }

  auto mention = [&](const std::vector<ColumnRef>& ids, const std::vector<ColumnRef>& traits, const std::string& role,
                     bool string_traits, google::protobuf::RepeatedPtrField<v1::EntityMention>* list,
                     v1::Identifier* first) -> void {
    v1::EntityMention men;
    for (const auto& ref : ids) {
      const std::string v = text(ref.column);
      if (v.empty()) continue;
      auto* id = men.add_identifiers();
      id->set_type(ref.key);
      id->set_value(v);
      if (first->type().empty()) *first = *id;
    }
    if (men.identifiers_size() == 0) return;
    for (const auto& ref : traits) {
      auto v = row.Get(ref.column);
      if (!v) continue;
      if (string_traits) {
        (*men.mutable_traits())[ref.key] = ValueText(*v);
      } else if (v->has_struct_value() || v->has_list_value()) {
        continue;  // nested values are not traits; map a nested key with a dotted column instead
      } else {
        (*men.mutable_trait_values())[ref.key] = *v;
      }
    }
    if (!role.empty()) men.set_role(role);
    *list->Add() = std::move(men);
  };
  const bool string_traits = dynamic_cast<const CsvRow*>(&row) != nullptr;
  v1::Identifier first_person, first_group;
  mention(m.person_ids, m.person_traits, m.person_role, string_traits, out->mutable_persons(), &first_person);
  mention(m.group_ids, m.group_traits, m.group_role, string_traits, out->mutable_groups(), &first_group);
  if (out->persons_size() == 0 && out->groups_size() == 0) {
    std::string cols;
    for (const auto* v : {&m.person_ids, &m.group_ids}) {
      for (const auto& r : *v) cols += (cols.empty() ? "'" : ", '") + r.column + "'";
    }
    return "no identifier: " + cols + " " + (m.person_ids.size() + m.group_ids.size() > 1 ? "are all" : "is") +
           " empty";
  }
  if (m.memberships && !first_person.type().empty() && !first_group.type().empty()) {
    auto* ms = out->add_memberships();
    *ms->mutable_person() = first_person;
    *ms->mutable_group() = first_group;
    std::string role = m.membership_role_column.empty() ? "" : text(m.membership_role_column);
    ms->set_role(role.empty() ? m.membership_role : role);
  }
  if (!m.event_id_column.empty()) {
    const std::string id = text(m.event_id_column);
    if (id.empty()) return "column '" + m.event_id_column + "' (the event id) is empty";
    out->set_event_id(id);
  } else {
    out->set_event_id(DerivedEventId(source, content));
  }
  return "";
}

}  // namespace nexus::ctl
