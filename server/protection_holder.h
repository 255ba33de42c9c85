#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "resolver/protection.h"

namespace nexus::server {

/// The current merge-protection config, swappable at run time (SIGHUP / ReloadConfig RPC).
class ProtectionHolder final {
 public:
  /// `path` empty: built-in defaults. `phone_region`: --default-phone-region. Throws std::runtime_error with the
  /// parse error when the file is bad.
  explicit ProtectionHolder(std::string path, std::string phone_region = "US");
  explicit ProtectionHolder(resolver::ProtectionConfig fixed);

  std::shared_ptr<const resolver::ProtectionConfig> Get() const;
  /// Re-reads the file; on error keeps the old config and throws std::runtime_error. Returns a summary.
  std::string Reload();
  /// Reloads when the file's identity (device, inode, size, mtime, following symlinks) differs from what was
  /// last loaded, so every replica picks up an edited Kubernetes ConfigMap (kubelet swaps a symlink) without
  /// a reload call that would reach only one of them. Returns true when it loaded a new config. A file that
  /// fails to parse is reported once per change (the old config stays); a path-less holder never changes.
  bool ReloadIfChanged();
  /// Replaces the config in memory (tests, embedding).
  void Set(resolver::ProtectionConfig config);
  /// Called (outside the holder's lock) with every config loaded or set after this call.
  void OnLoaded(std::function<void(const resolver::ProtectionConfig&)> listener);
  const std::string& path() const { return path_; }

 private:
  std::string FileSignature() const;

  std::string path_;
  std::string phone_region_;
  std::string loaded_signature_;  ///< FileSignature() of the last load (or failed attempt); guarded by mu_
  mutable std::mutex mu_;
  std::shared_ptr<const resolver::ProtectionConfig> current_;
  std::function<void(const resolver::ProtectionConfig&)> listener_;  ///< guarded by mu_
};

}  // namespace nexus::server
