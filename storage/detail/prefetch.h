#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace nexus::storage::detail {

/// Runs a producer on its own thread and hands its items to the caller one at a time, so that the next item is
/// produced while the caller works on the current one (reading rows from PostgreSQL while the engine applies the
/// rows read before). At most two items are alive: the one the caller has and the one the producer is making.
///
/// The producer gets `put` and calls it once per item; `put` blocks until the caller has taken the item and
/// returns false once the consumer has gone (destroyed early, e.g. unwinding an error): the producer should then
/// return. An exception thrown by the producer reaches the caller from Next, after the items put before it.
///
/// Whatever the producer uses (a transaction, above all) is the producer's until Next has returned the end or the
/// Prefetch is destroyed: the caller must not touch it in between. The destructor stops and joins the thread.
template <typename T>
class Prefetch {
 public:
  using Put = std::function<bool(T)>;

  explicit Prefetch(std::function<void(const Put&)> produce) {
    thread_ = std::thread([this, produce = std::move(produce)] {
      std::exception_ptr error;
      try {
        produce([this](T item) {
          std::unique_lock lock(mu_);
          changed_.wait(lock, [&] { return !slot_ || stopped_; });
          if (stopped_) return false;
          slot_.emplace(std::move(item));
          changed_.notify_all();
          // Until it is taken: the producer makes the next item while the caller works on this one, never two
          // ahead (two items live at most, as with double buffering).
          changed_.wait(lock, [&] { return !slot_ || stopped_; });
          return !stopped_;
        });
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard lock(mu_);
      error_ = error;
      done_ = true;
      changed_.notify_all();
    });
  }

  ~Prefetch() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      changed_.notify_all();
    }
    thread_.join();
  }

  Prefetch(const Prefetch&) = delete;
  Prefetch& operator=(const Prefetch&) = delete;

  /// The next item; nullopt once the producer has returned and every item was taken. Rethrows its error.
  std::optional<T> Next() {
    std::unique_lock lock(mu_);
    changed_.wait(lock, [&] { return slot_.has_value() || done_; });
    if (slot_) {
      std::optional<T> item = std::move(slot_);
      slot_.reset();
      changed_.notify_all();
      return item;
    }
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
    return std::nullopt;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::optional<T> slot_;
  bool stopped_ = false;  // the consumer has gone
  bool done_ = false;     // the producer has returned
  std::exception_ptr error_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace nexus::storage::detail
