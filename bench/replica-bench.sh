#!/usr/bin/env bash
# bench/replica-bench.sh [IDENTIFIERS] [ROUNDS] — read capacity with and without a hot standby (issue 17,
# docs/SCALING.md). Starts a throwaway primary (fsync on) and a streaming standby cloned from it
# (pg_basebackup -R), loads IDENTIFIERS person identifiers (default 50000) with nexus_bench's ingest stage, then
# ROUNDS (default 3) times, alternating: nexusd on the primary alone, and nexusd with --read-database-url on the
# standby; each runs nexus_bench's query stage (4 threads x 5 s per RPC) while ingesting 1,000 events/s. Writes
# bench/results/replica-<date>.json with every round and prints medians.
# On one machine both servers share its cores: the figure shows what routing costs and what the standby takes
# off the primary, not the capacity of a second machine.
set -euo pipefail
IDS="${1:-50000}"; ROUNDS="${2:-3}"
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_tmp nexus-replica-bench
NEXUS_PID=""
stop_nexusd() {
  if [[ -n "$NEXUS_PID" ]] && kill -0 "$NEXUS_PID" 2>/dev/null; then
    kill "$NEXUS_PID"; for _ in $(seq 1 100); do kill -0 "$NEXUS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$NEXUS_PID" 2>/dev/null || true
  fi
  NEXUS_PID=""
}
cleanup() {
  set +e; stop_nexusd
  for d in standby primary; do [[ -f "$TMP/$d/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$TMP/$d" -m immediate stop >/dev/null 2>&1; done
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

P_PORT=$(free_port); S_PORT=$(free_port)
bench_pg_start "$TMP/primary" "$P_PORT" "wal_level = replica" "max_wal_senders = 4" "wal_keep_size = 2GB"
as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$P_PORT" -U postgres -D "$TMP/standby" -R -X stream
sed -i "s/^port = $P_PORT/port = $S_PORT/" "$TMP/standby/postgresql.conf"
as_pg "$PGBIN/pg_ctl" -D "$TMP/standby" -l "$TMP/standby.log" -w -t 60 start >/dev/null
PRIMARY="postgresql://postgres@127.0.0.1:$P_PORT/nexus"; STANDBY="postgresql://postgres@127.0.0.1:$S_PORT/nexus"

GRPC_PORT=$(free_port); HTTP_PORT=$(free_port)
start_nexusd() {  # extra flags...
  "$NEXUSD" --database-url="$PRIMARY" --grpc-listen="127.0.0.1:$GRPC_PORT" --http-listen="127.0.0.1:$HTTP_PORT" \
    --resolver-batch-events=10000 --max-events-per-request=10000 --log-level=warn "$@" >>"$TMP/nexusd.log" 2>&1 &
  NEXUS_PID=$!
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$NEXUS_PID" 2>/dev/null || { tail -20 "$TMP/nexusd.log" >&2; exit 1; }
    sleep 0.2
  done
}
COMMON=(--grpc="127.0.0.1:$GRPC_PORT" --http="127.0.0.1:$HTTP_PORT" --db="$PRIMARY" --identifiers="$IDS"
        --fresh-requests=0 --checkpoints= --steady-seconds=0)
start_nexusd
"$BENCH" run "${COMMON[@]}" --stages=ingest --out="$TMP/load.json" >/dev/null 2>"$TMP/load.err" || { cat "$TMP/load.err" >&2; exit 1; }
stop_nexusd
for r in $(seq 1 "$ROUNDS"); do
  for mode in primary standby; do
    if [[ $mode == standby ]]; then start_nexusd --read-database-url="$STANDBY" --max-replica-lag=5s; else start_nexusd; fi
    "$BENCH" run "${COMMON[@]}" --stages=queries --query-seconds=5 --query-ingest-rate=1000 \
      --out="$TMP/$mode-$r.json" >/dev/null 2>"$TMP/$mode-$r.err" || { cat "$TMP/$mode-$r.err" >&2; exit 1; }
    stop_nexusd
    echo "[replica-bench] round $r $mode done" >&2
  done
done
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/replica-$(date -u +%Y-%m-%d).json"
/usr/bin/python3 - "$TMP" "$ROUNDS" "$IDS" "$OUT" <<'PY'
import json, os, statistics, sys
tmp, rounds, ids, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
res = {"identifiers": ids, "rounds": rounds, "ingest_rate_target": 1000, "query_threads": 4, "seconds_each": 5,
       "loadavg_at_end": open("/proc/loadavg").read().strip(), "nproc": os.cpu_count(), "runs": {}}
for mode in ("primary", "standby"):
    res["runs"][mode] = [json.load(open(f"{tmp}/{mode}-{r}.json"))["queries"] for r in range(1, rounds + 1)]
json.dump(res, open(out, "w"), indent=1)
print("| RPC (4 threads, 1,000 events/s ingest) | primary alone: calls/s, p99 ms | + standby: calls/s, p99 ms | share read on the standby |")
print("|---|---|---|---|")
for rpc in ("LookupPerson", "GetPerson", "ListPersonTimeline"):
    cells = []
    for mode in ("primary", "standby"):
        runs = res["runs"][mode]
        cells.append("%.0f, %.1f" % (statistics.median(r[rpc]["per_s"] for r in runs),
                                     statistics.median(r[rpc]["p99_ms"] for r in runs)))
    total = sum(r[k]["calls"] for r in res["runs"]["standby"] for k in ("LookupPerson", "GetPerson", "ListPersonTimeline"))
    share = sum(r["calls_from_replica"] for r in res["runs"]["standby"]) / max(total, 1)
    print("| %s | %s | %s | %.0f%% |" % (rpc, cells[0], cells[1], 100 * share))
how = f"medians of {rounds} rounds each" if rounds >= 3 else f"{rounds} round(s) each: not a median"
print(f"{how}; raw: {out}")
PY
