#!/usr/bin/env bash
# README command 1: install packages, build, and run nexusd. Without --database-url / NEXUS_DATABASE_URL it
# runs on an embedded PostgreSQL under ./nexus-data (relative to the directory you run this from). Extra
# arguments go to nexusd (see --help); relative paths in them are relative to that directory too.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_DIR=${BUILD_DIR:-build}
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
"$ROOT/scripts/install-deps.sh"
BUILD_DIR="$BUILD_DIR" "$ROOT/scripts/build.sh" nexusd

# As root, the embedded PostgreSQL runs as the postgres user, and nexusd does not change modes outside its
# data dir. When no data dir or database was chosen and postgres cannot reach ./nexus-data (a checkout
# under /root, say), use /var/lib/nexusd instead, and say so.
chosen=0
for a in "$@"; do case "$a" in --data-dir*|--database-url*|--embedded-postgres*) chosen=1 ;; esac; done
if [ "$(id -u)" = 0 ] && [ $chosen = 0 ] && [ -z "${NEXUS_DATA_DIR:-}${NEXUS_DATABASE_URL:-}" ] &&
   ! runuser -u postgres -- test -x "$PWD" 2>/dev/null; then
  echo "run.sh: the postgres user cannot reach $PWD; using --data-dir=/var/lib/nexusd" >&2
  mkdir -p /var/lib/nexusd
  set -- --data-dir=/var/lib/nexusd "$@"
fi
exec "$BUILD_DIR/server/nexusd" "$@"
