#include "storage/db_probe.h"

#include <sys/socket.h>

#include <pqxx/pqxx>

#include "storage/database.h"
#include "storage/detail/migrations_embedded.h"
#include "storage/detail/pg.h"

namespace nexus::storage {

struct DatabaseProbe::Conn {
  std::unique_ptr<pqxx::connection> c;
};

DatabaseProbe::DatabaseProbe(Database& db, Options options,
                             std::function<void(const ProbeResult&, bool changed)> on_change)
    : db_(db), options_(options), on_change_(std::move(on_change)), conn_(std::make_unique<Conn>()) {}

DatabaseProbe::~DatabaseProbe() { Stop(); }

void DatabaseProbe::Start() {
  if (prober_.joinable()) return;
  prober_ = std::thread([this] { ProbeLoop(); });
  watcher_ = std::thread([this] { WatchLoop(); });
}

void DatabaseProbe::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (const int fd = socket_.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);  // unblocks a probe stuck in recv
  if (watcher_.joinable()) watcher_.join();
  if (prober_.joinable()) prober_.join();
}

bool DatabaseProbe::AwaitFirstResult(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout + std::chrono::milliseconds(200), [this] { return have_applied_ || stop_; }) &&
         have_applied_;
}

ProbeResult DatabaseProbe::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!have_applied_) return ProbeResult{false, "no answer from the database yet", 0, 0, "", false};
  return applied_;
}

ProbeResult DatabaseProbe::Evaluate() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!have_result_) return ProbeResult{false, "no answer from the database yet", 0, 0, ""};
  if (pending_since_ != std::chrono::steady_clock::time_point{}) {
    const auto waited = std::chrono::steady_clock::now() - pending_since_;
    if (waited > options_.timeout) {
      ProbeResult r = last_;
      r.up = false;
      r.reachable = false;
      r.why = "the database did not answer a probe within " + std::to_string(options_.timeout.count()) + " ms";
      return r;
    }
  }
  return last_;
}

void DatabaseProbe::ProbeLoop() {
  const int latest = detail::EmbeddedMigrations().empty() ? 0 : detail::EmbeddedMigrations().back().version;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      pending_since_ = std::chrono::steady_clock::now();
    }
    ProbeResult r;
    try {
      if (!conn_->c || !conn_->c->is_open()) {
        socket_ = -1;
        conn_->c = db_.impl().Connect(/*pooled=*/false);
        socket_ = conn_->c->sock();
      }
      pqxx::nontransaction tx(*conn_->c);
      r.reachable = true;
      if (!tx.exec("SELECT to_regclass('schema_migrations') IS NOT NULL")[0][0].as<bool>() ||
          tx.exec("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0].as<int>() < latest) {
        r.why = "database schema not migrated";
      } else {
        r.up = true;
      }
      const auto w = tx.exec(
          "SELECT pid, extract(epoch FROM now() - xact_start)::float8, coalesce(state, '') FROM pg_stat_activity "
          "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
          "  AND datid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
          "ORDER BY xact_start LIMIT 1");
      if (!w.empty()) {
        r.oldest_writer_pid = w[0][0].as<int>();
        r.oldest_writer_age_seconds = w[0][1].as<double>();
        r.oldest_writer_state = w[0][2].c_str();
      }
    } catch (const std::exception& e) {
      r.up = false;
      r.reachable = false;
      r.why = e.what();
      socket_ = -1;
      conn_->c.reset();
    }
    std::unique_lock<std::mutex> lock(mu_);
    pending_since_ = {};
    last_ = r;
    have_result_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, options_.interval, [this] { return stop_; });
  }
}

void DatabaseProbe::WatchLoop() {
  bool reported = false, was_up = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; });
      if (stop_) return;
      if (!have_result_) continue;
    }
    const ProbeResult r = Evaluate();
    // Gate, readiness and health change together: readiness reads what was applied here.
    db_.SetUnavailable(r.reachable ? "" : r.why);
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied_ = r;
      have_applied_ = true;
    }
    cv_.notify_all();
    const bool changed = !reported || r.up != was_up;
    reported = true;
    was_up = r.up;
    if (on_change_) on_change_(r, changed);
  }
}

}  // namespace nexus::storage
