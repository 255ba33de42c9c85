#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "server/config.h"

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
