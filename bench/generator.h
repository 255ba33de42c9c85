#pragma once
// Seeded, deterministic synthetic world with known truth (issue 7).
//
// Persons have several identifiers (emails with case/whitespace variants, phones in several formats,
// at most one user_id, anonymous ids); groups are companies keyed by email domain (+ a shopify_id).
// Each person's identifiers are connected by a random spanning tree of edges; one tree edge per person
// is scheduled late in the stream, so components merge during ingest. Some tree edges are split over two
// events sharing an explicit edge_id. occurred_at is out of order, ~2% of events are re-sent later.
// Truth maps every normalized identifier to its true person / group; values stay within the default
// merge-protection caps and avoid junk values, so the truth is exactly reachable.
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace nexus::bench {

struct GenIdentifier {
  std::string type;
  std::string raw;   ///< as sent (variant)
  std::string norm;  ///< what the server must store
};

struct GenMention {
  std::string edge_id;  ///< empty: the server derives <event_id>#p<i>
  std::vector<GenIdentifier> ids;
  std::vector<std::pair<std::string, std::string>> traits;
  std::string role;
};

struct GenMembership {
  GenIdentifier person, group;
  std::string role;
};

struct GenEvent {
  std::string event_id;
  int64_t occurred_us = 0;
  std::string name, description, type, source;
  std::optional<double> value;
  std::string unit;
  std::vector<GenMention> persons, groups;
  std::vector<GenMembership> memberships;
};

struct GenOptions {
  int64_t persons = 1000;
  uint64_t seed = 42;
  double resend_rate = 0.02;
  int64_t fresh_requests = 100;  ///< freshness phase: one probe (new person) per request
  int64_t fresh_batch = 20;      ///< events per freshness request (probe + fillers)
};

/// Key of an identifier in truth maps.
inline std::string IdKey(const std::string& type, const std::string& norm) { return type + '\x1f' + norm; }

struct World {
  std::vector<GenEvent> events;          ///< main stream in ingest order (includes re-sent copies)
  std::vector<char> resent;              ///< events[i] is a re-sent copy
  std::vector<std::vector<GenEvent>> fresh_requests;  ///< freshness phase requests; [0] of each is the probe
  std::vector<GenIdentifier> fresh_probe_ids;         ///< per fresh request: identifier to look up
  std::unordered_map<std::string, int64_t> person_truth;  ///< IdKey -> true person index
  std::unordered_map<std::string, int64_t> group_truth;   ///< IdKey -> true group (company) index
  std::vector<std::vector<GenIdentifier>> person_ids;     ///< canonical identifiers per true person
  int64_t persons = 0;  ///< including fresh persons
  int64_t groups_used = 0;
};

World Generate(const GenOptions& opt);

/// Persons needed for about `identifiers` distinct person identifiers.
int64_t PersonsForIdentifiers(int64_t identifiers);

}  // namespace nexus::bench
