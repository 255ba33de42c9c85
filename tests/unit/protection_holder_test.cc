// ProtectionHolder::ReloadIfChanged: what lets every replica pick up an edited ConfigMap (issue 12 item 14).
#include "server/protection_holder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace nexus::server {
namespace {

namespace fs = std::filesystem;

class ProtectionWatch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nexus-protection-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::trunc) << text; }
  fs::path dir_;
};

TEST_F(ProtectionWatch, ReloadsOnlyWhenTheFileChangedAndKeepsTheOldConfigOnAParseError) {
  const fs::path file = dir_ / "protection.conf";
  Write(file, "[person_caps]\nemail = 3\n");
  ProtectionHolder holder(file.string());
  EXPECT_EQ(holder.Get()->person_caps.CapFor("email"), 3);
  EXPECT_FALSE(holder.ReloadIfChanged()) << "nothing changed";

  Write(file, "[person_caps]\nemail = 7\n");  // a different size: a change even within one mtime tick
  EXPECT_TRUE(holder.ReloadIfChanged());
  EXPECT_EQ(holder.Get()->person_caps.CapFor("email"), 7);
  EXPECT_FALSE(holder.ReloadIfChanged());

  Write(file, "[person_caps]\nemail = lots\n");
  EXPECT_FALSE(holder.ReloadIfChanged());
  EXPECT_EQ(holder.Get()->person_caps.CapFor("email"), 7) << "a bad file must not replace a good config";
}

TEST_F(ProtectionWatch, FollowsASwappedSymlinkAsKubeletDoesForConfigMaps) {
  // kubelet: <mount>/protection.conf -> ..data/protection.conf, ..data -> ..<timestamp>; an update writes a
  // new timestamped dir and swaps ..data.
  fs::create_directories(dir_ / "v1");
  fs::create_directories(dir_ / "v2");
  Write(dir_ / "v1" / "protection.conf", "[person_caps]\nemail = 2\n");
  Write(dir_ / "v2" / "protection.conf", "[person_caps]\nemail = 9\n");
  fs::create_directory_symlink("v1", dir_ / "..data");
  fs::create_symlink("..data/protection.conf", dir_ / "protection.conf");
  ProtectionHolder holder((dir_ / "protection.conf").string());
  EXPECT_EQ(holder.Get()->person_caps.CapFor("email"), 2);
  fs::create_directory_symlink("v2", dir_ / "..data_tmp");
  fs::rename(dir_ / "..data_tmp", dir_ / "..data");
  EXPECT_TRUE(holder.ReloadIfChanged());
  EXPECT_EQ(holder.Get()->person_caps.CapFor("email"), 9);
}

TEST(ProtectionWatchDefaults, AHolderWithoutAFileNeverReloads) {
  ProtectionHolder holder(std::string{});
  EXPECT_FALSE(holder.ReloadIfChanged());
}

}  // namespace
}  // namespace nexus::server
