#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "resolver/protection.h"

namespace nexus::server {

/// The current merge-protection config, swappable at run time (SIGHUP / ReloadConfig RPC).
class ProtectionHolder final {
 public:
  /// `path` empty: built-in defaults. Throws std::runtime_error with the parse error when the file is bad.
  explicit ProtectionHolder(std::string path);
  explicit ProtectionHolder(resolver::ProtectionConfig fixed);

  std::shared_ptr<const resolver::ProtectionConfig> Get() const;
  /// Re-reads the file; on error keeps the old config and throws std::runtime_error. Returns a summary.
  std::string Reload();
  /// Replaces the config in memory (tests, embedding).
  void Set(resolver::ProtectionConfig config);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const resolver::ProtectionConfig> current_;
};

}  // namespace nexus::server
