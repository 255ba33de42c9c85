// Segment-compatible tracking API: POST /v1/{identify,track,group,alias,page,screen,batch,import}.
// The routes authenticate themselves (the write key arrives as HTTP Basic user name or in the body), convert
// with server/segment_convert.h and write through IngestHandler::IngestValid, so limits, dedup, protection,
// the one transaction and the ingest metrics are the ones of /v1/events:ingest. docs/API.md documents it.
#include <google/protobuf/struct.pb.h>

#include <array>
#include <chrono>
#include <map>
#include <optional>

#include "common/log.h"
#include "server/http_api.h"
#include "server/ingest_service.h"
#include "server/request_parse.h"
#include "server/rpc_util.h"

namespace nexus::server {
namespace {

std::string HeaderOf(const HttpRequest& req, const char* name) {
  auto it = req.headers.find(name);
  return it == req.headers.end() ? std::string() : it->second;
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<std::string> Base64Decode(std::string_view in) {
  static const std::array<int, 256> kValue = [] {
    std::array<int, 256> v{};
    v.fill(-1);
    const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) v[static_cast<unsigned char>(alphabet[i])] = i;
    return v;
  }();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char ch : in) {
    const int v = kValue[ch];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

/// The write key of an Authorization header: "Basic base64(writeKey:)" as the SDKs send it, or our own
/// "Bearer <key>". nullopt when the header is there but has neither shape.
std::optional<std::string> WriteKeyOf(const std::string& authorization) {
  const auto space = authorization.find(' ');
  if (space == std::string::npos) return std::nullopt;
  const std::string scheme = Lower(authorization.substr(0, space));
  std::string_view rest(authorization);
  rest.remove_prefix(space + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  if (scheme == "bearer") return std::string(rest);
  if (scheme != "basic") return std::nullopt;
  auto decoded = Base64Decode(rest);
  if (!decoded) return std::nullopt;
  return decoded->substr(0, decoded->find(':'));  // the user name; the password is empty
}

HttpResponse SegmentError(grpc::StatusCode code, const std::string& message) {
  return HttpApi::Error(grpc::Status(code, message));
}

}  // namespace

void HttpApi::AddSegmentRoutes() {
  for (const std::string call : {"identify", "track", "group", "alias", "page", "screen", "batch", "import"}) {
    Add(
        "POST", "/v1/" + call, "http:/segment",
        [this, call](const HttpRequest& req, const PathParams&, CallContext& ctx) {
          return HandleSegment(call, req, ctx);
        },
        /*own_auth=*/true);
  }
}

HttpResponse HttpApi::HandleSegment(const std::string& call, const HttpRequest& req, CallContext& ctx) {
  const std::string authorization = HeaderOf(req, "authorization");
  // JSON bodies only. The RudderStack SDK labels its gzip JSON application/x-www-form-urlencoded: other types
  // are taken when the request carries an Authorization header, which a browser cannot add cross-site without
  // a CORS preflight (that nexusd never grants), so a web page cannot post here behind the user's back.
  std::string media = Lower(HeaderOf(req, "content-type"));
  media = media.substr(0, media.find(';'));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  if (media != "application/json" && authorization.empty()) {
    HttpResponse r = SegmentError(grpc::StatusCode::INVALID_ARGUMENT,
                                  "Content-Type must be application/json (other types only with the write key in an "
                                  "Authorization header)");
    r.status = 415;
    return r;
  }
  std::optional<std::string> header_key;
  if (!authorization.empty()) {
    header_key = WriteKeyOf(authorization);
    if (!header_key) {
      if (auth_) metrics_.ObserveAuth("", "malformed");
      return SegmentError(grpc::StatusCode::UNAUTHENTICATED,
                          "the authorization header must be 'Basic <base64 of writeKey:>' or 'Bearer <key>'");
    }
  }
  // Authenticate before decoding when the key is in the header; a key in the body needs the body first.
  auto authenticate = [&](const std::string& key) -> grpc::Status {
    if (!auth_) {
      ctx.principal.open = true;
      return grpc::Status::OK;
    }
    const bool open = auth_->OpenNow();  // open mode (quick start on loopback): any write key is accepted
    grpc::Status s = auth_->Check("http:/segment", open || key.empty() ? "" : "Bearer " + key, &ctx.principal);
    if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED && key.empty()) {
      s = grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                       "missing write key: send an API key with the ingest scope as the HTTP Basic user name (the "
                       "SDKs' writeKey) or as \"writeKey\" in the body");
    }
    return s;
  };
  if (header_key) {
    if (auto s = authenticate(*header_key); !s.ok()) return Error(s);
  }
  segment::Options options = segment_;
  std::string json;
  if (auto s = segment::DecodeBody(req.body, HeaderOf(req, "content-encoding"), options.max_body_bytes, &json);
      !s.ok()) {
    HttpResponse r = Error(s);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) r.status = 415;
    if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) r.status = 413;
    return r;
  }
  segment::Request parsed;
  if (auto s = segment::ParseBody(json, call, options, &parsed); !s.ok()) {
    metrics_.ApiMessages("segment", "other", "rejected", 1);
    return Error(s);
  }
  if (!header_key) {
    if (auto s = authenticate(parsed.write_key); !s.ok()) return Error(s);
  }
  // The write key decides the source: a key bound to exactly one source writes that source; any other key
  // (bound to none or several; open mode) writes --segment-source, which a bound key must still allow.
  if (ctx.principal.sources.size() == 1) options.source = ctx.principal.sources.front();

  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  segment::Converted conv = segment::Convert(parsed, options, now_us);
  v1::IngestEventsResponse out;
  std::vector<IngestHandler::RejectedEvent> invalid;
  if (conv.request.events_size() > 0) {
    const grpc::Status s = ingest_->IngestValid(conv.request, &out, &invalid, &ctx.principal);
    if (!s.ok()) {
      for (const auto& t : conv.types) metrics_.ApiMessages("segment", t, "rejected", 1);
      return Error(s);
    }
  }
  // Every rejected message, in message order, with Segment field names.
  std::map<int, segment::Rejected> rejected;
  for (auto& r : conv.rejected) rejected[r.index] = std::move(r);
  for (const auto& bad : invalid) {
    const int m = conv.message_index[static_cast<size_t>(bad.index)];
    segment::Rejected& r = rejected[m];
    r.index = m;
    r.message_id = ShortId(conv.request.events(bad.index).event_id());
    for (const auto& p : bad.problems) r.problems.push_back(segment::RenameProblem(conv.paths[bad.index], p));
  }
  std::map<std::string, int> duplicate_copies;
  for (const auto& d : out.duplicate_event_ids()) ++duplicate_copies[d];
  std::map<std::string, std::array<double, 3>> by_type;  // accepted, duplicate, rejected
  for (size_t i = 0; i < conv.types.size(); ++i) {
    if (rejected.count(static_cast<int>(i))) by_type[conv.types[i]][2] += 1;
  }
  for (int k = 0; k < conv.request.events_size(); ++k) {
    const int m = conv.message_index[static_cast<size_t>(k)];
    if (rejected.count(m)) continue;
    auto it = duplicate_copies.find(conv.request.events(k).event_id());
    const bool duplicate = it != duplicate_copies.end() && it->second > 0;
    if (duplicate) --it->second;
    by_type[conv.types[static_cast<size_t>(m)]][duplicate ? 1 : 0] += 1;
  }
  for (const auto& [type, n] : by_type) {
    metrics_.ApiMessages("segment", type, "accepted", n[0]);
    metrics_.ApiMessages("segment", type, "duplicate", n[1]);
    metrics_.ApiMessages("segment", type, "rejected", n[2]);
  }

  std::string problems_json;
  std::string summary;  // for the log: indexes and field paths only, never values
  for (const auto& [index, r] : rejected) {
    std::string list;
    for (const auto& p : r.problems) list += (list.empty() ? "\"" : ",\"") + log::JsonEscape(p) + "\"";
    problems_json += std::string(problems_json.empty() ? "" : ",") + "{\"index\":" + std::to_string(index) +
                     ",\"messageId\":\"" + log::JsonEscape(r.message_id) + "\",\"problems\":[" + list + "]}";
    if (summary.size() < 2000) summary += (summary.empty() ? "" : "; ") + (r.problems.empty() ? "" : r.problems[0]);
  }
  if (!rejected.empty()) {
    log::Warn("segment: messages rejected", {{"route", "/v1/" + call},
                                             {"rejected", static_cast<long long>(rejected.size())},
                                             {"messages", static_cast<long long>(conv.types.size())},
                                             {"first_problems", summary}});
  }
  std::string dups;
  for (const auto& d : out.duplicate_event_ids()) dups += (dups.empty() ? "\"" : ",\"") + log::JsonEscape(d) + "\"";
  const bool nothing_valid = rejected.size() == conv.types.size();
  // Nothing usable: 400 (the SDKs drop the batch; a retry would fail the same way). Otherwise 200: what was
  // valid is stored (or was already), and the rejected ones are listed.
  HttpResponse resp;
  resp.status = nothing_valid ? 400 : 200;
  std::string body = "{";
  if (nothing_valid) {
    body += "\"code\":\"INVALID_ARGUMENT\",\"message\":\"no valid message: " +
            log::JsonEscape(rejected.begin()->second.problems.empty() ? "" : rejected.begin()->second.problems[0]) +
            (rejected.size() > 1 || rejected.begin()->second.problems.size() > 1 ? " (and more, see rejected)" : "") +
            "\",";
  }
  body += std::string("\"success\":") + (nothing_valid ? "false" : "true") +
          ",\"accepted\":" + std::to_string(out.accepted()) + ",\"duplicates\":" + std::to_string(out.duplicates()) +
          ",\"duplicate_message_ids\":[" + dups + "],\"rejected\":[" + problems_json + "]}";
  resp.body = std::move(body);
  return resp;
}

}  // namespace nexus::server
