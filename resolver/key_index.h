#pragma once
// The engine's hash tables of dense ids: pure data structures, in their own header so that they are tested on their
// own (tests/unit/key_index_test.cc), with probe chains and erasures that the engine's streams rarely make.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace nexus::resolver::detail {

/// "No id": what a lookup returns for a key that is not held.
inline constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

/// Open addressing over dense ids with their 32-bit hashes (8-byte slots, linear probing; grown to at most half
/// full when an insert would fill it past three quarters). The keys stay with the caller: a lookup passes a test
/// of whether an id holds the key sought, so a slot holds no copy of a key and growing needs no key (the hash is in
/// the slot). KeyIndex below and the engine's table of entity ids keep their keys differently and share this.
class ProbeTable {
 public:
  static uint32_t Hash(std::string_view key) {
    const uint64_t h = std::hash<std::string_view>{}(key);
    return static_cast<uint32_t>(h ^ (h >> 32));
  }
  /// The id with hash `h` for which `holds(id)` is true, or kNone.
  template <class Holds>
  uint32_t Find(uint32_t h, const Holds& holds) const {
    if (slots_.empty()) return kNone;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& sl = slots_[i];
      if (sl.id == kNone) return kNone;
      if (sl.id != kErased && sl.hash == h && holds(sl.id)) return sl.id;
    }
  }
  /// Brings the first slot a lookup of hash `h` reads into the cache (a hint: no effect on the result).
  void PrefetchSlot(uint32_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & mask_]);
  }
  /// The id in the first slot of `h`'s probe chain that carries hash `h`, or kNone; reads at most a few slots
  /// (for PrefetchKey: a hint, not a lookup).
  uint32_t FirstWithHash(uint32_t h) const {
    if (slots_.empty()) return kNone;
    size_t i = h & mask_;
    for (int n = 0; n < 4; ++n, i = (i + 1) & mask_) {
      const Slot& sl = slots_[i];
      if (sl.id == kNone) return kNone;
      if (sl.id != kErased && sl.hash == h) return sl.id;
    }
    return kNone;
  }
  /// Adds `id`, whose key is not held yet.
  void Insert(uint32_t id, uint32_t h) {
    if ((live_ + erased_ + 1) * 4 > slots_.size() * 3) Grow(live_ + 1);
    size_t i = h & mask_;
    while (slots_[i].id != kNone) i = (i + 1) & mask_;
    slots_[i] = Slot{id, h};
    ++live_;
  }
  /// Takes `id` (held, with hash `h`) out of lookups; its slot stays as a tombstone until the table grows.
  void Erase(uint32_t id, uint32_t h) {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].id == id) {
        slots_[i].id = kErased;
        break;
      }
    }
    --live_;
    ++erased_;
  }
  /// Room for `more` ids beyond those held, without growing on the way.
  void Reserve(size_t more) {
    if ((live_ + more) * 4 > slots_.size() * 3) Grow(live_ + more);
  }
  size_t MemoryBytes() const { return slots_.capacity() * sizeof(Slot); }
  void Free() {
    std::vector<Slot>().swap(slots_);
    mask_ = live_ = erased_ = 0;
  }

 private:
  static constexpr uint32_t kErased = kNone - 1;
  struct Slot {
    uint32_t id = kNone;  // kNone: empty; kErased: a removed id (probes go on)
    uint32_t hash = 0;
  };
  /// Makes the table at most half full for `ids` (never smaller than it was), placing the live ids again and
  /// dropping the tombstones.
  void Grow(size_t ids) {
    std::vector<Slot> old;
    old.swap(slots_);
    size_t n = old.empty() ? 1024 : old.size();
    while ((ids + 1) * 2 > n) n *= 2;
    slots_.assign(n, Slot{});
    mask_ = n - 1;
    live_ = erased_ = 0;
    for (const Slot& sl : old) {
      if (sl.id != kNone && sl.id != kErased) Insert(sl.id, sl.hash);
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t live_ = 0, erased_ = 0;
};

/// The identifier keys of one kind ("type \x1f value"), interned: their bytes in append-only blocks, found
/// through a ProbeTable of dense ids. Per identifier: the key's bytes, a 12-byte reference and 11-22 bytes of table,
/// where an unordered_map<std::string, uint32_t> also held a node, a string header, often a second allocation and a
/// bucket (the engine's heap after a load at 1.1M identifiers went from 326 to 248 MiB, docs/BENCHMARKS.md). Ids
/// are given in order, from 0; an erased key's id is not given again and its bytes stay until the index is dropped.
class KeyIndex {
 public:
  /// The id of `key`, or kNone.
  uint32_t Find(std::string_view key) const { return Find(key, ProbeTable::Hash(key)); }
  /// The same, with the key's hash (ProbeTable::Hash) computed already.
  uint32_t Find(std::string_view key, uint32_t h) const {
    return table_.Find(h, [&](uint32_t id) { return Key(id) == key; });
  }
  /// The id of `key` and false, or, when it is new, the next id (now given to it) and true.
  std::pair<uint32_t, bool> Intern(std::string_view key) { return Intern(key, ProbeTable::Hash(key)); }
  /// The same, with the key's hash (ProbeTable::Hash) computed already.
  std::pair<uint32_t, bool> Intern(std::string_view key, uint32_t h) {
    if (const uint32_t id = Find(key, h); id != kNone) return {id, false};
    const uint32_t id = static_cast<uint32_t>(refs_.size());
    refs_.push_back(Store(key));
    table_.Insert(id, h);
    return {id, true};
  }
  /// Takes `id` out of lookups; Key(id) is "\x1f" (type "" and value "") from now on.
  void Erase(uint32_t id) {
    table_.Erase(id, ProbeTable::Hash(Key(id)));
    refs_[id] = Ref{kErasedBlock, 0, 0};
  }
  /// Cache hints for a later Intern of a key with hash `h`, each step after the one before has had time to land
  /// (a lookup misses the cache up to three times: the slot, the id's reference, the key's bytes): 0 the slot,
  /// 1 the reference of the id in it, 2 that id's key bytes. No effect on any result.
  void Prefetch(uint32_t h, int step) const {
    if (step == 0) return table_.PrefetchSlot(h);
    const uint32_t id = table_.FirstWithHash(h);
    if (id == kNone) return;
    if (step == 1) return __builtin_prefetch(&refs_[id]);
    const Ref& r = refs_[id];
    if (r.block != kErasedBlock) __builtin_prefetch(blocks_[r.block].get() + r.offset);
  }
  std::string_view Key(uint32_t id) const {
    const Ref& r = refs_[id];
    if (r.block == kErasedBlock) return "\x1f";
    return {blocks_[r.block].get() + r.offset, r.length};
  }
  size_t MemoryBytes() const { return table_.MemoryBytes() + refs_.capacity() * sizeof(Ref) + block_bytes_; }
  /// Room for `more` keys beyond those held, without growing on the way.
  void Reserve(size_t more) {
    refs_.reserve(refs_.size() + more);
    table_.Reserve(more);
  }

 private:
  static constexpr uint32_t kErasedBlock = kNone;
  static constexpr size_t kBlockBytes = size_t{1} << 20;
  struct Ref {
    uint32_t block, offset, length;
  };
  Ref Store(std::string_view key) {
    if (blocks_.empty() || used_ + key.size() > block_size_) {
      block_size_ = std::max(kBlockBytes, key.size());
      blocks_.push_back(std::make_unique<char[]>(block_size_));
      block_bytes_ += block_size_;
      used_ = 0;
    }
    std::copy(key.begin(), key.end(), blocks_.back().get() + used_);
    const Ref r{static_cast<uint32_t>(blocks_.size() - 1), static_cast<uint32_t>(used_),
                static_cast<uint32_t>(key.size())};
    used_ += key.size();
    return r;
  }

  ProbeTable table_;
  std::vector<Ref> refs_;  // by id
  std::vector<std::unique_ptr<char[]>> blocks_;
  size_t block_size_ = 0, used_ = 0, block_bytes_ = 0;
};

}  // namespace nexus::resolver::detail
