#!/usr/bin/env bash
# README command 1: install packages, build, and run nexusd. Without --database-url / NEXUS_DATABASE_URL it
# runs on an embedded PostgreSQL under ./nexus-data. Extra arguments go to nexusd (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh nexusd
exec "${BUILD_DIR:-build}/server/nexusd" "$@"
