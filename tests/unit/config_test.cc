#include "server/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace nexus::server {
namespace {

TEST(Config, DefaultsFlagsAndEnvironment) {
  auto out = ParseConfig({"--grpc-listen=0.0.0.0:9000", "--db-pool-size", "4", "--resolver"},
                         {"NEXUS_HTTP_LISTEN=127.0.0.1:9001", "NEXUS_DB_POOL_SIZE=2", "PATH=/bin"});
  ASSERT_TRUE(out.config) << out.error;
  EXPECT_EQ(out.config->grpc_listen, "0.0.0.0:9000");
  EXPECT_EQ(out.config->http_listen, "127.0.0.1:9001");
  EXPECT_EQ(out.config->db_pool_size, 4);  // flag wins over env
  EXPECT_EQ(out.config->data_dir, "./nexus-data");
  EXPECT_TRUE(out.config->resolver_enabled);
}

TEST(Config, UnknownFlagsAndBadValuesAreNamed) {
  EXPECT_NE(ParseConfig({"--nope=1"}, {}).error.find("unknown option '--nope'"), std::string::npos);
  EXPECT_NE(ParseConfig({"--db-pool-size=lots"}, {}).error.find("--db-pool-size='lots'"), std::string::npos);
  EXPECT_NE(ParseConfig({}, {"NEXUS_LOG_LEVEL=loud"}).error.find("NEXUS_LOG_LEVEL='loud'"), std::string::npos);
  EXPECT_NE(ParseConfig({"--shutdown-grace=1.5.3s"}, {}).error.find("--shutdown-grace"), std::string::npos);
  EXPECT_NE(ParseConfig({"--http-listen=8080"}, {}).error.find("host:port"), std::string::npos);
  EXPECT_TRUE(ParseConfig({"--help"}, {}).help);
}

// Issue 12 item 8: each of these used to be accepted silently.
TEST(Config, FailsFastOnWhatWasIgnoredBefore) {
  // A set-but-empty URL used to start an embedded cluster (two replicas on an emptyDir = two databases).
  auto empty_url = ParseConfig({}, {"NEXUS_DATABASE_URL="});
  EXPECT_FALSE(empty_url.config);
  EXPECT_NE(empty_url.error.find("NEXUS_DATABASE_URL='' is set but empty"), std::string::npos) << empty_url.error;
  EXPECT_FALSE(ParseConfig({"--database-url="}, {}).config);

  // A misspelled variable used to be ignored.
  auto typo = ParseConfig({}, {"NEXUS_DATABSE_URL=postgresql://db/nexus"});
  EXPECT_FALSE(typo.config);
  EXPECT_NE(typo.error.find("unknown environment variable NEXUS_DATABSE_URL"), std::string::npos) << typo.error;
  EXPECT_EQ(typo.error.find("postgresql://"), std::string::npos) << "the value must not be echoed: " << typo.error;
  // ... but the scripts' own variables are not nexusd's business, and other prefixes are not ours.
  EXPECT_TRUE(
      ParseConfig({}, {"NEXUS_TEST_DATABASE_URL=x", "NEXUS_SEED=7", "NEXUS_BUILD_BENCH=OFF", "NEXUSX=1"}).config);

  // `--data-dir --x` used to create a directory named --x.
  auto missing = ParseConfig({"--data-dir", "--log-level=debug"}, {});
  EXPECT_FALSE(missing.config);
  EXPECT_NE(missing.error.find("option '--data-dir' needs a value, but is followed by the option '--log-level=debug'"),
            std::string::npos)
      << missing.error;
  EXPECT_TRUE(ParseConfig({"--data-dir", "/tmp/x", "--log-level=debug"}, {}).config);
  EXPECT_EQ(ParseConfig({"--data-dir=--x"}, {}).config->data_dir, "--x");  // explicit is allowed

  // A zero poll interval used to spin a core.
  auto spin = ParseConfig({"--resolver-poll-interval=0"}, {});
  EXPECT_FALSE(spin.config);
  EXPECT_NE(spin.error.find("at least 10ms"), std::string::npos) << spin.error;
  EXPECT_TRUE(ParseConfig({"--resolver-poll-interval=10ms"}, {}).config);
}

TEST(Config, EmbeddedPostgresIsAnExplicitChoice) {
  EXPECT_EQ(ParseConfig({}, {}).config->embedded_postgres, "auto");
  auto off = ParseConfig({}, {"NEXUS_EMBEDDED_POSTGRES=off"});
  EXPECT_FALSE(off.config);
  EXPECT_NE(off.error.find("--embedded-postgres=off needs --database-url"), std::string::npos) << off.error;
  EXPECT_TRUE(ParseConfig({"--database-url=host=/tmp dbname=x"}, {"NEXUS_EMBEDDED_POSTGRES=off"}).config);
  EXPECT_FALSE(ParseConfig({"--database-url=host=/tmp dbname=x", "--embedded-postgres=on"}, {}).config);
  EXPECT_FALSE(ParseConfig({"--embedded-postgres=maybe"}, {}).config);
}

TEST(Config, VersionFlag) {
  auto v = ParseConfig({"--version"}, {});
  EXPECT_TRUE(v.version);
  EXPECT_EQ(VersionText().rfind("nexusd ", 0), 0u);
  EXPECT_NE(VersionText().find("(git "), std::string::npos);
}

TEST(Config, SegmentTypeLists) {
  auto ok =
      ParseConfig({"--segment-identity-traits= email , user_name,email", "--segment-previous-id-types=user_id"}, {});
  ASSERT_TRUE(ok.config) << ok.error;
  EXPECT_EQ(ok.config->segment_identity_traits, (std::vector<std::string>{"email", "user_name"}));
  EXPECT_EQ(ok.config->segment_previous_id_types, (std::vector<std::string>{"user_id"}));
  auto none = ParseConfig({"--segment-identity-traits="}, {"NEXUS_SEGMENT_SOURCE=web"});
  ASSERT_TRUE(none.config) << none.error;
  EXPECT_TRUE(none.config->segment_identity_traits.empty());
  EXPECT_EQ(none.config->segment_source, "web");
  EXPECT_EQ(ParseConfig({"--segment-identity-traits=Email"}, {}).error,
            "--segment-identity-traits='Email' must be a comma-separated list of identifier types ([a-z0-9_]{1,64})");
  EXPECT_EQ(ParseConfig({"--segment-previous-id-types="}, {}).error,
            "--segment-previous-id-types='' must name at least one identifier type");
  EXPECT_FALSE(ParseConfig({"--segment-source="}, {}).config);
}

TEST(Config, ReadmeTableListsEveryOption) {
  std::ifstream in(std::string(NEXUS_SOURCE_DIR) + "/README.md");
  std::stringstream ss;
  ss << in.rdbuf();
  for (const auto& o : ConfigOptions()) {
    EXPECT_NE(ss.str().find("| `" + o.flag + "` | `" + o.env + "` |"), std::string::npos)
        << o.flag << " is missing from the README configuration table";
  }
}

}  // namespace
}  // namespace nexus::server
