#include "server/version.h"

#ifndef NEXUS_VERSION
#define NEXUS_VERSION "0.0.0"
#endif
#ifndef NEXUS_GIT_SHA
#define NEXUS_GIT_SHA "unknown"
#endif

namespace nexus::server {

const char* Version() { return NEXUS_VERSION; }
const char* GitSha() { return NEXUS_GIT_SHA; }

}  // namespace nexus::server
