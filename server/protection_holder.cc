#include "server/protection_holder.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "common/log.h"

namespace nexus::server {
namespace {
resolver::ProtectionConfig Load(const std::string& path, const std::string& phone_region) {
  if (path.empty()) {
    auto cfg = resolver::ProtectionConfig::Defaults();
    cfg.identifiers.default_phone_region = phone_region;
    return cfg;
  }
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read protection config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string error;
  auto cfg = resolver::ParseProtectionConfig(ss.str(), &error, phone_region);
  if (!cfg) throw std::runtime_error("protection config " + path + ": " + error);
  return std::move(*cfg);
}
}  // namespace

ProtectionHolder::ProtectionHolder(std::string path, std::string phone_region)
    : path_(std::move(path)),
      phone_region_(std::move(phone_region)),
      loaded_signature_(FileSignature()),
      current_(std::make_shared<resolver::ProtectionConfig>(Load(path_, phone_region_))) {}

std::string ProtectionHolder::FileSignature() const {
  if (path_.empty()) return "";
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return "missing";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

bool ProtectionHolder::ReloadIfChanged() {
  if (path_.empty()) return false;
  const std::string signature = FileSignature();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (signature == loaded_signature_) return false;
    loaded_signature_ = signature;  // a bad file is reported once, not at every check
  }
  try {
    Reload();
    return true;
  } catch (const std::exception& e) {
    log::Error("protection config changed on disk but cannot be used; keeping the old one", {{"cause", e.what()}});
    return false;
  }
}

ProtectionHolder::ProtectionHolder(resolver::ProtectionConfig fixed)
    : current_(std::make_shared<resolver::ProtectionConfig>(std::move(fixed))) {}

std::shared_ptr<const resolver::ProtectionConfig> ProtectionHolder::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::string ProtectionHolder::Reload() {
  const std::string signature = FileSignature();
  auto next = std::make_shared<resolver::ProtectionConfig>(Load(path_, phone_region_));
  std::string summary = resolver::Describe(*next);
  std::function<void(const resolver::ProtectionConfig&)> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = next;
    loaded_signature_ = signature;
    listener = listener_;
  }
  if (listener) listener(*next);
  log::Info("merge protection config loaded", {{"path", path_.empty() ? "(defaults)" : path_}, {"config", summary}});
  return summary;
}

void ProtectionHolder::OnLoaded(std::function<void(const resolver::ProtectionConfig&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

void ProtectionHolder::Set(resolver::ProtectionConfig config) {
  auto next = std::make_shared<resolver::ProtectionConfig>(std::move(config));
  std::function<void(const resolver::ProtectionConfig&)> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    current_ = next;
    listener = listener_;
  }
  if (listener) listener(*next);
}

}  // namespace nexus::server
