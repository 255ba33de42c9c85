#pragma once
// Readers for the files `nexusctl import` takes: RFC 4180 CSV (quoted fields with embedded commas, quotes and
// newlines; CRLF or LF) and JSON Lines. Both report the line a record starts on and the byte offset just past
// it, so an import can name bad rows and resume exactly where the server's last acknowledgement left off.

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

namespace nexus::ctl {

struct RawRecord {
  int64_t line = 0;                 ///< 1-based line the record starts on
  uint64_t end_offset = 0;          ///< byte offset just past the record (and its line break)
  std::vector<std::string> fields;  ///< CSV: the fields; JSONL: one element, the line without its line break
  std::string error;                ///< non-empty: the record is malformed (fields may be partial)
};

/// Reads CSV records from `in`, which is positioned at byte `offset`, line `line` (for resuming).
class CsvReader {
 public:
  CsvReader(std::istream& in, char delimiter = ',', uint64_t offset = 0, int64_t line = 1)
      : in_(in), delimiter_(delimiter), offset_(offset), line_(line) {}
  /// False at end of input. A malformed record is returned with `error` set; reading continues after it.
  bool Next(RawRecord* out);
  uint64_t offset() const { return offset_; }
  int64_t line() const { return line_; }  ///< the line the next record starts on

 private:
  int Get();
  int Peek() { return in_.peek(); }

  std::istream& in_;
  char delimiter_;
  uint64_t offset_;
  int64_t line_;
};

/// Reads JSON Lines: one record per line; blank lines are skipped (they still count as lines).
class LineReader {
 public:
  LineReader(std::istream& in, uint64_t offset = 0, int64_t line = 1) : in_(in), offset_(offset), line_(line) {}
  bool Next(RawRecord* out);
  uint64_t offset() const { return offset_; }
  int64_t line() const { return line_; }

 private:
  std::istream& in_;
  uint64_t offset_;
  int64_t line_;
};

/// Splits one CSV text completely (tests, header parsing): every record, errors included.
std::vector<RawRecord> ParseCsv(const std::string& text, char delimiter = ',');

}  // namespace nexus::ctl
