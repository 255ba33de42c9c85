// The engine's id tables on their own, against std::unordered_map: random inserts, erasures, lookups and reserves,
// with hashes chosen to collide (long probe chains, tombstones inside them), which the engine's streams rarely make.
// Env: NEXUS_SEED (random when unset, always printed).

#include "resolver/key_index.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace nexus::resolver::detail {
namespace {

uint64_t Seed() {
  static const uint64_t seed = [] {
    uint64_t s = (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
    if (const char* e = std::getenv("NEXUS_SEED"); e != nullptr && *e != '\0') s = std::strtoull(e, nullptr, 10);
    std::cout << "key index: NEXUS_SEED=" << s << "\n";
    return s;
  }();
  return seed;
}

// Keys are integers held by the caller (by id); the hash is the key modulo a small number, so many keys share a
// hash and most share a probe chain.
TEST(ProbeTableTest, AgreesWithAMapUnderCollidingHashesAndErasures) {
  const uint64_t seed = Seed();
  SCOPED_TRACE("NEXUS_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const uint32_t buckets : {1u, 7u, 1000u, 1u << 30}) {
    SCOPED_TRACE("hash buckets " + std::to_string(buckets));
    ProbeTable table;
    std::vector<uint64_t> key_of;                   // by id
    std::unordered_map<uint64_t, uint32_t> oracle;  // live key -> id
    auto hash = [&](uint64_t key) { return static_cast<uint32_t>(key % buckets); };
    auto find = [&](uint64_t key) { return table.Find(hash(key), [&](uint32_t id) { return key_of[id] == key; }); };
    const int ops = buckets == 1 ? 3000 : 60000;  // one bucket: every lookup walks the whole chain
    for (int op = 0; op < ops; ++op) {
      const uint64_t key = rng() % 5000;
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2: {  // insert when absent
          if (oracle.count(key)) break;
          const uint32_t id = static_cast<uint32_t>(key_of.size());
          key_of.push_back(key);
          table.Insert(id, hash(key));
          oracle[key] = id;
          break;
        }
        case 3:
        case 4: {  // erase when present
          auto it = oracle.find(key);
          if (it == oracle.end()) break;
          table.Erase(it->second, hash(key));
          oracle.erase(it);
          break;
        }
        case 5:
          table.Reserve(rng() % 3000);
          break;
        default: {
          auto it = oracle.find(key);
          ASSERT_EQ(find(key), it == oracle.end() ? kNone : it->second) << "op " << op << " key " << key;
        }
      }
    }
    for (uint64_t key = 0; key < 5000; ++key) {
      auto it = oracle.find(key);
      ASSERT_EQ(find(key), it == oracle.end() ? kNone : it->second) << "key " << key;
    }
    table.Free();
    EXPECT_EQ(find(key_of.empty() ? 0 : key_of[0]), kNone);
  }
}

TEST(KeyIndexTest, InternsFindsAndErasesLikeAMap) {
  const uint64_t seed = Seed() + 1;
  SCOPED_TRACE("NEXUS_SEED=" + std::to_string(seed - 1));
  std::mt19937_64 rng(seed);
  KeyIndex index;
  std::unordered_map<std::string, uint32_t> oracle;
  std::vector<std::string> key_of;  // by id; "" once erased
  auto random_key = [&] {
    std::string k = "email\x1f";
    const size_t n = rng() % 12;  // includes the empty value
    for (size_t i = 0; i < n; ++i) k += static_cast<char>('a' + rng() % 3);
    return k;
  };
  for (int op = 0; op < 200000; ++op) {
    const std::string key = random_key();
    switch (rng() % 6) {
      case 0:
      case 1: {
        const auto [id, fresh] = index.Intern(key);
        auto it = oracle.find(key);
        if (it == oracle.end()) {
          ASSERT_TRUE(fresh) << key;
          ASSERT_EQ(id, key_of.size()) << "ids are given in order";
          key_of.push_back(key);
          oracle.emplace(key, id);
        } else {
          ASSERT_FALSE(fresh) << key;
          ASSERT_EQ(id, it->second) << key;
        }
        break;
      }
      case 2: {
        auto it = oracle.find(key);
        if (it == oracle.end()) break;
        index.Erase(it->second);
        ASSERT_EQ(index.Key(it->second), "\x1f") << "an erased id reads as type \"\" and value \"\"";
        key_of[it->second].clear();
        oracle.erase(it);
        break;
      }
      case 3:
        index.Reserve(rng() % 5000);
        break;
      default: {
        auto it = oracle.find(key);
        ASSERT_EQ(index.Find(key), it == oracle.end() ? kNone : it->second) << key;
      }
    }
  }
  for (uint32_t id = 0; id < key_of.size(); ++id) {
    if (key_of[id].empty()) continue;
    ASSERT_EQ(index.Key(id), key_of[id]);
    ASSERT_EQ(index.Find(key_of[id]), id);
  }
  EXPECT_GT(index.MemoryBytes(), 0u);
}

}  // namespace
}  // namespace nexus::resolver::detail
