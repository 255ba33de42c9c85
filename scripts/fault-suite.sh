#!/usr/bin/env bash
# The fault suite alone (tests/pg/fault_pgtest.cc + the SIGTERM tests): kill -9 at random points of ingest
# and resolution, PostgreSQL stopped under load, a second process on the same data dir or port.
# The README's test command already runs it in its bounded form (4 kill -9 rounds); --long runs 25 rounds
# and repeats the suite 3 times with fresh seeds. NEXUS_SEED=<n> replays one seed. Needs a build (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
repeat=1
if [ "${1:-}" = "--long" ]; then
  export NEXUS_FAULT_RUNS=${NEXUS_FAULT_RUNS:-25}
  repeat=3
fi
[ -x "$BUILD_DIR/tests/nexus_pg_tests" ] || scripts/build.sh nexus_pg_tests
"$BUILD_DIR/tests/nexus_pg_tests" --gtest_filter='FaultPgTest.*:ShutdownPgTest.*' --gtest_repeat=$repeat
