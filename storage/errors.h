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
class StorageError : public std::runtime_error {
 public:
  StorageError(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace nexus::storage
