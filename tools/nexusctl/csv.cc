#include "tools/nexusctl/csv.h"

#include <sstream>

namespace nexus::ctl {

int CsvReader::Get() {
  const int c = in_.get();
  if (c != std::char_traits<char>::eof()) ++offset_;
  return c;
}

namespace {
constexpr int kEof = std::char_traits<char>::eof();

/// Skips a UTF-8 byte order mark at the very start of a file (spreadsheet exports write one).
void SkipBom(std::istream& in, uint64_t* offset) {
  if (*offset != 0 || in.peek() != 0xEF) return;
  char bom[3];
  in.read(bom, 3);
  if (in.gcount() == 3 && static_cast<unsigned char>(bom[1]) == 0xBB && static_cast<unsigned char>(bom[2]) == 0xBF) {
    *offset = 3;
    return;
  }
  in.clear();
  in.seekg(0);
}
}  // namespace

bool CsvReader::Next(RawRecord* out) {
  SkipBom(in_, &offset_);
  for (;;) {
    if (Peek() == kEof) return false;
    *out = RawRecord{};
    out->line = line_;
    std::string field;
    bool done = false;
    bool field_started = false;  // the current field has content or was quoted
    while (!done) {
      int c = Get();
      if (c == kEof) {
        out->fields.push_back(std::move(field));
        done = true;
      } else if (c == '"' && !field_started) {
        field_started = true;
        const int64_t opened = line_;
        for (;;) {
          c = Get();
          if (c == kEof) {
            out->error = "unterminated quoted field (the quote opened on line " + std::to_string(opened) + ")";
            break;
          }
          if (c == '"') {
            if (Peek() == '"') {
              Get();
              field.push_back('"');
              continue;
            }
            break;
          }
          if (c == '\n') ++line_;
          field.push_back(static_cast<char>(c));
        }
        if (!out->error.empty()) {
          out->fields.push_back(std::move(field));
          done = true;
          continue;
        }
        const int next = Peek();
        if (next != kEof && next != delimiter_ && next != '\n' && next != '\r') {
          out->error = "unexpected character after a closing quote (a quote inside a quoted field must be doubled)";
          // Skip the rest of the physical line so the next record starts cleanly.
          while ((c = Get()) != kEof && c != '\n') {
          }
          if (c == '\n') ++line_;
          out->fields.push_back(std::move(field));
          done = true;
        }
      } else if (c == delimiter_) {
        out->fields.push_back(std::move(field));
        field.clear();
        field_started = false;
      } else if (c == '\n' || (c == '\r' && Peek() == '\n')) {
        if (c == '\r') Get();
        ++line_;
        out->fields.push_back(std::move(field));
        done = true;
      } else {
        field_started = true;
        field.push_back(static_cast<char>(c));
      }
    }
    out->end_offset = offset_;
    // A blank line is no record.
    if (out->error.empty() && out->fields.size() == 1 && out->fields[0].empty()) continue;
    return true;
  }
}

bool LineReader::Next(RawRecord* out) {
  for (;;) {
    if (in_.peek() == kEof) return false;
    std::string line;
    std::getline(in_, line);
    const bool had_newline = !in_.eof();
    offset_ += line.size() + (had_newline ? 1 : 0);
    *out = RawRecord{};
    out->line = line_++;
    out->end_offset = offset_;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    out->fields.push_back(std::move(line));
    return true;
  }
}

std::vector<RawRecord> ParseCsv(const std::string& text, char delimiter) {
  std::istringstream in(text);
  CsvReader reader(in, delimiter);
  std::vector<RawRecord> out;
  RawRecord r;
  while (reader.Next(&r)) out.push_back(r);
  return out;
}

}  // namespace nexus::ctl
