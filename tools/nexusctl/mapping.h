#pragma once
// How `nexusctl import` turns a CSV row or a JSON line into a nexus.v1.Event: which columns are identifiers of
// which type, which are traits, which is the time, the event name/type and the source. Given by flags
// (--person-id email=Email) or a mapping file with the same options one per line (`person-id email=Email`).

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/v1/types.pb.h"

namespace nexus::ctl {

/// `<key>=<column>`: an identifier type or a trait name, and the column (CSV header name, or a JSON key;
/// dotted keys reach into nested objects: `user.email`).
struct ColumnRef {
  std::string key;
  std::string column;
};

struct Mapping {
  std::string format;  ///< csv | jsonl; empty: from the file name
  char delimiter = ',';
  bool header = true;  ///< CSV: the first record names the columns; without it columns are named 1, 2, ...
  std::string source;  ///< fixed source, or
  std::string source_column;
  std::vector<ColumnRef> person_ids, group_ids, person_traits, group_traits;
  std::string time_column;  ///< empty: every row gets default_time (the import's start unless --default-time)
  std::string default_time;
  std::string event_name = "record_imported", event_name_column;
  std::string event_type = "import", event_type_column;
  std::string event_id_column;  ///< empty: derived from the source and the row's content
  std::string description_column;
  std::string value_column, value_unit;  ///< the event's numeric value (e.g. an amount) and its unit
  std::string person_role, group_role;
  std::string membership_role, membership_role_column;
  bool memberships = true;  ///< a row with person and group identifiers makes the person a member of the group
};

/// The mapping options, for --help and for recognizing them among the command's flags.
const std::vector<std::string>& MappingOptionNames();
bool IsMappingOption(std::string_view name);
/// Applies one option (name without dashes). Returns an error naming the option, or "".
std::string ApplyMappingOption(Mapping* m, std::string_view name, std::string_view value);
/// Parses a mapping file: `option value` per line, `#` comments, blank lines. Errors name the line.
std::string ParseMappingFile(std::string_view text, Mapping* m);
/// Checks the whole mapping (a source, at least one identifier column, known format). "" when usable.
std::string ValidateMapping(const Mapping& m);
/// A stable text of everything that decides how rows become events (a resumed import must use the same).
std::string MappingFingerprint(const Mapping& m);

/// RFC 3339 (`2026-11-02T10:00:00Z`, offsets, fractions), `2026-11-02 10:00:00` and `2026-11-02` (UTC), or
/// Unix seconds / milliseconds. Returns an error, or "".
std::string ParseTime(std::string_view text, google::protobuf::Timestamp* out);

/// One row's values by column name. Absent and empty cells give nullopt.
class Row {
 public:
  virtual ~Row() = default;
  virtual std::optional<google::protobuf::Value> Get(const std::string& column) const = 0;
};

/// A CSV row (strings) under its header.
class CsvRow : public Row {
 public:
  CsvRow(const std::vector<std::string>& header, const std::vector<std::string>& fields)
      : header_(header), fields_(fields) {}
  std::optional<google::protobuf::Value> Get(const std::string& column) const override;

 private:
  const std::vector<std::string>& header_;
  const std::vector<std::string>& fields_;
};

/// A JSON object (one JSON line), typed values kept; dotted column names reach into nested objects.
class JsonRow : public Row {
 public:
  explicit JsonRow(const google::protobuf::Struct& object) : object_(object) {}
  std::optional<google::protobuf::Value> Get(const std::string& column) const override;

 private:
  const google::protobuf::Struct& object_;
};

/// Parses a JSON line into an object; returns an error or "".
std::string ParseJsonObject(const std::string& line, google::protobuf::Struct* out);

/// The event a row describes. `content` is the row's text (it and the source derive the event id, so the same
/// row imported again is the same event and the server writes it once). Returns an error naming the column, or "".
std::string RowToEvent(const Mapping& m, const Row& row, std::string_view content,
                       const google::protobuf::Timestamp& default_time, v1::Event* out);

/// The event id for a row without an id column: "imp_" + a 128-bit stable hash of the source and the content.
std::string DerivedEventId(std::string_view source, std::string_view content);

/// CSV content for hashing: header names and values, so the same row gives the same id after a column reorder.
std::string CsvContent(const std::vector<std::string>& header, const std::vector<std::string>& fields);

}  // namespace nexus::ctl
