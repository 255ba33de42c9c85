#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/database.h"

namespace nexus::storage {

/// Where one read ran and how fresh its answer is (server/ turns it into response headers).
struct ReadInfo {
  std::string served_by;         ///< "primary" or "replica-<n>" (n counts the --read-database-url values from 0)
  std::string resolved_through;  ///< the resolver watermark the answer reflects (RFC 3339 UTC); "" before any
};

/// The ReadInfo of the calling thread's latest read through ReadReplicas::reads(), and clears it (a request
/// that read nothing gets an empty one).
ReadInfo TakeReadInfo();
/// The request header (gRPC metadata key, HTTP header) carrying an ingest response's commit_lsn, and the
/// response headers that say where a read ran and how fresh it is.
inline constexpr char kMinLsnHeader[] = "x-nexus-min-lsn";
inline constexpr char kReadFromHeader[] = "x-nexus-read-from";
inline constexpr char kResolvedThroughHeader[] = "x-nexus-resolved-through";

/// While alive, reads of this thread go only where WAL position `lsn` is already replayed (a replica past it,
/// else the primary): read-your-writes after an ingest that returned its commit_lsn. 0: no requirement.
class ScopedMinLsn {
 public:
  explicit ScopedMinLsn(uint64_t lsn);
  ~ScopedMinLsn();
  ScopedMinLsn(const ScopedMinLsn&) = delete;
  ScopedMinLsn& operator=(const ScopedMinLsn&) = delete;

 private:
  uint64_t previous_;
};

/// Parses PostgreSQL's text form of a WAL position ("16/B374D848"); false when malformed.
bool ParseLsn(std::string_view text, uint64_t* out);
std::string FormatLsn(uint64_t lsn);

/// What the last poll saw of one replica.
struct ReplicaStatus {
  int index = 0;
  bool up = false;           ///< answered the last poll
  bool in_recovery = false;  ///< a standby (false: the URL points at a primary; it is used with lag 0)
  double lag_seconds = 0;    ///< how long the primary has had WAL this replica has not replayed
  int64_t lag_bytes = 0;     ///< primary's WAL position minus the replica's replay position
  uint64_t replay_lsn = 0;
};

/// Hot-standby replicas for query traffic, with a lag monitor.
///
/// A background thread polls the primary's WAL position and each replica's replay position every
/// `poll_interval` and keeps a short history of the primary's positions, so that lag is measured in time
/// as "how long ago the primary first had WAL this replica has not replayed" (an idle primary gives lag 0,
/// unlike now() - pg_last_xact_replay_timestamp()). reads() returns a Database whose every transaction goes to
/// the least-lagging replica that is up and within `max_lag` (and past the thread's ScopedMinLsn), else to the
/// primary; a replica that cannot be reached before the transaction starts is skipped for that read (the
/// primary answers) and marked down until the next poll. Replica URLs never appear in logs or metrics (they
/// may hold passwords): replicas are named by their index.
class ReadReplicas final {
 public:
  struct Options {
    std::vector<std::string> urls;
    std::chrono::milliseconds max_lag{5000};
    std::chrono::milliseconds poll_interval{250};
  };
  /// `base` supplies pool size and timeouts for the replica pools (its url is ignored).
  ReadReplicas(Database& primary, const DatabaseOptions& base, Options options);
  ~ReadReplicas();
  ReadReplicas(const ReadReplicas&) = delete;
  ReadReplicas& operator=(const ReadReplicas&) = delete;

  /// Starts the monitor (one poll runs before it returns, so the first reads can use replicas).
  void Start();
  void Stop();
  /// The Database to give QueryStore: it routes each transaction (works before Start(): then to the primary).
  Database& reads();
  std::vector<ReplicaStatus> Status() const;

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace nexus::storage
