#pragma once
// Ingest request validation and conversion: pure (no I/O), shared by gRPC and HTTP, fuzzed by fuzz/.

#include <cstdint>
#include <string>
#include <vector>

#include "nexus/v1/ingest.pb.h"
#include "resolver/protection.h"
#include "server/config.h"
#include "storage/model.h"

namespace nexus::server {

/// Validates a request and turns it into storage records: normalizes identifiers, derives missing
/// edge_ids, marks junk/blocklisted identifiers, adds the identifiers a membership implies.
/// Returns the list of problems, each as "<path>: <what>", empty when the request is valid.
std::vector<std::string> ConvertIngestRequest(const v1::IngestEventsRequest& request, const IngestLimits& limits,
                                              const resolver::ProtectionConfig& protection, int64_t now_us,
                                              std::vector<storage::EventRecord>* out);

}  // namespace nexus::server
