#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "resolver/protection.h"

namespace nexus::storage {

class Database;

/// What one resolver batch did, per kind (person, group).
struct KindStats {
  int64_t born = 0;         ///< new entities that survived the batch
  int64_t accreted = 0;     ///< existing entities that gained identifiers
  int64_t merged = 0;       ///< entities absorbed by merges
  int64_t repointed = 0;    ///< rows repointed from absorbed ids to survivors
  int64_t quarantined = 0;  ///< edges not applied (caps)
  int64_t identifiers = 0;  ///< identifiers first seen in this batch
};

struct BatchStats {
  int64_t events = 0;  ///< 0: nothing was pending
  double seconds = 0;
  KindStats persons;
  KindStats groups;
};

struct ResolverStatusInfo {
  std::optional<int64_t> watermark_ingested_at_us;
  std::string watermark_event_id;
  int64_t events_pending = 0;
  double lag_seconds = 0;
  int64_t persons = 0;
  int64_t groups = 0;
  std::optional<int64_t> last_batch_at_us;
  int64_t batches_total = 0;
};

struct RebuildStats {
  int64_t persons = 0;
  int64_t groups = 0;
  int64_t identifiers = 0;
  int64_t events = 0;
  /// Core-log identifier and membership rows whose normalized value or blocked verdict changed because the
  /// identifier rules (phone region, [email], [free_mail], blocklist) changed since they were ingested.
  int64_t renormalized = 0;
  /// Whether the identifier rules were re-applied (the stored data was marked as following other rules).
  bool identifier_rules_reapplied = false;
  double seconds = 0;
};

/// Where a rebuild is. Phases in order: "reading" (the log, through the engine), "writing" (COPY into shadow
/// tables), "indexing" (indexes + ANALYZE on the shadow tables), "swapping" (one short transaction).
struct RebuildProgress {
  std::string phase;
  int64_t events_done = 0;   ///< events resolved so far
  int64_t events_total = 0;  ///< events the rebuild consumes (known after it starts reading)
};

/// Hooks of a running rebuild, called on the rebuilding thread (`cancelled` from another one too); any may be empty.
struct RebuildControl {
  std::function<void(const RebuildProgress&)> on_progress;
  /// Polled between chunks and phases; when it returns true the rebuild stops, rolls back (readers keep the
  /// old state, nothing half-written) and Rebuild throws StorageError(kCancelled). ResolverStore::Rebuild also
  /// polls it from a thread of its own every 100 ms and then cancels the statement in flight (a sort of the log,
  /// an index build, a wait for a lock can each take minutes at scale): it must be safe to call from any thread.
  std::function<bool()> cancelled;
  /// Told of each connection the rebuild runs statements on (its backend pid; `add` false when it is closed), so
  /// that a cancellation reaches all of them. ResolverStore::Rebuild sets it.
  std::function<void(int pid, bool add)> on_backend;
  /// Events the engine applies at a time (0: 4,000, which bounds the memory of the chunks in flight). Any cut
  /// gives the same result; tests cut small to cross many chunk boundaries.
  int64_t chunk_events = 0;
  /// Reads the log on a second connection too, so that PostgreSQL sorts two parts of it at once. Only for a
  /// rebuild whose transaction has not changed the log itself (the second connection cannot see such changes):
  /// ResolverStore::Rebuild sets it; the re-resolution after an erasure or a link rule, in the transaction that
  /// changed the log, does not.
  bool second_reader = false;
  /// Brings the identifier search tables (migrations 016, 017) up to date in place when at most a tenth of their
  /// rows differ from the rebuilt identifiers, instead of replacing them (a trigram index build: 4.3 s at 1.1M
  /// identifiers). ResolverStore::Rebuild sets it. An erasure's re-resolution does not: a replaced table leaves no
  /// old row version of an erased value behind in the search table's files.
  bool search_in_place = false;
  /// Writes, indexes and commits the participant tables' shadows on a second connection while the rebuild's
  /// transaction writes the rest; the swap renames them with the others. If the rebuild then fails, it drops them
  /// (or, failing after the swap began, the next rebuild does). ResolverStore::Rebuild sets it; an erasure's or a
  /// link rule's re-resolution does not.
  bool side_writer = false;
};

struct QuarantinedEdgeInfo {
  int64_t quarantine_id = 0;
  std::string kind;  ///< "person" | "group"
  std::string event_id;
  std::string edge_id;
  std::string source;
  int64_t occurred_at_us = 0;
  std::vector<std::pair<std::string, std::string>> identifiers;
  std::string reason;
  std::vector<std::string> entity_ids;
  int64_t quarantined_at_us = 0;
  bool released = false;
};

/// A row of link_rules (issue 15): a cannot-link between two identifiers or a suppressed edge.
struct LinkRuleInfo {
  int64_t rule_id = 0;
  std::string kind;  ///< "person" | "group"
  bool cannot_link = true;
  std::pair<std::string, std::string> a, b;  ///< (type, normalized value); cannot-link only
  std::string event_id, edge_id;             ///< suppressed edge only
  std::string reason;
  std::string created_by;
  int64_t created_at_us = 0;
};

/// What a link-rule change would do, computed without changing anything (a dry run).
///
/// Only the affected identifiers are re-resolved: the identifiers of the entities holding the rule's identifiers,
/// closed under every non-blocked edge of the log that touches them (quarantined edges and edge_ids reused across
/// events included) and under the entities those edges reach. No edge links that set to anything outside it, so
/// its resolution does not depend on the rest of the log: its events, replayed in log order through a fresh engine
/// with the changed rules up to the watermark, give the parts and ids the change gives (and a rebuild after it:
/// birth order is a position in the log, resolver::BirthKey). Cost follows the size of that set, not of the
/// database. The real change re-resolves the same set the same way and writes it (ReResolve in the .cc).
struct LinkRulePreview {
  struct Part {
    std::string entity_id;
    /// The id names an entity now: this part keeps it.
    bool existing = false;
    /// (type, value), sorted.
    std::vector<std::pair<std::string, std::string>> identifiers;
  };
  std::vector<std::string> current_entity_ids;  ///< the entities the affected identifiers belong to now, sorted
  std::vector<Part> parts;                      ///< after the change: largest first, then by id
  int64_t identifiers = 0;                      ///< affected identifiers
  int64_t events = 0;                           ///< events replayed
  /// The identifier rules changed since the log was classified: the real change also re-applies them to the
  /// whole log (it rebuilds), which the preview, resolving the stored values, does not show.
  bool identifier_rules_pending = false;
};

/// What adding or removing a link rule did (or, for a dry run, would do): the rule, whether it was new
/// (re-sending an existing rule changes nothing), where the rule's identifiers resolve now, and the
/// re-resolution's figures.
struct LinkRuleResult {
  LinkRuleInfo rule;
  bool created = false;
  std::vector<std::string> entity_ids;  ///< of a and b (cannot-link) or of the edge's identifiers; "" if none
  RebuildStats rebuild;                 ///< for a dry run, only `seconds` (the preview's)
  /// The change was applied by a full rebuild instead of re-resolving the affected identifiers only (identifier
  /// rules changed since the log was classified, or migration 013's birth keys are not computed yet).
  bool whole_log = false;
  bool dry_run = false;
  LinkRulePreview preview;  ///< dry run only
};

/// One input of an erasure: an entity id (per_/grp_, aliases followed), or an identifier: with `whole_entity`
/// the entity holding it (every identifier of it), else that identifier alone.
struct EraseTarget {
  std::string entity_id;
  std::string kind;  ///< identifier inputs: "person" | "group"
  std::string type, value;
  bool whole_entity = true;
};
struct EraseRequest {
  std::string request_id;  ///< client-supplied idempotency key (required)
  std::vector<EraseTarget> targets;
  bool dry_run = false;
  std::string key_id;  ///< the caller, for the audit record
};
struct EraseOutcome {
  std::string outcome;  ///< "erased" (dry run: "would_erase") | "not_found" | "failed"
  std::string detail;   ///< why, for not_found / failed (never an identifier value)
  std::vector<std::string> entity_ids;
  int64_t identifiers = 0;
};
struct EraseResult {
  std::string operation_id;  ///< "" for a dry run
  bool dry_run = false;
  bool replayed = false;  ///< the request_id was already done: its stored record, nothing erased again
  int64_t at_us = 0;
  std::map<std::string, int64_t> counts;  ///< rows per table (deleted, or that a dry run would delete)
  std::vector<std::string> entity_ids;    ///< entities affected (erased whole or split)
  std::vector<EraseOutcome> outcomes;     ///< per input, in order (a replay: outcome only)
  std::vector<std::string> erased_hashes;
  /// How the rest was re-resolved (not for a dry run or replay): a full rebuild (identifier rules changed since the
  /// log was classified, or migration 013's birth keys not computed yet) or the affected entities only.
  bool whole_log = false;
  int64_t events_replayed = 0;
};

struct SuppressionInfo {
  std::string kind;
  std::string id_hash;
  std::string operation_id;
  int64_t suppressed_at_us = 0;
};

/// The resolver's database side. One ResolverStore owns one dedicated session connection that holds the
/// resolver advisory lock (only one resolver across replicas; the lock goes with the session, so a dead
/// holder frees it) and LISTENs for ingest notifications. Not thread-safe: use it from one thread.
///
/// Batches consume events in (_ingest_xid, event_id) order, only below the oldest transaction running in this
/// database (pg_snapshot_xmin, skipping other databases' transactions), so an ingest transaction that commits late
/// is never skipped. A batch's results and the watermark commit in one transaction.
class ResolverStore final {
 public:
  ResolverStore(Database& db, std::string url);
  ~ResolverStore();
  ResolverStore(const ResolverStore&) = delete;
  ResolverStore& operator=(const ResolverStore&) = delete;

  /// Tries to take the resolver lock (non-blocking). Reconnects if the session was lost.
  bool TryAcquireLock();
  bool holds_lock() const { return holds_lock_; }
  /// Closes the session (and so releases the lock).
  void Release();

  /// Resolves at most `max_events` pending events. Requires the lock. Throws StorageError (the batch is
  /// rolled back and the lock is considered lost if the connection broke).
  BatchStats RunBatch(int64_t max_events, const resolver::ProtectionConfig& protection);

  /// The resident graph: identifiers held (0 when none is loaded), approximate bytes (taken at load or
  /// rebuild) and how long the last load from the database took.
  struct GraphInfo {
    int64_t identifiers = 0;
    int64_t bytes = 0;
    double load_seconds = 0;
  };
  GraphInfo graph_info() const;
  /// For tests and checks: where the resident graph differs from one loaded from the database now
  /// (resolver::DiffStates); "" when they agree or no graph is resident.
  std::string DiffGraphWithDatabase();
  /// For tests: called right after a batch commits, before the store accounts for it (publishes the graph's size,
  /// returns its stats). A hook that throws stands for the process dying there: the batch is committed, and the
  /// resident graph (updated before the commit, see resolver::Engine::Apply) or one loaded anew must agree with
  /// the database.
  void SetAfterCommitHookForTesting(std::function<void()> hook);

  /// Waits up to `timeout` for an ingest notification. Returns true when one arrived.
  bool WaitForIngest(std::chrono::milliseconds timeout);

  /// Recomputes every resolved and final table from the core log in one engine pass: reads the log once,
  /// resolves in memory, COPYs into shadow tables, builds their indexes, ANALYZEs and swaps them in as the last
  /// short step of its transaction (readers see the old state until it commits, never a partial one: see
  /// detail::BeginSnapshot). The swap's locks wait 1 s at a time so that readers are not held up behind them,
  /// for at most 10 minutes. Once `control.cancelled` returns true, the statement in flight is cancelled too,
  /// and the rebuild rolls back (StorageError kCancelled). Ids are derived
  /// deterministically, so the same log gives the same ids. Requires the lock. The rebuilt graph becomes the
  /// resident one.
  RebuildStats Rebuild(const resolver::ProtectionConfig& protection, const RebuildControl& control = {});

  /// Applies a quarantined edge as a normal merge (no caps). Returns the entity it joined into.
  std::string ReleaseQuarantined(int64_t quarantine_id, const resolver::ProtectionConfig& protection);

  /// Adds a link rule (or finds the same one) and re-resolves with it in the same transaction, so every table
  /// follows the rule at commit: the affected identifiers only (as LinkRulePreview; cost follows their number), or a
  /// full rebuild when the stored state cannot be re-resolved piecewise (LinkRuleResult::whole_log). The resident
  /// graph takes what was written for the affected identifiers after commit (resolver::Engine::Forget and a load
  /// of those rows), or is replaced by the rebuilt one.
  /// kInvalidArgument names what is wrong (unknown identifier or edge, a == b).
  /// `dry_run`: validates the rule the same way, changes nothing and returns LinkRuleResult::preview.
  LinkRuleResult AddLinkRule(const LinkRuleInfo& rule, const resolver::ProtectionConfig& protection,
                             bool dry_run = false);
  /// Deletes a link rule and re-resolves without it (what the log links merges again). kNotFound when unknown.
  /// `dry_run`: changes nothing and returns LinkRuleResult::preview.
  /// `removed_by`: the caller's API key id, for the split history (entity_splits).
  LinkRuleResult RemoveLinkRule(int64_t rule_id, const resolver::ProtectionConfig& protection, bool dry_run = false,
                                const std::string& removed_by = "");
  static std::vector<LinkRuleInfo> ListLinkRules(Database& db, int64_t after_id, int limit);

  /// Erases persons / groups / identifiers from the core log, every resolved and final table, quarantines and
  /// link rules; suppresses the erased identifiers at ingest; records the erasure (hashes only); re-resolves the
  /// entities the erased identifiers belonged to, as a link-rule change does (components they held together
  /// split). A dry run changes nothing. Idempotent by request_id. Requires the lock.
  EraseResult Erase(const EraseRequest& request, const resolver::ProtectionConfig& protection);
  static std::vector<SuppressionInfo> ListSuppressions(Database& db, const std::string& after_hash, int limit);
  /// Lifts the suppression of identifier (kind, type, value) — or of `id_hash` when type is empty. Returns the
  /// hash lifted; kNotFound when it was not suppressed.
  static std::string LiftSuppression(Database& db, const std::string& kind, const std::string& type,
                                     const std::string& value, const std::string& id_hash);

  /// How many pending events Status counts at most. Counting walks the backlog, so with millions of events
  /// pending a client polling the status (or the gauges' refresh) takes PostgreSQL time from the resolver it is
  /// waiting for (seen in a 10M bench attempt). A larger backlog reads as this many.
  static constexpr int64_t kPendingCountLimit = 100000;
  /// Status via the shared pool (works without the lock). `events_pending` is exact up to `pending_limit`
  /// and `pending_limit` beyond it; `lag_seconds` (the age of the oldest pending event) is always exact.
  static ResolverStatusInfo Status(Database& db, int64_t pending_limit = kPendingCountLimit);
  /// Creates the month partitions of the core log (migration 012) from the current month to `months_ahead`
  /// months ahead. Serialized between processes by the database. Returns how many partitions it created.
  static int EnsureLogPartitions(Database& db, int months_ahead);
  static std::vector<QuarantinedEdgeInfo> ListQuarantined(Database& db, const std::string& kind, bool include_released,
                                                          int64_t after_id, int limit);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  bool holds_lock_ = false;
};

}  // namespace nexus::storage
