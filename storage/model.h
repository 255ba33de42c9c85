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
  std::string value;      ///< normalized
  std::string raw_value;  ///< as received
  std::optional<std::string> role;  ///< nullopt: implied by a membership, not a participant
  bool blocked = false;
  std::string blocked_reason;
  std::string path;  ///< where the request named it, e.g. "events[0].persons[1].identifiers[0]" (not stored)
};

struct TraitRow {
  std::string edge_id;
  std::string name;
  std::string value;
};

struct MembershipRow {
  std::string person_type;
  std::string person_value;  ///< normalized
  std::string group_type;
  std::string group_value;   ///< normalized
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
  std::map<std::string, int64_t> rows_by_table;  ///< rows written, by table name
  double commit_seconds = 0;
};

}  // namespace nexus::storage
