#!/usr/bin/env bash
# Configures and builds nexusd. Env: BUILD_DIR (default ./build), BUILD_TYPE (default RelWithDebInfo),
# SANITIZE=1 for AddressSanitizer + UndefinedBehaviorSanitizer, TSAN=1 for ThreadSanitizer, NEXUS_BUILD_TESTS/NEXUS_BUILD_BENCH (ON).
# Arguments: ninja targets (default: everything).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
SANITIZE=${SANITIZE:-0}
args=(-G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"
      -DNEXUS_BUILD_TESTS="${NEXUS_BUILD_TESTS:-ON}" -DNEXUS_BUILD_BENCH="${NEXUS_BUILD_BENCH:-ON}")
if [ "$SANITIZE" = "1" ]; then args+=(-DNEXUS_SANITIZE=ON); fi
if [ "${TSAN:-0}" = "1" ]; then args+=(-DNEXUS_TSAN=ON); fi
cmake -S . -B "$BUILD_DIR" "${args[@]}" >/dev/null
# Two cores, ~1.5 GB per gRPC-heavy compile: -j2 is the right width here.
ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" "$@"
echo "build: $BUILD_DIR/server/nexusd"
