#!/usr/bin/env bash
# Installs the Debian 12 packages nexusd needs to build, test and run. Idempotent; needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libpqxx-dev libpq-dev libboost-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev
  libssl-dev openssl
  libphonenumber-dev libicu-dev
  zlib1g-dev
  postgresql-15 postgresql-client-15 pgbouncer
  prometheus
  python3 python3-yaml
  python3-grpcio python3-protobuf  # docs/python's example and its test (nexusctl_pgtest)
  clang libclang-rt-14-dev
  chromium
)
# chromium: the support page's browser test (tests/browser/ui_browser.py, headless, DevTools protocol over a pipe).
# Node.js + npm for scripts/sdk-test.sh (the Segment/RudderStack SDK test), only when no node is installed: a
# machine that has its own Node (the CI image has Node 20 in /usr/bin) keeps it. The Segment SDK needs node >= 20;
# Debian 12's nodejs is 18, which sdk-test.sh reports.
if ! command -v node >/dev/null 2>&1; then PACKAGES+=(nodejs npm); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The postgresql package would start a system cluster on 5432; nexusd runs its own, so do not start it.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
