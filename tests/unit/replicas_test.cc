// Pure parts of the read-replica support: WAL position text, and the configuration rules around replicas and
// transaction poolers.
#include "storage/replicas.h"

#include <gtest/gtest.h>

#include "server/config.h"

namespace nexus {
namespace {

TEST(Lsn, ParsesPostgresTextFormAndRoundTrips) {
  uint64_t v = 0;
  ASSERT_TRUE(storage::ParseLsn("16/B374D848", &v));
  EXPECT_EQ(v, (uint64_t{0x16} << 32) | 0xB374D848u);
  EXPECT_EQ(storage::FormatLsn(v), "16/B374D848");
  ASSERT_TRUE(storage::ParseLsn("0/0", &v));
  EXPECT_EQ(v, 0u);
  ASSERT_TRUE(storage::ParseLsn("ffffffff/ffffffff", &v));
  EXPECT_EQ(v, ~uint64_t{0});
  // Ordering follows the numbers, not the text: 0/A0000000 < 1/0.
  uint64_t a = 0, b = 0;
  ASSERT_TRUE(storage::ParseLsn("0/A0000000", &a));
  ASSERT_TRUE(storage::ParseLsn("1/0", &b));
  EXPECT_LT(a, b);
}

TEST(Lsn, RejectsMalformedText) {
  uint64_t v = 7;
  for (const char* bad : {"", "16", "/1", "1/", "1/2/3", "G/1", "123456789/0", "0/123456789", " 1/2", "1/2 "}) {
    EXPECT_FALSE(storage::ParseLsn(bad, &v)) << bad;
  }
}

server::ParseOutcome Parse(std::vector<std::string> args) { return server::ParseConfig(args, {}); }

TEST(ReplicaConfig, ReadUrlsRepeatOrSplitOnBar) {
  auto out = Parse({"--database-url=host=p", "--read-database-url=host=r1 | host=r2", "--read-database-url", "host=r3",
                    "--max-replica-lag=2s"});
  ASSERT_TRUE(out.config) << out.error;
  EXPECT_EQ(out.config->read_database_urls, (std::vector<std::string>{"host=r1", "host=r2", "host=r3"}));
  EXPECT_EQ(out.config->max_replica_lag.count(), 2000);
  out = Parse({"--database-url=host=p", "--read-database-url=host=r1||host=r2"});
  EXPECT_FALSE(out.config);
  EXPECT_NE(out.error.find("empty URL"), std::string::npos) << out.error;
}

TEST(ReplicaConfig, ReplicasNeedAnExternalPrimary) {
  auto out = Parse({"--read-database-url=host=r1"});
  EXPECT_FALSE(out.config);
  EXPECT_NE(out.error.find("--read-database-url needs --database-url"), std::string::npos) << out.error;
}

TEST(ReplicaConfig, TransactionPoolerNeedsADirectResolverSession) {
  auto out = Parse({"--database-url=host=bouncer", "--db-pooler=transaction"});
  EXPECT_FALSE(out.config);
  EXPECT_NE(out.error.find("--resolver-database-url"), std::string::npos) << out.error;
  out = Parse({"--database-url=host=bouncer", "--db-pooler=transaction", "--resolver-database-url=host=pg"});
  ASSERT_TRUE(out.config) << out.error;
  EXPECT_EQ(out.config->db_pooler, "transaction");
  EXPECT_EQ(out.config->resolver_database_url, "host=pg");
  out = Parse({"--database-url=host=bouncer", "--db-pooler=transaction", "--resolver=false"});
  EXPECT_TRUE(out.config) << out.error;
  out = Parse({"--database-url=host=pg", "--db-pooler=session"});
  EXPECT_FALSE(out.config);
  EXPECT_NE(out.error.find("must be none or transaction"), std::string::npos) << out.error;
}

}  // namespace
}  // namespace nexus
