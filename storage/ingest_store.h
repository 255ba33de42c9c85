#pragma once

#include <vector>

#include "storage/model.h"

namespace nexus::storage {

class Database;

/// Appends events and what they revealed to the core event log.
class IngestStore final {
 public:
  explicit IngestStore(Database& db) : db_(db) {}

  /// Writes a batch in one transaction: all of it or none of it. Events whose event_id is already stored
  /// (or repeated within the batch) are duplicates: nothing is written for them. Set-based: one multi-row
  /// INSERT for events, one COPY per child table. Wakes the resolver (NOTIFY nexus_ingest) on commit.
  /// Throws StorageError.
  IngestResult Ingest(const std::vector<EventRecord>& events);

  /// Records that this process classifies identifiers with rules `fingerprint`
  /// (resolver::ProtectionConfig::ClassifyFingerprint). A fresh database adopts them; when the stored data
  /// follows other rules, it is marked for re-classification by the next rebuild. Returns true when the
  /// stored data may not follow these rules (until a rebuild re-applies them). Throws StorageError.
  bool NoteClassifyRules(const std::string& fingerprint);

 private:
  /// Creates the core log's month partitions (migration 012) that events of this batch need and that do not
  /// exist yet, each in its own short transaction before the batch's (the log has no default partition).
  void EnsureMonths(const std::vector<const EventRecord*>& events);

  Database& db_;
};

}  // namespace nexus::storage
