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
# bench_pg_start DIR PORT [postgresql.conf lines...]: initdb DIR, listen on 127.0.0.1:PORT and $SOCK with fsync and
# synchronous_commit on (the benches measure durable writes), start it, create database "nexus".
bench_pg_start() {
  local dir=$1 port=$2; shift 2
  as_pg "$PGBIN/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1
  {
    printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" "unix_socket_directories = '$SOCK'" \
      "fsync = on" "synchronous_commit = on" "shared_buffers = 512MB" "max_connections = 100" "$@"
  } >>"$dir/postgresql.conf"
  as_pg "$PGBIN/pg_ctl" -D "$dir" -l "$dir.log" -w -t 60 start >/dev/null
  psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE nexus"
}
# bench_run_pg_start DIR PORT: bench_pg_start with bench/run's settings (the figures of different benches compare).
bench_run_pg_start() {
  bench_pg_start "$1" "$2" "shared_buffers = 1GB" "work_mem = 64MB" "maintenance_work_mem = 256MB" "max_wal_size = 8GB"
}
# bench_cleanup_on_exit: on exit, kill -9 the nexusd in $NEXUS_PID (when set), stop the PostgreSQL in $TMP/pg (when
# running) and remove $TMP.
bench_cleanup_on_exit() {
  NEXUS_PID=""
  trap _bench_cleanup EXIT INT TERM
}
_bench_cleanup() {
  set +e
  [[ -n "$NEXUS_PID" ]] && kill -9 "$NEXUS_PID" 2>/dev/null
  [[ -f "$TMP/pg/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1
  rm -rf "$TMP"
}
