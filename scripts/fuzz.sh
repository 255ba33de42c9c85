#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang in build-fuzz/ (ASan + UBSan + libFuzzer) and runs each for
# FUZZ_SECONDS (default 25) from the committed seed corpus fuzz/corpus/<target>/. New inputs go to a scratch
# copy, so the repository corpus only changes when someone adds a file on purpose.
# Env: FUZZ_SECONDS, FUZZ_SEED (libFuzzer -seed; each run prints "INFO: Seed: N"), FUZZ_TARGETS (default all),
# JOBS. A crash leaves the input in build-fuzz/artifacts/ and fails the script; rerun one with
#   build-fuzz/fuzz/fuzz_<target> build-fuzz/artifacts/<crash-file>
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-25}
TARGETS=${FUZZ_TARGETS:-json ingest_convert normalize page_token segment}
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEXUS_FUZZ=ON \
  -DNEXUS_BUILD_TESTS=OFF -DNEXUS_BUILD_BENCH=OFF >/dev/null
ninja -C "$BUILD_DIR" -j"${JOBS:-$(nproc)}" $(for t in $TARGETS; do echo "fuzz_$t"; done)
mkdir -p "$BUILD_DIR/artifacts"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in $TARGETS; do
  work="$BUILD_DIR/corpus/$t"
  mkdir -p "$work"
  cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  seed_arg=()
  if [ -n "${FUZZ_SEED:-}" ]; then seed_arg=(-seed="$FUZZ_SEED"); fi
  echo "fuzz: $t for ${SECONDS_EACH}s"
  "$BUILD_DIR/fuzz/fuzz_$t" "${seed_arg[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$BUILD_DIR/artifacts/$t-" "$work" 2>&1 |
    grep -E "INFO: Seed|stat::number_of_executed_units|ERROR|SUMMARY|Done|crash|deadly" || true
  if ls "$BUILD_DIR/artifacts/$t-"* >/dev/null 2>&1; then
    echo "fuzz: $t FAILED; inputs: $(ls "$BUILD_DIR/artifacts/$t-"*)"
    exit 1
  fi
done
echo "fuzz: all targets ran ${SECONDS_EACH}s without a finding"
