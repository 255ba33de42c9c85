#!/usr/bin/env bash
# bench/ingest-rss.sh [IDENTIFIERS] [TAG] [NEXUSD] — the streamed ingest alone (nexus_bench's ingest stage: the world
# of IDENTIFIERS person identifiers, seed 42, streamed into a nexusd that resolves as it goes) with nexusd's RSS
# sampled every 0.5 s: what the resident graph and the ingest cost in memory as they grow, in ~5 min at 1.1M
# instead of a whole `bench/run 1m`. Starts a throwaway PostgreSQL (settings of bench/run). NEXUSD defaults to
# this build's. Writes bench/results/ingest-<IDENTIFIERS>-<date>[-TAG].json (nexus_bench's result: the stage's
# peak RSS, ingest-to-resolved seconds, batches) and the samples beside it (.rss.jsonl: seconds, VmRSS MiB).
set -euo pipefail
IDS="${1:-1100000}"; TAG="${2:-}"
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BIN="${3:-$NEXUSD}"
bench_tmp nexus-ingest-rss
bench_cleanup_on_exit
PORT=$(free_port)
bench_run_pg_start "$TMP/pg" "$PORT"
DB="postgresql://postgres@127.0.0.1:$PORT/nexus"; GRPC=$(free_port); HTTP=$(free_port)
"$BIN" --database-url="$DB" --grpc-listen="127.0.0.1:$GRPC" --http-listen="127.0.0.1:$HTTP" --resolver=true \
  --resolver-batch-events=10000 --max-events-per-request=10000 --log-level=warn >"$TMP/nexusd.log" 2>&1 &
NEXUS_PID=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/ingest-$IDS-$(date -u +%Y-%m-%d)${TAG:+-$TAG}.json"
t0=$(date +%s.%N)
(
  while kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$NEXUS_PID/status" 2>/dev/null) && [[ -n "$kb" ]]; do
    printf '{"t": %.1f, "vmrss_mib": %d}\n' "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }')" \
      $((kb / 1024))
    sleep 0.5
  done
) >"${OUT%.json}.rss.jsonl" &
SAMPLER=$!
echo "[ingest-rss] streaming $IDS identifiers into $BIN ..." >&2
"$BENCH" run --grpc="127.0.0.1:$GRPC" --http="127.0.0.1:$HTTP" --db="$DB" --identifiers="$IDS" \
  --size-name="ingest-$IDS" --nexusd-pid="$NEXUS_PID" --pg-pid="$(head -1 "$TMP/pg/postmaster.pid")" --out="$OUT" \
  --repeats=1 --stages=ingest >/dev/null
kill "$SAMPLER" 2>/dev/null || true
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))["ingest"]
print({k: i[k] for k in ("events_per_s", "ingest_start_to_all_resolved_s", "resolver_batches_total",
                         "nexusd_stage_peak_rss_mib") if k in i})
print("results:", sys.argv[1])
PY
