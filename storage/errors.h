#pragma once

#include <stdexcept>
#include <string>

namespace nexus::storage {

enum class ErrorKind {
  kUnavailable,      ///< the database cannot be reached (retry later)
  kNotFound,         ///< the thing asked for does not exist
  kInvalidArgument,  ///< the request cannot be stored as given
  kInternal,         ///< a bug or an unexpected database error
  kCancelled,        ///< the operation was cancelled (shutdown, signal); nothing was written
};

/// The one error type that leaves storage/: libpqxx exceptions are caught inside and mapped to a kind.
/// what() is for logs (it may hold the database's own text, host names, SQL); public_message() is what a
/// client may see: it never holds database error text.
class StorageError : public std::runtime_error {
 public:
  StorageError(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind), public_(message) {}
  /// `detail` (the driver's or server's text) goes to what() only.
  StorageError(ErrorKind kind, const std::string& message, const std::string& detail)
      : std::runtime_error(detail.empty() ? message : message + ": " + detail), kind_(kind), public_(message) {}
  ErrorKind kind() const { return kind_; }
  const std::string& public_message() const { return public_; }

 private:
  ErrorKind kind_;
  std::string public_;
};

}  // namespace nexus::storage
