// Timing of issue 15's operations (skipped unless NEXUS_BENCH_UNLINK_ERASE is set): unlink (and the rule's
// removal) of one link in a 500-identifier component, each after its dry run (timed too), and erasure of a person with
// 1,000 events, each repeated NEXUS_BENCH_REPEATS times (default 3), over a background of NEXUS_BENCH_BACKGROUND events
// (default 20000) of other persons. Prints one line per measurement; raw output goes to bench/results/.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "http_client.h"
#include "nexus/v1/admin.grpc.pb.h"
#include "nexus/v1/ingest.grpc.pb.h"
#include "pg_fixture.h"
#include "resolver/protection.h"
#include "server/app.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"

namespace nexus::testing {
namespace {

v1::Event Ev(const std::string& id, int64_t t, const std::vector<std::pair<std::string, std::string>>& ids) {
  v1::Event e;
  e.set_event_id(id);
  e.mutable_occurred_at()->set_seconds(1700000000 + t);
  e.set_event_name("bench");
  e.set_event_type("bench");
  e.set_source("bench");
  auto* m = e.add_persons();
  m->set_role("contact");
  for (const auto& [ty, v] : ids) {
    auto* i = m->add_identifiers();
    i->set_type(ty);
    i->set_value(v);
  }
  (*m->mutable_traits())["name"] = "n" + std::to_string(t % 97);
  return e;
}

class UnlinkErasureBench : public PgTest {};

TEST_F(UnlinkErasureBench, UnlinkAndErasureTimes) {
  if (!std::getenv("NEXUS_BENCH_UNLINK_ERASE")) GTEST_SKIP() << "set NEXUS_BENCH_UNLINK_ERASE=1 to run";
  const int background =
      std::getenv("NEXUS_BENCH_BACKGROUND") ? std::atoi(std::getenv("NEXUS_BENCH_BACKGROUND")) : 20000;
  const int repeats = std::getenv("NEXUS_BENCH_REPEATS") ? std::atoi(std::getenv("NEXUS_BENCH_REPEATS")) : 3;
  auto cfg = BaseConfig();
  cfg.resolver_poll_interval = std::chrono::milliseconds(3600 * 1000);
  StartApp(cfg);
  std::string err;
  auto prot = resolver::ParseProtectionConfig("[person_caps]\ndefault = 1000\nmax_entity_size = 2000\n", &err, "US");
  ASSERT_TRUE(prot) << err;
  app_->protection().Set(*prot);
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(app_->grpc_port()), grpc::InsecureChannelCredentials());
  auto ingest = v1::IngestService::NewStub(channel);
  auto admin = v1::AdminService::NewStub(channel);
  std::vector<v1::Event> all;
  for (int i = 0; i < background; ++i) {
    all.push_back(Ev("bg" + std::to_string(i), i,
                     {{"email", "p" + std::to_string(i % (background / 2 + 1)) + "@bg.io"},
                      {"phone", "+1415555" + std::to_string(1000 + i % 8000)}}));
  }
  for (int i = 0; i < 499; ++i) {  // a chain of 500 emails: one person
    all.push_back(
        Ev("chain" + std::to_string(i), i,
           {{"email", "x" + std::to_string(i) + "@chain.io"}, {"email", "x" + std::to_string(i + 1) + "@chain.io"}}));
  }
  for (int r = 0; r < repeats; ++r) {  // one 1,000-event person per repetition
    for (int i = 0; i < 1000; ++i) {
      all.push_back(Ev("big" + std::to_string(r) + "-" + std::to_string(i), i,
                       {{"email", "big" + std::to_string(r) + "@x.io"}, {"user_id", "ub" + std::to_string(r)}}));
    }
  }
  for (size_t b = 0; b < all.size(); b += 1000) {
    v1::IngestEventsRequest req;
    for (size_t i = b; i < std::min(all.size(), b + 1000); ++i) *req.add_events() = all[i];
    v1::IngestEventsResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(ingest->IngestEvents(&ctx, req, &resp).ok());
  }
  ResolveAll();
  // What autovacuum does within a minute of a bulk load: without fresh statistics the planner takes the
  // just-loaded tables for a fraction of their size and scans them where it should probe an index.
  QueryScalar(url_, "ANALYZE");
  const std::string events = QueryScalar(url_, "SELECT count(*) FROM events");
  const std::string idents = QueryScalar(url_, "SELECT count(*) FROM resolved_person_identifiers");
  auto secs = [](auto t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  for (int r = 0; r < repeats; ++r) {
    v1::UnlinkRequest u;
    u.mutable_a()->set_type("email");
    u.mutable_a()->set_value("x250@chain.io");
    u.mutable_b()->set_type("email");
    u.mutable_b()->set_value("x251@chain.io");
    u.set_reason("bench");
    v1::UnlinkResponse out;
    // The dry run first: it re-resolves only the component (its cost should not grow with the background).
    u.set_dry_run(true);
    auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext c0;
    ASSERT_TRUE(admin->Unlink(&c0, u, &out).ok());
    const double dry = secs(t0);
    ASSERT_EQ(out.preview().parts_size(), 2);
    ASSERT_EQ(out.preview().identifiers(), 500);
    u.set_dry_run(false);
    t0 = std::chrono::steady_clock::now();
    grpc::ClientContext c1;
    ASSERT_TRUE(admin->Unlink(&c1, u, &out).ok());
    const double unlink = secs(t0);
    ASSERT_NE(out.entity_ids(0), out.entity_ids(1));
    const bool unlink_whole_log = out.whole_log();
    const int64_t unlink_events = out.events_replayed();
    v1::RemoveLinkRuleRequest rm;
    rm.set_rule_id(out.rule().rule_id());
    rm.set_dry_run(true);
    t0 = std::chrono::steady_clock::now();
    grpc::ClientContext c4;
    v1::UnlinkResponse would;
    ASSERT_TRUE(admin->RemoveLinkRule(&c4, rm, &would).ok());
    const double remove_dry = secs(t0);
    ASSERT_EQ(would.preview().parts_size(), 1);
    rm.set_dry_run(false);
    t0 = std::chrono::steady_clock::now();
    grpc::ClientContext c2;
    ASSERT_TRUE(admin->RemoveLinkRule(&c2, rm, &out).ok());
    const double remove = secs(t0);
    ASSERT_EQ(out.entity_ids(0), out.entity_ids(1));
    v1::EraseRequest er;
    er.set_request_id("bench-" + std::to_string(r));
    auto* t = er.add_targets();
    t->mutable_identifier()->set_type("email");
    t->mutable_identifier()->set_value("big" + std::to_string(r) + "@x.io");
    v1::EraseResponse eo;
    t0 = std::chrono::steady_clock::now();
    grpc::ClientContext c3;
    ASSERT_TRUE(admin->Erase(&c3, er, &eo).ok());
    const double erase = secs(t0);
    ASSERT_EQ(eo.counts().at("events"), 1000);
    ASSERT_EQ(eo.outcomes(0).outcome(), "erased");
    std::cout << "bench events=" << events << " resolved_identifiers=" << idents << " rep=" << r + 1
              << " unlink_500_dry_run_s=" << dry << " unlink_500_s=" << unlink
              << " remove_rule_dry_run_s=" << remove_dry << " remove_rule_s=" << remove
              << " erase_1000_events_s=" << erase << " unlink_whole_log=" << unlink_whole_log
              << " unlink_events_replayed=" << unlink_events << " erase_whole_log=" << eo.whole_log()
              << " erase_events_replayed=" << eo.events_replayed() << std::endl;
  }
  // Where the time went: the summed duration of each statement of the dry runs and of the re-resolution of the
  // affected identifiers (closure, replay reads, deletes and writes), over all repeats.
  std::istringstream metrics(HttpGet(app_->http_port(), "/metrics").body);
  for (std::string line; std::getline(metrics, line);) {
    const bool ours = line.find("preview") != std::string::npos || line.find("closure") != std::string::npos ||
                      line.find("scope_") != std::string::npos || line.find("rebuild_") != std::string::npos ||
                      line.find("erase") != std::string::npos;
    if (line.find("query_duration_seconds_sum") != std::string::npos && ours) {
      std::cout << line << std::endl;
    }
  }
}

}  // namespace
}  // namespace nexus::testing
