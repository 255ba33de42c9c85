#!/usr/bin/env bash
# README command 2: install packages, build, and run every test (unit + database tests, then the SDK test; the
# database tests start their own throwaway PostgreSQL). --asan: the same under AddressSanitizer + UBSan in build-asan/.
# --tsan: ThreadSanitizer in build-tsan/ (unit tests + the threaded database tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
if [ "${1:-}" = "--asan" ] || [ "${1:-}" = "--tsan" ]; then
  # The engine's random-stream property tests (tests/unit/engine_test.cc) run 2,000 streams by default, 8 s in the
  # plain build; under the sanitizers the larger of them took 247 s (ASan) and 395 s (TSan) at 2,000 on a shared
  # 2-core machine (2026-12-06). These runs keep 300 (27 s, 56 s); the plain run covers the rest.
  export NEXUS_ENGINE_STREAMS=${NEXUS_ENGINE_STREAMS:-300}
fi
if [ "${1:-}" = "--asan" ]; then
  export BUILD_DIR=build-asan SANITIZE=1 BUILD_TYPE=Debug NEXUS_BUILD_BENCH=OFF
  # Leak checking is off: gRPC and protobuf keep process-lifetime singletons that LSan reports.
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
elif [ "${1:-}" = "--tsan" ]; then
  # ThreadSanitizer in build-tsan/ (cannot share a build with ASan). gRPC, protobuf, libpq and Boost come from
  # Debian uninstrumented: scripts/tsan.supp silences reports whose frames are all inside them (documented
  # there). The run covers the unit tests and the database tests that exercise threads (resolver worker,
  # probe, metrics, shutdown, streams); the whole pg suite under TSan does not fit CI's 90 minutes.
  export BUILD_DIR=build-tsan TSAN=1 BUILD_TYPE=RelWithDebInfo NEXUS_BUILD_BENCH=OFF
  export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp halt_on_error=1 second_deadlock_stack=1 report_signal_unsafe=0"
  # Left out: the tests that fill google.protobuf.Struct/Value maps (the Segment converter, nested trait values, nexusctl JSON rows,
  # the metrics test's Segment request). With Debian's libprotobuf 3.21 and GCC's TSan, inserting into a
  # Map<string, Value> that the uninstrumented library created crashes (SEGV in map.h TableEntryIsNonEmptyList)
  # even in a three-line program; the same tests run in the plain and ASan builds.
  scripts/build.sh nexus_unit_tests nexus_pg_tests nexusd
  "$BUILD_DIR/tests/nexus_unit_tests" --gtest_brief=1 \
    --gtest_filter="-Segment*:IngestConvert.NestedAndInvalidTraitValuesAreRejectedByPath:NexusctlMapping.JsonRow*"
  exec "$BUILD_DIR/tests/nexus_pg_tests" --gtest_brief=1 \
    --gtest_filter="${NEXUS_TSAN_FILTER:-Edges*:Frozen*:ResolverStuck*:Quarantine*:Metrics*:Resolver*:Shutdown*:Ingest*:-MetricsPgTest.ScrapePassesPromtoolGoldenListAndCountersMove}"
else
  export BUILD_DIR=${BUILD_DIR:-build}
fi
scripts/build.sh
if ! (cd "$BUILD_DIR" && ctest --output-on-failure --timeout 2400); then
  # CI keeps only the head and tail of a long log: repeat each failure (without the server's JSON log lines)
  # at the very end, so the failing test's name and assertion are never cut out.
  log="$BUILD_DIR/Testing/Temporary/LastTest.log"
  echo "test.sh: FAILED; the failures again (full output: $log):"
  grep -v '^{"time"' "$log" | grep -E -B12 '^\[  FAILED  \]' | tail -120 || true
  exit 1
fi
if [ -z "${1:-}" ]; then
  # The real Segment and RudderStack SDKs against this build (npm ci: the pinned packages). Their current
  # versions need Node >= 20: Debian 12's own nodejs is 18, so on a machine with only that the step says so
  # and is skipped (CI machines have Node 20 and run it).
  if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
    NEXUSD="$BUILD_DIR/server/nexusd" scripts/sdk-test.sh
  else
    echo "test.sh: SKIPPED the SDK test (scripts/sdk-test.sh): it needs Node >= 20, found $(node --version 2>/dev/null || echo none)"
  fi
fi
