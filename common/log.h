#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nexus::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

/// A key/value pair attached to a log line; values are written as JSON strings or numbers.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, const char* v) : key(k), value(v ? v : ""), quoted(true) {}
  Field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  Field(std::string_view k, double v);
  Field(std::string_view k, long long v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, long v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, unsigned long v) : key(k), value(std::to_string(v)), quoted(false) {}
  Field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  std::string key;
  std::string value;
  bool quoted;
};

/// Parses "debug" | "info" | "warn" | "error"; returns false for anything else.
bool ParseLevel(std::string_view text, Level* out);
void SetLevel(Level level);
Level GetLevel();
bool Enabled(Level level);

/// Writes one JSON object per line to stderr: {"time":..,"level":..,"msg":..,<fields>}. Thread-safe.
void Write(Level level, std::string_view message, const std::vector<Field>& fields = {});

inline void Debug(std::string_view m, const std::vector<Field>& f = {}) { Write(Level::kDebug, m, f); }
inline void Info(std::string_view m, const std::vector<Field>& f = {}) { Write(Level::kInfo, m, f); }
inline void Warn(std::string_view m, const std::vector<Field>& f = {}) { Write(Level::kWarn, m, f); }
inline void Error(std::string_view m, const std::vector<Field>& f = {}) { Write(Level::kError, m, f); }

/// Escapes a string for inclusion inside JSON quotes.
std::string JsonEscape(std::string_view s);

}  // namespace nexus::log
