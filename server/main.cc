// nexusd: builds the objects and hands them to each other; all logic lives elsewhere.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/log.h"
#include "server/app.h"
#include "server/config.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"
#include "storage/migrations.h"
#include "storage/resolver_store.h"

extern char** environ;

namespace {

int RunRebuild(const nexus::server::Config& cfg) {
  using namespace nexus;
  std::unique_ptr<storage::EmbeddedPostgres> embedded;
  std::string url = cfg.database_url;
  if (url.empty()) {
    storage::EmbeddedPostgresOptions o;
    o.data_dir = cfg.data_dir;
    o.bin_dir = cfg.pg_bindir;
    embedded = std::make_unique<storage::EmbeddedPostgres>(o);
    url = embedded->Start();
  }
  server::ProtectionHolder protection(cfg.protection_config);
  storage::Database db({url, 2, std::chrono::milliseconds(10000)}, nullptr);
  storage::Migrate(db);
  storage::ResolverStore store(db, url);
  for (int i = 0; !store.TryAcquireLock(); ++i) {
    if (i == 0) log::Info("waiting for the resolver lock (another nexusd resolves)");
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const auto st = store.Rebuild(*protection.Get());
  log::Info("rebuild done", {{"persons", static_cast<long long>(st.persons)},
                             {"groups", static_cast<long long>(st.groups)},
                             {"identifiers", static_cast<long long>(st.identifiers)},
                             {"seconds", st.seconds}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace nexus;
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  auto parsed = server::ParseConfig(args, env);
  if (parsed.help) {
    std::cout << server::HelpText();
    return 0;
  }
  if (!parsed.config) {
    std::fprintf(stderr, "nexusd: %s\n", parsed.error.c_str());
    return 2;
  }
  const server::Config cfg = *parsed.config;
  log::Level level;
  log::ParseLevel(cfg.log_level, &level);
  log::SetLevel(level);

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    if (cfg.rebuild) return RunRebuild(cfg);
    server::App app(cfg);
    app.Start();
    for (;;) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig == SIGHUP) {
        try {
          app.protection().Reload();
        } catch (const std::exception& e) {
          log::Error("config reload failed; keeping the old config", {{"cause", e.what()}});
        }
        continue;
      }
      log::Info("signal received", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
      break;
    }
    app.Shutdown();
    return 0;
  } catch (const std::exception& e) {
    log::Error("nexusd cannot start", {{"cause", e.what()}});
    std::fprintf(stderr, "nexusd: %s\n", e.what());
    return 1;
  }
}
