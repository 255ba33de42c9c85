#!/usr/bin/env bash
# The Segment-compatible API against the official SDKs (issue 18): installs @segment/analytics-node and
# @rudderstack/rudder-sdk-node at the versions pinned in tests/sdk/package-lock.json (npm ci: the only download),
# starts nexusd (embedded PostgreSQL in a temp dir, or --database-url=$NEXUS_TEST_DATABASE_URL on an EMPTY
# database, open mode on loopback), runs tests/sdk/sdk_test.mjs against it, stops everything and removes the
# temp dir. Bounded: npm ci, nexusd start and the test each have a timeout (about a minute in all when warm).
# Env: NEXUSD (default build/server/nexusd), NEXUS_TEST_DATABASE_URL, SDK_TEST_TIMEOUT (seconds, default 120).
# Needs: a built nexusd, node >= 20 and npm (scripts/install-deps.sh installs Debian's when node is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
NEXUSD=${NEXUSD:-build/server/nexusd}
TIMEOUT=${SDK_TEST_TIMEOUT:-120}
say() { echo "sdk-test: $*"; }
die() { echo "sdk-test: FAIL: $*" >&2; exit 1; }

for tool in node npm; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh installs nodejs and npm)"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: @segment/analytics-node needs node >= 20"
[ -x "$NEXUSD" ] || die "$NEXUSD is not built (scripts/build.sh nexusd, or set NEXUSD=...)"

TMP=""
NEXUSD_PID=""
cleanup() {
  local rc=$?
  if [ -n "$NEXUSD_PID" ]; then
    kill -TERM "$NEXUSD_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$NEXUSD_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$NEXUSD_PID" 2>/dev/null || true
  fi
  if [ -n "$TMP" ]; then
    local pidfile="$TMP/data/pgdata/postmaster.pid"
    if [ -f "$pidfile" ]; then kill -QUIT "$(head -n1 "$pidfile")" 2>/dev/null || true; sleep 1; fi
    if [ $rc -ne 0 ] && [ -f "$TMP/nexusd.log" ]; then
      echo "---- nexusd.log (last 40 lines) ----" >&2
      tail -n 40 "$TMP/nexusd.log" >&2
    fi
    rm -rf "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "npm ci in tests/sdk (versions pinned by package-lock.json)"
# --ignore-scripts: no install scripts run (the only one is an optional native msgpack helper of RudderStack's
# Redis queue, which the test does not use).
(cd tests/sdk && timeout "$TIMEOUT" npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

TMP=$(mktemp -d /tmp/nexus-sdk-test.XXXXXX)
chmod 755 "$TMP"  # as root, the embedded PostgreSQL (user postgres) must reach $TMP/data
mkdir -p "$TMP/data"
db_args=(--data-dir="$TMP/data")
if [ -n "${NEXUS_TEST_DATABASE_URL:-}" ]; then db_args=(--database-url="$NEXUS_TEST_DATABASE_URL"); fi
env -u NEXUS_DATABASE_URL "$NEXUSD" --grpc-listen=127.0.0.1:0 --http-listen=127.0.0.1:0 \
  --resolver-poll-interval=100ms "${db_args[@]}" >"$TMP/nexusd.log" 2>&1 &
NEXUSD_PID=$!
deadline=$((SECONDS + TIMEOUT))
HTTP_PORT=""
while [ -z "$HTTP_PORT" ]; do
  kill -0 "$NEXUSD_PID" 2>/dev/null || die "nexusd exited during start-up"
  [ $SECONDS -lt $deadline ] || die "nexusd not serving within ${TIMEOUT}s"
  HTTP_PORT=$(grep -o '"msg":"nexusd serving".*"http":"[^"]*"' "$TMP/nexusd.log" 2>/dev/null |
              sed -E 's/.*"http":"[^"]*:([0-9]+)"/\1/' | head -n1) || true
  [ -n "$HTTP_PORT" ] || sleep 0.3
done
say "nexusd serving HTTP on 127.0.0.1:$HTTP_PORT"

SDK_TEST_NEXUS_URL="http://127.0.0.1:$HTTP_PORT" timeout "$TIMEOUT" node tests/sdk/sdk_test.mjs
# No personal data in the log: the test's identifier values must not appear in clear.
if grep -E 'seg\.user@example\.com|rud@example\.com|seg-u1|rud-u1' "$TMP/nexusd.log" >/dev/null; then
  die "nexusd.log contains identifier values in clear"
fi
say "passed"
