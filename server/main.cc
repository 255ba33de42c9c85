// nexusd: builds the objects and hands them to each other; all logic lives elsewhere.
#include <malloc.h>  // mallopt

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/log.h"
#include "server/app.h"
#include "server/config.h"
#include "server/keys_cli.h"
#include "server/protection_holder.h"
#include "server/resolver_worker.h"
#include "storage/database.h"
#include "storage/embedded_postgres.h"
#include "storage/errors.h"
#include "storage/migrations.h"
#include "storage/resolver_store.h"

extern char** environ;

namespace {

// Exit statuses of --rebuild besides 0 (done), 1 (failed, cause logged) and 2 (bad configuration).
constexpr int kExitLockHeld = 3;   // another process held the resolver lock for --rebuild-lock-wait
constexpr int kExitCancelled = 4;  // SIGINT/SIGTERM: rolled back, nothing changed

/// Watches for SIGINT/SIGTERM (main blocks them in every thread) while --rebuild runs.
class SignalWatcher {
 public:
  SignalWatcher() : thread_([this] { Run(); }) {}
  ~SignalWatcher() {
    done_ = true;
    thread_.join();
  }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  bool cancelled() const { return signal_.load() != 0; }
  const char* name() const { return signal_.load() == SIGINT ? "SIGINT" : "SIGTERM"; }

 private:
  void Run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    const timespec tick{0, 100 * 1000 * 1000};
    while (!done_) {
      const int sig = sigtimedwait(&set, nullptr, &tick);
      if ((sig == SIGINT || sig == SIGTERM) && signal_.exchange(sig) == 0) {
        nexus::log::Warn("signal received; cancelling the rebuild", {{"signal", name()}});
      }
    }
  }
  std::atomic<bool> done_{false};
  std::atomic<int> signal_{0};
  std::thread thread_;  // last: starts once the flags exist
};

int RunRebuild(const nexus::server::Config& cfg) {
  using namespace nexus;
  using Clock = std::chrono::steady_clock;
  SignalWatcher signals;
  std::unique_ptr<storage::EmbeddedPostgres> embedded;
  std::string url = cfg.database_url;
  if (url.empty()) {
    storage::EmbeddedPostgresOptions o;
    o.data_dir = cfg.data_dir;
    o.bin_dir = cfg.pg_bindir;
    embedded = std::make_unique<storage::EmbeddedPostgres>(o);
    url = embedded->Start();
  }
  server::ProtectionHolder protection(cfg.protection_config, cfg.default_phone_region);
  storage::Database db({url, 2, std::chrono::milliseconds(10000)}, nullptr);
  storage::Migrate(db);
  storage::ResolverStore store(db, url);
  const auto deadline = Clock::now() + cfg.rebuild_lock_wait;
  for (bool logged = false; !store.TryAcquireLock();) {
    if (signals.cancelled()) {
      log::Warn("rebuild cancelled while waiting for the resolver lock; nothing was changed",
                {{"signal", signals.name()}});
      return kExitCancelled;
    }
    if (Clock::now() >= deadline) {
      log::Error(
          "another process holds the resolver lock (a nexusd resolver or another --rebuild); gave up, "
          "nothing was changed. Stop it, or start the rebuild on it: POST /v1/admin/resolver:rebuild",
          {{"rebuild_lock_wait_ms", static_cast<long long>(cfg.rebuild_lock_wait.count())}});
      return kExitLockHeld;
    }
    if (!logged) {
      log::Info("waiting for the resolver lock (another process holds it)",
                {{"rebuild_lock_wait_ms", static_cast<long long>(cfg.rebuild_lock_wait.count())}});
      logged = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  log::Info("rebuild started");
  storage::RebuildControl control;
  std::string last_phase;
  auto last_log = Clock::now();
  control.on_progress = [&](const storage::RebuildProgress& p) {
    if (p.phase == last_phase && Clock::now() - last_log < std::chrono::seconds(5)) return;
    last_phase = p.phase;
    last_log = Clock::now();
    log::Info("rebuild progress", {{"phase", p.phase},
                                   {"events_done", static_cast<long long>(p.events_done)},
                                   {"events_total", static_cast<long long>(p.events_total)}});
  };
  control.cancelled = [&] { return signals.cancelled(); };
  storage::RebuildStats st;
  try {
    st = store.Rebuild(*protection.Get(), control);
  } catch (const storage::StorageError& e) {
    if (e.kind() == storage::ErrorKind::kCancelled) {
      log::Warn("rebuild cancelled; rolled back, nothing was changed", {{"signal", signals.name()}});
      return kExitCancelled;
    }
    log::Error("rebuild failed; rolled back, nothing was changed", {{"cause", e.what()}});
    return 1;
  }
  log::Info("rebuild done", {{"persons", static_cast<long long>(st.persons)},
                             {"groups", static_cast<long long>(st.groups)},
                             {"identifiers", static_cast<long long>(st.identifiers)},
                             {"seconds", st.seconds}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace nexus;
  // Blocks of 1 MiB and more are mapped on their own and given back to the system when freed. glibc otherwise
  // raises this threshold (up to 32 MiB) each time such a block is freed, after which blocks under it come from
  // the heap and stay resident once freed: a rebuild frees graph-sized vectors, so the next one grew the heap
  // instead. In the service, two rebuilds in a row at 1.1M identifiers peaked at 418 MiB without it and 386 MiB
  // with it, at the same speed (docs/BENCHMARKS.md, 2026-12-05, night).
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) env.emplace_back(*e);
  if (!args.empty() && args[0] == "keys") {
    return server::RunKeysCommand(std::vector<std::string>(args.begin() + 1, args.end()), env);
  }
  auto parsed = server::ParseConfig(args, env);
  if (parsed.help) {
    std::cout << server::HelpText();
    return 0;
  }
  if (parsed.version) {
    std::cout << server::VersionText();
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
        try {
          app.ReloadTls();
        } catch (const std::exception& e) {
          log::Error("TLS reload failed; keeping the old certificate", {{"cause", e.what()}});
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
