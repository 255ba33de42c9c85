#include "storage/replicas.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "storage/detail/pg.h"

namespace nexus::storage {
namespace {

thread_local ReadInfo t_last_read;
thread_local uint64_t t_min_lsn = 0;

constexpr char kFreshnessSql[] =
    "SELECT coalesce(to_char(watermark_ingested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') "
    "FROM resolver_state";
constexpr char kPrimaryLsnSql[] = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";
constexpr char kReplicaLsnSql[] =
    "SELECT pg_is_in_recovery(), coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)";
// How much of the primary's WAL history the lag measurement keeps.
constexpr auto kHistory = std::chrono::minutes(10);

}  // namespace

ReadInfo TakeReadInfo() {
  ReadInfo out = std::move(t_last_read);
  t_last_read = ReadInfo{};
  return out;
}

ScopedMinLsn::ScopedMinLsn(uint64_t lsn) : previous_(t_min_lsn) { t_min_lsn = lsn; }
ScopedMinLsn::~ScopedMinLsn() { t_min_lsn = previous_; }

bool ParseLsn(std::string_view text, uint64_t* out) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash > 8 || text.size() - slash - 1 == 0 ||
      text.size() - slash - 1 > 8) {
    return false;
  }
  uint64_t hi = 0, lo = 0;
  auto hex = [](std::string_view s, uint64_t* v) {
    for (char ch : s) {
      int d = ch >= '0' && ch <= '9'   ? ch - '0'
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                       : -1;
      if (d < 0) return false;
      *v = *v * 16 + static_cast<uint64_t>(d);
    }
    return true;
  };
  if (!hex(text.substr(0, slash), &hi) || !hex(text.substr(slash + 1), &lo)) return false;
  *out = (hi << 32) | lo;
  return true;
}

std::string FormatLsn(uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn & 0xFFFFFFFFu));
  return buf;
}

struct ReadReplicas::State {
  Database& primary;
  Options options;
  std::vector<std::unique_ptr<Database>> replicas;
  std::unique_ptr<Database> routed;

  mutable std::mutex mu;
  std::vector<ReplicaStatus> status;                                               // guarded by mu
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> history;  // primary WAL positions
  std::atomic<uint64_t> round_robin{0};

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stop = false;
  std::thread thread;

  State(Database& p, Options o) : primary(p), options(std::move(o)) {}

  void Poll() {
    uint64_t primary_lsn = 0;
    bool primary_ok = true;
    try {
      primary.impl().Run(
          "replicas.primary_lsn",
          [&](pqxx::work& tx, detail::PooledConnection& c) {
            primary_lsn = primary.impl().Exec(tx, c, "replicas.primary_lsn", kPrimaryLsnSql)[0][0].as<uint64_t>();
          },
          1);
    } catch (const std::exception&) {
      primary_ok = false;  // the readiness probe reports the primary; lag stays as last measured
    }
    const auto now = std::chrono::steady_clock::now();
    std::vector<ReplicaStatus> next(replicas.size());
    for (size_t i = 0; i < replicas.size(); ++i) {
      ReplicaStatus& st = next[i];
      st.index = static_cast<int>(i);
      try {
        replicas[i]->impl().Run(
            "replicas.replay_lsn",
            [&](pqxx::work& tx, detail::PooledConnection& c) {
              auto r = replicas[i]->impl().Exec(tx, c, "replicas.replay_lsn", kReplicaLsnSql);
              st.in_recovery = r[0][0].as<bool>();
              st.replay_lsn = r[0][1].as<uint64_t>();
            },
            1);
        st.up = true;
      } catch (const std::exception&) {
        st.up = false;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    if (primary_ok && (history.empty() || history.back().second != primary_lsn)) history.emplace_back(now, primary_lsn);
    while (history.size() > 1 && now - history.front().first > kHistory) history.pop_front();
    for (auto& st : next) {
      if (st.up && !st.in_recovery) {
        st.lag_seconds = 0;  // not a standby: it is its own primary
        st.lag_bytes = 0;
        continue;
      }
      if (!st.up) {  // keep the last measurement (the gauge `up` says it is stale)
        st.lag_seconds = status[static_cast<size_t>(st.index)].lag_seconds;
        st.lag_bytes = status[static_cast<size_t>(st.index)].lag_bytes;
        continue;
      }
      const uint64_t latest = history.empty() ? st.replay_lsn : history.back().second;
      st.lag_bytes = latest > st.replay_lsn ? static_cast<int64_t>(latest - st.replay_lsn) : 0;
      st.lag_seconds = 0;
      for (const auto& [t, lsn] : history) {
        if (lsn > st.replay_lsn) {
          st.lag_seconds = std::chrono::duration<double>(now - t).count();
          break;
        }
      }
    }
    status = next;
    if (StorageObserver* obs = primary.observer()) {
      for (const auto& st : status) obs->OnReplicaStatus(st.index, st.up, st.lag_seconds, st.lag_bytes);
    }
  }

  /// The replica to read from now, or -1 for the primary.
  int Pick(uint64_t min_lsn) {
    std::lock_guard<std::mutex> lock(mu);
    const double max_lag = std::chrono::duration<double>(options.max_lag).count();
    int best = -1;
    double best_lag = 0;
    const uint64_t rr = round_robin++;
    for (size_t k = 0; k < status.size(); ++k) {
      const auto& st = status[(k + rr) % status.size()];
      if (!st.up || st.lag_seconds > max_lag) continue;
      if (min_lsn && st.in_recovery && st.replay_lsn < min_lsn) continue;
      if (best < 0 || st.lag_seconds < best_lag) {
        best = st.index;
        best_lag = st.lag_seconds;
      }
    }
    return best;
  }

  void MarkDown(int index) {
    std::lock_guard<std::mutex> lock(mu);
    if (index >= 0 && static_cast<size_t>(index) < status.size()) status[static_cast<size_t>(index)].up = false;
  }

  void Route(std::string_view what, const Database::Impl::Body& fn, int attempts) {
    const int target = Pick(t_min_lsn);
    ReadInfo info;
    auto run_on = [&](Database& db, int index) {
      bool started = false;
      info.served_by = index < 0 ? "primary" : "replica-" + std::to_string(index);
      try {
        db.impl().Run(
            what,
            [&](pqxx::work& tx, detail::PooledConnection& c) {
              started = true;
              fn(tx, c);
              info.resolved_through = db.impl().Exec(tx, c, "query.freshness", kFreshnessSql)[0][0].c_str();
            },
            attempts);
        return true;
      } catch (const StorageError& e) {
        // A replica that cannot be reached: the primary answers this read (only if nothing of it ran yet).
        if (index >= 0 && !started && e.kind() == ErrorKind::kUnavailable) {
          MarkDown(index);
          return false;
        }
        throw;
      }
    };
    bool done = false;
    if (target >= 0) done = run_on(*replicas[static_cast<size_t>(target)], target);
    if (!done) run_on(primary, -1);
    if (StorageObserver* obs = primary.observer()) obs->OnRead(info.served_by != "primary");
    t_last_read = std::move(info);
  }
};

ReadReplicas::ReadReplicas(Database& primary, const DatabaseOptions& base, Options options)
    : s_(std::make_unique<State>(primary, std::move(options))) {
  for (const auto& url : s_->options.urls) {
    DatabaseOptions o = base;
    o.url = url;
    o.transaction_pooler = false;
    o.report_pool = false;
    s_->replicas.push_back(std::make_unique<Database>(o, primary.observer()));
  }
  s_->status.resize(s_->replicas.size());
  for (size_t i = 0; i < s_->status.size(); ++i) s_->status[i].index = static_cast<int>(i);
  DatabaseOptions r = primary.options();
  r.pool_size = 1;
  r.report_pool = false;
  s_->routed = std::make_unique<Database>(r, primary.observer());
  State* state = s_.get();
  s_->routed->impl().route = [state](std::string_view what, const Database::Impl::Body& fn, int attempts) {
    state->Route(what, fn, attempts);
  };
}

ReadReplicas::~ReadReplicas() { Stop(); }

void ReadReplicas::Start() {
  if (s_->thread.joinable() || s_->replicas.empty()) return;
  s_->Poll();
  s_->thread = std::thread([state = s_.get()] {
    std::unique_lock<std::mutex> lock(state->stop_mu);
    while (!state->stop_cv.wait_for(lock, state->options.poll_interval, [state] { return state->stop; })) {
      lock.unlock();
      state->Poll();
      lock.lock();
    }
  });
}

void ReadReplicas::Stop() {
  {
    std::lock_guard<std::mutex> lock(s_->stop_mu);
    s_->stop = true;
  }
  s_->stop_cv.notify_all();
  if (s_->thread.joinable()) s_->thread.join();
}

Database& ReadReplicas::reads() { return *s_->routed; }

std::vector<ReplicaStatus> ReadReplicas::Status() const {
  std::lock_guard<std::mutex> lock(s_->mu);
  return s_->status;
}

}  // namespace nexus::storage
