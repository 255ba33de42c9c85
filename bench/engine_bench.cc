// nexus_engine_bench: the resolution engine alone, without PostgreSQL (issue 11).
//
// Feeds the benchmark world (bench/generator.h, the same seeded stream bench/run ingests) to
// resolver::Engine in batches of --batch events, the way the resolver worker does after reading them
// from the core log, and reports what the engine itself costs: events/s over the whole stream, the time of
// the batches right after the 100k and 1M identifier checkpoints, the rows its deltas ask storage to write over the
// stream (delta_rows, by kind of row: what a batch costs PostgreSQL follows them), and its memory:
// Engine::MemoryBytes (its own estimate), the process's RSS (which also holds the generated world) and the heap the
// engine holds (glibc's count of allocated bytes, chunk overhead included, before and after; exact, unlike RSS
// differences, which freed but unreturned pages blur). The difference to bench/run's batch time is what PostgreSQL
// costs. Then the cost of taking a re-resolved component in place (Engine::Forget and a load of its rows) for 5
// entities of different sizes (issue 15), and a load of the resolved state (entities, identifiers, trait winners,
// memberships; not the edge sightings) into a fresh engine the way nexusd's graph load feeds it: its time and heap are
// the engine's part of a graph load.
//
//   nexus_engine_bench [--identifiers=1100000] [--batch=10000] [--seed=42] [--out=FILE.json]
#include <malloc.h>  // mallinfo2
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/generator.h"
#include "resolver/engine.h"
#include "resolver/protection.h"

namespace {

using nexus::bench::GenEvent;
using nexus::bench::GenIdentifier;
using namespace nexus::resolver;
using Clock = std::chrono::steady_clock;

std::map<std::string, std::string> Flags(int argc, char** argv) {
  std::map<std::string, std::string> f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.find('=') == std::string::npos) {
      std::cerr << "usage: nexus_engine_bench [--identifiers=N] [--batch=N] [--seed=N] [--out=FILE]\n";
      std::exit(2);
    }
    f[a.substr(2, a.find('=') - 2)] = a.substr(a.find('=') + 1);
  }
  return f;
}

/// Bytes the heap has handed out and not taken back (arena chunks and mmapped blocks).
double HeapMiB() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<double>(mi.uordblks + mi.hblkhd) / 1048576.0;
}

double RssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

/// The core-log rows ingest would store for `events` (derived edge ids, membership-implied rows), as the
/// resolver reads them: re-sent copies are duplicates at ingest and never reach the log.
class LogBuilder {
 public:
  BatchInput Build(const std::vector<const GenEvent*>& events) {
    BatchInput in;
    for (const GenEvent* e : events) {
      const uint32_t ev = static_cast<uint32_t>(in.events.size());
      ingested_us_ += 10;
      in.events.push_back({e->event_id, e->occurred_us, ingested_us_, e->type, e->source});
      Mentions(in, ev, *e, e->persons, EntityKind::kPerson, "#p");
      Mentions(in, ev, *e, e->groups, EntityKind::kGroup, "#g");
      for (size_t m = 0; m < e->memberships.size(); ++m) {
        const auto& ms = e->memberships[m];
        Imply(in, ev, *e, EntityKind::kPerson, ms.person, "#m" + std::to_string(m) + "p");
        Imply(in, ev, *e, EntityKind::kGroup, ms.group, "#m" + std::to_string(m) + "g");
        in.memberships.push_back({ev, ++row_, ms.person.type, ms.person.norm, ms.group.type, ms.group.norm});
      }
    }
    return in;
  }

 private:
  void Mentions(BatchInput& in, uint32_t ev, const GenEvent& e, const std::vector<nexus::bench::GenMention>& ms,
                EntityKind kind, const char* tag) {
    for (size_t i = 0; i < ms.size(); ++i) {
      const std::string edge = ms[i].edge_id.empty() ? e.event_id + tag + std::to_string(i) : ms[i].edge_id;
      for (const auto& id : ms[i].ids) {
        if (!seen_[Idx(kind)].insert(id.type + '\x1f' + id.norm).second) continue;  // once per event, as ingest
        in.identifiers[Idx(kind)].push_back({ev, ++row_, edge, id.type, id.norm, ms[i].role, false});
      }
      for (const auto& t : ms[i].traits) in.traits[Idx(kind)].push_back({ev, ++row_, edge, t.first});
    }
  }
  void Imply(BatchInput& in, uint32_t ev, const GenEvent& e, EntityKind kind, const GenIdentifier& id,
             const std::string& tag) {
    if (!seen_[Idx(kind)].insert(id.type + '\x1f' + id.norm).second) return;
    in.identifiers[Idx(kind)].push_back({ev, ++row_, e.event_id + tag, id.type, id.norm, std::nullopt, false});
  }

 public:
  void NextEvent() {
    seen_[0].clear();
    seen_[1].clear();
  }

 private:
  int64_t row_ = 0;
  int64_t ingested_us_ = 1'700'000'000'000'000;
  std::set<std::string> seen_[kKinds];
};

}  // namespace

namespace resolver_inplace {
struct Sample {
  int64_t identifiers = 0;
  double forget_s = 0, load_s = 0;
};
std::vector<Sample> Measure(Engine& engine) {
  auto entities = engine.TakeSnapshot(/*with_identifiers=*/false).entities[0];
  if (entities.empty()) return {};
  std::sort(entities.begin(), entities.end(),
            [](const EntityChange& a, const EntityChange& b) { return a.identifier_count > b.identifier_count; });
  std::map<std::string, EntityChange> chosen;
  for (size_t i :
       {size_t{0}, entities.size() / 1000, entities.size() / 100, entities.size() / 10, entities.size() / 2}) {
    chosen.emplace(entities[i].id, entities[i]);
  }
  std::map<std::string, std::vector<IdentifierChange>> rows;
  engine.ForEachIdentifier(EntityKind::kPerson, [&](const IdentifierChange& c) {
    if (chosen.count(c.entity_id)) rows[c.entity_id].push_back(c);
  });
  std::vector<Sample> out;
  for (const auto& [id, e] : chosen) {
    const auto& ids = rows[id];
    std::vector<std::pair<std::string, std::string>> keys;
    for (const auto& r : ids) keys.emplace_back(r.type, r.value);
    const auto t0 = Clock::now();
    engine.Forget(EntityKind::kPerson, keys);
    const auto t1 = Clock::now();
    engine.LoadEntity(EntityKind::kPerson, id, e.identifier_count, e.birth);
    for (const auto& r : ids) {
      engine.LoadIdentifier(EntityKind::kPerson, r.type, r.value, id, r.source, r.first_us, r.last_us);
    }
    engine.FinishLoad();
    const auto t2 = Clock::now();
    out.push_back({static_cast<int64_t>(ids.size()), std::chrono::duration<double>(t1 - t0).count(),
                   std::chrono::duration<double>(t2 - t1).count()});
  }
  return out;
}
}  // namespace resolver_inplace

int main(int argc, char** argv) {
  auto f = Flags(argc, argv);
  const int64_t identifiers = std::stoll(f.count("identifiers") ? f["identifiers"] : "1100000");
  const size_t batch = std::stoul(f.count("batch") ? f["batch"] : "10000");
  nexus::bench::GenOptions go;
  go.persons = nexus::bench::PersonsForIdentifiers(identifiers);
  go.seed = std::stoull(f.count("seed") ? f["seed"] : "42");
  const auto tg = Clock::now();
  const nexus::bench::World w = nexus::bench::Generate(go);
  std::vector<const GenEvent*> stream;
  std::set<std::string> ids_seen;
  for (size_t i = 0; i < w.events.size(); ++i) {
    if (!w.resent[i] && ids_seen.insert(w.events[i].event_id).second) stream.push_back(&w.events[i]);
  }
  std::cerr << "[engine] world: " << stream.size() << " events, "
            << std::chrono::duration<double>(Clock::now() - tg).count() << " s to generate\n";

  auto owned = std::make_unique<Engine>("bench-salt");
  Engine& engine = *owned;
  const double heap_before_engine = HeapMiB();
  const ProtectionConfig protection = ProtectionConfig::Defaults();
  LogBuilder log;
  double apply_s = 0;
  std::vector<std::pair<int64_t, double>> batches;  // (identifiers before, seconds)
  // What the deltas ask storage to write, summed over the stream (person and group kinds together): the rows a
  // batch's statements touch follow these counts, so they show what a batch size changes in PostgreSQL's work.
  // absorbed_rows is the identifier rows of entities absorbed while already stored (their repoint).
  std::map<std::string, int64_t> writes;
  for (size_t pos = 0; pos < stream.size(); pos += batch) {
    const size_t end = std::min(stream.size(), pos + batch);
    BatchInput in;
    {
      // One event at a time so the per-event dedup matches ingest; then merge into one batch.
      std::vector<const GenEvent*> chunk(stream.begin() + static_cast<long>(pos),
                                         stream.begin() + static_cast<long>(end));
      BatchInput all;
      for (const GenEvent* e : chunk) {
        log.NextEvent();
        BatchInput one = log.Build({e});
        const uint32_t base = static_cast<uint32_t>(all.events.size());
        all.events.push_back(one.events[0]);
        for (size_t k = 0; k < kKinds; ++k) {
          for (auto& r : one.identifiers[k]) all.identifiers[k].push_back((r.event = base, r));
          for (auto& r : one.traits[k]) all.traits[k].push_back((r.event = base, r));
        }
        for (auto& r : one.memberships) all.memberships.push_back((r.event = base, r));
      }
      in = std::move(all);
    }
    const int64_t before = static_cast<int64_t>(engine.identifier_count(EntityKind::kPerson));
    const auto t0 = Clock::now();
    const BatchDelta d = engine.Apply(in, protection);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    apply_s += s;
    batches.emplace_back(before, s);
    for (const KindDelta& k : d.kinds) {
      for (const auto& i : k.identifiers) ++writes[i.is_new ? "identifiers_new" : "identifiers_changed"];
      for (const auto& e : k.entities) ++writes[e.is_new ? "entities_new" : "entities_changed"];
      for (const auto& m : k.merges) {
        ++writes["merges"];
        if (m.absorbed_existing) ++writes["absorbed_existing"], writes["absorbed_rows"] += m.absorbed_count;
      }
      writes["traits"] += static_cast<int64_t>(k.traits.size());
      writes["participants"] += static_cast<int64_t>(k.participants.size());
      writes["finals"] += static_cast<int64_t>(k.finals.size());
    }
    writes["memberships"] += static_cast<int64_t>(d.memberships.size());
  }
  const double rss_after = RssMiB();
  const double engine_heap = HeapMiB() - heap_before_engine;
  const int64_t persons_ids = static_cast<int64_t>(engine.identifier_count(EntityKind::kPerson));
  const int64_t all_ids = persons_ids + static_cast<int64_t>(engine.identifier_count(EntityKind::kGroup));

  // The batch right after each checkpoint, and the median of the 5 batches from there (fewer at the end).
  std::ostringstream cps;
  bool first = true;
  for (int64_t cp : {100'000LL, 1'000'000LL, 10'000'000LL}) {
    auto it = std::find_if(batches.begin(), batches.end(), [&](const auto& b) { return b.first >= cp; });
    if (it == batches.end()) continue;
    std::vector<double> v;
    for (auto j = it; j != batches.end() && v.size() < 5; ++j) v.push_back(j->second);
    std::sort(v.begin(), v.end());
    cps << (first ? "" : ", ") << "{\"identifiers_before\": " << it->first << ", \"batches\": " << v.size()
        << ", \"median_s\": " << v[v.size() / 2] << ", \"min_s\": " << v.front() << ", \"max_s\": " << v.back() << "}";
    first = false;
  }
  // Taking a re-resolved component in place (issue 15: after an unlink or erasure the resident engine forgets the
  // component and loads its rows instead of reloading the graph): 5 person entities, the largest and 4 spread over
  // the size order, each forgotten and loaded back (entities and identifiers; the storage layer also loads trait
  // winners, sightings and memberships, which follow the component's size). Forget walks the clusters and the
  // explicit edge_ids once: that part follows the graph.
  // Streaming the person identifiers as a rebuild's COPY does (ForEachIdentifier), formatting nothing: median of 3.
  std::vector<double> for_each;
  size_t for_each_bytes = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    engine.ForEachIdentifier(EntityKind::kPerson,
                             [&](const IdentifierChange& c) { for_each_bytes += c.entity_id.size() + c.value.size(); });
    for_each.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(for_each.begin(), for_each.end());
  std::vector<resolver_inplace::Sample> inplace = resolver_inplace::Measure(engine);
  std::ostringstream ip;
  for (size_t i = 0; i < inplace.size(); ++i) {
    ip << (i ? ", " : "") << "{\"identifiers\": " << inplace[i].identifiers << ", \"forget_s\": " << inplace[i].forget_s
       << ", \"load_s\": " << inplace[i].load_s << "}";
  }
  // The resolved state loaded into a fresh engine, as a graph load feeds it. The snapshot has no trait row's
  // ingest time, source or null flag, nor a role's ingest time: those load as 0, "" and false (same memory).
  const size_t memory_bytes = engine.MemoryBytes();
  double reload_s = 0, reload_heap = 0;
  {
    Engine::Snapshot snap = engine.TakeSnapshot(/*with_identifiers=*/true);
    owned.reset();
    const double heap0 = HeapMiB();
    Engine fresh("bench-salt");
    const auto t0 = Clock::now();
    for (size_t k = 0; k < kKinds; ++k) {
      const auto kind = static_cast<EntityKind>(k);
      fresh.ReserveForLoad(kind, snap.entities[k].size(), snap.identifiers[k].size());
      for (const auto& e : snap.entities[k]) fresh.LoadEntity(kind, e.id, e.identifier_count, e.birth);
      for (const auto& r : snap.identifiers[k]) {
        fresh.LoadIdentifier(kind, r.type, r.value, r.entity_id, r.source, r.first_us, r.last_us);
      }
      for (const auto& t : snap.traits[k]) {
        fresh.LoadTraitWinner(kind, t.entity_id, t.name, t.row_occurred_us, 0, t.row_id, "", false);
      }
    }
    for (const auto& m : snap.memberships) {
      fresh.LoadMembership(m.person_id, m.group_id, m.established_us, m.role_occurred_us, 0, m.role_row_id);
    }
    fresh.FinishLoad();
    reload_s = std::chrono::duration<double>(Clock::now() - t0).count();
    reload_heap = HeapMiB() - heap0;
  }
  std::ostringstream o;
  o << "{\n  \"identifiers_requested\": " << identifiers << ",\n  \"batch_events\": " << batch
    << ",\n  \"seed\": " << go.seed << ",\n  \"events\": " << stream.size()
    << ",\n  \"person_identifiers\": " << persons_ids << ",\n  \"all_identifiers\": " << all_ids
    << ",\n  \"apply_seconds\": " << apply_s
    << ",\n  \"events_per_s\": " << static_cast<double>(stream.size()) / apply_s
    << ",\n  \"for_each_identifier_s\": " << for_each[1] << ",\n  \"for_each_identifier_check\": " << for_each_bytes
    << ",\n  \"delta_rows\": {";
  for (auto it = writes.begin(); it != writes.end(); ++it) {
    o << (it == writes.begin() ? "" : ", ") << "\"" << it->first << "\": " << it->second;
  }
  o << "},\n  \"checkpoints\": [" << cps.str() << "],\n  \"engine_memory_bytes\": " << memory_bytes
    << ",\n  \"engine_bytes_per_identifier\": " << static_cast<double>(memory_bytes) / static_cast<double>(all_ids)
    << ",\n  \"process_rss_mib\": " << rss_after << ",\n  \"engine_heap_mib\": " << engine_heap
    << ",\n  \"engine_heap_bytes_per_identifier\": " << engine_heap * 1048576.0 / static_cast<double>(all_ids)
    << ",\n  \"in_place_update\": [" << ip.str() << "],\n  \"reload_seconds\": " << reload_s
    << ",\n  \"reload_heap_mib\": " << reload_heap
    << ",\n  \"reload_heap_bytes_per_identifier\": " << reload_heap * 1048576.0 / static_cast<double>(all_ids)
    << "\n}\n";
  std::cout << o.str();
  if (f.count("out")) std::ofstream(f["out"]) << o.str();
  return 0;
}
