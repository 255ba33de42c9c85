#include "server/segment_convert.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "common/rfc3339.h"
#include "server/request_parse.h"

namespace nexus::server::segment {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

grpc::Status Invalid(std::string msg) { return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(msg)); }

const Value* Field(const Struct& s, const char* name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? nullptr : &it->second;
}

const Struct* ObjectField(const Struct& s, const char* name) {
  const Value* v = Field(s, name);
  return v && v->has_struct_value() ? &v->struct_value() : nullptr;
}

std::string NumberText(double d) {
  if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) return std::to_string(static_cast<long long>(d));
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest text that reads back as the same double
  return std::string(buf, r.ptr);
}

/// A JSON kind name for problems: never the value itself.
const char* KindName(const Value& v) {
  switch (v.kind_case()) {
    case Value::kNullValue:
      return "null";
    case Value::kNumberValue:
      return "a number";
    case Value::kStringValue:
      return "a string";
    case Value::kBoolValue:
      return "a boolean";
    case Value::kStructValue:
      return "an object";
    case Value::kListValue:
      return "a list";
    default:
      return "empty";
  }
}

/// One message being converted: collects problems and the path map of its event.
class MessageConverter {
 public:
  MessageConverter(const Struct& m, std::string prefix, const Options& options, int64_t now_us)
      : m_(m), prefix_(std::move(prefix)), options_(options), now_us_(now_us) {}

  void Problem(const std::string& field, const std::string& what) {
    problems_.push_back(Path(field) + ": " + what);
    bad_fields_.push_back(field);
  }
  /// An id that came out empty is "missing" unless it was refused for its kind already.
  bool Missing(const std::string& value, const char* field) const {
    return value.empty() && std::find(bad_fields_.begin(), bad_fields_.end(), field) == bad_fields_.end();
  }
  std::string Path(const std::string& field) const {
    if (field.empty()) return prefix_.empty() ? "message" : prefix_;
    return prefix_.empty() ? field : prefix_ + "." + field;
  }
  void Map(const std::string& ingest_path, const std::string& field) { paths_.push_back({ingest_path, Path(field)}); }

  /// An id field (userId, anonymousId, previousId, groupId, messageId): a string, or a whole number as its text
  /// (older SDKs send numeric ids). "" when absent, null or empty; a problem for any other kind.
  std::string Id(const char* field) {
    const Value* v = Field(m_, field);
    if (!v || v->has_null_value()) return "";
    if (v->has_string_value()) return v->string_value();
    if (v->has_number_value() && std::isfinite(v->number_value()) && std::trunc(v->number_value()) == v->number_value())
      return NumberText(v->number_value());
    Problem(field, std::string("must be a string, not ") + KindName(*v));
    return "";
  }

  std::string Text(const Struct& s, const char* field, const std::string& path) {
    const Value* v = Field(s, field);
    if (!v || v->has_null_value()) return "";
    if (v->has_string_value()) return v->string_value();
    Problem(path, std::string("must be a string, not ") + KindName(*v));
    return "";
  }

  bool Convert(const std::string& type, v1::Event* ev) {
    const std::string message_id = Id("messageId");
    if (Missing(message_id, "messageId"))
      Problem("messageId", "missing (it becomes the event_id that makes retries idempotent)");
    ev->set_event_id(message_id);
    Map("events[0].event_id", "messageId");
    Map("events[0]", "");  // anything not mapped more precisely: the message itself
    ev->set_source(options_.source);
    Map("events[0].source", "writeKey");
    ev->set_event_type(type);
    OccurredAt(ev);

    const std::string user_id = Id("userId");
    const std::string anonymous_id = Id("anonymousId");
    if (type == "alias") {
      if (Missing(user_id, "userId")) Problem("userId", "missing (alias needs userId and previousId)");
    } else if (Missing(user_id, "userId") && Missing(anonymous_id, "anonymousId")) {
      Problem("userId", "missing, and so is anonymousId (every message needs one of them)");
    }

    // The user: one mention, every identifier on one edge (derived from the event id), so they link.
    v1::EntityMention person;
    person.set_role("user");
    auto add_id = [&](const std::string& id_type, const std::string& value, const std::string& field) {
      if (value.empty()) return;
      for (const auto& existing : person.identifiers()) {
        if (existing.type() == id_type && existing.value() == value) return;
      }
      const std::string ip = "events[0].persons[0].identifiers[" + std::to_string(person.identifiers_size()) + "]";
      Map(ip + ".value", field);
      Map(ip, field);
      auto* id = person.add_identifiers();
      id->set_type(id_type);
      id->set_value(value);
    };
    add_id("user_id", user_id, "userId");
    add_id("anonymous_id", anonymous_id, "anonymousId");
    if (type == "alias") {
      const std::string previous = Id("previousId");
      if (Missing(previous, "previousId")) Problem("previousId", "missing (alias needs userId and previousId)");
      // The spec does not say whether previousId was an anonymousId or an earlier userId: it is stored as each
      // of --segment-previous-id-types (default anonymous_id).
      for (const auto& t : options_.previous_id_types) add_id(t, previous, "previousId");
    }

    // Person traits: context.traits on every call; for identify also `traits` (they win).
    std::map<std::string, std::pair<Value, std::string>> traits;  // name -> (value, field path)
    if (const Struct* ctx = ObjectField(m_, "context")) {
      if (const Struct* t = ObjectField(*ctx, "traits")) CollectTraits(*t, "context.traits", &traits);
    }
    if (type == "identify") {
      if (const Value* t = Field(m_, "traits"); t && !t->has_null_value()) {
        if (t->has_struct_value())
          CollectTraits(t->struct_value(), "traits", &traits);
        else
          Problem("traits", std::string("must be an object, not ") + KindName(*t));
      }
    }
    for (const auto& name : options_.identity_traits) {
      auto it = traits.find(name);
      if (it == traits.end()) continue;
      if (std::string text; TraitText(it->second.first, &text)) add_id(name, text, it->second.second);
      traits.erase(it);
    }
    if (!traits.count("name")) {  // Segment's reserved traits: name = firstName + lastName when not given
      std::string full, last;
      if (auto it = traits.find("firstName"); it != traits.end()) TraitText(it->second.first, &full);
      if (auto it = traits.find("lastName"); it != traits.end() && TraitText(it->second.first, &last) && !last.empty())
        full += (full.empty() ? "" : " ") + last;
      if (!full.empty()) {
        Value v;
        v.set_string_value(full);
        traits["name"] = {v, "traits.firstName"};
      }
    }
    AddTraits(traits, "events[0].persons[0]", type == "identify" ? "traits" : "context.traits", &person);
    if (person.identifiers_size() > 0) *ev->add_persons() = std::move(person);

    if (type == "track") {
      ev->set_event_name(Text(m_, "event", "event"));
      Map("events[0].event_name", "event");
      if (Missing(ev->event_name(), "event")) Problem("event", "missing (track needs the event name)");
      TrackValue(ev);
    } else if (type == "page" || type == "screen") {
      std::string name = Text(m_, "name", "name");
      if (name.empty()) {
        if (const Struct* props = ObjectField(m_, "properties")) name = Text(*props, "name", "properties.name");
      }
      ev->set_event_name(name.empty() ? type : name);
      Map("events[0].event_name", "name");
      std::string category = Text(m_, "category", "category");
      if (category.empty()) {
        if (const Struct* props = ObjectField(m_, "properties"))
          category = Text(*props, "category", "properties.category");
      }
      ev->set_event_description(category);
      Map("events[0].event_description", "category");
    } else {
      ev->set_event_name(type);
    }

    if (type == "group") Group(ev, user_id, anonymous_id);
    return problems_.empty();
  }

  std::vector<std::string> TakeProblems() { return std::move(problems_); }
  PathMap TakePaths() { return std::move(paths_); }

 private:
  void OccurredAt(v1::Event* ev) {
    for (const char* field : {"timestamp", "originalTimestamp"}) {
      const Value* v = Field(m_, field);
      if (!v || v->has_null_value()) continue;
      Map("events[0].occurred_at", field);
      const std::optional<google::protobuf::Timestamp> ts =
          v->has_string_value() ? ParseRfc3339(v->string_value()) : std::nullopt;
      if (!ts) {
        Problem(field, "not an ISO 8601 / RFC 3339 time with a zone (e.g. 2026-05-01T12:00:00.000Z)");
        return;
      }
      *ev->mutable_occurred_at() = *ts;
      return;
    }
    Map("events[0].occurred_at", "timestamp");
    *ev->mutable_occurred_at() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(now_us_);
  }

  void CollectTraits(const Struct& s, const std::string& path,
                     std::map<std::string, std::pair<Value, std::string>>* out) {
    for (const auto& [name, value] : s.fields()) {
      if (!StorableTrait(value)) continue;  // objects, lists: not stored (docs/API.md)
      (*out)[name] = {value, path + "." + name.substr(0, 64)};
    }
  }

  void AddTraits(const std::map<std::string, std::pair<Value, std::string>>& traits, const std::string& mention,
                 const std::string& field, v1::EntityMention* out) {
    Map(mention + ".traits", field);
    for (const auto& [name, tv] : traits) {
      Map(mention + ".traits[" + name.substr(0, 64) + "]", tv.second);
      (*out->mutable_trait_values())[name] = tv.first;  // typed: 42 stays a number, null clears the trait
    }
  }

  /// properties.revenue (else properties.value) -> value; properties.currency -> value_unit. Revenue without a
  /// currency is in US dollars (the spec says so); value has no unit unless a currency is given.
  void TrackValue(v1::Event* ev) {
    const Struct* props = ObjectField(m_, "properties");
    if (!props) return;
    for (const char* field : {"revenue", "value"}) {
      const Value* v = Field(*props, field);
      if (!v || v->has_null_value()) continue;
      const std::string path = std::string("properties.") + field;
      double d = 0;
      if (v->has_number_value()) {
        d = v->number_value();
      } else if (v->has_string_value()) {  // "9.99": some pipelines send amounts as text
        const std::string& s = v->string_value();
        auto r = std::from_chars(s.data(), s.data() + s.size(), d);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size() || s.empty()) {
          Problem(path, "not a number");
          return;
        }
      } else {
        Problem(path, std::string("must be a number, not ") + KindName(*v));
        return;
      }
      ev->set_value(d);
      Map("events[0].value", path);
      std::string currency = Text(*props, "currency", "properties.currency");
      if (currency.empty() && std::string(field) == "revenue") currency = "USD";
      ev->set_value_unit(currency);
      Map("events[0].value_unit", "properties.currency");
      return;
    }
  }

  /// groupId + traits -> a group mention; the user -> a membership in it.
  void Group(v1::Event* ev, const std::string& user_id, const std::string& anonymous_id) {
    const std::string group_id = Id("groupId");
    if (group_id.empty()) {
      if (Missing(group_id, "groupId")) Problem("groupId", "missing (group needs the groupId)");
      return;
    }
    v1::EntityMention group;
    group.set_role("group");
    auto* gid = group.add_identifiers();
    gid->set_type("group_id");
    gid->set_value(group_id);
    Map("events[0].groups[0].identifiers[0].value", "groupId");
    Map("events[0].groups[0].identifiers[0]", "groupId");
    std::map<std::string, std::pair<Value, std::string>> traits;
    if (const Value* t = Field(m_, "traits"); t && !t->has_null_value()) {
      if (t->has_struct_value())
        CollectTraits(t->struct_value(), "traits", &traits);
      else
        Problem("traits", std::string("must be an object, not ") + KindName(*t));
    }
    for (const char* field : {"domain", "website"}) {  // the group's web domain: an identifier (normalized)
      auto it = traits.find(field);
      if (it == traits.end()) continue;
      const bool first = group.identifiers_size() == 1;
      if (first) {
        Map("events[0].groups[0].identifiers[1].value", it->second.second);
        Map("events[0].groups[0].identifiers[1]", it->second.second);
        auto* d = group.add_identifiers();
        d->set_type("domain");
        std::string text;
        TraitText(it->second.first, &text);
        d->set_value(text);
      }
      traits.erase(it);
    }
    if (auto it = traits.find("employees"); it != traits.end() && !traits.count("company_size")) {
      traits["company_size"] = it->second;
      traits.erase(it);
    }
    AddTraits(traits, "events[0].groups[0]", "traits", &group);
    *ev->add_groups() = std::move(group);

    auto* ms = ev->add_memberships();
    ms->mutable_person()->set_type(user_id.empty() ? "anonymous_id" : "user_id");
    ms->mutable_person()->set_value(user_id.empty() ? anonymous_id : user_id);
    ms->mutable_group()->set_type("group_id");
    ms->mutable_group()->set_value(group_id);
    ms->set_role("member");
    for (const char* suffix : {"", ".value"}) {
      Map(std::string("events[0].memberships[0].person") + suffix, user_id.empty() ? "anonymousId" : "userId");
      Map(std::string("events[0].memberships[0].group") + suffix, "groupId");
    }
  }

  const Struct& m_;
  std::string prefix_;
  const Options& options_;
  int64_t now_us_;
  std::vector<std::string> problems_;
  std::vector<std::string> bad_fields_;
  PathMap paths_;
};

}  // namespace

const std::vector<std::string>& CallTypes() {
  static const std::vector<std::string> kTypes = {"identify", "track", "group", "alias", "page", "screen"};
  return kTypes;
}

bool StorableTrait(const Value& value) {
  switch (value.kind_case()) {
    case Value::kStringValue:
    case Value::kBoolValue:
    case Value::kNullValue:
      return true;
    case Value::kNumberValue:
      return std::isfinite(value.number_value());
    default:
      return false;  // objects and lists
  }
}

bool TraitText(const Value& value, std::string* out) {
  switch (value.kind_case()) {
    case Value::kStringValue:
      *out = value.string_value();
      return true;
    case Value::kNumberValue:
      if (!std::isfinite(value.number_value())) return false;
      *out = NumberText(value.number_value());
      return true;
    case Value::kBoolValue:
      *out = value.bool_value() ? "true" : "false";
      return true;
    default:
      return false;  // null (unset), objects and lists
  }
}

grpc::Status DecodeBody(std::string_view body, std::string_view content_encoding, int64_t max_bytes, std::string* out) {
  std::string enc;
  for (char c : content_encoding) {
    if (c != ' ' && c != '\t') enc += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (enc.empty() || enc == "identity") {
    out->assign(body);
    return grpc::Status::OK;
  }
  if (enc != "gzip" && enc != "x-gzip" && enc != "deflate") {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "Content-Encoding '" + enc.substr(0, 40) + "' is not supported (use gzip or none)");
  }
  z_stream zs{};
  // 15 + 32: zlib or gzip header, detected; deflate is the zlib format per RFC 9110
  if (inflateInit2(&zs, 15 + 32) != Z_OK) return grpc::Status(grpc::StatusCode::INTERNAL, "zlib: cannot initialize");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  zs.avail_in = static_cast<uInt>(body.size());
  out->clear();
  char buf[64 * 1024];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return Invalid("body: not valid " + enc + " data (Content-Encoding: " + enc + ")");
    }
    out->append(buf, sizeof buf - zs.avail_out);
    if (static_cast<int64_t>(out->size()) > max_bytes) {
      inflateEnd(&zs);
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          "body: more than " + std::to_string(max_bytes) + " bytes once decompressed");
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return Invalid("body: truncated " + enc + " data");
    }
  }
  const bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  if (trailing) return Invalid("body: data after the end of the " + enc + " stream");
  return grpc::Status::OK;
}

grpc::Status ParseBody(const std::string& json, std::string_view call, const Options& options, Request* out) {
  *out = Request{};
  out->batch = call == "batch" || call == "import";
  if (auto s = CheckStrictJson(json, /*allow_null_in_lists=*/true); !s.ok()) return s;
  Struct body;
  google::protobuf::util::JsonParseOptions opts;
  auto st = google::protobuf::util::JsonStringToMessage(json, &body, opts);
  if (!st.ok()) return Invalid("invalid JSON body: the body must be a JSON object");
  if (const Value* wk = Field(body, "writeKey"); wk && wk->has_string_value()) out->write_key = wk->string_value();
  if (!out->batch) {
    (*body.mutable_fields())["type"].set_string_value(std::string(call));
    out->messages.push_back(std::move(body));
    return grpc::Status::OK;
  }
  const Value* list = Field(body, "batch");
  if (!list) return Invalid("batch: missing (the body of /v1/" + std::string(call) + " is {\"batch\": [...]})");
  if (!list->has_list_value()) return Invalid(std::string("batch: must be a list, not ") + KindName(*list));
  const auto& items = list->list_value().values();
  if (items.empty()) return Invalid("batch: empty (send at least one message)");
  if (items.size() > options.max_messages) {
    return Invalid("batch: " + std::to_string(items.size()) + " messages, at most " +
                   std::to_string(options.max_messages) + " per request (--max-events-per-request)");
  }
  const Struct* batch_context = ObjectField(body, "context");
  for (int i = 0; i < items.size(); ++i) {
    if (!items[i].has_struct_value()) {
      return Invalid("batch[" + std::to_string(i) + "]: must be an object, not " + KindName(items[i]));
    }
    Struct m = items[i].struct_value();
    if (batch_context) {  // the batch's context under the message's own (the message wins key by key)
      Value& ctx = (*m.mutable_fields())["context"];
      if (!ctx.has_struct_value()) {
        *ctx.mutable_struct_value() = *batch_context;
      } else {
        for (const auto& [k, v] : batch_context->fields()) ctx.mutable_struct_value()->mutable_fields()->insert({k, v});
      }
    }
    out->messages.push_back(std::move(m));
  }
  return grpc::Status::OK;
}

Converted Convert(const Request& request, const Options& options, int64_t now_us) {
  Converted out;
  for (size_t i = 0; i < request.messages.size(); ++i) {
    const Struct& m = request.messages[i];
    const std::string prefix = request.batch ? "batch[" + std::to_string(i) + "]" : "";
    MessageConverter c(m, prefix, options, now_us);
    std::string type;
    if (const Value* t = Field(m, "type"); !t || t->has_null_value()) {
      c.Problem("type", "missing (identify, track, group, alias, page or screen)");
    } else if (!t->has_string_value()) {
      c.Problem("type", std::string("must be a string, not ") + KindName(*t));
    } else if (std::find(CallTypes().begin(), CallTypes().end(), t->string_value()) == CallTypes().end()) {
      c.Problem("type",
                "'" + ShortId(t->string_value()) + "' is not one of identify, track, group, alias, page, screen");
    } else {
      type = t->string_value();
    }
    out.types.push_back(type.empty() ? "other" : type);
    v1::Event ev;
    bool ok = !type.empty() && c.Convert(type, &ev);
    if (type.empty()) {  // still name a missing messageId, so one answer lists everything
      if (const Value* id = Field(m, "messageId"); !id || (id->has_string_value() && id->string_value().empty()))
        c.Problem("messageId", "missing (it becomes the event_id that makes retries idempotent)");
    }
    if (!ok) {
      Rejected r;
      r.index = static_cast<int>(i);
      if (const Value* id = Field(m, "messageId"); id && id->has_string_value())
        r.message_id = ShortId(id->string_value());
      r.problems = c.TakeProblems();
      out.rejected.push_back(std::move(r));
      continue;
    }
    *out.request.add_events() = std::move(ev);
    out.message_index.push_back(static_cast<int>(i));
    out.paths.push_back(c.TakePaths());
  }
  return out;
}

std::string RenameProblem(const PathMap& paths, const std::string& problem) {
  const std::pair<std::string, std::string>* best = nullptr;
  for (const auto& p : paths) {
    if (problem.compare(0, p.first.size(), p.first) != 0) continue;
    const char next = problem.size() > p.first.size() ? problem[p.first.size()] : '\0';
    if (next != ':' && next != '.' && next != '[' && next != '\0') continue;
    if (!best || p.first.size() > best->first.size()) best = &p;
  }
  if (!best) return problem;
  return best->second + problem.substr(best->first.size());
}

}  // namespace nexus::server::segment
