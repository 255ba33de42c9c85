#pragma once

namespace nexus::server {

/// The project version (CMake's PROJECT_VERSION) and the git commit the build was configured at. Defined in
/// version.cc alone, so a new commit recompiles one file instead of every file of the server library.
const char* Version();
const char* GitSha();

}  // namespace nexus::server
