#!/usr/bin/env bash
# Probe DB for graph-load: ingest IDS (resolver off), rebuild, keep $KEEP/pg.rebuilt
set -euo pipefail
IDS="${1:-1100000}"; KEEP=/tmp/glp/keep; HOLD=30000
cd /work/main
export NEXUS_BENCH_NO_BUILD=1
source bench/common.sh
TMP=$KEEP; rm -rf $TMP; mkdir -p $TMP; chmod 755 $TMP; SOCK="$TMP/sock"; mkdir -p "$SOCK"; chown postgres "$TMP" "$SOCK"
PORT=$(free_port)
bench_run_pg_start "$TMP/pg" "$PORT"
echo $PORT > $TMP/port
DB="postgresql://postgres@127.0.0.1:$PORT/nexus"
GRPC=$(free_port); HTTP=$(free_port)
$NEXUSD --database-url="$DB" --grpc-listen="127.0.0.1:$GRPC" --http-listen="127.0.0.1:$HTTP" --resolver=false \
    --resolver-batch-events=10000 --max-events-per-request=10000 --log-level=info >"$TMP/ingest.log" 2>&1 &
NP=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
"$BENCH" run --grpc="127.0.0.1:$GRPC" --http="127.0.0.1:$HTTP" --db="$DB" --identifiers="$IDS" \
    --size-name="glp-$IDS" --nexusd-pid="$NP" --pg-pid="$(head -1 "$TMP/pg/postmaster.pid")" --out="$TMP/ingest.json" \
    --repeats=1 --stages=log_ingest --hold-back="$HOLD" >/dev/null
kill $NP; wait $NP || true
$NEXUSD --rebuild --database-url="$DB" --log-level=info > $TMP/rebuild.log 2>&1
as_pg "$PGBIN/pg_ctl" -D "$TMP/pg" -m fast stop >/dev/null
echo done
