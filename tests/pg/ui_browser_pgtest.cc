// The support page in a real headless Chromium (tests/browser/ui_browser.py drives it over the DevTools
// protocol): search by a fragment, open the person, identities/traits/companies/first timeline page, the next
// page, explain, the company and event pages, markup in data shown as text. Screenshots go to
// <build>/browser-screenshots (CI keeps them). Skipped, saying so, only when no Chromium is installed.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "pg_fixture.h"

namespace nexus::testing {
namespace {

std::string FindChromium() {
  if (const char* env = std::getenv("NEXUS_CHROMIUM"); env && *env) return env;
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser"}) {
    if (std::filesystem::exists(p)) return p;
  }
  return "";
}

TEST_F(PgTest, SupportPageInHeadlessChromium) {
  const std::string chromium = FindChromium();
  if (chromium.empty()) {
    GTEST_SKIP() << "SKIPPED the browser test: no Chromium at /usr/bin/chromium (Debian package 'chromium'; "
                    "scripts/install-deps.sh installs it) and NEXUS_CHROMIUM is not set";
  }
  StartApp();
  const std::filesystem::path build = std::filesystem::path(NEXUSD_BINARY).parent_path().parent_path();
  const std::string shots = (build / "browser-screenshots").string();
  const std::string cmd = "/usr/bin/python3 " + std::string(NEXUS_SOURCE_DIR) + "/tests/browser/ui_browser.py --base " +
                          "http://127.0.0.1:" + std::to_string(app_->http_port()) + " --screenshots '" + shots +
                          "' --chromium '" + chromium + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc)) << cmd;
  EXPECT_EQ(WEXITSTATUS(rc), 0) << "the browser test failed (its output is above): " << cmd;
}

}  // namespace
}  // namespace nexus::testing
