#!/usr/bin/env bash
# Performs the Dockerfile's build and run steps on this machine (no Docker engine runs here), as faithfully
# as a host allows, and fails if the image would not come up healthy or would not stop cleanly:
#
#   Dockerfile                                   here
#   build: scripts/install-deps.sh               same script
#   build: BUILD_TYPE=Release scripts/build.sh   same script into ./build-image (or reuse, see below)
#          strip + `nexusd --help`               same
#   runtime: apt-get install <runtime libs>      every library `ldd nexusd` resolves must come from a package
#                                                in the Dockerfile's runtime list (or the base image's libc)
#   useradd nexus; USER nexus                    same user (created if missing); nexusd runs as it via
#                                                setpriv (exec, like USER: no wrapper process that would
#                                                swallow the signal or change the exit status)
#   COPY nexusd /usr/local/bin, WORKDIR/VOLUME   a staging root under /tmp: <stage>/usr/local/bin/nexusd,
#                                                data dir <stage>/var/lib/nexusd owned by nexus
#   ENTRYPOINT flags                             same flags, but 127.0.0.1 and free ports instead of 0.0.0.0
#   HEALTHCHECK curl -fsS /readyz                same command, retried until healthy (bounded)
#   docker stop (SIGTERM)                        SIGTERM; expects exit 0 and no postgres left behind
#
# Env:
#   NEXUSD_BUILD_DIR=<dir>  reuse <dir>/server/nexusd instead of building ./build-image (CI passes
#                           NEXUSD_BUILD_DIR=build to save a second full build on two cores; the build
#                           script and flags are the same except BUILD_TYPE: ./build is RelWithDebInfo).
#   CHECK_TIMEOUT=<secs>    health-check timeout (default 120).
# Needs root (creates the user, drops privileges), curl and setpriv (util-linux). Idempotent; cleans up on
# any exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TIMEOUT=${CHECK_TIMEOUT:-120}
say() { echo "container-check: $*"; }
die() { echo "container-check: FAIL: $*" >&2; exit 1; }
# Alive = exists and is not a zombie (an exited postgres may wait for a reaper that never comes).
alive() { local st; st=$(sed -E 's/.*\) ([A-Z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1; [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates the 'nexus' user and drops to it, as the image does)"
command -v setpriv >/dev/null || die "setpriv (util-linux) not found"
command -v curl >/dev/null || die "curl not found"

STAGE=""
NEXUSD_PID=""
cleanup() {
  local rc=$?
  if [ -n "$NEXUSD_PID" ] && kill -0 "$NEXUSD_PID" 2>/dev/null; then
    kill -KILL "$NEXUSD_PID" 2>/dev/null || true
    wait "$NEXUSD_PID" 2>/dev/null || true
  fi
  if [ -n "$STAGE" ]; then
    local pidfile="$STAGE/var/lib/nexusd/pgdata/postmaster.pid"
    if [ -f "$pidfile" ]; then
      local pm
      pm=$(head -n1 "$pidfile")
      kill -QUIT "$pm" 2>/dev/null || true
      sleep 1
      kill -KILL "$pm" 2>/dev/null || true
    fi
    if [ $rc -ne 0 ] && [ -f "$STAGE/nexusd.log" ]; then
      echo "---- nexusd log (last 40 lines) ----" >&2
      tail -n 40 "$STAGE/nexusd.log" >&2 || true
    fi
    rm -rf "$STAGE"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build stage ----------------------------------------------------------------------------------------
say "build stage: scripts/install-deps.sh"
scripts/install-deps.sh
if [ -n "${NEXUSD_BUILD_DIR:-}" ]; then
  BIN="$NEXUSD_BUILD_DIR/server/nexusd"
  CTL="$NEXUSD_BUILD_DIR/tools/nexusctl/nexusctl"
  [ -x "$BIN" ] || die "NEXUSD_BUILD_DIR=$NEXUSD_BUILD_DIR but $BIN is not built"
  [ -x "$CTL" ] || die "NEXUSD_BUILD_DIR=$NEXUSD_BUILD_DIR but $CTL is not built"
  say "build stage: reusing $BIN (NEXUSD_BUILD_DIR set; the image builds Release into its own dir)"
else
  say "build stage: BUILD_TYPE=Release scripts/build.sh nexusd nexusctl into ./build-image"
  BUILD_DIR=build-image BUILD_TYPE=Release NEXUS_BUILD_TESTS=OFF NEXUS_BUILD_BENCH=OFF scripts/build.sh nexusd nexusctl
  BIN=build-image/server/nexusd
  CTL=build-image/tools/nexusctl/nexusctl
fi

STAGE=$(mktemp -d /tmp/nexus-container-check.XXXXXX)
chmod 755 "$STAGE"
mkdir -p "$STAGE/usr/local/bin" "$STAGE/var/lib/nexusd"
cp "$BIN" "$STAGE/usr/local/bin/nexusd"
cp "$CTL" "$STAGE/usr/local/bin/nexusctl"
strip --strip-unneeded "$STAGE/usr/local/bin/nexusd" "$STAGE/usr/local/bin/nexusctl"
"$STAGE/usr/local/bin/nexusd" --help >/dev/null || die "nexusd --help failed"
"$STAGE/usr/local/bin/nexusctl" --help >/dev/null || die "nexusctl --help failed"

# ---- runtime stage: are the Dockerfile's runtime packages enough? ---------------------------------------
# The package list is read from the Dockerfile's runtime `apt-get install` (the lines after
# "--no-install-recommends" up to the next "&&"), so this check follows the Dockerfile when it changes.
RUNTIME_PKGS=$(awk '/^FROM .* AS runtime/{rt=1} rt && /--no-install-recommends/{grab=1; next}
                    grab && /^ *&&/{grab=0} grab {gsub(/\\/, ""); print}' Dockerfile | tr -s ' \n' '\n' | sed '/^$/d')
[ -n "$RUNTIME_PKGS" ] || die "could not read the runtime package list from the Dockerfile"
BASE_PKGS="libc6 libgcc-s1 libstdc++6 libzstd1 liblzma5 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0
           libcom-err2 libkeyutils1 libldap-2.5-0 libsasl2-2 libgnutls30 libidn2-0 libunistring2 libtasn1-6
           libnettle8 libhogweed6 libgmp10 libp11-kit0 libffi8 libselinux1 libpcre2-8-0 libsystemd0 libcap2
           libgcrypt20 libgpg-error0 liblz4-1 libcrypt1"  # debian:12-slim content or pulled in by the above
ldd_out=$(ldd "$STAGE/usr/local/bin/nexusd" "$STAGE/usr/local/bin/nexusctl")
if grep -q "not found" <<<"$ldd_out"; then die "unresolved libraries: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t\n' ' ')"; fi
missing=""
while read -r lib; do
  [ -n "$lib" ] || continue
  pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -n1 | cut -d: -f1) || true
  [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -n1 | cut -d: -f1) || true
  if ! grep -qx "$pkg" <<<"$RUNTIME_PKGS" && ! grep -qw -- "$pkg" <<<"$BASE_PKGS"; then
    missing+=" $lib($pkg)"
  fi
done < <(awk '/=> \//{print $3}' <<<"$ldd_out")
[ -z "$missing" ] || die "libraries not covered by the Dockerfile's runtime packages:$missing"
say "runtime stage: all $(awk '/=> \//' <<<"$ldd_out" | wc -l) shared libraries come from the Dockerfile's packages or the base image"
for bin in initdb pg_ctl postgres; do
  [ -x "/usr/lib/postgresql/15/bin/$bin" ] || die "postgresql-15 ($bin) is missing"
done

# ---- user, as the Dockerfile's groupadd/useradd (fixed uid/gid 10001: the manifests' runAsUser) ------------
NEXUS_UID=$(grep -oE 'useradd [^&]*--uid [0-9]+' Dockerfile | grep -oE '[0-9]+$')
[ "$NEXUS_UID" = 10001 ] || die "the Dockerfile's useradd must set --uid 10001 (found '${NEXUS_UID}')"
if ! id nexus >/dev/null 2>&1; then
  getent group nexus >/dev/null || groupadd --system --gid 10001 nexus
  useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/nexusd --shell /usr/sbin/nologin nexus
  say "created system user nexus (uid 10001)"
fi
chown nexus:nexus "$STAGE/var/lib/nexusd"

# ---- run: ENTRYPOINT as USER nexus, with the image's ENV (loopback instead of 0.0.0.0, staged data dir) ---
# The ENTRYPOINT must pass no flags: flags win over environment variables, so a ConfigMap could not change them.
grep -qE '^ENTRYPOINT \["/usr/local/bin/nexusd"\]$' Dockerfile ||
  die "the Dockerfile's ENTRYPOINT must be [\"/usr/local/bin/nexusd\"] alone (configuration by NEXUS_* ENV)"
cd "$STAGE/var/lib/nexusd"  # WORKDIR
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/nexusd \
    NEXUS_LOG_LEVEL=info NEXUS_GRPC_LISTEN=127.0.0.1:0 NEXUS_HTTP_LISTEN=127.0.0.1:0 \
    NEXUS_DATA_DIR="$STAGE/var/lib/nexusd" \
  setpriv --reuid=nexus --regid=nexus --init-groups --inh-caps=-all \
  "$STAGE/usr/local/bin/nexusd" >"$STAGE/nexusd.log" 2>&1 &
NEXUSD_PID=$!
cd "$ROOT"

HTTP_PORT=""
deadline=$((SECONDS + TIMEOUT))
while [ -z "$HTTP_PORT" ]; do
  kill -0 "$NEXUSD_PID" 2>/dev/null || die "nexusd exited during start-up"
  [ $SECONDS -lt $deadline ] || die "no 'nexusd serving' log line within ${TIMEOUT}s"
  HTTP_PORT=$(grep -o '"msg":"nexusd serving".*"http":"[^"]*"' "$STAGE/nexusd.log" 2>/dev/null |
              sed -E 's/.*"http":"[^"]*:([0-9]+)"/\1/' | head -n1) || true
  [ -n "$HTTP_PORT" ] || sleep 0.5
done
uid=$(awk '/^Uid:/{print $2}' "/proc/$NEXUSD_PID/status")
[ "$uid" = "$(id -u nexus)" ] || die "nexusd runs as uid $uid, not nexus"
say "nexusd (pid $NEXUSD_PID, user nexus) serving HTTP on 127.0.0.1:$HTTP_PORT"

# HEALTHCHECK: the Dockerfile's command, retried like --interval/--retries within the start period.
until curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; do
  kill -0 "$NEXUSD_PID" 2>/dev/null || die "nexusd exited before it was healthy"
  [ $SECONDS -lt $deadline ] || die "HEALTHCHECK (curl -fsS /readyz) not healthy within ${TIMEOUT}s"
  sleep 1
done
say "HEALTHCHECK healthy: $(curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz")"
curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null || die "/healthz failed"
# Read the whole body before matching: "curl | grep -q" under pipefail fails when grep
# exits at the first match while curl is still writing a body larger than the pipe buffer.
metrics=$(curl -fsS "http://127.0.0.1:$HTTP_PORT/metrics") || die "/metrics failed"
grep -q '^nexus_build_info' <<<"$metrics" || die "/metrics has no nexus_build_info"

PGDATA="$STAGE/var/lib/nexusd/pgdata"
[ -f "$PGDATA/postmaster.pid" ] || die "embedded PostgreSQL has no postmaster.pid"
PM=$(head -n1 "$PGDATA/postmaster.pid")
pm_uid=$(awk '/^Uid:/{print $2}' "/proc/$PM/status")
[ "$pm_uid" = "$(id -u nexus)" ] || die "postgres runs as uid $pm_uid, not nexus"

# docker stop: SIGTERM, bounded wait, exit 0, nothing left.
kill -TERM "$NEXUSD_PID"
stop_deadline=$((SECONDS + 30))
while kill -0 "$NEXUSD_PID" 2>/dev/null && [ $SECONDS -lt $stop_deadline ]; do sleep 0.2; done
kill -0 "$NEXUSD_PID" 2>/dev/null && die "nexusd still running 30s after SIGTERM"
set +e
wait "$NEXUSD_PID"
rc=$?
set -e
NEXUSD_PID=""
[ $rc -eq 0 ] || die "nexusd exited with status $rc after SIGTERM"
[ ! -e "$PGDATA/postmaster.pid" ] || die "postmaster.pid left behind"
# pg_ctl stop returns once postmaster.pid is gone; the postmaster exits a moment later.
for _ in $(seq 50); do alive "$PM" || break; sleep 0.1; done
if alive "$PM"; then die "postmaster $PM still running 5s after nexusd exited"; fi
# "[a]": the pattern must not match grep's own command line.
holders=$(grep -l -- "${PGDATA%a}[a]" /proc/[0-9]*/cmdline 2>/dev/null || true)
[ -z "$holders" ] || die "a process still names $PGDATA"
say "SIGTERM: exit 0, embedded PostgreSQL stopped, nothing left behind"
say "OK"
