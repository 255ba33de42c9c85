#include "server/keys_cli.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>

#include "common/log.h"
#include "server/auth.h"
#include "server/config.h"
#include "storage/auth_store.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"
#include "storage/migrations.h"

namespace nexus::server {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  nexusd keys create --name=NAME --scopes=SCOPE[,SCOPE] [--sources=SRC[,SRC]] [--expires-in=DURATION]\n"
    "  nexusd keys list\n"
    "  nexusd keys revoke KEY_ID\n"
    "Scopes: ingest (write events; --sources binds the key to those sources), read (profiles, timelines, explain,\n"
    "history), admin (rebuild, config reload, quarantine, keys, audit). DURATION: 90m, 12h, 30d.\n"
    "Database flags as for nexusd (--database-url, --data-dir, --pg-bindir) and their NEXUS_* variables.\n"
    "The key is printed once on stdout; only its SHA-256 is stored.\n";

std::vector<std::string> SplitList(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t end = v.find(',', start);
    if (end == std::string::npos) end = v.size();
    std::string item = v.substr(start, end - start);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

std::optional<int64_t> ParseDurationSeconds(const std::string& v) {
  if (v.empty()) return std::nullopt;
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string unit = v.substr(used);
  int64_t mult = 0;
  if (unit == "s" || unit.empty())
    mult = 1;
  else if (unit == "m")
    mult = 60;
  else if (unit == "h")
    mult = 3600;
  else if (unit == "d")
    mult = 86400;
  if (mult == 0 || n <= 0) return std::nullopt;
  return n * mult;
}

std::string FormatTime(int64_t us) {
  const time_t t = static_cast<time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

int RunKeysCommand(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  if (cmd != "create" && cmd != "list" && cmd != "revoke") {
    std::fprintf(stderr, "nexusd keys: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  }
  NewApiKey spec;
  spec.created_by = "cli";
  std::string key_id, expires_in;
  std::vector<std::string> rest;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string name = a, value;
    const auto eq = a.find('=');
    if (eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    const bool ours = name == "--name" || name == "--scopes" || name == "--sources" || name == "--expires-in";
    if (ours && eq == std::string::npos) {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "nexusd keys: option '%s' needs a value\n", name.c_str());
        return 2;
      }
      value = args[++i];
    }
    if (ours && cmd != "create") {
      std::fprintf(stderr, "nexusd keys %s: option '%s' only applies to create\n", cmd.c_str(), name.c_str());
      return 2;
    }
    if (name == "--name")
      spec.name = value;
    else if (name == "--scopes")
      spec.scopes = SplitList(value);
    else if (name == "--sources")
      spec.sources = SplitList(value);
    else if (name == "--expires-in")
      expires_in = value;
    else if (a.rfind("--", 0) != 0 && cmd == "revoke" && key_id.empty())
      key_id = a;
    else
      rest.push_back(a);
  }
  if (cmd == "revoke" && key_id.empty()) {
    std::fprintf(stderr, "nexusd keys revoke: which key? (nexusd keys revoke KEY_ID; see nexusd keys list)\n");
    return 2;
  }
  if (!expires_in.empty()) {
    auto secs = ParseDurationSeconds(expires_in);
    if (!secs) {
      std::fprintf(stderr, "nexusd keys: --expires-in='%s' is not a duration (e.g. 90m, 12h, 30d)\n",
                   expires_in.c_str());
      return 2;
    }
    spec.expires_at_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count() +
        *secs * 1000000;
  }
  auto parsed = ParseConfig(rest, env);
  if (!parsed.config) {
    std::fprintf(stderr, "nexusd keys: %s\n", parsed.help ? kUsage : parsed.error.c_str());
    return parsed.help ? 0 : 2;
  }
  const Config cfg = *parsed.config;
  log::Level level = log::Level::kWarn;
  if (cfg.log_level != "info") log::ParseLevel(cfg.log_level, &level);
  log::SetLevel(level);

  std::unique_ptr<storage::EmbeddedPostgres> embedded;
  int status = 0;
  try {
    std::string url = cfg.database_url;
    if (url.empty()) {
      storage::EmbeddedPostgresOptions o;
      o.data_dir = cfg.data_dir;
      o.bin_dir = cfg.pg_bindir;
      embedded = std::make_unique<storage::EmbeddedPostgres>(o);
      url = embedded->Start();
    }
    storage::Database db({url, 1, std::chrono::milliseconds(10000)}, nullptr);
    storage::Migrate(db);
    storage::AuthStore store(db);
    if (cmd == "create") {
      storage::ApiKeyRecord rec;
      std::string secret;
      const grpc::Status s = CreateApiKey(store, spec, &rec, &secret);
      WriteAudit(store, "cli", "CreateApiKey", rec.key_id.empty() ? "" : "key:" + rec.key_id,
                 s.ok() ? "OK" : "INVALID_ARGUMENT");
      if (!s.ok()) {
        std::fprintf(stderr, "nexusd keys create: %s\n", s.error_message().c_str());
        status = 2;
      } else {
        std::fprintf(stderr, "created key %s (name '%s', scopes %s%s%s%s). It is shown once, below; store it now.\n",
                     rec.key_id.c_str(), rec.name.c_str(), Join(rec.scopes).c_str(),
                     rec.sources.empty() ? "" : ", sources ", Join(rec.sources).c_str(),
                     rec.expires_at_us ? (", expires " + FormatTime(*rec.expires_at_us)).c_str() : "");
        std::cout << secret << std::endl;
      }
    } else if (cmd == "list") {
      std::printf("%-12s  %-24s  %-18s  %-20s  %-20s  %s\n", "KEY_ID", "NAME", "SCOPES", "SOURCES", "CREATED", "STATE");
      const int64_t now =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      for (const auto& k : store.ListKeys()) {
        std::string state = "active";
        if (k.revoked_at_us)
          state = "revoked " + FormatTime(*k.revoked_at_us);
        else if (k.expires_at_us && *k.expires_at_us <= now)
          state = "expired " + FormatTime(*k.expires_at_us);
        else if (k.expires_at_us)
          state = "active, expires " + FormatTime(*k.expires_at_us);
        std::printf("%-12s  %-24s  %-18s  %-20s  %-20s  %s\n", k.key_id.c_str(), k.name.c_str(), Join(k.scopes).c_str(),
                    k.sources.empty() ? "*" : Join(k.sources).c_str(), FormatTime(k.created_at_us).c_str(),
                    state.c_str());
      }
    } else {
      const bool found = store.RevokeKey(key_id);
      WriteAudit(store, "cli", "RevokeApiKey", "key:" + key_id.substr(0, 32), found ? "OK" : "NOT_FOUND");
      if (!found) {
        std::fprintf(stderr, "nexusd keys revoke: no key with id '%s' (see nexusd keys list)\n", key_id.c_str());
        status = 1;
      } else {
        std::fprintf(stderr, "revoked key %s; running nexusd processes refuse it within %lld s\n", key_id.c_str(),
                     static_cast<long long>(Authenticator::kCacheTtl.count()));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nexusd keys %s: %s\n", cmd.c_str(), storage::RedactUrl(e.what()).c_str());
    status = 1;
  }
  if (embedded && embedded->reused()) embedded->Detach();  // a running nexusd owns it: leave it running
  return status;
}

}  // namespace nexus::server
