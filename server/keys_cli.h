#pragma once

#include <string>
#include <vector>

namespace nexus::server {

/// `nexusd keys create|list|revoke ...`: API key management straight on the database (the way to create the
/// first admin key). `args` follow the word "keys"; database flags (--database-url, --data-dir, ...) and their
/// NEXUS_* variables work as for the server. Returns the exit status (0 ok, 1 failed, 2 bad usage).
int RunKeysCommand(const std::vector<std::string>& args, const std::vector<std::string>& env);

}  // namespace nexus::server
