# Sourced by the bench scripts that drive a throwaway PostgreSQL and nexusd (replica-bench.sh, takeover-bench.sh):
# paths, the build, free ports, running PostgreSQL tools as `postgres` when root, and the temp dir.
# Env: NEXUS_BUILD_DIR (default build/), PG_BINDIR, NEXUS_BENCH_NO_BUILD=1 to skip the ninja step.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${NEXUS_BUILD_DIR:-$ROOT/build}"
PGBIN="${PG_BINDIR:-/usr/lib/postgresql/15/bin}"
if [[ -z "${NEXUS_BENCH_NO_BUILD:-}" ]]; then flock /tmp/nexus-build.lock ninja -C "$BUILD" nexus_bench nexusd >/dev/null; fi
NEXUSD="$BUILD/server/nexusd"; BENCH="$BUILD/bench/nexus_bench"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# bench_tmp NAME: TMP=/tmp/NAME.XXXXXX (readable by postgres) with a socket dir SOCK inside.
bench_tmp() {
  TMP="$(mktemp -d "/tmp/$1.XXXXXX")"; chmod 755 "$TMP"
  SOCK="$TMP/sock"; mkdir -p "$SOCK"; [[ $(id -u) == 0 ]] && chown postgres "$TMP" "$SOCK"
  return 0
}
