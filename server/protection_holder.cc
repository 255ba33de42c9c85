#include "server/protection_holder.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/log.h"

namespace nexus::server {
namespace {
resolver::ProtectionConfig Load(const std::string& path) {
  if (path.empty()) return resolver::ProtectionConfig::Defaults();
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read protection config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string error;
  auto cfg = resolver::ParseProtectionConfig(ss.str(), &error);
  if (!cfg) throw std::runtime_error("protection config " + path + ": " + error);
  return std::move(*cfg);
}
}  // namespace

ProtectionHolder::ProtectionHolder(std::string path)
    : path_(std::move(path)), current_(std::make_shared<resolver::ProtectionConfig>(Load(path_))) {}

ProtectionHolder::ProtectionHolder(resolver::ProtectionConfig fixed)
    : current_(std::make_shared<resolver::ProtectionConfig>(std::move(fixed))) {}

std::shared_ptr<const resolver::ProtectionConfig> ProtectionHolder::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::string ProtectionHolder::Reload() {
  auto next = std::make_shared<resolver::ProtectionConfig>(Load(path_));
  std::string summary = resolver::Describe(*next);
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = std::move(next);
  }
  log::Info("merge protection config loaded", {{"path", path_.empty() ? "(defaults)" : path_}, {"config", summary}});
  return summary;
}

void ProtectionHolder::Set(resolver::ProtectionConfig config) {
  auto next = std::make_shared<resolver::ProtectionConfig>(std::move(config));
  std::lock_guard<std::mutex> lock(mu_);
  current_ = std::move(next);
}

}  // namespace nexus::server
