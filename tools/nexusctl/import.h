#pragma once
// `nexusctl import`: streams a CSV or JSONL file to IngestEventStream in batches, with a checkpoint after every
// acknowledged batch so an interrupted import resumes where the server's last acknowledgement left off.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "nexus/v1/ingest.grpc.pb.h"
#include "tools/nexusctl/mapping.h"

namespace nexus::ctl {

struct ImportOptions {
  std::string path;  ///< "-": standard input (no checkpoint, no resume)
  Mapping mapping;
  int batch_size = 500;
  int64_t max_errors = 1000;       ///< stop once more rows than this were rejected (-1: never)
  std::string checkpoint_path;     ///< empty: <path>.nexusctl-checkpoint
  bool restart = false;            ///< ignore (and replace) an existing checkpoint
  int stop_after_batches = 0;      ///< test hook: behave as if interrupted after this many acknowledged batches
  double progress_interval_s = 5;  ///< plain progress lines when stderr is not a terminal (0: none)
  bool json = false;               ///< the summary as JSON on stdout
  bool quiet = false;              ///< no progress output
};

/// Exit codes shared with main (documented in `nexusctl --help`).
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitRejected = 3,
  kExitTooManyErrors = 4,
  kExitNotFound = 5,
  kExitUnavailable = 6,
  kExitDenied = 7,
  kExitInterrupted = 130,
};

/// The exit code for a failed RPC.
int ExitCodeFor(const grpc::Status& status);
/// "UNAUTHENTICATED", "NOT_FOUND", ...
std::string StatusCodeName(grpc::StatusCode code);

using ContextFactory = std::function<std::unique_ptr<grpc::ClientContext>(bool unary)>;

/// Runs the import; prints the progress on stderr and the summary on stdout. Returns the exit code.
int RunImport(const ImportOptions& options, v1::IngestService::StubInterface& stub, const ContextFactory& new_context);

/// Installs the SIGINT/SIGTERM/SIGHUP handler the import polls (the first signal asks for a clean stop).
void InstallInterruptHandler();

}  // namespace nexus::ctl
