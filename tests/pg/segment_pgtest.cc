// The Segment-compatible routes end to end (issue 18): a real App and database. What a user would notice: what
// is stored and under which source, the answers the SDKs act on, retries writing nothing, bad messages named
// and left out, gzip, the write key as Basic user / bearer / body field, metrics.
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <string>

#include "http_client.h"
#include "pg_fixture.h"
#include "server/auth.h"
#include "server/resolver_worker.h"
#include "storage/auth_store.h"
#include "storage/database.h"

namespace nexus::testing {
namespace {

std::string Base64(const std::string& in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += k[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += k[(acc << (6 - bits)) & 63];
  while (out.size() % 4) out += '=';
  return out;
}

std::string Gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string Basic(const std::string& key) { return "Authorization: Basic " + Base64(key + ":") + "\r\n"; }

class SegmentTest : public PgTest {
 protected:
  void SetUp() override {
    PgTest::SetUp();
    db_ = std::make_unique<storage::Database>(storage::DatabaseOptions{url_, 2, std::chrono::milliseconds(5000)},
                                              nullptr);
    store_ = std::make_unique<storage::AuthStore>(*db_);
  }
  void TearDown() override {
    PgTest::TearDown();
    store_.reset();
    db_.reset();
  }
  std::string MakeKey(const std::string& name, std::vector<std::string> scopes, std::vector<std::string> sources = {}) {
    server::NewApiKey spec;
    spec.name = name;
    spec.scopes = std::move(scopes);
    spec.sources = std::move(sources);
    spec.created_by = "cli";
    storage::ApiKeyRecord rec;
    std::string secret;
    const auto s = server::CreateApiKey(*store_, spec, &rec, &secret);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return secret;
  }
  HttpResult Post(const std::string& path, const std::string& body, const std::string& headers) {
    return HttpCall(app_->http_port(), "POST", path, body, headers);
  }
  std::string SourceOf(const std::string& event_id) {
    return QueryScalar(url_, "SELECT source FROM events WHERE event_id = '" + event_id + "'");
  }

  std::unique_ptr<storage::Database> db_;
  std::unique_ptr<storage::AuthStore> store_;
};

const char* kBatch = R"({"batch":[
  {"type":"identify","messageId":"id-1","userId":"u1","anonymousId":"a1","timestamp":"2026-01-02T03:04:05Z",
   "traits":{"email":"Ann@Example.com","plan":"pro","address":{"city":"X"}}},
  {"type":"group","messageId":"gr-1","userId":"u1","groupId":"g1","timestamp":"2026-01-02T03:04:06Z",
   "traits":{"name":"Acme","website":"https://www.acme.example/x"}},
  {"type":"track","messageId":"tr-1","anonymousId":"a1","event":"Order Completed","timestamp":"2026-01-02T03:04:07Z",
   "properties":{"revenue":12.5,"currency":"EUR"}}]})";

TEST_F(SegmentTest, OpenModeGzipBatchIsStoredOnceAndResolves) {
  auto& app = StartApp();
  // As the RudderStack SDK sends it: gzip, labelled form-urlencoded, any write key as Basic user name.
  const std::string headers =
      Basic("any-write-key") + "Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip\r\n";
  const auto r = Post("/v1/batch", Gzip(kBatch), headers);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"success":true,"accepted":3,"duplicates":0,"duplicate_message_ids":[],"rejected":[]})");
  EXPECT_EQ(SourceOf("tr-1"), "segment");
  EXPECT_EQ(QueryScalar(url_, "SELECT value || ' ' || value_unit FROM events WHERE event_id = 'tr-1'"), "12.5 EUR");

  // The SDK retries (it never saw the answer): duplicates (listed in id order), nothing written.
  const auto again = Post("/v1/batch", Gzip(kBatch), headers);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(
      again.body,
      R"({"success":true,"accepted":0,"duplicates":3,"duplicate_message_ids":["gr-1","id-1","tr-1"],"rejected":[]})");
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), "3");

  ResolveAll();
  const auto person =
      HttpGet(app.http_port(), "/v1/persons:lookup?identifier_type=email&identifier_value=ann%40example.com");
  ASSERT_EQ(person.status, 200) << person.body;
  for (const std::string want : {R"("type":"user_id","value":"u1")", R"("type":"anonymous_id","value":"a1")",
                                 R"("email":"ann@example.com")", R"("name":"plan","text_value":"pro")"}) {
    EXPECT_NE(person.body.find(want), std::string::npos) << want << " in " << person.body;
  }
  EXPECT_EQ(person.body.find("address"), std::string::npos) << person.body;  // objects are not stored
  const auto group = HttpGet(app.http_port(), "/v1/groups:lookup?identifier_type=domain&identifier_value=acme.example");
  ASSERT_EQ(group.status, 200) << group.body;
  EXPECT_NE(group.body.find(R"("company_name":"Acme")"), std::string::npos) << group.body;
  // The anonymous track is on the same person's timeline as the identify and the group call.
  const std::string pid = person.body.substr(
      person.body.find("per_"), person.body.find('"', person.body.find("per_")) - person.body.find("per_"));
  const auto timeline = HttpGet(app.http_port(), "/v1/persons/" + pid + "/timeline");
  ASSERT_EQ(timeline.status, 200) << timeline.body;
  for (const std::string id : {"id-1", "gr-1", "tr-1"}) EXPECT_NE(timeline.body.find(id), std::string::npos) << id;
  const auto members = HttpGet(app.http_port(), "/v1/persons/" + pid + "/memberships");
  EXPECT_NE(members.body.find(R"("role":"member")"), std::string::npos) << members.body;
}

TEST_F(SegmentTest, BadMessagesAreNamedAndLeftOutTheOthersAreWritten) {
  auto& app = StartApp();
  (void)app;
  const std::string json = "Content-Type: application/json\r\n";
  const auto r = Post("/v1/batch", R"({"batch":[
      {"type":"track","messageId":"ok-1","userId":"u1","event":"E"},
      {"type":"track","messageId":"bad-1","userId":"secret-user","event":"E","timestamp":"2999-01-01T00:00:00Z"},
      {"type":"track","messageId":"bad-2","event":"E"}]})",
                      json);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"j({"success":true,"accepted":1,"duplicates":0,"duplicate_message_ids":[],"rejected":[)j"
                    R"j({"index":1,"messageId":"bad-1","problems":["batch[1].timestamp: absurd timestamp )j"
                    R"j((must be between 1970-01-01 and one year from now)"]},)j"
                    R"j({"index":2,"messageId":"bad-2","problems":["batch[2].userId: missing, and so is anonymousId )j"
                    R"j((every message needs one of them)"]}]})j");
  EXPECT_EQ(QueryScalar(url_, "SELECT string_agg(event_id, ',') FROM events"), "ok-1");

  // Nothing valid: 400 (the SDKs drop it; a retry could not succeed), nothing written.
  const auto none = Post("/v1/track", R"({"userId":"u1","event":"E"})", json);
  EXPECT_EQ(none.status, 400) << none.body;
  EXPECT_NE(none.body.find("messageId: missing"), std::string::npos) << none.body;
  // Whole-request errors.
  EXPECT_EQ(Post("/v1/batch", "{\"batch\":[", json).status, 400);
  EXPECT_EQ(Post("/v1/batch", R"({"batch":[]})", json).status, 400);
  EXPECT_EQ(Post("/v1/batch", "not gzip", json + "Content-Encoding: gzip\r\n").status, 400);
  EXPECT_EQ(Post("/v1/batch", R"({"batch":[]})", json + "Content-Encoding: br\r\n").status, 415);
  // A browser-postable content type without an Authorization header.
  EXPECT_EQ(Post("/v1/track", R"({"messageId":"x","userId":"u","event":"E"})", "Content-Type: text/plain\r\n").status,
            415);
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), "1");

  const std::string metrics = HttpGet(app_->http_port(), "/metrics").body;
  EXPECT_NE(metrics.find(R"(nexus_api_messages_total{api="segment",result="accepted",type="track"} 1)"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(nexus_api_messages_total{api="segment",result="rejected",type="track"} 3)"),
            std::string::npos);
  EXPECT_NE(metrics.find(R"(nexus_http_requests_total{route="/v1/batch",status="200"} 1)"), std::string::npos);
}

TEST_F(SegmentTest, TheWriteKeyAuthenticatesAndDecidesTheSource) {
  const std::string web = MakeKey("web", {"ingest"}, {"web"});
  const std::string any = MakeKey("any", {"ingest"});
  const std::string two = MakeKey("two", {"ingest"}, {"a", "b"});
  const std::string reader = MakeKey("reader", {"read"});
  server::Config config = BaseConfig();
  config.segment_source = "b";
  StartApp(config);
  const std::string json = "Content-Type: application/json\r\n";
  auto track = [](const std::string& id) { return R"({"messageId":")" + id + R"(","userId":"u1","event":"E"})"; };
  // Bound to one source: that source. As Basic user (the SDKs), as bearer, and as writeKey in the body.
  EXPECT_EQ(Post("/v1/track", track("m-basic"), Basic(web) + json).status, 200);
  EXPECT_EQ(SourceOf("m-basic"), "web");
  EXPECT_EQ(Post("/v1/track", track("m-bearer"), "Authorization: Bearer " + web + "\r\n" + json).status, 200);
  EXPECT_EQ(SourceOf("m-bearer"), "web");
  const auto body_key =
      Post("/v1/batch", R"({"writeKey":")" + web + R"(","batch":[{"type":"track",)" + track("m-body").substr(1) + "]}",
           json);
  EXPECT_EQ(body_key.status, 200) << body_key.body;
  EXPECT_EQ(SourceOf("m-body"), "web");
  // Unbound: --segment-source. Bound to several: --segment-source, which must be one of them.
  EXPECT_EQ(Post("/v1/track", track("m-any"), Basic(any) + json).status, 200);
  EXPECT_EQ(SourceOf("m-any"), "b");
  EXPECT_EQ(Post("/v1/track", track("m-two"), Basic(two) + json).status, 200);
  EXPECT_EQ(SourceOf("m-two"), "b");

  // Refused: no key, unknown key, a key without the ingest scope. Nothing written.
  const auto missing = Post("/v1/track", track("r-1"), json);
  EXPECT_EQ(missing.status, 401) << missing.body;
  EXPECT_NE(missing.body.find("missing write key"), std::string::npos) << missing.body;
  EXPECT_EQ(Post("/v1/track", track("r-2"), Basic("not-a-key") + json).status, 401);
  EXPECT_EQ(Post("/v1/track", track("r-3"), Basic(server::GenerateApiKey().secret) + json).status, 401);
  const auto denied = Post("/v1/track", track("r-4"), Basic(reader) + json);
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_NE(denied.body.find("'ingest' scope"), std::string::npos) << denied.body;
  EXPECT_EQ(Post("/v1/track", track("r-5"), "Authorization: Digest x\r\n" + json).status, 401);
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events WHERE event_id LIKE 'r-%'"), "0");
}

TEST_F(SegmentTest, ABoundKeyMustAllowTheDefaultSource) {
  const std::string two = MakeKey("two", {"ingest"}, {"a", "b"});
  StartApp();  // --segment-source stays "segment"
  const auto r = Post("/v1/track", R"({"messageId":"m","userId":"u1","event":"E"})",
                      Basic(two) + "Content-Type: application/json\r\n");
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.body.find("may not write source 'segment'"), std::string::npos) << r.body;
  EXPECT_EQ(QueryScalar(url_, "SELECT count(*) FROM events"), "0");
}

}  // namespace
}  // namespace nexus::testing
