#pragma once
// Plain records exchanged between server/ and storage/ (no protobuf, no libpqxx).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace nexus::storage {

/// One identifier row of an event: normalized value, raw value, and the mention's role.
struct IdentifierRow {
  std::string edge_id;
  std::string type;
  std::string value;                ///< normalized
  std::string raw_value;            ///< as received
  std::optional<std::string> role;  ///< nullopt: implied by a membership, not a participant
  bool blocked = false;
  std::string blocked_reason;
  std::string path;  ///< where the request named it, e.g. "events[0].persons[1].identifiers[0]" (not stored)
};

/// The JSON type of a trait value (stored in value_type).
enum class TraitType : uint8_t { kString, kNumber, kBoolean, kNull };
/// "string" | "number" | "boolean" | "null" (the stored value_type)
inline const char* TraitTypeName(TraitType t) {
  switch (t) {
    case TraitType::kNumber:
      return "number";
    case TraitType::kBoolean:
      return "boolean";
    case TraitType::kNull:
      return "null";
    case TraitType::kString:
      break;
  }
  return "string";
}

/// One trait of a mention. `value` is the text form: a string as sent, a number in shortest round-trip form,
/// "true"/"false"; nullopt exactly when the type is kNull (a JSON null: unsets the trait).
struct TraitRow {
  std::string edge_id;
  std::string name;
  std::optional<std::string> value;
  TraitType type = TraitType::kString;
};

struct MembershipRow {
  std::string person_type;
  std::string person_value;  ///< normalized
  std::string group_type;
  std::string group_value;  ///< normalized
  std::optional<std::string> role;
};

/// One event with everything it revealed, ready to store.
struct EventRecord {
  std::string event_id;
  int64_t occurred_at_us = 0;  ///< microseconds since the epoch
  std::string event_name;
  std::optional<std::string> event_description;
  std::string event_type;
  std::string source;
  std::optional<double> value;
  std::optional<std::string> value_unit;
  std::vector<IdentifierRow> person_identifiers;
  std::vector<TraitRow> person_traits;
  std::vector<IdentifierRow> group_identifiers;
  std::vector<TraitRow> group_traits;
  std::vector<MembershipRow> memberships;
};

struct IngestResult {
  int64_t accepted = 0;
  std::vector<std::string> duplicate_event_ids;
  int64_t blocked_identifiers = 0;
  int64_t suppressed_identifiers = 0;            ///< rows dropped: the identifier was erased (suppressed_identifiers)
  int64_t suppressed_events = 0;                 ///< events dropped whole: all their identifier rows were suppressed
  std::map<std::string, int64_t> rows_by_table;  ///< rows written, by table name
  double commit_seconds = 0;
  std::string commit_lsn;  ///< WAL position at or after the commit (PostgreSQL text form), for read-your-writes
};

}  // namespace nexus::storage
