#!/usr/bin/env bash
# README command 2: install packages, build, and run every test (unit + database tests; the database tests
# start their own throwaway PostgreSQL). --asan: the same under AddressSanitizer + UBSan in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${1:-}" = "--asan" ]; then
  export BUILD_DIR=build-asan SANITIZE=1 BUILD_TYPE=Debug NEXUS_BUILD_BENCH=OFF
  # Leak checking is off: gRPC and protobuf keep process-lifetime singletons that LSan reports.
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
else
  export BUILD_DIR=${BUILD_DIR:-build}
fi
scripts/build.sh
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 2400
