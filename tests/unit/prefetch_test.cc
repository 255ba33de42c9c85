#include "storage/detail/prefetch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace nexus::storage::detail {
namespace {

using Ints = Prefetch<int>;

TEST(Prefetch, HandsOverEveryItemInOrderThenTheEnd) {
  Ints p([](const Ints::Put& put) {
    for (int i = 0; i < 1000; ++i) {
      if (!put(i)) return;
    }
  });
  std::vector<int> got;
  while (auto i = p.Next()) got.push_back(*i);
  ASSERT_EQ(got.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(got[i], i);
  EXPECT_FALSE(p.Next().has_value()) << "the end stays the end";
}

TEST(Prefetch, ProducesAtMostOneItemAheadOfTheCaller) {
  std::atomic<int> made{0};
  Ints p([&](const Ints::Put& put) {
    for (int i = 0; i < 100; ++i) {
      ++made;
      if (!put(i)) return;
    }
  });
  for (int i = 0; i < 100; ++i) {
    auto item = p.Next();
    ASSERT_TRUE(item.has_value());
    // Taken: item i. The producer may have made item i + 1 (and be waiting to hand it over), never i + 2.
    EXPECT_LE(made.load(), i + 2) << "item " << i;
  }
  EXPECT_FALSE(p.Next().has_value());
}

TEST(Prefetch, TheProducersErrorReachesTheCallerAfterItsItems) {
  Ints p([](const Ints::Put& put) {
    put(1);
    put(2);
    throw std::runtime_error("the cursor broke");
  });
  EXPECT_EQ(p.Next(), 1);
  EXPECT_EQ(p.Next(), 2);
  try {
    p.Next();
    FAIL() << "Next did not rethrow the producer's error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "the cursor broke");
  }
}

TEST(Prefetch, ACallerThatStopsEarlyStopsTheProducer) {
  std::atomic<int> made{0};
  std::atomic<bool> told_to_stop{false};
  {
    Ints p([&](const Ints::Put& put) {
      for (int i = 0;; ++i) {  // endless unless told to stop
        ++made;
        if (!put(i)) {
          told_to_stop = true;
          return;
        }
      }
    });
    EXPECT_EQ(p.Next(), 0);
    EXPECT_EQ(p.Next(), 1);
  }  // the destructor returns only once the producer has
  EXPECT_TRUE(told_to_stop.load());
  EXPECT_LE(made.load(), 4);
}

TEST(Prefetch, AProducerThatMakesNothingEndsAtOnce) {
  Ints p([](const Ints::Put&) {});
  EXPECT_FALSE(p.Next().has_value());
}

}  // namespace
}  // namespace nexus::storage::detail
